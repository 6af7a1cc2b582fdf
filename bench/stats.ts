// Small measures the benches share: quantiles of sorted samples, rounding
// for the tables, failures counted by kind, and timing a step run after run.

/** The q-quantile of ascending samples (nearest rank, no interpolation). */
export function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** To `digits` decimals (two, as the tables print). */
export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Failures counted by kind (digits as N, the first `width` characters): "3× ssh: exit 255 ...". */
export function failureKinds(failures: string[], width: number): string[] {
  const counts = new Map<string, number>();
  for (const f of failures) {
    const key = f.replace(/\d+/g, 'N').slice(0, width);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([k, v]) => `${v}× ${k}`);
}

/** `once` run `runs` times in a row: each run's wall time, ms. */
export async function timed(runs: number, once: () => Promise<unknown>): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await once();
    times.push(performance.now() - t0);
  }
  return times;
}
