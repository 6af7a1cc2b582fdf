// A pool of connections to one resolved destination (undici's Pool): it
// hands waiting requests to the least-loaded connection with a free session
// slot, opens connections up to maxConnections within the endpoint's
// handshake budget, and otherwise keeps requests in a bounded FIFO that
// moves whenever capacity frees. While the endpoint's breaker is open, a
// request waits only if its deadline reaches the next probe. This file is
// the scheduling: admission, dispatch, and what a connection's events do to
// the queue. Beside it: what a failed handshake means (failure-policy.ts),
// the pool's messages (pool-errors.ts), its handshake counts
// (handshake-record.ts), and the callers that wait for a connection rather
// than a slot (connection-waiters.ts).
import type { ClientChannel, SFTPWrapper } from '../ssh/ssh2';
import { Code, codeName } from '../../proto';
import type { Limits } from '../config';
import { MuxError } from '../errors';
import type { Logger } from '../log';
import type { ResolvedHost } from '../ssh/ssh-config';
import { terminate } from '../ssh/channel';
import type { Tunneler } from '../ssh/dial';
import { systemClock, type Clock } from './clock';
import { ReadyWaiters, TunnelWaiters, type ReadyCheck, type TunnelRequest } from './connection-waiters';
import type { Endpoint } from './endpoint';
import { failurePolicy, type FailurePolicy } from './failure-policy';
import { LOCAL_GATE, type FleetGate, type FleetPermit, type GatedPool } from './fleet-gate';
import { HandshakeRecord, type PoolStats } from './handshake-record';
import { hostUnavailable, jumpFailed, notConnected, queueFull, waitExpired } from './pool-errors';
import { NO_POOL_METRICS, type PoolMetrics } from './pool-metrics';
import type { ConnectionFactory, ConnectionOwner, OpenResult, PooledConnection, SessionSpec } from '../ssh/pooled-connection';
import { RequestQueue } from './queue';
import { poolLoad, type PoolLoad } from './stats';

export interface OpenedSession {
  /** A session channel; for an 'sftp' request, `sftp` instead. */
  channel?: ClientChannel;
  sftp?: SFTPWrapper;
  connection: PooledConnection;
  waitedMs: number;
  newConnection: boolean;
}

export interface SessionHandler {
  onOpen(session: OpenedSession): void;
  onError(err: MuxError): void;
}

export class PendingSession {
  /**
   * queued: waiting for a slot (in the queue). opening: handed to a
   * connection, its channel on the way. done: handed over, failed or
   * cancelled; a channel that opens for it now is discarded.
   */
  state: 'queued' | 'opening' | 'done' = 'queued';
  /** Its deadline for getting a session. */
  timer: unknown;

  constructor(
    /** Changes when a reload moves the request to the pool for the new settings. */
    public pool: HostPool,
    readonly spec: SessionSpec,
    readonly handler: SessionHandler,
    readonly createdAt: number,
  ) {}

  /** The caller gave up (cancel, client gone). A channel opening for it is closed when it arrives. */
  cancel(): void {
    this.pool.cancel(this);
  }
}

/** What the pool takes from outside: its connections (ssh/connection.ts; fakes in the unit tests), and a fake clock in tests. */
export interface HostPoolDeps {
  newConnection: ConnectionFactory;
  clock?: Clock;
  /** The fleet's budget for this endpoint, shared through Redis (daemon/fleet/); without a fleet, always yes. */
  fleet?: FleetGate;
  /** Where handshakes are counted; none: not counted. */
  metrics?: PoolMetrics;
}

export class HostPool implements ConnectionOwner, Tunneler, GatedPool {
  readonly connections: PooledConnection[] = [];
  readonly queue = new RequestQueue<PendingSession>();
  /** The lowest MaxSessions the server has shown; new connections start with it. */
  maxSessions: number;
  lastUsed: number;
  private nextConnectionId = 1;
  private dispatching = false;
  /** Takes no new work: closed (the daemon stops) or drained. */
  private closed = false;
  /** Drained (sshmuxctl drain, a reload that changed its settings): its waiting requests moved to a fresh pool. */
  private drained = false;
  private readonly wake = (): void => this.dispatch();
  private readonly clock: Clock;
  private readonly newConnection: ConnectionFactory;
  private readonly fleet: FleetGate;
  private readonly handshakes: HandshakeRecord;
  private readonly readyWaiters: ReadyWaiters;
  private readonly tunnelWaiters: TunnelWaiters;

  constructor(
    readonly name: string,
    readonly host: ResolvedHost,
    public limits: Limits,
    readonly endpoint: Endpoint,
    private readonly log: Logger,
    /** The jump host's pool this destination is reached through. */
    readonly via: HostPool | undefined,
    deps: HostPoolDeps,
  ) {
    this.maxSessions = limits.maxSessions;
    this.clock = deps.clock ?? systemClock;
    this.newConnection = deps.newConnection;
    this.fleet = deps.fleet ?? LOCAL_GATE;
    this.handshakes = new HandshakeRecord(name, this.destination, this.clock, deps.metrics ?? NO_POOL_METRICS, log);
    this.readyWaiters = new ReadyWaiters(this.clock, () => this.releaseDemand());
    this.tunnelWaiters = new TunnelWaiters(() => this.releaseDemand());
    this.lastUsed = this.clock.now();
  }

  get destination(): string {
    return `${this.host.user}@${this.host.hostname}:${this.host.port}`;
  }

  /** Requests and handshakes counted, for status. */
  get stats(): PoolStats {
    return this.handshakes.stats;
  }

  /** The last handshake failures, for the status page. */
  get recentErrors(): ReadonlyArray<{ at: number; code: string; message: string }> {
    return this.handshakes.recentErrors;
  }

  /** Idle: nothing queued and no connection; the agent may forget it. */
  get empty(): boolean {
    return this.queue.length === 0 && this.connections.length === 0;
  }

  get state(): 'ok' | 'backoff' | 'failing' | 'down' | 'draining' | 'closed' {
    if (this.drained) return 'draining';
    if (this.closed) return 'closed';
    if (this.hasReady()) return 'ok';
    if (this.endpoint.breaker !== 'closed') return 'down';
    if (this.endpoint.backoffRemaining() > 0) return 'backoff';
    return this.stats.lastError && this.endpoint.failures > 0 ? 'failing' : 'ok';
  }

  /** How long one of its handshakes may take (GatedPool). */
  get handshakeTimeoutMs(): number {
    return this.host.connectTimeoutMs;
  }

  /** Connections, sessions and queue, counted once for every reader. */
  get load(): PoolLoad {
    return poolLoad(this.connections, this.queue.length);
  }

  /** Connections ready now. */
  get readyConnections(): number {
    return this.connections.filter((c) => c.state === 'ready').length;
  }

  // ---- admission ------------------------------------------------------------

  /** A session for `spec`, within `waitMs` (the sooner of the queue timeout and the call's deadline). */
  request(spec: SessionSpec, handler: SessionHandler, waitMs: number): PendingSession {
    this.stats.requests++;
    this.lastUsed = this.clock.now();
    const pending = new PendingSession(this, spec, handler, this.lastUsed);
    const refused = this.refusal(waitMs);
    if (refused) {
      this.finish(pending, refused);
    } else {
      // pending.pool, not this: a reload may move the request to another pool.
      pending.timer = this.clock.setTimeout(() => pending.pool.expire(pending), waitMs);
      // Nobody ahead of it and a slot free (a warm exec): straight to the connection.
      const conn = this.queue.length === 0 && !this.dispatching && spec.kind !== 'sftp' ? this.leastLoaded() : undefined;
      if (conn) {
        this.open(conn, pending);
      } else {
        this.queue.push(pending);
        this.dispatch();
      }
    }
    return pending;
  }

  /** Why a new request may not wait here, if it may not. */
  private refusal(waitMs: number): MuxError | undefined {
    if (this.closed) return MuxError.shuttingDown();
    if (this.breakerBars(waitMs)) {
      this.endpoint.noteDemand();
      return hostUnavailable(this.name, this.endpoint, waitMs);
    }
    if (this.queue.length >= this.limits.queueLimit) return queueFull(this.name, this.queue.length, this.limits.queueLimit);
    return undefined;
  }

  /**
   * While the breaker is open and this pool has no ready connection, a
   * request may wait only if it would still be waiting when the next probe
   * starts; and only for a host that has answered before (one that never
   * did is more likely a mistake, and the caller hears so at once).
   */
  private breakerBars(waitMs: number): boolean {
    if (this.endpoint.breaker === 'closed' || this.hasReady()) return false;
    return (this.endpoint.answered ? waitMs : 0) < this.endpoint.nextProbeIn();
  }

  /**
   * Resolves with a ready connection once this pool has one, opening one
   * (within the handshake budget, the breaker and the fleet's gate) if it
   * has none; rejects when a handshake fails as waiting requests do, or
   * after waitMs. Takes no session slot: the SSH front door checks a
   * destination this way before it accepts a channel, so that a failed
   * handshake is the channel's open failure, which SSH clients show with
   * its message; sshmuxctl check too.
   */
  connected(waitMs: number): ReadyCheck {
    const startedAt = this.clock.now();
    this.lastUsed = startedAt;
    const expired = (): MuxError => new MuxError(Code.DEADLINE_EXCEEDED,
      notConnected(this.name, this.endpoint, this.stats.lastError, Math.round((this.clock.now() - startedAt) / 1000)), 'handshaking');
    return this.readyWaiters.check(waitMs, expired, this.firstReady() ?? this.mayNotWait(waitMs), this.wake);
  }

  /** Why a caller waiting for a connection, not a slot, may not: closed, or the breaker bars its wait (none: a tunnel's). */
  private mayNotWait(waitMs: number | undefined): MuxError | undefined {
    if (this.closed) return MuxError.shuttingDown();
    if (!this.breakerBars(waitMs ?? 0)) return undefined;
    this.endpoint.noteDemand();
    return hostUnavailable(this.name, this.endpoint, waitMs);
  }

  /**
   * A channel to host:port through one of this pool's connections, for a
   * connection to a host behind this one. Tunnels take no session slot, so
   * any ready connection will do; if there is none, one is opened.
   */
  tunnel(host: string, port: number): TunnelRequest {
    this.lastUsed = this.clock.now();
    // The connection behind it has its own ConnectTimeout, not a deadline to weigh.
    const refused = this.mayNotWait(undefined);
    return this.tunnelWaiters.request(host, port, refused && jumpFailed(this.name, refused), this.wake);
  }

  cancel(pending: PendingSession): void {
    if (pending.state === 'done') return;
    pending.state = 'done';
    this.clock.clearTimeout(pending.timer);
    this.queue.remove(pending);
    this.releaseDemand();
  }

  // ---- closing and draining -------------------------------------------------

  /** Stops taking requests; fails the waiting ones; lets running sessions finish. */
  close(): void {
    this.closed = true;
    this.failQueued(MuxError.shuttingDown());
    this.endpoint.forget(this.wake);
    this.fleet.forget(this.wake);
    this.closeConnections();
  }

  private closeConnections(): void {
    for (const conn of [...this.connections]) {
      if (conn.state === 'connecting') conn.destroy();
      else conn.close();
    }
  }

  /**
   * Drains the pool (sshmuxctl drain, or a reload changed this
   * destination's settings): take no more work, let running sessions finish
   * on the old connections, and hand back the requests still waiting so a
   * fresh pool can serve them.
   */
  drain(): PendingSession[] {
    this.closed = true;
    this.drained = true;
    this.endpoint.forget(this.wake);
    this.fleet.forget(this.wake);
    const waiting = this.queue.removeAll();
    // Their next request goes to the pool for the new settings.
    this.readyWaiters.resolveAll(undefined);
    this.closeConnections();
    return waiting;
  }

  /** Takes over a request from a drained pool, keeping its deadline and its place in line. */
  adopt(pending: PendingSession): void {
    pending.pool = this;
    this.queue.push(pending);
    this.dispatch();
  }

  /** Closes every connection now (daemon exit). */
  destroy(): void {
    this.close();
    for (const conn of [...this.connections]) conn.destroy();
  }

  /** Tunneler: the least time since one of its ready connections last heard from the host, ms. */
  heardAgoMs(): number | undefined {
    let least: number | undefined;
    for (const c of this.connections) {
      const ago = c.heardAgoMs;
      if (ago !== undefined && (least === undefined || ago < least)) least = ago;
    }
    return least;
  }

  /** Tunneler: a keepalive on each ready connection, so that heardAgoMs() says whether the jump host still answers. */
  probe(): void {
    for (const c of this.connections) c.probe();
  }

  // ---- dispatch -------------------------------------------------------------

  /** Hands queued work to connections with free slots, and opens connections for what is left. */
  private dispatch(): void {
    // Nothing waits (a spare opened, a slot came back between requests): nothing to hand out or open.
    if (this.dispatching || (this.queue.length === 0 && this.readyWaiters.length === 0 && this.tunnelWaiters.length === 0)) return;
    this.dispatching = true;
    try {
      while (this.queue.length > 0) {
        const head = this.queue.peek()!;
        if (head.spec.kind === 'sftp' && this.reuseSftp(head)) continue;
        const conn = this.leastLoaded();
        if (!conn) {
          // Every slot is taken; idle SFTP sessions give theirs back.
          for (const c of this.connections) if (c.idleSftpSessions > 0) c.closeIdleSftp();
          break;
        }
        this.open(conn, this.queue.shift()!);
      }
      if (this.readyWaiters.length > 0) {
        const ready = this.firstReady();
        if (ready) this.readyWaiters.resolveAll(ready);
      }
      if (this.tunnelWaiters.length > 0) this.tunnelWaiters.serve(this.fewestTunnels);
      this.grow();
      this.releaseDemand();
    } finally {
      this.dispatching = false;
    }
  }

  /** Nothing waits here any more: stop asking the endpoint for handshakes, and so its breaker for probes. */
  private releaseDemand(): void {
    if (this.queue.length === 0 && this.tunnelWaiters.length === 0 && this.readyWaiters.length === 0) {
      this.endpoint.forget(this.wake);
      this.fleet.forget(this.wake);
    }
  }

  private hasReady(): boolean {
    return this.firstReady() !== undefined;
  }

  private firstReady(): PooledConnection | undefined {
    return this.connections.find((c) => c.state === 'ready');
  }

  /** Hands an idle pooled SFTP session to the request at the head of the queue. */
  private reuseSftp(pending: PendingSession): boolean {
    for (const conn of this.connections) {
      if (conn.state !== 'ready') continue;
      const sftp = conn.takeIdleSftp();
      if (!sftp) continue;
      this.queue.shift();
      this.handOver(pending, { sftp, connection: conn, newConnection: false });
      return true;
    }
    return false;
  }

  private leastLoaded(): PooledConnection | undefined {
    let best: PooledConnection | undefined;
    for (const conn of this.connections) {
      if (conn.freeSlots > 0 && (!best || conn.sessions < best.sessions)) best = conn;
    }
    return best;
  }

  /** The ready connection carrying the fewest tunnels (a property, handed to the tunnel waiters as it is). */
  private readonly fewestTunnels = (): PooledConnection | undefined => {
    let best: PooledConnection | undefined;
    for (const conn of this.connections) {
      if (conn.state === 'ready' && (!best || conn.tunnels < best.tunnels)) best = conn;
    }
    return best;
  };

  /**
   * Session slots the waiting requests need beyond the capacity on its way:
   * the connections still handshaking (maxSessions each) and the closed
   * slots a round trip is about to give back. At least 1 while a tunnel or a
   * readiness check waits and there is no connection: they need one
   * connection, not slots. grow() opens connections for it, and the fleet
   * asks whether it is above 0 (waitingForConnection).
   */
  private shortfall(): number {
    let connecting = 0;
    let reclaimable = 0;
    for (const c of this.connections) {
      if (c.state === 'connecting') connecting++;
      reclaimable += c.reclaimableSlots;
    }
    const slots = this.queue.length - connecting * this.maxSessions - reclaimable;
    const needsOne = (this.tunnelWaiters.length > 0 || this.readyWaiters.length > 0) && this.connections.length === 0;
    return needsOne ? Math.max(slots, 1) : slots;
  }

  /** It needs a connection beyond those on their way (GatedPool). */
  get waitingForConnection(): boolean {
    return this.shortfall() > 0;
  }

  /**
   * Connections it could use now (GatedPool): enough for the sessions it
   * holds and the requests it queues, at its MaxSessions each, within
   * maxConnections; at least one while it waits for one or a tunnel runs.
   * A pool whose connections carry only a few sessions each wants fewer
   * than it holds.
   */
  wantedConnections(): number {
    let slots = this.queue.length;
    let tunnels = false;
    for (const conn of this.connections) {
      if (conn.state === 'closed') continue;
      slots += conn.sessions;
      if (conn.tunnels > 0) tunnels = true;
    }
    let want = Math.ceil(slots / this.maxSessions);
    if (tunnels || this.waitingForConnection) want = Math.max(want, 1);
    return Math.min(this.limits.maxConnections, want);
  }

  /** Opens connections while the queue needs more capacity than is on its way. */
  private grow(): void {
    if (this.closed) return;
    let demand = this.shortfall();
    while (demand > 0 && this.connections.length < this.limits.maxConnections) {
      // Until this pool has logged in once, one handshake at a time: a
      // refused login (a wrong key, a certificate the server rejects) fails
      // every waiting request at once, and each refused login costs the
      // host a PerSourcePenalties authfail on OpenSSH >= 9.8, so a burst
      // learns it from one attempt instead of maxConnections.
      if (!this.handshakes.loggedIn && this.connections.some((c) => c.state === 'connecting')) return;
      if (!this.endpoint.available()) {
        this.endpoint.waitForCapacity(this.wake);
        return;
      }
      const permit = this.fleet.take(this, this.wake);
      if (!permit) return;
      this.openConnection(permit);
      demand -= this.maxSessions;
    }
  }

  private openConnection(permit: FleetPermit): void {
    const conn = this.newConnection(`${this.name}#${this.nextConnectionId++}`, this.host, this.maxSessions,
      this.limits.idleTimeoutMs, this, this.via);
    this.connections.push(conn);
    permit.bind(conn);
    this.endpoint.begin();
    conn.connect();
  }

  private open(conn: PooledConnection, pending: PendingSession): void {
    pending.state = 'opening';
    const newConnection = conn.sessionsOpened === 0;
    conn.openSession(pending.spec, (result: OpenResult) => {
      if (result.ok) {
        if (pending.state === 'done') {
          // Nobody waits for it any more: end the command so sshd frees the slot.
          if (result.sftp) conn.returnSftp(result.sftp);
          else terminate(result.channel, true);
          return;
        }
        this.handOver(pending, { channel: result.channel, sftp: result.sftp, connection: conn, newConnection });
        return;
      }
      if (result.error.code === Code.CHANNEL_OPEN_FAILED && result.retry) this.learnLimit(conn);
      if (pending.state === 'done') return;
      if (result.retry) {
        pending.state = 'queued';
        this.queue.unshift(pending);
        this.dispatch();
      } else {
        this.finish(pending, result.error);
      }
    });
  }

  private handOver(pending: PendingSession, session: Omit<OpenedSession, 'waitedMs'>): void {
    pending.state = 'done';
    this.clock.clearTimeout(pending.timer);
    pending.handler.onOpen({ channel: session.channel, sftp: session.sftp, connection: session.connection, newConnection: session.newConnection,
      waitedMs: this.clock.now() - pending.createdAt });
  }

  private expire(pending: PendingSession): void {
    if (pending.state === 'done') return;
    const ready = this.connections.filter((c) => c.state === 'ready');
    const opening = pending.state === 'opening';
    this.finish(pending, waitExpired(this.name, this.endpoint, {
      opening,
      waitedS: Math.round((this.clock.now() - pending.createdAt) / 1000),
      ready: ready.length,
      busy: ready.reduce((n, c) => n + c.sessions, 0),
      othersWaiting: this.queue.length - 1,
      lastError: this.stats.lastError,
      fleet: opening ? '' : this.fleet.why(),
    }));
  }

  /** Ends a request with `err` (a reload that can no longer resolve its host). */
  fail(pending: PendingSession, err: MuxError): void {
    this.finish(pending, err);
  }

  private finish(pending: PendingSession, err: MuxError): void {
    this.queue.remove(pending);
    this.releaseDemand();
    if (pending.state === 'done') return;
    pending.state = 'done';
    this.clock.clearTimeout(pending.timer);
    pending.handler.onError(err);
  }

  private failQueued(err: MuxError): void {
    for (const pending of this.queue.removeAll()) this.finish(pending, err);
    this.tunnelWaiters.rejectAll(jumpFailed(this.name, err));
    this.readyWaiters.rejectAll(err.inPhase('handshaking'));
  }

  private remove(conn: PooledConnection): void {
    const i = this.connections.indexOf(conn);
    if (i >= 0) this.connections.splice(i, 1);
  }

  // ---- ConnectionOwner: what a connection's events do to the queue --------------

  onReady(conn: PooledConnection): void {
    this.endpoint.succeeded();
    this.fleet.handshakeEnded(conn);
    this.handshakes.succeeded(conn);
    this.dispatch();
  }

  onHandshakeFailed(conn: PooledConnection, err: MuxError): void {
    this.remove(conn);
    this.fleet.released(conn);
    const policy = failurePolicy(err.code);
    this.endpoint.failed(policy, `${codeName(err.code)}: ${err.message}`);
    this.handshakes.failed(conn, err, this.endpoint.failures);
    this.failWaiting(policy, err);
    this.dispatch();
  }

  /** What a failed handshake does to the requests waiting for a connection. */
  private failWaiting(policy: FailurePolicy, err: MuxError): void {
    if (this.hasReady() || policy.waiting === 'wait-for-deadline') return;
    // A host that answered before is presumed to come back: deadlines decide.
    if (policy.trips && this.endpoint.answered) return;
    if (policy.waiting === 'fail-now' || this.endpoint.failures >= this.limits.connectionAttempts) this.failQueued(err);
  }

  onCapacity(conn: PooledConnection): void {
    this.learnLimit(conn);
    this.dispatch();
  }

  /** A connection learned the server's MaxSessions is lower than assumed (a refused session or spare): so does the pool. */
  private learnLimit(conn: PooledConnection): void {
    if (conn.maxSessions >= this.maxSessions) return;
    this.maxSessions = conn.maxSessions;
    this.log.warn({ host: this.name, connection: conn.id, maxSessions: conn.maxSessions },
      'server refused a session: its MaxSessions is lower than assumed; using the lower limit');
  }

  onClosed(conn: PooledConnection, err?: Error): void {
    this.remove(conn);
    this.fleet.released(conn);
    if (err) this.log.warn({ host: this.name, connection: conn.id, err: err.message }, 'connection lost');
    else this.log.info({ host: this.name, connection: conn.id }, 'connection closed');
    this.dispatch();
  }
}
