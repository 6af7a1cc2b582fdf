// A fleet of real sshmuxd processes (each its own process, socket and
// config) sharing one real redis-server, against real sshd: together they
// stay within one handshake budget and one connection cap per target, late
// daemons get their share, and a daemon that dies holding permits holds up
// the others only until its leases expire.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startSshd, tempDir, writeClientConfig, type Sshd } from '../helpers/sshd';
import { startRedis, type RedisServer } from '../helpers/redis';
import { fanOut, startFleet, stopFleet, type FleetMember } from '../helpers/fleet';
import { waitFor } from '../helpers/daemon';

// Daemons, Redis servers and sshd stop when the file ends (helpers/daemon.ts, redis.ts).

async function world(n: number, fleet: Record<string, unknown>, opts: { limits?: Record<string, unknown>; sshdExtra?: string[] } = {}):
  Promise<{ sshd: Sshd; redis: RedisServer; members: FleetMember[]; key: (what: string) => string }> {
  const sshd = await startSshd({ maxSessions: 10, maxStartups: '10:30:100' });
  const redis = await startRedis();
  const dir = tempDir();
  // t2: the same server (one fleet target) through a pool of its own (another keepalive setting).
  const client = writeClientConfig(dir, [{ alias: 't', sshd, extra: opts.sshdExtra },
    { alias: 't2', sshd, extra: [...(opts.sshdExtra ?? []), 'ServerAliveInterval 16'] }]);
  const members = await startFleet({ n, dir, sshConfigPath: client.sshConfigPath, config: { ...opts.limits, fleet: { redis: redis.url, ...fleet } } });
  // The semaphores as redis-semaphore keeps them: a sorted set of holders.
  const key = (what: string): string => `semaphore:sshmux:fleet:127.0.0.1:${sshd.port}:${what}`;
  return { sshd, redis, members, key };
}

/** The most connections sshd had at once while `run` ran (its per-connection processes, sampled every 50 ms). */
async function peakConnections<T>(sshd: Sshd, run: () => Promise<T>): Promise<{ result: T; peak: number }> {
  let peak = 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, sshd.sessionPids().length);
  }, 50);
  try {
    return { result: await run(), peak };
  } finally {
    clearInterval(timer);
  }
}

test('10 daemons x 100 execs at once, one sshd with MaxStartups 10:30:100: every exec succeeds, no MaxStartups drop, logins within the fleet cap', async () => {
  const cap = 20;
  const { sshd, members } = await world(10, { maxConcurrentHandshakes: 8, maxConnections: cap });
  const { result, peak } = await peakConnections(sshd, () => fanOut(members, 't', 100, 'sleep 0.3; echo %i'));
  assert.deepEqual(result.failed, {});
  assert.equal(result.ok, 1000);
  assert.equal(sshd.drops(), 0, 'sshd dropped connections past MaxStartups');
  const fleetLog = (): string => members.flatMap((m) => m.daemon.logs().split('\n').filter((l) => /fleet: (handing|lost)/.test(l))).join('\n');
  assert.ok(sshd.logins() <= cap, `${sshd.logins()} logins for a cap of ${cap}:\n${fleetLog()}`);
  assert.ok(peak <= cap, `${peak} connections at once for a cap of ${cap}`);
  // Every daemon got some of the cap: nobody starved.
  for (const m of members) {
    const t = (await m.mux.status()).fleet!.targets![0];
    assert.ok((t.connections ?? 0) >= 1, `daemon ${m.daemon.pid} holds ${t.connections} connections`);
  }
  await stopFleet(members);
});

test('late daemons get their share: the first daemon, holding the whole cap and busy, hands connections back; every request meets its deadline', async () => {
  const cap = 4;
  const { sshd, members, redis, key } = await world(3, { maxConcurrentHandshakes: 4, maxConnections: cap });
  const [first, ...late] = members;
  // The first daemon alone: its share is the whole cap, and 1,000 one-second commands keep all of it busy for 25 s.
  const early = fanOut([first], 't', 1000, 'sleep 1; echo %i', 90_000);
  assert.ok(await waitFor(() => Number(redis.cli('zcard', key('connections'))) === cap, 15_000), 'the first daemon never held the cap');
  // The late ones' deadlines end long before the first daemon's work does: only busy connections handed back can serve them.
  const { result, peak } = await peakConnections(sshd, () => fanOut(late, 't', 20, 'sleep 1; echo %i', 22_000));
  assert.deepEqual(result.failed, {}, 'a late daemon missed its deadline');
  assert.equal(result.ok, 40);
  const e = await early;
  assert.deepEqual(e.failed, {});
  assert.ok(peak <= cap, `${peak} connections at once for a cap of ${cap}`);
  const handedBack = Number((await first.mux.status()).fleet!.targets![0].handBacks ?? 0);
  assert.ok(handedBack >= 2, `the first daemon handed ${handedBack} connections back`);
  assert.match(first.daemon.logs(), /"sessions":[1-9]\d*,[^\n]*fleet: handing a connection back/, 'no busy connection was handed back');
  await stopFleet(members);
});

test('a daemon SIGKILLed holding handshake permits: the others proceed once the leases (ConnectTimeout + 2 s) expire', async () => {
  // ConnectTimeout 5: a handshake permit lives 7 s.
  const { sshd, members, redis, key } = await world(2, { maxConcurrentHandshakes: 2, maxConnections: 10 }, { sshdExtra: ['ConnectTimeout 5'] });
  const [doomed, survivor] = members;
  // A stopped listener: TCP is accepted by the kernel and nothing answers, so handshakes hang holding their permits.
  sshd.signalListener('SIGSTOP');
  // Two pools, as a pool's first handshake goes alone (until it has logged in once).
  const pending = Promise.all([fanOut([doomed], 't', 15, 'echo %i', 20_000), fanOut([doomed], 't2', 15, 'echo %i', 20_000)]);
  assert.ok(await waitFor(() => Number(redis.cli('zcard', key('handshakes'))) === 2, 10_000), 'the doomed daemon never held both permits');
  const heldAt = Date.now();
  doomed.daemon.child.kill('SIGKILL');
  await doomed.daemon.exited;
  await pending; // its calls failed with it
  sshd.signalListener('SIGCONT');
  const started = Date.now();
  const r = await survivor.mux.exec('t', 'echo alive', { timeoutMs: 30_000 });
  assert.equal(r.stdout.toString(), 'alive\n');
  // It could not have started a handshake before the dead daemon's permits expired.
  assert.ok(Date.now() - heldAt >= 6_500, `served ${Date.now() - heldAt} ms after the permits were taken, before their 7 s lease ended`);
  assert.ok(Date.now() - started < 20_000);
  await stopFleet([survivor]);
});

test('a daemon SIGKILLed holding the whole connection cap: the others proceed once its connection leases expire', async () => {
  const cap = 2;
  const { members, redis, key } = await world(2, { maxConcurrentHandshakes: 2, maxConnections: cap });
  const [doomed, survivor] = members;
  const pending = fanOut([doomed], 't', 20, 'sleep 60; echo %i', 90_000);
  assert.ok(await waitFor(() => Number(redis.cli('zcard', key('connections'))) === cap, 15_000), 'the doomed daemon never held the cap');
  doomed.daemon.child.kill('SIGKILL');
  const killedAt = Date.now();
  await doomed.daemon.exited;
  await pending;
  // Its connections died with it, but the fleet only learns so when their leases (15 s, renewed every 5 s) run out.
  // Meanwhile a short deadline says what holds it up.
  await assert.rejects(survivor.mux.exec('t', 'true', { timeoutMs: 2000 }),
    (err: Error & { code?: string }) => err.code === 'DEADLINE_EXCEEDED' && /the fleet holds 2 of its 2 connections to 127\.0\.0\.1:\d+/.test(err.message));
  const r = await survivor.mux.exec('t', 'echo alive', { timeoutMs: 40_000 });
  assert.equal(r.stdout.toString(), 'alive\n');
  const waited = Date.now() - killedAt;
  assert.ok(waited >= 9_000, `served ${waited} ms after the kill: the dead daemon's leases (10 to 15 s left) were not honoured`);
  assert.ok(waited < 25_000, `served only after ${waited} ms`);
  await stopFleet([survivor]);
});
