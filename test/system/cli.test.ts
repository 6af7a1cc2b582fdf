// sshmuxctl: the daemon's state for people (a table) and programs (JSON),
// checked against what runs: a command's session while it runs, none after.
// The sshmux wrapper has its own file, wrapper.test.ts.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ssh2NativeCrypto } from '../../daemon/ssh/ssh2';
import { waitFor, type DaemonProc } from '../helpers/daemon';
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

interface HostJson {
  name: string; state: string; queued: number; sessions: number; sessionCapacity: number; requests: number; maxSessions: number;
  handshakes: { ok: number; failed: number; byCode: Record<string, number> };
  connections: Array<{ state: string; sessions: number; maxSessions: number }>;
}

/** sshmuxctl status --json: the totals, and host t. */
function status(): { totals: { sessions: number; connections: number }; t: HostJson | undefined } {
  const r = run(SSHMUXCTL, ['status', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  return { totals: s.totals, t: s.hosts.find((h: HostJson) => h.name === 't') };
}

test('sshmuxctl status, as JSON and as a table, shows a running command\'s session on the pooled connection, and none once it ends', async () => {
  const warm = run(SSHMUX, ['t', 'true']);
  assert.equal(warm.status, 0, warm.stderr);
  const idle = status().t!;
  assert.deepEqual([idle.sessions, idle.connections.length, idle.connections[0].sessions], [0, 1, 0], 'a finished command left a session');
  // A second command, held running: it rides the same connection, and its session shows.
  const long = spawn(process.execPath, [SSHMUX, 't', 'sleep 30'], { stdio: 'ignore', env: { ...process.env, SSHMUX_SOCKET: daemon.socket } });
  try {
    assert.ok(await waitFor(() => status().t?.sessions === 1, 15_000, 100), 'the running command\'s session never showed');
    const { totals, t } = status();
    assert.deepEqual({ state: t!.state, queued: t!.queued, sessions: t!.sessions, sessionCapacity: t!.sessionCapacity, maxSessions: t!.maxSessions,
      requests: t!.requests, handshakes: t!.handshakes, connections: t!.connections.map((c) => [c.state, c.sessions, c.maxSessions]) },
    { state: 'ok', queued: 0, sessions: 1, sessionCapacity: 10, maxSessions: 10, requests: 2, handshakes: { ok: 1, failed: 0, byCode: {} },
      connections: [['ready', 1, 10]] });
    assert.deepEqual([totals.sessions, totals.connections], [1, 1]);
    const table = run(SSHMUXCTL, ['status']);
    assert.equal(table.status, 0, table.stderr);
    assert.match(table.stdout, /^HOST\s+DESTINATION\s+VIA\s+STATE\s+BREAKER\s+CONNS\s+RTT\s+SESSIONS\s+QUEUED\s+HANDSHAKES OK\/FAILED/m);
    // No jump host (VIA -); the connection's measured round trip in ms.
    assert.match(table.stdout, /^t\s+\S+@127\.0\.0\.1:\d+\s+-\s+ok\s+closed\s+1\/8\s+[\d.]+ ms\s+1\/10\s+0\s+1\/0$/m);
  } finally {
    long.kill('SIGTERM');
  }
  assert.ok(await waitFor(() => status().t?.sessions === 0, 15_000, 100), 'the command\'s session outlived it');
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
