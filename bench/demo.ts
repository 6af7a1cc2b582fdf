// npm run demo: sshmux's main job on a fresh machine. A throwaway real sshd
// with OpenSSH's defaults (MaxSessions 10, MaxStartups 10:30:100) gets the
// same fan-out twice: from plain `ssh`, one process a command, as
// orchestrators do it; then through sshmuxd. Both outcomes side by side.
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { SshMux } from '../client-sdk';
import { startDaemon } from '../test/helpers/daemon';
import { cleanupAll, startSshd, tempDir, writeClientConfig, type Sshd } from '../test/helpers/sshd';
import { wholeNumber } from './options';

interface Outcome {
  system: string;
  n: number;
  ok: number;
  failed: Record<string, number>;
  logins: number;
  drops: number;
  wall_ms: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { n: { type: 'string', default: '300' }, command: { type: 'string', default: 'sleep 0.5; echo $((%i * 2))' } },
  });
  const n = wholeNumber('n', values.n);
  const commandFor = (i: number): string => values.command!.replace(/%i/g, String(i));
  const expected = (i: number): string => (values.command === 'sleep 0.5; echo $((%i * 2))' ? `${i * 2}\n` : '');

  console.log(`Starting a throwaway sshd on 127.0.0.1 (MaxSessions 10, MaxStartups 10:30:100) ...`);
  const sshd = await startSshd({ maxSessions: 10, maxStartups: '10:30:100' });
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 'demo', sshd }]);
  const outcomes: Outcome[] = [];
  try {
    console.log(`${n} parallel commands with plain ssh (one process and one handshake each) ...`);
    outcomes.push(await measure(sshd, 'ssh (fresh connections)', n, async (i) => {
      const r = await run('ssh', ['-F', client.sshConfigPath, '-o', 'BatchMode=yes', 'demo', commandFor(i)]);
      if (r.code === 0 && (!expected(i) || r.stdout === expected(i))) return 'ok';
      return classifySsh(r.stderr, r.code);
    }));

    console.log(`${n} parallel commands through sshmuxd ...`);
    const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
    const mux = await SshMux.connect({ socket: daemon.socket });
    outcomes.push(await measure(sshd, 'sshmux', n, async (i) => {
      try {
        const r = await mux.exec('demo', commandFor(i));
        return r.code === 0 && (!expected(i) || r.stdout.toString() === expected(i)) ? 'ok' : `exit ${r.code}`;
      } catch (err) {
        return (err as { code?: string }).code ?? 'error';
      }
    }));
    mux.close();
    await daemon.stop();
  } finally {
    await cleanupAll();
  }

  console.log('');
  console.log(table(outcomes));
  console.log('');
  console.log(JSON.stringify({ demo: outcomes }));
}

async function measure(sshd: Sshd, system: string, n: number, one: (i: number) => Promise<string>): Promise<Outcome> {
  const logins0 = sshd.logins();
  const drops0 = sshd.drops();
  const started = performance.now();
  const results = await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
  const wall = performance.now() - started;
  const failed: Record<string, number> = {};
  for (const r of results) if (r !== 'ok') failed[r] = (failed[r] ?? 0) + 1;
  // sshd writes its log lines as sessions end; give the last ones a moment.
  await new Promise((r) => setTimeout(r, 300));
  return {
    system, n,
    ok: results.filter((r) => r === 'ok').length,
    failed,
    logins: sshd.logins() - logins0,
    drops: sshd.drops() - drops0,
    wall_ms: Math.round(wall),
  };
}

/** What ssh's stderr says went wrong, in the words users search for. */
function classifySsh(stderr: string, code: number | null): string {
  if (/kex_exchange_identification|Connection closed by .* port|banner exchange/.test(stderr)) return 'dropped before banner (MaxStartups)';
  if (/Connection reset/.test(stderr)) return 'connection reset';
  if (/open failed|channel \d+: open failed/.test(stderr)) return 'channel open failed (MaxSessions)';
  if (/Permission denied/.test(stderr)) return 'auth failed';
  return `exit ${code}: ${stderr.trim().split('\n').pop()?.slice(0, 60) ?? ''}`;
}

function run(cmd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', (err) => resolve({ code: -1, stdout, stderr: err.message }));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function table(rows: Outcome[]): string {
  const head = ['system', 'commands', 'succeeded', 'failed', 'sshd logins', 'MaxStartups drops', 'wall time'];
  const body = rows.map((r) => [
    r.system, String(r.n), String(r.ok),
    Object.entries(r.failed).map(([why, k]) => `${k} ${why}`).join('; ') || '0',
    String(r.logins), String(r.drops), `${(r.wall_ms / 1000).toFixed(1)} s`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

main().catch((err) => {
  console.error(`demo failed: ${(err as Error).stack ?? err}`);
  cleanupAll().finally(() => process.exit(1));
});
