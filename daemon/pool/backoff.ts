// Full-jitter exponential backoff (AWS architecture blog, "Exponential
// Backoff And Jitter"): a uniformly random wait in [0, min(cap, base*2^n)).
// Jitter matters more than the exponent here: sshd's MaxStartups drops come
// in bursts, and synchronized retries from a fleet recreate the burst.
export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
}

export const HANDSHAKE_BACKOFF: BackoffPolicy = { baseMs: 200, capMs: 10_000 };

export function backoffDelay(policy: BackoffPolicy, failures: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(failures, 30));
  return Math.floor(random() * ceiling);
}
