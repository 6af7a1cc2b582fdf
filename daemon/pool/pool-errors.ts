// What a pool tells a caller it cannot serve, in one place: each message
// says what happened and what to do (a longer deadline, a limit to raise),
// and names the breaker's state and the last handshake failure where they
// are the reason.
import { Code, codeName } from '../../proto';
import { MuxError, type Phase } from '../errors';
import type { Endpoint } from './endpoint';

/** When the breaker lets the next probe handshake start. */
function nextProbe(endpoint: Endpoint): string {
  return `the next probe is in ${seconds(endpoint.nextProbeIn())} s`;
}

/**
 * The breaker is open: HOST_UNAVAILABLE, with the cause and the next probe;
 * given the request's wait, why it may not wait for that probe.
 */
export function hostUnavailable(name: string, endpoint: Endpoint, waitMs?: number): MuxError {
  const next = nextProbe(endpoint);
  const why = waitMs === undefined ? next
    : endpoint.answered ? `${next}, after this request's deadline (${seconds(waitMs)} s); a longer deadline waits for it`
    : `${next}; requests wait for probes only to a host that has answered since sshmuxd started`;
  return new MuxError(Code.HOST_UNAVAILABLE,
    `${name} is marked down after ${endpoint.hardFailureCount} failed handshakes in a row (last: ${endpoint.lastFailure}); ${why}`, 'queued');
}

/** No connection became ready within the wait: the breaker's state, else the last failure, else a handshake still running. */
export function notConnected(name: string, endpoint: Endpoint, lastError: string, waitedS: number): string {
  const e = endpoint;
  return `could not connect to ${name} within ${waitedS} s` + (e.breaker !== 'closed'
    ? `: it is marked down after ${e.hardFailureCount} failed handshakes in a row (last: ${e.lastFailure}); ` +
      (e.breaker === 'half-open' ? 'a probe handshake is under way' : nextProbe(e))
    : lastError ? `; last handshake failure: ${lastError}` : '; the handshake is still in progress');
}

/** Where a request was when its wait ended. */
export interface WaitState {
  /** Its channel was on its way. */
  opening: boolean;
  waitedS: number;
  /** Ready connections, and the sessions busy on them. */
  ready: number;
  busy: number;
  /** Other requests still queued. */
  othersWaiting: number;
  lastError: string;
  /** Why the fleet holds this daemon back, if it does. */
  fleet: string;
}

/** DEADLINE_EXCEEDED for a request that got no session in time, saying where it was stuck. */
export function waitExpired(name: string, endpoint: Endpoint, w: WaitState): MuxError {
  let phase: Phase = 'queued';
  let message: string;
  if (w.opening) {
    phase = 'opening';
    message = `the session channel to ${name} did not open within ${w.waitedS} s`;
  } else if (w.ready === 0) {
    phase = 'handshaking';
    message = notConnected(name, endpoint, w.lastError, w.waitedS);
  } else {
    message = `no session slot on ${name} became free within ${w.waitedS} s ` +
      `(${w.busy} sessions busy on ${w.ready} connections, ${w.othersWaiting} other requests waiting). ` +
      'Give the request a longer deadline or raise maxConnections/maxSessions';
  }
  if (!w.opening && w.fleet) message += `; ${w.fleet}`;
  return new MuxError(Code.DEADLINE_EXCEEDED, message, phase);
}

/** A connection behind this jump host could not get its tunnel. */
export function jumpFailed(name: string, err: MuxError): MuxError {
  return new MuxError(Code.JUMP_FAILED, `jump host ${name} failed: ${codeName(err.code)}: ${err.message}`, 'handshaking');
}

export function queueFull(name: string, queued: number, queueLimit: number): MuxError {
  return new MuxError(Code.QUEUE_FULL,
    `${queued} requests already wait for ${name} (queueLimit ${queueLimit}); retry later or raise queueLimit`, 'queued');
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}
