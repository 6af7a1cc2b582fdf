// What every bench records beside its figures, and where it writes them:
// the machine, and bench/results/PREFIX<date>[-quick].json.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { round } from './stats';

const RESULTS = path.join(__dirname, '..', '..', 'bench', 'results');

/** The machine a result was measured on. */
export function machine(): { cpus: number; cpu: string; memory_gib: number; node: string; kernel: string } {
  return { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? '', memory_gib: Math.round(os.totalmem() / 2 ** 30), node: process.version, kernel: os.release() };
}

/** The load averages, to two decimals: how busy the machine was around a measurement. */
export function loadAverage(): number[] {
  return os.loadavg().map((x) => round(x));
}

/** What a result opens with: when, on what machine, and its load averages from `loadAtStart` (loadAverage()) to now. */
export function measuredOn(loadAtStart: number[]): { date: string; machine: ReturnType<typeof machine>; load_average: { start: number[]; end: number[] } } {
  return { date: new Date().toISOString(), machine: machine(), load_average: { start: loadAtStart, end: loadAverage() } };
}

/** Writes `result` as JSON to `out`, else to bench/results/ named by its date; returns the file's path. */
export function writeResult(result: { date: string }, opts: { prefix: string; quick?: boolean; out?: string }): string {
  const file = opts.out ?? path.join(RESULTS, `${opts.prefix}${result.date.slice(0, 19).replace(/:/g, '')}${opts.quick ? '-quick' : ''}.json`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}
