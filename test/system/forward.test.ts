// Local forwarding (ssh -L, SDK forwardLocal): every forwarded connection is
// a direct-tcpip channel on the destination's pooled connection, so a
// hundred transfers cost no handshake beyond the pool's first.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import { once } from 'node:events';
import { SshMux, SshMuxError } from '../../client-sdk';
import { waitFor } from '../helpers/daemon';
import { fetchChecked, payloadServer } from '../helpers/http-payload';
import { freePort } from '../helpers/sshd';
import { startWorld } from '../helpers/world';

const SSHMUX = path.join(__dirname, '..', '..', 'cli', 'sshmux.js');
const closers: Array<() => void> = [];
after(() => {
  for (const c of closers) c();
});

async function setup(maxSessions = 10) {
  const { sshd, daemon } = await startWorld({ alias: 'node', sshd: { maxSessions } });
  return { sshd, daemon };
}

test('sshmux -N -L carries 100 HTTP transfers intact, with no login beyond the pool\'s', async () => {
  const { sshd, daemon } = await setup();
  const web = await payloadServer();
  const [p1, p2] = [await freePort(), await freePort()];
  // Two forwards at once, to the same server.
  const wrapper = spawn(process.execPath, [SSHMUX, '-N', '-L', `${p1}:127.0.0.1:${web.port}`, '-L', `127.0.0.1:${p2}:localhost:${web.port}`, 'node'],
    { env: { ...process.env, SSHMUX_SOCKET: daemon.socket }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  wrapper.stderr.on('data', (d) => { stderr += d; });
  closers.push(() => wrapper.kill('SIGKILL'));
  assert.ok(await waitFor(async () => (await fetchChecked(p2, 10)) === true, 15_000), `the forward never listened: ${stderr}`);
  const baseline = sshd.logins();

  // 100 transfers of 1 KiB to 1 MiB, 20 at a time, over both listeners.
  const sizes = Array.from({ length: 100 }, (_, i) => 1024 * (1 + ((i * 97) % 1024)));
  const results: Array<boolean | string> = [];
  for (let i = 0; i < sizes.length; i += 20) {
    results.push(...await Promise.all(sizes.slice(i, i + 20).map((size, j) => fetchChecked(j % 2 ? p1 : p2, size))));
  }
  assert.deepEqual(results.filter((r) => r !== true), []);
  assert.ok(web.served() >= 101);
  assert.equal(sshd.logins(), baseline, 'a forwarded connection cost a login');
  assert.ok(baseline <= 1, `${baseline} logins for one pool`);

  // -N ends cleanly on SIGTERM, and the listeners go with it.
  wrapper.kill('SIGTERM');
  const [code] = await once(wrapper, 'exit');
  assert.equal(code, 0, stderr);
  assert.notEqual(await fetchChecked(p1, 10), true);
});

test('SDK forwardLocal: a handle that listens, forwards, reports a refused destination, and closes', async () => {
  const { sshd, daemon } = await setup();
  const web = await payloadServer();
  const mux = await SshMux.connect({ socket: daemon.socket });
  const fwd = await mux.forwardLocal('node', { localPort: 0, remoteHost: '127.0.0.1', remotePort: web.port });
  assert.ok(fwd.port > 0);
  const results = await Promise.all(Array.from({ length: 30 }, () => fetchChecked(fwd.port, 64 * 1024)));
  assert.deepEqual(results.filter((r) => r !== true), []);
  assert.equal(fwd.accepted, 30);
  // Tunnels take no session slots: 30 at once on a MaxSessions 10 server, one login.
  assert.equal(sshd.logins(), 1);

  const dead = await mux.forwardLocal('node', { localPort: 0, remoteHost: '127.0.0.1', remotePort: await freePort() });
  const errors: SshMuxError[] = [];
  dead.onError = (e) => errors.push(e);
  const sock = net.connect(dead.port, '127.0.0.1');
  await once(sock, 'close');
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'REFUSED', errors[0].message);

  await fwd.close();
  await dead.close();
  await assert.rejects(new Promise((resolve, reject) => net.connect(fwd.port, '127.0.0.1').on('connect', resolve).on('error', reject)));
  // A port in use is a clear error, not a crash.
  const busy = net.createServer().listen(0, '127.0.0.1');
  await once(busy, 'listening');
  closers.push(() => busy.close());
  await assert.rejects(mux.forwardLocal('node', { localPort: (busy.address() as net.AddressInfo).port, remoteHost: 'x', remotePort: 1 }),
    (e: SshMuxError) => e.code === 'BAD_REQUEST' && /EADDRINUSE/.test(e.message));
  mux.close();
});

test('-L grammar as ssh reads it; -R, -D and Unix-socket forwards are refused with the reason', () => {
  const { parseCommandLine, parseLocalForward, UsageError } = require('../../cli/ssh-args') as typeof import('../../cli/ssh-args');
  assert.deepEqual(parseLocalForward('8080:web:80'), { bindAddress: '127.0.0.1', port: 8080, host: 'web', hostPort: 80 });
  assert.deepEqual(parseLocalForward('8080:web:80', true), { bindAddress: '0.0.0.0', port: 8080, host: 'web', hostPort: 80 });
  assert.deepEqual(parseLocalForward('*:8080:web:80'), { bindAddress: '0.0.0.0', port: 8080, host: 'web', hostPort: 80 });
  assert.deepEqual(parseLocalForward('[::1]:8080:[fe80::1]:80'), { bindAddress: '::1', port: 8080, host: 'fe80::1', hostPort: 80 });
  for (const bad of ['8080:web', '8080:web:0', 'x:web:80', '/tmp/sock:web:80', '1:2:3:4:5']) {
    assert.throws(() => parseLocalForward(bad), UsageError, bad);
  }
  const inv = parseCommandLine(['-NL', '1:a:2', '-L3:b:4', 'h']);
  assert.equal(inv.sessionType, 'none');
  assert.deepEqual(inv.localForwards.map((f) => f.port), [1, 3]);
  // -g after -L still opens the listeners to every interface, as in ssh.
  assert.deepEqual(parseCommandLine(['-L', '1:a:2', 'h', '-g']).localForwards.map((f) => f.bindAddress), ['0.0.0.0']);
  assert.throws(() => parseCommandLine(['-R', '1:a:2', 'h']), /-R is refused: remote forwarding is not done/);
  assert.throws(() => parseCommandLine(['-D', '1080', 'h']), /-D is refused/);
  assert.throws(() => parseCommandLine(['-L', 'x', 'h']), /Bad local forwarding specification 'x'/);
});
