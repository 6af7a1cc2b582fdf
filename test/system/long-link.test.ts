// sshmux over a long link (test/helpers/long-link.ts: a relay on loopback
// that adds a round trip), against a real sshd: a warm exec costs one round
// trip, counted in flights at the link rather than timed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { startLongLink } from '../helpers/long-link';
import { startSshd } from '../helpers/sshd';
import { startWorld } from '../helpers/world';

const SSHMUX = path.join(__dirname, '..', '..', 'cli', 'sshmux.js');

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('a warm exec is one round trip over a 40 ms link: through the SDK and through the sshmux command', async () => {
  const sshd = await startSshd({ maxSessions: 10 });
  const link = await startLongLink({ target: { host: sshd.host, port: sshd.port }, rttMs: 40 });
  const { mux, env } = await startWorld({ sshd: { ...sshd, host: link.host, port: link.port } });
  for (let i = 0; i < 5; i++) assert.equal((await mux.exec('t', 'true')).code, 0);

  link.resetCounters();
  const n = 40;
  for (let i = 0; i < n; i++) {
    const r = await mux.exec('t', `echo ${i}`);
    assert.deepEqual([r.code, r.stdout.toString()], [0, `${i}\n`]);
  }
  // A flight down is the server's answer to a flight up. Without the spare
  // channel an exec is two round trips (open, then exec), as ssh's on a
  // ControlMaster is; the pool adds a keepalive round trip per 8 sessions to
  // reuse closed slots.
  const { flights } = link.counters();
  assert.ok(flights.down / n <= 1.2, `${(flights.down / n).toFixed(2)} round trips per warm SDK exec (${JSON.stringify(flights)})`);
  assert.ok(flights.up / n <= 1.2, `${(flights.up / n).toFixed(2)} flights up per warm SDK exec (${JSON.stringify(flights)})`);

  // The command: its session is the same; its start-up is local.
  link.resetCounters();
  const commands = 6;
  for (let i = 0; i < commands; i++) {
    const r = await run(process.execPath, [SSHMUX, 't', `echo c${i}`], env);
    assert.deepEqual([r.code, r.stdout], [0, `c${i}\n`], r.stderr);
  }
  const answered = link.counters().flights.down;
  assert.ok(answered <= commands + 1, `${answered} round trips for ${commands} sshmux commands`);
});
