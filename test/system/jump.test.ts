// Jump hosts: nodes behind a bastion ride the bastion's pooled connection
// as forwarding channels, which take none of its MaxSessions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { SshMux, SshMuxError } from '../../client-sdk';
import { startSshd, tempDir, writeClientConfig } from '../helpers/sshd';
import { startDaemon } from '../helpers/daemon';

const SSHMUX = path.join(__dirname, '..', '..', 'cli', 'sshmux.js');

test('120 concurrent execs to two nodes behind one jump host: all succeed, the jump host sees at most 2 logins, each node at most 8', async () => {
  const [jump, n1, n2] = await Promise.all([startSshd({ maxSessions: 10 }), startSshd({ maxSessions: 10 }), startSshd({ maxSessions: 10 })]);
  const dir = tempDir();
  const client = writeClientConfig(dir, [
    { alias: 'bastion', sshd: jump },
    { alias: 'gpu1', sshd: n1, extra: ['ProxyJump bastion'] },
    { alias: 'gpu2', sshd: n2, extra: ['ProxyJump bastion'] },
  ]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  const mux = await SshMux.connect({ socket: daemon.socket });
  const results = await Promise.all(Array.from({ length: 120 }, (_, i) => {
    const host = i % 2 ? 'gpu1' : 'gpu2';
    return mux.exec(host, `sleep 0.2; echo ${host} ${i}`).then((r) => r.stdout.toString() === `${host} ${i}\n` && r.code === 0,
      (e: SshMuxError) => `${e.code}: ${e.message}`);
  }));
  assert.deepEqual(results.filter((r) => r !== true), []);
  assert.ok(jump.logins() <= 2, `the jump host saw ${jump.logins()} logins`);
  assert.ok(jump.logins() >= 1);
  assert.ok(n1.logins() <= 8 && n1.logins() >= 1, `gpu1 saw ${n1.logins()} logins`);
  assert.ok(n2.logins() <= 8 && n2.logins() >= 1, `gpu2 saw ${n2.logins()} logins`);
  const status = await mux.status();
  const bastion = status.hosts!.find((h) => h.name === 'bastion')!;
  assert.ok(bastion.connections!.every((c) => (c.sessions ?? 0) === 0), 'tunnels took session slots on the jump host');
  mux.close();
});

test('a chain of two jump hosts works; a dead second hop gives JUMP_FAILED naming it', async () => {
  const [j1, j2, node] = await Promise.all([startSshd(), startSshd(), startSshd()]);
  const dir = tempDir();
  const client = writeClientConfig(dir, [
    { alias: 'j1', sshd: j1 },
    { alias: 'j2', sshd: j2 },
    { alias: 'deep', sshd: node, extra: ['ProxyJump j1,j2', 'ConnectTimeout 5'] },
  ]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  const mux = await SshMux.connect({ socket: daemon.socket });
  assert.equal((await mux.exec('deep', 'echo deep')).stdout.toString(), 'deep\n');
  assert.equal(j1.logins(), 1);
  assert.equal(j2.logins(), 1);
  // The wrapper's -J, on the same pooled jump connection.
  const viaJ = spawnSync(process.execPath, [SSHMUX, '-J', 'j1', 'j2', 'echo through j1'],
    { env: { ...process.env, SSHMUX_SOCKET: daemon.socket }, timeout: 30_000 });
  assert.equal(viaJ.stdout.toString(), 'through j1\n', viaJ.stderr.toString());
  assert.equal(j1.logins(), 1, '-J opened another connection to the jump host');

  // A second daemon, with j2 gone: the failure names the hop.
  await j2.stop();
  const daemon2 = await startDaemon({ dir: tempDir(), sshConfigPath: client.sshConfigPath });
  const mux2 = await SshMux.connect({ socket: daemon2.socket });
  const started = Date.now();
  await assert.rejects(mux2.exec('deep', 'true', { timeoutMs: 30_000 }), (e: SshMuxError) => {
    assert.equal(e.code, 'JUMP_FAILED', e.message);
    assert.match(e.message, /jump host j2 failed: REFUSED/);
    return true;
  });
  assert.ok(Date.now() - started < 30_000);
  mux.close();
  mux2.close();
});

test('sshmux -W as an OpenSSH ProxyCommand reaches a node; the SDK openTcp carries a TCP stream; neither takes a session', async () => {
  const [bastion, node] = await Promise.all([startSshd(), startSshd()]);
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 'bastion', sshd: bastion }]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  // OpenSSH's own client, with its own config, tunnelling through the daemon's pooled bastion connection.
  const own = writeClientConfig(tempDir(), [{ alias: 'node', sshd: node, extra: [`ProxyCommand ${process.execPath} ${SSHMUX} -W %h:%p bastion`] }]);
  for (let i = 0; i < 3; i++) {
    const r = spawnSync('ssh', ['-F', own.sshConfigPath, '-o', 'BatchMode=yes', 'node', `echo hop ${i}`],
      { env: { ...process.env, SSHMUX_SOCKET: daemon.socket }, timeout: 30_000 });
    assert.equal(r.stdout.toString(), `hop ${i}\n`, r.stderr.toString());
  }
  assert.equal(bastion.logins(), 1, 'each ProxyCommand opened its own connection to the bastion');
  assert.equal(node.logins(), 3);

  const mux = await SshMux.connect({ socket: daemon.socket });
  const stream = mux.openTcp('bastion', '127.0.0.1', node.port);
  const first = await new Promise<string>((resolve, reject) => {
    stream.once('data', (d: Buffer) => resolve(d.toString()));
    stream.once('error', reject);
  });
  assert.match(first, /^SSH-2\.0-OpenSSH/);
  const host = (await mux.status()).hosts!.find((h) => h.name === 'bastion')!;
  assert.ok(host.connections!.every((c) => (c.sessions ?? 0) === 0), 'a TCP stream took a session slot');
  stream.destroy();
  await assert.rejects(new Promise((resolve, reject) => {
    const refused = mux.openTcp('bastion', '127.0.0.1', 1);
    refused.once('error', reject);
    refused.once('data', resolve);
  }), (e: SshMuxError) => e.code === 'REFUSED' || e.code === 'CONNECT_TIMEOUT');
  mux.close();
});
