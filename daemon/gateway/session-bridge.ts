// The one place where the SSH front door meets the call layer: it runs a
// front-door channel as the same call an RPC client gets (queueing,
// deadlines, flow control, TERM -> KILL -> close when the client goes), and
// asks the pool whether a destination is reachable before a channel is
// accepted. Everything else in daemon/gateway/ speaks only SSH.
//
// Flow control is mapped both ways, so memory stays bounded whatever the
// client does: output is granted to the call as the SSH channel takes it
// (a write's callback fires once the bytes fit the client's window, so a
// client that reads slowly pauses the remote writer), and stdin goes to the
// call only within the credit it grants back, the front channel being paused
// (no window adjust to the client) while it has none.
import type { ServerChannel } from 'ssh2';
import { Code, codeName, Fd, type IFrame, v1 } from '../../proto';
import { MuxError, toMuxError } from '../errors';
import type { Logger } from '../log';
import type { Agent } from '../pool/agent';
import { SessionCall, type CallSink } from '../rpc/session-call';

/** Output a call may have handed to the SSH channel beyond what the client's window took: the SDK's grant. */
const OUTPUT_WINDOW = 1 << 20;
/** Stdin credit per call, as the RPC grants. */
const STDIN_WINDOW = 256 * 1024;

export interface BridgeContext {
  agent: Agent;
  log: Logger;
}

export interface PtyRequest { term: string; cols: number; rows: number; width: number; height: number }

/** What an SSH client asked for on one channel. */
export type ChannelRequest =
  | { kind: 'exec' | 'shell' | 'subsystem'; command: string; env: Record<string, string>; pty?: PtyRequest }
  | { kind: 'tcpip'; host: string; port: number };

const KIND = {
  exec: v1.SessionRequest.Kind.EXEC,
  shell: v1.SessionRequest.Kind.SHELL,
  subsystem: v1.SessionRequest.Kind.SUBSYSTEM,
  tcpip: v1.SessionRequest.Kind.TCPIP,
};

/** Why `destination` (an SSH user name: alias or user@alias) cannot be used, resolved as the RPC resolves hosts. */
export function destinationProblem(agent: Agent, destination: string): MuxError | undefined {
  try {
    agent.pool(destination, {});
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
export function whenReachable(agent: Agent, destination: string): { ready: Promise<void>; cancel(): void } {
  try {
    const pool = agent.pool(destination, {});
    return pool.connected(pool.limits.queueTimeoutMs);
  } catch (err) {
    return { ready: Promise.reject(toMuxError(err)), cancel: () => {} };
  }
}

export interface ChannelCallHooks {
  /** A TCP stream opened: accept the front channel now. */
  accept?(): ServerChannel;
  /** A TCP stream could not open: refuse the front channel with this. */
  refuse?(err: MuxError): void;
}

/**
 * One front-door channel running as a call. A session channel is attached
 * before the call starts (stdin may follow the exec request at once); a TCP
 * channel only once its stream is open, so a refusal is its open failure.
 */
export class ChannelCall implements CallSink {
  private static nextStream = 1;
  private readonly call: SessionCall;
  private channel: ServerChannel | undefined;
  /** Writes the SSH channel has not yet fitted into the client's window. */
  private inFlight = 0;
  private stdinCredit = STDIN_WINDOW;
  private readonly stdinQueue: Buffer[] = [];
  private stdinEnded = false;
  private eofSent = false;
  private outcome: v1.IExit | MuxError | undefined;
  private finished = false;
  private closed = false;
  /** A TCP stream's far end sent EOF: pass it on once the output before it is out. */
  private eofPending = false;
  private started = false;
  private callOver = false;
  private size: v1.IResize | undefined;
  private readonly log: Logger;

  constructor(
    ctx: BridgeContext,
    destination: string,
    private readonly request: ChannelRequest,
    private readonly hooks: ChannelCallHooks = {},
  ) {
    this.log = ctx.log;
    const r = request;
    const session = r.kind === 'tcpip'
      ? { host: destination, kind: KIND.tcpip, forwardHost: r.host, forwardPort: r.port, stdin: true }
      : { host: destination, kind: KIND[r.kind], command: r.command, env: r.env, pty: r.pty, stdin: true };
    this.call = new SessionCall(this, ChannelCall.nextStream++, v1.SessionRequest.create(session),
      { agent: ctx.agent, log: ctx.log, clientWindow: OUTPUT_WINDOW, stdinWindow: STDIN_WINDOW });
  }

  /** Starts the call; a session passes its already accepted channel. */
  start(channel?: ServerChannel): void {
    if (channel) this.attach(channel);
    this.call.start();
  }

  resize(cols: number, rows: number, width: number, height: number): void {
    // Before the remote side opens, a resize would be lost: keep the last one for then.
    this.size = { cols, rows, width, height };
    if (this.started) this.call.onResize(this.size);
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
    if (!this.callOver) this.call.clientGone();
  }

  // ---- CallSink: what the call sends --------------------------------------

  get alive(): boolean {
    return !this.closed;
  }

  send(frame: IFrame): void {
    if (frame.started) this.onStarted();
    else if (frame.window) this.credit(frame.window.bytes ?? 0);
    else if (frame.eof) this.outputEnded();
    else if (frame.exit) this.finish(frame.exit);
    else if (frame.error) this.finish(new MuxError(frame.error.code ?? Code.INTERNAL, frame.error.message ?? ''));
  }

  sendData(_stream: number, fd: number, data: Buffer): void {
    if (this.closed || !this.channel) return;
    const target = fd === Fd.STDERR ? this.channel.stderr : this.channel;
    this.inFlight++;
    target.write(data, () => {
      this.inFlight--;
      this.call.onWindow(data.length);
      this.maybeEof();
      this.maybeFinish();
    });
  }

  callEnded(): void {
    // Its last frame (exit or error) went through send(); a later close has
    // nothing to end, and stdin the command never read has nowhere to go.
    this.callOver = true;
    this.stdinQueue.length = 0;
    this.channel?.resume();
  }

  protocolError(message: string): void {
    // The call says this bridge broke its rules: a bug here, not the client's doing.
    this.log.error({ err: message }, 'gateway: internal error in a channel; cancelling its call');
    this.call.onCancel(`internal error in the sshmux gateway: ${message}`);
  }

  // ---- the front channel ----------------------------------------------------

  /**
   * The remote sent EOF. A TCP stream's reader may be waiting for it (a
   * half-close); a session's EOF goes with its exit status at the end, since
   * ssh2 sends no exit status on a channel it has sent EOF on.
   */
  private outputEnded(): void {
    if (this.request.kind !== 'tcpip') return;
    this.eofPending = true;
    this.maybeEof();
  }

  private onStarted(): void {
    this.started = true;
    if (!this.channel) this.attach(this.hooks.accept!());
    if (this.size) this.call.onResize(this.size);
  }

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
  }

  private stdin(chunk: Buffer): void {
    if (this.callOver) return;
    if (this.stdinQueue.length === 0 && chunk.length <= this.stdinCredit) {
      this.stdinCredit -= chunk.length;
      this.call.onData(Fd.STDIN, chunk);
      return;
    }
    this.stdinQueue.push(chunk);
    this.channel!.pause();
    this.flushStdin();
  }

  private credit(bytes: number): void {
    this.stdinCredit += bytes;
    this.flushStdin();
  }

  /** Passes queued stdin within the credit; resumes the channel once the queue is empty. */
  private flushStdin(): void {
    if (this.callOver) return;
    while (this.stdinQueue.length > 0 && this.stdinCredit > 0) {
      const head = this.stdinQueue[0];
      const n = Math.min(head.length, this.stdinCredit);
      if (n === head.length) this.stdinQueue.shift();
      else this.stdinQueue[0] = head.subarray(n);
      this.stdinCredit -= n;
      this.call.onData(Fd.STDIN, n === head.length ? head : head.subarray(0, n));
    }
    if (this.stdinQueue.length > 0) return;
    if (this.stdinEnded && !this.eofSent) {
      this.eofSent = true;
      this.call.onEof();
    } else if (!this.stdinEnded) {
      this.channel?.resume();
    }
  }

  /** The call is over: once every byte is in the client's window, report how it ended. */
  private finish(outcome: v1.IExit | MuxError): void {
    if (!this.channel) {
      if (this.closed) return;
      this.closed = true;
      this.hooks.refuse?.(outcome instanceof MuxError ? outcome
        : new MuxError(Code.INTERNAL, 'internal error: the stream ended before it opened'));
      return;
    }
    if (outcome instanceof MuxError && this.request.kind !== 'tcpip' && !this.closed) {
      // What OpenSSH users know from a failed ssh: a message on stderr, exit status 255.
      const eol = this.request.pty ? '\r\n' : '\n';
      this.sendData(0, Fd.STDERR, Buffer.from(`sshmux: ${codeName(outcome.code)}: ${outcome.message}${eol}`));
    }
    this.outcome = outcome;
    this.maybeFinish();
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

function sendExit(channel: ServerChannel, outcome: v1.IExit | MuxError): void {
  if (outcome instanceof MuxError) return channel.exit(255);
  if (!outcome.signal) return channel.exit(outcome.code ?? 0);
  try {
    channel.exit(outcome.signal, !!outcome.coreDumped, outcome.message ?? '');
  } catch {
    channel.exit(255); // a signal name ssh2 does not know; OpenSSH reports 255 for a killed command too
  }
}
