// --http: Prometheus metrics, the live status page (rendered by headless
// Chromium), and the RPC over WebSocket behind a bearer token, with Host
// and Origin checks against DNS rebinding.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import WebSocket from 'ws';
import { encodeFrame, FrameDecoder, v1 } from '../../proto';
import { SshMux } from '../../client-sdk';
import { cleanupAll, startSshd, tempDir, writeClientConfig, type Sshd } from '../helpers/sshd';
import { startDaemon, waitFor, type DaemonProc } from '../helpers/daemon';

const MAIN = path.join(__dirname, '..', '..', 'daemon', 'main.js');
let sshd: Sshd;
let daemon: DaemonProc;
let port: number;
let mux: SshMux;

before(async () => {
  sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 'node', sshd }]);
  daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, args: ['--http', '127.0.0.1:0'] });
  assert.ok(await waitFor(() => /http listening/.test(daemon.logs()), 5000), daemon.logs());
  port = Number(/"http":"127\.0\.0\.1:(\d+)"/.exec(daemon.logs())![1]);
  mux = await SshMux.connect({ socket: daemon.socket });
});
after(async () => {
  mux?.close();
  await daemon?.stop();
  await cleanupAll();
});

/** Waits until node's connection holds no session (a cancelled one frees its slot after TERM and the server's close). */
async function sessionsFreed(): Promise<void> {
  assert.ok(await waitFor(async () => (await mux.status()).hosts!.find((h) => h.name === 'node')!.connections![0].sessions === 0, 10_000),
    'the sessions were not freed within 10 s');
}

function get(urlPath: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    // agent: false. Node 20's global agent keeps sockets alive, and reusing one the server is closing after its
    // keep-alive timeout is a "socket hang up" that has nothing to do with the daemon.
    http.get({ host: '127.0.0.1', port, path: urlPath, headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    }).on('error', reject);
  });
}

/** Opens a WebSocket; resolves with it, or with the HTTP status it was refused with. */
function ws(urlPath: string, headers: Record<string, string> = {}): Promise<WebSocket | number> {
  return new Promise((resolve) => {
    const sock = new WebSocket(`ws://127.0.0.1:${port}${urlPath}`, { headers });
    sock.once('open', () => resolve(sock));
    sock.once('unexpected-response', (_req, res) => resolve(res.statusCode!));
    sock.once('error', () => resolve(0));
  });
}

test('GET /metrics: Prometheus text with the pool gauges, counters, the exec histogram and process metrics', async () => {
  const held = [1, 2].map(() => mux.spawn('node', 'sleep 5', { stdin: false }));
  await Promise.all(held.map((p) => new Promise((r) => p.once('started', r))));
  await mux.exec('node', 'true');
  await mux.exec('node', 'exit 3');
  await assert.rejects(mux.exec('nosuchhost.invalid', 'true', { timeoutMs: 20_000 }));
  const res = await get('/metrics');
  assert.equal(res.status, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const m = res.body;
  assert.match(m, /^sshmux_sessions_open\{host="node"\} 2$/m);
  assert.match(m, /^sshmux_connections\{host="node",state="ready"\} 1$/m);
  assert.match(m, /^sshmux_queue_depth\{host="node"\} 0$/m);
  assert.match(m, /^sshmux_handshakes_total\{host="node",result="ok"\} 1$/m);
  assert.match(m, /^sshmux_handshakes_total\{host="nosuchhost.invalid",result="DNS"\} [1-9]/m);
  assert.match(m, /^sshmux_requests_total\{host="node",code="OK"\} 2$/m);
  assert.match(m, /^sshmux_requests_total\{host="nosuchhost.invalid",code="DNS"\} 1$/m);
  assert.match(m, /^# TYPE sshmux_exec_duration_seconds histogram$/m);
  // Every exec call is timed, failed ones too.
  assert.match(m, /^sshmux_exec_duration_seconds_count 3$/m);
  assert.match(m, /^sshmux_process_resident_memory_bytes \d+/m);
  assert.doesNotMatch(m, /sleep 5|exit 3/, 'a command line reached the metrics');
  for (const p of held) p.cancel();
  await Promise.all(held.map((p) => p.exited.catch(() => undefined)));
  await sessionsFreed();
});

test('the status page, rendered by headless Chromium, shows the host and its live session count, and no command line', async (t) => {
  const chromium = ['chromium', 'chromium-browser', 'google-chrome'].find((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);
  if (!chromium) return t.skip('no chromium installed (apt-get install chromium)');
  const render = (): string => execFileSync(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=3000',
    '--dump-dom', `http://127.0.0.1:${port}/`], { timeout: 60_000, stdio: ['ignore', 'pipe', 'ignore'] }).toString()
    .replace(/<script>[\s\S]*<\/script>/, '');
  // Chromium's virtual time does not wait for WebSocket traffic, so a render may come before the first
  // snapshot: render again (a few times at most) until the page shows the host.
  const hostSection = (want: RegExp): string => {
    let dom = '';
    for (let i = 0; i < 5; i++) {
      dom = render();
      const section = /<section class="host" data-host="node">[\s\S]*?<\/section>/.exec(dom)?.[0];
      if (section && want.test(section)) return dom;
    }
    assert.fail(`the page never showed ${want}: ${dom}`);
  };
  const held = [1, 2, 3].map(() => mux.spawn('node', 'sleep 30 # secret-marker', { stdin: false }));
  await Promise.all(held.map((p) => new Promise((r) => p.once('started', r))));
  const busy = hostSection(/<span class="sessions">3<\/span>/);
  assert.match(busy, /node#1<\/td><td>ready<\/td><td>3 \/ 10<\/td>/);
  assert.match(busy, /<span id="conn" class="">live<\/span>/);
  assert.doesNotMatch(busy, /secret-marker|sleep 30/);
  for (const p of held) p.cancel();
  await Promise.all(held.map((p) => p.exited.catch(() => undefined)));
  await sessionsFreed();
  hostSection(/<span class="sessions">0<\/span>/);
  const page = await get('/');
  assert.match(String(page.headers['content-security-policy']), /default-src 'none'/);
});

test('Host and Origin checks: a rebound DNS name or a foreign page is refused everywhere', async () => {
  assert.equal((await get('/metrics', { host: `evil.example:${port}` })).status, 403);
  assert.equal((await get('/', { host: `127.0.0.1:${port}`, origin: 'http://evil.example' })).status, 403);
  assert.equal((await get('/', { host: `localhost:${port}` })).status, 200);
  assert.equal(await ws('/status', { origin: 'http://evil.example' }), 403);
  const viewer = await ws('/status', { origin: `http://127.0.0.1:${port}` });
  assert.ok(viewer instanceof WebSocket);
  const snapshot = JSON.parse(String(await new Promise((r) => viewer.once('message', r))));
  assert.ok(Array.isArray(snapshot.hosts));
  viewer.close();
  assert.equal((await get('/nope')).status, 404);
});

test('/rpc: the same RPC over WebSocket with the bearer token from the 0600 file; without it, or from a foreign origin, refused', async () => {
  const tokenPath = path.join(path.dirname(daemon.socket), 'http-token');
  assert.equal(fs.statSync(tokenPath).mode & 0o777, 0o600);
  const token = fs.readFileSync(tokenPath, 'utf8').trim();
  assert.equal(await ws('/rpc'), 401);
  assert.equal(await ws('/rpc', { authorization: `Bearer ${'0'.repeat(64)}` }), 401);
  assert.equal(await ws('/rpc', { authorization: `Bearer ${token}`, origin: 'http://evil.example' }), 403);
  const sock = await ws('/rpc', { authorization: `Bearer ${token}` });
  assert.ok(sock instanceof WebSocket);
  const decoder = new FrameDecoder();
  const frames: v1.Frame[] = [];
  sock.on('message', (d: Buffer) => frames.push(...decoder.push(d)));
  sock.send(encodeFrame({ stream: 0, hello: { version: 1, client: 'ws-test', window: 1 << 20 } }));
  sock.send(encodeFrame({ stream: 1, session: { host: 'node', kind: v1.SessionRequest.Kind.EXEC, command: 'echo over-ws; exit 4' } }));
  assert.ok(await waitFor(() => frames.some((f) => f.stream === 1 && (f.exit || f.error)), 15_000), JSON.stringify(frames));
  assert.ok(frames[0].welcome, 'no welcome');
  const out = frames.filter((f) => f.stream === 1 && f.data).map((f) => Buffer.from(f.data!.data!).toString()).join('');
  assert.equal(out, 'over-ws\n');
  assert.equal(frames.find((f) => f.stream === 1 && f.exit)!.exit!.code, 4);
  sock.close();
});

test('--http on a non-loopback address is refused unless the config allows it', () => {
  const dir = tempDir();
  const r = spawnSync(process.execPath, [MAIN, '--socket', path.join(dir, 's.sock'), '--http', '0.0.0.0:0'], { timeout: 10_000 });
  assert.equal(r.status, 78);
  assert.match(r.stderr.toString(), /--http 0\.0\.0\.0:0 is not a loopback address.*httpAllowRemote/);
});
