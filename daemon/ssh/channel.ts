// Ending a session channel whose command nobody wants any more. Closing
// alone is not enough: sshd keeps a session whose command still runs, and
// its MaxSessions slot with it, until the command exits. So every cancel
// (the caller's, a deadline, a client that went away, the daemon stopping,
// a channel that opened for a caller who had already gone) ends the same
// way, with one set of timings: TERM, then KILL, then close.
import type { ClientChannel } from './ssh2';

/** Grace between TERM and KILL. */
export const TERM_GRACE_MS = 2000;
/** Grace between KILL and closing the channel ourselves. */
export const KILL_GRACE_MS = 1000;
/** The longest terminate() takes, plus a moment for the server's close. */
export const TERMINATE_MS = TERM_GRACE_MS + KILL_GRACE_MS + 1000;

/** Signals a client may forward (RFC 4254 section 6.10 names). */
export const SIGNALS = new Set(['ABRT', 'ALRM', 'FPE', 'HUP', 'ILL', 'INT', 'KILL', 'PIPE', 'QUIT', 'SEGV', 'TERM', 'USR1', 'USR2']);

/**
 * Closes a channel nobody reads any more. ssh2 emits 'close' (which frees the
 * slot) only after the readable side has ended, so the data still buffered
 * or in flight must be drained and dropped.
 */
export function abandonChannel(channel: ClientChannel): void {
  channel.resume();
  channel.stderr.resume();
  channel.close();
}

/**
 * TERM, then KILL after TERM_GRACE_MS, then close after KILL_GRACE_MS; the
 * timers stop as soon as the server closes the channel. `discard`: nobody
 * reads the output any more, so it is drained and dropped (a caller still
 * reading keeps receiving until the channel closes).
 */
export function terminate(channel: ClientChannel, discard: boolean): void {
  if (discard) {
    channel.resume();
    channel.stderr.resume();
  }
  channel.signal('TERM');
  if (!channel.writableEnded) channel.end();
  let timer = setTimeout(() => {
    channel.signal('KILL');
    timer = setTimeout(() => abandonChannel(channel), KILL_GRACE_MS);
    timer.unref();
  }, TERM_GRACE_MS);
  timer.unref();
  channel.once('close', () => clearTimeout(timer));
}
