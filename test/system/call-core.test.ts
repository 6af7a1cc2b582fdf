// The call core without any door: the daemon's own calls (runCommand, as the
// job poller makes them) go through the same pool, deadlines and cleanup as
// an RPC client's, against a real sshd, in this process.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Code } from '../../proto';
import type { CallEnv } from '../../daemon/call/call';
import { runCommand } from '../../daemon/call/run';
import { defaultDaemonConfig } from '../../daemon/config';
import type { MuxError } from '../../daemon/errors';
import { Agent } from '../../daemon/pool/agent';
import { SshConfigResolver } from '../../daemon/ssh/ssh-config';
import { cleanupAll, remoteProcesses, startSshd, tempDir, writeClientConfig, type Sshd } from '../helpers/sshd';
import { waitFor } from '../helpers/daemon';

const log = pino({ level: 'silent' });
let sshd: Sshd;
let agent: Agent;
let env: CallEnv;
/** What the calls counted: "host code" per call, and exec durations. */
const requests: string[] = [];
const execSeconds: number[] = [];

before(async () => {
  sshd = await startSshd({ maxSessions: 3 });
  const client = writeClientConfig(tempDir(), [{ alias: 't', sshd }]);
  const resolver = new SshConfigResolver({ configFile: client.sshConfigPath });
  resolver.load();
  agent = new Agent(resolver, defaultDaemonConfig(), log);
  env = { agent, log, metrics: { countRequest: (host, code) => requests.push(`${host} ${code}`), observeExec: (s) => execSeconds.push(s) } };
});

after(async () => {
  agent?.destroy();
  await cleanupAll();
});

test('runCommand: exit code, stdout and stderr apart, stdin delivered with its EOF', async () => {
  const r = await runCommand(env, 't', 'cat; echo err >&2; exit 3', { timeoutMs: 10_000, stdin: 'in\n' });
  assert.equal(r.code, 3);
  assert.equal(r.signal, null);
  assert.equal(r.stdout.toString(), 'in\n');
  assert.equal(r.stderr.toString(), 'err\n');
  // Counted into the metrics it was given, as every call is.
  assert.deepEqual(requests, ['t OK']);
  assert.equal(execSeconds.length, 1);
});

test('runCommand shares the pool like any call: 12 at once on MaxSessions 3 all succeed within maxConnections logins', async () => {
  const results = await Promise.all(Array.from({ length: 12 }, (_, i) =>
    runCommand(env, 't', `sleep 0.2; echo ${i}`, { timeoutMs: 20_000 })));
  assert.deepEqual(results.map((r) => r.stdout.toString()), Array.from({ length: 12 }, (_, i) => `${i}\n`));
  assert.ok(sshd.logins() <= 8);
});

test('runCommand: past maxOutput the call is cancelled with OUTPUT_LIMIT and the remote process ends', async () => {
  const marker = `92${Math.floor(Math.random() * 1e6)}`;
  await assert.rejects(runCommand(env, 't', `yes ${marker}`, { timeoutMs: 10_000, maxOutput: 100_000 }),
    (e: MuxError) => e.code === Code.OUTPUT_LIMIT && /100000 bytes/.test(e.message));
  assert.ok(await waitFor(() => remoteProcesses(`yes ${marker}`).length === 0, 5000), 'the remote command outlived its cancelled call');
});

test('runCommand: a deadline ends the remote command with DEADLINE_EXCEEDED; a bad host is BAD_REQUEST without touching the network', async () => {
  const marker = `sleep 93${Math.floor(Math.random() * 1e5)}`;
  const started = Date.now();
  await assert.rejects(runCommand(env, 't', `exec ${marker}`, { timeoutMs: 1000 }),
    (e: MuxError) => e.code === Code.DEADLINE_EXCEEDED && /deadline of 1 s/.test(e.message));
  assert.ok(Date.now() - started < 3000);
  assert.ok(await waitFor(() => remoteProcesses(marker).length === 0, 5000), 'the remote command outlived its deadline');
  await assert.rejects(runCommand(env, '-oProxyCommand=x', 'true', { timeoutMs: 1000 }), (e: MuxError) => e.code === Code.BAD_REQUEST);
});
