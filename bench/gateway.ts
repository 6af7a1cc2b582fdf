// npm run bench:gateway: paramiko (Debian's, as Airflow uses it) through the
// SSH front door against paramiko straight to sshd, side by side in one run
// against one sshd (MaxSessions 10, MaxStartups 10:30:100):
//   - exec with a new connection per command, sequentially (wall time and CPU per exec);
//   - exec on one warm connection, sequentially, as paramiko comes and with
//     TCP_NODELAY on its socket (paramiko leaves Nagle on, and the 40 ms
//     that costs per command hides the server's own latency);
//   - a fan-out of threads, each with a new connection per command (Airflow's old pattern).
// CPU per exec counts every process involved: the client, sshd and all it
// forked (reaped children included), and the daemon when the door is used.
// Prints a table and writes JSON to bench/results/gateway-<date and time>.json (--json prints it too).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { startDaemon } from '../test/helpers/daemon';
import { cleanupAll, startSshd, tempDir, writeClientConfig } from '../test/helpers/sshd';
import { statSeconds } from './proc-cpu';
import { loadAverage, machine, writeResult } from './results';
import { failureKinds, round } from './stats';
import { table } from './table';

const PYTHON = '/usr/bin/python3';
const CLIENTS = path.join(__dirname, '..', '..', 'test', 'helpers', 'ssh_clients.py');
const SSHMUXCTL = path.join(__dirname, '..', 'cli', 'sshmuxctl.js');

/** A server paramiko logs into: sshd itself, or the daemon's front door. */
interface LoginServer { name: string; port: number; user: string; key: string; knownHosts: string }
interface Row {
  scenario: string; system: string; n: number; ok: number; failed: number; failures: string[];
  wall_s: number; p50_ms?: number; p90_ms?: number; cpu_ms_per_exec?: number; sshd_logins: number; maxstartups_drops: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, json: { type: 'boolean' } } });
  const n = values.quick ? { fresh: 20, warm: 100, fanout: 60 } : { fresh: 60, warm: 400, fanout: 120 };
  const sshd = await startSshd({ maxSessions: 10, maxStartups: '10:30:100' });
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, args: ['--gateway', '127.0.0.1:0', '--state-dir', path.join(dir, 'state')] });
  const info = JSON.parse(execFileSync(process.execPath, [SSHMUXCTL, '--socket', daemon.socket, '--json', 'gateway']).toString());
  const doorKnownHosts = path.join(dir, 'gateway_known_hosts');
  fs.writeFileSync(doorKnownHosts, `${info.knownHosts}\n`);
  const direct: LoginServer = { name: 'paramiko → sshd', port: sshd.port, user: sshd.user.name, key: client.identityPath, knownHosts: client.knownHostsPath };
  const door: LoginServer = { name: 'paramiko → sshmux gateway', port: Number(/:(\d+)$/.exec(info.address)![1]), user: 't', key: info.clientKey, knownHosts: doorKnownHosts };
  const rows: Row[] = [];
  try {
    // The door's pool is warm, as it is for a running orchestrator.
    await py(door, 'exec', ['--command', 'true']);
    for (const [scenario, count, extra] of [
      [`exec, new connection each (${n.fresh} in a row)`, n.fresh, ['--fresh']],
      [`exec, one warm connection (${n.warm} in a row)`, n.warm, []],
      [`exec, one warm connection, TCP_NODELAY set on paramiko's socket (${n.warm} in a row)`, n.warm, ['--nodelay']],
    ] as const) {
      for (const t of [direct, door]) {
        // sshd and its live descendants, each with what it reaped: every process counted once.
        const sshdSeconds = (): number => [sshd.pid, ...sshd.connectionPids().map((p) => p.pid)].reduce((sum, pid) => sum + statSeconds(pid, true), 0);
        const before = { logins: sshd.logins(), drops: sshd.drops(), sshd: sshdSeconds(), daemon: statSeconds(daemon.pid, true) };
        const started = performance.now();
        const r = await py(t, 'bench', ['--n', String(count), '--command', 'true', ...extra]);
        const wall = (performance.now() - started) / 1000;
        const serverSeconds = sshdSeconds() - before.sshd + (t === door ? statSeconds(daemon.pid, true) - before.daemon : 0);
        const times = (r.times as number[]).map((s) => s * 1000).sort((a, b) => a - b);
        rows.push({
          scenario, system: t.name, n: count, ok: count - r.failures.length, failed: r.failures.length, failures: failureKinds(r.failures, 120),
          wall_s: round(wall), p50_ms: round(pct(times, 0.5)), p90_ms: round(pct(times, 0.9)),
          cpu_ms_per_exec: round((serverSeconds + r.cpu) * 1000 / count),
          sshd_logins: sshd.logins() - before.logins, maxstartups_drops: sshd.drops() - before.drops,
        });
      }
    }
    const scenario = `fan-out: ${n.fanout} threads, new connection per command, sleep 1`;
    for (const t of [direct, door]) {
      const before = { logins: sshd.logins(), drops: sshd.drops() };
      const started = performance.now();
      const r = await py(t, 'fanout', ['--n', String(n.fanout), '--command', 'sleep 1; echo {i}']);
      rows.push({
        scenario, system: t.name, n: n.fanout, ok: r.ok, failed: r.failures.length, failures: failureKinds(r.failures, 120),
        wall_s: round((performance.now() - started) / 1000), sshd_logins: sshd.logins() - before.logins, maxstartups_drops: sshd.drops() - before.drops,
      });
      await new Promise((resolve) => setTimeout(resolve, 3000)); // let sshd's startups drain before the next system
    }
  } finally {
    await daemon.stop();
    await cleanupAll();
  }
  printTable(rows);
  const result = { date: new Date().toISOString(), machine: machine(), clients: clientVersions(), load_average: loadAverage(), rows };
  const out = writeResult(result, { prefix: 'gateway-', quick: !!values.quick });
  process.stdout.write(`\nJSON: ${out}\n`);
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
}

function py(t: LoginServer, mode: string, args: string[]): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [CLIENTS, mode, '--port', String(t.port), '--key', t.key, '--known-hosts', t.knownHosts, '--user', t.user, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b));
    child.stderr.on('data', (b: Buffer) => (err += b));
    child.once('close', (code) => {
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`${mode} exited ${code}: ${out}${err}`));
      }
    });
  });
}

function pct(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : 0;
}

/** The clients measured beside the door, by version. */
function clientVersions(): { paramiko: string; openssh: string } {
  const paramiko = execFileSync(PYTHON, ['-c', 'import paramiko; print(paramiko.__version__)'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  // ssh -V writes to stderr.
  const openssh = spawnSync('ssh', ['-V'], { encoding: 'utf8' }).stderr.trim();
  return { paramiko, openssh };
}

function printTable(rows: Row[]): void {
  const head = ['scenario', 'system', 'n', 'ok', 'failed', 'wall', 'p50', 'p90', 'CPU/exec', 'sshd logins', 'MaxStartups drops'];
  const body = rows.map((r) => [r.scenario, r.system, String(r.n), String(r.ok), r.failed ? `${r.failed} (${r.failures.join('; ')})` : '0',
    `${r.wall_s} s`, r.p50_ms === undefined ? '' : `${r.p50_ms} ms`, r.p90_ms === undefined ? '' : `${r.p90_ms} ms`,
    r.cpu_ms_per_exec === undefined ? '' : `${r.cpu_ms_per_exec} ms`, String(r.sshd_logins), String(r.maxstartups_drops)]);
  process.stdout.write(`${table(head, body)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  cleanupAll().finally(() => process.exit(1));
});
