// FIFO of waiting requests with O(1) removal from the middle (cancel,
// deadline): entries are flagged and skipped, and the array is compacted
// when the dead ones pile up.
export interface Queued {
  queued: boolean;
}

export class RequestQueue<T extends Queued> {
  private items: T[] = [];
  private head = 0;
  /** Live (still queued) entries. */
  length = 0;

  push(item: T): void {
    item.queued = true;
    this.items.push(item);
    this.length++;
  }

  /** Back to the front: a request that lost its slot through no fault of its own keeps its turn. */
  unshift(item: T): void {
    item.queued = true;
    if (this.head > 0) this.items[--this.head] = item;
    else this.items.unshift(item);
    this.length++;
  }

  /** The oldest live entry, left in place. */
  peek(): T | undefined {
    while (this.head < this.items.length && !this.items[this.head].queued) this.head++;
    return this.items[this.head];
  }

  shift(): T | undefined {
    while (this.head < this.items.length) {
      const item = this.items[this.head++];
      if (item.queued) {
        item.queued = false;
        this.length--;
        this.compact();
        return item;
      }
    }
    this.compact();
    return undefined;
  }

  remove(item: T): boolean {
    if (!item.queued) return false;
    item.queued = false;
    this.length--;
    this.compact();
    return true;
  }

  /** Removes and returns every live entry, oldest first. */
  drainAll(): T[] {
    const live = this.items.slice(this.head).filter((i) => i.queued);
    for (const i of live) i.queued = false;
    this.items = [];
    this.head = 0;
    this.length = 0;
    return live;
  }

  private compact(): void {
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.items.length - this.length > Math.max(1024, this.length)) {
      // Dead entries (shifted, or cancelled in the middle) outnumber live ones.
      this.items = this.items.slice(this.head).filter((i) => i.queued);
      this.head = 0;
    }
  }
}
