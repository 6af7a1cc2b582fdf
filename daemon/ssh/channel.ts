// Ending a session channel whose command nobody wants any more. Closing
// alone is not enough: sshd keeps a session whose command still runs, and
// its MaxSessions slot with it, until the command exits. So every cancel
// (the caller's, a deadline, a client that went away, the daemon stopping,
// a channel that opened for a caller who had already gone) ends the same
// way, with one set of timings: TERM, then KILL, then close. And the end
// every channel comes to anyway costs no needless Error (quietEnd).
import type { ClientChannel } from 'ssh2';
import type { Duplex } from 'node:stream';
import { signalChannel } from './ssh2-internals';

/** Grace between TERM and KILL. */
export const TERM_GRACE_MS = 2000;
/** Grace between KILL and closing the channel ourselves. */
export const KILL_GRACE_MS = 1000;
/** The longest terminate() takes, plus a moment for the server's close. */
export const TERMINATE_MS = TERM_GRACE_MS + KILL_GRACE_MS + 1000;

/** Signals a client may forward (RFC 4254 section 6.10 names). */
export const SIGNALS = new Set(['ABRT', 'ALRM', 'FPE', 'HUP', 'ILL', 'INT', 'KILL', 'PIPE', 'QUIT', 'SEGV', 'TERM', 'USR1', 'USR2']);

/**
 * ssh2's channel.signal() sends nothing once our side has sent EOF (it
 * checks `writable`), but sshd still delivers signals then; exec without
 * stdin sends EOF at once.
 */
export function sendSignal(channel: ClientChannel, name: string): void {
  signalChannel(channel, name);
}

/**
 * Makes end() on the channel a no-op once its writable side has finished.
 * When a channel's output ends, Node destroys it, and ssh2's destroy()
 * calls end() whether or not our side already ended (it has, for every
 * command without stdin): Node then builds an ERR_STREAM_ALREADY_FINISHED
 * error, stack trace and all, that nobody sees. One per session: 3% of the
 * daemon's CPU for a warm exec.
 */
export function quietEnd(channel: Duplex): void {
  const end = channel.end;
  channel.end = function (this: Duplex, ...args: unknown[]): Duplex {
    if (args.length === 0 && this.writableFinished) return this;
    return (end as (...a: unknown[]) => Duplex).apply(this, args);
  } as Duplex['end'];
}

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
  sendSignal(channel, 'TERM');
  channel.end();
  let timer = setTimeout(() => {
    sendSignal(channel, 'KILL');
    timer = setTimeout(() => abandonChannel(channel), KILL_GRACE_MS);
    timer.unref();
  }, TERM_GRACE_MS);
  timer.unref();
  channel.once('close', () => clearTimeout(timer));
}
