// npm run bench:startup: what one `sshmux host true` costs a script that
// calls it per command, against Node's own start-up, the same call through
// the SDK in a fresh process (what the command used to load), an OpenSSH
// ControlMaster client, plain ssh through the block of `sshmuxctl
// ssh-config` (a ControlMaster client whose master's connection goes to the
// daemon's front door; and without a master: a door connection of its own,
// through the ProxyCommand helper) and a fresh ssh, in one run on one
// machine. With --node PATH (e.g. Node 22), sshmux also runs under that Node
// with and without its compile cache (cli/compile-cache.ts). The
// systems take turns, run by run, so that load from elsewhere falls on all
// of them alike. CPU per run is the children's user+system time
// (/proc/self/stat cutime+cstime, in clock ticks, averaged over the runs).
// "Over its -e 0" is the median of the per-turn differences with the
// `-e 0` run of the same Node in the same turn, which load that comes and goes during
// the run does not skew the way a difference of medians can.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { startDaemon } from '../test/helpers/daemon';
import { cleanupAll, startSshd, tempDir, writeClientConfig } from '../test/helpers/sshd';
import { wholeNumber } from './options';
import { reapedSeconds } from './proc-cpu';
import { loadAverage, measuredOn, writeResult } from './results';
import { quantile, round } from './stats';

const SSHMUX = path.join(__dirname, '..', 'cli', 'sshmux.js');
const SDK = path.join(__dirname, '..', 'client-sdk');
const SSHMUXCTL = path.join(__dirname, '..', 'cli', 'sshmuxctl.js');

/** `base`: the system whose run of the same turn "over" is measured from (its Node's `-e 0`); none for ssh. */
interface System { name: string; cmd: string; args: string[]; input?: string; env?: NodeJS.ProcessEnv; base?: string }
interface Row { system: string; runs: number; p50_ms: number; p90_ms: number; mean_ms: number; cpu_ms: number; over_node_ms?: number }

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '40' }, json: { type: 'boolean' }, node: { type: 'string' } } });
  const runs = wholeNumber('runs', values.runs);
  const loadStart = loadAverage();
  const sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, args: ['--gateway', '127.0.0.1:0', '--state-dir', path.join(dir, 'state')] });
  const control = path.join(dir, 'cm.sock');
  const ssh = ['-F', client.sshConfigPath, '-o', 'BatchMode=yes'];
  const master = spawn('ssh', [...ssh, '-M', '-N', '-o', `ControlPath=${control}`, '-o', 'ControlPersist=no', 't'], { stdio: 'ignore' });
  // SHLVL=1, as from a terminal: bash, which runs the block's ProxyCommand with a socket for stdin,
  // would otherwise source ~/.bashrc first, and this machine's is not what is measured (see bench/ssh-config.ts).
  const env = { ...process.env, SSHMUX_SOCKET: daemon.socket, SHLVL: '1' };
  // ssh through the block: the block Included before the host's own settings, its master on a path of our own.
  const block = path.join(dir, 'sshmux.conf');
  fs.writeFileSync(block, execFileSync(process.execPath, [SSHMUXCTL, 'ssh-config', 't'], { env }));
  const blockConfig = path.join(dir, 'block_config');
  fs.writeFileSync(blockConfig, `Include ${block}\nInclude ${client.sshConfigPath}\n`);
  const blockOptions = ['-F', blockConfig, '-o', 'BatchMode=yes'];
  const viaBlock = [...blockOptions, '-o', `ControlPath=${path.join(dir, 'block-%C')}`];
  const blockMaster = spawn('ssh', [...viaBlock, '-M', '-N', '-o', 'ControlPersist=no', 't'], { stdio: 'ignore' });
  try {
    await waitForControl(ssh, control);
    await waitForControl(viaBlock, undefined);
    const sdkExec = `require(${JSON.stringify(SDK)}).SshMux.connect().then((m) => m.exec('t', 'true')).then((r) => process.exit(r.code))`;
    const other = values.node;
    const node = 'node -e 0';
    const otherNode = other ? `${nodeVersion(other)} -e 0` : '';
    const systems: System[] = [
      { name: node, cmd: process.execPath, args: ['-e', '0'], base: node },
      { name: 'sshmux t true', cmd: process.execPath, args: [SSHMUX, 't', 'true'], base: node },
      { name: 'sshmux t true <pipe', cmd: process.execPath, args: [SSHMUX, 't', 'true'], input: '', base: node },
      { name: 'node + SDK exec (before)', cmd: process.execPath, args: ['-e', sdkExec], base: node },
      ...(other ? [
        { name: otherNode, cmd: other, args: ['-e', '0'], base: otherNode },
        { name: `sshmux on ${nodeVersion(other)}, compile cache`, cmd: other, args: [SSHMUX, 't', 'true'], base: otherNode },
        { name: `sshmux on ${nodeVersion(other)}, no cache`, cmd: other, args: [SSHMUX, 't', 'true'], env: { NODE_DISABLE_COMPILE_CACHE: '1' }, base: otherNode },
      ] : []),
      { name: 'ssh ControlMaster client', cmd: 'ssh', args: [...ssh, '-o', `ControlPath=${control}`, 't', 'true'] },
      { name: 'ssh through the block', cmd: 'ssh', args: [...viaBlock, 't', 'true'] },
      { name: 'ssh through the block, no master', cmd: 'ssh', args: [...blockOptions, '-o', 'ControlMaster=no', '-o', 'ControlPath=none', 't', 'true'] },
      { name: 'ssh (fresh connection)', cmd: 'ssh', args: [...ssh, 't', 'true'] },
    ];
    const rows = measure(systems, runs, env);
    console.log(['system'.padEnd(38), 'p50 ms', 'p90 ms', 'mean ms', 'CPU ms', 'over its -e 0'].join('  '));
    for (const r of rows) {
      const over = r.over_node_ms;
      console.log([r.system.padEnd(38), String(r.p50_ms).padStart(6), String(r.p90_ms).padStart(6), String(r.mean_ms).padStart(7),
        String(r.cpu_ms).padStart(6), (over === undefined ? '—' : `${over >= 0 ? '+' : ''}${over} ms`).padStart(13)].join('  '));
    }
    const row = (name: string): Row => rows.find((r) => r.system === name)!;
    const ratio = round(row('ssh through the block').p50_ms / row('ssh ControlMaster client').p50_ms, 3);
    console.log(`ssh through the block / ControlMaster client, p50: ${ratio} (target <= 1.5: ${ratio <= 1.5 ? 'met' : 'missed'})`);
    const result = { ...measuredOn(loadStart), runs, startup_ms: rows, block_over_controlmaster_p50: ratio };
    console.log(`wrote ${writeResult(result, { prefix: 'startup-' })}`);
    console.log(JSON.stringify(result));
  } finally {
    master.kill();
    blockMaster.kill();
    await daemon.stop();
    await cleanupAll();
  }
}

function nodeVersion(node: string): string {
  return `Node ${execFileSync(node, ['-p', 'process.versions.node']).toString().trim()}`;
}

/** Runs every system `runs` times, in turns; wall clock per run and CPU per run. */
function measure(systems: System[], runs: number, env: NodeJS.ProcessEnv): Row[] {
  const times = systems.map(() => [] as number[]);
  const cpu = systems.map(() => 0);
  for (const s of systems) spawnSync(s.cmd, s.args, { env: { ...env, ...s.env } }); // warm the page cache, the pool and the compile cache
  for (let i = 0; i < runs; i++) {
    systems.forEach((s, j) => {
      const cpuBefore = reapedSeconds(process.pid);
      const t = performance.now();
      const r = spawnSync(s.cmd, s.args, { env: { ...env, ...s.env }, input: s.input, stdio: [s.input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'] });
      times[j].push(performance.now() - t);
      cpu[j] += reapedSeconds(process.pid) - cpuBefore;
      if (r.status !== 0) throw new Error(`${s.name} failed with ${r.status}: ${r.stderr}`);
    });
  }
  return systems.map((s, j) => {
    const sorted = [...times[j]].sort((a, b) => a - b);
    const base = systems.findIndex((b) => b.name === s.base);
    return {
      system: s.name, runs, p50_ms: round(quantile(sorted, 0.5), 1), p90_ms: round(quantile(sorted, 0.9), 1),
      mean_ms: round(sorted.reduce((a, b) => a + b, 0) / runs, 1), cpu_ms: round((cpu[j] * 1000) / runs, 1),
      over_node_ms: base < 0 ? undefined : round(quantile(times[j].map((t, i) => t - times[base][i]).sort((a, b) => a - b), 0.5), 1),
    };
  });
}

/** Waits for the master at `control` (undefined: the ControlPath `ssh` has already). */
async function waitForControl(ssh: string[], control: string | undefined): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (spawnSync('ssh', [...ssh, ...(control ? ['-o', `ControlPath=${control}`] : []), '-O', 'check', 't'], { stdio: 'ignore' }).status === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the ControlMaster did not come up');
}

main().catch((err) => {
  console.error(`bench failed: ${(err as Error).stack ?? err}`);
  cleanupAll().finally(() => process.exit(1));
});
