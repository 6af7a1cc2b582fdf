// One remote session (command, login shell or subsystem) wired to this
// process's stdin, stdout and stderr: the sshmux command's main path.
// Flow control is the SDK's: the daemon may send a window of output ahead
// of us (proto/receive-window.ts); we grant more only once our own stdout or stderr has
// taken the bytes (their write callbacks), so a slow reader slows the
// remote writer and memory stays bounded. Stdin is sent within the
// daemon's grant. The result is reported only after every byte of output
// has been written, so exiting on it loses nothing.
import { input, output } from './stdio';
import { DATA_CHUNK } from '../proto/framing';
import type { sshmux } from '../proto/gen/sshmux';
import { DaemonCall, type CallHandler, type Frame } from './daemon-call';
import { ReceiveWindow } from '../proto/receive-window';
import type { Diagnostics } from './diagnostics';
import type { SshMuxError } from '../client-sdk/errors';
import { ENDING_SIGNALS, statusAfterSignal, type EndingSignal } from './signals';

/** ssh's status for "ssh or the connection failed", and for a remote killed by a signal. */
export const EXIT_FAILURE = 255;
/**
 * How long a remote command has to end after the signal sent on to it,
 * before the call is cancelled (TERM, then KILL): ssh exits at once on a
 * signal, so this is the most the wait for the command's last words adds.
 */
const SIGNAL_GRACE_MS = 1000;

export interface RunSessionOptions {
  socketPath: string;
  request: sshmux.v1.ISessionRequest;
  diag: Diagnostics;
  /** Called once the session has started (-f goes to the background then). */
  onStarted?: () => void;
  /** Called when nothing reached the daemon: start one if allowed and return its socket, else undefined. */
  autostart?: () => Promise<string | undefined>;
}

/** Runs the session; resolves with the exit status once all output is written. */
export function runSession(spec: RunSessionOptions): Promise<number> {
  return new Promise((resolve) => new Session(spec, resolve).connect(spec.socketPath));
}

class Session implements CallHandler {
  private call!: DaemonCall;
  private started = false;
  /** Where the session runs, from Started. */
  private hostname = '';
  private stdinCredit = 0;
  /** Stdin that arrived beyond the credit, waiting for a Window frame; stdin is paused meanwhile. */
  private stdinHeld: Buffer | undefined;
  private stdinEnded = false;
  private stdinAttached = false;
  /** Output handed to stdout/stderr whose write has not completed. */
  private writing = 0;
  /** Output our stdout and stderr have taken, and the window it is granted back in (half a window at a time, as the SDK grants). */
  private taken = 0;
  private readonly window = new ReceiveWindow();
  private outputBroken = false;
  private status: number | undefined;
  /** The signal that is ending the session (after it started): the status is then ssh's for it. */
  private killedBy: EndingSignal | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private reported = false;
  private readonly cleanups: Array<() => void> = [];

  /** process.stdout and process.stderr, touched only once there is output: creating them costs start-up time. */
  private readonly outputs: Array<NodeJS.WriteStream | undefined> = [];

  constructor(private readonly spec: RunSessionOptions, private readonly done: (status: number) => void) {}

  connect(socketPath: string): void {
    this.call = new DaemonCall(socketPath, { session: this.spec.request }, this);
    for (const sig of ENDING_SIGNALS) this.on(process, sig, () => this.signal(sig));
    if (this.spec.request.pty) this.on(process, 'SIGWINCH', () => this.call.send({ resize: windowSize() }));
  }

  // ---- CallHandler ----------------------------------------------------------

  welcome({ stdinWindow }: { stdinWindow: number }): void {
    this.stdinCredit = stdinWindow;
    if (this.spec.request.stdin) this.attachStdin();
  }

  frame(frame: Frame): void {
    switch (frame.body) {
      case 'started': {
        const s = frame.started!;
        this.started = true;
        this.hostname = s.hostname ?? '';
        this.spec.diag.info(`session on ${s.connection} after ${s.waitedMs ?? 0} ms${s.newConnection ? ' (new connection)' : ''}`);
        // As ssh prints them: a changed host key accepted under StrictHostKeyChecking no, a key newly added.
        for (const warning of s.warnings ?? []) this.spec.diag.warn(`Warning: ${warning}`);
        if (s.window) this.credit(s.window);
        this.spec.onStarted?.();
        return;
      }
      case 'data': {
        const data = frame.data!.data as Buffer;
        this.window.arrive(data.length);
        return this.output(this.outputStream(frame.data!.fd === 2 ? 2 : 1), data);
      }
      case 'window':
        if (!frame.window!.outputWaits) return this.credit(frame.window!.bytes ?? 0);
        this.window.daemonWaits();
        return this.written(0);
      case 'exit': {
        const exit = frame.exit!;
        // OpenSSH exits 255 without a word when the remote dies by a signal.
        if (exit.signal) this.spec.diag.info(`remote command killed by signal ${exit.signal}`);
        return this.finish(exit.signal ? EXIT_FAILURE : exit.code ?? 0);
      }
      case 'error': {
        const err = frame.error!;
        // A cancel we sent because our stdout went away, or after a signal, is no news to anyone.
        if (!this.outputBroken && !this.killedBy) this.spec.diag.error(err.message ?? 'the call failed');
        return this.finish(EXIT_FAILURE);
      }
    }
  }

  lost(err: SshMuxError, unreached: boolean): void {
    if (this.status !== undefined) return;
    if (unreached && this.spec.autostart) {
      const autostart = this.spec.autostart;
      this.spec.autostart = undefined;
      this.release();
      autostart().then((socket) => {
        if (socket) return this.connect(socket);
        this.spec.diag.error(err.message);
        this.finish(EXIT_FAILURE);
      }, (e: Error) => {
        this.spec.diag.error(e.message);
        this.finish(EXIT_FAILURE);
      });
      return;
    }
    this.spec.diag.error(err.message);
    this.finish(EXIT_FAILURE);
  }

  // ---- output ---------------------------------------------------------------

  private output(to: NodeJS.WriteStream, data: Buffer): void {
    if (this.outputBroken) return this.written(data.length);
    this.writing++;
    to.write(data, () => {
      this.writing--;
      this.written(data.length);
      this.settle();
    });
  }

  private outputStream(fd: 1 | 2): NodeJS.WriteStream {
    let out = this.outputs[fd];
    if (!out) {
      out = output(fd);
      // Kept to the end: a write may fail after the call is over.
      out.on('error', () => this.outputFailed());
      this.outputs[fd] = out;
    }
    return out;
  }

  /** Bytes our reader has taken: grant them back in batches. */
  private written(n: number): void {
    this.taken += n;
    const owed = this.window.take(this.taken);
    if (owed > 0 && this.status === undefined) this.call.send({ window: { bytes: owed } });
  }

  /** Our stdout or stderr is gone (EPIPE): as with ssh, the remote command is ended. */
  private outputFailed(): void {
    if (this.outputBroken) return;
    this.outputBroken = true;
    if (this.status === undefined) this.call.send({ cancel: { reason: 'the local stdout or stderr closed' } });
  }

  // ---- stdin ----------------------------------------------------------------

  private attachStdin(): void {
    if (this.stdinAttached) return;
    this.stdinAttached = true;
    const stdin = input();
    this.on(stdin, 'data', (chunk: Buffer) => this.sendStdin(chunk));
    this.on(stdin, 'end', () => this.endStdin());
    // A stdin that cannot be read (EIO on a lost terminal) ends like EOF.
    this.on(stdin, 'error', () => this.endStdin());
  }

  private sendStdin(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.stdinCredit <= 0) {
        this.stdinHeld = chunk.subarray(at);
        process.stdin.pause();
        return;
      }
      const n = Math.min(chunk.length - at, this.stdinCredit, DATA_CHUNK);
      this.call.sendStdin(chunk.subarray(at, at + n));
      this.stdinCredit -= n;
      at += n;
    }
  }

  private credit(bytes: number): void {
    this.stdinCredit += bytes;
    const held = this.stdinHeld;
    if (!held) return;
    this.stdinHeld = undefined;
    this.sendStdin(held);
    if (this.stdinHeld) return;
    if (this.stdinEnded) this.call.send({ eof: {} });
    else process.stdin.resume();
  }

  private endStdin(): void {
    if (this.stdinEnded) return;
    this.stdinEnded = true;
    // Held bytes go first; credit() sends the EOF after them.
    if (!this.stdinHeld) this.call.send({ eof: {} });
  }

  // ---- the end --------------------------------------------------------------

  /**
   * Before the session has started, the signal's default action, as it ends
   * ssh while it connects (the daemon cancels the call when our socket
   * closes). After, it goes to the remote process, which has a moment to end
   * and write its last words before the call is cancelled (a second signal
   * cancels at once); sshmux then exits with ssh's status for the signal.
   */
  private signal(sig: EndingSignal): void {
    if (this.status !== undefined) return;
    if (!this.started) {
      this.release();
      process.kill(process.pid, sig);
      return;
    }
    if (this.killedBy) return this.cancelAfterSignal();
    this.killedBy = sig;
    this.call.send({ signal: { name: sig.replace(/^SIG/, '') } });
    this.graceTimer = setTimeout(() => this.cancelAfterSignal(), SIGNAL_GRACE_MS);
  }

  private cancelAfterSignal(): void {
    clearTimeout(this.graceTimer);
    if (this.status === undefined) this.call.send({ cancel: { reason: `sshmux got ${this.killedBy}` } });
  }

  private finish(status: number): void {
    if (this.status !== undefined) return;
    clearTimeout(this.graceTimer);
    if (this.killedBy) {
      this.status = statusAfterSignal(this.killedBy, true, this.spec.diag);
    } else {
      this.status = status;
      // ssh says so after an interactive (pty) session (not when a signal ended it).
      if (this.started && this.spec.request.pty) this.spec.diag.warn(`Connection to ${this.hostname} closed.`);
    }
    this.release();
    this.settle();
  }

  /** Reports the status once every output write has completed. */
  private settle(): void {
    if (this.status === undefined || this.writing > 0 || this.reported) return;
    this.reported = true;
    this.done(this.status);
  }

  private release(): void {
    this.call.end();
    for (const cleanup of this.cleanups.splice(0)) cleanup();
    if (this.stdinAttached) process.stdin.pause();
  }

  private on(emitter: NodeJS.EventEmitter, event: string, fn: (...args: never[]) => void): void {
    emitter.on(event, fn as (...args: unknown[]) => void);
    this.cleanups.push(() => emitter.off(event, fn as (...args: unknown[]) => void));
  }
}

/** The local terminal's size, for the pty request and SIGWINCH. */
export function windowSize(): { cols: number; rows: number } {
  return { cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 };
}
