// npm run bench:fleet: many orchestrator hosts at one sshd. N daemons, each
// its own process and socket as on N hosts, each asked for 100 execs at
// once against one real sshd (MaxSessions 10, MaxStartups 10:30:100); once
// each daemon on its own limits, once as a fleet sharing one Redis
// ("fleet": maxConcurrentHandshakes 8, maxConnections 40). Prints a table
// and JSON: successes, MaxStartups drops, sshd logins, the most connections
// sshd had at once, wall time, and CPU per exec (daemons, sshd, Redis).
import { parseArgs } from 'node:util';
import { fanOut, startFleet, stopFleet } from '../test/helpers/fleet';
import { startRedis, type RedisServer } from '../test/helpers/redis';
import { cleanupAll, startSshd, tempDir, writeClientConfig } from '../test/helpers/sshd';
import { wholeNumber } from './options';
import { statSeconds } from './proc-cpu';
import { loadAverage, machine, writeResult } from './results';
import { round } from './stats';

const FLEET_LIMITS = { maxConcurrentHandshakes: 8, maxConnections: 40 };

interface Row {
  daemons: number;
  fleet: boolean;
  execs: number;
  ok: number;
  failed: Record<string, number>;
  drops: number;
  logins: number;
  peak_connections: number;
  wall_ms: number;
  /** The slowest daemon's slowest exec: did anyone starve? */
  slowest_exec_ms: number;
  cpu_ms_per_exec: { daemons: number; sshd: number; redis: number };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      daemons: { type: 'string', default: '10,25' },
      execs: { type: 'string', default: '100' },
      command: { type: 'string', default: 'sleep 0.5; echo %i' },
      json: { type: 'boolean', default: false },
    },
  });
  const counts = values.daemons!.split(',').map((n) => wholeNumber('daemons', n));
  const execs = wholeNumber('execs', values.execs);
  const rows: Row[] = [];
  try {
    for (const n of counts) {
      for (const fleet of [false, true]) {
        console.error(`${n} daemons x ${execs} execs, ${fleet ? 'as a fleet through Redis' : 'each on its own limits'} ...`);
        rows.push(await scenario(n, execs, fleet, values.command!));
      }
    }
  } finally {
    await cleanupAll();
  }
  const report = {
    date: new Date().toISOString(), machine: machine(), load_average: loadAverage(), fleet_limits: FLEET_LIMITS, command: values.command, rows,
  };
  console.log(table(rows));
  const file = writeResult(report, { prefix: 'fleet-' });
  console.log(`\nJSON: ${file}`);
  if (values.json) console.log(JSON.stringify(report));
}

async function scenario(n: number, execs: number, withFleet: boolean, command: string): Promise<Row> {
  const sshd = await startSshd({ maxSessions: 10, maxStartups: '10:30:100' });
  const redis: RedisServer | undefined = withFleet ? await startRedis() : undefined;
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const members = await startFleet({ n, dir, sshConfigPath: client.sshConfigPath,
    config: withFleet ? { fleet: { redis: redis!.url, ...FLEET_LIMITS } } : {} });
  let stopped = false;
  try {
    const daemonCpu0 = members.map((m) => statSeconds(m.daemon.pid));
    const redisCpu0 = redis ? statSeconds(redis.pid()) : 0;
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, sshd.sessionPids().length);
    }, 50);
    const r = await fanOut(members, 't', execs, command, 300_000);
    clearInterval(sampler);
    const daemonSeconds = members.reduce((sum, m, i) => sum + statSeconds(m.daemon.pid) - daemonCpu0[i], 0);
    const redisSeconds = redis ? statSeconds(redis.pid()) - redisCpu0 : 0;
    // Once the daemons are gone, every connection's sshd has exited and been reaped by the listener,
    // whose children's time then counts them all; and sshd has written its last log lines.
    await stopFleet(members);
    stopped = true;
    await new Promise((resolve) => setTimeout(resolve, 500));
    const total = n * execs;
    const perExec = (seconds: number): number => round(seconds * 1000 / total);
    return {
      daemons: n, fleet: withFleet, execs: total, ok: r.ok, failed: r.failed,
      drops: sshd.drops(), logins: sshd.logins(), peak_connections: peak, wall_ms: r.wallMs,
      slowest_exec_ms: Math.max(...r.slowestMs),
      cpu_ms_per_exec: { daemons: perExec(daemonSeconds), sshd: perExec(statSeconds(sshd.pid, true)), redis: perExec(redisSeconds) },
    };
  } finally {
    if (!stopped) await stopFleet(members);
    await redis?.stop();
    await sshd.stop();
  }
}

function table(rows: Row[]): string {
  const head = ['daemons', 'fleet', 'execs', 'ok', 'failed', 'MaxStartups drops', 'sshd logins', 'peak conns', 'wall', 'slowest exec',
    'CPU ms/exec daemons+sshd+redis'];
  const body = rows.map((r) => [
    String(r.daemons), r.fleet ? 'yes' : 'no', String(r.execs), String(r.ok),
    Object.entries(r.failed).map(([why, k]) => `${k} ${why}`).join('; ') || '0',
    String(r.drops), String(r.logins), String(r.peak_connections), `${(r.wall_ms / 1000).toFixed(1)} s`,
    `${(r.slowest_exec_ms / 1000).toFixed(1)} s`,
    `${r.cpu_ms_per_exec.daemons} + ${r.cpu_ms_per_exec.sshd} + ${r.cpu_ms_per_exec.redis}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

main().catch((err) => {
  console.error(`bench:fleet failed: ${(err as Error).stack ?? err}`);
  cleanupAll().finally(() => process.exit(1));
});
