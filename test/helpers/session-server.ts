// An in-process SSH server (ssh2's Server, through the seam) that counts
// session channels as sshd's MaxSessions does, for the unit tier's tests of
// the real Connection: a session holds its slot until sshd has processed our
// CHANNEL_CLOSE, and sshd frees it in its main loop after the read, so a
// CHANNEL_OPEN that arrives in the same read as the close is refused ("open
// failed", as sshd says). Execs print "ok" and exit 0, unless `hold` keeps
// them open. What sshd cannot be made to do, it can: close an unused session
// (a spare) from its side. Plus a client config (key, known_hosts) and the
// ResolvedHost the daemon would resolve for it, so dial() runs as for sshd.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { closeSessionFromServer } from '../../daemon/ssh/ssh2/capabilities';
import { generateKey } from '../../daemon/gateway/keys';
import { rejectChannel, Server, type ServerChannel } from '../../daemon/ssh/ssh2';
import type { ResolvedHost } from '../../daemon/ssh/ssh-config';

export interface SessionServerOptions {
  /** sshd's MaxSessions; changeable while it runs (a stricter server after a restart, say). */
  maxSessions: number;
  /** Close a session nobody started within this long, as sshd never does to a spare. */
  closeUnusedAfterMs?: number;
}

export interface SessionServer {
  readonly host: ResolvedHost;
  options: SessionServerOptions;
  /** Sessions the server counts now, over all connections: accepted, our close not yet processed. */
  counted(): number;
  /** The most one connection ever had counted at once. */
  peak(): number;
  /** Session channels the client asked for, accepted or refused. */
  opens(): number;
  /** Of those, refused as past MaxSessions. */
  refused(): number;
  /** Keepalive requests received (global requests). */
  keepalives(): number;
  /** CHANNEL_CLOSEs received from the client. */
  closesReceived(): number;
  /** Unused sessions the server closed. */
  unusedClosed(): number;
  /** Execs that started and are held open (hold()). */
  held(): ServerChannel[];
  /** Execs started from now on stay open until released with end(). */
  hold(on: boolean): void;
  close(): void;
}

export async function startSessionServer(options: SessionServerOptions): Promise<SessionServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-session-server-'));
  // generateKey: ssh2's generator, retried while it writes a key it cannot read back (mscdex/ssh2#1390).
  const hostKey = generateKey('ed25519', 'session-server');
  const clientKey = generateKey('ed25519', 'session-server client');
  const identity = path.join(dir, 'id_ed25519');
  fs.writeFileSync(identity, clientKey.private, { mode: 0o600 });
  let opens = 0;
  let refused = 0;
  let keepalives = 0;
  let closesReceived = 0;
  let unusedClosed = 0;
  let peak = 0;
  let holding = false;
  const held: ServerChannel[] = [];
  /** Sessions counted per connection, as sshd counts MaxSessions. */
  const counts = new Set<{ counted: number }>();
  // One ssh2 Server per TCP connection, so that its debug lines (the packets it reads) are that connection's.
  const sockets = new Set<net.Socket>();
  const listener = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const count = { counted: 0 };
    counts.add(count);
    socket.once('close', () => counts.delete(count));
    const server = new Server({
      hostKeys: [hostKey.private],
      debug: (line: string) => {
        if (line.includes('Inbound: GLOBAL_REQUEST')) keepalives++;
        if (!line.includes('Inbound: CHANNEL_CLOSE')) return;
        closesReceived++;
        // sshd frees the session in its main loop, after the read that carried our close.
        setImmediate(() => count.counted--);
      },
    }, (conn) => {
      conn.on('error', () => {});
      conn.on('authentication', (ctx) => (ctx.method === 'publickey' ? ctx.accept() : ctx.reject(['publickey'])));
      conn.on('session', (accept, reject) => {
        opens++;
        if (count.counted >= s.options.maxSessions) {
          refused++;
          rejectChannel(reject, 2, 'open failed');
          return;
        }
        count.counted++;
        peak = Math.max(peak, count.counted);
        const session = accept();
        let started = false;
        if (s.options.closeUnusedAfterMs !== undefined) {
          setTimeout(() => {
            if (started) return;
            unusedClosed++;
            closeSessionFromServer(conn, session);
          }, s.options.closeUnusedAfterMs);
        }
        session.on('exec', (acceptExec) => {
          started = true;
          const channel = acceptExec();
          channel.resume();
          if (holding) {
            held.push(channel);
            return;
          }
          channel.write('ok\n');
          channel.exit(0);
          channel.end();
        });
      });
    });
    server.injectSocket(socket);
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const port = (listener.address() as net.AddressInfo).port;
  const knownHosts = path.join(dir, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${port} ${hostKey.public}\n`);
  const host: ResolvedHost = {
    alias: 'inproc', hostname: '127.0.0.1', port, user: 'sshmux-test',
    identityFiles: [identity], certificateFiles: [], identitiesOnly: true, identityAgent: undefined,
    userKnownHostsFiles: [knownHosts], globalKnownHostsFiles: [], strictHostKeyChecking: 'yes', hashKnownHosts: false,
    connectTimeoutMs: 5000, serverAliveIntervalMs: 0, serverAliveCountMax: 3, proxyJump: [], batchMode: true, sendEnv: [], setEnv: {},
  };
  const s: SessionServer = {
    host,
    options,
    counted: () => [...counts].reduce((n, c) => n + c.counted, 0),
    peak: () => peak,
    opens: () => opens,
    refused: () => refused,
    keepalives: () => keepalives,
    closesReceived: () => closesReceived,
    unusedClosed: () => unusedClosed,
    held: () => held,
    hold: (on) => {
      holding = on;
    },
    close: () => {
      listener.close();
      for (const socket of sockets) socket.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return s;
}
