// Time for the pool's timers. Passed in (the system clock by default) so
// that unit tests drive scheduling, backoff and the breaker with a fake
// clock in microseconds instead of waiting for real seconds.
export interface Clock {
  now(): number;
  /** Pool timers never keep the process alive by themselves. */
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout | undefined),
};
