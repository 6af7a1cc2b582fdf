// Deadlines that are nearly always cancelled before they fall due: a
// call's, a request's wait for a session, an idle connection's. Each warm
// exec armed and cleared three of them with Node's setTimeout, and because
// each was then the only timer of its duration, every clearTimeout deleted
// Node's list for that duration and every setTimeout made a new one and
// rescheduled libuv's timer (perf: timers were 3 % of the daemon's CPU per
// exec). Here each duration keeps one list, in due order (the same duration
// from a later start falls due later), and one unref'd Node timer that is
// moved only when it fires: arming a deadline appends to a list, cancelling
// it unlinks it. A deadline never fires early, and late only as a Node
// timer would.

/** A deadline that can still be called off. */
export interface Deadline {
  cancel(): void;
}

/** Node's timers take at most this many ms (beyond it they fire after 1 ms). */
const TIMER_MAX = 2 ** 31 - 1;

class Entry implements Deadline {
  prev: Entry | undefined;
  next: Entry | undefined;
  constructor(
    readonly due: number,
    public fn: (() => void) | undefined,
    readonly list: DeadlineList,
  ) {}

  cancel(): void {
    if (this.fn === undefined) return;
    this.fn = undefined;
    this.list.unlink(this);
  }
}

class DeadlineList {
  private head: Entry | undefined;
  private tail: Entry | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly ms: number) {}

  add(fn: () => void): Entry {
    const entry = new Entry(performance.now() + this.ms, fn, this);
    if (this.tail) {
      entry.prev = this.tail;
      this.tail.next = entry;
      this.tail = entry;
    } else {
      this.head = this.tail = entry;
    }
    if (!this.timer) this.arm(this.ms);
    return entry;
  }

  unlink(entry: Entry): void {
    if (entry.prev) entry.prev.next = entry.next;
    else this.head = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    else this.tail = entry.prev;
    entry.prev = entry.next = undefined;
  }

  private arm(ms: number): void {
    this.timer = setTimeout(this.fire, Math.min(Math.max(ms, 0), TIMER_MAX));
    this.timer.unref();
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    try {
      // Node's timers round to the ms: what falls due within it is due.
      const now = performance.now() + 1;
      while (this.head && this.head.due <= now) {
        const fn = this.head.fn!;
        this.head.cancel();
        fn();
      }
    } finally {
      // A deadline that threw still leaves the others theirs.
      if (this.head) this.arm(Math.ceil(this.head.due - performance.now()));
      else lists.delete(this.ms);
    }
  };
}

const lists = new Map<number, DeadlineList>();

/** Calls `fn` once `ms` have passed, unless cancelled first. Keeps no process alive. */
export function deadline(fn: () => void, ms: number): Deadline {
  if (!(ms > 0)) ms = 0; // as setTimeout takes NaN or a negative delay: at once
  let list = lists.get(ms);
  if (!list) {
    list = new DeadlineList(ms);
    lists.set(ms, list);
  }
  return list.add(fn);
}
