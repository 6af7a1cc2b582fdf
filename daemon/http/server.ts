// The HTTP side (--http ADDR): Prometheus /metrics, the live status page at
// / fed over the /status WebSocket, and the RPC over binary WebSocket frames
// at /rpc for clients that cannot reach the Unix socket. Every request must
// name us by an address in its Host header and, when it carries an Origin,
// come from that same origin: a page on another site, even one whose DNS
// now points here (rebinding), is refused.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { WebSocketServer, createWebSocketStream, type WebSocket } from 'ws';
import { parseListenAddress, type TcpAddress } from '../listen-address';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import { STATUS_PAGE } from './status-page';

/** How often the status page gets a fresh snapshot. */
const STATUS_EVERY_MS = 1000;
const MAX_STATUS_VIEWERS = 64;

export interface HttpOptions {
  /** host:port; the host must be a loopback address unless allowRemote. */
  address: string;
  allowRemote: boolean;
  /** The bearer token for /rpc is written here, mode 0600. */
  tokenPath: string;
  metrics: Metrics;
  snapshot(): unknown;
  /** A /rpc client: its WebSocket as a byte stream, as a Unix socket client's. */
  acceptRpc(stream: net.Socket): void;
  log: Logger;
}

export interface HttpServer {
  readonly port: number;
  readonly host: string;
  close(): void;
}

export function parseHttpAddress(value: string, allowRemote: boolean): TcpAddress {
  return parseListenAddress('--http', value, allowRemote, 'httpAllowRemote', '127.0.0.1:9322');
}

export async function startHttp(opts: HttpOptions): Promise<HttpServer> {
  const { host, port } = parseHttpAddress(opts.address, opts.allowRemote);
  const token = randomBytes(32).toString('hex');
  // Replaced, never appended: a token from an earlier run stops working.
  fs.rmSync(opts.tokenPath, { force: true });
  fs.writeFileSync(opts.tokenPath, `${token}\n`, { mode: 0o600, flag: 'wx' });

  const server = http.createServer((req, res) => {
    if (!allowedHost(req, server) || !sameOrigin(req)) return refuse(res, 403, 'forbidden: foreign Host or Origin\n');
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(res, 405, 'method not allowed\n');
    if (url === '/metrics') {
      opts.metrics.registry.metrics().then((body) => {
        res.writeHead(200, { 'content-type': opts.metrics.registry.contentType });
        res.end(body);
      }, (err: Error) => refuse(res, 500, `metrics failed: ${err.message}\n`));
      return;
    }
    if (url === '/' || url === '/index.html') {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        // The page needs nothing but itself and its own WebSocket.
        'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        'x-content-type-options': 'nosniff',
        'cache-control': 'no-store',
      });
      res.end(STATUS_PAGE);
      return;
    }
    refuse(res, 404, 'not found: try / or /metrics\n');
  });

  const status = new WebSocketServer({ noServer: true, maxPayload: 1024 });
  const rpc = new WebSocketServer({ noServer: true, maxPayload: 2 * 1024 * 1024 });
  const viewers = new Set<WebSocket>();
  server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => {});
    const url = (req.url ?? '/').split('?')[0];
    if (!allowedHost(req, server) || !sameOrigin(req)) return reject(socket, 403, 'foreign Host or Origin');
    if (url === '/status') {
      if (viewers.size >= MAX_STATUS_VIEWERS) return reject(socket, 503, 'too many status viewers');
      status.handleUpgrade(req, socket, head, (ws) => {
        viewers.add(ws);
        ws.on('close', () => viewers.delete(ws));
        ws.on('error', () => {});
        ws.send(JSON.stringify(opts.snapshot()));
      });
      return;
    }
    if (url === '/rpc') {
      if (!bearerMatches(req.headers.authorization, token)) return reject(socket, 401, `missing or wrong bearer token (read it from ${opts.tokenPath})`);
      rpc.handleUpgrade(req, socket, head, (ws) => {
        ws.on('error', () => {});
        const stream = createWebSocketStream(ws);
        stream.on('error', () => {});
        opts.acceptRpc(stream as unknown as net.Socket);
      });
      return;
    }
    reject(socket, 404, 'no WebSocket here: try /status or /rpc');
  });
  const ticker = setInterval(() => {
    if (viewers.size === 0) return;
    const data = JSON.stringify(opts.snapshot());
    for (const ws of viewers) if (ws.bufferedAmount < 1 << 20) ws.send(data);
  }, STATUS_EVERY_MS);
  ticker.unref();

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => opts.log.error({ err: err.message }, 'http server error'));
  const addr = server.address() as net.AddressInfo;
  opts.log.info({ http: `${addr.address}:${addr.port}`, token: opts.tokenPath }, 'http listening: /metrics, / (status), /rpc');
  return {
    port: addr.port,
    host: addr.address,
    close: () => {
      clearInterval(ticker);
      for (const ws of viewers) ws.terminate();
      status.close();
      rpc.close();
      server.close();
      server.closeAllConnections();
      fs.rmSync(opts.tokenPath, { force: true });
    },
  };
}

/** The Host header must name this server by an address, not by a DNS name someone else controls. */
function allowedHost(req: http.IncomingMessage, server: http.Server): boolean {
  const hostHeader = req.headers.host;
  if (!hostHeader) return false;
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(hostHeader);
  if (!m) return false;
  const name = (m[1] ?? m[2]).toLowerCase();
  const port = Number(m[3] ?? 80);
  const addr = server.address() as net.AddressInfo | null;
  if (addr && port !== addr.port) return false;
  return name === 'localhost' || net.isIP(name) !== 0;
}

function sameOrigin(req: http.IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true; // not a browser: curl, Prometheus, SDKs
  return origin === `http://${req.headers.host}`;
}

function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+([0-9a-f]+)$/i.exec(header ?? '');
  if (!m || m[1].length !== token.length) return false;
  return timingSafeEqual(Buffer.from(m[1]), Buffer.from(token));
}

function refuse(res: http.ServerResponse, code: number, text: string): void {
  res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(text);
}

function reject(socket: NodeJS.WritableStream & { destroy(): void }, code: number, why: string): void {
  socket.write(`HTTP/1.1 ${code} ${http.STATUS_CODES[code]}\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n${why}\n`);
  socket.destroy();
}
