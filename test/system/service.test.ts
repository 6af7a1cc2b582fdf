// sshmuxd as a service: sd_notify against a real datagram socket, the
// watchdog, reload that keeps unchanged connections, socket activation, and
// sshmuxctl check/drain/reload/stop.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { SshMux } from '../../client-sdk';
import { startSshd, tempDir, writeClientConfig, type Sshd } from '../helpers/sshd';
import { startDaemon, waitFor } from '../helpers/daemon';
import { startNotifySocket } from '../helpers/notify-socket';

const MAIN = path.join(__dirname, '..', '..', 'daemon', 'main.js');
const CTL = path.join(__dirname, '..', '..', 'cli', 'sshmuxctl.js');
const cleanups: Array<() => void> = [];
after(() => {
  for (const c of cleanups) c();
});

function ctl(socket: string, ...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [CTL, '--socket', socket, ...args], { timeout: 30_000 });
  return { status: r.status, out: r.stdout.toString() + r.stderr.toString() };
}

async function node(): Promise<{ sshd: Sshd; dir: string; sshConfigPath: string }> {
  const sshd = await startSshd();
  const dir = tempDir();
  return { sshd, dir, sshConfigPath: writeClientConfig(dir, [{ alias: 'node', sshd }]).sshConfigPath };
}

test('sd_notify: READY once listening, STATUS kept current, WATCHDOG every half interval, RELOADING then READY, STOPPING, exit 0', async () => {
  const { sshd, dir, sshConfigPath } = await node();
  const notify = await startNotifySocket(dir);
  cleanups.push(() => notify.close());
  const daemon = await startDaemon({ dir, sshConfigPath, env: { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '1000000' } });
  assert.ok(await waitFor(() => notify.assignments().includes('READY=1'), 10_000), `no READY: ${notify.assignments()}`);
  const first = notify.assignments();
  assert.ok(first.indexOf('READY=1') < (first.indexOf('WATCHDOG=1') + 1 || Infinity), 'a watchdog ping came before READY');
  assert.ok(first.some((a) => /^STATUS=0 hosts, 0 connections, 0 sessions, 0 queued/.test(a)), first.join(' | '));
  // systemd-notify waited for our answer to its BARRIER=1 (we closed the fd it sent), as it does with systemd.
  assert.ok(first.includes('BARRIER=1'), first.join(' | '));

  // Watchdog: every 500 ms for WATCHDOG_USEC=1 s.
  const pings = (): number => notify.assignments().filter((a) => a === 'WATCHDOG=1').length;
  const before = pings();
  await new Promise((r) => setTimeout(r, 2600));
  const n = pings() - before;
  assert.ok(n >= 4 && n <= 7, `${n} watchdog pings in 2.6 s`);

  // STATUS follows the pool.
  const mux = await SshMux.connect({ socket: daemon.socket });
  const proc = mux.spawn('node', 'sleep 6', { stdin: false });
  assert.ok(await waitFor(() => notify.assignments().some((a) => /^STATUS=1 hosts, 1 connections, 1 sessions/.test(a)), 8000),
    notify.assignments().filter((a) => a.startsWith('STATUS')).join(' | '));
  proc.cancel();

  // Reload: RELOADING=1, then READY=1 again.
  const mark = notify.assignments().length;
  daemon.child.kill('SIGHUP');
  assert.ok(await waitFor(() => notify.assignments().slice(mark).includes('READY=1'), 5000));
  const reload = notify.assignments().slice(mark);
  assert.ok(reload.indexOf('RELOADING=1') >= 0 && reload.indexOf('RELOADING=1') < reload.indexOf('READY=1'), reload.join(' | '));
  assert.ok(reload.some((a) => a.startsWith('MONOTONIC_USEC=')));

  // Stop: STOPPING=1, the socket removed, exit 0.
  const code = await daemon.stop();
  assert.equal(code, 0);
  assert.ok(notify.assignments().includes('STOPPING=1'));
  assert.equal(fs.existsSync(daemon.socket), false);
  assert.equal(sshd.logins(), 1);
  mux.close();
});

test('without NOTIFY_SOCKET nothing is sent and nothing fails; a missing systemd-notify only logs a warning', async () => {
  const { dir, sshConfigPath } = await node();
  const daemon = await startDaemon({ dir, sshConfigPath, env: { NOTIFY_SOCKET: '', WATCHDOG_USEC: '100000' } });
  const mux = await SshMux.connect({ socket: daemon.socket });
  assert.equal((await mux.exec('node', 'echo ok')).stdout.toString(), 'ok\n');
  assert.doesNotMatch(daemon.logs(), /notify/i);
  mux.close();
  // A notify socket but no systemd-notify on PATH: the daemon still serves.
  const notify = await startNotifySocket(tempDir());
  cleanups.push(() => notify.close());
  const d2 = await startDaemon({ dir: tempDir(), sshConfigPath, env: { NOTIFY_SOCKET: notify.path, PATH: '/nonexistent' } });
  const mux2 = await SshMux.connect({ socket: d2.socket });
  assert.equal((await mux2.exec('node', 'echo still')).stdout.toString(), 'still\n');
  assert.match(d2.logs(), /cannot notify systemd/);
  mux2.close();
});

test('reload keeps unchanged connections, replaces changed ones after their sessions, and refuses a bad config', async () => {
  const [sshd, other] = await Promise.all([startSshd(), startSshd()]);
  const dir = tempDir();
  const { sshConfigPath } = writeClientConfig(dir, [{ alias: 'node', sshd }, { alias: 'other', sshd: other }]);
  const configPath = path.join(dir, 'daemon.json');
  fs.writeFileSync(configPath, JSON.stringify({ maxSessions: 10 }));
  const daemon = await startDaemon({ dir, sshConfigPath, args: ['--config', configPath] });
  const mux = await SshMux.connect({ socket: daemon.socket });
  assert.equal((await mux.exec('node', 'echo a')).code, 0);
  assert.equal((await mux.exec('other', 'echo b')).code, 0);
  assert.equal(sshd.logins(), 1);

  // Change only `node`; a long session runs on it meanwhile.
  const long = mux.spawn('node', 'sleep 2; echo survived', { stdin: false });
  let out = '';
  long.stdout.on('data', (d) => { out += d; });
  await new Promise((r) => setTimeout(r, 300));
  fs.writeFileSync(sshConfigPath, fs.readFileSync(sshConfigPath, 'utf8').replace(/(Host node\n)/, '$1  ServerAliveInterval 7\n'));
  const r1 = ctl(daemon.socket, 'reload');
  assert.equal(r1.status, 0, r1.out);
  assert.match(r1.out, /reloaded: 1 pools kept their connections, 1 replaced/);
  // The running session finishes on the old connection; new work gets a new one.
  assert.equal((await long.exited).code, 0);
  assert.equal(out, 'survived\n');
  assert.equal((await mux.exec('node', 'echo c')).code, 0);
  assert.equal(sshd.logins(), 2);
  assert.ok(await waitFor(async () => (await mux.status()).hosts!.filter((h) => h.name === 'node').flatMap((h) => h.connections ?? []).length === 1, 5000),
    'the old connection did not close after its session');
  // `other` did not change: it kept its connection.
  assert.equal((await mux.exec('other', 'echo d')).code, 0);
  assert.equal(other.logins(), 1);

  // A bad daemon config: refused with a clear line; the old one stays.
  fs.writeFileSync(configPath, '{"maxSessions": "lots"}');
  const r2 = ctl(daemon.socket, 'reload');
  assert.equal(r2.status, 1);
  assert.match(r2.out, /reload refused, the old configuration stays: .*maxSessions/);
  daemon.child.kill('SIGHUP');
  assert.ok(await waitFor(() => /reload refused: the new configuration is invalid; keeping the old one/.test(daemon.logs()), 5000));
  assert.equal((await mux.exec('node', 'echo e')).code, 0);
  assert.equal(sshd.logins(), 2);
  mux.close();
});

test('socket activation: the daemon serves on the socket systemd passed and leaves it in place on exit', async () => {
  const { dir, sshConfigPath } = await node();
  const sock = path.join(dir, 'activated.sock');
  // Like systemd: bind and listen, then exec the daemon with the socket as fd 3 and LISTEN_PID its own pid.
  const launcher = String.raw`
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o600); s.listen(128)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execve(sys.argv[2], [sys.argv[2]] + sys.argv[3:], env)
`;
  const child = spawn('python3', ['-c', launcher, sock, process.execPath, MAIN, '--socket', sock, '-F', sshConfigPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  cleanups.push(() => child.kill('SIGKILL'));
  assert.ok(await waitFor(() => /sshmuxd listening/.test(log), 10_000), log);
  assert.match(log, /"activated":true/);
  const mux = await SshMux.connect({ socket: sock });
  assert.equal((await mux.exec('node', 'echo activated')).stdout.toString(), 'activated\n');
  mux.close();
  child.kill('SIGTERM');
  const code = await new Promise((r) => child.once('exit', r));
  assert.equal(code, 0, log);
  assert.ok(fs.lstatSync(sock).isSocket(), 'the daemon removed the socket unit\'s socket');
});

test('sshmuxctl check, drain and stop', async () => {
  const { sshd, dir, sshConfigPath } = await node();
  fs.appendFileSync(sshConfigPath, '\nHost dead\n  HostName 127.0.0.1\n  Port 1\n  ConnectTimeout 3\n');
  const daemon = await startDaemon({ dir, sshConfigPath });
  const ok = ctl(daemon.socket, 'check', 'node');
  assert.equal(ok.status, 0, ok.out);
  assert.match(ok.out, /^node \(.*@127\.0\.0\.1:\d+\): handshake ok in \d+ ms/);
  const dead = ctl(daemon.socket, 'check', 'dead');
  assert.equal(dead.status, 1);
  assert.match(dead.out, /^dead: REFUSED: /);
  const json = JSON.parse(ctl(daemon.socket, '--json', 'check', 'dead').out);
  assert.equal(json.ok, false);
  assert.equal(json.code, 'REFUSED');
  assert.match(ctl(daemon.socket, 'check').out, /check needs one HOST/);

  const mux = await SshMux.connect({ socket: daemon.socket });
  await mux.exec('node', 'true');
  const logins = sshd.logins();
  const drained = ctl(daemon.socket, 'drain', 'node');
  assert.equal(drained.status, 0, drained.out);
  assert.match(drained.out, /node: drained; its 1 connections close once their sessions end/);
  await mux.exec('node', 'true');
  assert.equal(sshd.logins(), logins + 1, 'drain did not make the next request open a fresh connection');

  const stopped = ctl(daemon.socket, 'stop');
  assert.equal(stopped.status, 0, stopped.out);
  assert.equal(await daemon.exited, 0);
  mux.close();
});

test('reload moves requests waiting for a changed host to its new pool, where they run at once', async () => {
  const { sshd, dir, sshConfigPath } = await node();
  const daemon = await startDaemon({ dir, sshConfigPath, config: { maxSessions: 1, maxConnections: 1 } });
  const mux = await SshMux.connect({ socket: daemon.socket });
  const long = mux.spawn('node', 'sleep 8', { stdin: false });
  await new Promise((r) => long.once('started', r));
  // Waits: the only slot of the only connection is taken.
  const started = Date.now();
  const waiting = mux.exec('node', 'echo moved', { timeoutMs: 20_000 });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await mux.status()).hosts!.find((h) => h.name === 'node')!.queued, 1);
  fs.writeFileSync(sshConfigPath, fs.readFileSync(sshConfigPath, 'utf8').replace(/(Host node\n)/, '$1  ServerAliveInterval 9\n'));
  assert.equal(ctl(daemon.socket, 'reload').status, 0);
  const r = await waiting;
  assert.equal(r.stdout.toString(), 'moved\n');
  assert.ok(Date.now() - started < 6000, `the waiting request ran only after ${Date.now() - started} ms`);
  assert.equal(sshd.logins(), 2, 'the moved request did not get a connection with the new settings');
  long.cancel();
  mux.close();
});

test('reload and stop are refused on a group-shared socket, where the service manager owns the daemon', async () => {
  const { dir, sshConfigPath } = await node();
  const group = fs.readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.split(':')[2] === String(process.getgid!()))!.split(':')[0];
  const daemon = await startDaemon({ dir, sshConfigPath, config: { socketGroup: group } });
  assert.equal(fs.statSync(daemon.socket).mode & 0o777, 0o660);
  for (const cmd of ['reload', 'stop']) {
    const r = ctl(daemon.socket, cmd);
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /refused on a group-shared socket; use systemctl reload\/stop sshmuxd/);
  }
  assert.equal(ctl(daemon.socket, 'check', 'node').status, 0);
  assert.equal(daemon.child.exitCode, null);
});
