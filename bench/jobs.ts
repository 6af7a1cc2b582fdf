// npm run bench:jobs [-- --jobs 1000 --sleep 30 --json]: N long commands on
// one host (sshd MaxSessions 10, the daemon's default 8 connections), run as
// durable jobs and as plain execs that hold their session while they run.
// Wall time until all are done, the most sessions held at once, sessions
// opened, logins, and the daemon's and the client's CPU per command.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { SshMux } from '../client-sdk';
import { startDaemon, type DaemonProc } from '../test/helpers/daemon';
import { cleanupAll, startSshd, tempDir, writeClientConfig, type Sshd } from '../test/helpers/sshd';
import { positiveNumber, wholeNumber } from './options';
import { cpuSeconds } from './proc-cpu';
import { table } from './table';
import { machine, writeResult } from './results';
import { round } from './stats';

interface Row {
  system: string;
  n: number;
  ok: number;
  wall_s: number;
  /** Jobs: until every submit had answered (every runner started). */
  submitted_s: number | null;
  /** What MaxSessions × maxConnections allow for execs; for jobs, the command's own length. */
  ideal_s: number;
  max_sessions_held: number;
  sessions_opened: number;
  logins: number;
  daemon_cpu_ms_per_command: number;
  client_cpu_ms_per_command: number;
  daemon_peak_rss_mib: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { jobs: { type: 'string', default: '1000' }, sleep: { type: 'string', default: '30' }, json: { type: 'boolean' } } });
  const n = wholeNumber('jobs', values.jobs);
  const sleepS = positiveNumber('sleep', values.sleep);
  const sshd = await startSshd({ maxSessions: 10 });
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  // Execs past the first 80 wait for a slot: let them, as long as the whole
  // run takes, and the 30 s more that starting the runners may take (a short
  // sleep alone would time out a job that started late).
  const waitMs = (Math.ceil(n / 80) + 2) * sleepS * 1000 + 30_000;
  const rows: Row[] = [];
  try {
    for (const system of ['sshmux jobs', 'sshmux exec'] as const) {
      const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, config: { queueTimeoutMs: waitMs, jobOwner: `bench-${process.pid}` } });
      try {
        process.stderr.write(`${system}: ${n} × sleep ${sleepS} ...\n`);
        rows.push(await run(system, daemon, sshd, n, sleepS, waitMs));
      } finally {
        await daemon.stop();
      }
    }
  } finally {
    fs.rmSync(path.join(sshd.user.home, '.sshmux', 'jobs', `bench-${process.pid}`), { recursive: true, force: true });
    await cleanupAll();
  }
  const result = {
    date: new Date().toISOString(),
    machine: machine(),
    jobs: n,
    sleep_s: sleepS,
    rows,
  };
  const head = ['system', 'n', 'ok', 'wall s', 'all submitted s', 'ideal s', 'max sessions held', 'sessions opened', 'logins', 'daemon CPU ms/cmd', 'client CPU ms/cmd', 'daemon peak RSS MiB'];
  const cells = rows.map((r) => [r.system, r.n, r.ok, r.wall_s, r.submitted_s ?? '-', r.ideal_s, r.max_sessions_held, r.sessions_opened, r.logins,
    r.daemon_cpu_ms_per_command, r.client_cpu_ms_per_command, r.daemon_peak_rss_mib].map(String));
  console.log(`\n${n} commands of \`sleep ${sleepS}\` on one host (MaxSessions 10, 8 connections)`);
  console.log(table(head, cells));
  const outFile = writeResult(result, { prefix: 'jobs-' });
  console.log(`\nwrote ${outFile}`);
  if (values.json) console.log(JSON.stringify(result));
}

async function run(system: 'sshmux jobs' | 'sshmux exec', daemon: DaemonProc, sshd: Sshd, n: number, sleepS: number, waitMs: number): Promise<Row> {
  const mux = await SshMux.connect({ socket: daemon.socket });
  const watcher = await SshMux.connect({ socket: daemon.socket });
  let maxHeld = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const held = ((await watcher.status()).hosts ?? []).reduce((s, h) => s + (h.connections ?? []).reduce((m, c) => m + (c.sessions ?? 0), 0), 0);
      maxHeld = Math.max(maxHeld, held);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const logins0 = sshd.logins();
  const sessions0 = sessionsStarted(sshd);
  const daemonCpu0 = cpuSeconds(daemon.pid);
  const clientCpu0 = process.cpuUsage();
  const t0 = performance.now();
  let ok = 0;
  let submitted: number | null = null;
  let wall = 0;
  const command = `sleep ${sleepS}`;
  if (system === 'sshmux jobs') {
    const jobs = await Promise.all(Array.from({ length: n }, () => mux.jobs.submit('t', command)));
    submitted = (performance.now() - t0) / 1000;
    const done = await Promise.all(jobs.map((j) => mux.jobs.wait(j.id, { timeoutMs: waitMs })));
    wall = (performance.now() - t0) / 1000;
    ok = done.filter((j) => j.state === 'exited' && j.exitCode === 0).length;
    await Promise.all(jobs.map((j) => mux.jobs.remove(j.id)));
  } else {
    const results = await Promise.allSettled(Array.from({ length: n }, () => mux.exec('t', command, { timeoutMs: waitMs })));
    wall = (performance.now() - t0) / 1000;
    ok = results.filter((r) => r.status === 'fulfilled' && r.value.code === 0).length;
  }
  sampling = false;
  await sampler;
  const clientCpu = process.cpuUsage(clientCpu0);
  const row: Row = {
    system, n, ok,
    wall_s: round(wall),
    submitted_s: submitted === null ? null : round(submitted),
    ideal_s: system === 'sshmux jobs' ? sleepS : Math.ceil(n / 80) * sleepS,
    max_sessions_held: maxHeld,
    sessions_opened: sessionsStarted(sshd) - sessions0,
    logins: sshd.logins() - logins0,
    daemon_cpu_ms_per_command: round((cpuSeconds(daemon.pid) - daemonCpu0) * 1000 / n),
    client_cpu_ms_per_command: round((clientCpu.user + clientCpu.system) / 1000 / n),
    daemon_peak_rss_mib: round(daemon.peakRssMiB()),
  };
  mux.close();
  watcher.close();
  return row;
}

function sessionsStarted(sshd: Sshd): number {
  return sshd.log().match(/Starting session: command/g)?.length ?? 0;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
