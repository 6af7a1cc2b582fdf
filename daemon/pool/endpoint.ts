// One network endpoint (host:port) as sshd sees it. sshd's MaxStartups
// counts unauthenticated connections per server, whatever user or key they
// are for, so the handshake budget and the backoff after throttling live
// here and are shared by every pool that dials this endpoint. So is the
// circuit breaker: after `breakerThreshold` hard failures in a row
// (unreachable, starved; not MaxStartups throttling, which passes) the host
// is down. It is then probed, one handshake at a time: the first probe
// soon, later ones further apart while they fail (backoff.ts), and one
// success closes the breaker. Between probes, while requests wait, a bare
// TCP connect notices a port that listens again, so a restarted sshd is
// back in use within a second, without a handshake storm at a host that
// stays down.
import { HANDSHAKE_BACKOFF, backoffDelay, probeDelay, reachabilityCheckDelay } from './backoff';
import { systemClock, type Clock } from './clock';
import type { FailurePolicy } from './failure-policy';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** A bare TCP connect: something accepted it, nothing listens, or no answer in time. */
export type Reachability = 'open' | 'refused' | 'unknown';

export interface BreakerTransition {
  at: number;
  from: BreakerState;
  to: BreakerState;
  reason: string;
  /** To 'open': when the next probe may start. */
  nextProbeInMs: number;
}

export interface EndpointOptions {
  maxConcurrentHandshakes: number;
  /** Hard failures in a row that open the breaker; 0: it never opens. */
  breakerThreshold?: number;
  /** The longest wait between probes. */
  breakerCooldownMs?: number;
  clock?: Clock;
  random?: () => number;
  /** A bare TCP connect to the endpoint. Only direct endpoints have one: through a jump host it costs a channel, as a handshake does. */
  checkReachable?: () => Promise<Reachability>;
  /** Each breaker transition, once (the agent logs it and counts it). */
  onTransition?: (t: BreakerTransition) => void;
}

/** The last transitions kept for status. */
const KEPT_TRANSITIONS = 10;

/**
 * How long a request turned away by the open breaker keeps the port
 * watched. Under steady load every request may be turned away (their
 * deadlines all end before the next probe) and none waits, yet the next
 * one should find the host back as soon as it is.
 */
const DEMAND_WINDOW_MS = 10_000;

export class Endpoint {
  maxConcurrentHandshakes: number;
  /** Handshakes in flight to this endpoint. */
  inFlight = 0;
  /** Consecutive failed handshakes; reset by a success. */
  failures = 0;
  /**
   * A handshake has succeeded here since the daemon started. An outage of a
   * host that answered before is presumed to end (a restart), so requests
   * wait for it within their deadlines; a host that never answered is more
   * likely a mistake, and callers hear so at once.
   */
  answered = false;
  /** The last failure that counted toward the breaker, for callers' errors and status. */
  lastFailure = '';
  breaker: BreakerState = 'closed';
  transitionCount = 0;
  readonly transitions: BreakerTransition[] = [];

  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly threshold: number;
  private readonly cooldownMs: number;
  private readonly checkReachable: (() => Promise<Reachability>) | undefined;
  private readonly onTransition: ((t: BreakerTransition) => void) | undefined;
  private readonly waiters = new Set<() => void>();
  private timer: unknown;
  /** Consecutive failures that count toward the breaker. */
  private hardFailures = 0;
  /** After a failure that backs off, no handshake before this. */
  private retryAt = 0;
  private openedAt = 0;
  /** While open: when the next probe handshake may start. */
  private probeAt = 0;
  private probeStartedAt = 0;
  /** The failure class that keeps the breaker open. */
  private cause: FailurePolicy | undefined;
  /** While open: a reachability check found the port listening, so a probe may start before probeAt. */
  private cleared = false;
  private checking = false;
  private nextCheckAt = 0;
  /** While open: until when requests turned away keep the reachability checks going. */
  private demandUntil = 0;

  constructor(readonly key: string, opts: EndpointOptions) {
    this.maxConcurrentHandshakes = opts.maxConcurrentHandshakes;
    this.threshold = opts.breakerThreshold ?? 0;
    this.cooldownMs = opts.breakerCooldownMs ?? 0;
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? Math.random;
    this.checkReachable = opts.checkReachable;
    this.onTransition = opts.onTransition;
  }

  get hardFailureCount(): number {
    return this.hardFailures;
  }

  /** Milliseconds until the breaker's next probe may start; 0 when it is closed, when a probe is due (or cleared by a check), or one is in flight. */
  nextProbeIn(now = this.clock.now()): number {
    return this.breaker === 'open' && !this.cleared ? Math.max(0, this.probeAt - now) : 0;
  }

  /** Milliseconds since the breaker opened (0 when closed). */
  downFor(now = this.clock.now()): number {
    return this.breaker === 'closed' ? 0 : now - this.openedAt;
  }

  /** Milliseconds until the backoff ends (0 when none). */
  backoffRemaining(now = this.clock.now()): number {
    return Math.max(0, this.retryAt - now);
  }

  /** May a new handshake start now? While the breaker is open, only the one probe. */
  available(now = this.clock.now()): boolean {
    switch (this.breaker) {
      case 'closed':
        return this.inFlight < this.maxConcurrentHandshakes && now >= this.retryAt;
      case 'open':
        return this.inFlight === 0 && (this.cleared || (!this.checksApply && now >= this.probeAt));
      case 'half-open':
        return false;
    }
  }

  /** A handshake starts (the caller checked available()). */
  begin(): void {
    this.inFlight++;
    if (this.breaker !== 'open') return;
    this.cleared = false;
    this.probeStartedAt = this.clock.now();
    this.transition('half-open', 'probe handshake started');
  }

  succeeded(): void {
    this.inFlight--;
    this.answered = true;
    this.failures = 0;
    this.hardFailures = 0;
    this.retryAt = 0;
    if (this.breaker !== 'closed') {
      this.close(`a handshake succeeded after ${seconds(this.downFor())} s down`);
    }
    this.notify();
  }

  /** A handshake failed; `policy` says what the failure means, `reason` is its code and message. */
  failed(policy: FailurePolicy, reason: string): void {
    this.inFlight--;
    this.failures++;
    const now = this.clock.now();
    if (policy.backoff) this.retryAt = now + backoffDelay(HANDSHAKE_BACKOFF, this.failures - 1, this.random);
    if (policy.trips) {
      this.hardFailures++;
      this.lastFailure = reason;
    }
    if (this.breaker !== 'closed' && !policy.trips) {
      // The server answered (throttling, a refused key): it is up, whatever else is wrong.
      this.close(`the host answered: ${reason}`);
    } else if (this.breaker === 'half-open') {
      this.cause = policy;
      this.probeAt = Math.max(now, this.probeStartedAt + probeDelay(now - this.openedAt, this.cooldownMs, this.random));
      this.transition('open', `probe failed: ${reason}`);
    } else if (this.breaker === 'open') {
      this.cause = policy; // a handshake from before the breaker opened
    } else if (policy.trips && this.threshold > 0 && this.hardFailures >= this.threshold) {
      this.open(policy, now);
    }
    this.notify();
  }

  /** Calls `wake` once when a handshake may start again. A waiting wake is also what makes the breaker probe: no demand, no probes. */
  waitForCapacity(wake: () => void): void {
    this.waiters.add(wake);
    this.arm();
  }

  /** A request was turned away while the breaker is open: keep watching the port for a while, so that the next one finds it back. */
  noteDemand(): void {
    this.demandUntil = this.clock.now() + DEMAND_WINDOW_MS;
    if (this.timer === undefined) this.arm();
  }

  forget(wake: () => void): void {
    this.waiters.delete(wake);
    if (this.waiters.size === 0) this.arm();
  }

  destroy(): void {
    this.waiters.clear();
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Reachability checks stand in for probes that would only be refused again. */
  private get checksApply(): boolean {
    return this.cause?.tcpCheck === true && this.checkReachable !== undefined && this.answered;
  }

  private open(policy: FailurePolicy, now: number): void {
    this.openedAt = now;
    this.cause = policy;
    this.cleared = false;
    this.probeAt = now + probeDelay(0, this.cooldownMs, this.random);
    this.nextCheckAt = now + reachabilityCheckDelay(this.random);
    this.transition('open', `${this.hardFailures} failed handshakes in a row (last: ${this.lastFailure})`);
  }

  private close(reason: string): void {
    this.cause = undefined;
    this.cleared = false;
    this.hardFailures = 0;
    this.transition('closed', reason);
  }

  private transition(to: BreakerState, reason: string): void {
    const now = this.clock.now();
    const t: BreakerTransition = { at: now, from: this.breaker, to, reason, nextProbeInMs: to === 'open' ? this.probeAt - now : 0 };
    this.breaker = to;
    this.transitionCount++;
    this.transitions.push(t);
    if (this.transitions.length > KEPT_TRANSITIONS) this.transitions.shift();
    this.onTransition?.(t);
  }

  /** Wakes the waiters if a handshake may start; otherwise sets the timer for when one may. */
  private notify(): void {
    if (!this.available()) {
      this.arm();
      return;
    }
    const waiters = [...this.waiters];
    this.waiters.clear();
    this.arm();
    for (const wake of waiters) wake();
  }

  /**
   * One timer: the end of a backoff, the next probe, or the next
   * reachability check. None while nobody wants a handshake, and none while
   * one is in flight (the probe among them): its end wakes the waiters.
   */
  private arm(): void {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    const now = this.clock.now();
    let at: number;
    if (this.breaker === 'closed') {
      if (this.waiters.size === 0 || this.retryAt <= now) return;
      at = this.retryAt;
    } else if (this.breaker === 'half-open' || this.inFlight > 0 || this.checking || this.cleared) {
      return;
    } else if (this.checksApply) {
      if (this.waiters.size === 0 && now >= this.demandUntil) return;
      at = this.nextCheckAt;
    } else {
      if (this.waiters.size === 0) return;
      at = this.probeAt;
    }
    this.timer = this.clock.setTimeout(() => this.fire(), Math.max(0, at - now) + 1);
  }

  private fire(): void {
    this.timer = undefined;
    if (this.breaker === 'open' && this.checksApply) this.check();
    else this.notify();
  }

  private check(): void {
    this.checking = true;
    this.checkReachable!().catch((): Reachability => 'unknown').then((result) => {
      this.checking = false;
      const now = this.clock.now();
      this.nextCheckAt = now + reachabilityCheckDelay(this.random);
      if (this.breaker !== 'open') return;
      if (result === 'open' || (result === 'unknown' && now >= this.probeAt)) {
        // Listening again, or no way to tell without a handshake: the probe may start.
        this.cleared = true;
      } else if (result === 'refused' && now >= this.probeAt) {
        // The probe's answer for the price of a SYN: still nothing listens.
        this.probeAt = now + probeDelay(now - this.openedAt, this.cooldownMs, this.random);
      }
      this.notify();
    });
  }
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}
