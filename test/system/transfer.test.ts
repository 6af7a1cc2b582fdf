// File transfer over pooled SFTP sessions: 100 MB each way intact, SFTP
// sessions reused between transfers, server refusals as REMOTE_FILE, and
// idle SFTP sessions giving their slots back to commands.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { SshMuxError, type TransferProgress } from '../../client-sdk';
import { tempDir, type Sshd } from '../helpers/sshd';
import { startWorld } from '../helpers/world';


async function setup(opts: { maxSessions?: number; config?: Record<string, unknown> } = {}) {
  const { sshd, daemon, mux } = await startWorld({ alias: 'node', sshd: { maxSessions: opts.maxSessions ?? 10 }, config: opts.config });
  // A directory the login user owns, for the remote side of the transfers.
  const remoteDir = path.join(tempDir(), 'files');
  fs.mkdirSync(remoteDir);
  fs.chownSync(remoteDir, sshd.user.uid, sshd.user.gid);
  return { sshd, daemon, mux, remoteDir, localDir: tempDir() };
}

const sftpSessions = (sshd: Sshd): number => (sshd.log().match(/Starting session: subsystem 'sftp'/g) ?? []).length;

function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

test('100 MB upload and download with equal checksums, progress to the total, and the SFTP session reused', async () => {
  const { sshd, mux, remoteDir, localDir } = await setup();
  const src = path.join(localDir, 'big.bin');
  const fd = fs.openSync(src, 'w', 0o640);
  for (let i = 0; i < 100; i++) fs.writeSync(fd, randomBytes(1024 * 1024));
  fs.closeSync(fd);
  const remote = path.join(remoteDir, 'big.bin');

  const progress: TransferProgress[] = [];
  const up = mux.upload('node', src, remote);
  up.on('progress', (p: TransferProgress) => progress.push(p));
  const upResult = await up;
  assert.equal(upResult.bytes, 100 * 1024 * 1024);
  assert.equal(sha256File(remote), sha256File(src));
  assert.equal(fs.statSync(remote).mode & 0o777, 0o640, 'the local mode was not kept');
  assert.ok(progress.length > 10);
  assert.ok(progress.every((p, i) => p.total === 100 * 1024 * 1024 && (i === 0 || p.bytes > progress[i - 1].bytes)));
  assert.equal(progress[progress.length - 1].bytes, 100 * 1024 * 1024);

  const back = path.join(localDir, 'back.bin');
  let last: TransferProgress | undefined;
  const down = mux.download('node', remote, back);
  down.on('progress', (p: TransferProgress) => { last = p; });
  const downResult = await down;
  assert.equal(downResult.bytes, 100 * 1024 * 1024);
  assert.equal(sha256File(back), sha256File(src));
  assert.deepEqual(last, { bytes: 100 * 1024 * 1024, total: 100 * 1024 * 1024 });
  assert.deepEqual(fs.readdirSync(localDir).sort(), ['back.bin', 'big.bin'], 'a partial file was left behind');
  // One connection, one SFTP session for both transfers.
  assert.equal(sshd.logins(), 1);
  assert.equal(sftpSessions(sshd), 1);
  mux.close();
});

test('60 transfers at once against MaxSessions 10: all intact, at most 8 logins, SFTP sessions reused', async () => {
  const { sshd, mux, remoteDir } = await setup();
  const bodies = Array.from({ length: 30 }, (_, i) => randomBytes(64 * 1024 + i * 4099));
  const ups = await Promise.all(bodies.map((b, i) => mux.upload('node', b, path.join(remoteDir, `f${i}`)).then(() => true, (e) => (e as Error).message)));
  assert.deepEqual(ups.filter((r) => r !== true), []);
  const downs = await Promise.all(bodies.map(async (b, i) => {
    const sink = new PassThrough();
    const chunks: Buffer[] = [];
    sink.on('data', (d: Buffer) => chunks.push(d));
    await mux.download('node', path.join(remoteDir, `f${i}`), sink);
    return Buffer.concat(chunks).equals(b) || `f${i} differs`;
  }));
  assert.deepEqual(downs.filter((r) => r !== true), []);
  assert.ok(sshd.logins() <= 8, `${sshd.logins()} logins`);
  // 60 transfers in two waves of 30: the second wave reuses the first's sessions.
  assert.ok(sftpSessions(sshd) <= 40, `${sftpSessions(sshd)} SFTP sessions for 60 transfers`);
  mux.close();
});

test('server refusals are REMOTE_FILE with the path and the reason; a failed source leaves no complete file', async () => {
  const { mux, remoteDir, localDir } = await setup();
  await assert.rejects(mux.download('node', path.join(remoteDir, 'missing'), path.join(localDir, 'x')).done, (e: SshMuxError) => {
    assert.equal(e.code, 'REMOTE_FILE');
    assert.match(e.message, /cannot open .*missing on node: .*no such file/i);
    return true;
  });
  assert.deepEqual(fs.readdirSync(localDir), [], 'a failed download left a file');
  await assert.rejects(mux.upload('node', Buffer.from('x'), path.join(remoteDir, 'no-dir', 'f')).done,
    (e: SshMuxError) => e.code === 'REMOTE_FILE' && /no-dir\/f/.test(e.message));
  await assert.rejects(mux.upload('node', Buffer.from('x'), '/etc/sshmux-not-allowed').done,
    (e: SshMuxError) => e.code === 'REMOTE_FILE' && /permission denied/i.test(e.message));
  await assert.rejects(mux.upload('node', path.join(localDir, 'absent'), path.join(remoteDir, 'f')).done,
    (e: SshMuxError) => e.code === 'BAD_REQUEST' && /cannot read/.test(e.message));
  // A source stream that fails half way: the call is cancelled, the error says why.
  let n = 0;
  const failing = new Readable({
    read() {
      if (++n > 5) this.destroy(new Error('disk read error'));
      else this.push(randomBytes(64 * 1024));
    },
  });
  await assert.rejects(mux.upload('node', failing, path.join(remoteDir, 'partial')).done,
    (e: SshMuxError) => e.code === 'CANCELLED' && /disk read error/.test(e.message));
  // The daemon still serves this client.
  assert.equal((await mux.exec('node', 'echo fine')).stdout.toString(), 'fine\n');
  mux.close();
});

test('idle pooled SFTP sessions give their slots back when commands need them', async () => {
  const { sshd, mux, remoteDir } = await setup({ maxSessions: 2, config: { maxSessions: 2, maxConnections: 1 } });
  await Promise.all([0, 1].map((i) => mux.upload('node', Buffer.from(`f${i}`), path.join(remoteDir, `f${i}`))));
  const status = await mux.status();
  assert.equal(status.hosts![0].connections![0].sessions, 2, 'the two SFTP sessions were not kept for reuse');
  const started = Date.now();
  const r = await mux.exec('node', 'echo slot', { timeoutMs: 10_000 });
  assert.equal(r.stdout.toString(), 'slot\n');
  assert.ok(Date.now() - started < 5000, `the exec waited ${Date.now() - started} ms for a slot`);
  assert.equal(sshd.logins(), 1);
  mux.close();
});
