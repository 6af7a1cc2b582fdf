// Time for the pool's timers. Passed in (the system clock by default) so
// that unit tests drive scheduling, backoff and the breaker with a fake
// clock in microseconds instead of waiting for real seconds.
import { deadline, type Deadline } from '../deadlines';

export interface Clock {
  now(): number;
  /** Pool timers never keep the process alive by themselves. */
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => deadline(fn, ms),
  clearTimeout: (timer) => (timer as Deadline | undefined)?.cancel(),
};
