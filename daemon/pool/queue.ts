// FIFO of waiting requests with O(1) removal from the middle (cancel,
// deadline): the queue remembers which entry is each request's current
// place, stale places are skipped, and the array is compacted when they
// pile up. Requests carry no queue bookkeeping of their own.
export class RequestQueue<T> {
  private places: Array<{ item: T; ticket: number }> = [];
  private head = 0;
  /** Each queued item's current place. */
  private readonly tickets = new Map<T, number>();
  private nextTicket = 0;

  /** Live (still queued) entries. */
  get length(): number {
    return this.tickets.size;
  }

  has(item: T): boolean {
    return this.tickets.has(item);
  }

  /** To the back; an item already queued moves there. */
  push(item: T): void {
    const ticket = this.nextTicket++;
    this.tickets.set(item, ticket);
    this.places.push({ item, ticket });
  }

  /** Back to the front: a request that lost its slot through no fault of its own keeps its turn. */
  unshift(item: T): void {
    const ticket = this.nextTicket++;
    this.tickets.set(item, ticket);
    if (this.head > 0) this.places[--this.head] = { item, ticket };
    else this.places.unshift({ item, ticket });
  }

  /** The oldest live entry, left in place. */
  peek(): T | undefined {
    this.skipStale();
    return this.places[this.head]?.item;
  }

  shift(): T | undefined {
    this.skipStale();
    const place = this.places[this.head];
    if (!place) return undefined;
    this.head++;
    this.tickets.delete(place.item);
    this.compact();
    return place.item;
  }

  remove(item: T): boolean {
    if (!this.tickets.delete(item)) return false;
    this.compact();
    return true;
  }

  /** Removes and returns every live entry, oldest first. */
  removeAll(): T[] {
    const live = this.places.slice(this.head).filter((p) => this.isCurrent(p)).map((p) => p.item);
    this.places = [];
    this.head = 0;
    this.tickets.clear();
    return live;
  }

  private isCurrent(place: { item: T; ticket: number }): boolean {
    return this.tickets.get(place.item) === place.ticket;
  }

  private skipStale(): void {
    while (this.head < this.places.length && !this.isCurrent(this.places[this.head])) this.head++;
  }

  private compact(): void {
    if (this.tickets.size === 0) {
      this.places = [];
      this.head = 0;
    } else if (this.places.length - this.tickets.size > Math.max(1024, this.tickets.size)) {
      // Stale places (shifted, moved, or removed from the middle) outnumber live ones.
      this.places = this.places.slice(this.head).filter((p) => this.isCurrent(p));
      this.head = 0;
    }
  }
}
