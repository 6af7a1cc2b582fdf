// A TCP stream through a host (ssh -W, the SDK's openTcp, each -L
// connection) as one Duplex over a call's stdin and stdout. Written by hand
// rather than with Duplex.from({ readable, writable }): that one destroys
// itself once both sides are done, discarding output still in its buffer,
// which lost most of a stream read by a slow reader.
//
// Half-close works as with ssh: the far side's EOF ends the readable side
// (once every byte has been read) while ours stays writable, and ending ours
// sends EOF. The stream closes once the call has ended and its readable side
// has been read to the end, even if the caller never ended its writable side
// (nothing more can be sent through a closed channel).
import { Duplex } from 'node:stream';
import type { SshMuxError } from './errors';
import type { RemoteProcess } from './remote-process';

export class TcpStream extends Duplex {
  constructor(private readonly proc: RemoteProcess) {
    super({ allowHalfOpen: true });
    proc.stdout.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) proc.stdout.pause();
    });
    proc.stdout.once('end', () => this.push(null));
    const ended = new Promise((resolve) => this.once('end', resolve));
    Promise.all([proc.exited, ended]).then(() => {
      if (!this.destroyed) this.destroy();
    }, (err: SshMuxError) => this.destroy(err));
  }

  override _read(): void {
    this.proc.stdout.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.proc.finished) return done();
    this.proc.stdin.write(chunk, () => done());
  }

  override _final(done: (err?: Error | null) => void): void {
    this.proc.stdin.end(() => done());
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    if (!this.proc.finished) this.proc.cancel(err ? err.message : 'stream closed');
    done(err);
  }
}
