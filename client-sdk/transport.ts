// One client socket to sshmuxd: hello/welcome, stream ids, and routing the
// daemon's frames to the calls that own them. Many calls share it.
import * as net from 'node:net';
import { encodeFrame, FrameDecoder, FrameError, PROTOCOL_VERSION, type IFrame, type v1 } from '../proto';
import { closedDuringHelloMessage, noAnswerMessage, unavailableMessage } from '../proto/socket-path';
import { RECEIVE_WINDOW } from '../proto/receive-window';
import { SshMuxError } from './errors';
const HELLO_TIMEOUT_MS = 10_000;
const BACKLOG_RETRY_MS = 20;

export interface StreamHandler {
  onFrame(frame: v1.Frame): void;
  /** The transport died before this call ended. */
  onLost(err: SshMuxError): void;
}

export class Transport {
  private readonly decoder = new FrameDecoder();
  private readonly streams = new Map<number, StreamHandler>();
  private nextStream = 1;
  closed = false;
  welcome!: v1.Welcome;
  private onClose: (() => void) | undefined;

  private constructor(private readonly socket: net.Socket, readonly path: string) {}

  static async connect(path: string, client: string): Promise<Transport> {
    const deadline = Date.now() + HELLO_TIMEOUT_MS;
    for (;;) {
      try {
        return await Transport.dial(path, client, deadline);
      } catch (err) {
        // EAGAIN: the daemon's backlog of connections not yet accepted is
        // full (a burst of clients); it drains in moments.
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() >= deadline) throw err;
        await new Promise((r) => setTimeout(r, BACKLOG_RETRY_MS));
      }
    }
  }

  private static dial(path: string, client: string, deadline: number): Promise<Transport> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(path);
      const transport = new Transport(socket, path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new SshMuxError('DAEMON_UNAVAILABLE', noAnswerMessage(path, HELLO_TIMEOUT_MS / 1000)));
      }, Math.max(0, deadline - Date.now()));
      let greeted = false;
      socket.once('error', (err: NodeJS.ErrnoException) => {
        if (greeted) return;
        clearTimeout(timer);
        reject(err.code === 'EAGAIN' && Date.now() < deadline ? err : new SshMuxError('DAEMON_UNAVAILABLE', unavailableMessage(path, err, HELLO_TIMEOUT_MS)));
      });
      socket.on('error', () => {
        // 'close' follows and fails the calls.
      });
      socket.on('close', () => {
        if (!greeted) {
          clearTimeout(timer);
          reject(new SshMuxError('DAEMON_UNAVAILABLE', closedDuringHelloMessage(path)));
        }
        transport.lost(new SshMuxError('DAEMON_UNAVAILABLE',
          `the connection to sshmuxd at ${path} closed; calls in flight are lost (their remote commands are cancelled)`));
      });
      socket.on('data', (chunk: Buffer) => {
        let frames: v1.Frame[];
        try {
          frames = transport.decoder.push(chunk);
        } catch (err) {
          socket.destroy();
          if (err instanceof FrameError) return;
          throw err;
        }
        for (const frame of frames) {
          if (!greeted) {
            clearTimeout(timer);
            if (frame.body === 'welcome') {
              greeted = true;
              transport.welcome = frame.welcome as v1.Welcome;
              resolve(transport);
            } else {
              socket.destroy();
              reject(frame.error ? SshMuxError.fromWire(frame.error) : new SshMuxError('PROTOCOL_ERROR', 'sshmuxd did not answer hello'));
            }
            continue;
          }
          transport.route(frame);
        }
      });
      socket.write(encodeFrame({ stream: 0, hello: { version: PROTOCOL_VERSION, client, window: RECEIVE_WINDOW } }));
    });
  }

  set closeHandler(fn: () => void) {
    this.onClose = fn;
  }

  /** Opens a stream: registers the handler and sends the request frame. */
  open(handler: StreamHandler, request: Omit<IFrame, 'stream'>): number {
    if (this.closed) throw new SshMuxError('DAEMON_UNAVAILABLE', `the connection to sshmuxd at ${this.path} is closed`);
    const stream = this.nextStream++;
    this.streams.set(stream, handler);
    this.send({ ...request, stream });
    return stream;
  }

  send(frame: IFrame): void {
    if (!this.closed) this.socket.write(encodeFrame(frame));
  }

  /** The call ended: frames for it that cross on the wire are dropped. */
  release(stream: number): void {
    this.streams.delete(stream);
  }

  get activeStreams(): number {
    return this.streams.size;
  }

  /**
   * Keeps the process alive only while calls are open. A socket that has
   * gone holds nothing alive, and Node would queue the call on it for a
   * 'connect' that never comes: one listener per call that ended with it.
   */
  ref(): void {
    if (!this.socket.destroyed) this.socket.ref();
  }

  unref(): void {
    if (!this.socket.destroyed) this.socket.unref();
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }

  private route(frame: v1.Frame): void {
    if (frame.stream === 0) {
      // A connection-level error: the daemon is closing us.
      if (frame.error) this.lost(SshMuxError.fromWire(frame.error));
      return;
    }
    this.streams.get(frame.stream)?.onFrame(frame);
  }

  private lost(err: SshMuxError): void {
    if (this.closed) return;
    this.closed = true;
    const handlers = [...this.streams.values()];
    this.streams.clear();
    for (const h of handlers) h.onLost(err);
    this.onClose?.();
  }
}
