// One syscall per socket per turn of the event loop, instead of one per
// write. ssh2 writes every SSH packet as three pieces (length, ciphertext,
// MAC), and an exec sends several packets and frames at once (a channel
// close and the keepalive after it; a client's Eof and Exit): uncorked,
// each piece is its own write(2), which the profile showed as the largest
// cost of a warm exec. Corked until the event loop's check phase, whatever
// one turn wrote goes out as one writev(2). Memory stays bounded: a turn
// buffers only what it produced from what it read.
import type { Writable } from 'node:stream';

/** Makes `stream` cork on its first write in a turn of the event loop and uncork once the turn's I/O is handled. */
export function coalesceWrites(stream: Writable): void {
  const write = stream.write;
  let corked = false;
  const flush = (): void => {
    corked = false;
    stream.uncork();
  };
  stream.write = function (this: Writable, ...args: unknown[]): boolean {
    if (!corked) {
      corked = true;
      stream.cork();
      setImmediate(flush);
    }
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as Writable['write'];
}
