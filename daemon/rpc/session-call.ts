// One session call from a client: waits for a pooled session, then bridges
// the SSH channel and the client's stream with flow control both ways, so
// memory stays bounded whatever the output size and a slow reader slows the
// remote writer. Cancel (explicit, deadline, or the client going away)
// sends the remote process TERM, then KILL, then closes the channel: closing
// alone leaves the remote process running.
import type { ClientChannel } from 'ssh2';
import { Code, codeName, DATA_CHUNK, Fd, type IFrame, v1 } from '../../proto';
import { MuxError, toMuxError, type Phase } from '../errors';
import { countRequest, observeExec } from '../metrics';
import type { Logger } from '../log';
import type { Limits } from '../config';
import type { Agent } from '../pool/agent';
import { abandonChannel, discardChannel, sendSignal, type Connection, type SessionSpec } from '../pool/connection';
import type { HostPool, OpenedSession, PendingSession } from '../pool/host-pool';

/** Grace between TERM and KILL, and between KILL and closing the channel. */
const TERM_GRACE_MS = 2000;
const KILL_GRACE_MS = 1000;
/** Signals a client may forward (RFC 4254 section 6.10 names). */
const SIGNALS = new Set(['ABRT', 'ALRM', 'FPE', 'HUP', 'ILL', 'INT', 'KILL', 'PIPE', 'QUIT', 'SEGV', 'TERM', 'USR1', 'USR2']);
const KINDS: Record<number, SessionSpec['kind'] | 'tcpip'> = {
  [v1.SessionRequest.Kind.EXEC]: 'exec',
  [v1.SessionRequest.Kind.SHELL]: 'shell',
  [v1.SessionRequest.Kind.SUBSYSTEM]: 'subsystem',
  [v1.SessionRequest.Kind.TCPIP]: 'tcpip',
};

/** The client side of a call, as the call sees it. */
export interface CallSink {
  readonly alive: boolean;
  send(frame: IFrame): void;
  sendData(stream: number, fd: number, data: Buffer): void;
  callEnded(stream: number): void;
  protocolError(message: string): void;
}

export interface CallContext {
  agent: Agent;
  log: Logger;
  /** Initial stdout+stderr grant from the client's Hello. */
  clientWindow: number;
  /** Initial stdin grant we announced in Welcome. */
  stdinWindow: number;
}

export class SessionCall {
  private pending: PendingSession | undefined;
  private channel: ClientChannel | undefined;
  private connection: Connection | undefined;
  private sendWindow: number;
  private paused = false;
  private stdinCredit: number;
  private stdinQueue: Buffer[] = [];
  private stdinEof = false;
  private exit: v1.IExit | undefined;
  private stopping: MuxError | undefined;
  private ended = false;
  private deadlineTimer: NodeJS.Timeout | undefined;
  /** A TCP stream (ssh -W), not a session: no exit status, no signals. */
  private tunnel = false;
  private cancelTunnel: (() => void) | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  private readonly createdAt = Date.now();

  constructor(
    private readonly sink: CallSink,
    readonly stream: number,
    private readonly request: v1.SessionRequest,
    private readonly ctx: CallContext,
  ) {
    this.sendWindow = ctx.clientWindow;
    this.stdinCredit = ctx.stdinWindow;
  }

  start(): void {
    const req = this.request;
    const kind = KINDS[req.kind];
    if (!kind) return this.fail(new MuxError(Code.BAD_REQUEST, `unknown session kind ${req.kind}`));
    if (kind === 'tcpip') {
      if (!req.forwardHost || !req.forwardPort || req.forwardPort > 65535) {
        return this.fail(new MuxError(Code.BAD_REQUEST, 'a TCP stream needs forward_host and forward_port (1-65535)'));
      }
    } else if (kind !== 'shell' && !req.command) {
      return this.fail(new MuxError(Code.BAD_REQUEST, kind === 'exec' ? 'exec needs a command' : 'subsystem needs a name'));
    }
    let pool;
    try {
      pool = this.ctx.agent.pool(req.host, req.options ?? {});
    } catch (err) {
      return this.fail(err);
    }
    if (kind === 'tcpip') return this.startTunnel(pool, req.forwardHost, req.forwardPort, req.timeoutMs, pool.limits.queueTimeoutMs);
    const { callTimeout, waitMs } = callTimeouts(req.timeoutMs, pool.limits);
    if (callTimeout > 0) this.deadlineTimer = setTimeout(() => this.deadline(callTimeout), callTimeout);
    const pty = req.pty ? {
      term: req.pty.term || 'xterm', cols: req.pty.cols || 80, rows: req.pty.rows || 24,
      width: req.pty.width || 0, height: req.pty.height || 0,
    } : undefined;
    const env = req.env && Object.keys(req.env).length ? req.env : undefined;
    this.pending = pool.request({ kind, command: req.command, env, pty }, {
      onOpen: (session) => this.opened({ ...session, channel: session.channel! }),
      onError: (err) => this.fail(err),
    }, waitMs);
  }

  /**
   * ssh -W: a TCP stream through the host's pooled connection. It takes no
   * session slot, and lives as long as the client wants it unless the
   * client gave a deadline.
   */
  private startTunnel(pool: HostPool, host: string, port: number, timeoutMs: number, waitMs: number): void {
    const t = pool.tunnel(host, port);
    this.cancelTunnel = t.cancel;
    const waitTimer = setTimeout(() => {
      t.cancel();
      this.fail(new MuxError(Code.DEADLINE_EXCEEDED, `no connection to ${pool.name} to carry a stream to ${host}:${port} within ${waitMs / 1000} s`, 'handshaking'));
    }, timeoutMs ? Math.min(timeoutMs, waitMs) : waitMs);
    t.stream.then((stream) => {
      clearTimeout(waitTimer);
      if (this.ended || this.stopping) {
        stream.destroy();
        return;
      }
      if (timeoutMs) this.deadlineTimer = setTimeout(() => this.deadline(timeoutMs), timeoutMs);
      this.tunnel = true;
      this.opened({ channel: stream as ClientChannel, connection: undefined, waitedMs: 0, newConnection: false });
    }, (err: MuxError) => {
      clearTimeout(waitTimer);
      this.fail(err);
    });
  }

  // ---- frames from the client ------------------------------------------

  onData(fd: number, data: Uint8Array): void {
    if (fd !== Fd.STDIN || !this.request.stdin || this.stdinEof) {
      return this.sink.protocolError(`stream ${this.stream}: data it may not send (fd ${fd}${this.stdinEof ? ' after EOF' : ''})`);
    }
    this.stdinCredit -= data.length;
    if (this.stdinCredit < 0) return this.sink.protocolError(`stream ${this.stream}: stdin beyond the granted window`);
    const chunk = Buffer.from(data.buffer, data.byteOffset, data.length);
    if (this.channel) this.writeStdin(chunk);
    else this.stdinQueue.push(chunk);
  }

  onEof(): void {
    if (this.stdinEof) return;
    this.stdinEof = true;
    if (this.channel) this.channel.end();
  }

  onWindow(bytes: number): void {
    this.sendWindow += bytes;
    if (this.paused && this.sendWindow > 0 && this.channel) {
      this.paused = false;
      this.channel.resume();
      this.channel.stderr.resume();
    }
  }

  onResize(r: v1.IResize): void {
    if (!this.tunnel) this.channel?.setWindow(r.rows || 24, r.cols || 80, r.height || 0, r.width || 0);
  }

  onSignal(name: string): void {
    const sig = name.toUpperCase().replace(/^SIG/, '');
    if (this.channel && !this.tunnel && SIGNALS.has(sig)) sendSignal(this.channel, sig);
  }

  onCancel(reason: string): void {
    this.stop(new MuxError(Code.CANCELLED, `cancelled by the client${reason ? `: ${reason}` : ''}`, this.phase));
  }

  /** The daemon is stopping and the grace period is over: the remote process gets TERM, then KILL. */
  shutdown(): void {
    this.stop(new MuxError(Code.SHUTTING_DOWN,
      'sshmuxd stopped and its grace period ran out; the command was sent TERM, then KILL', this.phase));
  }

  /** The client disconnected or died: nobody reads any more; free everything. */
  clientGone(): void {
    if (this.channel) {
      this.channel.resume();
      this.channel.stderr.resume();
    }
    this.stop(new MuxError(Code.CANCELLED, 'the client went away', this.phase));
  }

  // ---- the channel -----------------------------------------------------

  private get phase(): Phase {
    return this.channel ? 'running' : 'queued';
  }

  private opened({ channel, connection, waitedMs, newConnection }: { channel: ClientChannel; connection: Connection | undefined; waitedMs: number; newConnection: boolean }): void {
    if (this.ended || this.stopping) {
      discardChannel(channel);
      return;
    }
    this.channel = channel;
    this.connection = connection;
    this.sink.send({ stream: this.stream, started: { connection: connection?.id ?? 'tunnel', waitedMs, newConnection } });

    channel.on('data', (d: Buffer) => this.forward(Fd.STDOUT, d));
    channel.stderr.on('data', (d: Buffer) => this.forward(Fd.STDERR, d));
    channel.on('exit', (code: number | null, signal?: string, dumped?: boolean, desc?: string) => {
      this.exit = code !== null && code !== undefined
        ? { code }
        : { code: -1, signal: (signal ?? '').replace(/^SIG/, ''), coreDumped: !!dumped, message: desc ?? '' };
    });
    // The remote's EOF (stdout and stderr both ended) goes to the client at
    // once: a TCP stream's reader is waiting for it, and the channel may stay
    // open long after (sshd closes it once our side has sent EOF too). The
    // call ends once the channel has closed as well: only then has every byte
    // been forwarded and the server let the slot go. A TCP stream has no
    // stderr to wait for.
    let outputs = this.tunnel ? 1 : 2;
    let open = 2;
    const closedOne = (): void => {
      if (--open === 0) this.channelDone();
    };
    const outputEnded = (): void => {
      if (--outputs > 0) return;
      if (!this.ended && this.sink.alive) this.sink.send({ stream: this.stream, eof: {} });
      closedOne();
    };
    channel.once('end', outputEnded);
    if (!this.tunnel) channel.stderr.once('end', outputEnded);
    channel.once('close', closedOne);

    if (!this.sink.alive) {
      this.clientGone();
      return;
    }
    for (const chunk of this.stdinQueue) this.writeStdin(chunk);
    this.stdinQueue = [];
    if (!this.request.stdin || this.stdinEof) channel.end();
  }

  private writeStdin(chunk: Buffer): void {
    this.channel!.write(chunk, () => {
      // Written into the SSH window: the client may send as much again.
      this.stdinCredit += chunk.length;
      if (!this.ended && this.sink.alive) this.sink.send({ stream: this.stream, window: { bytes: chunk.length } });
    });
  }

  private forward(fd: number, data: Buffer): void {
    if (this.ended || !this.sink.alive) return;
    for (let off = 0; off < data.length; off += DATA_CHUNK) {
      const piece = off === 0 && data.length <= DATA_CHUNK ? data : data.subarray(off, off + DATA_CHUNK);
      this.sink.sendData(this.stream, fd, piece);
    }
    this.sendWindow -= data.length;
    if (this.sendWindow <= 0 && !this.paused) {
      // Both together: ssh2 shares one window between stdout and stderr,
      // and a paused stderr alone would stall stdout too.
      this.paused = true;
      this.channel!.pause();
      this.channel!.stderr.pause();
    }
  }

  private channelDone(): void {
    if (this.stopping) return this.end({ stream: this.stream, error: errorBody(this.stopping) });
    if (this.exit) return this.end({ stream: this.stream, exit: this.exit });
    if (this.tunnel) return this.end({ stream: this.stream, exit: { code: 0 } }); // the stream closed: done
    const lost = this.connection?.state === 'closed';
    this.end({
      stream: this.stream,
      error: errorBody(new MuxError(Code.CONNECTION_LOST, lost
        ? `the connection to ${this.request.host} was lost while the command ran; it may or may not have finished ` +
          '(not retried: a command is not assumed to be idempotent)'
        : `${this.request.host} closed the session without an exit status`, 'running')),
    });
  }

  // ---- ending ------------------------------------------------------------

  private deadline(ms: number): void {
    if (!this.channel) return; // the pool's wait timer reports where the request was
    this.stop(new MuxError(Code.DEADLINE_EXCEEDED,
      `the command on ${this.request.host} ran past its deadline of ${ms / 1000} s; it was sent TERM`, 'running'));
  }

  /** Ends the call early with `reason`, cleaning up the remote side first. */
  private stop(reason: MuxError): void {
    if (this.ended || this.stopping) return;
    this.stopping = reason;
    const channel = this.channel;
    if (!channel) {
      this.pending?.cancel();
      this.cancelTunnel?.();
      this.end({ stream: this.stream, error: errorBody(reason) });
      return;
    }
    if (this.tunnel) {
      abandonChannel(channel); // a TCP stream has no process to signal
      return;
    }
    sendSignal(channel, 'TERM');
    channel.end();
    this.killTimer = setTimeout(() => {
      sendSignal(channel, 'KILL');
      this.killTimer = setTimeout(() => abandonChannel(channel), KILL_GRACE_MS);
    }, TERM_GRACE_MS);
  }

  private fail(err: unknown): void {
    const muxErr = toMuxError(err);
    if (muxErr.code === Code.INTERNAL) this.ctx.log.error({ err }, 'internal error in a call');
    this.end({ stream: this.stream, error: errorBody(muxErr) });
  }

  private end(frame: IFrame): void {
    if (this.ended) return;
    this.ended = true;
    countRequest(this.request.host, frame.error ? codeName(frame.error.code ?? 0) : 'OK');
    if (this.request.kind === v1.SessionRequest.Kind.EXEC) observeExec((Date.now() - this.createdAt) / 1000);
    clearTimeout(this.deadlineTimer);
    clearTimeout(this.killTimer);
    if (this.sink.alive) this.sink.send(frame);
    this.sink.callEnded(this.stream);
  }
}

/**
 * A call's deadlines: the whole call (the client's, else requestTimeoutMs;
 * 0 is none), and the wait for a session within it (at most queueTimeoutMs).
 */
export function callTimeouts(requestedMs: number, limits: Limits): { callTimeout: number; waitMs: number } {
  const callTimeout = requestedMs || limits.requestTimeoutMs;
  return { callTimeout, waitMs: callTimeout > 0 ? Math.min(callTimeout, limits.queueTimeoutMs) : limits.queueTimeoutMs };
}

export function errorBody(err: MuxError): v1.IError {
  return { code: err.code, message: err.message, phase: err.phase ?? '' };
}
