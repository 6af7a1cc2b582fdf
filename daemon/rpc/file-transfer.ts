// One file transfer (UPLOAD or DOWNLOAD) over a pooled SFTP session. The
// client's stream carries the bytes as for a command: stdin Data is written
// to the remote file, the remote file comes back as stdout Data, with the
// same windows. SFTP answers each request only after a round trip, so both
// directions keep several requests in flight at increasing offsets; the
// window bounds how many (upload) or a fixed depth does (download), so
// memory stays bounded per transfer.
import type { SFTPWrapper } from 'ssh2';
import { Code, codeName, DATA_CHUNK, Fd, type IFrame, v1 } from '../../proto';
import { MuxError, toMuxError, type Phase } from '../errors';
import { countRequest } from '../metrics';
import type { Connection } from '../pool/connection';
import type { OpenedSession, PendingSession } from '../pool/host-pool';
import { callTimeouts, errorBody, type CallContext, type CallSink } from './session-call';

/** An upload's stdin window once the file is open: writes in flight, enough to hide the SFTP round trip. */
const UPLOAD_WINDOW = 1024 * 1024;
/** Reads in flight per download: 16 x 64 KiB hides the round trip on a LAN and costs 1 MiB at most. */
const READ_DEPTH = 16;
/** ssh2's SFTP status codes, named as in draft-ietf-secsh-filexfer-02. */
const SFTP_STATUS: Record<number, string> = {
  1: 'end of file', 2: 'no such file', 3: 'permission denied', 4: 'failure', 5: 'bad message',
  6: 'no connection', 7: 'connection lost', 8: 'operation unsupported',
};
const MAX_PATH = 4096;

type SftpError = Error & { code?: number | string };

export class FileTransfer {
  private pending: PendingSession | undefined;
  private sftp: SFTPWrapper | undefined;
  private connection: Connection | undefined;
  private handle: Buffer | undefined;
  private ended = false;
  private stopping: MuxError | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private readonly upload: boolean;
  /** Upload: client bytes received before the file was open, and the next write offset. */
  private early: Buffer[] = [];
  private stdinCredit: number;
  private stdinEof = false;
  private writeOffset = 0;
  /** Requests (writes, reads) the server has not answered yet. */
  private inflight = 0;
  /** Download: the file's length, the next offset to request, the next to send, and chunks that came early. */
  private size = 0;
  private readOffset = 0;
  private sentOffset = 0;
  private eofAt = Infinity;
  private readonly ready = new Map<number, Buffer>();
  private sendWindow: number;

  constructor(
    private readonly sink: CallSink,
    readonly stream: number,
    private readonly request: v1.SessionRequest,
    private readonly ctx: CallContext,
  ) {
    this.upload = request.kind === v1.SessionRequest.Kind.UPLOAD;
    this.sendWindow = ctx.clientWindow;
    this.stdinCredit = ctx.stdinWindow;
  }

  start(): void {
    const req = this.request;
    const path = req.path;
    if (!path || path.length > MAX_PATH || path.includes('\0')) {
      return this.fail(new MuxError(Code.BAD_REQUEST, `a file transfer needs a remote path (1-${MAX_PATH} bytes, no NUL)`));
    }
    if (req.mode > 0o7777) return this.fail(new MuxError(Code.BAD_REQUEST, `mode ${req.mode.toString(8)} is not a permission mode (0-7777 octal)`));
    if (this.upload !== req.stdin) {
      return this.fail(new MuxError(Code.BAD_REQUEST, this.upload ? 'an upload needs stdin set: the file is sent as stdin' : 'a download takes no stdin'));
    }
    let pool;
    try {
      pool = this.ctx.agent.pool(req.host, req.options ?? {});
    } catch (err) {
      return this.fail(err);
    }
    const { callTimeout, waitMs } = callTimeouts(req.timeoutMs, pool.limits);
    if (callTimeout > 0) this.deadlineTimer = setTimeout(() => this.deadline(callTimeout), callTimeout);
    this.pending = pool.request({ kind: 'sftp', command: '' }, {
      onOpen: (session) => this.opened(session),
      onError: (err) => this.fail(err),
    }, waitMs);
  }

  // ---- frames from the client ------------------------------------------

  onData(fd: number, data: Uint8Array): void {
    if (!this.upload || fd !== Fd.STDIN || this.stdinEof) {
      return this.sink.protocolError(`stream ${this.stream}: data it may not send (fd ${fd}${this.stdinEof ? ' after EOF' : ''})`);
    }
    this.stdinCredit -= data.length;
    if (this.stdinCredit < 0) return this.sink.protocolError(`stream ${this.stream}: stdin beyond the granted window`);
    if (this.stopping) return;
    const chunk = Buffer.from(data.buffer, data.byteOffset, data.length);
    if (this.handle) this.write(chunk);
    else this.early.push(chunk);
  }

  onEof(): void {
    if (this.stdinEof) return;
    this.stdinEof = true;
    if (this.handle) this.maybeFinish();
  }

  onWindow(bytes: number): void {
    this.sendWindow += bytes;
    if (!this.upload && this.handle) {
      this.deliver();
      this.readAhead();
      this.maybeFinish();
    }
  }

  onResize(_resize?: unknown): void {
    // Nothing to resize.
  }

  onSignal(_name?: string): void {
    // No process to signal.
  }

  onCancel(reason: string): void {
    this.stop(new MuxError(Code.CANCELLED, `transfer cancelled by the client${reason ? `: ${reason}` : ''}`, this.phase));
  }

  shutdown(): void {
    this.stop(new MuxError(Code.SHUTTING_DOWN, 'sshmuxd stopped and its grace period ran out; the transfer was abandoned', this.phase));
  }

  clientGone(): void {
    this.stop(new MuxError(Code.CANCELLED, 'the client went away', this.phase));
  }

  // ---- the SFTP session --------------------------------------------------

  private get phase(): Phase {
    return this.sftp ? 'running' : 'queued';
  }

  private opened({ sftp, connection, waitedMs, newConnection }: OpenedSession): void {
    if (this.ended || this.stopping) {
      connection.returnSftp(sftp!);
      return;
    }
    this.sftp = sftp!;
    this.connection = connection;
    const path = this.request.path;
    const started = (size?: number, window?: number): void => {
      this.sink.send({ stream: this.stream, started: { connection: connection.id, waitedMs, newConnection, size, window } });
    };
    if (this.upload) {
      const mode = this.request.mode || undefined;
      this.inflight++;
      this.sftp.open(path, 'w', mode ? { mode } : {}, (err, handle) => {
        this.inflight--;
        if (err) return this.failRemote(err, `cannot open ${path} for writing`);
        if (this.settle(handle)) return;
        const chmod = (next: () => void): void => {
          // open() applies the mode only to a new file; the caller asked for it either way.
          if (!mode) return next();
          this.inflight++;
          this.sftp!.fchmod(handle, mode, (e) => {
            this.inflight--;
            if (e) this.failRemote(e, `cannot chmod ${path}`);
            else next();
          });
        };
        chmod(() => {
          if (this.stopping || this.ended) return this.maybeRelease();
          // More credit rides on Started, not a Window frame: Window frames count written bytes (the SDK's progress).
          const more = Math.max(0, UPLOAD_WINDOW - this.ctx.stdinWindow);
          this.stdinCredit += more;
          started(undefined, more);
          for (const chunk of this.early) this.write(chunk);
          this.early = [];
          this.maybeFinish();
        });
      });
    } else {
      this.inflight++;
      this.sftp.open(path, 'r', (err, handle) => {
        this.inflight--;
        if (err) return this.failRemote(err, `cannot open ${path}`);
        if (this.settle(handle)) return;
        this.inflight++;
        this.sftp!.fstat(handle, (e, attrs) => {
          this.inflight--;
          if (e) return this.failRemote(e, `cannot stat ${path}`);
          if (this.stopping || this.ended) return this.maybeRelease();
          this.size = attrs.size;
          started(this.size);
          this.readAhead();
          this.maybeFinish();
        });
      });
    }
  }

  /** Keeps the handle; true when the transfer was stopped meanwhile (and the handle is closed). */
  private settle(handle: Buffer): boolean {
    this.handle = handle;
    if (this.stopping || this.ended) {
      this.maybeRelease();
      return true;
    }
    return false;
  }

  private write(chunk: Buffer): void {
    const offset = this.writeOffset;
    this.writeOffset += chunk.length;
    this.inflight++;
    this.sftp!.write(this.handle!, chunk, 0, chunk.length, offset, (err) => {
      this.inflight--;
      if (err) return this.failRemote(err, `cannot write ${this.request.path} at offset ${offset}`);
      if (this.stopping || this.ended) return this.maybeRelease();
      // Written: the client may send as much again.
      this.stdinCredit += chunk.length;
      if (this.sink.alive) this.sink.send({ stream: this.stream, window: { bytes: chunk.length } });
      this.maybeFinish();
    });
  }

  /** Download: requests the next chunks while the depth and the client's window allow. */
  private readAhead(): void {
    while (!this.stopping && !this.ended && this.inflight < READ_DEPTH && this.readOffset < Math.min(this.size, this.eofAt) &&
           this.readOffset - this.sentOffset < this.sendWindow + READ_DEPTH * DATA_CHUNK) {
      const offset = this.readOffset;
      const length = Math.min(DATA_CHUNK, this.size - offset);
      this.readOffset += length;
      this.read(offset, length);
    }
  }

  private read(offset: number, length: number): void {
    this.inflight++;
    const buf = Buffer.allocUnsafe(length);
    this.sftp!.read(this.handle!, buf, 0, length, offset, (err, bytes) => {
      this.inflight--;
      if (this.stopping || this.ended) return this.maybeRelease();
      if (err && (err as SftpError).code !== 1) return this.failRemote(err, `cannot read ${this.request.path} at offset ${offset}`);
      if (err || bytes === 0) {
        // The file shrank since fstat: it ends here.
        this.eofAt = Math.min(this.eofAt, offset);
      } else {
        this.ready.set(offset, bytes === length ? buf : buf.subarray(0, bytes));
        // A short read: ask for the rest of this chunk.
        if (bytes < length) this.read(offset + bytes, length - bytes);
      }
      this.deliver();
      this.readAhead();
      this.maybeFinish();
    });
  }

  /** Sends the chunks that are next in order, while the client's window is open. */
  private deliver(): void {
    while (this.sendWindow > 0 && this.sink.alive) {
      const chunk = this.ready.get(this.sentOffset);
      if (!chunk) return;
      this.ready.delete(this.sentOffset);
      this.sentOffset += chunk.length;
      this.sendWindow -= chunk.length;
      this.sink.sendData(this.stream, Fd.STDOUT, chunk);
    }
  }

  private maybeFinish(): void {
    if (this.ended || this.stopping || !this.handle || this.inflight > 0) return;
    const done = this.upload
      ? this.stdinEof && this.early.length === 0
      : this.sentOffset >= Math.min(this.size, this.eofAt) && this.ready.size === 0;
    if (!done) return;
    const handle = this.handle;
    this.handle = undefined;
    // close() is where the server reports a failed flush (a full disk): only then is an upload done.
    this.sftp!.close(handle, (err) => {
      if (err) return this.failRemote(err, `cannot close ${this.request.path}`);
      this.returnSession();
      this.end({ stream: this.stream, exit: { code: 0 } });
    });
  }

  // ---- ending ------------------------------------------------------------

  private deadline(ms: number): void {
    this.stop(new MuxError(Code.DEADLINE_EXCEEDED, `the transfer of ${this.request.path} on ${this.request.host} ran past its deadline of ${ms / 1000} s`, this.phase));
  }

  private stop(reason: MuxError): void {
    if (this.ended || this.stopping) return;
    this.stopping = reason;
    this.pending?.cancel();
    this.maybeRelease();
    this.end({ stream: this.stream, error: errorBody(reason) });
  }

  /** Once no request is in flight, closes the handle and gives the SFTP session back to the pool. */
  private maybeRelease(): void {
    if (this.inflight === 0) this.release();
  }

  private release(): void {
    const sftp = this.sftp;
    if (!sftp) return;
    const handle = this.handle;
    this.handle = undefined;
    if (!handle) return this.returnSession();
    sftp.close(handle, () => this.returnSession());
  }

  private returnSession(): void {
    const sftp = this.sftp;
    this.sftp = undefined;
    if (sftp) this.connection!.returnSftp(sftp);
  }

  private failRemote(err: SftpError, what: string): void {
    if (this.ended) return this.maybeRelease();
    const status = typeof err.code === 'number' ? SFTP_STATUS[err.code] : undefined;
    const lost = this.connection?.state === 'closed' || /no response|not open|closed/i.test(err.message);
    const muxErr = lost
      ? new MuxError(Code.CONNECTION_LOST, `${what} on ${this.request.host}: the connection was lost (${err.message}); the transfer did not finish`, 'running')
      : new MuxError(Code.REMOTE_FILE, `${what} on ${this.request.host}: ${err.message}${status && !err.message.toLowerCase().includes(status) ? ` (${status})` : ''}`, 'running');
    this.stopping = muxErr;
    this.maybeRelease();
    this.end({ stream: this.stream, error: errorBody(muxErr) });
  }

  private fail(err: unknown): void {
    const muxErr = toMuxError(err);
    if (muxErr.code === Code.INTERNAL) this.ctx.log.error({ err }, 'internal error in a transfer');
    this.end({ stream: this.stream, error: errorBody(muxErr) });
  }

  private end(frame: IFrame): void {
    if (this.ended) return;
    this.ended = true;
    countRequest(this.request.host, frame.error ? codeName(frame.error.code ?? 0) : 'OK');
    clearTimeout(this.deadlineTimer);
    if (this.sink.alive) this.sink.send(frame);
    this.sink.callEnded(this.stream);
  }
}
