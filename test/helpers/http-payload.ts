// HTTP carried through forwards (ssh -L, -W, forwardLocal, direct-tcpip): a
// server on the remote side whose every body carries its checksum, and a
// client that checks it, so a test sees a lost or changed byte, not just an
// answer. The servers close when the test file ends.
import { after } from 'node:test';
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import { once } from 'node:events';

const servers: http.Server[] = [];
if (process.env.NODE_TEST_CONTEXT) {
  after(() => {
    for (const s of servers.splice(0)) s.close();
  });
}

/** /N answers N random bytes with their sha256 in a header, and closes the connection: each request is its own channel. */
export async function payloadServer(): Promise<{ port: number; served: () => number }> {
  let served = 0;
  const server = http.createServer((req, res) => {
    const body = randomBytes(Number(req.url!.slice(1)) || 1);
    served++;
    res.writeHead(200, { 'content-length': body.length, 'x-sha256': createHash('sha256').update(body).digest('hex'), connection: 'close' });
    res.end(body);
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as net.AddressInfo).port, served: () => served };
}

/** GET /size through a forward on `port`; true when the body matches its checksum, else what went wrong. */
export function fetchChecked(port: number, size: number): Promise<boolean | string> {
  return new Promise((resolve) => {
    // A new TCP connection each time (no keep-alive): each is its own channel.
    http.get({ host: '127.0.0.1', port, path: `/${size}`, agent: false }, (res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      res.on('data', (d: Buffer) => {
        hash.update(d);
        bytes += d.length;
      });
      res.on('end', () => resolve(bytes === size && hash.digest('hex') === res.headers['x-sha256'] ? true : `bad body: ${bytes} bytes`));
      res.on('error', (e) => resolve(e.message));
    }).on('error', (e) => resolve(e.message));
  });
}
