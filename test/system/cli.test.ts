// sshmuxctl: the daemon's state for people (a table) and programs (JSON).
// The sshmux wrapper has its own file, wrapper.test.ts.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import type { DaemonProc } from '../helpers/daemon';
import { ssh2NativeCrypto } from '../../daemon/ssh/ssh2';
import { tempDir } from '../helpers/sshd';
import { startWorld } from '../helpers/world';

const SSHMUX = path.join(__dirname, '..', '..', 'cli', 'sshmux.js');
const SSHMUXCTL = path.join(__dirname, '..', '..', 'cli', 'sshmuxctl.js');
let daemon: DaemonProc;

// The daemon and sshd stop when the file ends (helpers/daemon.ts).
before(async () => {
  ({ daemon } = await startWorld());
});

function run(bin: string, args: string[], input?: string) {
  return spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8', input, timeout: 30_000, env: { ...process.env, SSHMUX_SOCKET: daemon.socket },
  });
}

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

test('sshmuxctl status names the daemon\'s Node and whether ssh2\'s crypto binding is in use', () => {
  // The daemon runs on this Node with these node_modules: what it reports is what this process finds.
  const status = JSON.parse(run(SSHMUXCTL, ['status', '--json']).stdout);
  assert.deepEqual([status.nodeVersion, status.ssh2CryptoBinding], [process.version, ssh2NativeCrypto()]);
  const line = `Node ${process.version}, ssh2 crypto: ${ssh2NativeCrypto() ? 'its C++ binding' : 'JavaScript'}`;
  const table = run(SSHMUXCTL, ['status']).stdout;
  assert.ok(table.split('\n').some((l) => l.startsWith(line)), `no line "${line}" in:\n${table}`);
});

test('sshmuxctl without a daemon: exit 1 and what to do', () => {
  const r = spawnSync(process.execPath, [SSHMUXCTL, 'status'], {
    encoding: 'utf8', env: { ...process.env, SSHMUX_SOCKET: path.join(tempDir(), 'none.sock') },
  });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no sshmuxd socket at .*start the daemon/);
});
