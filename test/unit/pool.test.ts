// Fast unit tests of the pool's scheduling, without sshd: RequestQueue,
// the backoff and probe delays, Endpoint (handshake budget, backoff, the
// circuit breaker and its probes) and HostPool with fake connections and a
// fake clock. They run in milliseconds, so a scheduling change gets
// feedback at once; the real-sshd suite shows the same behaviour end to end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Code } from '../../proto';
import { DEFAULT_LIMITS, type Limits } from '../../daemon/config';
import { MuxError } from '../../daemon/errors';
import type { ResolvedHost } from '../../daemon/ssh/ssh-config';
import { RequestQueue } from '../../daemon/pool/queue';
import { backoffDelay, probeDelay, reachabilityCheckDelay, HANDSHAKE_BACKOFF } from '../../daemon/pool/backoff';
import type { Clock } from '../../daemon/pool/clock';
import { Endpoint, type BreakerTransition, type Reachability } from '../../daemon/pool/endpoint';
import { failurePolicy, type FailurePolicy } from '../../daemon/pool/failure-policy';
import { HostPool, type OpenedSession, type PendingSession } from '../../daemon/pool/host-pool';
import type { ConnectionOwner, ConnectionState, OpenResult, PooledConnection, SessionSpec } from '../../daemon/ssh/pooled-connection';
import { LinkRtt } from '../../daemon/ssh/link-window';

// ---- a fake clock ------------------------------------------------------

class FakeClock implements Clock {
  t = 1_000_000;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private seq = 0;

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }

  clearTimeout(id: unknown): void {
    this.timers.delete(id as number);
  }

  /** Moves time forward, firing due timers in order and letting promises settle after each. */
  async advance(ms: number): Promise<void> {
    const until = this.t + ms;
    for (;;) {
      await settle();
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].at <= until && (!next || entry[1].at < next[1].at)) next = entry;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = until;
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

const REFUSED: FailurePolicy = failurePolicy(Code.REFUSED);
const THROTTLED: FailurePolicy = failurePolicy(Code.THROTTLED);
const TIMEOUT: FailurePolicy = failurePolicy(Code.HANDSHAKE_TIMEOUT);
const AUTH: FailurePolicy = failurePolicy(Code.AUTH_FAILED);

// ---- RequestQueue ------------------------------------------------------

test('RequestQueue: first in, first out; removal from the middle; unshift keeps the turn; a re-push goes to the back', () => {
  const q = new RequestQueue<string>();
  for (const x of ['a', 'b', 'c', 'd']) q.push(x);
  assert.equal(q.length, 4);
  assert.equal(q.remove('b'), true);
  assert.equal(q.remove('b'), false, 'removed twice');
  assert.equal(q.length, 3);
  assert.equal(q.peek(), 'a');
  assert.equal(q.shift(), 'a');
  q.unshift('a'); // lost its slot through no fault of its own
  assert.equal(q.peek(), 'a');
  q.push('c'); // already queued: moves to the back
  assert.deepEqual(q.removeAll(), ['a', 'd', 'c']);
  assert.equal(q.length, 0);
  assert.equal(q.shift(), undefined);
});

test('RequestQueue: thousands of removals from the middle keep the order and the count', () => {
  const q = new RequestQueue<number>();
  for (let i = 0; i < 5000; i++) q.push(i);
  for (let i = 0; i < 5000; i += 2) q.remove(i);
  assert.equal(q.length, 2500);
  const out: number[] = [];
  for (let x = q.shift(); x !== undefined; x = q.shift()) out.push(x);
  assert.deepEqual(out, Array.from({ length: 2500 }, (_, i) => 2 * i + 1));
});

// ---- delays --------------------------------------------------------------

test('backoffDelay: full jitter in [0, min(cap, base * 2^n))', () => {
  const top = 1 - Number.EPSILON;
  assert.equal(backoffDelay(HANDSHAKE_BACKOFF, 0, () => 0), 0);
  assert.equal(backoffDelay(HANDSHAKE_BACKOFF, 0, () => top), 199);
  assert.equal(backoffDelay(HANDSHAKE_BACKOFF, 3, () => top), 1599);
  assert.equal(backoffDelay(HANDSHAKE_BACKOFF, 10, () => top), 9999, 'capped at 10 s');
  assert.equal(backoffDelay(HANDSHAKE_BACKOFF, 10_000, () => top), 9999, 'huge failure counts do not overflow');
});

test('probeDelay: the first probe in 0.4-0.6 s, later ones 0.4 × the time down (±20 %), capped by the cool-down', () => {
  assert.equal(probeDelay(0, 30_000, () => 0), 400);
  assert.equal(probeDelay(0, 30_000, () => 1), 600);
  assert.equal(probeDelay(10_000, 30_000, () => 0.5), 4000);
  assert.equal(probeDelay(8_000, 30_000, () => 1), 3840, 'under 4 s for the first 8 s down: a 5 s deadline waits');
  assert.equal(probeDelay(600_000, 30_000, () => 1), 30_000);
  assert.equal(probeDelay(600_000, 0, () => 1), 0, 'breakerCooldownMs 0: no wait between probes');
  assert.equal(reachabilityCheckDelay(() => 0), 500);
  assert.equal(reachabilityCheckDelay(() => 1), 1000);
});

// ---- Endpoint ------------------------------------------------------------

function endpoint(clock: FakeClock, opts: { threshold?: number; cooldownMs?: number; max?: number; check?: () => Promise<Reachability> } = {}) {
  const transitions: BreakerTransition[] = [];
  const e = new Endpoint('h:22', {
    maxConcurrentHandshakes: opts.max ?? 2, breakerThreshold: opts.threshold ?? 3, breakerCooldownMs: opts.cooldownMs ?? 30_000,
    clock, random: () => 0.5, checkReachable: opts.check, onTransition: (t) => transitions.push(t),
  });
  return { e, transitions };
}

/** One handshake that fails with `policy`. */
function fail(e: Endpoint, policy: FailurePolicy, reason = 'REFUSED: connection refused'): void {
  e.begin();
  e.failed(policy, reason);
}

test('Endpoint: at most maxConcurrentHandshakes at once; a backoff holds the next one back and its end wakes the waiter', async () => {
  const clock = new FakeClock();
  const { e } = endpoint(clock, { max: 2 });
  assert.ok(e.available());
  e.begin();
  e.begin();
  assert.equal(e.available(), false, 'a third handshake while two are in flight');
  e.succeeded();
  assert.ok(e.available());
  e.failed(THROTTLED, 'THROTTLED: closed before the banner');
  const wait = e.backoffRemaining();
  assert.equal(wait, 100, 'full jitter of the first backoff step (random 0.5 of 200 ms)');
  assert.equal(e.available(), false);
  let woken = 0;
  e.waitForCapacity(() => woken++);
  await clock.advance(wait - 1);
  assert.equal(woken, 0);
  await clock.advance(2);
  assert.equal(woken, 1);
  assert.ok(e.available());
});

test('Endpoint: throttling backs off but never opens the breaker; auth failures neither back off nor trip it', () => {
  const clock = new FakeClock();
  const { e, transitions } = endpoint(clock, { threshold: 2 });
  for (let i = 0; i < 10; i++) fail(e, THROTTLED, 'THROTTLED: MaxStartups');
  assert.equal(e.breaker, 'closed');
  assert.ok(e.backoffRemaining() > 0);
  e.begin();
  e.succeeded();
  fail(e, AUTH, 'AUTH_FAILED: refused every key');
  fail(e, AUTH, 'AUTH_FAILED: refused every key');
  assert.equal(e.breaker, 'closed');
  assert.equal(e.backoffRemaining(), 0);
  assert.deepEqual(transitions, []);
});

test('Endpoint: the breaker opens at the threshold, lets one probe through when it is due, and one success closes it', async () => {
  const clock = new FakeClock();
  const { e, transitions } = endpoint(clock, { threshold: 3 });
  fail(e, REFUSED);
  fail(e, REFUSED);
  assert.equal(e.breaker, 'closed');
  fail(e, REFUSED);
  assert.equal(e.breaker, 'open');
  assert.equal(transitions.length, 1);
  assert.match(transitions[0].reason, /^3 failed handshakes in a row \(last: REFUSED/);
  assert.equal(e.nextProbeIn(), 500, 'the first probe is sub-second (random 0.5: 500 ms)');
  assert.equal(e.available(), false, 'a handshake before the probe is due');
  let woken = 0;
  e.waitForCapacity(() => woken++);
  await clock.advance(501);
  assert.equal(woken, 1, 'the waiter was not woken for the probe');
  assert.ok(e.available());
  e.begin();
  assert.equal(e.breaker, 'half-open');
  assert.equal(e.available(), false, 'a second probe while one is in flight');
  e.succeeded();
  assert.equal(e.breaker, 'closed');
  assert.deepEqual(transitions.map((t) => t.to), ['open', 'half-open', 'closed']);
  assert.equal(e.hardFailureCount, 0);
  assert.equal(e.transitionCount, 3);
});

test('Endpoint: while probes fail the wait between them grows with the time down, up to breakerCooldownMs', async () => {
  const clock = new FakeClock();
  const { e, transitions } = endpoint(clock, { threshold: 1, cooldownMs: 10_000 });
  fail(e, TIMEOUT, 'HANDSHAKE_TIMEOUT: no banner');
  const waits: number[] = [];
  for (let i = 0; i < 16; i++) {
    const wait = e.nextProbeIn();
    waits.push(wait);
    await clock.advance(wait);
    assert.ok(e.available(), `probe ${i} not allowed when due`);
    fail(e, TIMEOUT, 'HANDSHAKE_TIMEOUT: no banner');
    assert.equal(e.breaker, 'open');
  }
  assert.equal(waits[0], 500);
  for (let i = 1; i < waits.length; i++) assert.ok(waits[i] >= waits[i - 1], `the wait shrank: ${waits}`);
  assert.equal(waits[waits.length - 1], 10_000, `capped at the cool-down: ${waits}`);
  assert.ok(waits.filter((w) => w < 4000).length >= 4, `the early probes are not early: ${waits}`);
  assert.equal(transitions.filter((t) => t.to === 'half-open').length, 16, 'one probe at a time, each a transition');
});

test('Endpoint: a probe that fails after a long handshake is followed at once when its wait is already over', async () => {
  const clock = new FakeClock();
  const { e } = endpoint(clock, { threshold: 1 });
  fail(e, TIMEOUT, 'HANDSHAKE_TIMEOUT: no banner');
  await clock.advance(e.nextProbeIn());
  e.begin();
  await clock.advance(5000); // the probe stalls for ConnectTimeout
  e.failed(TIMEOUT, 'HANDSHAKE_TIMEOUT: no banner');
  assert.equal(e.nextProbeIn(), 0, 'a stalled probe already covered its wait');
});

test('Endpoint: a host that answered before is watched with TCP checks: refused ones stand in for probes, one that connects lets the probe start at once', async () => {
  const clock = new FakeClock();
  let listening = false;
  let checks = 0;
  let inFlight = 0;
  const check = async (): Promise<Reachability> => {
    checks++;
    inFlight++;
    assert.equal(inFlight, 1, 'two checks in flight');
    await Promise.resolve();
    inFlight--;
    return listening ? 'open' : 'refused';
  };
  const { e } = endpoint(clock, { threshold: 2, check });
  e.begin();
  e.succeeded(); // it answered once
  fail(e, REFUSED);
  fail(e, REFUSED);
  assert.equal(e.breaker, 'open');
  await clock.advance(10_000);
  assert.equal(checks, 0, 'checks with nobody waiting');
  let woken = 0;
  const wake = (): void => {
    woken++;
  };
  e.waitForCapacity(wake);
  await clock.advance(10_000);
  assert.ok(checks >= 10 && checks <= 20, `${checks} checks in 10 s (one every 0.5-1 s)`);
  assert.equal(woken, 0, 'woken for a handshake although nothing listens');
  assert.equal(e.available(), false, 'a handshake allowed although every check was refused');
  assert.equal(e.breaker, 'open');
  assert.ok(e.nextProbeIn() > 0, 'the schedule did not move on with the refused checks');
  listening = true;
  await clock.advance(1000);
  assert.equal(woken, 1, 'not woken when the port listened again');
  assert.ok(e.available());
  assert.equal(e.nextProbeIn(), 0, 'a probe may start now, so no request should be told to wait for a later one');
  e.begin();
  e.succeeded();
  assert.equal(e.breaker, 'closed');
  const before = checks;
  e.waitForCapacity(wake);
  await clock.advance(5000);
  assert.equal(checks, before, 'checks after the breaker closed');
});

test('Endpoint: requests turned away keep the port watched for 10 s, though none waits; the next one may probe as soon as it listens', async () => {
  const clock = new FakeClock();
  let listening = false;
  let checks = 0;
  const { e } = endpoint(clock, { threshold: 1, check: async () => {
    checks++;
    return listening ? 'open' : 'refused';
  } });
  e.begin();
  e.succeeded();
  fail(e, REFUSED);
  await clock.advance(60_000);
  assert.equal(checks, 0, 'checks with nobody asking');
  assert.ok(e.nextProbeIn() === 0, 'the probe is due');
  e.noteDemand();
  await clock.advance(20_000);
  assert.ok(checks >= 10 && checks <= 20, `${checks} checks in 20 s: they went on past the demand or never started`);
  const after = checks;
  await clock.advance(20_000);
  assert.equal(checks, after, 'checks went on with nobody asking');
  e.noteDemand();
  await clock.advance(3000);
  assert.ok(e.nextProbeIn() > 5000, `the schedule did not grow with the time down: ${e.nextProbeIn()} ms`);
  listening = true;
  await clock.advance(1001);
  assert.equal(e.nextProbeIn(), 0, 'the next request would be turned away although the port listens again');
  assert.ok(e.available());
});

test('Endpoint: a host that never answered gets probe handshakes, not checks', async () => {
  const clock = new FakeClock();
  let checks = 0;
  const { e } = endpoint(clock, { threshold: 1, check: async () => {
    checks++;
    return 'refused';
  } });
  fail(e, REFUSED);
  e.waitForCapacity(() => {});
  await clock.advance(e.nextProbeIn());
  assert.ok(e.available());
  assert.equal(checks, 0);
});

test('Endpoint: an answer of any kind to a probe (throttled, a refused key) closes the breaker', async () => {
  const clock = new FakeClock();
  const { e } = endpoint(clock, { threshold: 1 });
  fail(e, REFUSED);
  await clock.advance(e.nextProbeIn());
  e.begin();
  e.failed(THROTTLED, 'THROTTLED: MaxStartups');
  assert.equal(e.breaker, 'closed');
  assert.ok(e.backoffRemaining() > 0, 'throttling still backs off');
});

// ---- HostPool with fake connections ----------------------------------

class FakeConnection implements PooledConnection {
  state: ConnectionState = 'connecting';
  sessions = 0;
  /** Closed slots a round trip is about to give back; a test sets it (the real one counts them: connection.test.ts). */
  reclaimableSlots = 0;
  sessionsOpened = 0;
  tunnels = 0;
  readonly idleSftpSessions = 0;
  readonly hostKeyWarning = undefined;
  readonly link = new LinkRtt();
  readonly lostReason = undefined;
  readonly heardAgoMs = undefined;
  readonly createdAt: number;
  /** Channel opens waiting for the fake server's answer. */
  readonly opening: Array<{ spec: SessionSpec; done: (r: OpenResult) => void }> = [];

  constructor(
    readonly id: string,
    public maxSessions: number,
    private readonly owner: ConnectionOwner,
    private readonly world: World,
  ) {
    this.createdAt = world.clock.now();
  }

  get freeSlots(): number {
    return this.state === 'ready' ? Math.max(0, this.maxSessions - this.sessions - this.reclaimableSlots) : 0;
  }

  probe(): void {}

  connect(): void {
    this.world.dialed.push(this);
  }

  /** The handshake succeeds. */
  up(): void {
    this.state = 'ready';
    this.owner.onReady(this);
  }

  /** The handshake fails with `code`. */
  down(code: Code, message = 'connection refused'): void {
    this.state = 'closed';
    this.owner.onHandshakeFailed(this, new MuxError(code, message, 'handshaking'));
  }

  openSession(spec: SessionSpec, done: (r: OpenResult) => void): void {
    this.sessions++;
    this.sessionsOpened++;
    this.opening.push({ spec, done });
    // The fake server answers at once, within its own MaxSessions.
    if (this.world.serverMaxSessions !== undefined && this.sessions > this.world.serverMaxSessions) {
      this.opening.pop();
      this.sessions--;
      this.maxSessions = Math.min(this.maxSessions, this.sessions);
      done({ ok: false, retry: true, error: new MuxError(Code.CHANNEL_OPEN_FAILED, 'open failed', 'opening') });
      return;
    }
    this.opening.pop();
    done({ ok: true, channel: { spec } as never });
  }

  /** A session ends and the server has freed its slot. */
  endSession(): void {
    this.sessions--;
    if (this.state === 'closing' && this.sessions === 0) this.destroy();
    else this.owner.onCapacity(this);
  }

  warningsFor(): string[] {
    return [];
  }

  openTunnel(): void {
    throw new Error('not in these tests');
  }

  takeIdleSftp(): undefined {
    return undefined;
  }

  returnSftp(): void {}
  closeIdleSftp(): void {}

  close(): void {
    if (this.state === 'ready') this.state = 'closing';
    if (this.sessions === 0) this.destroy();
  }

  destroy(): void {
    this.state = 'closed';
  }
}

interface World {
  clock: FakeClock;
  dialed: FakeConnection[];
  serverMaxSessions?: number;
}

interface Outcome {
  label: string;
  session?: OpenedSession;
  error?: MuxError;
}

function world(): World {
  return { clock: new FakeClock(), dialed: [] };
}

const HOST = { alias: 'h', hostname: 'h.example', port: 22, user: 'u' } as ResolvedHost;
const silent = pino({ level: 'silent' });

function pool(w: World, limits: Partial<Limits> = {}, ep?: Endpoint, name = 'h'): HostPool {
  const l = { ...DEFAULT_LIMITS, ...limits };
  const e = ep ?? new Endpoint('h.example:22', {
    maxConcurrentHandshakes: l.maxConcurrentHandshakes, breakerThreshold: l.breakerThreshold,
    breakerCooldownMs: l.breakerCooldownMs, clock: w.clock, random: () => 0.5,
  });
  return new HostPool(name, HOST, l, e, silent, undefined, {
    clock: w.clock,
    newConnection: (id, _host, maxSessions, _idle, owner) => new FakeConnection(id, maxSessions, owner, w),
  });
}

/** A request whose outcome lands in `log`. */
function ask(p: HostPool, log: Outcome[], label: string, waitMs = 60_000): PendingSession {
  return p.request({ kind: 'exec', command: label }, {
    onOpen: (session) => log.push({ label, session }),
    onError: (error) => log.push({ label, error }),
  }, waitMs);
}

function conn(s: OpenedSession | undefined): PooledConnection | undefined {
  return s?.connection;
}

test('HostPool: requests are served first come, first served as slots free', async () => {
  const w = world();
  const p = pool(w, { maxConnections: 1, maxSessions: 1 });
  const log: Outcome[] = [];
  for (const label of ['a', 'b', 'c', 'd']) ask(p, log, label);
  assert.equal(w.dialed.length, 1);
  w.dialed[0].up();
  assert.deepEqual(log.map((o) => o.label), ['a']);
  const c = w.dialed[0];
  c.endSession();
  c.endSession();
  c.endSession();
  assert.deepEqual(log.map((o) => o.label), ['a', 'b', 'c', 'd']);
  assert.ok(log.every((o) => o.session && conn(o.session) === c));
});

test('HostPool: a cancelled request gives up its turn; the one behind it moves up', () => {
  const w = world();
  const p = pool(w, { maxConnections: 1, maxSessions: 1 });
  const log: Outcome[] = [];
  ask(p, log, 'a');
  const b = ask(p, log, 'b');
  ask(p, log, 'c');
  w.dialed[0].up();
  b.cancel();
  assert.equal(b.state, 'done');
  w.dialed[0].endSession();
  assert.deepEqual(log.map((o) => o.label), ['a', 'c']);
});

test('HostPool: a new request goes to the least-loaded ready connection', () => {
  const w = world();
  const p = pool(w, { maxConnections: 2, maxSessions: 4, maxConcurrentHandshakes: 2 });
  const log: Outcome[] = [];
  for (let i = 0; i < 8; i++) ask(p, log, `r${i}`);
  assert.equal(w.dialed.length, 1, 'until the pool has logged in once, one handshake at a time');
  const [c1] = w.dialed;
  c1.up();
  assert.equal(c1.sessions, 4);
  assert.equal(w.dialed.length, 2, 'demand for 8 sessions at 4 each opens two connections');
  const c2 = w.dialed[1];
  c2.up();
  assert.equal(c2.sessions, 4);
  c1.endSession();
  c1.endSession();
  c1.endSession();
  c2.endSession();
  assert.deepEqual([c1.sessions, c2.sessions], [1, 3]);
  ask(p, log, 'x');
  assert.equal(conn(log.at(-1)!.session), c1, 'not the least-loaded connection');
  ask(p, log, 'y');
  assert.equal(conn(log.at(-1)!.session), c1);
  assert.deepEqual([c1.sessions, c2.sessions], [3, 3]);
});

test('HostPool: a refused channel teaches the pool a lower MaxSessions; the request keeps its turn and new connections start with the lower limit', () => {
  const w = world();
  w.serverMaxSessions = 2;
  const p = pool(w, { maxConnections: 2, maxSessions: 10 });
  const log: Outcome[] = [];
  for (const label of ['a', 'b', 'c', 'd']) ask(p, log, label);
  w.dialed[0].up();
  assert.deepEqual(log.map((o) => o.label), ['a', 'b']);
  assert.equal(p.maxSessions, 2, 'the pool did not learn the server\'s limit');
  assert.equal(w.dialed[0].maxSessions, 2);
  assert.equal(p.queue.peek()?.spec.command, 'c', 'the refused request lost its turn');
  assert.equal(w.dialed.length, 2, 'no second connection for the requests left waiting');
  assert.equal(w.dialed[1].maxSessions, 2, 'the new connection did not start with the learned limit');
  w.dialed[1].up();
  assert.deepEqual(log.map((o) => o.label), ['a', 'b', 'c', 'd']);
  assert.ok(log.every((o) => o.session), 'a refusal reached a caller');
});

test('HostPool: a request waits for a session until its deadline, then DEADLINE_EXCEEDED saying where it was stuck', async () => {
  const w = world();
  const p = pool(w, { maxConnections: 1, maxSessions: 1 });
  const log: Outcome[] = [];
  ask(p, log, 'a');
  ask(p, log, 'b', 5000);
  w.dialed[0].up();
  await w.clock.advance(4999);
  assert.equal(log.length, 1);
  await w.clock.advance(1);
  assert.equal(log[1].error?.code, Code.DEADLINE_EXCEEDED);
  assert.match(log[1].error!.message, /no session slot on h became free within 5 s/);
});

/** A pool whose host answered once, then went down: its breaker is open. */
async function poolMarkedDown(w: World) {
  const p = pool(w, { breakerThreshold: 2, connectionAttempts: 1, maxConnections: 1 });
  return { p, log: await markDown(w, p, 60_000) };
}

/**
 * Takes `p` (one connection, breaker threshold 2) down: request "first" runs on a connection that is then
 * lost, "during" (`duringWaitMs`) waits while two handshakes are refused. Returns the requests' outcomes.
 */
async function markDown(w: World, p: HostPool, duringWaitMs: number): Promise<Outcome[]> {
  const log: Outcome[] = [];
  ask(p, log, 'first');
  w.dialed[0].up();
  w.dialed[0].endSession();
  w.dialed[0].state = 'closed';
  p.onClosed(w.dialed[0], new Error('lost'));
  ask(p, log, 'during', duringWaitMs);
  w.dialed[1].down(Code.REFUSED);
  await w.clock.advance(p.endpoint.backoffRemaining() + 1);
  w.dialed[2].down(Code.REFUSED);
  assert.equal(p.endpoint.breaker, 'open');
  return log;
}

test('HostPool: breaker open, a request whose deadline reaches the next probe waits and runs on the probe\'s connection; a shorter one fails fast naming the cause and the probe', async () => {
  const w = world();
  const { p, log } = await poolMarkedDown(w);
  assert.deepEqual(log.map((o) => o.label), ['first'], 'a waiting request failed when the breaker opened');
  const next = p.endpoint.nextProbeIn();
  assert.ok(next > 0 && next < 1000);
  ask(p, log, 'short', next - 1);
  assert.equal(log.at(-1)!.label, 'short');
  assert.equal(log.at(-1)!.error?.code, Code.HOST_UNAVAILABLE);
  assert.match(log.at(-1)!.error!.message,
    /^h is marked down after 2 failed handshakes in a row \(last: REFUSED: connection refused\); the next probe is in 0\.5 s, after this request's deadline \(0\.5 s\)/);
  ask(p, log, 'long', next + 1000);
  const dials = w.dialed.length;
  await w.clock.advance(next + 1);
  assert.equal(w.dialed.length, dials + 1, 'no probe when it was due');
  assert.equal(p.endpoint.breaker, 'half-open');
  w.dialed.at(-1)!.up();
  assert.equal(p.endpoint.breaker, 'closed');
  const served = log.filter((o) => o.session).map((o) => o.label);
  assert.deepEqual(served, ['first', 'during', 'long']);
  assert.equal(conn(log.at(-1)!.session), w.dialed.at(-1), 'not on the probe\'s connection');
});

test('HostPool: a failed probe does not fail the waiting requests; the next probe serves them', async () => {
  const w = world();
  const { p, log } = await poolMarkedDown(w);
  ask(p, log, 'waiting', 30_000);
  const dials = w.dialed.length;
  await w.clock.advance(p.endpoint.nextProbeIn() + 1);
  assert.equal(w.dialed.length, dials + 1);
  w.dialed.at(-1)!.down(Code.REFUSED);
  assert.equal(p.endpoint.breaker, 'open');
  assert.equal(log.filter((o) => o.error).length, 0, `failed early: ${log.map((o) => o.error?.message)}`);
  await w.clock.advance(p.endpoint.nextProbeIn() + 1);
  assert.equal(w.dialed.length, dials + 2);
  w.dialed.at(-1)!.up();
  assert.deepEqual(log.filter((o) => o.session).map((o) => o.label), ['first', 'during', 'waiting']);
});

test('HostPool: under steady load with every request turned away (short deadlines), the first request after sshd listens again probes and runs', async () => {
  const w = world();
  let listening = false;
  const e = new Endpoint('h.example:22', {
    maxConcurrentHandshakes: 2, breakerThreshold: 2, breakerCooldownMs: 30_000, clock: w.clock, random: () => 0.5,
    checkReachable: async () => (listening ? 'open' : 'refused'),
  });
  const p = pool(w, { breakerThreshold: 2, maxConnections: 1 }, e);
  const log = await markDown(w, p, 1000);
  // 40 s of one 1 s request every 100 ms: once the next probe is further than 1 s away, each is turned away.
  for (let i = 0; i < 400; i++) {
    ask(p, log, `r${i}`, 1000);
    await w.clock.advance(100);
  }
  const turnedAway = log.filter((o) => o.error?.code === Code.HOST_UNAVAILABLE).length;
  assert.ok(turnedAway > 250, `only ${turnedAway} requests turned away`);
  assert.equal(p.queue.length, 0);
  assert.equal(w.dialed.length, 3, 'handshakes while nothing listened');
  listening = true;
  await w.clock.advance(1001);
  ask(p, log, 'back', 1000);
  assert.equal(w.dialed.length, 4, 'the request after the port listened again did not start the probe');
  w.dialed[3].up();
  assert.equal(log.at(-1)!.label, 'back');
  assert.ok(log.at(-1)!.session, `the request after the host came back failed: ${log.at(-1)!.error?.message}`);
});

test('HostPool: a burst to a host not yet logged into makes one handshake; a refused login fails it all, and later growth is parallel', async () => {
  const w = world();
  const p = pool(w, { maxConnections: 4, maxSessions: 10, maxConcurrentHandshakes: 4 });
  const log: Outcome[] = [];
  for (let i = 0; i < 40; i++) ask(p, log, `r${i}`);
  assert.equal(w.dialed.length, 1);
  w.dialed[0].down(Code.CERTIFICATE_INVALID);
  assert.equal(log.length, 40);
  assert.ok(log.every((o) => o.error?.code === Code.CERTIFICATE_INVALID));
  assert.equal(w.dialed.length, 1, 'a refused login was tried again');
  for (let i = 0; i < 40; i++) ask(p, log, `s${i}`);
  w.dialed[1].up();
  assert.equal(w.dialed.length, 5, 'after a login, the rest of the burst opens in parallel');
});

test('HostPool: a host that never answered fails waiting requests after connectionAttempts and new ones at once while marked down', async () => {
  const w = world();
  const p = pool(w, { breakerThreshold: 2, connectionAttempts: 2, maxConnections: 1 });
  const log: Outcome[] = [];
  ask(p, log, 'a');
  w.dialed[0].down(Code.REFUSED);
  assert.equal(log.length, 0, 'failed before connectionAttempts');
  await w.clock.advance(p.endpoint.backoffRemaining() + 1);
  w.dialed[1].down(Code.REFUSED);
  assert.equal(log[0].error?.code, Code.REFUSED);
  ask(p, log, 'b', 60_000);
  assert.equal(log[1].error?.code, Code.HOST_UNAVAILABLE, 'a host that never answered kept a request waiting for a probe');
  assert.match(log[1].error!.message, /requests wait for probes only to a host that has answered/);
});

test('HostPool: a reload re-homes the waiting requests, in order, with their deadlines', async () => {
  const w = world();
  const old = pool(w, { maxConnections: 1, maxSessions: 1 }, undefined, 'old');
  const log: Outcome[] = [];
  ask(old, log, 'running');
  w.dialed[0].up();
  ask(old, log, 'a', 10_000);
  ask(old, log, 'b', 20_000);
  await w.clock.advance(4000);
  const waiting = old.drain();
  assert.deepEqual(waiting.map((x) => x.spec.command), ['a', 'b']);
  assert.equal(w.dialed[0].state, 'closing', 'the old connection did not let its session finish');
  const fresh = pool(w, { maxConnections: 1, maxSessions: 1 }, undefined, 'new');
  for (const pending of waiting) fresh.adopt(pending);
  assert.equal(waiting[0].pool, fresh);
  // 'a' keeps its deadline: 6 s left of 10, not a fresh 10.
  await w.clock.advance(5999);
  assert.equal(log.length, 1);
  await w.clock.advance(1);
  assert.equal(log[1].label, 'a');
  assert.equal(log[1].error?.code, Code.DEADLINE_EXCEEDED);
  w.dialed[1].up();
  assert.equal(log[2].label, 'b');
  assert.equal(conn(log[2].session), w.dialed[1]);
  w.dialed[0].endSession();
  assert.equal(w.dialed[0].state, 'closed');
});

test('HostPool: close() fails what waits with SHUTTING_DOWN and refuses new requests; running sessions finish', () => {
  const w = world();
  const p = pool(w, { maxConnections: 1, maxSessions: 1 });
  const log: Outcome[] = [];
  ask(p, log, 'running');
  ask(p, log, 'waiting');
  w.dialed[0].up();
  p.close();
  ask(p, log, 'late');
  assert.deepEqual(log.map((o) => [o.label, o.error?.code]), [['running', undefined], ['waiting', Code.SHUTTING_DOWN], ['late', Code.SHUTTING_DOWN]]);
  assert.equal(w.dialed[0].state, 'closing');
  assert.deepEqual(p.load, { connections: 1, connectionsByState: { closing: 1 }, sessions: 1, sessionCapacity: 1, queued: 0 });
});

test('HostPool: its demand, which the fleet reads, counts closed slots on their way back as grow() does', () => {
  const w = world();
  const p = pool(w, { maxConnections: 4, maxSessions: 2 });
  const log: Outcome[] = [];
  ask(p, log, 'a');
  ask(p, log, 'b');
  assert.equal(p.waitingForConnection, false, 'the connection handshaking covers both');
  const c = w.dialed[0];
  c.up();
  assert.equal(c.sessions, 2);
  // Both sessions end; the server closed their channels, and a round trip is about to give the slots back.
  c.sessions = 0;
  c.reclaimableSlots = 2;
  ask(p, log, 'c');
  ask(p, log, 'd');
  assert.equal(w.dialed.length, 1, 'a connection opened for requests that closed slots are about to serve');
  assert.equal(p.waitingForConnection, false, 'the fleet was told the pool waits for a connection it does not need');
  assert.equal(p.wantedConnections(), 1);
  ask(p, log, 'e');
  assert.equal(w.dialed.length, 2, 'three queued, two slots on their way: no connection opened for the third');
  assert.equal(p.waitingForConnection, false, 'the new connection covers it');
  assert.equal(p.wantedConnections(), 2, 'three queued at two sessions each');
});

// ---- HostPool.connected: the SSH gateway's check before it accepts a channel ----

/** The outcome of a readiness check: 'ready' or the error's code name, or 'waiting'. */
function readiness(p: HostPool, waitMs = 60_000): { outcome: () => string; cancel(): void } {
  let outcome = 'waiting';
  const check = p.connected(waitMs);
  check.ready.then(() => (outcome = 'ready'), (err: MuxError) => (outcome = err.codeName));
  return { outcome: () => outcome, cancel: check.cancel };
}

test('HostPool.connected: at once on a ready connection, taking no slot; with none it opens one and waits for it', async () => {
  const w = world();
  const p = pool(w, { maxConnections: 1, maxSessions: 1 });
  const first = readiness(p);
  assert.equal(w.dialed.length, 1, 'no connection was opened for the check');
  await settle();
  assert.equal(first.outcome(), 'waiting');
  w.dialed[0].up();
  await settle();
  assert.equal(first.outcome(), 'ready');
  assert.equal(w.dialed[0].sessions, 0, 'the check took a session slot');
  const log: Outcome[] = [];
  ask(p, log, 'a'); // the only slot is busy now: the check still passes
  const second = readiness(p);
  await settle();
  assert.equal(second.outcome(), 'ready');
  assert.equal(w.dialed.length, 1);
});

test('HostPool.connected: a handshake failure that fails waiting requests fails the check with its own error; a stalled one ends at the deadline saying so', async () => {
  const w = world();
  const p = pool(w);
  const check = readiness(p);
  w.dialed[0].down(Code.HOST_KEY_MISMATCH, 'the host key changed');
  await settle();
  assert.equal(check.outcome(), 'HOST_KEY_MISMATCH');

  const w2 = world();
  const p2 = pool(w2);
  const slow = readiness(p2, 5000);
  await w2.clock.advance(4999);
  assert.equal(slow.outcome(), 'waiting');
  await w2.clock.advance(1);
  assert.equal(slow.outcome(), 'DEADLINE_EXCEEDED');
});

test('HostPool.connected: resolves with the ready connection (sshmuxctl check reports on it); a waiter on a pool drained meanwhile gets none', async () => {
  const w = world();
  const p = pool(w, { maxConnections: 1 });
  const first = p.connected(60_000).ready;
  assert.equal(p.readyConnections, 0);
  w.dialed[0].up();
  assert.equal(await first, w.dialed[0]);
  assert.equal(p.readyConnections, 1);
  assert.equal(await p.connected(60_000).ready, w.dialed[0], 'not the ready connection');
  const w2 = world();
  const p2 = pool(w2);
  const waiting = p2.connected(60_000).ready;
  p2.drain();
  assert.equal(await waiting, undefined);
});

test('HostPool.connected: cancelled, it leaves nothing waiting; on a closed pool it fails with SHUTTING_DOWN', async () => {
  const w = world();
  const p = pool(w);
  const check = readiness(p);
  check.cancel();
  w.dialed[0].up();
  await settle();
  assert.equal(check.outcome(), 'waiting', 'a cancelled check was answered');
  p.close();
  const closed = readiness(p);
  await settle();
  assert.equal(closed.outcome(), 'SHUTTING_DOWN');
});
