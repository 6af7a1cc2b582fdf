// npm run bench:startup: what one `sshmux host true` costs a script that
// calls it per command, against Node's own start-up, an OpenSSH
// ControlMaster client and a fresh ssh, in one run on one machine.
import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { startDaemon } from '../test/helpers/daemon';
import { cleanupAll, startSshd, tempDir, writeClientConfig } from '../test/helpers/sshd';

const SSHMUX = path.join(__dirname, '..', 'cli', 'sshmux.js');

interface Row { system: string; runs: number; p50_ms: number; p90_ms: number; mean_ms: number }

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '40' }, json: { type: 'boolean' } } });
  const runs = Number(values.runs);
  const sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  const control = path.join(dir, 'cm.sock');
  const ssh = ['-F', client.sshConfigPath, '-o', 'BatchMode=yes'];
  const master = spawn('ssh', [...ssh, '-M', '-N', '-o', `ControlPath=${control}`, '-o', 'ControlPersist=no', 't'], { stdio: 'ignore' });
  const env = { ...process.env, SSHMUX_SOCKET: daemon.socket };
  try {
    await waitForControl(ssh, control);
    const systems: Array<[string, string, string[]]> = [
      ['node -e 0', process.execPath, ['-e', '0']],
      ['sshmux t true', process.execPath, [SSHMUX, 't', 'true']],
      ['ssh ControlMaster client', 'ssh', [...ssh, '-o', `ControlPath=${control}`, 't', 'true']],
      ['ssh (fresh connection)', 'ssh', [...ssh, 't', 'true']],
    ];
    const rows: Row[] = [];
    for (const [name, cmd, args] of systems) {
      spawnSync(cmd, args, { env }); // warm the page cache and the pool
      const times: number[] = [];
      for (let i = 0; i < runs; i++) {
        const t = performance.now();
        const r = spawnSync(cmd, args, { env, stdio: 'ignore' });
        times.push(performance.now() - t);
        if (r.status !== 0) throw new Error(`${name} failed with ${r.status}`);
      }
      times.sort((a, b) => a - b);
      const at = (q: number): number => round(times[Math.min(times.length - 1, Math.floor(q * times.length))]);
      rows.push({ system: name, runs, p50_ms: at(0.5), p90_ms: at(0.9), mean_ms: round(times.reduce((a, b) => a + b, 0) / runs) });
    }
    const node = rows[0].p50_ms;
    console.log(['system'.padEnd(26), 'p50 ms', 'p90 ms', 'mean ms', 'p50 over node -e 0'].join('  '));
    for (const r of rows) {
      console.log([r.system.padEnd(26), String(r.p50_ms).padStart(6), String(r.p90_ms).padStart(6), String(r.mean_ms).padStart(7),
        `${r.p50_ms - node >= 0 ? '+' : ''}${round(r.p50_ms - node)} ms`.padStart(18)].join('  '));
    }
    console.log(JSON.stringify({ startup_ms: rows }));
  } finally {
    master.kill();
    await daemon.stop();
    await cleanupAll();
  }
}

async function waitForControl(ssh: string[], control: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (spawnSync('ssh', [...ssh, '-o', `ControlPath=${control}`, '-O', 'check', 't'], { stdio: 'ignore' }).status === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the ControlMaster did not come up');
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

main().catch((err) => {
  console.error(`bench failed: ${(err as Error).stack ?? err}`);
  cleanupAll().finally(() => process.exit(1));
});
