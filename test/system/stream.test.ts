// Memory stays bounded whatever the output size: flow control reaches the
// remote writer instead of buffering in the daemon. And output arrives
// byte for byte: the daemon reads sshd's bytes into memory it reuses and
// copies them into its frames (ssh2 patch 017, daemon/rpc/frame-writer.ts).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SshMux } from '../../client-sdk';
import { cleanupAll, startSshd, tempDir, writeClientConfig } from '../helpers/sshd';
import { startDaemon, type DaemonProc } from '../helpers/daemon';

let daemon: DaemonProc | undefined;
after(async () => {
  await daemon?.stop();
  await cleanupAll();
});

const GiB = 1024 * 1024 * 1024;
/**
 * The daemon's peak RSS streaming 1 GiB: 116-125 MiB on every Node since
 * streaming reuses its memory (docs/hot-path.md); before, Node 24 and 26
 * (V8 13 and 14, which scavenge rarely while streaming) kept up to 74 MiB
 * of short-lived Buffers and peaked at 160-191 MiB. One bound for all.
 */
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
const RSS_BOUND_MIB = 150;

test(`1 GiB of stdout through the daemon with its RSS under ${RSS_BOUND_MIB} MiB (Node ${NODE_MAJOR})`, async (t) => {
  const sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  const mux = await SshMux.connect({ socket: daemon.socket });
  const started = performance.now();
  const proc = mux.spawn('t', `head -c ${GiB} /dev/zero`, { stdin: false });
  let bytes = 0;
  let nonZero = 0;
  proc.stdout.on('data', (d: Buffer) => {
    bytes += d.length;
    if (d[0] !== 0 || d[d.length - 1] !== 0) nonZero++;
  });
  const r = await proc.exited;
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(r.code, 0);
  assert.equal(bytes, GiB);
  assert.equal(nonZero, 0);
  const peak = daemon.peakRssMiB();
  t.diagnostic(`1 GiB in ${((performance.now() - started) / 1000).toFixed(1)} s; daemon peak RSS ${peak.toFixed(1)} MiB`);
  assert.ok(peak < RSS_BOUND_MIB, `daemon peak RSS ${peak.toFixed(1)} MiB`);
  mux.close();
});

test('a reader that stops reading stalls the remote writer instead of growing the daemon', async () => {
  const mux = await SshMux.connect({ socket: daemon!.socket });
  const before = daemon!.rssMiB();
  const proc = mux.spawn('t', 'head -c 400000000 /dev/zero; echo done >&2', { stdin: false });
  let got = 0;
  let resumed = false;
  proc.stdout.on('data', (d: Buffer) => {
    got += d.length;
    if (!resumed && got > 4 * 1024 * 1024) proc.stdout.pause();
  });
  await new Promise((r) => setTimeout(r, 1500));
  const stalledAt = got;
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(got - stalledAt < 2 * 1024 * 1024, 'data kept arriving at a paused reader');
  assert.ok(daemon!.rssMiB() - before < 64, `daemon grew by ${(daemon!.rssMiB() - before).toFixed(1)} MiB for one stalled reader`);
  resumed = true;
  proc.stdout.resume();
  const r = await proc.exited;
  assert.equal(got, 400_000_000);
  assert.equal(r.code, 0);
  mux.close();
});

test('stdout and stderr of three calls at once, one read slowly, arrive byte for byte; 4 rounds', async () => {
  const dir = tempDir();
  const file = path.join(dir, 'random.bin');
  fs.writeFileSync(file, crypto.randomBytes(24 * 1024 * 1024), { mode: 0o644 });
  const expected = crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  const mux = await SshMux.connect({ socket: daemon!.socket });
  for (let round = 0; round < 4; round++) {
    const calls = [0, 1, 2].map(async (k) => {
      // Both streams at once; stderr first in one, so the channel can close while stderr still holds output.
      const command = k === 1 ? `cat ${file} >&2 & cat ${file}; wait` : `cat ${file} & cat ${file} >&2; wait`;
      const proc = mux.spawn('t', command, { stdin: false });
      const out = crypto.createHash('sha256');
      const err = crypto.createHash('sha256');
      let chunks = 0;
      proc.stdout.on('data', (d: Buffer) => {
        out.update(d);
        // The slow reader: its window closes, and the daemon keeps what sshd sent meanwhile.
        if (k === 2 && ++chunks % 40 === 0) {
          proc.stdout.pause();
          setTimeout(() => proc.stdout.resume(), 15);
        }
      });
      proc.stderr.on('data', (d: Buffer) => err.update(d));
      const r = await proc.closed;
      assert.equal(r.code, 0);
      return [out.digest('hex'), err.digest('hex')];
    });
    for (const [k, [out, err]] of (await Promise.all(calls)).entries()) {
      assert.equal(out, expected, `round ${round}, call ${k}: stdout altered`);
      assert.equal(err, expected, `round ${round}, call ${k}: stderr altered`);
    }
  }
  mux.close();
});
