// One connected client: splits its byte stream into frames, checks the
// protocol (hello first, within HELLO_TIMEOUT_MS; increasing stream ids,
// windows respected) and routes frames to its calls. Any violation ends
// this client only, with an Error frame saying why; other clients never
// notice.
import type * as net from 'node:net';
import { MAX_RECEIVE_WINDOW } from '../../proto/receive-window';
import { Code, DATA_CHUNK, encodeFrame, FrameDecoder, FrameError, MAX_FRAME, PROTOCOL_VERSION, v1, type IFrame } from '../../proto';
import { STDIN_WINDOW, type CallContext, type CallKind, type CallSink, type CallRequest, type DoorCall, type OutputFd, type StartedInfo } from '../call/call';
import { FileTransfer } from '../call/transfer';
import { ChannelCall } from '../call/channel-call';
import { FrameWriter } from './frame-writer';
import type { Jobs } from '../jobs/jobs';
import { JobCall, type JobOutcome } from './job-call';
import { LogTally } from '../log';
import { MuxError, toMuxError } from '../errors';

/**
 * A client has this long after connecting to say hello; every sshmux client
 * sends it at once. Without a deadline, programs that open the socket and
 * say nothing hold the daemon's file descriptors for ever.
 */
export const HELLO_TIMEOUT_MS = 5000;
/** How long a closed client may take to read why, and how many may be reading at once (each holds an fd). */
const LINGER_MS = 1000;
export const MAX_LINGERING = 64;
let lingering = 0;
const helloTimeouts = new LogTally(`clients that sent no hello within ${HELLO_TIMEOUT_MS / 1000} s closed`);

export interface ClientContext extends Omit<CallContext, 'outputWindow' | 'stdinCredit'> {
  version: string;
  maxCallsPerClient: number;
  status(): v1.IStatus;
  control(req: v1.IControlRequest): Promise<v1.IControlResult>;
  jobs: Jobs;
  /** Refuse new calls (daemon stopping). */
  readonly accepting: boolean;
}

export class ClientConn {
  alive = true;
  private readonly decoder = new FrameDecoder(MAX_FRAME);
  /** Every frame to this client goes through it, in order, once per turn. */
  private readonly out: FrameWriter;
  readonly calls = new Map<number, DoorCall>();
  private greetedYet = false;
  private goneReported = false;
  private clientWindow = 0;
  private highestStream = 0;
  private helloTimer: NodeJS.Timeout | undefined;
  /** When the client last sent anything (or connected): how long an idle client has been quiet. */
  private heardAt = Date.now();

  constructor(
    private readonly socket: net.Socket,
    private readonly ctx: ClientContext,
    private readonly onGone: (c: ClientConn) => void,
  ) {
    this.helloTimer = setTimeout(() => setImmediate(() => this.helloOverdue()), HELLO_TIMEOUT_MS).unref();
    this.out = new FrameWriter(socket);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', () => {
      // 'close' follows; a client resetting its socket is routine.
    });
    socket.on('close', () => this.gone());
  }

  get activeCalls(): number {
    return this.calls.size;
  }

  /** It has said hello. */
  get greeted(): boolean {
    return this.greetedYet;
  }

  get quietForMs(): number {
    return Date.now() - this.heardAt;
  }

  send(frame: IFrame): void {
    if (this.alive) this.out.frame(encodeFrame(frame));
  }

  /**
   * Output on the hot path: `data` may be lent (ssh2 patch 017, valid only
   * until this returns); the writer copies it into its frame at once.
   */
  sendData(stream: number, fd: number, data: Buffer): void {
    if (!this.alive) return;
    for (let off = 0; off < data.length; off += DATA_CHUNK) {
      this.out.data(stream, fd, off === 0 && data.length <= DATA_CHUNK ? data : data.subarray(off, off + DATA_CHUNK));
    }
  }

  /** Ends every call of this client: the daemon is stopping. */
  shutdown(): void {
    for (const call of [...this.calls.values()]) call.shutdown();
  }

  protocolError(message: string): void {
    if (!this.alive) return;
    this.ctx.log.warn({ err: message }, 'client protocol error; closing that client');
    this.closeWith(Code.PROTOCOL_ERROR, `protocol error: ${message}`);
  }

  /** Closes this client, telling it why in an Error frame on stream 0 (e.g. to make room for another). */
  closeWith(code: Code, message: string): void {
    if (!this.alive) return;
    this.alive = false;
    sayAndClose(this.socket, code, message, (last) => this.out.end(last));
    this.gone();
  }

  /**
   * The daemon is stopping and this client's calls have ended: say so, and
   * let the client read what is still queued for it (the last output and
   * exit frames) before the socket goes, within `ms`.
   */
  close(ms: number): Promise<void> {
    if (this.alive) this.send({ stream: 0, error: { code: Code.SHUTTING_DOWN, message: 'sshmuxd stopped; retry once it is back' } });
    this.alive = false;
    this.gone();
    if (this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.socket.destroy(), ms);
      timer.unref();
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.out.end();
    });
  }

  private receive(chunk: Buffer): void {
    this.heardAt = Date.now();
    let frames: v1.Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      if (err instanceof FrameError) return this.protocolError(err.message);
      throw err;
    }
    for (const frame of frames) {
      if (!this.alive) return;
      this.dispatch(frame);
    }
  }

  private dispatch(frame: v1.Frame): void {
    const stream = frame.stream;
    const kind = frame.body;
    if (!this.greetedYet) {
      if (kind !== 'hello' || stream !== 0) return this.protocolError('the first frame must be hello on stream 0');
      return this.greet(frame.hello!);
    }
    switch (kind) {
      case 'session':
      case 'statusRequest':
      case 'controlRequest':
      case 'jobRequest':
        return this.open(frame);
      case 'data':
      case 'eof':
      case 'window':
      case 'resize':
      case 'signal':
      case 'cancel': {
        const call = this.calls.get(stream);
        if (!call) {
          // A frame that crossed the call's end on the wire is harmless;
          // one for a stream never opened is a broken client.
          if (stream === 0 || stream > this.highestStream) return this.protocolError(`${kind} for stream ${stream}, which was never opened`);
          return;
        }
        switch (kind) {
          case 'data': return call.onData(frame.data!.fd ?? 0, frame.data!.data ?? new Uint8Array());
          case 'eof': return call.onEof();
          case 'window': return call.onWindow(frame.window!.bytes ?? 0);
          case 'resize': {
            const r = frame.resize!;
            return call.onResize({ cols: r.cols ?? 0, rows: r.rows ?? 0, width: r.width ?? 0, height: r.height ?? 0 });
          }
          case 'signal': return call.onSignal(frame.signal!.name ?? '');
          case 'cancel': return call.onCancel(frame.cancel!.reason ?? '');
        }
        return;
      }
      default:
        return this.protocolError(`unexpected ${kind ?? 'empty'} frame from a client`);
    }
  }

  private greet(hello: v1.IHello): void {
    if (hello.version !== PROTOCOL_VERSION) {
      this.send({ stream: 0, error: { code: Code.VERSION_MISMATCH,
        message: `client speaks protocol ${hello.version}, sshmuxd ${this.ctx.version} speaks ${PROTOCOL_VERSION}; use matching versions of sshmux and sshmuxd` } });
      this.alive = false;
      this.out.end();
      return this.gone();
    }
    const window = hello.window ?? 0;
    if (window < 1024 || window > MAX_RECEIVE_WINDOW) return this.protocolError(`hello.window ${window} outside 1 KiB..16 MiB`);
    this.greetedYet = true;
    clearTimeout(this.helloTimer);
    this.clientWindow = window;
    this.send({ stream: 0, welcome: { version: PROTOCOL_VERSION, daemon: this.ctx.version, maxFrame: MAX_FRAME, window: STDIN_WINDOW, pid: process.pid } });
  }

  private open(frame: v1.Frame): void {
    const stream = frame.stream;
    if (stream <= this.highestStream) {
      return this.protocolError(`stream ${stream} reused or out of order (last opened ${this.highestStream})`);
    }
    this.highestStream = stream;
    if (frame.body === 'statusRequest') {
      this.send({ stream, status: this.ctx.status() });
      return;
    }
    if (frame.body === 'controlRequest') {
      this.ctx.control(frame.controlRequest!).then(
        (controlResult) => this.send({ stream, controlResult }),
        (err: unknown) => this.send({ stream, error: errorBody(toMuxError(err)) }));
      return;
    }
    if (!this.ctx.accepting) {
      this.send({ stream, error: errorBody(MuxError.shuttingDown()) });
      return;
    }
    if (this.calls.size >= this.ctx.maxCallsPerClient) {
      this.send({ stream, error: errorBody(new MuxError(Code.BAD_REQUEST,
        `this client already has ${this.calls.size} calls open (maxCallsPerClient); use another connection or wait`)) });
      return;
    }
    if (frame.body === 'jobRequest') {
      const job = new JobCall(new StreamSink(this, this.out, stream, false), frame.jobRequest as v1.JobRequest, { jobs: this.ctx.jobs, outputWindow: this.clientWindow });
      this.calls.set(stream, job);
      job.start();
      return;
    }
    const request = callRequest(frame.session as v1.SessionRequest);
    if (!request) return this.send({ stream, error: errorBody(new MuxError(Code.BAD_REQUEST, `unknown session kind ${frame.session!.kind}`)) });
    const ctx: CallContext = { agent: this.ctx.agent, log: this.ctx.log, metrics: this.ctx.metrics, outputWindow: this.clientWindow, stdinCredit: STDIN_WINDOW };
    const session = frame.session!;
    const sink = new StreamSink(this, this.out, stream, !!session.deferStarted && !session.stdin);
    const call = request.kind === 'upload' || request.kind === 'download' ? new FileTransfer(sink, request, ctx) : new ChannelCall(sink, request, ctx);
    this.calls.set(stream, call);
    call.start();
  }

  /**
   * Tells the client that a stream's output waits for its window, once this
   * turn's writes have gone out, and only if the socket took them all: then
   * the client has what we sent and its grant is what we wait for, and a
   * larger window would help (proto/receive-window.ts). Output still queued
   * here means the client is slow to read, which a larger window would only
   * pile up in this daemon.
   */
  sayOutputWaits(stream: number): void {
    setImmediate(() => {
      if (this.alive && this.socket.writableLength === 0) this.send({ stream, window: { bytes: 0, outputWaits: true } });
    });
  }

  /** Run after a poll phase, so a hello that arrived while the event loop was busy is read before this judges. */
  private helloOverdue(): void {
    if (this.greetedYet || !this.alive) return;
    helloTimeouts.note(this.ctx.log);
    this.closeWith(Code.PROTOCOL_ERROR, `protocol error: no hello within ${HELLO_TIMEOUT_MS / 1000} s of connecting; `
      + 'sshmuxd closes connections that say nothing. Connect with the sshmux SDK, sshmux or sshmuxctl');
  }

  private gone(): void {
    clearTimeout(this.helloTimer);
    this.alive = false;
    for (const call of [...this.calls.values()]) call.clientGone();
    if (!this.goneReported) {
      this.goneReported = true;
      this.onGone(this);
    }
  }
}

/**
 * A call's results as frames on its stream (a job call's too): one object
 * per call, its methods shared (a warm exec's profile showed the closures
 * a call's sink was built from). `deferStarted`: Started waits for the next
 * frame and goes out in the same write, which spares a short command's
 * caller a write and a wake-up of its own (see SessionRequest).
 */
class StreamSink implements CallSink<JobOutcome> {
  readonly copiesData = true; // sendData() copies into the FrameWriter's block
  private heldStarted: StartedInfo | undefined;

  constructor(
    private readonly conn: ClientConn,
    private readonly out: FrameWriter,
    private readonly stream: number,
    private readonly deferStarted: boolean,
  ) {}

  get alive(): boolean {
    return this.conn.alive;
  }

  started(info: StartedInfo): void {
    this.heldStarted = info;
    if (!this.deferStarted) this.sendStarted();
  }

  data(fd: OutputFd, chunk: Buffer): void {
    this.sendStarted();
    this.conn.sendData(this.stream, fd, chunk);
  }

  stdinWritten(bytes: number): void {
    if (this.conn.alive) this.out.window(this.stream, bytes);
  }

  outputWaits(): void {
    this.conn.sayOutputWaits(this.stream);
  }

  eof(): void {
    this.sendStarted();
    if (this.conn.alive) this.out.eof(this.stream);
  }

  end(outcome: JobOutcome): void {
    this.conn.calls.delete(this.stream);
    this.sendStarted();
    if (!this.conn.alive) return;
    // An exit status without a signal, the usual end, is encoded in place.
    const exit = outcome.exit;
    if (exit && !exit.signal && !outcome.error) this.out.exit(this.stream, exit.code ?? 0);
    else this.conn.send({ stream: this.stream, ...terminalFrame(outcome) });
  }

  protocolError(message: string): void {
    this.conn.protocolError(`stream ${this.stream}: ${message}`);
  }

  private sendStarted(): void {
    const started = this.heldStarted;
    if (!started) return;
    this.heldStarted = undefined;
    if (!this.conn.alive) return;
    // A download's size and the host-key warnings are rare: protobufjs encodes them.
    if (started.size || started.warnings?.length) {
      const { stdinCredit, ...info } = started;
      this.conn.send({ stream: this.stream, started: { ...info, window: stdinCredit } });
      return;
    }
    this.out.started(this.stream, { connection: started.connection, waitedMs: started.waitedMs, newConnection: started.newConnection,
      window: started.stdinCredit ?? 0, hostname: started.hostname ?? '' });
  }
}

const KINDS: Record<number, CallKind> = {
  [v1.SessionRequest.Kind.EXEC]: 'exec',
  [v1.SessionRequest.Kind.SHELL]: 'shell',
  [v1.SessionRequest.Kind.SUBSYSTEM]: 'subsystem',
  [v1.SessionRequest.Kind.TCPIP]: 'tcpip',
  [v1.SessionRequest.Kind.UPLOAD]: 'upload',
  [v1.SessionRequest.Kind.DOWNLOAD]: 'download',
};

/** A SessionRequest frame as a call's request; undefined for a kind this daemon does not know. */
function callRequest(req: v1.SessionRequest): CallRequest | undefined {
  const kind = KINDS[req.kind];
  if (!kind) return undefined;
  const pty = req.pty ? {
    term: req.pty.term || 'xterm', cols: req.pty.cols || 80, rows: req.pty.rows || 24,
    width: req.pty.width || 0, height: req.pty.height || 0,
  } : undefined;
  return {
    kind, host: req.host, options: req.options, command: req.command, env: req.env, pty, stdin: req.stdin,
    timeoutMs: req.timeoutMs, forwardHost: req.forwardHost, forwardPort: req.forwardPort, path: req.path, mode: req.mode,
  };
}

/** Exit, Error or a job call's JobResult: the frame that ends a call. */
function terminalFrame(outcome: JobOutcome): Pick<IFrame, 'exit' | 'error' | 'jobResult'> {
  if (outcome.error) return { error: errorBody(outcome.error) };
  if ('jobResult' in outcome) return { jobResult: outcome.jobResult };
  const { code, signal, coreDumped, message } = outcome.exit;
  return signal ? { exit: { code: -1, signal, coreDumped: !!coreDumped, message: message ?? '' } } : { exit: { code: code ?? 0 } };
}

export function errorBody(err: MuxError): v1.IError {
  return { code: err.code, message: err.message, phase: err.phase ?? '' };
}

/**
 * Sends an Error frame on stream 0 and closes: the client reads why before
 * it sees the end. Whatever it still sends is read and dropped meanwhile,
 * so its own writes do not fail before it has read ours; after LINGER_MS,
 * or at once when MAX_LINGERING sockets already wait, the socket goes.
 * `end` sends the frame last and ends the socket (a client's FrameWriter:
 * after the frames it holds).
 */
export function sayAndClose(socket: net.Socket, code: Code, message: string, end = (last: Buffer): void => void socket.end(last)): void {
  if (socket.destroyed) return;
  socket.resume();
  end(encodeFrame({ stream: 0, error: { code, message } }));
  if (lingering >= MAX_LINGERING) {
    socket.once('finish', () => socket.destroy());
    return;
  }
  lingering++;
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => {
    clearTimeout(timer);
    lingering--;
  });
}
