// What the daemon sends one client, frame after frame, copied into blocks of
// memory that are used again once the kernel has taken them, and written
// once per turn of the event loop.
//
// Why copy: output arrives lent (ssh2 patch 017): a view into the memory the
// next read from sshd reuses, valid only until the 'data' listener returns.
// Copying it here, header and payload side by side, is the one copy between
// ssh2's packet and the client's frame; the block it lands in is taken back
// when the write that carried it completes. Streaming then allocates nothing
// per chunk, so V8 has no short-lived external memory to collect (which cost
// a full mark-compact every few tens of MB streamed) and needs no flag to
// be told so.
//
// Why per turn: a turn's frames (a read from sshd carries several packets;
// an exec's Started and Exit) sit side by side in a block and go out in one
// write(2), two blocks in one writev. Order is kept: every frame to the
// client goes through here.
//
// Memory stays bounded: blocks come from daemon/blocks.ts (a fixed number
// in all), a writer holds one only while it has bytes not yet written, and
// a frame that finds no block gets memory of its own, as before.
import type { Socket } from 'node:net';
import {
  dataFrameHeaderSize, eofFrameSize, exitFrameSize, startedFrameSize, windowFrameSize,
  writeDataFrameHeader, writeEofFrame, writeExitFrame, writeStartedFrame, writeWindowFrame, type HotStarted,
} from '../../proto/framing';
import { BLOCK_SIZE, takeBlock, type Block } from '../blocks';
import { atTurnEnd } from '../turn-end';

/** Frames above this size that were encoded into a buffer of their own are written from it, not copied. */
const COPY_BELOW = 4096;

interface Piece {
  bytes: Buffer;
  block?: Block;
}

export class FrameWriter {
  private block: Block | undefined;
  /** Where this turn's bytes not yet handed to the socket start in `block`. */
  private pendingFrom = 0;
  /** This turn's pieces before those: earlier blocks' ranges, frames with memory of their own. */
  private queued: Piece[] = [];
  private scheduled = false;
  /** Where space() put the frame in the buffer it returned. */
  private at = 0;
  private readonly flushSoon = (): void => this.flush();
  /** Blocks whose bytes the socket has not yet taken, in the order written. */
  private readonly inFlight: Block[] = [];
  private readonly onWritten = (): void => this.written(this.inFlight.shift()!);

  constructor(private readonly socket: Socket) {}

  /** A frame already encoded with its length prefix (encodeFrame). */
  frame(encoded: Buffer): void {
    if (encoded.length >= COPY_BELOW) {
      this.queue({ bytes: encoded });
      return;
    }
    const at = this.room(encoded.length);
    if (at < 0) return this.queue({ bytes: encoded });
    encoded.copy(this.block!.bytes, at);
  }

  /** A Data frame carrying `payload` (borrowed or not: it is copied before this returns). */
  data(stream: number, fd: number, payload: Uint8Array): void {
    const out = this.space(dataFrameHeaderSize(stream, fd, payload.length) + payload.length);
    out.set(payload, writeDataFrameHeader(out, this.at, stream, fd, payload.length));
  }

  // The frames every exec sends, encoded in place (proto/framing.ts).
  started(stream: number, started: HotStarted): void {
    writeStartedFrame(this.space(startedFrameSize(stream, started)), this.at, stream, started);
  }

  eof(stream: number): void {
    writeEofFrame(this.space(eofFrameSize(stream)), this.at, stream);
  }

  exit(stream: number, code: number): void {
    writeExitFrame(this.space(exitFrameSize(stream, code)), this.at, stream, code);
  }

  window(stream: number, bytes: number): void {
    writeWindowFrame(this.space(windowFrameSize(stream, bytes)), this.at, stream, bytes);
  }

  /** Sends what is pending now, then ends the socket (after `last`, if given). */
  end(last?: Buffer): void {
    if (last) this.frame(last);
    this.flush();
    this.socket.end();
  }

  /**
   * Room for an n-byte frame, in the current block or a new one, else in a
   * buffer of its own: returns the buffer, its offset in `at`. The caller
   * fills it before returning: it is part of this turn's write.
   */
  private space(n: number): Buffer {
    const at = this.room(n);
    if (at >= 0) {
      this.at = at;
      return this.block!.bytes;
    }
    const own = Buffer.allocUnsafe(n);
    this.queue({ bytes: own });
    this.at = 0;
    return own;
  }

  /** Makes room for n bytes in the current block (or a new one) and returns where they go; -1 when no block can take them. */
  private room(n: number): number {
    if (n > BLOCK_SIZE) return -1;
    let block = this.block;
    if (block) {
      const at = block.claim(n);
      if (at >= 0) return this.filling(at);
      if (block.holds === 0 && this.pendingFrom === block.used) {
        // Everything in it is written: start it over.
        block.used = n;
        this.pendingFrom = 0;
        return this.filling(0);
      }
      this.takePending();
      block.retire();
    }
    block = this.block = takeBlock();
    this.pendingFrom = 0;
    if (!block) return -1;
    return this.filling(block.claim(n));
  }

  private filling(at: number): number {
    this.schedule();
    return at;
  }

  /** The current block's bytes not yet handed on join the turn's pieces. */
  private takePending(): void {
    const block = this.block;
    if (!block || this.pendingFrom === block.used) return;
    block.holds++;
    this.queued.push({ bytes: block.bytes.subarray(this.pendingFrom, block.used), block });
    this.pendingFrom = block.used;
  }

  private queue(piece: Piece): void {
    // Order: what the current block holds so far goes before this piece.
    this.takePending();
    this.queued.push(piece);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    atTurnEnd(this.flushSoon);
  }

  private flush(): void {
    this.scheduled = false;
    this.takePending();
    const pieces = this.queued;
    if (pieces.length === 0) return;
    this.queued = [];
    if (this.socket.destroyed) {
      for (const p of pieces) if (p.block) this.written(p.block);
      return;
    }
    if (pieces.length === 1) {
      this.write(pieces[0]);
      return;
    }
    this.socket.cork();
    for (const p of pieces) this.write(p);
    this.socket.uncork();
  }

  private write(piece: Piece): void {
    const block = piece.block;
    if (!block) {
      this.socket.write(piece.bytes);
      return;
    }
    // Called once the kernel has the bytes, or with an error once the socket is gone: either way they are not read again.
    // A socket calls its writes' callbacks in order: one callback for all, the blocks in a queue.
    this.inFlight.push(block);
    this.socket.write(piece.bytes, this.onWritten);
  }

  private written(block: Block): void {
    if (block === this.block && block.holds === 1 && this.pendingFrom === block.used && !this.scheduled) {
      // Idle: a client that is not being sent anything holds no block.
      this.block = undefined;
      block.retired = true;
    }
    block.release();
  }
}
