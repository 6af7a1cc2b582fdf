// Blocks of memory the hot path uses again instead of allocating a Buffer
// per chunk of output: the client's frames (rpc/frame-writer.ts) and output
// held while a client's window is closed (call/parked-output.ts).
//
// A Buffer per chunk dies young, but V8 counts its memory against the limit
// at which it starts a full collection, and streaming at hundreds of MB/s
// reached that limit every few tens of MB: a third of the daemon's CPU
// (docs/hot-path.md). A block is taken from the spares, filled front to
// back, and given back once nothing refers to its bytes any more.
//
// Memory stays bounded: at most MAX_BLOCKS exist across the daemon, and a
// user that finds none gets a Buffer of its own, as before.

export const BLOCK_SIZE = 128 * 1024;
/** Blocks across the daemon (16 MiB). */
export const MAX_BLOCKS = 128;

export class Block {
  readonly bytes = Buffer.allocUnsafeSlow(BLOCK_SIZE);
  /** Bytes filled from the start. */
  used = 0;
  /** References to its bytes still live (writes in flight, output held). */
  holds = 0;
  /** Its user fills another now: it goes back once `holds` is 0. */
  retired = false;

  /** n bytes at the end of what is filled, or -1 when they do not fit. */
  claim(n: number): number {
    if (this.used + n > BLOCK_SIZE) return -1;
    const at = this.used;
    this.used += n;
    return at;
  }

  /** One reference fewer; gives the block back when it was the last of a retired block. */
  release(): void {
    if (--this.holds === 0 && this.retired) giveBack(this);
  }

  /** Its user is done filling it: given back now if nothing refers to it, else by the last release(). */
  retire(): void {
    this.retired = true;
    if (this.holds === 0) giveBack(this);
  }
}

const spares: Block[] = [];
let existing = 0;

/** An empty block, or undefined when MAX_BLOCKS are in use. */
export function takeBlock(): Block | undefined {
  const block = spares.pop() ?? (existing < MAX_BLOCKS ? (existing++, new Block()) : undefined);
  if (block) {
    block.used = 0;
    block.holds = 0;
    block.retired = false;
  }
  return block;
}

function giveBack(block: Block): void {
  spares.push(block);
}

/** Blocks in existence and spare (tests). */
export function blockCounts(): { existing: number; spare: number } {
  return { existing, spare: spares.length };
}
