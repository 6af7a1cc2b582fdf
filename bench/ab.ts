// npm run bench:ab -- --daemon-main OTHER/dist/daemon/main.js [--rounds N] [--batch N] [--warm N] [--quick] [--json] [--out FILE]:
// this build's daemon against another build's, CPU per warm exec, side by
// side: a before and after of one change, where bench:cpu's ratio to a bare
// client moves by more from run to run (1.29-1.52x on one build) than most
// changes do.
//
// Two daemons on one sshd, each with an SDK client of its own (both in this
// process, which is not measured), warmed up alike (execs alternating in
// chunks), then rounds of `batch` execs each side, in alternating order; a
// daemon's CPU is its threads' run time from the kernel, read around its
// batch. Each round gives the ratio this / other of two batches run within a
// second of each other, so a machine whose speed drifts weighs on both; the
// result is the geometric mean of the rounds' ratios, with a 95 % interval
// (two standard errors of the mean log ratio).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { SshMux } from '../client-sdk';
import { startDaemon, type DaemonProc } from '../test/helpers/daemon';
import { cleanupAll, startSshd, tempDir, writeClientConfig } from '../test/helpers/sshd';
import { wholeNumber } from './options';
import { cpuSeconds } from './proc-cpu';
import { loadAverage, machine, writeResult } from './results';
import { quantile, round } from './stats';
import { table } from './table';

const THIS_MAIN = path.join(__dirname, '..', 'daemon', 'main.js');

export interface AbOptions {
  /** The other build's dist/daemon/main.js. */
  otherMain: string;
  rounds: number;
  batch: number;
  /** Execs each side before the rounds (bench/cpu.ts says why 30,000 settles V8; fewer suffices when both sides warm alike). */
  warm: number;
  progress?: (line: string) => void;
}

export interface AbSide {
  main: string;
  /** CPU per exec over the rounds, µs. */
  us_per_exec: { median: number; mean: number; min: number; max: number };
}

export interface AbResult {
  node: string;
  rounds: number;
  batch: number;
  warmup_execs: number;
  load_average: { start: number[]; end: number[] };
  this: AbSide;
  other: AbSide;
  /** this / other: the geometric mean of the rounds' ratios and its 95 % interval. */
  ratio: { geometric_mean: number; low: number; high: number; median: number };
}

interface Side {
  main: string;
  daemon: DaemonProc;
  mux: SshMux;
  perExec: number[];
}

export async function abCost(opts: AbOptions): Promise<AbResult> {
  const say = opts.progress ?? (() => {});
  const loadStart = loadAverage();
  const sshd = await startSshd({ maxSessions: 10, maxStartups: '10:30:100', loginGraceTime: 60 });
  const dir = tempDir();
  const { sshConfigPath } = writeClientConfig(dir, [{ alias: 'bench', sshd }]);
  const sides: Side[] = [];
  try {
    for (const [name, main] of [['this', THIS_MAIN], ['other', opts.otherMain]] as const) {
      const daemon = await startDaemon({ dir, sshConfigPath, main, socket: path.join(dir, `${name}.sock`) });
      const mux = await SshMux.connect({ socket: daemon.socket });
      sides.push({ main, daemon, mux, perExec: [] });
    }
    const run = async (side: Side, n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        const r = await side.mux.exec('bench', 'true');
        if (r.code !== 0) throw new Error(`exec through ${side.main} exited ${r.code}: ${r.stderr.toString()}`);
      }
    };
    const chunk = 500;
    for (let done = 0; done < opts.warm; done += chunk) {
      for (const side of sides) await run(side, Math.min(chunk, opts.warm - done));
      if ((done + chunk) % 5000 === 0) say(`warm-up: ${done + chunk} of ${opts.warm} execs each side`);
    }
    for (let n = 0; n < opts.rounds; n++) {
      for (const side of n % 2 ? [...sides].reverse() : sides) {
        const before = cpuSeconds(side.daemon.pid);
        await run(side, opts.batch);
        side.perExec.push(((cpuSeconds(side.daemon.pid) - before) * 1e6) / opts.batch);
      }
      if ((n + 1) % 20 === 0) say(`round ${n + 1} of ${opts.rounds}`);
    }
  } finally {
    for (const side of sides) {
      side.mux.close();
      await side.daemon.stop();
    }
  }
  const [mine, other] = sides;
  const logs = mine.perExec.map((x, i) => Math.log(x / other.perExec[i]));
  const mean = logs.reduce((a, b) => a + b, 0) / logs.length;
  const sd = Math.sqrt(logs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, logs.length - 1));
  const se = sd / Math.sqrt(logs.length);
  return {
    node: process.version,
    rounds: opts.rounds,
    batch: opts.batch,
    warmup_execs: opts.warm,
    load_average: { start: loadStart, end: loadAverage() },
    this: summarize(mine),
    other: summarize(other),
    ratio: {
      geometric_mean: round(Math.exp(mean), 3),
      low: round(Math.exp(mean - 2 * se), 3),
      high: round(Math.exp(mean + 2 * se), 3),
      median: round(quantile(logs.map(Math.exp).sort((a, b) => a - b), 0.5), 3),
    },
  };
}

function summarize(side: Side): AbSide {
  const sorted = [...side.perExec].sort((a, b) => a - b);
  return {
    main: side.main,
    us_per_exec: {
      median: round(quantile(sorted, 0.5), 1),
      mean: round(sorted.reduce((a, b) => a + b, 0) / sorted.length, 1),
      min: round(sorted[0], 1),
      max: round(sorted[sorted.length - 1], 1),
    },
  };
}

export function abTable(r: AbResult): string {
  const row = (label: string, s: AbSide): string[] =>
    [label, s.main, String(s.us_per_exec.median), String(s.us_per_exec.mean), `${s.us_per_exec.min}–${s.us_per_exec.max}`];
  return [
    `Daemon CPU per warm exec, this build against another, Node ${r.node}: ${r.rounds} rounds of ${r.batch} execs each side after ${r.warmup_execs}; ` +
      `load average ${r.load_average.start.join(' ')} at the start, ${r.load_average.end.join(' ')} at the end`,
    table(['daemon', 'main.js', 'median µs', 'mean µs', 'rounds\' range µs'], [row('this', r.this), row('other', r.other)]),
    `this / other: ${r.ratio.geometric_mean}x (geometric mean of the rounds; 95 % interval ${r.ratio.low}–${r.ratio.high}x; median ${r.ratio.median}x)`,
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'daemon-main': { type: 'string' }, rounds: { type: 'string' }, batch: { type: 'string' },
    warm: { type: 'string' }, quick: { type: 'boolean' }, json: { type: 'boolean' }, out: { type: 'string' } } });
  const otherMain = values['daemon-main'] && path.resolve(values['daemon-main']);
  if (!otherMain || !fs.existsSync(otherMain)) {
    throw new Error(`--daemon-main ${values['daemon-main'] ?? '(missing)'}: give the other build's dist/daemon/main.js ` +
      '(e.g. a clone of main: git clone . /tmp/main && cd /tmp/main && npm ci && npm run build)');
  }
  const quick = !!values.quick;
  const opts: AbOptions = {
    otherMain,
    rounds: wholeNumber('rounds', values.rounds ?? String(quick ? 10 : 120)),
    batch: wholeNumber('batch', values.batch ?? String(quick ? 100 : 300)),
    warm: wholeNumber('warm', values.warm ?? String(quick ? 1000 : 20_000)),
    progress: (line) => process.stderr.write(`${line}\n`),
  };
  process.stderr.write(`sshmux bench:ab${quick ? ' (quick)' : ''}, Node ${process.version} ...\n`);
  const ab = await abCost(opts);
  await cleanupAll();
  const result = {
    date: new Date().toISOString(),
    machine: machine(),
    quick,
    ab,
  };
  console.log(abTable(ab));
  const outFile = writeResult(result, { prefix: 'ab-', quick, out: values.out });
  console.log(`\nwrote ${outFile}`);
  if (values.json) console.log(JSON.stringify(result));
}

if (require.main === module) {
  // Interrupted, exit through 'exit', whose handlers (test/helpers) stop the daemons and sshd started here.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  main().catch((err) => {
    console.error(`bench:ab failed: ${(err as Error).stack ?? err}`);
    cleanupAll().finally(() => process.exit(1));
  });
}
