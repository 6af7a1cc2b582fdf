// One call to sshmuxd on a socket of its own, through wire.ts instead of
// the SDK: the sshmux command's path. Loading the SDK and protobufjs costs
// about 25 ms of every invocation, which is most of what it adds to Node's
// own start-up. Hello and the request go out in one write; the daemon's
// answer is handed to the call's handler frame by frame.
import * as net from 'node:net';
import { dataFrameHeader, FrameError, FrameSplitter, PROTOCOL_VERSION } from '../proto/framing';
import { closedDuringHelloMessage, noAnswerMessage, unavailableMessage } from '../proto/socket-path';
import { decodeFrame, encodeFrame, type IFrame } from '../proto/wire';
import { SshMuxError } from '../client-sdk/errors';

/** stdout+stderr bytes the daemon may send before we grant more (the SDK's figure). */
import { RECEIVE_WINDOW } from '../proto/receive-window';
const HELLO_TIMEOUT_MS = 10_000;
const BACKLOG_RETRY_MS = 20;
/** The only stream this connection opens. */
const STREAM = 1;

export type Frame = IFrame & { body?: string };

export interface CallHandler {
  /** The daemon answered hello; `stdinWindow` is the stdin it accepts before granting more. */
  welcome(info: { pid: number; stdinWindow: number }): void;
  /** A frame of this call (started, data, window, exit, error, controlResult...). */
  frame(frame: Frame): void;
  /** The connection failed or closed before the call ended. `unreached`: no daemon listens at the socket (missing, refused). */
  lost(err: SshMuxError, unreached: boolean): void;
}

export class DaemonCall {
  /** Undefined while waiting to dial again after EAGAIN. */
  private socket: net.Socket | undefined;
  private readonly splitter = new FrameSplitter();
  private greeted = false;
  private connected = false;
  private ended = false;
  /** Hello and the request, sent together (again, if the first socket met a full backlog). */
  private readonly opening: Buffer;
  private readonly deadline = Date.now() + HELLO_TIMEOUT_MS;
  private readonly helloTimer: NodeJS.Timeout;

  constructor(readonly socketPath: string, request: Omit<IFrame, 'stream'>, private readonly handler: CallHandler) {
    this.opening = Buffer.concat([
      encodeFrame({ stream: 0, hello: { version: PROTOCOL_VERSION, client: 'sshmux', window: RECEIVE_WINDOW } }),
      encodeFrame({ ...request, stream: STREAM }),
    ]);
    this.helloTimer = setTimeout(() => this.fail(new SshMuxError('DAEMON_UNAVAILABLE',
      noAnswerMessage(socketPath, HELLO_TIMEOUT_MS / 1000))), HELLO_TIMEOUT_MS);
    this.dial();
  }

  private dial(): void {
    const socket = net.connect(this.socketPath);
    this.socket = socket;
    socket.once('connect', () => {
      this.connected = true;
    });
    socket.write(this.opening);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (this.connected) return; // 'close' follows
      // EAGAIN: the daemon's backlog of connections not yet accepted is full
      // (a burst of clients); it drains in moments, as the SDK also assumes.
      if (err.code === 'EAGAIN' && Date.now() < this.deadline) {
        this.socket = undefined;
        setTimeout(() => this.ended || this.dial(), BACKLOG_RETRY_MS);
        return;
      }
      // Nothing listening there: the one case where starting a daemon may help.
      const unreached = err.code === 'ENOENT' || err.code === 'ECONNREFUSED';
      this.fail(new SshMuxError('DAEMON_UNAVAILABLE', unavailableMessage(this.socketPath, err, HELLO_TIMEOUT_MS)), unreached);
    });
    socket.on('close', () => {
      if (socket !== this.socket) return; // abandoned after EAGAIN
      this.fail(new SshMuxError('DAEMON_UNAVAILABLE', this.greeted
        ? `the connection to sshmuxd at ${this.socketPath} closed; the call is lost (its remote command is cancelled)`
        : closedDuringHelloMessage(this.socketPath)));
    });
  }

  /** A frame of this call: stdin, eof, window, signal, resize, cancel. */
  send(frame: Omit<IFrame, 'stream'>): void {
    if (!this.ended) this.socket?.write(encodeFrame({ ...frame, stream: STREAM }));
  }

  /** Stdin bytes, framed without copying them. */
  sendStdin(chunk: Buffer): void {
    const socket = this.socket;
    if (this.ended || !socket) return;
    socket.cork();
    socket.write(dataFrameHeader(STREAM, 0, chunk.length));
    socket.write(chunk);
    socket.uncork();
  }

  /** The call is over: close the connection (the daemon frees anything left). */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.helloTimer);
    this.socket?.destroy();
  }

  private receive(chunk: Buffer): void {
    let bodies: Buffer[];
    try {
      bodies = this.splitter.push(chunk);
    } catch (err) {
      return this.fail(badFrame(err as Error));
    }
    for (const body of bodies) {
      if (this.ended) return;
      let frame: Frame;
      try {
        frame = decodeFrame(body);
      } catch (err) {
        return this.fail(badFrame(err as Error));
      }
      this.route(frame);
    }
  }

  private route(frame: Frame): void {
    if ((frame.stream ?? 0) === 0) {
      if (frame.body === 'welcome' && !this.greeted) {
        this.greeted = true;
        clearTimeout(this.helloTimer);
        return this.handler.welcome({ pid: frame.welcome!.pid ?? 0, stdinWindow: frame.welcome!.window ?? 0 });
      }
      // An error on stream 0 (version mismatch, protocol error, daemon stopping) ends every call.
      return this.fail(frame.error ? SshMuxError.fromWire(frame.error) : new SshMuxError('PROTOCOL_ERROR', `sshmuxd sent ${frame.body} on stream 0`));
    }
    if (frame.stream === STREAM) this.handler.frame(frame);
  }

  private fail(err: SshMuxError, unreached = false): void {
    if (this.ended) return;
    this.end();
    this.handler.lost(err, unreached);
  }
}

/**
 * A call answered by one frame (a control result, a status): resolves with
 * it and the daemon's pid, rejects with the daemon's error. `autostart`
 * (optional) starts a daemon when none listens and returns its socket.
 */
export function askDaemon(socketPath: string, request: Omit<IFrame, 'stream'>,
  autostart?: () => Promise<string | undefined>): Promise<{ answer: Frame; pid: number }> {
  return new Promise((resolve, reject) => {
    let pid = 0;
    const ask = (path: string): void => {
      const call = new DaemonCall(path, request, {
        welcome: (info) => {
          pid = info.pid;
        },
        frame: (frame) => {
          call.end();
          if (frame.error) reject(SshMuxError.fromWire(frame.error));
          else resolve({ answer: frame, pid });
        },
        lost: (err, unreached) => {
          if (!unreached || !autostart) return reject(err);
          const start = autostart;
          autostart = undefined;
          start().then((socket) => (socket ? ask(socket) : reject(err)), reject);
        },
      });
    };
    ask(socketPath);
  });
}

function badFrame(err: Error): SshMuxError {
  return new SshMuxError('PROTOCOL_ERROR', `sshmuxd sent a bad frame: ${err.message}`);
}
