// The one place where the SSH front door meets the call core (daemon/call/):
// it runs a front-door channel as the same call an RPC client gets
// (queueing, deadlines, flow control, TERM -> KILL -> close when the client
// goes), and asks the pool whether a destination is reachable before a
// channel is accepted. Everything else in daemon/gateway/ speaks only SSH.
//
// Flow control is mapped both ways, so memory stays bounded whatever the
// client does: output is granted to the call as the SSH channel takes it
// (a write's callback fires once the bytes fit the client's window, so a
// client that reads slowly pauses the remote writer), and stdin goes to the
// call only within the credit it grants back, the front channel being paused
// (no window adjust to the client) while it has none.
import type { ServerChannel } from '../ssh/ssh2';
import { STDERR, STDIN_WINDOW, type CallEnv, type CallOutcome, type CallSink, type OutputFd, type StartedInfo } from '../call/call';
import { ChannelCall } from '../call/channel-call';
import { Code } from '../../proto';
import { MuxError, toMuxError } from '../errors';
import type { Logger } from '../log';
import type { Agent } from '../pool/agent';
import { sizeReceiveWindow, type LinkRtt } from '../ssh/link-window';

/** Output a call may have handed to the SSH channel beyond what the client's window took: the SDK's grant. */
const OUTPUT_WINDOW = 1 << 20;

/** The calls' environment: the pools, the log, the metrics. */
export type BridgeContext = CallEnv;

export interface PtyRequest { term: string; cols: number; rows: number; width: number; height: number }

/** What an SSH client asked for on one channel. */
export type ChannelRequest =
  | { kind: 'exec' | 'shell' | 'subsystem'; command: string; env: Record<string, string>; pty?: PtyRequest }
  | { kind: 'tcpip'; host: string; port: number };

/** stdin, as the call numbers file descriptors. */
const STDIN = 0;

/**
 * Why `destination` (an SSH user name: alias or user@alias) with `options`
 * (ssh -o style, as a call's) cannot be used, resolved as the RPC resolves
 * hosts; creates no pool.
 */
export function destinationProblem(agent: Agent, destination: string, options: Record<string, string> = {}): MuxError | undefined {
  try {
    agent.resolve(destination, options);
    return undefined;
  } catch (err) {
    return toMuxError(err);
  }
}

/**
 * Resolves once `destination` has a ready pooled connection (at once if it
 * has one), without taking a session slot; rejects with the handshake's own
 * error, or DEADLINE_EXCEEDED after the pool's queueTimeoutMs.
 */
export function whenReachable(agent: Agent, destination: string, options: Record<string, string> = {}): { ready: Promise<void>; cancel(): void } {
  try {
    const pool = agent.pool(destination, options);
    const check = pool.connected(pool.limits.queueTimeoutMs);
    return { ready: check.ready.then(() => undefined), cancel: check.cancel };
  } catch (err) {
    return { ready: Promise.reject(toMuxError(err)), cancel: () => {} };
  }
}

export interface BridgedChannelHooks {
  /** The front-door connection's round trip: the client's stdin window is sized to it (daemon/ssh/link-window.ts). */
  link?: LinkRtt;
  /** A TCP stream opened: accept the front channel now. */
  accept?(): ServerChannel;
  /** A TCP stream could not open: refuse the front channel with this. */
  refuse?(err: MuxError): void;
}

type Size = { cols: number; rows: number; width: number; height: number };

/**
 * One front-door channel running as a call. A session channel is attached
 * before the call starts (stdin may follow the exec request at once); a TCP
 * channel only once its stream is open, so a refusal is its open failure.
 */
export class BridgedChannel implements CallSink {
  private readonly call: ChannelCall;
  private readonly log: Logger;
  private channel: ServerChannel | undefined;
  /** Writes the SSH channel has not yet fitted into the client's window. */
  private inFlight = 0;
  private stdinCredit = STDIN_WINDOW;
  private readonly stdinQueue: Buffer[] = [];
  private stdinEnded = false;
  private eofSent = false;
  /** A TCP stream's far end sent EOF: pass it on once the output before it is out. */
  private eofPending = false;
  private running = false;
  private size: Size | undefined;
  /** How the call ended, reported once the output before it is out. */
  private outcome: CallOutcome | undefined;
  private finished = false;
  /** The client closed the channel or went away. */
  private closed = false;

  constructor(ctx: BridgeContext, destination: string, private readonly request: ChannelRequest, private readonly hooks: BridgedChannelHooks = {},
    options: Record<string, string> = {}) {
    this.log = ctx.log;
    const r = request;
    this.call = new ChannelCall(this, r.kind === 'tcpip'
      ? { kind: 'tcpip', host: destination, options, forwardHost: r.host, forwardPort: r.port, stdin: true }
      : { kind: r.kind, host: destination, options, command: r.command, env: r.env, pty: r.pty, stdin: true },
    { ...ctx, outputWindow: OUTPUT_WINDOW, stdinCredit: STDIN_WINDOW });
  }

  /** Starts the call; a session passes its already accepted channel. */
  start(channel?: ServerChannel): void {
    if (channel) this.attach(channel);
    this.call.start();
  }

  resize(cols: number, rows: number, width: number, height: number): void {
    // Before the remote side opens, a resize would be lost: keep the last one for then.
    this.size = { cols, rows, width, height };
    if (this.running) this.call.onResize(this.size);
  }

  signal(name: string): void {
    this.call.onSignal(name);
  }

  /** The daemon's grace period is over: the remote command gets TERM, then KILL, and the client SHUTTING_DOWN. */
  shutdown(): void {
    this.call.shutdown();
  }

  /** The client closed the channel or went away: the remote command is ended (TERM, KILL, close). */
  gone(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.outcome) this.call.clientGone();
  }

  // ---- CallSink: what the call sends --------------------------------------

  get alive(): boolean {
    return !this.closed;
  }

  started(info: StartedInfo): void {
    this.running = true;
    if (!this.channel) this.attach(this.hooks.accept!());
    if (this.size) this.call.onResize(this.size);
    // What ssh prints about a host key (a changed one accepted, one newly added), where ssh prints it.
    if (this.request.kind !== 'tcpip') for (const w of info.warnings ?? []) this.writeLine(`Warning: ${w}`);
  }

  data(fd: OutputFd, chunk: Buffer): void {
    if (this.closed || !this.channel) return;
    const target = fd === STDERR ? this.channel.stderr : this.channel;
    this.inFlight++;
    target.write(chunk, () => {
      this.inFlight--;
      this.call.onWindow(chunk.length);
      this.maybeEof();
      this.maybeFinish();
    });
  }

  stdinWritten(bytes: number): void {
    this.stdinCredit += bytes;
    this.flushStdin();
  }

  /**
   * The remote sent EOF. A TCP stream's reader may be waiting for it (a
   * half-close); a session's EOF goes with its exit status at the end, since
   * ssh2 sends no exit status on a channel it has sent EOF on.
   */
  eof(): void {
    if (this.request.kind !== 'tcpip') return;
    this.eofPending = true;
    this.maybeEof();
  }

  end(outcome: CallOutcome): void {
    this.outcome = outcome;
    // Stdin the command never read has nowhere to go now.
    this.stdinQueue.length = 0;
    this.channel?.resume();
    if (!this.channel) {
      if (this.closed) return;
      this.closed = true;
      this.hooks.refuse?.(outcome.error ?? new MuxError(Code.INTERNAL, 'internal error: the stream ended before it opened'));
      return;
    }
    // What OpenSSH users know from a failed ssh: a message on stderr, exit status 255.
    if (outcome.error && this.request.kind !== 'tcpip') this.writeLine(`sshmux: ${outcome.error.codeName}: ${outcome.error.message}`);
    this.maybeFinish();
  }

  protocolError(message: string): void {
    // The call says this bridge broke its rules: a bug here, not the client's doing.
    this.log.error({ err: message }, 'gateway: internal error in a channel; cancelling its call');
    this.call.onCancel(`internal error in the sshmux gateway: ${message}`);
  }

  // ---- the front channel ----------------------------------------------------

  private attach(channel: ServerChannel): void {
    this.channel = channel;
    channel.on('data', (chunk: Buffer) => this.stdin(chunk));
    channel.once('end', () => {
      this.stdinEnded = true;
      this.flushStdin();
    });
    channel.on('error', () => {
      // The client's close or the connection's end reaches us through gone().
    });
    // An upload from a client far away: the window it may send in follows its link.
    sizeReceiveWindow(channel, this.hooks.link);
  }

  private stdin(chunk: Buffer): void {
    if (this.outcome) return;
    if (this.stdinQueue.length === 0 && chunk.length <= this.stdinCredit) {
      this.stdinCredit -= chunk.length;
      this.call.onData(STDIN, chunk);
      return;
    }
    this.stdinQueue.push(chunk);
    this.channel!.pause();
    this.flushStdin();
  }

  /** Passes queued stdin within the credit; resumes the channel once the queue is empty. */
  private flushStdin(): void {
    if (this.outcome) return;
    while (this.stdinQueue.length > 0 && this.stdinCredit > 0) {
      const head = this.stdinQueue[0];
      const n = Math.min(head.length, this.stdinCredit);
      if (n === head.length) this.stdinQueue.shift();
      else this.stdinQueue[0] = head.subarray(n);
      this.stdinCredit -= n;
      this.call.onData(STDIN, n === head.length ? head : head.subarray(0, n));
    }
    if (this.stdinQueue.length > 0) return;
    if (this.stdinEnded && !this.eofSent) {
      this.eofSent = true;
      this.call.onEof();
    } else if (!this.stdinEnded) {
      this.channel?.resume();
    }
  }

  /** A line of ours on the session's stderr, ended as the terminal expects. */
  private writeLine(text: string): void {
    const pty = this.request.kind !== 'tcpip' && this.request.pty;
    this.data(STDERR, Buffer.from(`${text}${pty ? '\r\n' : '\n'}`));
  }

  private maybeEof(): void {
    if (!this.eofPending || this.inFlight > 0 || this.closed || this.finished) return;
    this.eofPending = false;
    this.channel!.eof(); // half-close: the client may still send
  }

  private maybeFinish(): void {
    if (!this.outcome || this.inFlight > 0 || this.finished || this.closed) return;
    this.finished = true;
    const channel = this.channel!;
    if (this.request.kind !== 'tcpip') sendExit(channel, this.outcome);
    channel.end(); // EOF, then close (ssh2's server channel closes on finish)
  }
}

function sendExit(channel: ServerChannel, outcome: CallOutcome): void {
  if (outcome.error) return channel.exit(255);
  const { code, signal, coreDumped, message } = outcome.exit;
  if (!signal) return channel.exit(code ?? 0);
  try {
    channel.exit(signal, !!coreDumped, message ?? '');
  } catch {
    channel.exit(255); // a signal name ssh2 does not know; OpenSSH reports 255 for a killed command too
  }
}
