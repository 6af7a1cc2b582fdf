// npm run bench [-- --quick] [-- --json]: sshmux against the alternatives,
// side by side, in one run on one machine, each against real sshd
// processes started here (MaxSessions 10, MaxStartups 10:30:100).
//
// Systems: the sshmux SDK, the sshmux wrapper, OpenSSH with a fresh
// connection per command, OpenSSH through a ControlMaster, bare ssh2 with
// a new connection per command, and bare ssh2 on one shared connection
// with TCP_NODELAY (the floor: no daemon, no hop).
//
// Also the CPU the daemon spends per unit of work against what a bare ssh2
// client spends on the same work, cold and warm, each side a process of its
// own (bench/cpu.ts; `npm run bench:cpu` runs that section alone).
//
// Prints a table, writes JSON (bench/results/<date>.json, and stdout with
// --json) and an SVG chart beside it.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { Client } from 'ssh2';
import { SshMux } from '../client-sdk';
import { startDaemon, type DaemonProc } from '../test/helpers/daemon';
import { ssh2NativeCrypto } from '../daemon/ssh/ssh2';
import { cpuCost, cpuTable, parseDaemonFlags } from './cpu';
import { cpuSeconds } from './proc-cpu';
import { cleanupAll, startSshd, tempDir, writeClientConfig, type Sshd } from '../test/helpers/sshd';
import { renderChart } from './chart';
import { table } from './table';
import { machine, writeResult } from './results';
import { quantile, round } from './stats';

const SSHMUX = path.join(__dirname, '..', 'cli', 'sshmux.js');
const SYSTEMS = ['sshmux-sdk', 'sshmux-wrapper', 'ssh-fresh', 'ssh-controlmaster', 'ssh2-new-connection', 'ssh2-shared-nodelay'] as const;
type System = (typeof SYSTEMS)[number];
/** Node processes cost ~40 MiB each: this many wrappers at once is what the machine can hold. */
const MAX_WRAPPER_PROCESSES = 300;

/** One sshd, a client config for it, a daemon and an SDK client: what each scenario runs against. */
interface Testbed { sshd: Sshd; alias: string; sshConfig: string; dir: string; daemon: DaemonProc; mux: SshMux; control: string }
type Outcome = 'ok' | string;

interface Options { quick: boolean }

// ---- the systems: one command, run each way -----------------------------------

function sshArgs(t: Testbed): string[] {
  return ['-F', t.sshConfig, '-o', 'BatchMode=yes'];
}

async function runOnce(system: System, t: Testbed, command: string, shared: Client | undefined, sink?: (n: number) => void): Promise<Outcome> {
  switch (system) {
    case 'sshmux-sdk': {
      try {
        const proc = t.mux.spawn(t.alias, command, { stdin: false });
        proc.stdout.on('data', (d: Buffer) => sink?.(d.length));
        proc.stderr.resume();
        const r = await proc.exited;
        return r.code === 0 ? 'ok' : `exit ${r.code ?? r.signal}`;
      } catch (err) {
        return (err as { code?: string }).code ?? 'error';
      }
    }
    case 'sshmux-wrapper':
      return processOutcome(process.execPath, [SSHMUX, t.alias, command], { SSHMUX_SOCKET: t.daemon.socket }, sink);
    case 'ssh-fresh':
      return processOutcome('ssh', [...sshArgs(t), t.alias, command], {}, sink);
    case 'ssh-controlmaster':
      return processOutcome('ssh', [...sshArgs(t), '-o', `ControlPath=${t.control}`, t.alias, command], {}, sink);
    case 'ssh2-new-connection': {
      const client = await connectSsh2(t).catch((err: Error) => err);
      if (client instanceof Error) return classify(client.message);
      try {
        return await ssh2Exec(client, command, sink);
      } finally {
        client.end();
      }
    }
    case 'ssh2-shared-nodelay':
      return ssh2Exec(shared!, command, sink);
  }
}

function processOutcome(cmd: string, args: string[], env: NodeJS.ProcessEnv, sink?: (n: number) => void): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => sink?.(d.length));
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d;
    });
    child.once('error', (err) => resolve(`spawn: ${err.message}`));
    child.once('close', (code) => resolve(code === 0 ? 'ok' : classify(stderr, code)));
  });
}

/** Failure reasons in the words users search for. */
function classify(text: string, code?: number | null): string {
  if (/kex_exchange_identification|banner|Connection lost before handshake|Connection closed by/i.test(text)) return 'dropped before banner';
  if (/open failed|Channel open failure|administratively prohibited/i.test(text)) return 'channel open refused';
  if (/reset|ECONNRESET/i.test(text)) return 'connection reset';
  if (/timed out|Timed out/i.test(text)) return 'timeout';
  return `exit ${code ?? '?'}: ${text.trim().split('\n').pop()?.slice(0, 50) ?? ''}`;
}

function connectSsh2(t: Testbed, nodelay = false): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    const sock = net.connect(t.sshd.port, '127.0.0.1');
    if (nodelay) sock.setNoDelay(true);
    client.once('ready', () => resolve(client));
    client.on('error', reject); // ssh2 may report a dropped connection twice; an unheard second 'error' would crash the bench
    client.connect({
      sock, username: t.sshd.user.name, privateKey: fs.readFileSync(t.sshd.clientKeyPath), readyTimeout: 30_000,
      hostVerifier: () => true, // a bench against our own throwaway sshd
    });
  });
}

/** An exec as the SDK's exec() and `ssh -n` make it: the command's stdin gets EOF (left open, `cat` would never end). */
function ssh2Exec(client: Client, command: string, sink?: (n: number) => void): Promise<Outcome> {
  return new Promise((resolve) => {
    client.exec(command, (err, channel) => {
      if (err) return resolve(classify(err.message));
      channel.end();
      let code: number | null = null;
      channel.on('data', (d: Buffer) => sink?.(d.length));
      channel.stderr.resume();
      channel.once('exit', (c: number | null) => {
        code = c;
      });
      channel.once('close', () => resolve(code === 0 ? 'ok' : `exit ${code}`));
    });
  });
}

// ---- setup ------------------------------------------------------------------

async function testbed(limits?: Record<string, unknown>): Promise<Testbed> {
  const sshd = await startSshd({ maxSessions: 10, maxStartups: '10:30:100', loginGraceTime: 60 });
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 'b', sshd }]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, config: limits });
  const mux = await SshMux.connect({ socket: daemon.socket });
  return { sshd, alias: 'b', sshConfig: client.sshConfigPath, dir, daemon, mux, control: path.join(dir, 'cm.sock') };
}

async function withControlMaster<T>(t: Testbed, fn: () => Promise<T>): Promise<T> {
  const master = spawn('ssh', [...sshArgs(t), '-M', '-N', '-o', `ControlPath=${t.control}`, '-o', 'ControlPersist=no', t.alias], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 200 && !fs.existsSync(t.control); i++) await sleep(25);
    return await fn();
  } finally {
    master.kill();
    await sleep(100);
  }
}

async function release(t: Testbed): Promise<void> {
  t.mux.close();
  await t.daemon.stop();
  await t.sshd.stop();
}

// ---- scenarios -------------------------------------------------------------------

async function latency(opts: Options): Promise<Record<string, { p50: number; p99: number; runs: number }>> {
  const t = await testbed();
  const shared = await connectSsh2(t, true);
  const out: Record<string, { p50: number; p99: number; runs: number }> = {};
  try {
    await withControlMaster(t, async () => {
      for (const system of SYSTEMS) {
        const perProcess = system === 'sshmux-wrapper' || system.startsWith('ssh-') || system === 'ssh2-new-connection';
        const runs = opts.quick ? (perProcess ? 20 : 200) : (perProcess ? 60 : 1000);
        // Warm up: a process per command has nothing to warm but the page cache; an in-process client and the
        // daemon have their JIT, which a long-running daemon has long done (3 runs left the daemon's first
        // hundreds of execs, compiled as they ran, in the SDK's p50).
        const warm = perProcess ? 3 : opts.quick ? 100 : 300;
        for (let i = 0; i < warm; i++) await runOnce(system, t, 'true', shared);
        const times: number[] = [];
        for (let i = 0; i < runs; i++) {
          const start = performance.now();
          const r = await runOnce(system, t, 'true', shared);
          if (r !== 'ok') throw new Error(`${system}: ${r}`);
          times.push(performance.now() - start);
        }
        times.sort((a, b) => a - b);
        out[system] = { p50: round(quantile(times, 0.5)), p99: round(quantile(times, 0.99)), runs };
      }
    });
  } finally {
    shared.end();
    await release(t);
  }
  return out;
}

/** Node's own start-up, the floor under any wrapper written in Node. */
async function nodeStartup(opts: Options): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < (opts.quick ? 20 : 60); i++) {
    const start = performance.now();
    await processOutcome(process.execPath, ['-e', '0'], {});
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return round(quantile(times, 0.5));
}

interface FanoutRow { system: System; n: number; ok: number; failed: number; failures: Record<string, number>; logins: number; drops: number; wall_ms: number; ideal_ms: number; note?: string }

async function fanout(opts: Options): Promise<FanoutRow[]> {
  const rows: FanoutRow[] = [];
  const sizes = opts.quick ? [120] : [120, 1000];
  for (const n of sizes) {
    for (const system of SYSTEMS) {
      if (system === 'sshmux-wrapper' && n > MAX_WRAPPER_PROCESSES) {
        rows.push({ system, n, ok: 0, failed: 0, failures: {}, logins: 0, drops: 0, wall_ms: 0, ideal_ms: 0,
          note: `not run: ${n} Node processes at once (~40 MiB each) exceed this machine; the SDK row is the same daemon` });
        continue;
      }
      // A fresh sshd per row, so its log counts only this row's logins and drops.
      const t = await testbed();
      const shared = system === 'ssh2-shared-nodelay' ? await connectSsh2(t, true) : undefined;
      try {
        const row = await (system === 'ssh-controlmaster'
          ? withControlMaster(t, () => fanoutRow(system, t, n, shared))
          : fanoutRow(system, t, n, shared));
        rows.push(row);
        process.stderr.write(`  fan-out ${system} n=${n}: ${row.ok} ok in ${row.wall_ms} ms\n`);
      } finally {
        shared?.end();
        await release(t);
      }
    }
  }
  return rows;
}

async function fanoutRow(system: System, t: Testbed, n: number, shared: Client | undefined): Promise<FanoutRow> {
  const start = performance.now();
  const results = await Promise.all(Array.from({ length: n }, () => runOnce(system, t, 'sleep 1; echo', shared)));
  const wall = performance.now() - start;
  await sleep(300); // sshd writes its last log lines as sessions end
  const failures: Record<string, number> = {};
  for (const r of results) if (r !== 'ok') failures[r] = (failures[r] ?? 0) + 1;
  const ok = results.filter((r) => r === 'ok').length;
  // 8 connections of 10 sessions, 1 s each: the best any system can do within sshd's limits.
  const ideal = Math.ceil(n / 80) * 1000;
  return { system, n, ok, failed: n - ok, failures, logins: t.sshd.logins(), drops: t.sshd.drops(), wall_ms: Math.round(wall), ideal_ms: ideal };
}

async function throughput(opts: Options): Promise<{ bytes: number; mib_s: Record<string, number>; daemon_peak_rss_mib: number }> {
  const bytes = (opts.quick ? 256 : 1024) * 1024 * 1024;
  const t = await testbed();
  const shared = await connectSsh2(t, true);
  const mib_s: Record<string, number> = {};
  try {
    await withControlMaster(t, async () => {
      for (const system of SYSTEMS) {
        let got = 0;
        const start = performance.now();
        const r = await runOnce(system, t, `head -c ${bytes} /dev/zero`, shared, (k) => (got += k));
        const s = (performance.now() - start) / 1000;
        if (r !== 'ok' || got !== bytes) throw new Error(`${system}: ${r}, ${got} of ${bytes} bytes`);
        mib_s[system] = round(bytes / 1024 / 1024 / s);
      }
    });
    return { bytes, mib_s, daemon_peak_rss_mib: round(t.daemon.peakRssMiB()) };
  } finally {
    shared.end();
    await release(t);
  }
}

async function daemonCost(opts: Options): Promise<Record<string, number>> {
  const connections = opts.quick ? 20 : 100;
  const sessions = opts.quick ? 200 : 1000;
  const t = await testbed({ maxConnections: 100, hosts: { 'idle*': { maxSessions: 1 } } });
  try {
    const base = { rss: t.daemon.rssMiB(), cpu: cpuSeconds(t.daemon.pid) };
    // N idle connections: one session each on a pool limited to one session per connection.
    fs.appendFileSync(t.sshConfig, `\nHost idle\n  HostName 127.0.0.1\n  Port ${t.sshd.port}\n  User ${t.sshd.user.name}\n` +
      `  IdentityFile ${t.sshd.clientKeyPath}\n  IdentitiesOnly yes\n  UserKnownHostsFile ${path.join(t.dir, 'known_hosts')}\n`);
    process.kill(t.daemon.pid, 'SIGHUP');
    await sleep(300);
    await Promise.all(Array.from({ length: connections }, () => t.mux.exec('idle', 'sleep 2')));
    await sleep(1000);
    const idlePool = (await t.mux.status()).hosts?.find((h) => h.name === 'idle');
    const idleConnections = (idlePool?.connections ?? []).filter((c) => c.state === 'ready').length;
    const idleCpu0 = cpuSeconds(t.daemon.pid);
    await sleep(5000);
    const idle = { rss: t.daemon.rssMiB(), cpuPct: round((cpuSeconds(t.daemon.pid) - idleCpu0) / 5 * 100) };
    // M open sessions on the main pool (100 connections x 10 sessions).
    const cpu0 = cpuSeconds(t.daemon.pid);
    const procs = Array.from({ length: sessions }, () => t.mux.spawn(t.alias, 'sleep 8', { stdin: false }));
    let started = 0;
    await new Promise<void>((resolve) => procs.forEach((p) => p.once('started', () => ++started === sessions && resolve())));
    const openRss = t.daemon.rssMiB();
    const openSessions = ((await t.mux.status()).hosts ?? []).reduce((n, h) => n + (h.connections ?? []).reduce((m, c) => m + (c.sessions ?? 0), 0), 0);
    await Promise.all(procs.map((p) => p.exited));
    return {
      idle_connections: idleConnections,
      idle_connections_rss_mib: round(idle.rss),
      idle_connections_cpu_pct: idle.cpuPct,
      open_sessions: openSessions,
      open_sessions_rss_mib: round(openRss),
      open_sessions_cpu_s: round(cpuSeconds(t.daemon.pid) - cpu0),
      baseline_rss_mib: round(base.rss),
    };
  } finally {
    await release(t);
  }
}

// ---- output ------------------------------------------------------------------------

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, json: { type: 'boolean' }, out: { type: 'string' },
    'daemon-flags': { type: 'string' }, 'cross-check': { type: 'string' } } });
  const opts: Options = { quick: !!values.quick };
  const started = Date.now();
  process.stderr.write(`sshmux bench${opts.quick ? ' (quick)' : ''}: latency ...\n`);
  const exec_latency_ms = await latency(opts);
  const node_startup_p50_ms = await nodeStartup(opts);
  process.stderr.write('fan-out ...\n');
  const fan = await fanout(opts);
  process.stderr.write('throughput ...\n');
  const tp = await throughput(opts);
  process.stderr.write('daemon cost ...\n');
  const daemon = await daemonCost(opts);
  process.stderr.write('CPU per exec and per GiB ...\n');
  const cpu = await cpuCost({ quick: opts.quick, daemonFlags: parseDaemonFlags(values['daemon-flags']), crossCheck: values['cross-check'],
    progress: (line) => process.stderr.write(`${line}\n`) });
  await cleanupAll();

  const result = {
    date: new Date().toISOString(),
    machine: machine(),
    // Daemon and bare client load the same ssh2; its crypto binding moves both sides' CPU figures.
    ssh2_crypto: ssh2NativeCrypto() ? 'native binding' : 'JavaScript (binding not built)',
    quick: opts.quick,
    exec_latency_ms,
    node_startup_p50_ms,
    wrapper_over_node_ms: round(exec_latency_ms['sshmux-wrapper'].p50 - node_startup_p50_ms),
    fanout: fan,
    throughput_mib_s: tp.mib_s,
    throughput_bytes: tp.bytes,
    daemon: { ...daemon, stream_peak_rss_mib: tp.daemon_peak_rss_mib },
    cpu,
    duration_s: Math.round((Date.now() - started) / 1000),
  };

  console.log(`\n${result.machine.cpus} cores (${result.machine.cpu}), Node ${process.version}; ssh2 crypto: ${result.ssh2_crypto}`);
  const floor = exec_latency_ms['ssh2-shared-nodelay'].p50;
  console.log('\nWarm exec latency of `true`');
  console.log(table(['system', 'p50 ms', 'p99 ms', 'runs', 'p50 / floor'],
    SYSTEMS.map((s) => [s, String(exec_latency_ms[s].p50), String(exec_latency_ms[s].p99), String(exec_latency_ms[s].runs), `${round(exec_latency_ms[s].p50 / floor)}x`])));
  console.log(`node -e 0 p50: ${node_startup_p50_ms} ms; the wrapper adds ${result.wrapper_over_node_ms} ms`);
  console.log('\nFan-out of `sleep 1; echo` against MaxSessions 10, MaxStartups 10:30:100');
  console.log(table(['system', 'n', 'ok', 'failed (by reason)', 'logins', 'drops', 'wall ms', 'ideal ms'],
    fan.map((r) => [r.system, String(r.n), r.note ? '-' : String(r.ok),
      r.note ?? (Object.entries(r.failures).map(([k, v]) => `${v} ${k}`).join('; ') || '0'),
      r.note ? '-' : String(r.logins), r.note ? '-' : String(r.drops), r.note ? '-' : String(r.wall_ms), r.note ? '-' : String(r.ideal_ms)])));
  console.log(`\nStream throughput (${tp.bytes / 2 ** 20} MiB of stdout)`);
  console.log(table(['system', 'MiB/s'], Object.entries(tp.mib_s).map(([k, v]) => [k, String(v)])));
  console.log(`daemon peak RSS while streaming: ${tp.daemon_peak_rss_mib} MiB`);
  console.log(`\n${cpuTable(cpu)}`);
  console.log('\nDaemon cost');
  console.log(table(['measure', 'value'], Object.entries(daemon).map(([k, v]) => [k, String(v)])));

  const outFile = writeResult(result, { prefix: '', quick: opts.quick, out: values.out });
  const svg = outFile.replace(/\.json$/, '.svg');
  fs.writeFileSync(svg, renderChart(result));
  console.log(`\nwrote ${outFile} and ${svg}`);
  if (values.json) console.log(JSON.stringify(result));
}

main().catch((err) => {
  console.error(`bench failed: ${(err as Error).stack ?? err}`);
  cleanupAll().finally(() => process.exit(1));
});
