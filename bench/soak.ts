// npm run soak -- --minutes N: mixed load with injected faults against a
// real sshd, then the ledger: requests, ok, each error code, sessions
// leaked (must be 0), remote processes orphaned (must be 0), the daemon's
// RSS at start and end, and per fault the requests that failed after it had
// ended (a pool that recovers as fast as the server does has about none).
// Exits 1 if anything leaked.
import { parseArgs } from 'node:util';
import { SshMux } from '../client-sdk';
import { startDaemon, waitFor } from '../test/helpers/daemon';
import { cleanupAll, remoteProcesses, startSshd, tempDir, writeClientConfig, type Sshd } from '../test/helpers/sshd';
import { positiveNumber, wholeNumber } from './options';
import { loadAverage, measuredOn, writeResult } from './results';
import { round } from './stats';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    minutes: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '60' },
    // A small V8 heap for the daemon tells a leak (it dies) from lazy collection (it lives, smaller).
    'daemon-heap-mib': { type: 'string' },
  } });
  const minutes = positiveNumber('minutes', values.minutes);
  const concurrency = wholeNumber('concurrency', values.concurrency);
  const heapMiB = values['daemon-heap-mib'] === undefined ? undefined : wholeNumber('daemon-heap-mib', values['daemon-heap-mib']);
  const loadStart = loadAverage();
  let sshd = await startSshd({ maxSessions: 10, maxStartups: '10:30:100' });
  const port = sshd.port;
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 's', sshd, extra: ['ServerAliveInterval 2', 'ServerAliveCountMax 2', 'ConnectTimeout 5'] }]);
  const daemon = await startDaemon({
    dir, sshConfigPath: client.sshConfigPath, config: { breakerCooldownMs: 3000 },
    env: heapMiB ? { NODE_OPTIONS: `--max-old-space-size=${heapMiB}` } : undefined,
  });
  const mux = await SshMux.connect({ socket: daemon.socket });
  const rssStart = daemon.rssMiB();
  const counts: Record<string, number> = {};
  const faults: Record<string, number> = {};
  /** Each fault's span, and the failures no fault explains away: what the load did not ask for. */
  const timeline: Array<{ kind: string; startedAt: number; endedAt: number }> = [];
  const failures: Array<{ startedAt: number; at: number; code: string }> = [];
  let requests = 0;
  const until = Date.now() + minutes * 60_000;
  const count = (k: string): void => {
    counts[k] = (counts[k] ?? 0) + 1;
  };

  // The load: short and long commands, output, stdin, cancels and deadlines.
  const one = async (): Promise<void> => {
    requests++;
    const startedAt = Date.now();
    const kind = Math.floor(Math.random() * 6);
    const n = Math.floor(Math.random() * 1e6);
    try {
      if (kind === 0) {
        const r = await mux.exec('s', `echo ${n}`, { timeoutMs: 30_000 });
        count(r.code === 0 && r.stdout.toString() === `${n}\n` ? 'ok' : 'WRONG_OUTPUT');
      } else if (kind === 1) {
        const r = await mux.exec('s', `exec sleep 0.${1 + (n % 9)}`, { timeoutMs: 30_000 });
        count(r.code === 0 ? 'ok' : `exit ${r.code ?? r.signal}`);
      } else if (kind === 2) {
        const r = await mux.exec('s', `head -c ${n * 4} /dev/zero | wc -c`, { timeoutMs: 30_000 });
        count(r.stdout.toString().trim() === String(n * 4) ? 'ok' : 'WRONG_OUTPUT');
      } else if (kind === 3) {
        const r = await mux.exec('s', 'cat', { stdin: Buffer.alloc(n % 200_000, 7), timeoutMs: 30_000 });
        count(r.stdout.length === n % 200_000 ? 'ok' : 'WRONG_OUTPUT');
      } else if (kind === 4) {
        // Cancelled while running.
        const ac = new AbortController();
        setTimeout(() => ac.abort(), 50 + (n % 500));
        await mux.exec('s', `exec sleep 3${n % 10}`, { signal: ac.signal, timeoutMs: 60_000 });
        count('ok (finished before cancel)');
      } else {
        // Runs past its deadline.
        await mux.exec('s', `exec sleep 4${n % 10}`, { timeoutMs: 300 + (n % 700) });
        count('ok (finished before deadline)');
      }
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'UNTYPED';
      count(code);
      // Cancels and deadlines are the load's own doing.
      if (!(kind === 4 && code === 'CANCELLED') && !(kind === 5 && code === 'DEADLINE_EXCEEDED')) failures.push({ startedAt, at: Date.now(), code });
    }
  };
  const workers = Array.from({ length: concurrency }, async () => {
    while (Date.now() < until) await one();
  });

  // The faults, one every 15-25 s.
  const injector = (async () => {
    while (Date.now() < until - 20_000) {
      await sleep(15_000 + Math.random() * 10_000);
      const fault = Math.floor(Math.random() * 3);
      const startedAt = Date.now();
      if (fault === 0) {
        faults['connections killed'] = (faults['connections killed'] ?? 0) + 1;
        // As an OOM kill of the connections' cgroup: sshd processes first, then what they ran.
        const pids = sshd.connectionPids();
        for (const pid of pids) if (pid.sshd) kill(pid.pid, 'SIGKILL');
        for (const pid of pids) if (!pid.sshd) kill(pid.pid, 'SIGKILL');
      } else if (fault === 1) {
        faults['listener frozen 4 s'] = (faults['listener frozen 4 s'] ?? 0) + 1;
        sshd.signalListener('SIGSTOP');
        await sleep(4000);
        sshd.signalListener('SIGCONT');
      } else {
        faults['sshd restarted after 2 s'] = (faults['sshd restarted after 2 s'] ?? 0) + 1;
        await sshd.stop();
        await sleep(2000);
        sshd = await startSshd({ port, maxSessions: 10, maxStartups: '10:30:100' });
      }
      timeline.push({ kind: ['connections killed', 'listener frozen 4 s', 'sshd restarted after 2 s'][fault], startedAt, endedAt: Date.now() });
    }
  })();

  const progress = setInterval(() => process.stderr.write(`  ${Math.round((until - Date.now()) / 1000)} s left, ${requests} requests\n`), 30_000);
  await Promise.all([...workers, injector]);
  clearInterval(progress);

  // Quiesce, then look for anything left behind.
  const sessionsOpen = async (): Promise<number> => (await mux.status()).totals?.sessions ?? 0;
  await waitFor(async () => (await sessionsOpen()) === 0, 10_000);
  await waitFor(() => remoteProcesses('sleep').length === 0, 10_000);
  const leaked = await sessionsOpen();
  const orphans = remoteProcesses('sleep').length;
  // A failure belongs to the latest fault that began before it; "after" means after that fault had ended,
  // except a CONNECTION_LOST of a command already running when it did: the fault itself killed that one.
  const afterFaults = timeline.map((f, i) => {
    const next = timeline[i + 1]?.startedAt ?? Infinity;
    const mine = failures.filter((x) => x.at >= f.startedAt && x.at < next);
    const after = mine.filter((x) => x.at > f.endedAt && !(x.code === 'CONNECTION_LOST' && x.startedAt <= f.endedAt));
    const codes: Record<string, number> = {};
    for (const x of after) codes[x.code] = (codes[x.code] ?? 0) + 1;
    return { fault: f.kind, at_s: Math.round((f.startedAt - (until - minutes * 60_000)) / 1000), during: mine.length - after.length,
      after: after.length, last_after_s: after.length ? round((after[after.length - 1].at - f.endedAt) / 1000, 1) : 0, codes };
  });
  const failedAfterFaults = afterFaults.reduce((n, f) => n + f.after, 0);
  const result = {
    minutes, requests, outcomes: counts, faults, failed_after_faults_ended: failedAfterFaults, after_faults: afterFaults,
    sessions_leaked: leaked, remote_processes_orphaned: orphans,
    daemon_rss_mib: { start: round(rssStart, 1), end: round(daemon.rssMiB(), 1), peak: round(daemon.peakRssMiB(), 1) },
    daemon_alive: daemon.child.exitCode === null,
  };
  console.log(`requests ${requests}`);
  for (const [k, v] of Object.entries(counts).sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(30)} ${v}`);
  console.log(`faults: ${Object.entries(faults).map(([k, v]) => `${v} × ${k}`).join(', ')}`);
  console.log(`requests that failed after their fault had ended: ${failedAfterFaults} ` +
    '(not counting the cancels and deadlines the load asked for, nor commands the fault killed while they ran)');
  for (const f of afterFaults) {
    console.log(`  ${`${f.at_s} s`.padStart(6)}  ${f.fault.padEnd(26)} failed during ${String(f.during).padStart(5)}, after ${String(f.after).padStart(5)}` +
      (f.after ? ` (last ${f.last_after_s} s after; ${Object.entries(f.codes).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''));
  }
  console.log(`sessions leaked ${leaked}, remote processes orphaned ${orphans}`);
  console.log(`daemon RSS ${result.daemon_rss_mib.start} MiB at start, ${result.daemon_rss_mib.end} MiB at end, peak ${result.daemon_rss_mib.peak} MiB`);
  const report = { ...measuredOn(loadStart), soak: result };
  console.log(`wrote ${writeResult(report, { prefix: 'soak-' })}`);
  console.log(JSON.stringify(report));
  mux.close();
  await daemon.stop();
  await cleanupAll();
  const bad = leaked !== 0 || orphans !== 0 || !result.daemon_alive || (counts.UNTYPED ?? 0) > 0 || (counts.WRONG_OUTPUT ?? 0) > 0;
  process.exit(bad ? 1 : 0);
}

function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

main().catch((err) => {
  console.error(`soak failed: ${(err as Error).stack ?? err}`);
  cleanupAll().finally(() => process.exit(1));
});
