// sshmux over a long link (test/helpers/long-link.ts: a relay on loopback
// that adds a round trip), against a real sshd: a warm exec costs one round
// trip, counted in flights at the link rather than timed; a frozen link is
// given up within the keepalive bound and calls made meanwhile run after
// the thaw; windows grow to fill the link for readers that keep up (the
// pool's, and the front door's for a client far away) and not for slow ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SshMuxError } from '../../client-sdk';
import { startLongLink } from '../helpers/long-link';
import { startSshd, tempDir } from '../helpers/sshd';
import { startWorld } from '../helpers/world';
import { waitFor } from '../helpers/daemon';

const SSHMUX = path.join(__dirname, '..', '..', 'cli', 'sshmux.js');
const SSHMUXCTL = path.join(__dirname, '..', '..', 'cli', 'sshmuxctl.js');

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('a warm exec is one round trip over a 40 ms link: through the SDK and through the sshmux command', async () => {
  const sshd = await startSshd({ maxSessions: 10 });
  const link = await startLongLink({ target: { host: sshd.host, port: sshd.port }, rttMs: 40 });
  const { mux, env } = await startWorld({ sshd: { ...sshd, host: link.host, port: link.port } });
  for (let i = 0; i < 5; i++) assert.equal((await mux.exec('t', 'true')).code, 0);

  link.resetCounters();
  const n = 40;
  for (let i = 0; i < n; i++) {
    const r = await mux.exec('t', `echo ${i}`);
    assert.deepEqual([r.code, r.stdout.toString()], [0, `${i}\n`]);
  }
  // A flight down is the server's answer to a flight up. Without the spare
  // channel an exec is two round trips (open, then exec), as ssh's on a
  // ControlMaster is; the pool adds a keepalive round trip per 8 sessions to
  // reuse closed slots.
  const { flights } = link.counters();
  assert.ok(flights.down / n <= 1.2, `${(flights.down / n).toFixed(2)} round trips per warm SDK exec (${JSON.stringify(flights)})`);
  assert.ok(flights.up / n <= 1.2, `${(flights.up / n).toFixed(2)} flights up per warm SDK exec (${JSON.stringify(flights)})`);

  // The command: its session is the same; its start-up is local.
  link.resetCounters();
  const commands = 6;
  for (let i = 0; i < commands; i++) {
    const r = await run(process.execPath, [SSHMUX, 't', `echo c${i}`], env);
    assert.deepEqual([r.code, r.stdout], [0, `c${i}\n`], r.stderr);
  }
  const answered = link.counters().flights.down;
  assert.ok(answered <= commands + 1, `${answered} round trips for ${commands} sshmux commands`);
});

test('a frozen link: running commands end with CONNECTION_LOST within ServerAliveInterval x ServerAliveCountMax, saying the link went silent and for how long; calls made while frozen run after the thaw, without a handshake storm', async (t) => {
  const sshd = await startSshd({ maxSessions: 10 });
  const link = await startLongLink({ target: { host: sshd.host, port: sshd.port }, rttMs: 40 });
  const { mux } = await startWorld({ sshd: { ...sshd, host: link.host, port: link.port }, extra: ['ServerAliveInterval 1', 'ServerAliveCountMax 2'] });
  // A link that answers lives: a quiet command outlasts the bound on the one connection, its
  // keepalives answered (the answers are reads lent to ssh2, which the watch must hear too).
  const quiet = await mux.exec('t', 'sleep 3; echo alive', { timeoutMs: 20_000 });
  assert.deepEqual([quiet.code, quiet.stdout.toString()], [0, 'alive\n']);
  assert.equal((await mux.status()).hosts?.[0]?.connections?.length, 1, 'the answering link was given up and replaced');

  const running = Array.from({ length: 3 }, () => mux.spawn('t', 'sleep 60', { stdin: false, timeoutMs: 120_000 }));
  await Promise.all(running.map((p) => new Promise((resolve) => p.once('started', resolve))));
  const frozeAt = performance.now();
  link.freeze();
  const ended = running.map((p) => p.exited.then(
    () => ({ ms: performance.now() - frozeAt, error: undefined }),
    (error: SshMuxError) => ({ ms: performance.now() - frozeAt, error })));
  await sleep(300);
  // Made while frozen, before the daemon knows: they go to the silent connection first.
  const queued = Array.from({ length: 3 }, (_, i) => mux.exec('t', `echo queued ${i}`, { timeoutMs: 60_000 }));
  const detections = await Promise.all(ended);
  t.diagnostic(`detected ${detections.map((e) => e.ms.toFixed(0)).join(', ')} ms after the freeze (bound 2000 ms)`);
  for (const e of detections) {
    assert.equal(e.error?.code, 'CONNECTION_LOST', e.error?.message ?? 'a command on a frozen link exited');
    assert.match(e.error!.message, /went silent: nothing arrived for 2\.\d s \(ServerAliveInterval 1 s x ServerAliveCountMax 2\)/);
    // The bound counts from the last byte, which came before the freeze.
    assert.ok(e.ms <= 2000 + 250, `detected ${e.ms.toFixed(0)} ms after the freeze, past the 2 s bound`);
  }
  await sleep(4000 - (performance.now() - frozeAt));
  const attempts = link.counters().connectionsWhileFrozen;
  t.diagnostic(`${attempts} connection attempts while frozen`);
  assert.ok(attempts <= 2, `${attempts} connections tried the frozen link`);
  link.thaw();
  const results = await Promise.all(queued.map((p) => p.then((r) => `${r.code} ${r.stdout}`, (e: SshMuxError) => `${e.code}: ${e.message}`)));
  assert.deepEqual(results, ['0 queued 0\n', '0 queued 1\n', '0 queued 2\n']);
  assert.equal((await mux.exec('t', 'echo after')).stdout.toString(), 'after\n');
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

test('windows over a 60 ms link: they grow for a reader that keeps up and not for a slow one, every byte arrives, and what they held is given back', async (t) => {
  const sshd = await startSshd({ maxSessions: 10 });
  const link = await startLongLink({ target: { host: sshd.host, port: sshd.port }, rttMs: 60 });
  const { mux } = await startWorld({ sshd: { ...sshd, host: link.host, port: link.port } });
  assert.equal((await mux.exec('t', 'true')).code, 0);
  const held = async (): Promise<number> => Number((await mux.status()).windows?.heldBytes ?? 0);
  const download = async (bytes: number, readSlowly: boolean): Promise<{ got: number; heldMax: number }> => {
    // Bytes that are not all zero, in order: a lost or reordered chunk shows.
    const proc = mux.spawn('t', `seq 1 ${bytes} | head -c ${bytes}`, { stdin: false });
    let got = 0;
    let text = '';
    let heldMax = 0;
    proc.stdout.on('data', (d: Buffer) => {
      got += d.length;
      if (text.length < 100) text += d.toString();
    });
    proc.stderr.resume();
    let reading: NodeJS.Timeout | undefined;
    if (readSlowly) {
      // 64 KiB every 20 ms: 3 MiB/s, far below what the link carries.
      proc.stdout.pause();
      reading = setInterval(() => proc.stdout.read(Math.min(64 << 10, proc.stdout.readableLength) || undefined), 20);
    }
    const watch = setInterval(() => void held().then((h) => (heldMax = Math.max(heldMax, h))), 50);
    const r = await proc.closed;
    clearInterval(watch);
    clearInterval(reading);
    assert.equal(r.code, 0);
    assert.ok(text.startsWith('1\n2\n3\n4\n'), 'the output does not start as seq does');
    return { got, heldMax };
  };
  const fast = await download(48 << 20, false);
  assert.equal(fast.got, 48 << 20);
  t.diagnostic(`a reader that keeps up: windows held up to ${(fast.heldMax / 2 ** 20).toFixed(1)} MiB beyond the base`);
  assert.ok(fast.heldMax > 0, 'the window never grew over a 60 ms link');
  assert.ok(await waitFor(async () => (await held()) === 0, 5000), 'a finished download kept its window\'s memory');

  const slow = await download(3 << 20, true);
  assert.equal(slow.got, 3 << 20);
  assert.equal(slow.heldMax, 0, 'a slow reader\'s window grew');
});

test('the front door over a 60 ms link: an upload from OpenSSH\'s ssh is granted a window that grows, and arrives whole', async (t) => {
  const sshd = await startSshd({ maxSessions: 10 });
  const dir = tempDir();
  const stateDir = path.join(dir, 'state');
  const { daemon, mux } = await startWorld({ sshd, daemonArgs: ['--gateway', '127.0.0.1:0', '--state-dir', stateDir] });
  const info = JSON.parse(execFileSync(process.execPath, [SSHMUXCTL, '--socket', daemon.socket, '--json', 'gateway']).toString()) as
    { address: string; knownHosts: string; clientKey: string };
  const doorPort = Number(/:(\d+)$/.exec(info.address)![1]);
  const link = await startLongLink({ target: { host: '127.0.0.1', port: doorPort }, rttMs: 60 });
  // The door's host key, as the client reaches it: through the link's port.
  const knownHosts = path.join(dir, 'door_known_hosts');
  fs.writeFileSync(knownHosts, `${info.knownHosts.split(`]:${doorPort} `).join(`]:${link.port} `)}\n`);
  const input = path.join(dir, 'upload.bin');
  const bytes = 48 << 20;
  fs.writeFileSync(input, Buffer.alloc(bytes, 7));
  const upload = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn('ssh', ['-F', '/dev/null', '-i', info.clientKey, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${knownHosts}`,
      '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-p', String(link.port), 't@127.0.0.1', 'wc -c'],
    { stdio: [fs.openSync(input, 'r'), 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d));
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
  let heldMax = 0;
  const watch = setInterval(() => void mux.status().then((s) => (heldMax = Math.max(heldMax, Number(s.windows?.heldBytes ?? 0)))), 50);
  const r = await upload;
  clearInterval(watch);
  assert.deepEqual([r.code, r.stdout.trim()], [0, String(bytes)], r.stderr);
  t.diagnostic(`the door's window held up to ${(heldMax / 2 ** 20).toFixed(1)} MiB beyond the base`);
  assert.ok(heldMax > 0, 'the front door never grew the window of a client 60 ms away');
});
