// What each failed handshake means, as data: a row per error code saying
// when the requests waiting for a connection fail, whether to back off, and
// whether it counts toward the circuit breaker (OpenSSH's mux.c keeps its
// handlers as a table the same way). The pool applies a row when a
// handshake fails (HostPool.onHandshakeFailed); the endpoint keeps the
// backoff and the breaker (endpoint.ts).
import { Code } from '../../proto';

/** What a failed handshake means: a row of HANDSHAKE_FAILURE_POLICY. */
export interface FailurePolicy {
  /** When the requests waiting for a connection fail: now, after connectionAttempts failures in a row, or at their own deadlines. */
  waiting: 'fail-now' | 'fail-after-attempts' | 'wait-for-deadline';
  /** Wait before the next attempt: the failure was the network's or the server's load. */
  backoff: boolean;
  /** Counts toward the breaker: the host looks down, not busy and not misconfigured. */
  trips: boolean;
  /** A bare TCP connect shows when this cause has cleared: nothing listened, or nothing answered. */
  tcpCheck?: boolean;
}

/**
 * The table. Whatever the row says, a failure that trips the breaker leaves
 * the waiting requests to their deadlines once the host has answered
 * before: its outage is presumably a restart, and the breaker judges new
 * arrivals.
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
