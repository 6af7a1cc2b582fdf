// A partitioned hop: the jump host answers while the node behind it does
// not. The link between the jump host's sshd and the node's is a long link
// (test/helpers/long-link.ts) that freezes, or the node's port is closed, or
// nothing answers its TCP opens at all. Each time, the error names the hop
// that failed (the jump host is up; its connection to the node went silent,
// was refused, got no answer), not a generic timeout, and `sshmuxctl status`
// shows the node through its jump host, with that error, beside a jump host
// that is fine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { SshMux, type SshMuxError } from '../../client-sdk';
import { startDaemon } from '../helpers/daemon';
import { startBlackhole, startLongLink } from '../helpers/long-link';
import { startSshd, tempDir, writeClientConfig, type Sshd } from '../helpers/sshd';

const SSHMUXCTL = path.join(__dirname, '..', '..', 'cli', 'sshmuxctl.js');

/** A daemon that reaches `node` (at host:port as the jump host sees it) through `bastion`. */
async function behindBastion(bastion: Sshd, node: Sshd, port: number, extra: string[] = []): Promise<{ mux: SshMux; socket: string }> {
  const dir = tempDir();
  const client = writeClientConfig(dir, [
    { alias: 'bastion', sshd: bastion },
    { alias: 'node', sshd: { ...node, port }, extra: ['ProxyJump bastion', 'ConnectTimeout 3', 'ServerAliveInterval 1', 'ServerAliveCountMax 2', ...extra] },
  ]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  return { mux: await SshMux.connect({ socket: daemon.socket }), socket: daemon.socket };
}

function failure(p: Promise<unknown>): Promise<SshMuxError> {
  return p.then(() => assert.fail('it succeeded'), (e: SshMuxError) => e);
}

function statusText(socket: string): Promise<string> {
  return new Promise((resolve, reject) => execFile(process.execPath, [SSHMUXCTL, 'status'], { env: { ...process.env, SSHMUX_SOCKET: socket } },
    (err, stdout) => (err ? reject(err) : resolve(stdout))));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('the link from the jump host to the node freezes: the running command and a new one name that hop, status shows it beside a healthy jump host', async (t) => {
  const [bastion, node] = await Promise.all([startSshd(), startSshd()]);
  const hop = await startLongLink({ target: { host: node.host, port: node.port }, rttMs: 20 });
  const { mux, socket } = await behindBastion(bastion, node, hop.port);
  assert.equal((await mux.exec('node', 'echo up')).stdout.toString(), 'up\n');
  const running = mux.spawn('node', 'sleep 60', { stdin: false, timeoutMs: 60_000 });
  await new Promise((resolve) => running.once('started', resolve));

  hop.freeze();
  const lost = await failure(running.exited);
  assert.equal(lost.code, 'CONNECTION_LOST', lost.message);
  assert.match(lost.message, /the link to 127\.0\.0\.1:\d+ through jump host bastion went silent: nothing arrived for 2\.\d s .*while bastion itself answered \d\.\d s ago: the hop from bastion to 127\.0\.0\.1 is cut/);

  // A new connection: bastion opens TCP to the frozen link, and no banner comes back. The request fails
  // with that, or, waiting for a later attempt, past its deadline with that as the last cause.
  const fresh = await failure(mux.exec('node', 'true', { timeoutMs: 8000 }));
  assert.ok(['HANDSHAKE_TIMEOUT', 'DEADLINE_EXCEEDED'].includes(fresh.code), `${fresh.code}: ${fresh.message}`);
  assert.match(fresh.message, /jump host bastion is up, but \[127\.0\.0\.1\]:\d+ behind it sent no SSH banner within ConnectTimeout 3 s \(bastion answered \d+\.\d s ago and opened TCP to it\)/);
  // The jump host itself is fine, and says so.
  assert.equal((await mux.exec('bastion', 'echo fine')).stdout.toString(), 'fine\n');

  const hosts = (await mux.status()).hosts!;
  const n = hosts.find((h) => h.name === 'node')!;
  const b = hosts.find((h) => h.name === 'bastion')!;
  assert.equal(n.via, 'bastion');
  assert.match(n.lastError!, /jump host bastion is up/);
  assert.equal(b.via ?? '', '');
  assert.ok(b.connections!.some((c) => c.state === 'ready' && (c.rttMs ?? 0) > 0), 'the jump host has no measured, ready connection');
  const text = await statusText(socket);
  t.diagnostic(text);
  const nodeLine = text.split('\n').find((l) => l.startsWith('node '))!;
  assert.match(nodeLine, / bastion /);
  assert.match(nodeLine, /jump host bastion is up/);

  hop.thaw();
  // Back once the link is: within the request's deadline, past the backoff.
  const back = await mux.exec('node', 'echo back', { timeoutMs: 30_000 });
  assert.equal(back.stdout.toString(), 'back\n');
  mux.close();
});

test('the node\'s port is closed: REFUSED, naming the jump host that is up and the port it was refused', async () => {
  const [bastion, node] = await Promise.all([startSshd(), startSshd()]);
  const closedPort = node.port;
  await node.stop();
  const { mux } = await behindBastion(bastion, node, closedPort);
  const e = await failure(mux.exec('node', 'true', { timeoutMs: 20_000 }));
  assert.equal(e.code, 'REFUSED', e.message);
  assert.match(e.message, new RegExp(`^jump host bastion is up, but its TCP connection to 127\\.0\\.0\\.1:${closedPort} was refused \\(.*\\): nothing listens on port ${closedPort} of 127\\.0\\.0\\.1 as bastion sees it`));
  mux.close();
});

test('nothing answers the jump host\'s TCP open (SYNs dropped): CONNECT_TIMEOUT within ConnectTimeout, naming the hop', async () => {
  const [bastion, node] = await Promise.all([startSshd(), startSshd()]);
  const blackhole = await startBlackhole();
  try {
    const { mux } = await behindBastion(bastion, node, blackhole.port);
    // The jump host's connection is made first, as it would be in use already.
    assert.equal((await mux.exec('bastion', 'true')).code, 0);
    await sleep(100);
    const started = performance.now();
    const e = await failure(mux.exec('node', 'true', { timeoutMs: 20_000 }));
    const ms = performance.now() - started;
    assert.equal(e.code, 'CONNECT_TIMEOUT', e.message);
    assert.match(e.message, new RegExp(`^jump host bastion is up, but its TCP connection to \\[127\\.0\\.0\\.1\\]:${blackhole.port} got no answer within ConnectTimeout 3 s \\(bastion answered \\d+\\.\\d s ago\\): the network between bastion and 127\\.0\\.0\\.1 is cut`));
    assert.ok(ms < 3000 * 3 + 2000, `the call took ${ms.toFixed(0)} ms`);
    mux.close();
  } finally {
    blackhole.close();
  }
});
