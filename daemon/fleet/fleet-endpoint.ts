// One endpoint (host:port, as the pool's Endpoint keys it) as the fleet
// shares it: this daemon's gate to it (pool/fleet-gate.ts). Three records in
// Redis, per endpoint:
//  - a semaphore of handshakes in flight (redis-semaphore): a permit is taken
//    before each handshake and given back when it ends; it expires by itself
//    after ConnectTimeout + 2 s, so a daemon that dies mid-handshake costs
//    the fleet nothing for longer than that;
//  - a semaphore of open connections (redis-semaphore): a permit per
//    connection for its life, renewed every 5 s and expiring 15 s after the
//    last renewal, so a dead daemon's connections are forgotten;
//  - a presence hash: each daemon that wants or holds connections writes
//    what it holds and wants every second, and from everyone's records each
//    daemon works out its own fair share (share.ts). It opens connections
//    only below its share, and hands back connections above it when another
//    daemon is short of its own.
// Without Redis (down, or never reached) every request gets a local permit
// at once: the local limits apply, and connections opened so are counted
// into the fleet once Redis is back, or handed back if the fleet is full.
import { Semaphore } from 'redis-semaphore';
import type { FleetLimits } from '../config';
import type { Logger } from '../log';
import type { FleetGate, FleetPermit, GatedPool } from '../pool/fleet-gate';
import type { PooledConnection } from '../ssh/pooled-connection';
import type { RedisLink } from './link';
import { fairShares, type Wanter } from './share';

/** How often presence is written and read, leases renewed and shares balanced. */
export const HEARTBEAT_MS = 1000;
/** A daemon not heard from for this long is gone, whatever its record says. */
const PRESENCE_STALE_MS = 3 * HEARTBEAT_MS;
/** The presence hash of an endpoint nobody wants any more disappears after this. */
const PRESENCE_KEY_TTL_MS = 60_000;
/** A connection permit's lease, and how often it is renewed. */
export const CONNECTION_LEASE_MS = 15_000;
const RENEW_EVERY_MS = 5000;
/** A handshake permit lives ConnectTimeout plus this. */
const HANDSHAKE_LEASE_MARGIN_MS = 2000;
/** While the fleet is at its budget or this daemon at its share: the pause between attempts (jittered up to double). */
const RETRY_MS = 100;
/** A permit handed to no pool within this long goes back. */
const UNCLAIMED_MS = 1000;
/**
 * A daemon that starts wanting an endpoint opens its first connection at
 * once, and more only once its presence has been visible for a heartbeat:
 * daemons that start together see each other before they divide the cap,
 * instead of the first taking more than its share and later handing it
 * back (a login each).
 */
const SETTLE_MS = HEARTBEAT_MS;
/**
 * How long another daemon must have been short of its share before this one
 * hands back an idle connection, and a busy one. At the tail of a burst,
 * daemons that finish first leave the others short for a few seconds, a
 * shortage that ends by itself; a hand-back then would only cost a login.
 */
const IDLE_HAND_BACK_AFTER_MS = 5000;
const BUSY_HAND_BACK_AFTER_MS = 10_000;

/** A connection permit, and while the handshake runs a handshake permit; neither when opened on local limits. */
class Ticket implements FleetPermit {
  conn: PooledConnection | undefined;
  connectionPermit: Semaphore | undefined;
  handshakePermit: Semaphore | undefined;
  grantedAt = Date.now();
  renewedAt = Date.now();

  constructor(readonly id: string, private readonly endpoint: FleetEndpoint) {}

  bind(conn: PooledConnection): void {
    this.conn = conn;
    this.endpoint.bound(this, conn);
  }
}

/** Another daemon's presence record, and what this daemon makes of it. */
interface Presence {
  held: number;
  demand: number;
  since: number;
  at: number;
}

/** One endpoint's figures; a FleetTarget in the wire's status (proto/sshmux.proto). */
export interface FleetEndpointStatus {
  endpoint: string;
  maxConcurrentHandshakes: number;
  maxConnections: number;
  /** In Redis: handshakes in flight and connections held by the whole fleet; daemons wanting the endpoint. */
  fleetHandshakes: number;
  fleetConnections: number;
  daemons: number;
  /** This daemon's fair share of maxConnections now. */
  share: number;
  /** This daemon's own. */
  handshakes: number;
  connections: number;
  /** Connections opened on local limits while Redis was away, not yet counted in the fleet. */
  untracked: number;
  handBacks: number;
  /** Seconds since the fleet figures were read. */
  updatedAgoS: number;
}

interface Snapshot {
  at: number;
  fleetHandshakes: number;
  fleetConnections: number;
  daemons: number;
  share: number;
  /** The other wanters, with their shares: who is short of theirs. */
  others: Array<Presence & { id: string; share: number }>;
}

export class FleetEndpoint implements FleetGate {
  readonly handshakeKey: string;
  readonly connectionKey: string;
  readonly presenceKey: string;
  handBacks = 0;
  private readonly pools = new Set<GatedPool>();
  private readonly waiters = new Map<() => void, GatedPool>();
  private readonly byConn = new Map<PooledConnection, Ticket>();
  /** Granted, not yet taken by a pool. */
  private ready: Ticket[] = [];
  /** Holding a connection permit, waiting for a handshake permit. */
  private pending: Ticket | undefined;
  private nextTicket = 1;
  private since = 0;
  /** Since when each other daemon has been short of its share, while it is. */
  private readonly shortSince = new Map<string, number>();
  private published = false;
  private pumping = false;
  private ticking = false;
  private handshakeLeaseMs = 15_000 + HANDSHAKE_LEASE_MARGIN_MS;
  private snapshot: Snapshot = { at: 0, fleetHandshakes: 0, fleetConnections: 0, daemons: 0, share: 0, others: [] };

  constructor(
    readonly endpoint: string,
    readonly limits: () => FleetLimits,
    private readonly link: RedisLink,
    private readonly daemonId: string,
    private readonly log: Logger,
  ) {
    const base = `sshmux:fleet:${endpoint}`;
    this.handshakeKey = `${base}:handshakes`;
    this.connectionKey = `${base}:connections`;
    this.presenceKey = `${base}:daemons`;
  }

  // ---- FleetGate ----------------------------------------------------------

  take(pool: GatedPool, wake: () => void): FleetPermit | undefined {
    this.pools.add(pool);
    this.handshakeLeaseMs = Math.max(this.handshakeLeaseMs, pool.handshakeTimeoutMs + HANDSHAKE_LEASE_MARGIN_MS);
    const granted = this.ready.shift();
    if (granted) return granted;
    // Without Redis, the local limits alone: the pool checked them.
    if (!this.link.up) return new Ticket(this.ticketId(), this);
    this.waiters.set(wake, pool);
    void this.pump();
    return undefined;
  }

  forget(wake: () => void): void {
    this.waiters.delete(wake);
  }

  handshakeEnded(conn: PooledConnection): void {
    const ticket = this.byConn.get(conn);
    if (ticket) this.giveBack(ticket, 'handshake');
  }

  released(conn: PooledConnection): void {
    const ticket = this.byConn.get(conn);
    if (!ticket) return;
    this.byConn.delete(conn);
    this.giveBack(ticket, 'all');
    if (this.waiters.size > 0) void this.pump();
  }

  why(): string {
    if (!this.link.up) return '';
    const s = this.snapshot;
    const limits = this.limits();
    if (s.fleetConnections >= limits.maxConnections || this.held() >= s.share) {
      return `the fleet holds ${s.fleetConnections} of its ${limits.maxConnections} connections to ${this.endpoint}, ` +
        `${this.held()} of them this daemon's, whose share is ${s.share}: raise fleet.maxConnections or give requests longer deadlines`;
    }
    if (s.fleetHandshakes >= limits.maxConcurrentHandshakes) {
      return `the fleet's ${limits.maxConcurrentHandshakes} handshakes to ${this.endpoint} are all in flight`;
    }
    return '';
  }

  // ---- what the fleet calls -------------------------------------------------

  /** A permit was bound to its connection. */
  bound(ticket: Ticket, conn: PooledConnection): void {
    this.byConn.set(conn, ticket);
  }

  /** Anything to say to Redis: connections held, permits granted, or pools that want some. */
  get active(): boolean {
    return this.byConn.size > 0 || this.ready.length > 0 || this.pending !== undefined || this.waiters.size > 0 || this.demand() > 0;
  }

  /** Redis went away: the waiting pools take local permits now. */
  linkDown(): void {
    this.wakeAll();
  }

  /** Every second: presence, leases, connections opened without Redis, shares. */
  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      this.sweep();
      if (!this.link.up) return;
      if (!this.active && !this.published) return;
      if (!(await this.heartbeat())) return;
      await this.renew();
      await this.countUntracked();
      this.balance();
      if (this.waiters.size > 0) void this.pump();
    } finally {
      this.ticking = false;
    }
  }

  status(): FleetEndpointStatus {
    const limits = this.limits();
    let handshakes = this.ready.length;
    let connections = 0;
    let untracked = 0;
    for (const [conn, t] of this.byConn) {
      if (connectionClosed(conn)) continue;
      connections++;
      if (connectionHandshaking(conn)) handshakes++;
      if (!t.connectionPermit) untracked++;
    }
    const s = this.snapshot;
    return {
      endpoint: this.endpoint,
      maxConcurrentHandshakes: limits.maxConcurrentHandshakes,
      maxConnections: limits.maxConnections,
      fleetHandshakes: s.fleetHandshakes,
      fleetConnections: s.fleetConnections,
      daemons: s.daemons,
      share: s.share,
      handshakes,
      connections,
      untracked,
      handBacks: this.handBacks,
      updatedAgoS: s.at ? (Date.now() - s.at) / 1000 : -1,
    };
  }

  /** Daemon exit: every permit back, this daemon's presence gone; bounded by the link's command timeout. */
  async close(): Promise<void> {
    const tickets = [...this.byConn.values(), ...this.ready, ...(this.pending ? [this.pending] : [])];
    this.byConn.clear();
    this.ready = [];
    this.pending = undefined;
    this.waiters.clear();
    await Promise.all(tickets.map((t) => this.release(t, 'all')));
    if (this.published) await this.link.run('leave the fleet', (c) => c.hdel(this.presenceKey, this.daemonId));
  }

  // ---- acquiring ------------------------------------------------------------

  /** Asks Redis for permits while pools wait; one request at a time per endpoint. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.stillWaiting() && this.ready.length === 0 && this.link.up) {
        const outcome = await this.acquire();
        if (outcome === 'granted') this.wakeAll();
        else if (outcome === 'wait') await sleep(RETRY_MS * (1 + Math.random()));
        else break;
      }
    } catch (err) {
      // A bug, not Redis (link.run catches those): the pools fall back to local permits below.
      this.log.error({ endpoint: this.endpoint, err: (err as Error).message }, 'fleet: permit loop failed');
    } finally {
      this.pumping = false;
    }
    // Redis went away meanwhile: the waiting pools go on with local permits.
    if (!this.link.up) this.wakeAll();
  }

  /** One attempt at a connection permit within this daemon's share, then a handshake permit. */
  private async acquire(): Promise<'granted' | 'wait' | 'failed'> {
    // Fresh presence first: the share depends on who else wants this endpoint right now.
    if (!(await this.heartbeat())) return 'failed';
    const limits = this.limits();
    let ticket = this.pending;
    if (!ticket) {
      const held = this.held();
      if (held >= this.snapshot.share) return 'wait';
      if (held >= 1 && Date.now() - this.since < SETTLE_MS) return 'wait';
      ticket = new Ticket(this.ticketId(), this);
      const permit = this.semaphore(this.connectionKey, limits.maxConnections, CONNECTION_LEASE_MS, ticket.id);
      const got = await this.link.run('take a connection permit', () => permit.tryAcquire());
      if (got === undefined) return 'failed';
      if (!got) return 'wait';
      ticket.connectionPermit = permit;
      ticket.renewedAt = Date.now();
      this.pending = ticket;
    }
    const permit = this.semaphore(this.handshakeKey, limits.maxConcurrentHandshakes, this.handshakeLeaseMs, `${ticket.id}/handshake`);
    const got = await this.link.run('take a handshake permit', () => permit.tryAcquire());
    if (got === undefined) return 'failed';
    if (!got) return 'wait';
    ticket.handshakePermit = permit;
    ticket.grantedAt = Date.now();
    this.pending = undefined;
    this.ready.push(ticket);
    return 'granted';
  }

  /** Connections held or on their way: bound permits, granted ones, the one being acquired. */
  private held(): number {
    return this.byConn.size + this.ready.length + (this.pending ? 1 : 0);
  }

  /** Forgets the pools whose queue was served meanwhile; whether any still wait. */
  private stillWaiting(): boolean {
    for (const [wake, pool] of this.waiters) if (!pool.waitingForConnection) this.waiters.delete(wake);
    return this.waiters.size > 0;
  }

  /** Connections this daemon's pools could use now (forgetting, as it goes, the waiters whose pool was served). */
  private demand(): number {
    this.stillWaiting();
    let n = 0;
    for (const pool of this.pools) n += pool.wantedConnections();
    return n;
  }

  /**
   * Writes this daemon's presence and reads everyone's, with the fleet's
   * permit counts, in one round trip; works out this daemon's share.
   */
  private async heartbeat(): Promise<boolean> {
    const now = Date.now();
    const held = this.held();
    const demand = this.demand();
    if (held === 0 && demand === 0) this.since = 0;
    else if (this.since === 0) this.since = now;
    const present = held > 0 || demand > 0;
    const me: Presence = { held, demand, since: this.since, at: now };
    const replies = await this.link.run('share presence', (c) => {
      const m = c.multi();
      if (present) m.hset(this.presenceKey, this.daemonId, JSON.stringify(me));
      else m.hdel(this.presenceKey, this.daemonId);
      m.pexpire(this.presenceKey, PRESENCE_KEY_TTL_MS);
      m.hgetall(this.presenceKey);
      // redis-semaphore keeps each semaphore as a sorted set of holders scored by when they last took or renewed it.
      m.zcount(`semaphore:${this.handshakeKey}`, now - this.handshakeLeaseMs, '+inf');
      m.zcount(`semaphore:${this.connectionKey}`, now - CONNECTION_LEASE_MS, '+inf');
      return m.exec();
    });
    if (!replies) return false;
    const failed = replies.find(([err]) => err);
    if (failed) {
      await this.link.run('share presence', () => Promise.reject(failed[0]));
      return false;
    }
    this.published = present;
    const records = replies[2][1] as Record<string, string>;
    const wanters: Wanter[] = [];
    const others = new Map<string, Presence>();
    const stale: string[] = [];
    for (const [id, text] of Object.entries(records ?? {})) {
      if (id === this.daemonId) continue;
      const p = parsePresence(text);
      if (!p || p.at < now - PRESENCE_STALE_MS) {
        stale.push(id);
        continue;
      }
      others.set(id, p);
      if (p.demand > 0) wanters.push({ id, demand: p.demand, since: p.since });
    }
    if (demand > 0) wanters.push({ id: this.daemonId, demand, since: this.since });
    const shares = fairShares(this.limits().maxConnections, wanters);
    this.snapshot = {
      at: now,
      fleetHandshakes: Number(replies[3][1]),
      fleetConnections: Number(replies[4][1]),
      daemons: wanters.length,
      share: shares.get(this.daemonId) ?? 0,
      others: [...others].map(([id, p]) => ({ id, ...p, share: shares.get(id) ?? 0 })),
    };
    // A daemon that died left its record: clear it for everyone.
    if (stale.length) void this.link.run('clear stale presence', (c) => c.hdel(this.presenceKey, ...stale));
    return true;
  }

  // ---- keeping ----------------------------------------------------------------

  /** Renews connection permits due for it; a lost one (expired during an outage) makes its connection untracked. */
  private async renew(): Promise<void> {
    const now = Date.now();
    const tickets = [...this.byConn.values(), ...(this.pending ? [this.pending] : [])];
    const limit = this.limits().maxConnections;
    for (const t of tickets) {
      if (!t.connectionPermit || now - t.renewedAt < RENEW_EVERY_MS) continue;
      // redis-semaphore's own refresh timer would throw an unhandled rejection when Redis fails
      // (its issue #199); the documented way to refresh by hand is a lock "acquired externally".
      const renewal = new Semaphore(this.link.client, this.connectionKey, limit, {
        identifier: t.id, acquiredExternally: true, lockTimeout: CONNECTION_LEASE_MS, refreshInterval: 0,
      });
      const ok = await this.link.run('renew a connection permit', () => renewal.tryAcquire());
      if (ok === undefined) return;
      if (ok) {
        t.renewedAt = now;
      } else {
        t.connectionPermit = undefined;
        this.log.debug({ endpoint: this.endpoint, permit: t.id }, 'fleet: a connection permit expired; counting the connection again');
      }
    }
  }

  /**
   * Connections opened on local limits (Redis was away) or whose permit
   * expired: each takes a connection permit now; those the full fleet has no
   * room for are handed back, so the cap holds again.
   */
  private async countUntracked(): Promise<void> {
    const limit = this.limits().maxConnections;
    for (const [conn, t] of this.byConn) {
      if (t.connectionPermit || connectionLeaving(conn)) continue;
      const permit = this.semaphore(this.connectionKey, limit, CONNECTION_LEASE_MS, t.id);
      const got = await this.link.run('count a connection', () => permit.tryAcquire());
      if (got === undefined) return;
      if (got) {
        t.connectionPermit = permit;
        t.renewedAt = Date.now();
      } else {
        this.handBack(conn, 'the fleet is at its connection cap');
      }
    }
  }

  /**
   * Above its share while another daemon is short of its own: hand
   * connections back once the shortage has lasted, idle ones first, busy
   * ones (they close: no new sessions, closed when theirs end) only after a
   * longer while.
   */
  private balance(): void {
    const s = this.snapshot;
    // What the others lack, counting only shortages that have lasted.
    let shortLong = 0;
    let shortLonger = 0;
    const seen = new Set<string>();
    for (const o of s.others) {
      const lack = Math.min(o.share, o.demand) - o.held;
      if (lack <= 0) continue;
      seen.add(o.id);
      const since = this.shortSince.get(o.id) ?? s.at;
      this.shortSince.set(o.id, since);
      if (s.at - since >= IDLE_HAND_BACK_AFTER_MS) shortLong += lack;
      if (s.at - since >= BUSY_HAND_BACK_AFTER_MS) shortLonger += lack;
    }
    for (const id of this.shortSince.keys()) if (!seen.has(id)) this.shortSince.delete(id);
    if (shortLong === 0) return;
    // A connection still handshaking is not handed back: it may be what this daemon's share needs next.
    const mine = [...this.byConn.keys()].filter((c) => !connectionLeaving(c) && !connectionHandshaking(c));
    const excess = mine.length - s.share;
    if (excess <= 0) return;
    // Every daemon above its share gives its part of what the others lack, not all of it each.
    let allExcess = excess;
    for (const o of s.others) allExcess += Math.max(0, o.held - o.share);
    const part = (short: number): number => Math.min(excess, Math.ceil((short * excess) / allExcess));
    // Idle ones after a while (nobody waits for them), busy ones after longer, the least busy first.
    mine.sort((a, b) => Number(connectionIdle(b)) - Number(connectionIdle(a)) || connectionSessions(a) - connectionSessions(b));
    const idle = mine.filter(connectionIdle).slice(0, part(shortLong));
    const busy = mine.filter((c) => !connectionIdle(c)).slice(0, Math.max(0, part(shortLonger) - idle.length));
    const giving = [...idle, ...busy];
    for (const conn of giving) {
      this.handBack(conn, `above this daemon's share (${s.share} of ${this.limits().maxConnections}) while another daemon waits for its own`);
    }
  }

  private handBack(conn: PooledConnection, why: string): void {
    this.handBacks++;
    this.log.info({ endpoint: this.endpoint, connection: conn.id, sessions: connectionSessions(conn), why }, 'fleet: handing a connection back');
    // No new sessions; it closes once its running ones end (at once if idle), and the pool's onClosed releases its permits.
    conn.close();
  }

  /** Permits of connections that closed unseen (while connecting), and granted permits nobody took. */
  private sweep(): void {
    for (const [conn, t] of this.byConn) {
      if (connectionClosed(conn)) {
        this.byConn.delete(conn);
        void this.release(t, 'all');
      }
    }
    const now = Date.now();
    const unclaimed = this.ready.filter((t) => now - t.grantedAt > UNCLAIMED_MS);
    if (unclaimed.length) {
      this.ready = this.ready.filter((t) => !unclaimed.includes(t));
      for (const t of unclaimed) void this.release(t, 'all');
    }
    if (this.pending && this.waiters.size === 0 && !this.pumping) {
      const t = this.pending;
      this.pending = undefined;
      void this.release(t, 'all');
    }
    for (const pool of this.pools) {
      if (pool.empty && ![...this.waiters.values()].includes(pool)) this.pools.delete(pool);
    }
  }

  private giveBack(ticket: Ticket, which: 'handshake' | 'all'): void {
    void this.release(ticket, which);
  }

  /** Gives permits back to Redis; never throws (an unreturned permit expires with its lease). */
  private async release(ticket: Ticket, which: 'handshake' | 'all'): Promise<void> {
    const permits = [ticket.handshakePermit, which === 'all' ? ticket.connectionPermit : undefined].filter((p): p is Semaphore => !!p);
    ticket.handshakePermit = undefined;
    if (which === 'all') ticket.connectionPermit = undefined;
    for (const p of permits) await this.link.run('give a permit back', () => p.release());
  }

  private wakeAll(): void {
    const wakes = [...this.waiters.keys()];
    this.waiters.clear();
    for (const wake of wakes) wake();
  }

  private semaphore(key: string, limit: number, leaseMs: number, identifier: string): Semaphore {
    // One attempt per call (this file paces the retries) and no refresh timer (renew() refreshes).
    return new Semaphore(this.link.client, key, limit, {
      identifier, lockTimeout: leaseMs, acquireAttemptsLimit: 1, retryInterval: 1, refreshInterval: 0,
    });
  }

  private ticketId(): string {
    return `${this.daemonId}/${this.nextTicket++}`;
  }
}

function parsePresence(text: string): Presence | undefined {
  try {
    const p = JSON.parse(text) as Presence;
    return [p.held, p.demand, p.since, p.at].every((v) => typeof v === 'number' && Number.isFinite(v)) ? p : undefined;
  } catch {
    return undefined;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

// What the fleet reads of a connection: its state and load, through PooledConnection.

function connectionClosed(conn: PooledConnection): boolean {
  return conn.state === 'closed';
}

function connectionHandshaking(conn: PooledConnection): boolean {
  return conn.state === 'connecting';
}

/** Already on its way out: closing, or closed. */
function connectionLeaving(conn: PooledConnection): boolean {
  return conn.state === 'closing' || conn.state === 'closed';
}

/** Ready, with no session and no tunnel: handing it back costs nobody anything. */
function connectionIdle(conn: PooledConnection): boolean {
  return conn.state === 'ready' && conn.sessions === 0 && conn.tunnels === 0;
}

function connectionSessions(conn: PooledConnection): number {
  return conn.sessions + conn.tunnels;
}
