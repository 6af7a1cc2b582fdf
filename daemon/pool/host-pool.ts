// A pool of connections to one resolved destination (undici's Pool): it
// hands waiting requests to the least-loaded connection with a free session
// slot, opens connections up to maxConnections within the endpoint's
// handshake budget, and otherwise keeps requests in a bounded FIFO that
// moves whenever capacity frees. While the endpoint's breaker is open, a
// request waits only if its deadline reaches the next probe.
import type { Duplex } from 'node:stream';
import type { ClientChannel, SFTPWrapper } from '../ssh/ssh2';
import { Code, codeName } from '../../proto';
import type { Limits } from '../config';
import { MuxError, type Phase } from '../errors';
import type { Logger } from '../log';
import type { ResolvedHost } from '../ssh/ssh-config';
import { terminate } from '../ssh/channel';
import type { Tunneler } from '../ssh/dial';
import { systemClock, type Clock } from './clock';
import { Connection, type ConnectionOwner, type OpenResult, type SessionSpec } from './connection';
import type { Endpoint, FailurePolicy } from './endpoint';
import { RequestQueue } from './queue';
import { poolLoad, type PoolLoad } from './stats';
import { countHandshake } from '../metrics';
import { LOCAL_GATE, type FleetGate, type FleetPermit } from '../fleet/gate';

/**
 * What each failed handshake means (see FailurePolicy). Whatever the row
 * says, a failure that trips the breaker leaves the waiting requests to
 * their deadlines once the host has answered before: its outage is
 * presumably a restart, and the breaker judges new arrivals.
 */
const HANDSHAKE_FAILURE_POLICY: Partial<Record<Code, FailurePolicy>> = {
  [Code.DNS]: { waiting: 'fail-after-attempts', backoff: true, trips: true },
  // Nothing listened, or nothing answered: a bare TCP connect shows when that changes.
  [Code.REFUSED]: { waiting: 'fail-after-attempts', backoff: true, trips: true, tcpCheck: true },
  [Code.CONNECT_TIMEOUT]: { waiting: 'fail-after-attempts', backoff: true, trips: true, tcpCheck: true },
  [Code.HANDSHAKE_FAILED]: { waiting: 'fail-after-attempts', backoff: true, trips: true },
  // MaxStartups drops pass as the flood does: requests wait within their deadlines.
  [Code.THROTTLED]: { waiting: 'wait-for-deadline', backoff: true, trips: false },
  // A server that accepts TCP and never answers (the banner stall) has
  // already cost the waiting requests ConnectTimeout: tell them now, and
  // back off so attempts never pile up on it.
  [Code.HANDSHAKE_TIMEOUT]: { waiting: 'fail-now', backoff: true, trips: true },
  // Retrying cannot fix these, and a storm of them looks like an attack.
  [Code.AUTH_FAILED]: { waiting: 'fail-now', backoff: false, trips: false },
  [Code.HOST_KEY_UNKNOWN]: { waiting: 'fail-now', backoff: false, trips: false },
  [Code.HOST_KEY_MISMATCH]: { waiting: 'fail-now', backoff: false, trips: false },
  [Code.HOST_KEY_REVOKED]: { waiting: 'fail-now', backoff: false, trips: false },
  // Decided before dialing when the daemon can tell (the validity window); else after the one refused login.
  [Code.CERTIFICATE_INVALID]: { waiting: 'fail-now', backoff: false, trips: false },
};
const DEFAULT_FAILURE_POLICY: FailurePolicy = { waiting: 'fail-after-attempts', backoff: true, trips: true };

export function failurePolicy(code: Code): FailurePolicy {
  return HANDSHAKE_FAILURE_POLICY[code] ?? DEFAULT_FAILURE_POLICY;
}

export interface OpenedSession {
  /** A session channel; for an 'sftp' request, `sftp` instead. */
  channel?: ClientChannel;
  sftp?: SFTPWrapper;
  connection: Connection;
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

/** What the pool takes from outside, so that tests can give it a fake clock and fake connections. */
export interface HostPoolDeps {
  clock?: Clock;
  newConnection?: (id: string, host: ResolvedHost, maxSessions: number, idleTimeoutMs: number, owner: ConnectionOwner, via?: Tunneler) => Connection;
  /** The fleet's budget for this endpoint, shared through Redis (daemon/fleet/); without a fleet, always yes. */
  fleet?: FleetGate;
}

export interface PoolStats {
  requests: number;
  handshakesOk: number;
  handshakesFailed: number;
  failuresByCode: Record<string, number>;
  lastError: string;
}

/** A caller waiting for any ready connection: the SSH front door, before it accepts a channel. */
interface ReadyWaiter {
  resolve(): void;
  reject(err: MuxError): void;
}

/** A connection waiting for a tunnel through this (jump) pool. */
interface TunnelWaiter {
  host: string;
  port: number;
  resolve(stream: Duplex): void;
  reject(err: MuxError): void;
}

export class HostPool implements ConnectionOwner, Tunneler {
  readonly connections: Connection[] = [];
  readonly queue = new RequestQueue<PendingSession>();
  /** The last handshake failures, for the status page. */
  readonly recentErrors: Array<{ at: number; code: string; message: string }> = [];
  readonly stats: PoolStats = { requests: 0, handshakesOk: 0, handshakesFailed: 0, failuresByCode: {}, lastError: '' };
  /** The lowest MaxSessions the server has shown; new connections start with it. */
  maxSessions: number;
  lastUsed: number;
  private nextConnectionId = 1;
  private dispatching = false;
  private closed = false;
  private readonly wake = (): void => this.dispatch();
  private tunnelWaiters: TunnelWaiter[] = [];
  private readyWaiters: ReadyWaiter[] = [];
  private readonly clock: Clock;
  private readonly newConnection: NonNullable<HostPoolDeps['newConnection']>;
  private readonly fleet: FleetGate;

  constructor(
    readonly name: string,
    readonly host: ResolvedHost,
    public limits: Limits,
    readonly endpoint: Endpoint,
    private readonly log: Logger,
    /** The jump host's pool this destination is reached through. */
    readonly via?: HostPool,
    deps: HostPoolDeps = {},
  ) {
    this.maxSessions = limits.maxSessions;
    this.clock = deps.clock ?? systemClock;
    this.newConnection = deps.newConnection ?? ((...args) => new Connection(...args));
    this.fleet = deps.fleet ?? LOCAL_GATE;
    this.lastUsed = this.clock.now();
  }

  get destination(): string {
    return `${this.host.user}@${this.host.hostname}:${this.host.port}`;
  }

  /** Idle: nothing queued and no connection; the agent may forget it. */
  get empty(): boolean {
    return this.queue.length === 0 && this.connections.length === 0;
  }

  get state(): 'ok' | 'backoff' | 'failing' | 'down' | 'draining' {
    if (this.closed) return 'draining';
    if (this.hasReady()) return 'ok';
    if (this.endpoint.breaker !== 'closed') return 'down';
    if (this.endpoint.backoffRemaining() > 0) return 'backoff';
    return this.stats.lastError && this.endpoint.failures > 0 ? 'failing' : 'ok';
  }

  /** Connections, sessions and queue, counted once for every reader. */
  get load(): PoolLoad {
    return poolLoad(this.connections, this.queue.length);
  }

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
      this.queue.push(pending);
      this.dispatch();
    }
    return pending;
  }

  /** Why a new request may not wait here, if it may not. */
  private refusal(waitMs: number): MuxError | undefined {
    if (this.closed) return MuxError.shuttingDown();
    if (this.breakerBars(waitMs)) {
      this.endpoint.noteDemand();
      return this.hostUnavailable(waitMs);
    }
    if (this.queue.length >= this.limits.queueLimit) {
      return new MuxError(Code.QUEUE_FULL,
        `${this.queue.length} requests already wait for ${this.name} (queueLimit ${this.limits.queueLimit}); retry later or raise queueLimit`, 'queued');
    }
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

  private nextProbe(): string {
    return `the next probe is in ${seconds(this.endpoint.nextProbeIn())} s`;
  }

  private hostUnavailable(waitMs?: number): MuxError {
    const e = this.endpoint;
    const next = this.nextProbe();
    const why = waitMs === undefined ? next
      : e.answered ? `${next}, after this request's deadline (${seconds(waitMs)} s); a longer deadline waits for it`
      : `${next}; requests wait for probes only to a host that has answered since sshmuxd started`;
    return new MuxError(Code.HOST_UNAVAILABLE,
      `${this.name} is marked down after ${e.hardFailureCount} failed handshakes in a row (last: ${e.lastFailure}); ${why}`, 'queued');
  }

  /**
   * Resolves once this pool has a ready connection, opening one if it has
   * none; rejects when a handshake fails as waiting requests do, or after
   * waitMs. Takes no session slot: the SSH front door checks a destination
   * this way before it accepts a channel, so that a failed handshake is the
   * channel's open failure, which SSH clients show with its message.
   */
  connected(waitMs: number): { ready: Promise<void>; cancel(): void } {
    let waiter!: ReadyWaiter;
    let timer: unknown;
    const startedAt = this.clock.now();
    const ready = new Promise<void>((resolve, reject) => {
      timer = this.clock.setTimeout(() => {
        this.readyWaiters = this.readyWaiters.filter((w) => w !== waiter);
        this.releaseDemand();
        reject(new MuxError(Code.DEADLINE_EXCEEDED, this.notConnected(Math.round((this.clock.now() - startedAt) / 1000)), 'handshaking'));
      }, waitMs);
      waiter = {
        resolve: () => {
          this.clock.clearTimeout(timer);
          resolve();
        },
        reject: (err) => {
          this.clock.clearTimeout(timer);
          reject(err);
        },
      };
    });
    this.lastUsed = this.clock.now();
    if (this.hasReady()) {
      waiter.resolve();
    } else if (this.closed) {
      waiter.reject(MuxError.shuttingDown());
    } else if (this.breakerBars(waitMs)) {
      this.endpoint.noteDemand();
      waiter.reject(this.hostUnavailable(waitMs));
    } else {
      this.readyWaiters.push(waiter);
      this.dispatch();
    }
    return {
      ready,
      cancel: () => {
        this.readyWaiters = this.readyWaiters.filter((w) => w !== waiter);
        this.clock.clearTimeout(timer);
        this.releaseDemand();
      },
    };
  }

  cancel(pending: PendingSession): void {
    if (pending.state === 'done') return;
    pending.state = 'done';
    this.clock.clearTimeout(pending.timer);
    this.queue.remove(pending);
    this.releaseDemand();
  }

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
   * A reload changed this destination's settings: take no more work, let
   * running sessions finish on the old connections, and hand back the
   * requests still waiting so the new pool can serve them.
   */
  retire(): PendingSession[] {
    this.closed = true;
    this.endpoint.forget(this.wake);
    this.fleet.forget(this.wake);
    const waiting = this.queue.removeAll();
    // Their next request goes to the pool for the new settings.
    for (const w of this.readyWaiters.splice(0)) w.resolve();
    this.closeConnections();
    return waiting;
  }

  /** Takes over a request from a retired pool, keeping its deadline and its place in line. */
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

  /**
   * A channel to host:port through one of this pool's connections, for a
   * connection to a host behind this one. Tunnels take no session slot, so
   * any ready connection will do; if there is none, one is opened.
   */
  tunnel(host: string, port: number): { stream: Promise<Duplex>; cancel(): void } {
    let waiter!: TunnelWaiter;
    const stream = new Promise<Duplex>((resolve, reject) => {
      waiter = { host, port, resolve, reject };
    });
    this.lastUsed = this.clock.now();
    if (this.closed) {
      waiter.reject(this.jumpFailed(MuxError.shuttingDown()));
    } else if (this.breakerBars(0)) {
      // The connection behind it has its own ConnectTimeout, not a deadline to weigh.
      this.endpoint.noteDemand();
      waiter.reject(this.jumpFailed(this.hostUnavailable()));
    } else {
      this.tunnelWaiters.push(waiter);
      this.dispatch();
    }
    return {
      stream,
      cancel: () => {
        this.tunnelWaiters = this.tunnelWaiters.filter((w) => w !== waiter);
        this.releaseDemand();
      },
    };
  }

  private jumpFailed(err: MuxError): MuxError {
    return new MuxError(Code.JUMP_FAILED, `jump host ${this.name} failed: ${codeName(err.code)}: ${err.message}`, 'handshaking');
  }

  // ---- scheduling -------------------------------------------------------

  /** Hands queued work to connections with free slots, and opens connections for what is left. */
  private dispatch(): void {
    if (this.dispatching) return;
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
      if (this.readyWaiters.length > 0 && this.hasReady()) {
        for (const w of this.readyWaiters.splice(0)) w.resolve();
      }
      while (this.tunnelWaiters.length > 0) {
        const conn = this.fewestTunnels();
        if (!conn) break;
        const w = this.tunnelWaiters.shift()!;
        conn.openTunnel(w.host, w.port, (err, stream) => (err ? w.reject(err) : w.resolve(stream!)));
      }
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
    return this.connections.some((c) => c.state === 'ready');
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

  private leastLoaded(): Connection | undefined {
    let best: Connection | undefined;
    for (const conn of this.connections) {
      if (conn.freeSlots > 0 && (!best || conn.sessions < best.sessions)) best = conn;
    }
    return best;
  }

  private fewestTunnels(): Connection | undefined {
    let best: Connection | undefined;
    for (const conn of this.connections) {
      if (conn.state === 'ready' && (!best || conn.tunnels < best.tunnels)) best = conn;
    }
    return best;
  }

  /** Opens connections while the queue needs more capacity than is on its way. */
  private grow(): void {
    if (this.closed) return;
    const connecting = this.connections.filter((c) => c.state === 'connecting').length;
    // Closed slots a round trip is about to give back are capacity on its way too, as a connecting connection's are.
    const reclaimable = this.connections.reduce((n, c) => n + c.reclaimableSlots, 0);
    let demand = this.queue.length - connecting * this.maxSessions - reclaimable;
    // Tunnels and readiness checks need one connection, not slots.
    const needsOne = this.tunnelWaiters.length > 0 || this.readyWaiters.length > 0;
    if (needsOne && this.connections.length === 0) demand = Math.max(demand, 1);
    while (demand > 0 && this.connections.length < this.limits.maxConnections) {
      // Until this pool has logged in once, one handshake at a time: a
      // refused login (a wrong key, a certificate the server rejects) fails
      // every waiting request at once, and each refused login costs the
      // host a PerSourcePenalties authfail on OpenSSH >= 9.8, so a burst
      // learns it from one attempt instead of maxConnections.
      if (this.stats.handshakesOk === 0 && this.connections.some((c) => c.state === 'connecting')) return;
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

  private open(conn: Connection, pending: PendingSession): void {
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
    pending.handler.onOpen({ ...session, waitedMs: this.clock.now() - pending.createdAt });
  }

  private expire(pending: PendingSession): void {
    if (pending.state === 'done') return;
    const waited = Math.round((this.clock.now() - pending.createdAt) / 1000);
    const ready = this.connections.filter((c) => c.state === 'ready');
    const e = this.endpoint;
    let phase: Phase = 'queued';
    let message: string;
    if (pending.state === 'opening') {
      phase = 'opening';
      message = `the session channel to ${this.name} did not open within ${waited} s`;
    } else if (ready.length === 0) {
      phase = 'handshaking';
      message = this.notConnected(waited);
    } else {
      const busy = ready.reduce((n, c) => n + c.sessions, 0);
      message = `no session slot on ${this.name} became free within ${waited} s ` +
        `(${busy} sessions busy on ${ready.length} connections, ${this.queue.length - 1} other requests waiting). ` +
        'Give the request a longer deadline or raise maxConnections/maxSessions';
    }
    const fleet = pending.state === 'opening' ? '' : this.fleet.why();
    if (fleet) message += `; ${fleet}`;
    this.finish(pending, new MuxError(Code.DEADLINE_EXCEEDED, message, phase));
  }

  private notConnected(waitedS: number): string {
    const e = this.endpoint;
    return `could not connect to ${this.name} within ${waitedS} s` + (e.breaker !== 'closed'
      ? `: it is marked down after ${e.hardFailureCount} failed handshakes in a row (last: ${e.lastFailure}); ` +
        (e.breaker === 'half-open' ? 'a probe handshake is under way' : this.nextProbe())
      : this.stats.lastError ? `; last handshake failure: ${this.stats.lastError}` : '; the handshake is still in progress');
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
    const waiters = this.tunnelWaiters;
    this.tunnelWaiters = [];
    for (const w of waiters) w.reject(this.jumpFailed(err));
    for (const w of this.readyWaiters.splice(0)) w.reject(err.inPhase('handshaking'));
  }

  private remove(conn: Connection): void {
    const i = this.connections.indexOf(conn);
    if (i >= 0) this.connections.splice(i, 1);
  }

  // ---- ConnectionOwner ------------------------------------------------

  onReady(conn: Connection): void {
    this.endpoint.succeeded();
    this.fleet.handshakeEnded(conn);
    this.stats.handshakesOk++;
    countHandshake(this.name, 'ok');
    this.log.info({ host: this.name, connection: conn.id, destination: this.destination, ms: this.clock.now() - conn.createdAt },
      'connection ready');
    if (conn.hostKeyWarning) this.log.warn({ host: this.name, connection: conn.id, warning: conn.hostKeyWarning.message }, 'host key warning');
    this.dispatch();
  }

  onHandshakeFailed(conn: Connection, err: MuxError): void {
    this.remove(conn);
    this.fleet.released(conn);
    const policy = failurePolicy(err.code);
    const name = codeName(err.code);
    this.endpoint.failed(policy, `${name}: ${err.message}`);
    this.stats.handshakesFailed++;
    countHandshake(this.name, name);
    this.stats.failuresByCode[name] = (this.stats.failuresByCode[name] ?? 0) + 1;
    this.recentErrors.push({ at: this.clock.now(), code: name, message: err.message });
    if (this.recentErrors.length > 10) this.recentErrors.shift();
    this.stats.lastError = `${name}: ${err.message}`;
    this.log.warn({ host: this.name, connection: conn.id, code: name, failures: this.endpoint.failures, err: err.message },
      'handshake failed');
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

  onCapacity(conn: Connection): void {
    this.learnLimit(conn);
    this.dispatch();
  }

  /** A connection learned the server's MaxSessions is lower than assumed (a refused session or spare): so does the pool. */
  private learnLimit(conn: Connection): void {
    if (conn.maxSessions >= this.maxSessions) return;
    this.maxSessions = conn.maxSessions;
    this.log.warn({ host: this.name, connection: conn.id, maxSessions: conn.maxSessions },
      'server refused a session: its MaxSessions is lower than assumed; using the lower limit');
  }

  onClosed(conn: Connection, err?: Error): void {
    this.remove(conn);
    this.fleet.released(conn);
    if (err) this.log.warn({ host: this.name, connection: conn.id, err: err.message }, 'connection lost');
    else this.log.info({ host: this.name, connection: conn.id }, 'connection closed');
    this.dispatch();
  }
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}
