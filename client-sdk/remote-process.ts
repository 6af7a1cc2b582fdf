// A remote command as a child-process-like object: stdin, stdout and stderr
// streams with backpressure that reaches the remote process, and two ends,
// as Node's child_process has: `exited` ('exit') when the exit status
// arrives, `closed` ('close') once that has happened and stdout and stderr
// have both been read to their end. Whoever exits or reports completion
// waits for `closed`: at `exited`, up to a window of output may still sit
// unread in the streams. Flow control: the daemon may send a window of
// output ahead of what we have handed to the reader (proto/receive-window.ts:
// 1 MiB, growing while the reader keeps up); we grant more as the reader
// consumes.
import { EventEmitter, once } from 'node:events';
import { Readable, Writable } from 'node:stream';
import { DATA_CHUNK, Fd, type v1 } from '../proto';
import { SshMuxError } from './errors';
import { ReceiveWindow } from '../proto/receive-window';
import { type StreamHandler, type Transport } from './transport';

export interface ExitResult {
  /** Exit status, or null when the process was killed by a signal. */
  code: number | null;
  /** Signal name without "SIG" (e.g. "TERM"), or null. */
  signal: string | null;
}

export interface StartedInfo {
  connection: string;
  waitedMs: number;
  newConnection: boolean;
  /** Downloads: the remote file's length. */
  size?: number;
  /** What ssh would have printed about the connection (a changed host key accepted, a key newly added); each is also a 'warning' event. */
  warnings: string[];
}


/** Where stdin's bytes and its end go while the call runs. */
interface StdinTarget {
  write(chunk: Buffer, cb: (err?: Error | null) => void): void;
  end(): void;
}

/**
 * A call's stdin, which refers to its call only until the call ends
 * (detach). A Writable can outlive its use in V8's old space, where Node
 * makes its write callback, and keep what it refers to through every young
 * collection until a full one; so it lets go of the finished call, which is
 * then collected young (docs/hot-path.md, "What the young collector kept").
 * Written after that, it takes the bytes and drops them: the remote is gone.
 */
class Stdin extends Writable {
  constructor(private target: StdinTarget | undefined) {
    super({ highWaterMark: 64 * 1024 });
    // A stdin write after exit must not throw at the user.
    this.on('error', ignoreError);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.target) this.target.write(chunk, cb);
    else cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.target?.end();
    cb();
  }

  detach(): void {
    this.target = undefined;
  }
}

function ignoreError(): void {}

export class RemoteProcess extends EventEmitter implements StreamHandler {
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly stdin: Writable;
  private readonly input: Stdin;
  /** Resolves with the exit status as soon as it arrives (output may still be unread); rejects with SshMuxError. */
  readonly exited: Promise<ExitResult>;
  /**
   * Settles like `exited`, but only once stdout and stderr have also been read
   * to their end (Node's 'close', emitted then too): wait for this before
   * reporting the output complete or exiting. Output nobody reads keeps it
   * pending, as in Node.
   */
  readonly closed: Promise<ExitResult>;
  started: StartedInfo | undefined;

  private stream = 0;
  private transport: Transport | undefined;
  private received = 0;
  /** Grants in batches of half the window: each is a frame, a write and a wake-up of the daemon (a quarter cost it 10-15 % more CPU per GiB). */
  private readonly window = new ReceiveWindow();
  private stdinCredit = 0;
  private waitingForCredit: (() => void) | undefined;
  /** Control frames asked for before the stream existed (cancel, kill...). */
  private early: Array<Omit<v1.IFrame, 'stream'>> = [];
  private done = false;
  private outputEnded = false;
  /** The request said no stdin: the daemon gives the remote its EOF, and no Eof frame is sent. */
  private withoutStdin = false;
  private resolveExit!: (r: ExitResult) => void;
  private rejectExit!: (e: SshMuxError) => void;

  constructor() {
    super();
    // Readable calls _read before read() takes the data it returns out of the
    // buffer, so that data would not count as consumed yet: a reader that
    // takes the whole window in one read() would then never grant, and the
    // daemon would wait for it forever. Grant once it is out.
    const read = (): void => process.nextTick(() => this.grant());
    this.stdout = new Readable({ read, highWaterMark: 64 * 1024 });
    this.stderr = new Readable({ read, highWaterMark: 64 * 1024 });
    this.input = new Stdin({
      write: (chunk, cb) => this.writeStdin(chunk, 0, cb),
      end: () => {
        if (!this.withoutStdin) this.send({ eof: {} });
      },
    });
    this.stdin = this.input;
    this.exited = new Promise<ExitResult>((resolve, reject) => {
      this.resolveExit = resolve;
      this.rejectExit = reject;
    });
    this.exited.catch(() => {}); // awaited or not, never an unhandled rejection
    const drained = Promise.all([once(this.stdout, 'end'), once(this.stderr, 'end')]);
    this.closed = this.exited.then(
      (result) => drained.then(() => {
        this.emit('close', result.code, result.signal);
        return result;
      }),
      (err: SshMuxError) => drained.then(() => {
        this.emit('close', null, null);
        throw err;
      }));
    this.closed.catch(() => {});
  }

  /** Whether the call has ended (exit or error). */
  get finished(): boolean {
    return this.done;
  }

  /** The request has no stdin (stdin: false): stdin is ended here, and the remote's by the daemon. */
  noStdin(): void {
    this.withoutStdin = true;
    this.stdin.end();
  }

  /** Called by SshMux once the request is on the wire. */
  attach(transport: Transport, stream: number, stdinWindow: number): void {
    this.transport = transport;
    this.stream = stream;
    this.stdinCredit = stdinWindow;
    for (const frame of this.early) this.send(frame);
    this.early = [];
    this.waitingForCredit?.();
  }

  /** Sends a signal ("INT", "TERM", "HUP"...) to the remote process. */
  kill(signal = 'TERM'): void {
    this.send({ signal: { name: signal.replace(/^SIG/, '') } });
  }

  /** Ends the call: the remote process gets TERM, then KILL; `exited` rejects with CANCELLED. */
  cancel(reason = ''): void {
    this.send({ cancel: { reason } });
  }

  resize(cols: number, rows: number): void {
    this.send({ resize: { cols, rows } });
  }

  // ---- StreamHandler ------------------------------------------------------

  onFrame(frame: v1.Frame): void {
    switch (frame.body) {
      case 'data': {
        const bytes = frame.data!.data as Uint8Array;
        const chunk = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
        this.received += chunk.length;
        this.window.arrive(chunk.length);
        (frame.data!.fd === Fd.STDERR ? this.stderr : this.stdout).push(chunk);
        this.grant();
        return;
      }
      case 'window':
        if (frame.window!.outputWaits) {
          this.window.daemonWaits();
          this.grant();
          return;
        }
        this.stdinCredit += frame.window!.bytes ?? 0;
        // The daemon has passed these stdin bytes on (for an upload: written to the file).
        this.emit('stdinAck', frame.window!.bytes ?? 0);
        this.waitingForCredit?.();
        return;
      case 'started': {
        const { window, ...info } = frame.started!;
        this.started = info as StartedInfo;
        if (window) {
          this.stdinCredit += window;
          this.waitingForCredit?.();
        }
        this.emit('started', this.started);
        for (const w of this.started.warnings) this.emit('warning', w);
        return;
      }
      case 'eof':
        return this.endOutput();
      case 'exit': {
        const exit = frame.exit!;
        const signal = exit.signal ? exit.signal : null;
        return this.finish({ code: signal ? null : exit.code ?? 0, signal });
      }
      case 'error':
        return this.finish(SshMuxError.fromWire(frame.error!));
    }
  }

  /** The call failed outside the daemon (no daemon, transport lost, local deadline). */
  onLost(err: SshMuxError): void {
    this.finish(err);
  }

  // ---- internals ---------------------------------------------------------

  /**
   * Grants back what the reader consumed, in batches. Never deadlocks: the
   * daemon stalls only with the whole window unacknowledged, and then all
   * but what sits in the two small stream buffers is owed to it.
   */
  private grant(): void {
    if (this.done) return;
    const owed = this.window.take(this.received - this.stdout.readableLength - this.stderr.readableLength);
    if (owed > 0) this.send({ window: { bytes: owed } });
  }

  private writeStdin(chunk: Buffer, offset: number, cb: (err?: Error | null) => void): void {
    while (offset < chunk.length) {
      if (this.done) return cb();
      if (this.stdinCredit <= 0) {
        this.waitingForCredit = () => {
          this.waitingForCredit = undefined;
          this.writeStdin(chunk, offset, cb);
        };
        return;
      }
      const n = Math.min(chunk.length - offset, this.stdinCredit, DATA_CHUNK);
      this.send({ data: { fd: Fd.STDIN, data: chunk.subarray(offset, offset + n) } });
      this.stdinCredit -= n;
      offset += n;
    }
    cb();
  }

  private send(frame: Omit<v1.IFrame, 'stream'>): void {
    if (this.done) return;
    if (this.transport) this.transport.send({ ...frame, stream: this.stream });
    else this.early.push(frame);
  }

  /** The remote will send no more output: stdout and stderr end once their readers have taken what they hold. */
  private endOutput(): void {
    if (this.outputEnded) return;
    this.outputEnded = true;
    this.stdout.push(null);
    this.stderr.push(null);
  }

  private finish(result: ExitResult | SshMuxError): void {
    if (this.done) return;
    this.done = true;
    this.transport?.release(this.stream);
    this.waitingForCredit?.();
    this.input.detach();
    this.endOutput();
    if (result instanceof SshMuxError) {
      this.rejectExit(result);
      if (this.listenerCount('error') > 0) this.emit('error', result);
    } else {
      this.resolveExit(result);
      this.emit('exit', result.code, result.signal);
    }
    this.emit('end');
  }
}
