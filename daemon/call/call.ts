// A call: one session (a command, a shell, a subsystem, a TCP stream) or one
// file transfer, asked for at any door: an RPC frame, the SSH front door, the
// job poller. A door turns what arrives into a CallRequest and a CallSink;
// the call does the rest the same way for every door: the pool lookup,
// deadlines, queueing, flow control both ways, cancel and cleanup, metrics.
//
// Flow control works as SSH's own: the call sends output only within the
// window the door grants (initial grant, then onWindow), and takes stdin only
// within the credit it gave (initial credit, then sink.stdinWritten as bytes
// reach the remote side). So memory stays bounded whatever a door's peer does.
import type { PseudoTtyOptions } from '../ssh/ssh2';
import { Code } from '../../proto';
import { MAX_RECEIVE_WINDOW } from '../../proto/receive-window';
import type { Limits } from '../config';
import { MuxError, toMuxError, type Phase } from '../errors';
import type { Logger } from '../log';
import type { Agent } from '../pool/agent';
import type { HostPool } from '../pool/host-pool';
import { deadline, type Deadline } from '../deadlines';

export type CallKind = 'exec' | 'shell' | 'subsystem' | 'tcpip' | 'upload' | 'download';

export interface CallRequest {
  kind: CallKind;
  /** ssh_config alias or host name, optionally user@host. */
  host: string;
  /** ssh -o style options (an allow-list applies). */
  options?: Record<string, string>;
  /** exec: the command line; subsystem: its name. */
  command?: string;
  env?: Record<string, string>;
  pty?: PseudoTtyOptions;
  /** false: the remote stdin gets EOF at once. */
  stdin: boolean;
  /** Whole-call deadline; 0 or absent: the daemon's requestTimeoutMs. */
  timeoutMs?: number;
  /** tcpip: where the host connects to. */
  forwardHost?: string;
  forwardPort?: number;
  /** upload, download: the remote file; upload: its permission bits (0: the server's default). */
  path?: string;
  mode?: number;
}

/** How a command ended: an exit code, or the signal that killed it. */
export interface ExitStatus {
  code: number | null;
  signal: string | null;
  coreDumped?: boolean;
  /** The server's description, if any. */
  message?: string;
}

export type CallOutcome = { exit: ExitStatus; error?: undefined } | { error: MuxError; exit?: undefined };

export interface StartedInfo {
  /** Which pooled connection carries it, e.g. "t#2"; "tunnel" for a TCP stream. */
  connection: string;
  waitedMs: number;
  newConnection: boolean;
  /** download: the file's length when it was opened. */
  size?: number;
  /** More stdin credit, on top of the initial credit (upload: room for writes in flight). */
  stdinCredit?: number;
  /** What ssh would have printed about the connection (a changed host key accepted, a key newly added). */
  warnings?: string[];
  /** The HostName the connection reaches (the sshmux command prints ssh's "Connection to ... closed."). */
  hostname?: string;
}

/**
 * The stdin credit a door grants a call at its start (the RPC announces it
 * in Welcome): what the door's peer may send before the call says more
 * reached the remote side. The one definition for every door.
 */
export const STDIN_WINDOW = 256 * 1024;

export const STDOUT = 1;
export const STDERR = 2;
export type OutputFd = typeof STDOUT | typeof STDERR;

/** Where a call's results go: the door's side of the call. `Outcome`: how it can end (a job call's answer is one more). */
export interface CallSink<Outcome = CallOutcome> {
  /** Whether anyone still listens; output for a door that has gone is dropped. */
  readonly alive: boolean;
  started(info: StartedInfo): void;
  /** Output, within the window the door granted. */
  data(fd: OutputFd, chunk: Buffer): void;
  /**
   * data() takes what it needs of `chunk` before it returns (copies it, or
   * drops it): then output may be lent, a view into memory the next read
   * from sshd reuses (ssh2 patch 017), which spares a Buffer per chunk.
   */
  readonly copiesData?: boolean;
  /** `bytes` of stdin reached the remote side: the door may send as much again. */
  stdinWritten(bytes: number): void;
  /** Output has used the whole window the door granted and waits for more (a door whose reader keeps up may grant a larger one). */
  outputWaits?(): void;
  /** The remote sent EOF: no more output. end() follows once the channel has closed. */
  eof(): void;
  /** Exactly once, last. */
  end(outcome: Outcome): void;
  /** The door's peer broke the call's rules (stdin beyond its credit, after EOF). */
  protocolError(message: string): void;
}

/** What the calls count for /metrics (daemon/metrics.ts). */
export interface CallMetrics {
  /** A call ended: OK, or its error's code. */
  countRequest(host: string, code: string): void;
  /** An exec's whole time, from request to exit. */
  observeExec(seconds: number): void;
}

/** What every call shares, whichever door it came through: the pools, the log, the metrics. */
export interface CallEnv {
  agent: Agent;
  log: Logger;
  metrics: CallMetrics;
}

export interface CallContext extends CallEnv {
  /** Initial output window the door grants. */
  outputWindow: number;
  /** Initial stdin credit the door's peer was given. */
  stdinCredit: number;
}

/** A terminal's size, as a door reports it. */
export interface TerminalSize {
  cols: number;
  rows: number;
  width: number;
  height: number;
}

/**
 * A call as its door drives it: what the door's peer sends, and the door's
 * own ends. Every call implements it (Call's kinds, and the RPC's JobCall),
 * so a door holds one kind of call and builds one kind of sink.
 */
export interface DoorCall {
  start(): void;
  /** Stdin (fd 0), within the credit the call gave. */
  onData(fd: number, data: Uint8Array): void;
  onEof(): void;
  /** The door's peer takes `bytes` more output. */
  onWindow(bytes: number): void;
  onResize(size: TerminalSize): void;
  onSignal(name: string): void;
  onCancel(reason: string): void;
  /** The daemon is stopping and the grace period is over. */
  shutdown(): void;
  /** Nobody listens any more (the door's peer disconnected or died). */
  clientGone(): void;
}

export abstract class Call implements DoorCall {
  protected ended = false;
  /** Set when the call is ending early (cancel, deadline, shutdown, a failure): the reason it reports. */
  protected stopping: MuxError | undefined;
  protected outputWindow: number;
  protected stdinCredit: number;
  protected stdinEof = false;
  private deadlineTimer: Deadline | undefined;
  private readonly createdAt = Date.now();

  constructor(
    protected readonly sink: CallSink,
    readonly request: CallRequest,
    protected readonly ctx: CallContext,
  ) {
    this.outputWindow = ctx.outputWindow;
    this.stdinCredit = ctx.stdinCredit;
  }

  start(): void {
    const invalid = this.validate();
    if (invalid) return this.fail(new MuxError(Code.BAD_REQUEST, invalid));
    let pool: HostPool;
    try {
      pool = this.ctx.agent.pool(this.request.host, this.request.options ?? {});
    } catch (err) {
      return this.fail(err);
    }
    this.begin(pool);
  }

  /** Why the request cannot run, or undefined. */
  protected abstract validate(): string | undefined;
  /** Asks the pool for what the call runs on. */
  protected abstract begin(pool: HostPool): void;
  /** Whether the call has its session (or stream) and runs. */
  protected abstract get running(): boolean;
  /** Stdin bytes, within credit, for the remote side. */
  protected abstract writeStdin(chunk: Buffer): void;
  /** The door's peer sent EOF on stdin. */
  protected abstract stdinEnded(): void;
  /** The output window grew. */
  protected abstract outputRoom(): void;
  /** Ends the call early with `reason`, cleaning up the remote side first. */
  protected abstract stop(reason: MuxError): void;
  /** "the command", "the transfer": for messages. */
  protected abstract readonly what: string;
  /** What ending it early does on the remote side, for messages: "was sent TERM, then KILL". */
  protected abstract readonly endedHow: string;

  get phase(): Phase {
    return this.running ? 'running' : 'queued';
  }

  // ---- from the door -------------------------------------------------------

  onData(fd: number, data: Uint8Array): void {
    if (fd !== 0 || !this.request.stdin || this.stdinEof) {
      return this.sink.protocolError(`data it may not send (fd ${fd}${this.stdinEof ? ' after EOF' : ''})`);
    }
    this.stdinCredit -= data.length;
    if (this.stdinCredit < 0) return this.sink.protocolError('stdin beyond the granted window');
    if (this.stopping || this.ended) return;
    this.writeStdin(Buffer.from(data.buffer, data.byteOffset, data.length));
  }

  onEof(): void {
    // Without stdin the remote had its EOF at the start; older clients still send one.
    if (this.stdinEof || !this.request.stdin) return;
    this.stdinEof = true;
    this.stdinEnded();
  }

  onWindow(bytes: number): void {
    // What a client lets us send ahead is what we may hold for it if it stops reading.
    if (this.outputWindow + bytes > MAX_RECEIVE_WINDOW) {
      return this.sink.protocolError(`output window granted beyond ${MAX_RECEIVE_WINDOW / (1 << 20)} MiB ahead of what was sent`);
    }
    this.outputWindow += bytes;
    this.outputRoom();
  }

  /** A terminal's new size; only a session with a pty has one. */
  onResize(_size: TerminalSize): void {}

  /** A signal for the remote process; only a session has one. */
  onSignal(_name: string): void {}

  onCancel(reason: string): void {
    this.stop(new MuxError(Code.CANCELLED, `${this.what} was cancelled by the client${reason ? `: ${reason}` : ''}`, this.phase));
  }

  /** The daemon is stopping and the grace period is over. */
  shutdown(): void {
    this.stop(MuxError.shuttingDown(`sshmuxd stopped and its grace period ran out; ${this.what} ${this.endedHow}`, this.phase));
  }

  /** Nobody listens any more (the client disconnected or died): free everything. */
  clientGone(): void {
    this.stop(new MuxError(Code.CANCELLED, 'the client went away', this.phase));
  }

  // ---- for the kinds -------------------------------------------------------

  /** The call's deadline (the request's, else requestTimeoutMs) and the wait for a session within it. */
  protected timeouts(pool: HostPool): { callMs: number; waitMs: number } {
    return callTimeouts(this.request.timeoutMs ?? 0, pool.limits);
  }

  protected armDeadline(ms: number): void {
    if (ms > 0) this.deadlineTimer = deadline(() => this.deadlinePassed(ms), ms);
  }

  private deadlinePassed(ms: number): void {
    if (!this.running) return; // the pool's wait timer reports where a waiting request was
    this.stop(new MuxError(Code.DEADLINE_EXCEEDED,
      `${this.what} on ${this.request.host} ran past its deadline of ${ms / 1000} s${this.request.kind === 'exec' || this.request.kind === 'shell' || this.request.kind === 'subsystem' ? '; it was sent TERM' : ''}`,
      'running'));
  }

  protected fail(err: unknown): void {
    const muxErr = toMuxError(err);
    if (muxErr.code === Code.INTERNAL) this.ctx.log.error({ err }, 'internal error in a call');
    this.end({ error: muxErr });
  }

  protected end(outcome: CallOutcome): void {
    if (this.ended) return;
    this.ended = true;
    this.deadlineTimer?.cancel();
    this.ctx.metrics.countRequest(this.request.host, outcome.error ? outcome.error.codeName : 'OK');
    if (this.request.kind === 'exec') this.ctx.metrics.observeExec((Date.now() - this.createdAt) / 1000);
    this.sink.end(outcome);
  }
}

/**
 * A call's deadlines: the whole call (the client's, else requestTimeoutMs;
 * 0 is none), and the wait for a session within it (at most queueTimeoutMs).
 */
export function callTimeouts(requestedMs: number, limits: Limits): { callMs: number; waitMs: number } {
  const callMs = requestedMs || limits.requestTimeoutMs;
  return { callMs, waitMs: callMs > 0 ? Math.min(callMs, limits.queueTimeoutMs) : limits.queueTimeoutMs };
}
