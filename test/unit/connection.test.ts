// The real Connection's slot accounting (daemon/ssh/connection.ts), in
// process, against ssh2's Server counting sessions as sshd's MaxSessions
// does (helpers/session-server.ts: a slot is freed after the read that
// carried our close, so a slot reused too early is refused): the spare
// session, the held close, the keepalive round trip that reclaims closed
// slots only at the limit, a lower MaxSessions learned from a refused spare
// or session, a spare the server closes; and HostPool over real connections.
// Milliseconds each; test/system/hot-path.test.ts and scheduling.test.ts
// show the same against sshd itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Code } from '../../proto';
import type { MuxError } from '../../daemon/errors';
import type { HostPool } from '../../daemon/pool/host-pool';
import type { ConnectionOwner, OpenResult, PooledConnection } from '../../daemon/ssh/pooled-connection';
import { Connection } from '../../daemon/ssh/connection';
import type { ClientChannel } from '../../daemon/ssh/ssh2';
import { startSessionServer, type SessionServerOptions } from '../helpers/session-server';
import { realPool } from '../helpers/session-pool';

/** Every wait in this file has a deadline. */
const WAIT_MS = 5000;

async function until(what: string, done: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** What the connection told its owner. */
class Recorder implements ConnectionOwner {
  ready = false;
  failed: MuxError | undefined;
  capacity = 0;
  closed = 0;

  onReady(): void {
    this.ready = true;
  }

  onHandshakeFailed(_conn: PooledConnection, err: MuxError): void {
    this.failed = err;
  }

  onCapacity(): void {
    this.capacity++;
  }

  onClosed(): void {
    this.closed++;
  }
}

/** A server, and one real Connection to it, ready; both end with the test. */
async function connected(t: { after(fn: () => void): void }, server: SessionServerOptions, assumedMaxSessions: number) {
  const s = await startSessionServer(server);
  const owner = new Recorder();
  const conn = new Connection('inproc#1', s.host, assumedMaxSessions, 0, owner);
  t.after(() => {
    conn.destroy();
    s.close();
  });
  conn.connect();
  await until('the handshake', () => owner.ready || owner.failed !== undefined);
  assert.equal(owner.failed, undefined, owner.failed?.message);
  // A ready connection times its link with one keepalive (link-window.ts): the tests count the ones after it.
  await until('the link timed', () => s.keepalives() === 1);
  return { s, conn, owner, reclaims: () => s.keepalives() - 1 };
}

function open(conn: Connection): Promise<OpenResult> {
  return new Promise((resolve) => conn.openSession({ kind: 'exec', command: 'true', closeStdin: true }, resolve));
}

/** Waits for a free slot, as the pool does, opens an exec and waits until the server has closed it and we have seen the close. */
async function runOne(conn: Connection): Promise<void> {
  await until('a free slot', () => conn.freeSlots > 0);
  const r = await open(conn);
  assert.ok(r.ok, r.ok ? '' : r.error.message);
  await closedChannel(r.channel!);
}

function closedChannel(channel: ClientChannel): Promise<void> {
  channel.resume();
  return new Promise((resolve) => channel.once('close', () => resolve()));
}

test('the spare: once used, a connection keeps one session open ahead of need; each next session takes it and opens the next', async (t) => {
  const { s, conn } = await connected(t, { maxSessions: 10 }, 10);
  assert.equal(conn.freeSlots, 10);
  assert.equal(s.opens(), 0, 'a spare was opened on a connection nobody has used');
  await runOne(conn);
  await until('the spare confirmed', () => s.opens() === 2 && conn.freeSlots === 9);
  for (let i = 0; i < 5; i++) await runOne(conn);
  await until('the last spare opened', () => s.opens() === 7);
  assert.equal(s.opens(), 7, '6 sessions: the first opens its own channel, each takes the spare and opens the next');
  assert.equal(s.refused(), 0);
  assert.equal(conn.sessions, 0);
});

test('a closed slot waits for a keepalive round trip, made only at the limit: 20 sequential sessions at MaxSessions 4 make about one per 3, none refused', async (t) => {
  const { s, conn, reclaims } = await connected(t, { maxSessions: 4 }, 4);
  await runOne(conn);
  // The session's slot, closed by the server, is held (sshd may still count it) but on its way back.
  assert.equal(conn.reclaimableSlots, 1);
  assert.equal(reclaims(), 0, 'a round trip below the limit');
  for (let i = 0; i < 19; i++) await runOne(conn);
  assert.equal(s.refused(), 0, 'a closed slot was reused before the server had freed it');
  assert.ok(s.peak() <= 4, `the server counted ${s.peak()} sessions at once`);
  // Closed slots and the spare reach 4 about every 3 sessions: a round trip then, far fewer than one per session.
  assert.ok(reclaims() >= 5 && reclaims() <= 10, `${reclaims()} round trips for 20 sequential sessions`);
  assert.equal(conn.maxSessions, 4);
});

test('the held close: our reply to the server\'s close reaches it on its own once nothing follows, and every slot is freed', async (t) => {
  const { s, conn } = await connected(t, { maxSessions: 10 }, 10);
  for (let i = 0; i < 3; i++) await runOne(conn);
  // The last close waits for a next open that does not come: 100 ms at most (dial.ts's CLOSE_REPLY_HOLD_MS).
  const heldAt = Date.now();
  await until('the last close', () => s.closesReceived() === 3);
  assert.ok(Date.now() - heldAt < 1000);
  await until('the server to free the slots', () => s.counted() === 1);
  assert.equal(s.counted(), 1, 'only the spare should still count');
});

test('a refused spare teaches the connection the server\'s lower MaxSessions, and the owner hears of it', async (t) => {
  const { s, conn, owner } = await connected(t, { maxSessions: 1 }, 10);
  const r = await open(conn);
  assert.ok(r.ok);
  await until('the spare refused', () => s.refused() === 1);
  await until('the limit learned', () => conn.maxSessions === 1);
  assert.ok(owner.capacity > 0, 'the owner was not told the limit changed');
  assert.equal(conn.freeSlots, 0);
  await closedChannel(r.channel!);
  // Its slot comes back after a round trip; no spare is tried again at the limit.
  await until('the slot reclaimed', () => conn.freeSlots === 1);
  for (let i = 0; i < 5; i++) await runOne(conn);
  assert.equal(s.refused(), 1, 'the connection kept asking past the learned limit');
});

test('a session refused past the server\'s MaxSessions comes back retryable, and the limit drops to what the connection holds', async (t) => {
  const { s, conn } = await connected(t, { maxSessions: 2 }, 10);
  s.hold(true);
  // A, then the spare opened behind it, then B while the spare is still opening: B opens a channel of its own.
  const a = open(conn);
  const b = open(conn);
  const [ra, rb] = await Promise.all([a, b]);
  assert.ok(ra.ok);
  assert.equal(rb.ok, false);
  if (rb.ok) return;
  assert.equal(rb.retry, true, 'a refusal that taught the limit should be retried elsewhere');
  assert.equal(rb.error.code, Code.CHANNEL_OPEN_FAILED);
  assert.equal(conn.maxSessions, 2, 'the limit is A and the spare');
  assert.equal(conn.sessions, 1);
  for (const ch of s.held()) ch.end();
});

test('a spare the server closes unused: the close is answered, its slot waits for a round trip, and the next session opens its own channel', async (t) => {
  const { s, conn } = await connected(t, { maxSessions: 10, closeUnusedAfterMs: 50 }, 10);
  await runOne(conn);
  await until('the spare closed by the server', () => s.unusedClosed() === 1);
  // Our close answers the server's: the session's and the spare's.
  await until('the spare\'s close answered', () => s.closesReceived() === 2);
  assert.equal(conn.reclaimableSlots, 2, 'the spare\'s slot should count as closed, as the session\'s does');
  const opensBefore = s.opens();
  await runOne(conn);
  assert.equal(s.opens(), opensBefore + 2, 'the next session should open a channel of its own, and a new spare');
  assert.equal(s.refused(), 0);
});

// ---- HostPool over real connections ----------------------------------------------

function exec(pool: HostPool, command: string): Promise<string> {
  return new Promise((resolve) => {
    pool.request({ kind: 'exec', command, closeStdin: true }, {
      onOpen: ({ channel }) => {
        let out = '';
        channel!.on('data', (d: Buffer) => (out += d.toString()));
        channel!.once('close', () => resolve(out));
      },
      onError: (err) => resolve(`${err.codeName}: ${err.message}`),
    }, WAIT_MS);
  });
}

test('HostPool over real connections: 30 concurrent execs against MaxSessions 3 while assuming 10 all succeed, and the pool learns 3', async (t) => {
  const s = await startSessionServer({ maxSessions: 3 });
  t.after(() => s.close());
  const pool = realPool(t, s, { maxSessions: 10, maxConnections: 2 });
  const outs = await Promise.all(Array.from({ length: 30 }, () => exec(pool, 'true')));
  assert.deepEqual(outs.filter((o) => o !== 'ok\n'), []);
  assert.equal(pool.maxSessions, 3);
  assert.ok(pool.connections.every((c) => c.maxSessions === 3));
});

test('HostPool over real connections: a server that refuses every session: the caller hears why after one retry, not a loop', async (t) => {
  const s = await startSessionServer({ maxSessions: 0 });
  t.after(() => s.close());
  const pool = realPool(t, s, { maxSessions: 10, maxConnections: 1 });
  // The first session and the spare go out together; with the spare still counted, the first refusal looks like a lower limit.
  const out = await exec(pool, 'true');
  assert.match(out, /^CHANNEL_OPEN_FAILED: 127\.0\.0\.1 refused a session channel on a connection holding none .*MaxSessions/);
  assert.ok(s.opens() <= 3, `${s.opens()} channel opens for one request`);
});

test('HostPool over real connections: 20 callers churning 5 execs each on one connection at MaxSessions 10: closed slots are reused only once the server freed them', async (t) => {
  const s = await startSessionServer({ maxSessions: 10 });
  t.after(() => s.close());
  const pool = realPool(t, s, { maxSessions: 10, maxConnections: 1 });
  const outs = await Promise.all(Array.from({ length: 20 }, async () => {
    let bad = 0;
    for (let i = 0; i < 5; i++) if ((await exec(pool, 'true')) !== 'ok\n') bad++;
    return bad;
  }));
  assert.deepEqual(outs.filter((n) => n > 0), []);
  assert.equal(s.refused(), 0, 'a slot was reused before the server had freed it');
  assert.ok(s.peak() <= 10);
  assert.equal(pool.maxSessions, 10);
  assert.equal(pool.connections.length, 1);
});
