// The client SDK: one socket to sshmuxd per SshMux, many concurrent calls
// over it. After a daemon restart the next call reconnects by itself.
import * as net from 'node:net';
import { Readable, type Duplex, type Writable } from 'node:stream';
import { v1, type IFrame } from '../proto';
import { defaultSocketPath } from '../proto/socket-path';
import { SshMuxError } from './errors';
import { RemoteProcess, type ExitResult } from './remote-process';
import { TcpStream } from './tcp-stream';
import { runDownload, runUpload, Transfer } from './transfer';
import * as fs from 'node:fs';
import { Transport } from './transport';
import { Jobs } from './jobs';

const SDK_VERSION: string = require('../../package.json').version;
/** How long after its own deadline a call may take to report before we give up on the daemon. */
const DEADLINE_SLACK_MS = 5000;

export interface ConnectOptions {
  /** Default: $SSHMUX_SOCKET, else $XDG_RUNTIME_DIR/sshmux/sshmuxd.sock, else /run/sshmux/sshmuxd.sock. */
  socket?: string;
  /** Shown in the daemon's logs. */
  clientName?: string;
}

export interface CallOptions {
  /** Environment for the remote command (sshd's AcceptEnv decides what passes). */
  env?: Record<string, string>;
  /** Whole-call deadline in ms: waiting, connecting and running. Default: the daemon's. */
  timeoutMs?: number;
  /** Aborting cancels the call: the remote process gets TERM, then KILL. */
  signal?: AbortSignal;
  /** ssh -o style options for this call (Port, User, ConnectTimeout...; an allow-list applies). */
  options?: Record<string, string>;
  /** Allocate a pty. */
  pty?: { term?: string; cols?: number; rows?: number };
}

export interface SpawnOptions extends CallOptions {
  /** Whether the call has a stdin stream (default true); false gives the remote an empty stdin. */
  stdin?: boolean;
}

export interface ExecOptions extends CallOptions {
  stdin?: string | Buffer | Readable;
  /** Most bytes of stdout plus stderr to collect (default 16 MiB); beyond: OUTPUT_LIMIT and the call is cancelled. */
  maxBuffer?: number;
}

export interface ExecResult extends ExitResult {
  stdout: Buffer;
  stderr: Buffer;
  /** What ssh would have printed about the connection: a changed host key accepted under StrictHostKeyChecking no, a key newly added. */
  warnings: string[];
}

export type Status = v1.IStatus;

export type ControlAction = 'check' | 'drain' | 'reload' | 'stop';
const CONTROL_ACTIONS: Record<ControlAction, v1.ControlRequest.Action> = {
  check: v1.ControlRequest.Action.CHECK,
  drain: v1.ControlRequest.Action.DRAIN,
  reload: v1.ControlRequest.Action.RELOAD,
  stop: v1.ControlRequest.Action.STOP,
};

export interface ControlResult {
  message: string;
  /** check: the handshake's duration. */
  ms: number;
  /** drain: connections drained; reload: pools replaced. */
  count: number;
}

export interface ForwardLocalOptions extends Omit<CallOptions, 'pty' | 'env'> {
  /** Local port to listen on; 0 picks a free one (see LocalForward.port). */
  localPort: number;
  /** Local address to listen on (default 127.0.0.1, as ssh without GatewayPorts). */
  localHost?: string;
  /** Where `host` connects to for each accepted connection. */
  remoteHost: string;
  remotePort: number;
}

export interface TransferOptions extends Omit<CallOptions, 'pty' | 'env'> {
  /** Upload: permission bits for the remote file (default: the local file's, as sftp's put; 0644 for a stream). */
  mode?: number;
}

/** A listening local forward (ssh -L). */
export interface LocalForward {
  readonly port: number;
  readonly address: string;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Stops listening and ends the forwarded connections. */
  close(): Promise<void>;
  /** Called with each forwarded connection's failure (REFUSED, JUMP_FAILED...); the local socket is closed. */
  onError?: (err: SshMuxError) => void;
}

export class SshMux {
  private transportPromise: Promise<Transport> | undefined;
  private closed = false;
  /** Durable remote jobs: submit, get, list, wait, logs, cancel, remove (README: Long-running jobs). */
  readonly jobs: Jobs;

  private constructor(
    readonly socketPath: string,
    private readonly clientName: string,
  ) {
    this.jobs = new Jobs({
      request: (jobRequest, opts) => this.oneShot({ jobRequest }, 'jobResult', opts) as Promise<v1.IJobResult>,
      stream: (jobRequest) => this.launch(new RemoteProcess(), { jobRequest }, { stdin: false }),
    });
  }

  /** Connects to the daemon; rejects with DAEMON_UNAVAILABLE when none answers. */
  static async connect(opts: ConnectOptions = {}): Promise<SshMux> {
    const mux = new SshMux(opts.socket ?? defaultSocketPath(), opts.clientName ?? `sdk/${SDK_VERSION}`);
    await mux.transport();
    return mux;
  }

  /** Runs `command` on `host` and collects its output. A non-zero exit is a result, not an error. */
  async exec(host: string, command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const { stdin, maxBuffer = 16 * 1024 * 1024, ...rest } = opts;
    // Without stdin nothing here waits for Started, so the daemon sends it with the output or the exit.
    const proc = this.start({ host, kind: v1.SessionRequest.Kind.EXEC, command, deferStarted: stdin === undefined },
      { ...rest, stdin: stdin !== undefined });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let total = 0;
    let overflow: SshMuxError | undefined;
    const collect = (into: Buffer[]) => (chunk: Buffer): void => {
      total += chunk.length;
      if (total > maxBuffer) {
        if (!overflow) {
          overflow = new SshMuxError('OUTPUT_LIMIT', `the output of "${command.slice(0, 60)}" on ${host} exceeded maxBuffer (${maxBuffer} bytes); the call was cancelled. Use spawn() to stream large output`);
          proc.cancel('maxBuffer exceeded');
        }
        return;
      }
      into.push(chunk);
    };
    proc.stdout.on('data', collect(out));
    proc.stderr.on('data', collect(err));
    if (typeof stdin === 'string' || Buffer.isBuffer(stdin)) proc.stdin.end(stdin);
    else if (stdin) stdin.pipe(proc.stdin);
    try {
      const result = await proc.closed;
      if (overflow) throw overflow;
      return { ...result, stdout: Buffer.concat(out), stderr: Buffer.concat(err), warnings: proc.started?.warnings ?? [] };
    } catch (e) {
      throw overflow ?? e;
    }
  }

  /** Starts `command` on `host` and streams it, like child_process.spawn. */
  spawn(host: string, command: string, opts: SpawnOptions = {}): RemoteProcess {
    return this.start({ host, kind: v1.SessionRequest.Kind.EXEC, command }, opts);
  }

  /** Starts a subsystem (e.g. "sftp") on `host`. */
  subsystem(host: string, name: string, opts: SpawnOptions = {}): RemoteProcess {
    return this.start({ host, kind: v1.SessionRequest.Kind.SUBSYSTEM, command: name }, opts);
  }

  /**
   * A TCP stream to remoteHost:remotePort, opened by `host` (ssh -W): for
   * reaching services behind a bastion. It rides the host's pooled
   * connection and takes none of its sessions. Errors (JUMP_FAILED,
   * REFUSED...) destroy the stream with an SshMuxError. It ends once the
   * far side has closed and every byte has been read, and closes then.
   */
  openTcp(host: string, remoteHost: string, remotePort: number, opts: CallOptions = {}): Duplex {
    const proc = this.start({ host, kind: v1.SessionRequest.Kind.TCPIP, command: '', forwardHost: remoteHost, forwardPort: remotePort },
      { ...opts, stdin: true });
    return new TcpStream(proc);
  }

  /**
   * ssh -L: listens on localHost:localPort and carries each accepted
   * connection to remoteHost:remotePort through `host`'s pooled connection
   * (one direct-tcpip channel each, no session slot, no new handshake).
   * The listener is in this process, not in the daemon.
   */
  async forwardLocal(host: string, opts: ForwardLocalOptions): Promise<LocalForward> {
    const { localPort, localHost = '127.0.0.1', remoteHost, remotePort, ...callOpts } = opts;
    const sockets = new Set<net.Socket>();
    let accepted = 0;
    // allowHalfOpen: a client that sends its request and shuts down its side still gets the whole answer, as with ssh -L.
    const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (local) => {
      accepted++;
      sockets.add(local);
      const remote = this.openTcp(host, remoteHost, remotePort, callOpts);
      local.pipe(remote).pipe(local);
      const fail = (err: Error): void => {
        if (err instanceof SshMuxError) forward.onError?.(err);
        local.destroy();
        remote.destroy();
      };
      remote.once('error', fail);
      local.once('error', () => remote.destroy());
      local.once('close', () => {
        sockets.delete(local);
        // Both directions done: the call ends by itself once the channel closes. Otherwise nobody is left to talk to.
        if (!(remote.readableEnded && remote.writableFinished)) remote.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new SshMuxError('BAD_REQUEST',
        `cannot listen on ${localHost}:${localPort} for a local forward: ${err.message}; pick another local port`)));
      server.listen(localPort, localHost, resolve);
    });
    const addr = server.address() as net.AddressInfo;
    const forward: LocalForward = {
      port: addr.port,
      address: addr.address,
      get accepted() { return accepted; },
      close: () => new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
    };
    return forward;
  }

  /**
   * Copies a local file (or a stream, or a buffer) to remotePath on `host`
   * over a pooled SFTP session, with several writes in flight. Await the
   * result; listen for 'progress'. Fails with REMOTE_FILE when the server
   * refuses (no such directory, permission denied, disk full).
   */
  upload(host: string, source: string | Readable | Buffer, remotePath: string, opts: TransferOptions = {}): Transfer {
    let stream: Readable;
    let total: number | undefined;
    let mode = opts.mode;
    if (typeof source === 'string') {
      let st: fs.Stats;
      try {
        st = fs.statSync(source);
      } catch (err) {
        return failedTransfer(new SshMuxError('BAD_REQUEST', `cannot read ${source}: ${(err as Error).message}`));
      }
      total = st.size;
      mode ??= st.mode & 0o777;
      stream = fs.createReadStream(source, { highWaterMark: 256 * 1024 });
    } else if (Buffer.isBuffer(source)) {
      total = source.length;
      stream = Readable.from([source]);
    } else {
      stream = source;
    }
    const proc = this.start({ host, kind: v1.SessionRequest.Kind.UPLOAD, command: '', path: remotePath, mode: mode ?? 0o644 },
      { ...opts, stdin: true });
    return new Transfer(proc, (t) => runUpload(t, proc, stream, total));
  }

  /**
   * Copies remotePath on `host` to a local file (written beside it and
   * renamed into place once complete) or into a Writable, over a pooled
   * SFTP session with reads in flight ahead of the writer.
   */
  download(host: string, remotePath: string, dest: string | Writable, opts: TransferOptions = {}): Transfer {
    const proc = this.start({ host, kind: v1.SessionRequest.Kind.DOWNLOAD, command: '', path: remotePath }, { ...opts, stdin: false });
    return new Transfer(proc, (t) => runDownload(t, proc, dest));
  }

  /** Starts a login shell on `host` (give `pty` for an interactive one). */
  shell(host: string, opts: SpawnOptions = {}): RemoteProcess {
    return this.start({ host, kind: v1.SessionRequest.Kind.SHELL, command: '' }, opts);
  }

  /** The daemon's view: hosts, connections, sessions, queues. */
  async status(): Promise<Status> {
    return (await this.oneShot({ statusRequest: {} }, 'status')) as Status;
  }

  /**
   * Steers the daemon, as sshmuxctl does: 'check' one fresh handshake to
   * `host` (rejects with its classified error), 'drain' `host`'s
   * connections, 'reload' the configs, 'stop' the daemon.
   */
  async control(action: ControlAction, host = '', options?: Record<string, string>): Promise<ControlResult> {
    const r = (await this.oneShot({ controlRequest: { action: CONTROL_ACTIONS[action], host, options } }, 'controlResult')) as v1.IControlResult;
    return { message: r.message ?? '', ms: r.ms ?? 0, count: r.count ?? 0 };
  }

  /**
   * A call answered by a single frame. With timeoutMs, a daemon that stops
   * answering still fails the call (the daemon enforces the deadline
   * itself); aborting `signal` cancels it.
   */
  private async oneShot(request: Omit<IFrame, 'stream'>, answer: 'status' | 'controlResult' | 'jobResult',
    opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<unknown> {
    if (opts.signal?.aborted) throw abortedEarly();
    const transport = await this.transport();
    // Keep the process alive until the answer arrives (the socket is unref'd when idle).
    transport.ref();
    return new Promise((resolve, reject) => {
      let backstop: NodeJS.Timeout | undefined;
      const done = (): void => {
        transport.release(stream);
        if (transport.activeStreams === 0) transport.unref();
        clearTimeout(backstop);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        transport.send({ stream, cancel: { reason: 'aborted' } });
        done();
        reject(new SshMuxError('CANCELLED', 'aborted by the caller'));
      };
      const stream = transport.open({
        onFrame: (frame) => {
          done();
          if (frame[answer]) resolve(frame[answer]);
          else reject(frame.error ? SshMuxError.fromWire(frame.error) : new SshMuxError('PROTOCOL_ERROR', `unexpected ${frame.body} frame`));
        },
        onLost: (err) => {
          done();
          reject(err);
        },
      }, request);
      if (opts.timeoutMs) {
        backstop = setTimeout(() => {
          transport.send({ stream, cancel: { reason: 'deadline' } });
          done();
          reject(noAnswer(opts.timeoutMs!));
        }, opts.timeoutMs + DEADLINE_SLACK_MS);
      }
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  close(): void {
    this.closed = true;
    this.transportPromise?.then((t) => t.close(), () => {});
    this.transportPromise = undefined;
  }

  private start(target: { host: string; kind: v1.SessionRequest.Kind; command: string; forwardHost?: string; forwardPort?: number; path?: string; mode?: number; deferStarted?: boolean },
    opts: SpawnOptions): RemoteProcess {
    const request: v1.ISessionRequest = {
      ...target,
      env: opts.env,
      options: opts.options,
      stdin: opts.stdin !== false,
      timeoutMs: opts.timeoutMs ?? 0,
      pty: opts.pty ? { term: opts.pty.term ?? 'xterm-256color', cols: opts.pty.cols ?? 80, rows: opts.pty.rows ?? 24 } : undefined,
    };
    return this.launch(new RemoteProcess(), { session: request }, opts);
  }

  /** Opens a streaming call (a session, or a job's log) for `proc`. */
  private launch(proc: RemoteProcess, request: Omit<IFrame, 'stream'>, opts: SpawnOptions): RemoteProcess {
    const { signal, timeoutMs } = opts;
    if (this.closed) {
      proc.onLost(new SshMuxError('DAEMON_UNAVAILABLE', 'this SshMux was closed'));
      return proc;
    }
    if (signal?.aborted) {
      proc.onLost(abortedEarly());
      return proc;
    }
    if (opts.stdin === false) proc.noStdin();
    const onAbort = (): void => proc.cancel('aborted');
    signal?.addEventListener('abort', onAbort, { once: true });
    // The daemon enforces the deadline; this only covers a daemon that stops answering.
    const backstop = timeoutMs ? setTimeout(() => {
      proc.cancel('deadline');
      proc.onLost(noAnswer(timeoutMs));
    }, timeoutMs + DEADLINE_SLACK_MS) : undefined;
    proc.once('end', () => {
      clearTimeout(backstop);
      signal?.removeEventListener('abort', onAbort);
    });
    this.transport().then((transport) => {
      if (transport.closed) throw new SshMuxError('DAEMON_UNAVAILABLE', 'the connection to sshmuxd closed');
      transport.ref();
      const stream = transport.open(proc, request);
      proc.attach(transport, stream, transport.welcome.window);
      proc.once('end', () => {
        if (transport.activeStreams === 0) transport.unref();
      });
    }).catch((err: unknown) => {
      proc.onLost(err instanceof SshMuxError ? err : new SshMuxError('INTERNAL', (err as Error).message));
    });
    return proc;
  }

  private transport(): Promise<Transport> {
    if (!this.transportPromise) {
      const p = Transport.connect(this.socketPath, this.clientName).then((t) => {
        t.closeHandler = () => {
          if (this.transportPromise === p) this.transportPromise = undefined;
        };
        t.unref();
        return t;
      }, (err) => {
        if (this.transportPromise === p) this.transportPromise = undefined;
        throw err;
      });
      this.transportPromise = p;
    }
    return this.transportPromise;
  }
}

function abortedEarly(): SshMuxError {
  return new SshMuxError('CANCELLED', 'aborted before it started');
}

/** The daemon enforces deadlines itself; this is for one that stopped answering. */
function noAnswer(timeoutMs: number): SshMuxError {
  return new SshMuxError('DEADLINE_EXCEEDED', `no answer from sshmuxd within ${timeoutMs} ms plus ${DEADLINE_SLACK_MS} ms`);
}

function failedTransfer(err: SshMuxError): Transfer {
  const proc = new RemoteProcess();
  proc.onLost(err);
  return new Transfer(proc, () => proc.exited.then(() => undefined));
}
