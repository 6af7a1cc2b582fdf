// npm run bench:link [-- --quick] [-- --rtt 0,20,100] [-- --mib 64] [-- --json]:
// sshmux over a long link against OpenSSH over the same link, side by side,
// at each round-trip time. The link is test/helpers/long-link.ts (a relay
// on loopback: these machines have no netem); 0 ms is straight to sshd.
//
// Rows: warm exec latency (the SDK, the `sshmux` command, bare ssh2 on a
// connection of its own, `ssh` on a ControlMaster, a fresh `ssh`) and the
// round trips a warm SDK exec makes (flights counted by the relay);
// download (stdout of `head -c`) and upload (stdin into `wc -c`) through the
// SDK, the `sshmux` command, bare ssh2 and `ssh` on a ControlMaster; file
// transfer through the SDK, `sftp`/`scp` through `sshmux` (-S) and OpenSSH's
// `sftp`/`scp` on a ControlMaster. At the longest link, the daemon's peak
// memory while 20 downloads run at once.
//
// Every system runs in a process of its own: the SDK and bare ssh2 in
// bench/link-client.ts, the commands as themselves, under bash, whose
// `times` gives their CPU; the daemon's and the ControlMaster's CPU come
// from /proc. CPU is per GiB moved, over everything on the client side
// (the daemon and its client; the master and its ssh, sftp or scp).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { SshMux } from '../client-sdk';
import { startDaemon, type DaemonProc } from '../test/helpers/daemon';
import { startLongLink, type LongLink } from '../test/helpers/long-link';
import { cleanupAll, startSshd, tempDir, writeClientConfig, type Sshd } from '../test/helpers/sshd';
import type { ClientResult, ClientTask } from './link-client';
import { wholeNumber } from './options';
import { cpuSeconds } from './proc-cpu';
import { table } from './table';
import { writeResult } from './results';
import { quantile, round, timed } from './stats';

const SSHMUX = path.join(__dirname, '..', 'cli', 'sshmux.js');
const CLIENT = path.join(__dirname, 'link-client.js');
const ALIAS = 'l';

interface Options { quick: boolean; rtts: number[]; mib: number; only: Set<string> }

interface Site {
  rttMs: number;
  sshd: Sshd;
  link: LongLink | undefined;
  dir: string;
  sshConfig: string;
  daemon: DaemonProc;
  control: string;
  master: { pid: number; stop(): Promise<void> };
  remoteDir: string;
}

interface Row {
  section: 'latency' | 'download' | 'upload' | 'file';
  system: string;
  rtt_ms: number;
  /** latency: p50 and p90, ms; transfers: MiB/s. */
  value: number;
  p90?: number;
  runs?: number;
  /** Transfers: CPU on the client side per GiB moved, s. */
  cpu_s_per_gib?: number;
}

// ---- the site at one round-trip time -------------------------------------------

async function openSite(sshd: Sshd, rttMs: number): Promise<Site> {
  const link = rttMs > 0 ? await startLongLink({ target: { host: sshd.host, port: sshd.port }, rttMs }) : undefined;
  const dir = tempDir();
  const via = link ? { ...sshd, host: link.host, port: link.port } : sshd;
  const client = writeClientConfig(dir, [{ alias: ALIAS, sshd: via }]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  const control = path.join(dir, 'cm.sock');
  const master = await startMaster(client.sshConfigPath, control);
  const remoteDir = path.join(tempDir(), 'remote');
  fs.mkdirSync(remoteDir);
  fs.chownSync(remoteDir, sshd.user.uid, sshd.user.gid);
  // A warm pool, as a running orchestrator has: its first connection is made here.
  const mux = await SshMux.connect({ socket: daemon.socket });
  await mux.exec(ALIAS, 'true');
  mux.close();
  return { rttMs, sshd, link, dir, sshConfig: client.sshConfigPath, daemon, control, master, remoteDir };
}

async function closeSite(site: Site): Promise<void> {
  await site.master.stop();
  await site.daemon.stop();
  await site.link?.close();
}

async function startMaster(sshConfig: string, control: string): Promise<Site['master']> {
  const child = spawn('ssh', ['-F', sshConfig, '-o', 'BatchMode=yes', '-M', '-N', '-o', `ControlPath=${control}`, '-o', 'ControlPersist=no', ALIAS],
    { stdio: 'ignore' });
  for (let i = 0; i < 400 && !fs.existsSync(control); i++) await sleep(25);
  if (!fs.existsSync(control)) throw new Error('the ControlMaster did not start');
  return {
    pid: child.pid!,
    stop: async () => {
      child.kill();
      await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(undefined)));
    },
  };
}

// ---- running one system ------------------------------------------------------------

/** A task in bench/link-client.ts, in a process of its own. */
function runClient(task: ClientTask): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLIENT, JSON.stringify(task)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.once('close', (code) => (code === 0 ? resolve(JSON.parse(out) as ClientResult) : reject(new Error(`${task.system} ${task.task}: ${err.trim()}`))));
  });
}

/** A command, timed as the caller times it (no shell in between); fails unless it exits 0. */
function runProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err.trim()}`))));
  });
}

/** A shell command line under bash; its output, its wall time and its children's CPU (bash's `times`). */
function runShell(line: string, env: NodeJS.ProcessEnv = {}): Promise<{ out: string; seconds: number; cpuSeconds: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('bash', ['-c', `${line}\ntimes`], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.once('close', (code) => {
      const seconds = (performance.now() - t0) / 1000;
      const lines = out.trimEnd().split('\n');
      // `times`: the shell's user and system time, then its children's.
      const children = lines.pop() ?? '';
      lines.pop();
      if (code !== 0) return reject(new Error(`${line}: exit ${code}: ${err.trim().slice(-300)}`));
      resolve({ out: lines.join('\n'), seconds, cpuSeconds: parseTimes(children) });
    });
  });
}

function parseTimes(line: string): number {
  let total = 0;
  for (const m of line.matchAll(/(\d+)m([\d.]+)s/g)) total += Number(m[1]) * 60 + Number(m[2]);
  return total;
}

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function sshCm(site: Site): string {
  return `ssh -F ${q(site.sshConfig)} -o BatchMode=yes -o ControlPath=${q(site.control)}`;
}

function sshmux(): string {
  return `${q(process.execPath)} ${q(SSHMUX)}`;
}

function muxEnv(site: Site): NodeJS.ProcessEnv {
  return { SSHMUX_SOCKET: site.daemon.socket };
}

function sdkTask(site: Site, task: Omit<ClientTask, 'system' | 'socket' | 'alias'>): ClientTask {
  return { system: 'sdk', socket: site.daemon.socket, alias: ALIAS, ...task };
}

function ssh2Task(site: Site, task: Omit<ClientTask, 'system'>): ClientTask {
  const port = site.link?.port ?? site.sshd.port;
  return { system: 'ssh2', host: '127.0.0.1', port, user: site.sshd.user.name, keyPath: site.sshd.clientKeyPath, ...task };
}

// ---- latency -------------------------------------------------------------------------

async function latency(site: Site, opts: Options, rows: Row[]): Promise<{ sdkRoundTrips?: number; commandRoundTrips?: number; nodeStartupMs: number }> {
  const long = site.rttMs >= 50;
  const inProcessRuns = opts.quick ? 10 : long ? 30 : 100;
  const processRuns = opts.quick ? 5 : long ? 12 : 30;
  const push = (system: string, times: number[]): void => {
    const sorted = [...times].sort((a, b) => a - b);
    rows.push({ section: 'latency', system, rtt_ms: site.rttMs, value: round(quantile(sorted, 0.5)), p90: round(quantile(sorted, 0.9)), runs: times.length });
  };

  site.link?.resetCounters();
  const sdk = await runClient(sdkTask(site, { task: 'latency', runs: inProcessRuns }));
  // The client's 3 warm-up execs went over the link too; every flight up is the start of a round trip.
  const sdkRoundTrips = site.link ? round(site.link.counters().flights.up / (inProcessRuns + 3)) : undefined;
  push('sshmux SDK', sdk.times!);
  site.link?.resetCounters();
  push('sshmux command', await timed(processRuns, () => runProcess(process.execPath, [SSHMUX, ALIAS, 'true'], muxEnv(site))));
  // Answers from the server per command: its round trips on the wire.
  const commandRoundTrips = site.link ? round(site.link.counters().flights.down / processRuns) : undefined;
  push('bare ssh2', (await runClient(ssh2Task(site, { task: 'latency', runs: inProcessRuns }))).times!);
  const ssh = ['-F', site.sshConfig, '-o', 'BatchMode=yes'];
  push('ssh, ControlMaster', await timed(processRuns, () => runProcess('ssh', [...ssh, '-o', `ControlPath=${site.control}`, ALIAS, 'true'])));
  push('ssh, fresh', await timed(Math.ceil(processRuns / 2), () => runProcess('ssh', [...ssh, '-o', 'ControlPath=none', ALIAS, 'true'])));
  const node = await timed(processRuns, () => runProcess(process.execPath, ['-e', '0']));
  return { sdkRoundTrips, commandRoundTrips, nodeStartupMs: round(quantile(node.sort((a, b) => a - b), 0.5)) };
}

// ---- streams and files -------------------------------------------------------------

/** CPU per GiB on the client side: the process(es) measured plus the daemon or the master. */
function perGib(cpuSeconds: number, bytes: number): number {
  return round(cpuSeconds / (bytes / 2 ** 30));
}

async function transfer(site: Site, section: Row['section'], system: string, bytes: number, rows: Row[],
  run: () => Promise<{ seconds: number; cpuSeconds: number }>, side: 'daemon' | 'master'): Promise<void> {
  const pid = side === 'daemon' ? site.daemon.pid : site.master.pid;
  const cpu0 = cpuSeconds(pid);
  const r = await run();
  const cpu = r.cpuSeconds + cpuSeconds(pid) - cpu0;
  rows.push({ section, system, rtt_ms: site.rttMs, value: round(bytes / 2 ** 20 / r.seconds), cpu_s_per_gib: perGib(cpu, bytes) });
  process.stderr.write(`  ${site.rttMs} ms ${section} ${system}: ${round(bytes / 2 ** 20 / r.seconds)} MiB/s\n`);
}

async function streams(site: Site, opts: Options, rows: Row[]): Promise<void> {
  const bytes = opts.mib * 2 ** 20;
  const zeros = path.join(site.dir, 'zeros.bin');
  fs.writeFileSync(zeros, Buffer.alloc(bytes));
  const counted = (r: { out: string; seconds: number; cpuSeconds: number }): { seconds: number; cpuSeconds: number } => {
    if (Number(r.out.trim().split('\n').pop()) !== bytes) throw new Error(`expected ${bytes} bytes, got ${r.out.trim()}`);
    return r;
  };
  const head = q(`head -c ${bytes} /dev/zero`);
  await transfer(site, 'download', 'sshmux SDK', bytes, rows, async () => fromClient(await runClient(sdkTask(site, { task: 'download', bytes }))), 'daemon');
  await transfer(site, 'download', 'sshmux command', bytes, rows, async () => counted(await runShell(`${sshmux()} ${ALIAS} ${head} | wc -c`, muxEnv(site))), 'daemon');
  await transfer(site, 'download', 'bare ssh2', bytes, rows, async () => fromClient(await runClient(ssh2Task(site, { task: 'download', bytes }))), 'daemon');
  await transfer(site, 'download', 'ssh, ControlMaster', bytes, rows, async () => counted(await runShell(`${sshCm(site)} ${ALIAS} ${head} | wc -c`)), 'master');
  await transfer(site, 'upload', 'sshmux SDK', bytes, rows, async () => fromClient(await runClient(sdkTask(site, { task: 'upload', bytes }))), 'daemon');
  await transfer(site, 'upload', 'sshmux command', bytes, rows, async () => counted(await runShell(`${sshmux()} ${ALIAS} 'wc -c' < ${q(zeros)}`, muxEnv(site))), 'daemon');
  await transfer(site, 'upload', 'bare ssh2', bytes, rows, async () => fromClient(await runClient(ssh2Task(site, { task: 'upload', bytes }))), 'daemon');
  await transfer(site, 'upload', 'ssh, ControlMaster', bytes, rows, async () => counted(await runShell(`${sshCm(site)} ${ALIAS} 'wc -c' < ${q(zeros)}`)), 'master');
  fs.rmSync(zeros);
}

function fromClient(r: ClientResult): { seconds: number; cpuSeconds: number } {
  return { seconds: r.seconds!, cpuSeconds: r.cpuSeconds! };
}

async function files(site: Site, opts: Options, rows: Row[]): Promise<void> {
  const bytes = opts.mib * 2 ** 20;
  const source = path.join(site.dir, 'source.bin');
  fs.writeFileSync(source, randomBytes(bytes));
  const remoteSource = path.join(site.remoteDir, 'source.bin');
  fs.copyFileSync(source, remoteSource);
  fs.chownSync(remoteSource, site.sshd.user.uid, site.sshd.user.gid);
  const sized = (file: string) => (r: { seconds: number; cpuSeconds: number }): { seconds: number; cpuSeconds: number } => {
    const size = fs.statSync(file).size;
    fs.rmSync(file);
    if (size !== bytes) throw new Error(`${file}: ${size} of ${bytes} bytes`);
    return r;
  };
  const batch = (line: string): string => {
    const file = path.join(site.dir, `batch-${Math.random().toString(16).slice(2)}`);
    fs.writeFileSync(file, `${line}\n`);
    return file;
  };
  const sftpMux = `sftp -S ${q(SSHMUX)} -q`;
  const scpMux = `scp -S ${q(SSHMUX)} -q`;
  const sftpCm = `sftp -F ${q(site.sshConfig)} -o BatchMode=yes -o ControlPath=${q(site.control)} -q`;
  const scpCm = `scp -F ${q(site.sshConfig)} -o BatchMode=yes -o ControlPath=${q(site.control)} -q`;
  const got = (name: string): string => path.join(site.dir, `got-${name}.bin`);
  const put = (name: string): string => path.join(site.remoteDir, `put-${name}.bin`);
  const systems: Array<[string, 'daemon' | 'master', (get: string) => Promise<{ seconds: number; cpuSeconds: number }>, (to: string) => Promise<{ seconds: number; cpuSeconds: number }>]> = [
    ['sshmux SDK', 'daemon',
      async (to) => fromClient(await runClient(sdkTask(site, { task: 'get', remote: remoteSource, local: to }))),
      async (to) => fromClient(await runClient(sdkTask(site, { task: 'put', remote: to, local: source })))],
    ['sftp through sshmux', 'daemon',
      (to) => runShell(`${sftpMux} -b ${q(batch(`get ${remoteSource} ${to}`))} ${ALIAS}`, muxEnv(site)),
      (to) => runShell(`${sftpMux} -b ${q(batch(`put ${source} ${to}`))} ${ALIAS}`, muxEnv(site))],
    ['scp through sshmux', 'daemon',
      (to) => runShell(`${scpMux} ${ALIAS}:${q(remoteSource)} ${q(to)}`, muxEnv(site)),
      (to) => runShell(`${scpMux} ${q(source)} ${ALIAS}:${q(to)}`, muxEnv(site))],
    ['sftp, ControlMaster', 'master',
      (to) => runShell(`${sftpCm} -b ${q(batch(`get ${remoteSource} ${to}`))} ${ALIAS}`),
      (to) => runShell(`${sftpCm} -b ${q(batch(`put ${source} ${to}`))} ${ALIAS}`)],
    ['scp, ControlMaster', 'master',
      (to) => runShell(`${scpCm} ${ALIAS}:${q(remoteSource)} ${q(to)}`),
      (to) => runShell(`${scpCm} ${q(source)} ${ALIAS}:${q(to)}`)],
  ];
  for (const [system, side, get] of systems) {
    const name = system.replace(/\W+/g, '-');
    await transfer(site, 'file', `${system} get`, bytes, rows, async () => sized(got(name))(await get(got(name))), side);
  }
  for (const [system, side, , putOne] of systems) {
    const name = system.replace(/\W+/g, '-');
    await transfer(site, 'file', `${system} put`, bytes, rows, async () => sized(put(name))(await putOne(put(name))), side);
  }
  fs.rmSync(source);
  fs.rmSync(remoteSource);
}

// ---- memory --------------------------------------------------------------------------

interface MemoryFigures { rtt_ms: number; downloads: number; mib_each: number; seconds: number; baseline_rss_mib: number; peak_rss_mib: number; mib_s_total: number }

/** A fresh daemon: its peak RSS while 20 SDK downloads run at once over the link, their readers keeping up. */
async function memory(sshd: Sshd, rttMs: number, opts: Options): Promise<MemoryFigures> {
  const link = await startLongLink({ target: { host: sshd.host, port: sshd.port }, rttMs });
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: ALIAS, sshd: { ...sshd, host: link.host, port: link.port } }]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  try {
    const mux = await SshMux.connect({ socket: daemon.socket });
    await Promise.all(Array.from({ length: 20 }, () => mux.exec(ALIAS, 'true')));
    const baseline = daemon.rssMiB();
    const downloads = 20;
    const mib = opts.quick ? 8 : 32;
    const bytes = mib * 2 ** 20;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: downloads }, async () => {
      const proc = mux.spawn(ALIAS, `head -c ${bytes} /dev/zero`, { stdin: false });
      let got = 0;
      proc.stdout.on('data', (d: Buffer) => (got += d.length));
      proc.stderr.resume();
      const r = await proc.closed;
      if (r.code !== 0 || got !== bytes) throw new Error(`download: exit ${r.code}, ${got} of ${bytes}`);
    }));
    const seconds = (performance.now() - t0) / 1000;
    mux.close();
    return { rtt_ms: rttMs, downloads, mib_each: mib, seconds: round(seconds), baseline_rss_mib: round(baseline), peak_rss_mib: round(daemon.peakRssMiB()),
      mib_s_total: round(downloads * mib / seconds) };
  } finally {
    await daemon.stop();
    await link.close();
  }
}

// ---- output --------------------------------------------------------------------------

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The OpenSSH row each sshmux row is compared with. */
const REFERENCE: Record<string, string> = {
  'sshmux SDK': 'ssh, ControlMaster', 'sshmux command': 'ssh, ControlMaster', 'bare ssh2': 'ssh, ControlMaster',
  'sshmux SDK get': 'sftp, ControlMaster get', 'sftp through sshmux get': 'sftp, ControlMaster get', 'scp through sshmux get': 'scp, ControlMaster get',
  'sshmux SDK put': 'sftp, ControlMaster put', 'sftp through sshmux put': 'sftp, ControlMaster put', 'scp through sshmux put': 'scp, ControlMaster put',
};

function print(rows: Row[], rtts: number[], extra: { roundTrips: Record<number, number | undefined>; commandRoundTrips: Record<number, number | undefined>; nodeStartup: Record<number, number> }): void {
  const cell = (section: Row['section'], system: string, rtt: number, f: (r: Row) => string): string => {
    const r = rows.find((x) => x.section === section && x.system === system && x.rtt_ms === rtt);
    return r ? f(r) : '-';
  };
  const systems = (section: Row['section']): string[] => [...new Set(rows.filter((r) => r.section === section).map((r) => r.system))];
  const ratio = (section: Row['section'], system: string, rtt: number): string => {
    const ref = REFERENCE[system];
    const a = rows.find((x) => x.section === section && x.system === system && x.rtt_ms === rtt);
    const b = rows.find((x) => x.section === section && x.system === ref && x.rtt_ms === rtt);
    return a && b ? `${round(a.value / b.value)}x` : '';
  };
  console.log('\nWarm exec of `true`: p50 (p90) ms');
  console.log(table(['system', ...rtts.map((r) => `${r} ms RTT`)],
    systems('latency').map((s) => [s, ...rtts.map((rtt) => cell('latency', s, rtt, (r) => `${r.value} (${r.p90})`))])));
  console.log(`round trips per warm SDK exec (flights counted at the link): ${rtts.map((r) => `${r} ms: ${extra.roundTrips[r] ?? '-'}`).join(', ')}`);
  console.log(`round trips per sshmux command (answers counted at the link): ${rtts.map((r) => `${r} ms: ${extra.commandRoundTrips[r] ?? '-'}`).join(', ')}`);
  const command = (rtt: number): number => rows.find((x) => x.section === 'latency' && x.system === 'sshmux command' && x.rtt_ms === rtt)?.value ?? 0;
  console.log(`the sshmux command (p50) over \`node -e 0\`: ${rtts.map((r) => `${r} ms RTT: ${round(command(r) - extra.nodeStartup[r])} ms`).join(', ')}` +
    (rtts.includes(0) ? `; over itself at 0 ms, in round trips: ${rtts.filter((r) => r > 0).map((r) => `${r} ms: ${round((command(r) - command(0)) / r)}`).join(', ')}` : ''));
  for (const section of ['download', 'upload', 'file'] as const) {
    console.log(`\n${section === 'file' ? 'File transfer' : section === 'download' ? 'Download (stdout)' : 'Upload (stdin)'}: MiB/s, CPU s per GiB, against OpenSSH`);
    console.log(table(['system', ...rtts.map((r) => `${r} ms RTT`)],
      systems(section).map((s) => [s, ...rtts.map((rtt) => cell(section, s, rtt, (r) => `${r.value} (${r.cpu_s_per_gib} s/GiB)${ratio(section, s, rtt) ? ` ${ratio(section, s, rtt)}` : ''}`))])));
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    quick: { type: 'boolean' }, json: { type: 'boolean' }, out: { type: 'string' },
    rtt: { type: 'string' }, mib: { type: 'string' }, only: { type: 'string' },
  } });
  const quick = !!values.quick;
  const opts: Options = {
    quick,
    rtts: (values.rtt ?? '0,20,100').split(',').map((rtt) => wholeNumber('rtt', rtt, 0)),
    mib: wholeNumber('mib', values.mib ?? String(quick ? 16 : 64)),
    only: new Set((values.only ?? 'latency,streams,files,memory').split(',')),
  };
  const started = Date.now();
  const sshd = await startSshd({ maxSessions: 10 });
  const rows: Row[] = [];
  const roundTrips: Record<number, number | undefined> = {};
  const commandRoundTrips: Record<number, number | undefined> = {};
  const nodeStartup: Record<number, number> = {};
  for (const rtt of opts.rtts) {
    process.stderr.write(`bench:link at ${rtt} ms round trip ...\n`);
    const site = await openSite(sshd, rtt);
    try {
      if (opts.only.has('latency')) {
        const l = await latency(site, opts, rows);
        roundTrips[rtt] = l.sdkRoundTrips;
        commandRoundTrips[rtt] = l.commandRoundTrips;
        nodeStartup[rtt] = l.nodeStartupMs;
      }
      if (opts.only.has('streams')) await streams(site, opts, rows);
      if (opts.only.has('files')) await files(site, opts, rows);
    } finally {
      await closeSite(site);
    }
  }
  const longest = Math.max(...opts.rtts);
  const mem = opts.only.has('memory') && longest > 0 ? await memory(sshd, longest, opts) : undefined;
  await cleanupAll();

  const result = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? '', loadavg: os.loadavg().map(round), node: process.version, kernel: os.release() },
    quick,
    mib: opts.mib,
    rows,
    round_trips_per_warm_sdk_exec: roundTrips,
    round_trips_per_sshmux_command: commandRoundTrips,
    node_startup_p50_ms: nodeStartup,
    memory: mem,
    duration_s: Math.round((Date.now() - started) / 1000),
  };
  console.log(`\n${result.machine.cpus} cores (${result.machine.cpu}), Node ${process.version}, load ${result.machine.loadavg.join(' ')}; ${opts.mib} MiB per transfer`);
  print(rows, opts.rtts, { roundTrips, commandRoundTrips, nodeStartup });
  if (mem) {
    console.log(`\nMemory: ${mem.downloads} downloads of ${mem.mib_each} MiB at once over ${mem.rtt_ms} ms: daemon RSS ${mem.baseline_rss_mib} MiB before, peak ${mem.peak_rss_mib} MiB; ${mem.mib_s_total} MiB/s in total`);
  }
  const outFile = writeResult(result, { prefix: 'link-', quick, out: values.out });
  console.log(`\nwrote ${outFile}`);
  if (values.json) console.log(JSON.stringify(result));
}

main().catch((err) => {
  console.error(`bench:link failed: ${(err as Error).stack ?? err}`);
  cleanupAll().finally(() => process.exit(1));
});
