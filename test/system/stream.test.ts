// Memory stays bounded whatever the output size: flow control reaches the
// remote writer instead of buffering in the daemon.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
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
 * The daemon's peak RSS streaming 1 GiB, by Node: 116-125 MiB on Node 20
 * and 22; 160-191 MiB on Node 24 and 26 (V8 13 and 14: per GiB 7-11
 * scavenges and about 23 mark-compacts where Node 22 makes 42-52 and 1, and
 * Buffers live longer: up to 74 MiB of them against 32), measured 2026-12
 * on 2 shared cores (README: Benchmarks, "Which Node"). The same code; the
 * bound is each Node's, not one loosened for all.
 */
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
const RSS_BOUND_MIB = NODE_MAJOR >= 24 ? 210 : 150;

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
