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
import type { Limits } from '../config';
import { MuxError, toMuxError, type Phase } from '../errors';
import type { Logger } from '../log';
import { countRequest, observeExec } from '../metrics';
import type { Agent } from '../pool/agent';
import type { HostPool } from '../pool/host-pool';

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

export const STDOUT = 1;
export const STDERR = 2;
export type OutputFd = typeof STDOUT | typeof STDERR;

/** Where a call's results go: the door's side of the call. */
export interface CallSink {
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
  /** The remote sent EOF: no more output. end() follows once the channel has closed. */
  eof(): void;
  /** Exactly once, last. */
  end(outcome: CallOutcome): void;
  /** The door's peer broke the call's rules (stdin beyond its credit, after EOF). */
  protocolError(message: string): void;
}

export interface CallContext {
  agent: Agent;
  log: Logger;
  /** Initial output window the door grants. */
  outputWindow: number;
  /** Initial stdin credit the door's peer was given. */
  stdinCredit: number;
}

export abstract class Call {
  protected ended = false;
  /** Set when the call is ending early (cancel, deadline, shutdown, a failure): the reason it reports. */
  protected stopping: MuxError | undefined;
  protected outputWindow: number;
  protected stdinCredit: number;
  protected stdinEof = false;
  private deadlineTimer: NodeJS.Timeout | undefined;
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
    this.outputWindow += bytes;
    this.outputRoom();
  }

  /** A terminal's new size; only a session with a pty has one. */
  onResize(_size: { cols: number; rows: number; width: number; height: number }): void {}

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
    if (ms > 0) this.deadlineTimer = setTimeout(() => this.deadline(ms), ms);
  }

  private deadline(ms: number): void {
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
    clearTimeout(this.deadlineTimer);
    countRequest(this.request.host, outcome.error ? outcome.error.codeName : 'OK');
    if (this.request.kind === 'exec') observeExec((Date.now() - this.createdAt) / 1000);
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
