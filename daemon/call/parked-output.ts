// Output a session call holds while its client's window is closed, in
// blocks used again (daemon/blocks.ts) rather than a Buffer per chunk.
//
// The call pauses its channel when the client's window runs out; ssh2 then
// keeps what sshd already sent, up to its channel window, in the channel's
// stream. Lent output (ssh2 patch 017) cannot be kept as it is, since the
// next read from sshd reuses its memory, so ssh2 asks the channel's keepData
// for a copy, and this is it. When a client is slower than sshd (the usual
// case while streaming: three processes share the machine), a fifth to a
// quarter of the output passes through here. A copy lives until the call
// has handed it to its client (taken()), in the order each stream keeps.
import { takeBlock, type Block } from '../blocks';
import { STDERR, type OutputFd } from './call';

interface Held {
  bytes: Buffer;
  block: Block;
}

export class ParkedOutput {
  private block: Block | undefined;
  /** Per stream (stdout, stderr), the copies not yet taken, oldest first. */
  private readonly held: [Held[], Held[]] = [[], []];

  /** A copy of `data` to keep until taken(); in a block when one has room, else a Buffer of its own. */
  keep(data: Buffer, fd: OutputFd): Buffer {
    const at = this.room(data.length);
    if (at < 0) return Buffer.from(data);
    const block = this.block!;
    block.holds++;
    data.copy(block.bytes, at);
    const bytes = block.bytes.subarray(at, at + data.length);
    this.held[fd === STDERR ? 1 : 0].push({ bytes, block });
    return bytes;
  }

  /** `data` has been handed on (or dropped): if it is the oldest copy held for `fd`, its bytes may be used again. */
  taken(fd: OutputFd, data: Buffer): void {
    const queue = this.held[fd === STDERR ? 1 : 0];
    if (queue.length === 0 || queue[0].bytes !== data) return;
    queue.shift()!.block.release();
    if (this.block && this.block.holds === 0) {
      // Nothing held: a call streaming to a client that keeps up holds no block.
      this.block.retire();
      this.block = undefined;
    }
  }

  /**
   * Nothing held for `fd` (or for either) will be read any more: its stream
   * has closed (after its end, or destroyed), or the call is over and drops
   * what it still gets.
   */
  releaseAll(fd?: OutputFd): void {
    for (const queue of fd === undefined ? this.held : [this.held[fd === STDERR ? 1 : 0]]) {
      for (const h of queue.splice(0)) h.block.release();
    }
    if (this.block && this.held[0].length + this.held[1].length === 0) {
      this.block.retire();
      this.block = undefined;
    }
  }

  private room(n: number): number {
    if (this.block) {
      const at = this.block.claim(n);
      if (at >= 0) return at;
      this.block.retire();
    }
    this.block = takeBlock();
    return this.block ? this.block.claim(n) : -1;
  }
}
