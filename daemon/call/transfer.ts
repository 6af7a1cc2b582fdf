// One file transfer (UPLOAD or DOWNLOAD) over a pooled SFTP session. The
// client's stream carries the bytes as for a command: stdin Data is written
// to the remote file, the remote file comes back as stdout Data, with the
// same windows. SFTP answers each request only after a round trip, so both
// directions keep several requests in flight at increasing offsets; the
// window bounds how many (upload) or a fixed depth does (download), so
// memory stays bounded per transfer.
import type { SFTPWrapper } from '../ssh/ssh2';
import { Code } from '../../proto';
import { MuxError } from '../errors';
import type { PooledConnection } from '../ssh/pooled-connection';
import type { HostPool, OpenedSession, PendingSession } from '../pool/host-pool';
import { requestSizer, setWindowFor, type InFlightSizer } from '../ssh/link-window';
import { Call, STDOUT } from './call';

/**
 * An upload's stdin window once the file is open: the writes in flight. The
 * server's window bounds what crosses the link (sshd grants 2 MiB), so twice
 * that keeps the server's window, not ours, the limit, as it is for sftp.
 */
const UPLOAD_WINDOW = 4 << 20;
/**
 * Reads in flight per download: 16 x 64 KiB to start with, which hides the
 * round trip on a LAN and costs 1 MiB; more over a long link (its sizer),
 * up to the channel window ceiling.
 */
const READ_DEPTH = 16;
const READ_CHUNK = 64 * 1024;
/** ssh2's SFTP status codes, named as in draft-ietf-secsh-filexfer-02. */
const SFTP_STATUS: Record<number, string> = {
  1: 'end of file', 2: 'no such file', 3: 'permission denied', 4: 'failure', 5: 'bad message',
  6: 'no connection', 7: 'connection lost', 8: 'operation unsupported',
};
const MAX_PATH = 4096;

type SftpError = Error & { code?: number | string };

export class FileTransfer extends Call {
  private pending: PendingSession | undefined;
  private sftp: SFTPWrapper | undefined;
  private connection: PooledConnection | undefined;
  private handle: Buffer | undefined;
  private readonly upload = this.request.kind === 'upload';
  protected readonly what = 'the transfer';
  protected readonly endedHow = 'was abandoned';
  /** Upload: client bytes received before the file was open, and the next write offset. */
  private early: Buffer[] = [];
  private writeOffset = 0;
  /** Requests (writes, reads) the server has not answered yet. */
  private inflight = 0;
  /** Download: the file's length, the next offset to request, the next to send, and chunks that came early. */
  private size = 0;
  private readOffset = 0;
  private sentOffset = 0;
  private eofAt = Infinity;
  private readonly ready = new Map<number, Buffer>();
  /** Download: how many bytes of reads to keep in flight, sized to the link. */
  private reads: InFlightSizer | undefined;

  protected validate(): string | undefined {
    const { path, mode = 0, stdin } = this.request;
    if (!path || path.length > MAX_PATH || path.includes('\0')) return `a file transfer needs a remote path (1-${MAX_PATH} bytes, no NUL)`;
    if (mode > 0o7777) return `mode ${mode.toString(8)} is not a permission mode (0-7777 octal)`;
    if (this.upload !== stdin) return this.upload ? 'an upload needs stdin set: the file is sent as stdin' : 'a download takes no stdin';
    return undefined;
  }

  protected begin(pool: HostPool): void {
    const { callMs, waitMs } = this.timeouts(pool);
    this.armDeadline(callMs);
    this.pending = pool.request({ kind: 'sftp', command: '' }, {
      onOpen: (session) => this.opened(session),
      onError: (err) => this.fail(err),
    }, waitMs);
  }

  protected get running(): boolean {
    return this.sftp !== undefined;
  }

  // ---- from the door -------------------------------------------------------

  protected writeStdin(chunk: Buffer): void {
    if (this.handle) this.write(chunk);
    else this.early.push(chunk);
  }

  protected stdinEnded(): void {
    if (this.handle) this.maybeFinish();
  }

  protected outputRoom(): void {
    if (!this.upload && this.handle) {
      this.deliver();
      this.readAhead();
      this.maybeFinish();
    }
  }

  // ---- the SFTP session --------------------------------------------------

  private opened({ sftp, connection, waitedMs, newConnection }: OpenedSession): void {
    if (this.ended || this.stopping) {
      connection.returnSftp(sftp!);
      return;
    }
    this.sftp = sftp!;
    this.connection = connection;
    const path = this.request.path!;
    const started = (size?: number, stdinCredit?: number): void => {
      this.sink.started({ connection: connection.id, waitedMs, newConnection, size, stdinCredit, warnings: connection.warningsFor(newConnection) });
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
          // More credit rides on Started, not stdinWritten: that counts written bytes (the SDK's progress).
          const more = Math.max(0, UPLOAD_WINDOW - this.ctx.stdinCredit);
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
          this.reads = requestSizer(READ_DEPTH * READ_CHUNK);
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
      if (this.sink.alive) this.sink.stdinWritten(chunk.length);
      this.maybeFinish();
    });
  }

  /** Download: requests the next chunks while the depth and the client's window allow. */
  private readAhead(): void {
    const depth = this.reads?.size ?? READ_DEPTH * READ_CHUNK;
    while (!this.stopping && !this.ended && this.inflight * READ_CHUNK < depth && this.readOffset < Math.min(this.size, this.eofAt) &&
           this.readOffset - this.sentOffset < this.outputWindow + depth) {
      const offset = this.readOffset;
      const length = Math.min(READ_CHUNK, this.size - offset);
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
        this.sizeReads(bytes);
        this.ready.set(offset, bytes === length ? buf : buf.subarray(0, bytes));
        // A short read: ask for the rest of this chunk.
        if (bytes < length) this.read(offset + bytes, length - bytes);
      }
      this.deliver();
      this.readAhead();
      this.maybeFinish();
    });
  }

  /**
   * Grows or shrinks the reads in flight with the link; they grow only while
   * the client takes what arrives (its window open), and the SFTP channel's
   * window follows them.
   */
  private sizeReads(bytes: number): void {
    const reads = this.reads!;
    if (reads.delivered(bytes, this.connection?.link.ms, this.outputWindow > 0)) setWindowFor(this.sftp!, reads.size);
  }

  /** Sends the chunks that are next in order, while the client's window is open. */
  private deliver(): void {
    while (this.outputWindow > 0 && this.sink.alive) {
      const chunk = this.ready.get(this.sentOffset);
      if (!chunk) return;
      this.ready.delete(this.sentOffset);
      this.sentOffset += chunk.length;
      this.outputWindow -= chunk.length;
      this.sink.data(STDOUT, chunk);
      if (this.outputWindow <= 0 && this.ready.has(this.sentOffset)) this.sink.outputWaits?.();
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
      this.end({ exit: { code: 0, signal: null } });
    });
  }

  // ---- ending --------------------------------------------------------------

  protected stop(reason: MuxError): void {
    if (this.ended || this.stopping) return;
    this.stopping = reason;
    this.pending?.cancel();
    this.maybeRelease();
    this.end({ error: reason });
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
    this.reads?.release();
    if (!sftp) return;
    // The pooled session goes back with ssh2's window: the next transfer sizes its own.
    setWindowFor(sftp, 0);
    this.connection!.returnSftp(sftp);
  }

  private failRemote(err: SftpError, what: string): void {
    if (this.ended) return this.maybeRelease();
    const status = typeof err.code === 'number' ? SFTP_STATUS[err.code] : undefined;
    const lost = this.connection?.state === 'closed' || /no response|not open|closed/i.test(err.message);
    const muxErr = lost
      ? new MuxError(Code.CONNECTION_LOST, `${what} on ${this.request.host}: ${this.connection?.lostReason ?? 'the connection was lost'} (${err.message}); the transfer did not finish`, 'running')
      : new MuxError(Code.REMOTE_FILE, `${what} on ${this.request.host}: ${err.message}${status && !err.message.toLowerCase().includes(status) ? ` (${status})` : ''}`, 'running');
    this.stopping = muxErr;
    this.maybeRelease();
    this.end({ error: muxErr });
  }
}
