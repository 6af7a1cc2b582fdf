// One network endpoint (host:port) as sshd sees it. sshd's MaxStartups
// counts unauthenticated connections per server, whatever user or key they
// are for, so the handshake budget and the backoff after throttling live
// here and are shared by every pool that dials this endpoint. So is the
// circuit breaker: after `threshold` hard failures in a row (unreachable,
// starved; not MaxStartups throttling, which passes) the host is down and
// requests fail fast until a cool-down ends and one probe handshake may try.
import { HANDSHAKE_BACKOFF, backoffDelay } from './backoff';

export class Endpoint {
  /** Handshakes in flight to this endpoint. */
  inFlight = 0;
  /** Consecutive failed handshakes; reset by a success. */
  failures = 0;
  private retryAt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly waiters = new Set<() => void>();
  /** Consecutive failures that count toward the breaker. */
  private hardFailures = 0;
  /** While now < downUntil the breaker is open: requests fail fast. */
  private downUntil = 0;
  /** Why it opened, for the callers' errors and sshmuxctl. */
  lastFailure = '';

  constructor(
    readonly key: string,
    public maxConcurrentHandshakes: number,
    private readonly breaker: { threshold: number; cooldownMs: number } = { threshold: 0, cooldownMs: 0 },
  ) {}

  /** Milliseconds until the breaker lets a probe through (0: closed, or half-open now). */
  downRemaining(now = Date.now()): number {
    return Math.max(0, this.downUntil - now);
  }

  get hardFailureCount(): number {
    return this.hardFailures;
  }

  /** May a new handshake start now? */
  available(now = Date.now()): boolean {
    return this.inFlight < this.maxConcurrentHandshakes && now >= this.retryAt;
  }

  /** Milliseconds until the backoff ends (0 when none). */
  backoffRemaining(now = Date.now()): number {
    return Math.max(0, this.retryAt - now);
  }

  begin(): void {
    this.inFlight++;
  }

  /**
   * A handshake ended. `backoff`: the failure was the network's or the
   * server's load, so wait before the next one. `trips`: it counts toward
   * the breaker (`failure` says what happened).
   */
  end(ok: boolean, backoff: boolean, trips = false, failure = ''): void {
    this.inFlight--;
    if (ok) {
      this.failures = 0;
      this.retryAt = 0;
      this.hardFailures = 0;
      this.downUntil = 0;
    } else {
      this.failures++;
      if (backoff) this.scheduleRetry(backoffDelay(HANDSHAKE_BACKOFF, this.failures - 1));
      if (trips) {
        this.hardFailures++;
        this.lastFailure = failure;
        // The threshold reached, or a failed probe after it: down for a cool-down,
        // and no handshake at all until it ends.
        if (this.breaker.threshold > 0 && this.hardFailures >= this.breaker.threshold) {
          this.downUntil = Date.now() + this.breaker.cooldownMs;
          this.scheduleRetry(Math.max(this.breaker.cooldownMs, this.backoffRemaining()));
        }
      }
    }
    this.notify();
  }

  /** Calls `wake` once when a handshake may start again. */
  waitForCapacity(wake: () => void): void {
    this.waiters.add(wake);
  }

  forget(wake: () => void): void {
    this.waiters.delete(wake);
  }

  close(): void {
    clearTimeout(this.retryTimer);
    this.waiters.clear();
  }

  private scheduleRetry(delay: number): void {
    this.retryAt = Date.now() + delay;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.notify(), delay + 1);
    this.retryTimer.unref();
  }

  private notify(): void {
    if (!this.available()) return;
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const wake of waiters) wake();
  }
}
