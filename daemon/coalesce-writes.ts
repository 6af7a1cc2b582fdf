// One syscall per socket per turn of the event loop, instead of one per
// write. ssh2 writes every SSH packet as three pieces (length, ciphertext,
// MAC), and an exec sends several packets and frames at once (a channel
// close and the keepalive after it; a client's Eof and Exit): written as
// they come, each piece is its own write(2), which the profile showed as
// the largest cost of a warm exec. Here the pieces one turn writes are kept
// until the event loop's check phase and go out together: small ones as one
// buffer (copying a few hundred bytes costs less than a writev and the
// stream bookkeeping per piece), large ones (output) as one writev, never
// copied. Memory stays bounded: a turn keeps only what it produced from
// what it read, and the stream's own backpressure applies as before.
import type { Writable } from 'node:stream';
import { atTurnEnd } from './turn-end';

/** Below this many bytes a turn's pieces are joined into one buffer. */
const JOIN_BELOW = 16 * 1024;

/**
 * Makes `stream.write(buffer)` hold the buffer until the turn's I/O is
 * handled. Writes with a callback or an encoding, and end(), first send what
 * is held, so order is kept.
 */
export function coalesceWrites(stream: Writable): void {
  const write = stream.write.bind(stream) as (chunk: unknown, encoding?: unknown, cb?: unknown) => boolean;
  const end = stream.end.bind(stream) as (...args: unknown[]) => Writable;
  let held: Buffer[] = [];
  let heldBytes = 0;
  let scheduled = false;
  // The caller was told to wait for 'drain' while the real stream may not
  // be full by the time the turn's pieces reach it: then Node would never
  // emit 'drain', so it is emitted here.
  let owesDrain = false;

  const flush = (): void => {
    scheduled = false;
    if (held.length === 0) return;
    const pieces = held;
    const bytes = heldBytes;
    held = [];
    heldBytes = 0;
    if (stream.destroyed) return;
    let roomLeft: boolean;
    if (pieces.length === 1) {
      roomLeft = write(pieces[0]);
    } else if (bytes < JOIN_BELOW) {
      roomLeft = write(Buffer.concat(pieces, bytes));
    } else {
      stream.cork();
      roomLeft = true;
      for (const piece of pieces) roomLeft = write(piece);
      stream.uncork();
    }
    if (owesDrain && roomLeft) process.nextTick(() => stream.emit('drain'));
    owesDrain = false;
  };

  stream.write = function (chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    if (!Buffer.isBuffer(chunk) || encoding !== undefined || cb !== undefined) {
      flush();
      return write(chunk, encoding, cb);
    }
    held.push(chunk);
    heldBytes += chunk.length;
    if (!scheduled) {
      scheduled = true;
      atTurnEnd(flush);
    }
    const roomLeft = stream.writableLength + heldBytes < stream.writableHighWaterMark;
    if (!roomLeft) owesDrain = true;
    return roomLeft;
  } as Writable['write'];

  stream.end = function (...args: unknown[]): Writable {
    flush();
    return end(...args);
  } as Writable['end'];
}
