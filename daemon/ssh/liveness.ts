// Whether a pooled connection's link still carries anything: ssh's
// ServerAliveInterval and ServerAliveCountMax, kept by the pool rather than
// by ssh2. A link that is cut without a word (a partition, a dead NAT entry,
// a frozen VM: no FIN, no RST) looks from here like a server with nothing to
// say; TCP alone would notice only after minutes of retransmissions.
//
// Silence is the time since the last byte arrived, whatever it was. After
// each interval of it a keepalive request goes out (any answer ends the
// silence), the last one half an interval before the deadline; once the
// silence reaches ServerAliveInterval x ServerAliveCountMax the link is
// given up, and the caller learns for how long it was silent. The last
// keepalive's half interval to be answered keeps the bound the product
// itself, even with a count of 1; ssh2's own keepalive (not used) could take
// a whole interval more.
//
// A byte arriving costs a clock read; the one timer is moved only when it
// fires.

export interface LivenessOptions {
  intervalMs: number;
  countMax: number;
  /** Sends a keepalive request (its answer arrives as bytes like any other). */
  ping(): void;
  /** Nothing arrived for `silentMs`, at least intervalMs x countMax: the link is gone. */
  dead(silentMs: number): void;
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (timer: unknown) => void;
}

export class LinkWatch {
  private lastHeard: number;
  /** Keepalives sent since the last byte arrived. */
  private pings = 0;
  private timer: unknown;
  private stopped = false;
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (timer: unknown) => void;

  constructor(private readonly opts: LivenessOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.setTimer = opts.setTimer ?? ((fn, ms) => setTimeout(fn, ms).unref());
    this.clearTimer = opts.clearTimer ?? ((t) => clearTimeout(t as NodeJS.Timeout));
    this.lastHeard = this.now();
    this.arm();
  }

  /** Bytes arrived. */
  heard(): void {
    this.lastHeard = this.now();
    this.pings = 0;
  }

  /** How long nothing has arrived, ms. */
  get silentMs(): number {
    return this.now() - this.lastHeard;
  }

  /** The limit on silence, ms: ServerAliveInterval x ServerAliveCountMax. */
  get limitMs(): number {
    return this.opts.intervalMs * this.opts.countMax;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clearTimer(this.timer);
    this.timer = undefined;
  }

  /** How long after the last byte the next keepalive is due: each interval, the last half an interval before the deadline. */
  private nextPingAfter(): number {
    return Math.min(this.pings + 1, this.opts.countMax - 0.5) * this.opts.intervalMs;
  }

  /** When the next keepalive or the deadline is due. */
  private dueAt(): number {
    return this.lastHeard + (this.pings < this.opts.countMax ? this.nextPingAfter() : this.limitMs);
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer = this.setTimer(() => this.check(), Math.max(0, this.dueAt() - this.now()));
  }

  private check(): void {
    this.timer = undefined;
    if (this.stopped) return;
    const silent = this.silentMs;
    if (silent >= this.limitMs) {
      this.stopped = true;
      this.opts.dead(silent);
      return;
    }
    if (this.pings < this.opts.countMax && silent >= this.nextPingAfter()) {
      this.pings++;
      this.opts.ping();
    }
    this.arm();
  }
}
