// Delays between attempts. Handshakes back off with full jitter (AWS
// architecture blog, "Exponential Backoff And Jitter"): a uniformly random
// wait in [0, min(cap, base*2^n)). Jitter matters more than the exponent
// here: sshd's MaxStartups drops come in bursts, and synchronized retries
// from a fleet recreate the burst.
export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
}

export const HANDSHAKE_BACKOFF: BackoffPolicy = { baseMs: 200, capMs: 10_000 };

export function backoffDelay(policy: BackoffPolicy, failures: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(failures, 30));
  return Math.floor(random() * ceiling);
}

/**
 * The circuit breaker's probes. The first comes soon, because most outages
 * are restarts that end in seconds; after that the wait is a fraction of the
 * time the host has been down so far, so it grows while probes fail (a host
 * down for a minute is probed every ~25 s, not every second), capped by
 * breakerCooldownMs. ±20 % jitter keeps a fleet of daemons from probing a
 * returning server in step. The fraction keeps the wait under 4 s for the
 * first 8 s of an outage: a request with a 5 s deadline then always waits
 * for the next probe instead of failing fast.
 */
export const BREAKER_PROBE = { firstMs: 500, fractionOfDowntime: 0.4 };

export function probeDelay(downForMs: number, capMs: number, random: () => number = Math.random): number {
  const base = Math.max(BREAKER_PROBE.firstMs, downForMs * BREAKER_PROBE.fractionOfDowntime);
  return Math.round(Math.min(capMs, base * (0.8 + 0.4 * random())));
}

/**
 * Between probes, while requests wait, a bare TCP connect every 0.5-1 s
 * tells when a port that refused connections listens again. It costs the
 * server nothing while nothing listens (the kernel answers), so the pool
 * notices a restarted sshd within a second without handshaking at it.
 */
export function reachabilityCheckDelay(random: () => number = Math.random): number {
  return Math.round(500 + 500 * random());
}
