// npm run bench:cpu [-- --quick] [-- --daemon-flags="--flag ..."] [-- --cross-check DIR]:
// the CPU the daemon spends per unit of work against what a bare ssh2 client
// spends on the same work, as the user's machine sees it. Also the last
// section of `npm run bench`.
//
// Three processes, each doing nothing else: sshmuxd (started as `sshmuxd`
// starts, with no node flags unless --daemon-flags gives some), a program
// using the SDK, and a bare ssh2 client on one connection with TCP_NODELAY
// (bench/cpu-worker.ts). Every CPU figure is the kernel's (the threads' run
// time from /proc/PID/task/*/schedstat), read around each batch; the SDK
// client's own CPU is reported too, since a program using the SDK pays it.
// The sides alternate (every 50 or 100 execs, every stream), so that a
// machine whose speed drifts, or that other work shares, weighs on both.
//
// Cold: a fresh daemon's (and fresh clients') first 2,000 execs, and first
// GiB of output, each from a daemon of its own, repeated. Warm: one daemon
// after 30,000 execs and 1 GiB each side, then repetitions of 500 execs and
// of 256 MiB. 30,000 because V8 is still optimizing both sides' hot paths at
// 10,000 (it tiers a function called once per exec up to TurboFan after
// thousands of calls) and their CPU per exec falls until about 25,000; the
// warm-up curve, reported in chunks of 2,500, shows it. Ranges are over the
// repetitions.
//
// --cross-check DIR runs the scripts in DIR (cpu-per-exec.mjs and
// cpu-per-gib.mjs, see ../shared/measure) against fresh daemons of the same
// session, so the two methods can be held side by side.
import { execFile, fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { startDaemon, type DaemonProc } from '../test/helpers/daemon';
import { cleanupAll, startSshd, tempDir, writeClientConfig, type Sshd } from '../test/helpers/sshd';
import type { WorkerConfig, WorkerKind, WorkerReply, WorkerRequest } from './cpu-worker';
import { cpuSeconds, sshdTreeSeconds } from './proc-cpu';
import { loadAverage, machine, writeResult } from './results';
import { table } from './table';
import { quantile, round } from './stats';

const WORKER = path.join(__dirname, 'cpu-worker.js');
const ROOT = path.join(__dirname, '..', '..');
const MiB = 1024 * 1024;
/** Execs each side before the warm measures: V8 has settled by then (above). */
const WARM_EXECS = 30_000;

export interface CpuOptions {
  quick: boolean;
  /** Node flags the daemon is started with (none: as `sshmuxd` starts). */
  daemonFlags: string[];
  /** Another build's dist/daemon/main.js to measure instead of this one's (a before and after). */
  daemonMain?: string;
  /** A directory holding cpu-per-exec.mjs and cpu-per-gib.mjs, run as a cross-check. */
  crossCheck?: string;
  /** Progress lines go here. */
  progress?: (line: string) => void;
}

/** [min, max], rounded. */
export type Range = [number, number];

/** One measure over its repetitions: per side, the ranges and the ratio of the totals. */
export interface Measure {
  repetitions: number;
  daemon: Range;
  sdk_client: Range;
  ssh2_client: Range;
  /** sshd's processes (connection, session, command) for each side: the same work, so about equal. */
  sshd_for_daemon: Range;
  sshd_for_ssh2: Range;
  /** daemon / bare client, per repetition. */
  ratio: Range;
  ratio_total: number;
  /** (daemon + SDK client) / bare client, of the totals: what sshmux costs the machine in all. */
  with_client_ratio_total: number;
}

export interface CpuResult {
  node: string;
  daemon_flags: string[];
  /** The daemon measured, when not this build's. */
  daemon_main?: string;
  load_average: { start: number[]; end: number[] };
  cold: {
    /** Per exec, ms: a fresh daemon's first execs. */
    exec: Measure & { execs: number; batch: number };
    /** Per GiB, CPU-seconds: a fresh daemon's first GiB. */
    gib: Measure & { mib: number };
  };
  warm: {
    exec: Measure & { execs: number; batch: number; warmup_execs: number };
    gib: Measure & { mib_per_batch: number; warmup_mib: number };
    /** CPU per exec over the warm-up, per chunk of execs (daemon / bare, ms). */
    warmup: { after_execs: number; daemon_ms: number; ssh2_ms: number }[];
    exec_p50_ms: { sdk: number; ssh2: number; ratio: number };
    stream_mib_s: { sdk: Range; ssh2: Range; ratio: Range };
  };
  /** VmHWM of the daemon that streamed the warm section (execs, then 4 GiB and more). */
  daemon_peak_rss_mib: number;
  /** The scripts' own JSON lines, if --cross-check ran them. */
  cross_check?: Record<string, unknown>;
}

// ---- the three processes -----------------------------------------------------

class Worker {
  private constructor(readonly kind: WorkerKind, private readonly child: ChildProcess) {}

  get pid(): number {
    return this.child.pid!;
  }

  static async start(kind: WorkerKind, config: WorkerConfig): Promise<Worker> {
    // No flags from the bench's own command line: each side runs as a plain `node`.
    const child = fork(WORKER, [kind, JSON.stringify(config)], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const worker = new Worker(kind, child);
    const first = await worker.reply();
    if (!('ready' in first)) throw new Error(`${kind} client: ${'error' in first ? first.error : 'did not start'}`);
    return worker;
  }

  async ask(req: WorkerRequest): Promise<{ times?: number[]; ms?: number }> {
    this.child.send(req);
    const r = await this.reply();
    if ('error' in r) throw new Error(`${this.kind} client: ${r.error}`);
    return r as { times?: number[]; ms?: number };
  }

  private reply(): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.kind} client: no answer within 10 minutes`));
      }, 600_000);
      const onMessage = (m: WorkerReply): void => {
        cleanup();
        resolve(m);
      };
      const onExit = (code: number | null): void => {
        cleanup();
        reject(new Error(`${this.kind} client exited (${code})`));
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        this.child.off('message', onMessage);
        this.child.off('exit', onExit);
      };
      this.child.once('message', onMessage);
      this.child.once('exit', onExit);
    });
  }

  stop(): void {
    if (this.child.connected) this.child.send({ op: 'quit' } satisfies WorkerRequest);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    timer.unref();
  }
}

interface World { sshd: Sshd; dir: string; sshConfigPath: string }

/** A daemon, an SDK client and a bare client, all fresh. */
interface Trio { daemon: DaemonProc; sdk: Worker; ssh2: Worker }

async function startTrio(world: World, opts: CpuOptions): Promise<Trio> {
  const daemon = await startDaemon({ dir: world.dir, sshConfigPath: world.sshConfigPath, nodeFlags: opts.daemonFlags, main: opts.daemonMain,
    socket: path.join(world.dir, `d-${Date.now()}-${Math.random().toString(16).slice(2, 6)}.sock`) });
  const config: WorkerConfig = { socket: daemon.socket, alias: 't', port: world.sshd.port, user: world.sshd.user.name, keyPath: world.sshd.clientKeyPath };
  const [sdk, ssh2] = await Promise.all([Worker.start('sdk', config), Worker.start('ssh2', config)]);
  return { daemon, sdk, ssh2 };
}

async function stopTrio(t: Trio): Promise<void> {
  t.sdk.stop();
  t.ssh2.stop();
  await t.daemon.stop();
}

/** CPU seconds each process spent on one request to one side. */
interface Spent { daemon: number; sdk: number; ssh2: number; sshd: number; times?: number[]; ms?: number }

async function measured(t: Trio, world: World, side: 'sdk' | 'ssh2', req: WorkerRequest): Promise<Spent> {
  const worker = side === 'sdk' ? t.sdk : t.ssh2;
  const d0 = cpuSeconds(t.daemon.pid);
  const w0 = cpuSeconds(worker.pid);
  const s0 = sshdTreeSeconds(world.sshd.pid);
  const r = await worker.ask(req);
  const spent = { daemon: cpuSeconds(t.daemon.pid) - d0, sdk: 0, ssh2: 0, sshd: sshdTreeSeconds(world.sshd.pid) - s0, ...r };
  spent[side] = cpuSeconds(worker.pid) - w0;
  return spent;
}

/** Per-repetition sums of each process's CPU, for the SDK's turns and the bare client's. */
class Tally {
  daemon: number[] = [];
  sdk: number[] = [];
  ssh2: number[] = [];
  sshdForDaemon: number[] = [];
  sshdForSsh2: number[] = [];

  add(sdkTurn: Spent[], ssh2Turn: Spent[], per: number): void {
    const sum = (xs: Spent[], f: (s: Spent) => number): number => xs.reduce((a, s) => a + f(s), 0) / per;
    this.daemon.push(sum(sdkTurn, (s) => s.daemon));
    this.sdk.push(sum(sdkTurn, (s) => s.sdk));
    this.ssh2.push(sum(ssh2Turn, (s) => s.ssh2));
    this.sshdForDaemon.push(sum(sdkTurn, (s) => s.sshd));
    this.sshdForSsh2.push(sum(ssh2Turn, (s) => s.sshd));
  }

  /** Ranges in `unit`s (1000: ms from seconds). */
  measure(unit: number, digits: number): Measure {
    const scaled = (xs: number[]): number[] => xs.map((x) => x * unit);
    const total = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
    return {
      repetitions: this.daemon.length,
      daemon: range(scaled(this.daemon), digits),
      sdk_client: range(scaled(this.sdk), digits),
      ssh2_client: range(scaled(this.ssh2), digits),
      sshd_for_daemon: range(scaled(this.sshdForDaemon), digits),
      sshd_for_ssh2: range(scaled(this.sshdForSsh2), digits),
      ratio: range(this.daemon.map((d, i) => d / this.ssh2[i]), 2),
      ratio_total: round(total(this.daemon) / total(this.ssh2), 2),
      with_client_ratio_total: round((total(this.daemon) + total(this.sdk)) / total(this.ssh2), 2),
    };
  }
}

/** n execs each side, alternating every `batch`: the CPU per exec of each, in seconds; latencies into `times`. */
async function execTurns(t: Trio, world: World, n: number, batch: number, times?: { sdk: number[]; ssh2: number[] }): Promise<{ sdk: Spent[]; ssh2: Spent[] }> {
  const out = { sdk: [] as Spent[], ssh2: [] as Spent[] };
  for (let done = 0; done < n; done += batch) {
    const a = await measured(t, world, 'sdk', { op: 'exec', n: batch });
    const b = await measured(t, world, 'ssh2', { op: 'exec', n: batch });
    out.sdk.push(a);
    out.ssh2.push(b);
    times?.sdk.push(...a.times!);
    times?.ssh2.push(...b.times!);
  }
  return out;
}

async function streamTurns(t: Trio, world: World, mib: number, count: number): Promise<{ sdk: Spent[]; ssh2: Spent[] }> {
  const out = { sdk: [] as Spent[], ssh2: [] as Spent[] };
  for (let k = 0; k < count; k++) {
    out.sdk.push(await measured(t, world, 'sdk', { op: 'stream', bytes: mib * MiB }));
    out.ssh2.push(await measured(t, world, 'ssh2', { op: 'stream', bytes: mib * MiB }));
  }
  return out;
}

// ---- the section ---------------------------------------------------------------

export async function cpuCost(opts: CpuOptions): Promise<CpuResult> {
  const say = opts.progress ?? (() => {});
  const q = opts.quick;
  const coldRepetitions = q ? 1 : 3;
  const coldExecs = 2000;
  const coldBatch = 100;
  const warmExecs = q ? 2000 : WARM_EXECS;
  const warmChunk = q ? 500 : 2500;
  const repetitions = q ? 4 : 10;
  const execs = q ? 300 : 500;
  const execBatch = 50;
  const mib = q ? 64 : 256;
  const loadStart = loadAverage();

  const sshd = await startSshd({ maxSessions: 10, maxStartups: '10:30:100', loginGraceTime: 60 });
  const dir = tempDir();
  // Host "t": what the shared scripts ask the daemon for.
  const { sshConfigPath } = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const world: World = { sshd, dir, sshConfigPath };
  try {
    const coldExec = new Tally();
    const coldGib = new Tally();
    for (let r = 0; r < coldRepetitions; r++) {
      say(`  cold execs, fresh daemon ${r + 1} of ${coldRepetitions}`);
      let t = await startTrio(world, opts);
      try {
        const turns = await execTurns(t, world, coldExecs, coldBatch);
        coldExec.add(turns.sdk, turns.ssh2, coldExecs);
      } finally {
        await stopTrio(t);
      }
      say(`  cold GiB, fresh daemon ${r + 1} of ${coldRepetitions}`);
      t = await startTrio(world, opts);
      try {
        // The first GiB, as 4 streams each side, alternating.
        const turns = await streamTurns(t, world, 256, 4);
        coldGib.add(turns.sdk, turns.ssh2, 1);
      } finally {
        await stopTrio(t);
      }
    }

    say(`  warm: ${warmExecs} execs each side first`);
    const t = await startTrio(world, opts);
    try {
      const warmup: CpuResult['warm']['warmup'] = [];
      for (let done = 0; done < warmExecs; done += warmChunk) {
        const turns = await execTurns(t, world, warmChunk, warmChunk);
        warmup.push({ after_execs: done + warmChunk, daemon_ms: round(turns.sdk[0].daemon * 1000 / warmChunk, 3),
          ssh2_ms: round(turns.ssh2[0].ssh2 * 1000 / warmChunk, 3) });
      }
      say(`  warm execs: ${repetitions} x ${execs}`);
      const warmExec = new Tally();
      const times = { sdk: [] as number[], ssh2: [] as number[] };
      for (let k = 0; k < repetitions; k++) {
        const turns = await execTurns(t, world, execs, execBatch, times);
        warmExec.add(turns.sdk, turns.ssh2, execs);
      }
      say(`  warm GiB: 1 GiB each side first, then ${repetitions} x ${mib} MiB`);
      await streamTurns(t, world, 256, 4);
      const warmGib = new Tally();
      const rates = { sdk: [] as number[], ssh2: [] as number[] };
      for (let k = 0; k < repetitions; k++) {
        const turns = await streamTurns(t, world, mib, 1);
        warmGib.add(turns.sdk, turns.ssh2, mib / 1024);
        rates.sdk.push(mib / (turns.sdk[0].ms! / 1000));
        rates.ssh2.push(mib / (turns.ssh2[0].ms! / 1000));
      }
      const p50 = (xs: number[]): number => quantile([...xs].sort((a, b) => a - b), 0.5);
      const result: CpuResult = {
        node: process.version,
        daemon_flags: opts.daemonFlags,
        daemon_main: opts.daemonMain,
        load_average: { start: loadStart, end: [] },
        cold: {
          exec: { ...coldExec.measure(1000, 3), execs: coldExecs, batch: coldBatch },
          gib: { ...coldGib.measure(1, 2), mib: 1024 },
        },
        warm: {
          exec: { ...warmExec.measure(1000, 3), execs, batch: execBatch, warmup_execs: warmExecs },
          gib: { ...warmGib.measure(1, 2), mib_per_batch: mib, warmup_mib: 1024 },
          warmup,
          exec_p50_ms: { sdk: round(p50(times.sdk), 2), ssh2: round(p50(times.ssh2), 2), ratio: round(p50(times.sdk) / p50(times.ssh2), 2) },
          stream_mib_s: { sdk: range(rates.sdk, 0), ssh2: range(rates.ssh2, 0), ratio: range(rates.sdk.map((x, i) => x / rates.ssh2[i]), 2) },
        },
        daemon_peak_rss_mib: round(t.daemon.peakRssMiB(), 1),
      };
      await stopTrio(t);
      if (opts.crossCheck) result.cross_check = await crossCheck(world, opts, say);
      result.load_average.end = loadAverage();
      return result;
    } catch (err) {
      await stopTrio(t);
      throw err;
    }
  } finally {
    await sshd.stop();
  }
}

/**
 * The shared scripts against fresh daemons of this session: per exec cold
 * (50 execs first, then 2,000) and warm (WARM as the bench's warm-up, then 3,000), per GiB
 * twice on one daemon (its first GiB, then its second).
 */
async function crossCheck(world: World, opts: CpuOptions, say: (line: string) => void): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { dir: opts.crossCheck };
  const run = async (name: string, script: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<void> => {
    say(`  cross-check: ${name}`);
    const daemon = await startDaemon({ dir: world.dir, sshConfigPath: world.sshConfigPath, nodeFlags: opts.daemonFlags, main: opts.daemonMain,
      socket: path.join(world.dir, `x-${Date.now()}.sock`) });
    try {
      const base = [world.sshd.port, world.sshd.user.name, world.sshd.clientKeyPath, daemon.pid].map(String);
      const lines: unknown[] = [];
      for (const extra of args) {
        lines.push(await script2json(path.join(opts.crossCheck!, script), [...base, ...(extra ? [extra] : [])], { SSHMUX_SOCKET: daemon.socket, ...env }));
      }
      out[name] = lines.length === 1 ? lines[0] : lines;
    } finally {
      await daemon.stop();
    }
  };
  await run('exec_cold', 'cpu-per-exec.mjs', ['2000']);
  await run('exec_warm', 'cpu-per-exec.mjs', ['3000'], { WARM: String(WARM_EXECS) });
  // The same daemon twice: its first GiB (cold), then its second.
  await run('gib_first_then_second', 'cpu-per-gib.mjs', ['', '']);
  return out;
}

/** Runs a script from the project's root, as its header asks, and parses its last line of output. */
function script2json(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<unknown> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, ...args], { cwd: ROOT, env: { ...process.env, ...env }, timeout: 900_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${path.basename(script)}: ${err.message}\n${stderr}`));
      const last = stdout.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(last));
      } catch {
        reject(new Error(`${path.basename(script)} printed no JSON: ${stdout}`));
      }
    });
  });
}

// ---- output ---------------------------------------------------------------------

export function cpuTable(r: CpuResult): string {
  const f = (x: Range, unit: string): string => (x[0] === x[1] ? `${x[0]}${unit}` : `${x[0]}–${x[1]}${unit}`);
  const row = (label: string, m: Measure, unit: string): string[] =>
    [label, f(m.daemon, unit), f(m.sdk_client, unit), f(m.ssh2_client, unit), `${f(m.ratio, 'x')} (${m.ratio_total}x)`, `${m.with_client_ratio_total}x`,
      `${f(m.sshd_for_daemon, unit)} / ${f(m.sshd_for_ssh2, unit)}`];
  const lines = [
    `CPU per unit of work, Node ${r.node}, daemon ${r.daemon_main ? `${r.daemon_main} ` : ''}started ${r.daemon_flags.length ? `with ${r.daemon_flags.join(' ')}` : 'without node flags'}; ` +
      `load average ${r.load_average.start.join(' ')} at the start, ${r.load_average.end.join(' ')} at the end`,
    'Each side a process of its own, CPU from the kernel; batches alternate; ranges over repetitions, (totals) divides the sums.',
    table(['measure', 'daemon', 'SDK client', 'bare ssh2', 'daemon / bare', '(daemon+SDK) / bare', 'sshd: daemon\'s / bare\'s'], [
      row(`warm exec, ms (${r.warm.exec.repetitions} x ${r.warm.exec.execs} after ${r.warm.exec.warmup_execs})`, r.warm.exec, ''),
      row(`cold exec, ms (first ${r.cold.exec.execs}, ${r.cold.exec.repetitions} fresh daemons)`, r.cold.exec, ''),
      row(`warm GiB, s (${r.warm.gib.repetitions} x ${r.warm.gib.mib_per_batch} MiB after 1 GiB)`, r.warm.gib, ''),
      row(`cold GiB, s (first GiB, ${r.cold.gib.repetitions} fresh daemons)`, r.cold.gib, ''),
    ]),
    `warm stream throughput: SDK ${f(r.warm.stream_mib_s.sdk, '')} MiB/s, bare ${f(r.warm.stream_mib_s.ssh2, '')} MiB/s, ratio ${f(r.warm.stream_mib_s.ratio, 'x')}`,
    `warm exec p50, same batches: SDK ${r.warm.exec_p50_ms.sdk} ms, bare ${r.warm.exec_p50_ms.ssh2} ms, ${r.warm.exec_p50_ms.ratio}x`,
    `CPU per exec while warming up (daemon / bare, ms): ${r.warm.warmup.filter((_, i, all) => i % 2 === 0 || i === all.length - 1)
      .map((w) => `${w.after_execs}: ${w.daemon_ms} / ${w.ssh2_ms}`).join(', ')}`,
    `daemon peak RSS over the warm section: ${r.daemon_peak_rss_mib} MiB`,
  ];
  if (r.cross_check) lines.push(`cross-check, the scripts in ${String(r.cross_check.dir)}: ${JSON.stringify({ ...r.cross_check, dir: undefined })}`);
  return lines.join('\n');
}

function range(values: number[], digits: number): Range {
  return [round(Math.min(...values), digits), round(Math.max(...values), digits)];
}

export function parseDaemonFlags(value: string | undefined): string[] {
  return (value ?? '').split(/\s+/).filter(Boolean);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, json: { type: 'boolean' }, out: { type: 'string' },
    'daemon-flags': { type: 'string' }, 'cross-check': { type: 'string' }, 'daemon-main': { type: 'string' } } });
  const opts: CpuOptions = { quick: !!values.quick, daemonFlags: parseDaemonFlags(values['daemon-flags']), crossCheck: values['cross-check'],
    daemonMain: values['daemon-main'] && path.resolve(values['daemon-main']),
    progress: (line) => process.stderr.write(`${line}\n`) };
  if (opts.crossCheck && !fs.existsSync(path.join(opts.crossCheck, 'cpu-per-exec.mjs'))) {
    throw new Error(`--cross-check ${opts.crossCheck}: no cpu-per-exec.mjs there (the scripts are in the shared directory's measure/)`);
  }
  process.stderr.write(`sshmux bench:cpu${opts.quick ? ' (quick)' : ''}, Node ${process.version} ...\n`);
  const started = Date.now();
  const cpu = await cpuCost(opts);
  await cleanupAll();
  const result = {
    date: new Date().toISOString(),
    machine: machine(),
    quick: opts.quick,
    cpu,
    duration_s: Math.round((Date.now() - started) / 1000),
  };
  console.log(`\n${result.machine.cpus} cores (${result.machine.cpu})`);
  console.log(cpuTable(cpu));
  const outFile = writeResult(result, { prefix: 'cpu-', quick: opts.quick, out: values.out });
  console.log(`\nwrote ${outFile}`);
  if (values.json) console.log(JSON.stringify(result));
}

if (require.main === module) {
  main().catch((err) => {
    console.error(`bench:cpu failed: ${(err as Error).stack ?? err}`);
    cleanupAll().finally(() => process.exit(1));
  });
}
