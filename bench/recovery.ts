// npm run bench:recovery: how fast requests succeed again after a server
// fault, under steady load through the SDK (one `true` every 50 ms, each with
// a 5 s deadline). Faults, each run --runs times in a row against one
// daemon: sshd killed and started again on the same port after 2 s and after
// 8 s; the listener frozen 4 s with its connections killed (every request
// needs a new handshake against a server that says nothing); and once, sshd
// down for --long-seconds. Prints a table and JSON: the time from the server
// answering again to the first success, the requests that failed after it
// answered, those that failed although their deadline reached 2 s past its
// return, and for the long outage the handshakes attempted meanwhile. After
// each fault it waits for the first success (up to a minute) and 3 s more
// before the next.
import { parseArgs } from 'node:util';
import { SshMux } from '../client-sdk';
import { startDaemon, waitFor } from '../test/helpers/daemon';
import { cleanupAll, startSshd, tempDir, writeClientConfig } from '../test/helpers/sshd';
import { freezeListener, recovery, restartSshd, sleep, SteadyLoad, type Fault } from '../test/helpers/steady-load';
import { positiveNumber, wholeNumber } from './options';
import { loadAverage, measuredOn, writeResult } from './results';

const GRACE_MS = 2000;
const SETTLE_MS = 3000;
/** After a fault, how long to wait for the first success before moving on. */
const RECOVERY_LIMIT_MS = 60_000;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    runs: { type: 'string', default: '3' },
    'long-seconds': { type: 'string', default: '60' },
    'cooldown-ms': { type: 'string' },
  } });
  const runs = wholeNumber('runs', values.runs);
  const longMs = positiveNumber('long-seconds', values['long-seconds']) * 1000;
  const cooldownMs = values['cooldown-ms'] === undefined ? undefined : wholeNumber('cooldown-ms', values['cooldown-ms'], 0);
  const loadStart = loadAverage();
  let sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 'r', sshd, extra: ['ConnectTimeout 2'] }]);
  const daemon = await startDaemon({
    dir, sshConfigPath: client.sshConfigPath, config: cooldownMs === undefined ? undefined : { breakerCooldownMs: cooldownMs },
  });
  const mux = await SshMux.connect({ socket: daemon.socket });
  const load = new SteadyLoad(mux, 'r', { everyMs: 50, timeoutMs: 5000 });
  load.start();
  await sleep(SETTLE_MS);

  const faults: Fault[] = [];
  const attempts: number[] = [];
  const handshakes = async (): Promise<number> => {
    const h = (await mux.status()).hosts?.find((x) => x.name === 'r');
    return Number(h?.handshakes?.ok ?? 0) + Number(h?.handshakes?.failed ?? 0);
  };
  for (const downMs of [2000, 8000]) {
    for (let i = 0; i < runs; i++) {
      const r = await restartSshd(sshd, downMs);
      sshd = r.sshd;
      faults.push(r.fault);
      await recovered(load, r.fault);
    }
  }
  for (let i = 0; i < runs; i++) {
    const fault = await freezeListener(sshd, 4000);
    faults.push(fault);
    await recovered(load, fault);
  }
  if (longMs > 0) {
    const before = await handshakes();
    const r = await restartSshd(sshd, longMs);
    sshd = r.sshd;
    attempts.push(await handshakes() - before);
    faults.push(r.fault);
    await recovered(load, r.fault);
  }
  await load.stop();

  const rows = faults.map((f, i) => {
    const r = recovery(load.outcomes, f, GRACE_MS, faults[i + 1]?.startedAt);
    return { ...r, failedThoughDeadlineReached: r.failedThoughDeadlineReached.length };
  });
  const long = faults.find((f) => f.kind === `sshd down ${longMs / 1000} s`);
  const longFailures = long ? load.outcomes.filter((o) => o.code !== 'OK' && o.startedAt >= long.startedAt + 10_000 && o.startedAt < long.answeredAt) : [];
  const longSummary = long ? {
    handshakes: attempts[0],
    failed: longFailures.length,
    failedAtOnce: longFailures.filter((o) => o.endedAt - o.startedAt < 200).length,
    codes: countBy(longFailures.map((o) => o.code)),
  } : undefined;

  const header = ['fault', 'first success after the server answered', 'failed after it answered', 'failed though the deadline reached 2 s past', 'failed during, by code'];
  const table = [header, ...rows.map((r) => [r.fault, r.firstOkMs < 0 ? 'none' : `${(r.firstOkMs / 1000).toFixed(2)} s`,
    String(r.failedAfter), String(r.failedThoughDeadlineReached), Object.entries(r.during).map(([k, v]) => `${k} ${v}`).join(', ')])];
  const widths = header.map((_, i) => Math.max(...table.map((row) => row[i].length)));
  for (const row of table) console.log(row.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
  if (longSummary) {
    console.log(`sshd down ${longMs / 1000} s: ${longSummary.handshakes} handshakes attempted; after its first 10 s, ${longSummary.failed} requests failed, ` +
      `${longSummary.failedAtOnce} of them within 200 ms (${Object.entries(longSummary.codes).map(([k, v]) => `${k} ${v}`).join(', ')})`);
  }
  const result = { ...measuredOn(loadStart), recovery: { rows, long: longSummary, requests: load.outcomes.length } };
  console.log(`wrote ${writeResult(result, { prefix: 'recovery-' })}`);
  console.log(JSON.stringify(result));
  mux.close();
  await daemon.stop();
  await cleanupAll();
}

/** Waits for the first success after the server answered again (at most RECOVERY_LIMIT_MS), then a little more. */
async function recovered(load: SteadyLoad, fault: Fault): Promise<void> {
  await waitFor(() => load.outcomes.some((o) => o.code === 'OK' && o.endedAt >= fault.answeredAt), RECOVERY_LIMIT_MS, 100);
  await sleep(SETTLE_MS);
}

function countBy(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

main().catch((err) => {
  console.error(`bench:recovery failed: ${(err as Error).stack ?? err}`);
  cleanupAll().finally(() => process.exit(1));
});
