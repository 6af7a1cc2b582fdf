// Starts the real sshmuxd (the built dist/daemon/main.js) as a child
// process, as users run it, for tests that need its socket, its logs, its
// memory figures or to kill it. Every daemon a test file starts is stopped
// when the file ends (SIGTERM, as a user would), and then its sshds: no
// file keeps a list of its own.
import { after } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { cleanupAll } from './sshd';

const MAIN = path.join(__dirname, '..', '..', 'daemon', 'main.js');

export interface DaemonProc {
  readonly socket: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Everything it logged so far (stdout and stderr, last 4 MiB). */
  logs(): string;
  /** Peak resident memory (VmHWM) in MiB. */
  peakRssMiB(): number;
  rssMiB(): number;
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  exited: Promise<number | null>;
}

export interface DaemonOptions {
  dir: string;
  sshConfigPath: string;
  config?: Record<string, unknown>;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  socket?: string;
  /** Run under this open-file limit (soft and hard, so Node cannot raise it). */
  openFileLimit?: number;
  /** Node flags before the script (sshmuxd needs none: the benches compare some). */
  nodeFlags?: readonly string[];
  /** Another build's daemon/main.js (the benches compare builds). */
  main?: string;
}

const running = new Set<ChildProcess>();
const startedDaemons: DaemonProc[] = [];
// Under the test runner only: the benches use these helpers too, and an after() hook
// outside it would make node:test start and print TAP into their tables.
if (process.env.NODE_TEST_CONTEXT) {
  after(async () => {
    for (const d of startedDaemons.splice(0)) await d.stop();
    await cleanupAll();
  });
}
// A test file that ends (or crashes) must not leave daemons behind.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startDaemon(opts: DaemonOptions): Promise<DaemonProc> {
  const socket = opts.socket ?? path.join(opts.dir, 'sshmuxd.sock');
  const args = [...(opts.nodeFlags ?? []), opts.main ?? MAIN, '--socket', socket, '-F', opts.sshConfigPath, ...(opts.args ?? [])];
  if (opts.config) {
    const configPath = path.join(opts.dir, `sshmuxd-${Date.now()}-${Math.random().toString(16).slice(2)}.json`);
    fs.writeFileSync(configPath, JSON.stringify(opts.config));
    args.push('--config', configPath);
  }
  // sh execs node in place: the pid is the daemon's.
  const child = opts.openFileLimit === undefined
    ? spawn(process.execPath, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('/bin/sh', ['-c', `ulimit -n ${opts.openFileLimit} && exec "$0" "$@"`, process.execPath, ...args],
      { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (d: Buffer): void => {
    log += d.toString();
    if (log.length > 4 << 20) log = log.slice(-(4 << 20));
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  running.add(child);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    running.delete(child);
    resolve(code);
  }));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`sshmuxd exited with ${child.exitCode}: ${log}`);
    if (await canConnect(socket)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`sshmuxd did not listen on ${socket} within 10 s: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const statusField = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  };
  const proc: DaemonProc = {
    socket,
    pid: child.pid!,
    child,
    logs: () => log,
    peakRssMiB: () => statusField('VmHWM'),
    rssMiB: () => statusField('VmRSS'),
    exited,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  startedDaemons.push(proc);
  return proc;
}

function canConnect(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socket);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Polls `check` until it returns true or `ms` pass; returns the last result. */
export async function waitFor(check: () => boolean | Promise<boolean>, ms: number, stepMs = 50): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
