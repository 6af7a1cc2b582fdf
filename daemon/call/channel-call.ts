// A call on one SSH channel: a command, a shell or a subsystem in a pooled
// session channel, or a TCP stream (ssh -W, a direct-tcpip channel) through
// the host's pooled connection.
// It bridges the SSH channel and the door with flow control both ways, so a
// slow reader slows the remote writer and memory stays bounded. Cancel
// (explicit, deadline, the door's peer going away) ends the remote process
// with TERM, then KILL, then close: closing alone leaves it running.
import type { ClientChannel } from '../ssh/ssh2';
import type { Duplex } from 'node:stream';
import { Code } from '../../proto';
import { MuxError } from '../errors';
import type { PooledConnection, SessionSpec } from '../ssh/pooled-connection';
import type { HostPool, PendingSession } from '../pool/host-pool';
import { abandonChannel, SIGNALS, terminate } from '../ssh/channel';
import { sizeReceiveWindow } from '../ssh/link-window';
import { Call, STDERR, STDOUT, type CallOutcome, type ExitStatus, type OutputFd, type TerminalSize } from './call';
import { ParkedOutput } from './parked-output';

export class ChannelCall extends Call {
  private pending: PendingSession | undefined;
  private channel: ClientChannel | undefined;
  private connection: PooledConnection | undefined;
  /** The HostName the pool connects to, for Started. */
  private hostname = '';
  private paused = false;
  /** Stdin that arrived before the channel opened. */
  private stdinQueue: Buffer[] = [];
  private exit: ExitStatus | undefined;
  /** Output kept while the client's window is closed, when the sink copies what it is given. */
  private parked: ParkedOutput | undefined;
  /** A TCP stream (ssh -W), not a session: no exit status, no signals. */
  private tunnel = false;
  private cancelTunnel: (() => void) | undefined;
  protected readonly what = this.request.kind === 'tcpip' ? 'the TCP stream' : 'the command';
  protected readonly endedHow = this.request.kind === 'tcpip' ? 'was closed' : 'was sent TERM, then KILL';

  protected validate(): string | undefined {
    const { kind, command, forwardHost, forwardPort } = this.request;
    if (kind === 'tcpip') {
      if (!forwardHost || !forwardPort || forwardPort > 65535) return 'a TCP stream needs forward_host and forward_port (1-65535)';
    } else if (kind !== 'shell' && !command) {
      return kind === 'exec' ? 'exec needs a command' : 'subsystem needs a name';
    }
    return undefined;
  }

  protected begin(pool: HostPool): void {
    const { kind, command, env, pty } = this.request;
    this.hostname = pool.host.hostname;
    if (kind === 'tcpip') return this.startTunnel(pool, this.request.forwardHost!, this.request.forwardPort!);
    const { callMs, waitMs } = this.timeouts(pool);
    this.armDeadline(callMs);
    const spec: SessionSpec = { kind: kind as SessionSpec['kind'], command: command ?? '', env: env && Object.keys(env).length ? env : undefined, pty,
      closeStdin: !this.request.stdin };
    this.pending = pool.request(spec, {
      onOpen: (session) => this.opened(session.channel!, session.connection, session.waitedMs, session.newConnection),
      onError: (err) => this.fail(err),
    }, waitMs);
  }

  /**
   * ssh -W: a TCP stream through the host's pooled connection. It takes no
   * session slot, and lives as long as the door wants it unless the request
   * gave a deadline.
   */
  private startTunnel(pool: HostPool, host: string, port: number): void {
    const timeoutMs = this.request.timeoutMs ?? 0;
    const waitMs = pool.limits.queueTimeoutMs;
    const t = pool.tunnel(host, port);
    this.cancelTunnel = t.cancel;
    const waitTimer = setTimeout(() => {
      t.cancel();
      this.fail(new MuxError(Code.DEADLINE_EXCEEDED, `no connection to ${pool.name} to carry a stream to ${host}:${port} within ${waitMs / 1000} s`, 'handshaking'));
    }, timeoutMs ? Math.min(timeoutMs, waitMs) : waitMs);
    t.stream.then((stream: Duplex) => {
      clearTimeout(waitTimer);
      if (this.ended || this.stopping) {
        stream.destroy();
        return;
      }
      this.armDeadline(timeoutMs);
      this.tunnel = true;
      this.opened(stream as ClientChannel, undefined, 0, false);
    }, (err: MuxError) => {
      clearTimeout(waitTimer);
      this.fail(err);
    });
  }

  protected get running(): boolean {
    return this.channel !== undefined;
  }

  // ---- from the door -------------------------------------------------------

  protected writeStdin(chunk: Buffer): void {
    if (!this.channel) {
      this.stdinQueue.push(chunk);
      return;
    }
    this.channel.write(chunk, () => {
      // Written into the SSH window: the door's peer may send as much again.
      this.stdinCredit += chunk.length;
      if (!this.ended && this.sink.alive) this.sink.stdinWritten(chunk.length);
    });
  }

  protected stdinEnded(): void {
    // end() after the queued writes: the remote gets EOF after the last byte.
    this.channel?.end();
  }

  protected outputRoom(): void {
    if (this.paused && this.outputWindow > 0 && this.channel) {
      this.paused = false;
      this.channel.resume();
      this.channel.stderr.resume();
    }
  }

  override onResize(size: TerminalSize): void {
    if (!this.tunnel) this.channel?.setWindow(size.rows || 24, size.cols || 80, size.height || 0, size.width || 0);
  }

  override onSignal(name: string): void {
    const sig = name.toUpperCase().replace(/^SIG/, '');
    if (this.channel && !this.tunnel && SIGNALS.has(sig)) this.channel.signal(sig);
  }

  override clientGone(): void {
    // Nobody reads any more: let the channel drain so it can close.
    if (this.channel) {
      this.channel.resume();
      this.channel.stderr.resume();
    }
    super.clientGone();
  }

  // ---- the channel ---------------------------------------------------------

  private opened(channel: ClientChannel, connection: PooledConnection | undefined, waitedMs: number, newConnection: boolean): void {
    if (this.ended || this.stopping) {
      if (this.tunnel) abandonChannel(channel);
      else terminate(channel, true);
      return;
    }
    this.channel = channel;
    this.connection = connection;
    this.sink.started({ connection: connection?.id ?? 'tunnel', waitedMs, newConnection, warnings: connection?.warningsFor(newConnection), hostname: this.hostname });

    // The channel may outlive this call in V8's old space, and keep alive
    // whatever it still refers to: an object there, live or not, holds what
    // it refers to through every young collection until the next full one.
    // So once the channel is done (closedOne) it is left with nothing of
    // this call: the listeners below are removed, and keepData with them.
    // keepData is declared before it is assigned: a function literal
    // assigned straight to a property is itself allocated in old space (V8's
    // parser marks it "pretenure"). docs/hot-path.md, "What the young
    // collector kept".
    // forward() hands output to the sink at once or drops it: a sink that
    // copies it before returning can be lent it (see CallSink.copiesData),
    // and what waits for the client's window is kept in reused blocks.
    if (this.sink.copiesData) {
      const keepData = (data: Buffer, isStderr: boolean): Buffer => this.keep(channel, data, isStderr ? STDERR : STDOUT);
      channel.lendData = true;
      channel.keepData = keepData;
    }
    const onStdout = (d: Buffer): void => this.forward(STDOUT, d);
    const onStderr = (d: Buffer): void => this.forward(STDERR, d);
    const onExit = (code: number | null, signal?: string, dumped?: boolean, desc?: string): void => {
      this.exit = code !== null && code !== undefined
        ? { code, signal: null }
        : { code: null, signal: (signal ?? '').replace(/^SIG/, ''), coreDumped: !!dumped, message: desc ?? '' };
    };
    channel.on('data', onStdout);
    channel.stderr.on('data', onStderr);
    channel.on('exit', onExit);
    // The remote's EOF (stdout and stderr both ended) goes to the door at
    // once: a TCP stream's reader is waiting for it, and the channel may stay
    // open long after (sshd closes it once our side has sent EOF too). The
    // call ends once the channel has closed as well: only then has every byte
    // been forwarded and the server let the slot go. A TCP stream has no
    // stderr to wait for.
    let outputs = this.tunnel ? 1 : 2;
    let open = 2;
    const closedOne = (): void => {
      if (--open > 0) return;
      // Done: nothing more comes that this call listens for.
      channel.keepData = undefined;
      channel.off('data', onStdout);
      channel.stderr.off('data', onStderr);
      channel.off('exit', onExit);
      channel.off('end', outputEnded);
      if (!this.tunnel) channel.stderr.off('end', outputEnded);
      channel.off('close', onClose);
      this.channelDone();
    };
    const outputEnded = (): void => {
      if (--outputs > 0) return;
      if (!this.ended && this.sink.alive) this.sink.eof();
      closedOne();
    };
    const onClose = (): void => {
      // Stdout emits nothing after the channel's close (its end comes first, or it was destroyed).
      this.parked?.releaseAll(STDOUT);
      closedOne();
    };
    // A stream emits 'end' and 'close' once: on() spares once()'s wrapper, on every exec.
    channel.on('end', outputEnded);
    if (!this.tunnel) channel.stderr.on('end', outputEnded);
    channel.on('close', onClose);
    sizeReceiveWindow(channel);

    if (!this.sink.alive) {
      this.clientGone();
      return;
    }
    for (const chunk of this.stdinQueue) this.writeStdin(chunk);
    this.stdinQueue = [];
    if (!this.request.stdin || this.stdinEof) channel.end();
  }

  /** A copy of lent output to keep while the client's window is closed (ssh2 asks: the channel is paused). */
  private keep(channel: ClientChannel, data: Buffer, fd: OutputFd): Buffer {
    if (!this.parked) {
      this.parked = new ParkedOutput();
      // The channel's close may come while stderr still holds output; stderr closes after its own end.
      channel.stderr.once('close', () => this.parked!.releaseAll(STDERR));
    }
    return this.parked.keep(data, fd);
  }

  private forward(fd: OutputFd, data: Buffer): void {
    if (this.ended || !this.sink.alive) return this.parked?.taken(fd, data);
    this.sink.data(fd, data);
    this.parked?.taken(fd, data);
    this.outputWindow -= data.length;
    if (this.outputWindow <= 0 && !this.paused) {
      // Both together: ssh2 shares one window between stdout and stderr,
      // and a paused stderr alone would stall stdout too.
      this.paused = true;
      this.sink.outputWaits?.();
      this.channel!.pause();
      this.channel!.stderr.pause();
    }
  }

  private channelDone(): void {
    if (this.stopping) return this.end({ error: this.stopping });
    if (this.exit) return this.end({ exit: this.exit });
    if (this.tunnel) return this.end({ exit: { code: 0, signal: null } }); // the stream closed: done
    const lost = this.connection?.state === 'closed';
    const how = this.connection?.lostReason ?? `the connection to ${this.request.host} was lost`;
    this.end({
      error: new MuxError(Code.CONNECTION_LOST, lost
        ? `${how} while the command ran; it may or may not have finished (not retried: a command is not assumed to be idempotent)`
        : `${this.request.host} closed the session without an exit status`, 'running'),
    });
  }

  // ---- ending --------------------------------------------------------------

  protected override end(outcome: CallOutcome): void {
    super.end(outcome);
    // Ended: forward() drops whatever the channel still emits.
    this.parked?.releaseAll();
  }

  protected stop(reason: MuxError): void {
    if (this.ended || this.stopping) return;
    this.stopping = reason;
    const channel = this.channel;
    if (!channel) {
      this.pending?.cancel();
      this.cancelTunnel?.();
      this.end({ error: reason });
      return;
    }
    // The call ends when the channel closes (channelDone), after what the remote still sent.
    if (this.tunnel) abandonChannel(channel); // a TCP stream has no process to signal
    else terminate(channel, false);
  }
}
