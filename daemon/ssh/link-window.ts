// How much sshmux keeps in flight on a link: the receive window it grants a
// server's channel (a download is paced by it), and the SFTP requests a
// transfer keeps outstanding. A link carries at most what is in flight per
// round trip, so over 100 ms ssh2's fixed 2 MiB window (1 MiB in flight)
// gives 10 MiB/s whatever the bandwidth. What a link needs is its
// bandwidth-delay product, as HPN-SSH sizes its windows: measured here from
// the connection's round trip (LinkRtt) and the rate bytes arrive at.
//
// An InFlightSizer grows the amount (doubling, once per two round trips)
// while it limits the link, that is while the bytes delivered per round
// trip fill what was allowed in flight, and only while the reader keeps up:
// a slow reader is the bottleneck, and a bigger window would only hold its
// backlog in the daemon's memory. Otherwise it follows twice the measured
// product, falling back towards the base when the link or the writer is
// slower. It never exceeds the ceiling per channel, and what all of them
// hold beyond the base comes out of one daemon-wide budget.
import type { Readable } from 'node:stream';
import type { ClientChannel, ServerChannel } from './ssh2';
import { BASE_WINDOW, setReceiveWindow, type ReceivingChannel } from './ssh2/windows';

/** The per-channel ceiling and the daemon-wide budget, as configured (config.ts: channelWindowMax, windowMemoryMax). */
export interface WindowLimits {
  /** The most one channel's window (or one transfer's requests in flight) may reach, bytes. */
  channelWindowMax: number;
  /** The most all windows together may hold beyond BASE_WINDOW each, bytes. */
  windowMemoryMax: number;
}

export const DEFAULT_WINDOW_LIMITS: Readonly<WindowLimits> = Object.freeze({
  channelWindowMax: 16 << 20,
  windowMemoryMax: 256 << 20,
});

/** Round trips kept per connection: the least of them is its round trip (queueing only adds to a sample). */
const RTT_SAMPLES = 8;
/** An epoch (one rate measurement) lasts at least two round trips, and at least this long. */
const MIN_EPOCH_MS = 20;
/** Links with a shorter round trip keep ssh2's window (sizeReceiveWindow). */
const SIZED_FROM_RTT_MS = 1;
/** Sizes move in steps of this much, so that a window is not re-granted for a few bytes. */
const STEP = 64 << 10;

/** One connection's round trip, from timed request-reply exchanges (keepalives, channel opens). */
export class LinkRtt {
  private readonly samples: number[] = [];
  private least: number | undefined;

  sample(ms: number): void {
    if (!(ms >= 0)) return;
    this.samples.push(ms);
    if (this.samples.length > RTT_SAMPLES) this.samples.shift();
    this.least = Math.min(...this.samples);
  }

  /** The least recent round trip, ms; undefined until one was measured. Read for every channel, so kept, not computed. */
  get ms(): number | undefined {
    return this.least;
  }
}

/** Memory the daemon's windows hold beyond the base, shared by every channel and transfer. */
export class WindowBudget {
  used = 0;

  constructor(public max: number) {}

  /** Takes up to `bytes`; returns what it could have. */
  take(bytes: number): number {
    const got = Math.max(0, Math.min(bytes, this.max - this.used));
    this.used += got;
    return got;
  }

  give(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}

let limits: WindowLimits = { ...DEFAULT_WINDOW_LIMITS };
let budget = new WindowBudget(limits.windowMemoryMax);

/** The daemon's limits, at start and on reload (what is already held stays counted). */
export function configureWindows(next: WindowLimits): void {
  limits = { ...next };
  budget.max = next.windowMemoryMax;
}

/** The daemon-wide budget (for status and tests). */
export function windowBudget(): WindowBudget {
  return budget;
}

/** A fresh budget: for tests that need the daemon-wide state reset. */
export function resetWindows(next: WindowLimits = DEFAULT_WINDOW_LIMITS): void {
  limits = { ...next };
  budget = new WindowBudget(next.windowMemoryMax);
}

export interface SizerOptions {
  /** The size it starts at and never goes below. */
  base: number;
  ceiling: number;
  budget: WindowBudget;
  /** Of the size, the part a sender may have in flight before more is granted (ssh2's half; a quarter used when grown). */
  inFlight(size: number): number;
  now?: () => number;
}

/**
 * One amount in flight (a window, a request depth), sized to its link: fed
 * with every delivery, it says when the amount should change.
 */
export class InFlightSizer {
  size: number;
  private epochStart: number | undefined;
  private epochBytes = 0;
  private keptUp = true;
  private readonly now: () => number;
  private released = false;

  constructor(private readonly opts: SizerOptions) {
    this.size = opts.base;
    this.now = opts.now ?? (() => performance.now());
  }

  /**
   * `bytes` arrived; `keptUp`: the reader had taken what came before. With
   * the link's round trip known, returns true when the size changed.
   */
  delivered(bytes: number, rttMs: number | undefined, keptUp: boolean): boolean {
    if (this.released) return false;
    const now = this.now();
    if (this.epochStart === undefined) {
      // The epoch starts with the first delivery: the time before it is the request's, not the link's.
      this.epochStart = now;
      return false;
    }
    this.epochBytes += bytes;
    this.keptUp &&= keptUp;
    if (rttMs === undefined) return false;
    const elapsed = now - this.epochStart;
    if (elapsed < Math.max(2 * rttMs, MIN_EPOCH_MS)) return false;
    const bdp = (this.epochBytes / elapsed) * rttMs;
    const limiting = bdp >= 0.8 * this.opts.inFlight(this.size);
    let next = this.size;
    if (limiting && this.keptUp) next = this.size * 2;
    else if (bdp < this.size / 4) next = 2 * bdp;
    this.epochStart = now;
    this.epochBytes = 0;
    this.keptUp = true;
    return this.resize(next);
  }

  /** Gives back what it holds beyond the base (the channel or transfer ended). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.opts.budget.give(this.size - this.opts.base);
    this.size = this.opts.base;
  }

  private resize(wanted: number): boolean {
    const { base, ceiling } = this.opts;
    let next = Math.max(base, Math.min(ceiling, Math.ceil(wanted / STEP) * STEP));
    if (next > this.size) next = this.size + this.opts.budget.take(next - this.size);
    else this.opts.budget.give(this.size - next);
    // Not for less than an eighth: each change costs a window adjust.
    if (Math.abs(next - this.size) < this.size / 8 && next !== base) {
      if (next > this.size) this.opts.budget.give(next - this.size);
      else this.opts.budget.take(this.size - next);
      return false;
    }
    const changed = next !== this.size;
    this.size = next;
    return changed;
  }
}

/** ssh2's rule at the base (more once half is used), a quarter above it: in flight, half or three quarters of the size. */
export function channelInFlight(size: number): number {
  return size > BASE_WINDOW ? size * 0.75 : size / 2;
}

/** The level at which more is granted, for a window of `size`. */
function grantAt(size: number): number {
  return size > BASE_WINDOW ? size * 0.75 : size / 2;
}

/** A sizer for one channel's receive window, from the daemon's limits. */
export function channelSizer(now?: () => number): InFlightSizer {
  return new InFlightSizer({ base: BASE_WINDOW, ceiling: Math.max(BASE_WINDOW, limits.channelWindowMax), budget, inFlight: channelInFlight, now });
}

/** A sizer for the reads (or writes) one SFTP transfer keeps in flight, from `base` bytes. */
export function requestSizer(base: number, now?: () => number): InFlightSizer {
  return new InFlightSizer({ base, ceiling: Math.max(base, limits.channelWindowMax), budget, inFlight: (size) => size, now });
}

/**
 * Sets an SFTP session's receive window to carry `inFlight` bytes of
 * answers at once: ssh2's own window while that is at most half of it, else
 * one that grants more once a quarter is used, with room for the packets'
 * headers. The memory is the transfer's requests' (its sizer's budget).
 */
export function setWindowFor(channel: ReceivingChannel, inFlight: number): void {
  if (inFlight <= BASE_WINDOW / 2) {
    setReceiveWindow(channel, BASE_WINDOW, BASE_WINDOW / 2);
    return;
  }
  const size = Math.ceil((inFlight * 4 / 3 + STEP) / STEP) * STEP;
  setReceiveWindow(channel, size, grantAt(size));
}

/**
 * The link each channel rides (set where it is opened), for whoever reads
 * it: a property of our own on the channel, under a symbol, rather than a
 * WeakMap entry, which cost every exec an ephemeron for the collector.
 */
const LINK = Symbol('sshmux.link');

export function rememberLink(channel: object, link: LinkRtt): void {
  (channel as { [LINK]?: LinkRtt })[LINK] = link;
}

export function linkOf(channel: object): LinkRtt | undefined {
  return (channel as { [LINK]?: LinkRtt })[LINK];
}

/**
 * Sizes the receive window of a channel the daemon reads from (a command's
 * output, a forwarding channel, a front-door client's stdin) to its
 * connection's link, for as long as it is open. Called once the channel's reader listens: listening here
 * first would start the data flowing before anyone takes it. The reader
 * keeps up while the channel holds less than half its window unread: a
 * reader that pauses for a moment (its own window, on the next hop, full)
 * leaves some behind, but one that cannot keep up lets the window's worth
 * pile up, and the window then stops growing.
 */
export function sizeReceiveWindow(channel: ClientChannel | ServerChannel, link: LinkRtt | undefined = linkOf(channel)): void {
  // Within a millisecond ssh2's own window carries 2 GB/s, more than the daemon moves: no sizer, no cost per chunk.
  if (!link || (link.ms !== undefined && link.ms < SIZED_FROM_RTT_MS)) return;
  const sizer = channelSizer();
  // A client channel's stderr is output too; a server channel's is ours to write.
  const stderr = channel.stderr && 'readableLength' in channel.stderr ? channel.stderr as Readable : undefined;
  const onData = (d: Buffer): void => {
    const unread = channel.readableLength + (stderr?.readableLength ?? 0);
    if (sizer.delivered(d.length, link.ms, unread < sizer.size / 2)) setReceiveWindow(channel, sizer.size, grantAt(sizer.size));
  };
  channel.on('data', onData);
  stderr?.on('data', onData);
  channel.once('close', () => sizer.release());
}
