// The command-line ways in: sshmux (first version) and sshmuxctl.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { cleanupAll, startSshd, tempDir, writeClientConfig } from './helpers/sshd';
import { startDaemon, type DaemonProc } from './helpers/daemon';

const SSHMUX = path.join(__dirname, '..', 'cli', 'sshmux.js');
const SSHMUXCTL = path.join(__dirname, '..', 'cli', 'sshmuxctl.js');
let daemon: DaemonProc;

before(async () => {
  const sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
});

after(async () => {
  await daemon?.stop();
  await cleanupAll();
});

function run(bin: string, args: string[], input?: string) {
  return spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8', input, timeout: 30_000, env: { ...process.env, SSHMUX_SOCKET: daemon.socket },
  });
}

test('sshmux host command: output, exit status, arguments joined as ssh joins them', () => {
  const r = run(SSHMUX, ['t', 'echo', 'a  b', ';', 'exit', '7']);
  assert.equal(r.stdout, 'a b\n');
  assert.equal(r.status, 7);
  const piped = run(SSHMUX, ['t', 'tr a-z A-Z'], 'hello\n');
  assert.equal(piped.stdout, 'HELLO\n');
  assert.equal(piped.status, 0);
});

test('sshmux: 255 and an ssh-like message for failures and bad options', () => {
  const unknown = run(SSHMUX, ['no-such-host.invalid', 'true']);
  assert.equal(unknown.status, 255);
  assert.match(unknown.stderr, /^sshmux: could not resolve hostname no-such-host\.invalid/);
  const badOpt = run(SSHMUX, ['-Z', 't', 'true']);
  assert.equal(badOpt.status, 255);
  assert.match(badOpt.stderr, /unknown option -- Z/);
  const proxy = run(SSHMUX, ['-o', 'ProxyCommand=nc %h %p', 't', 'true']);
  assert.equal(proxy.status, 255);
  assert.match(proxy.stderr, /ProxyCommand is refused/);
});

test('sshmuxctl status --json describes hosts and connections', () => {
  const warm = run(SSHMUX, ['t', 'true']);
  assert.equal(warm.status, 0);
  const r = run(SSHMUXCTL, ['status', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const status = JSON.parse(r.stdout);
  const host = status.hosts.find((h: { name: string }) => h.name === 't');
  assert.ok(host);
  assert.equal(host.queued, 0);
  assert.ok(host.handshakes.ok >= 1);
  assert.equal(host.handshakes.failed, 0);
  assert.equal(host.connections[0].state, 'ready');
  assert.equal(host.connections[0].maxSessions, 10);
  assert.equal(typeof host.connections[0].sessions, 'number');
  const table = run(SSHMUXCTL, ['status']);
  assert.match(table.stdout, /^HOST\s+DESTINATION/m);
  assert.match(table.stdout, /^t\s+/m);
});

test('sshmuxctl without a daemon: exit 1 and what to do', () => {
  const r = spawnSync(process.execPath, [SSHMUXCTL, 'status'], {
    encoding: 'utf8', env: { ...process.env, SSHMUX_SOCKET: path.join(tempDir(), 'none.sock') },
  });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no sshmuxd socket at .*start the daemon/);
});
