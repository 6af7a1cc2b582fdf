// File transfers as the SDK shows them: an awaitable handle that emits
// 'progress'. The bytes travel as a call's stdin (upload) or stdout
// (download), so they get the call's flow control end to end.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SshMuxError } from './errors';
import type { RemoteProcess } from './remote-process';

export interface TransferProgress {
  /** Upload: bytes the remote side has written. Download: bytes received. */
  bytes: number;
  /** The whole size when known (a local file being uploaded, or any download). */
  total: number | undefined;
}

export interface TransferResult {
  bytes: number;
  ms: number;
}

/**
 * A running upload or download. `await` it for the result; listen for
 * 'progress' ({ bytes, total }); cancel() stops it (the remote file is left
 * as far as it got, as with scp and sftp).
 */
export class Transfer extends EventEmitter implements PromiseLike<TransferResult> {
  bytes = 0;
  total: number | undefined;
  readonly done: Promise<TransferResult>;
  private readonly startedAt = Date.now();

  /** @internal */
  constructor(private readonly proc: RemoteProcess, run: (t: Transfer) => Promise<void>) {
    super();
    this.done = run(this).then(() => ({ bytes: this.bytes, ms: Date.now() - this.startedAt }));
    this.done.catch(() => {}); // awaited or not, never an unhandled rejection
  }

  cancel(reason = 'cancelled'): void {
    this.proc.cancel(reason);
  }

  then<A = TransferResult, B = never>(ok?: ((r: TransferResult) => A | PromiseLike<A>) | null,
    fail?: ((e: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return this.done.then(ok, fail);
  }

  /** @internal */
  progress(bytes: number): void {
    this.bytes += bytes;
    this.emit('progress', { bytes: this.bytes, total: this.total } satisfies TransferProgress);
  }
}

/** Upload: the source flows into the call's stdin; progress counts what the daemon acknowledges. */
export async function runUpload(t: Transfer, proc: RemoteProcess, source: Readable, total: number | undefined): Promise<void> {
  t.total = total;
  proc.on('stdinAck', (n: number) => t.progress(n));
  let sourceError: SshMuxError | undefined;
  pipeline(source, proc.stdin).catch((err: Error) => {
    // No EOF reaches the daemon, so the remote file is never reported complete.
    sourceError = new SshMuxError('CANCELLED', `reading the local source failed: ${err.message}; the remote file is incomplete`);
    proc.cancel('the local source failed');
  });
  try {
    await proc.exited;
  } catch (err) {
    throw sourceError ?? err;
  }
}

/** Download: the call's stdout flows into the destination; a local file appears only once complete. */
export async function runDownload(t: Transfer, proc: RemoteProcess, dest: string | Writable): Promise<void> {
  proc.once('started', (s: { size?: number }) => {
    t.total = s.size;
  });
  proc.stdout.on('data', (d: Buffer) => t.progress(d.length));
  if (typeof dest !== 'string') {
    await Promise.all([pipeline(proc.stdout, dest), proc.exited]);
    return;
  }
  // Written beside the target and renamed over it: a failed download never leaves a half file under the real name.
  const partial = path.join(path.dirname(dest), `.${path.basename(dest)}.sshmux-${process.pid}-${Date.now()}`);
  try {
    await Promise.all([pipeline(proc.stdout, fs.createWriteStream(partial, { flags: 'wx' })), proc.exited]);
    fs.renameSync(partial, dest);
  } catch (err) {
    proc.cancel('the local destination failed');
    fs.rmSync(partial, { force: true });
    if (err instanceof SshMuxError) throw err;
    throw new SshMuxError('CANCELLED', `writing ${dest} failed: ${(err as Error).message}`);
  }
}
