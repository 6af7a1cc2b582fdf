// Numbers given to a bench on its command line. A value that is not one is
// named, with what to give, before anything starts: Number('x') would have
// run a bench of NaN rounds, or none.

/** A count, or a size in whole units: a whole number of at least `least` (1 unless given). */
export function wholeNumber(option: string, value: string | undefined, least = 1): number {
  const n = Number(value);
  if (value === undefined || value.trim() === '' || !Number.isInteger(n) || n < least) {
    throw new Error(`--${option} ${value ?? '(missing)'}: give a whole number of at least ${least}`);
  }
  return n;
}

/** A length of time: a number above 0, fractions allowed. */
export function positiveNumber(option: string, value: string | undefined): number {
  const n = Number(value);
  if (value === undefined || value.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw new Error(`--${option} ${value ?? '(missing)'}: give a number above 0`);
  }
  return n;
}
