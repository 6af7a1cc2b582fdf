// npm run bench:ssh-config: plain OpenSSH fanning out at one sshd
// (MaxSessions 10, MaxStartups 10:30:100), straight to it and through the
// ssh_config block of `sshmuxctl ssh-config`, side by side in one run:
//   - N commands (`sleep 0.5`) at once: fresh ssh each; ssh with a
//     ControlMaster (ControlMaster auto, as Ansible has it), no master yet;
//     through the block with no master yet (the race for the master: each
//     loser makes a door connection of its own) and with its master up;
//   - Ansible (forks F, T tasks, H inventory names for the one sshd, its
//     default ssh arguments: -C, ControlMaster auto, ControlPersist 60s, its
//     own ControlPath), straight to sshd and through the block.
// Counts what went wrong by kind (MaxStartups drops, "Session open refused",
// ...), sshd's logins and drops (from its log), and the wall time. The two
// paths differ only in the -F file the clients read: the hosts' config, or
// the block Included before it. Prints a table, then the JSON, also written to
// bench/results/ssh-config-<date and time>.json.
//
// ssh runs a ProxyCommand through $SHELL, and bash with a socket on stdin (as
// ProxyUseFdpass gives it) and SHLVL unset or 0 sources ~/.bashrc first, as
// if rshd had started it; how this bench was started must not decide what
// it measures, so the clients get SHLVL=1, as from a terminal (the README
// says what a heavy ~/.bashrc costs otherwise).
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { playResults, PLAY_OUTPUT_ENV } from '../test/helpers/ansible';
import { startDaemon, waitFor } from '../test/helpers/daemon';
import { cleanupAll, startSshd, tempDir, writeClientConfig, type Sshd } from '../test/helpers/sshd';
import { wholeNumber } from './options';
import { loadAverage, machine, writeResult } from './results';
import { table } from './table';
import { failureKinds, round } from './stats';

const SSHMUXCTL = path.join(__dirname, '..', 'cli', 'sshmuxctl.js');
/** The clients' environment: SHLVL=1, see above. */
const CLIENT_ENV = { ...process.env, SHLVL: '1' };

interface Row {
  scenario: string; system: string; n: number; ok: number; failed: number; failures: string[];
  wall_s: number; sshd_logins: number; maxstartups_drops: number; session_open_refused: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    parallel: { type: 'string', default: '150' }, tasks: { type: 'string', default: '20' }, forks: { type: 'string', default: '30' },
    hosts: { type: 'string', default: '30' }, json: { type: 'boolean' },
  } });
  const n = wholeNumber('parallel', values.parallel);
  const tasks = wholeNumber('tasks', values.tasks);
  const forks = wholeNumber('forks', values.forks);
  const hosts = wholeNumber('hosts', values.hosts);
  const sshd = await startSshd({ maxSessions: 10, maxStartups: '10:30:100' });
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, args: ['--gateway', '127.0.0.1:0', '--state-dir', path.join(dir, 'state')] });
  const block = path.join(dir, 'sshmux.conf');
  fs.writeFileSync(block, execFileSync(process.execPath, [SSHMUXCTL, '--socket', daemon.socket, 'ssh-config', 't']));
  const blockConfig = path.join(dir, 'block_config');
  fs.writeFileSync(blockConfig, `Include ${block}\nInclude ${client.sshConfigPath}\n`);
  const doorConnections = (): number => JSON.parse(execFileSync(process.execPath, [SSHMUXCTL, '--socket', daemon.socket, '--json', 'gateway']).toString()).connections;
  const rows: Row[] = [];
  const measure = async (scenario: string, system: string, run: () => Promise<{ n: number; failures: string[] }>): Promise<void> => {
    await settle(sshd);
    const before = { logins: sshd.logins(), drops: sshd.drops() };
    const started = performance.now();
    const r = await run();
    rows.push({
      scenario, system, n: r.n, ok: r.n - r.failures.length, failed: r.failures.length, failures: failureKinds(r.failures, 110),
      wall_s: round((performance.now() - started) / 1000), sshd_logins: sshd.logins() - before.logins,
      maxstartups_drops: sshd.drops() - before.drops, session_open_refused: r.failures.filter((f) => /Session open refused/.test(f)).length,
    });
    process.stderr.write(`${scenario} / ${system}: ${r.n - r.failures.length} of ${r.n} in ${rows[rows.length - 1].wall_s} s\n`);
  };
  try {
    const fanout = `${n} × ssh t 'sleep 0.5' at once`;
    const cm = path.join(dir, 'cm-%C');
    const blockCm = path.join(dir, 'block-%C');
    await measure(fanout, 'ssh straight to sshd, fresh connections', () => sshAtOnce(n, ['-F', client.sshConfigPath]));
    await measure(fanout, 'ssh straight to sshd, ControlMaster auto, no master yet', () =>
      sshAtOnce(n, ['-F', client.sshConfigPath, '-o', 'ControlMaster=auto', '-o', `ControlPath=${cm}`, '-o', 'ControlPersist=60']));
    execFileSync('ssh', ['-F', client.sshConfigPath, '-o', `ControlPath=${cm}`, '-O', 'exit', 't'], { stdio: 'ignore' });
    await measure(fanout, 'through the block, no master yet', () => sshAtOnce(n, ['-F', blockConfig, '-o', `ControlPath=${blockCm}`]));
    await waitFor(() => doorConnections() <= 1, 10_000);
    await measure(fanout, 'through the block, its master up', () => sshAtOnce(n, ['-F', blockConfig, '-o', `ControlPath=${blockCm}`]));
    execFileSync('ssh', ['-F', blockConfig, '-o', `ControlPath=${blockCm}`, '-O', 'exit', 't'], { stdio: 'ignore' });

    const ansible = `Ansible: forks ${forks}, ${tasks} tasks, ${hosts} inventory names for one sshd`;
    await measure(ansible, 'its own ControlPersist, straight to sshd', () => playbook(dir, client.sshConfigPath, tasks, forks, hosts, sshd));
    // From a cold pool, as the straight run starts: its logins are counted too.
    execFileSync(process.execPath, [SSHMUXCTL, '--socket', daemon.socket, 'drain', 't'], { stdio: 'ignore' });
    await measure(ansible, 'through the block', () => playbook(dir, blockConfig, tasks, forks, hosts, sshd));
  } finally {
    await daemon.stop();
    await cleanupAll();
  }
  printTable(rows);
  const result = { date: new Date().toISOString(), machine: machine(), clients: clientVersions(), load_average: loadAverage(), rows };
  process.stdout.write(`\nwrote ${writeResult(result, { prefix: 'ssh-config-' })}\n${JSON.stringify(result)}\n`);
}

/** `n` ssh at once, each `sleep 0.5; echo i`; a failure is its exit status and the first line of its stderr. */
async function sshAtOnce(n: number, options: string[]): Promise<{ n: number; failures: string[] }> {
  const runs = Array.from({ length: n }, (_, i) => new Promise<string | undefined>((resolve) => {
    const child = spawn('ssh', [...options, '-o', 'BatchMode=yes', 't', `sleep 0.5; echo ${i}`], { stdio: ['ignore', 'pipe', 'pipe'], env: CLIENT_ENV });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.once('close', (status) => {
      const why = err.split('\n').find((l) => l && !/already exists, disabling multiplexing/.test(l)) ?? '';
      resolve(status === 0 && out === `${i}\n` ? undefined : `exit ${status}: ${why}`);
    });
  }));
  const failures = (await Promise.all(runs)).filter((f): f is string => f !== undefined);
  return { n, failures };
}

/**
 * ansible-playbook with `tasks` tasks (every fifth a file copy, the rest a
 * command of a second) on `hosts` inventory names that are all the one host t, through
 * the ssh_config at `config` (-F in ansible_ssh_extra_args: Ansible's own ssh
 * arguments stay as they are). A failure is a host's failed or unreachable task.
 */
async function playbook(base: string, config: string, tasks: number, forks: number, hosts: number, sshd: Sshd): Promise<{ n: number; failures: string[] }> {
  const dir = fs.mkdtempSync(path.join(base, 'ansible-'));
  const names = Array.from({ length: hosts }, (_, i) => `h${String(i + 1).padStart(2, '0')}`);
  const inventory = path.join(dir, 'inventory');
  fs.writeFileSync(inventory, `[all]\n${names.map((h) => `${h} ansible_host=t`).join('\n')}\n\n[all:vars]\n` +
    `ansible_python_interpreter=/usr/bin/python3\nansible_ssh_extra_args=-F ${config}\n`);
  const remote = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-bench-ansible-'));
  fs.chmodSync(remote, 0o755);
  fs.chownSync(remote, sshd.user.uid, sshd.user.gid);
  const body = Array.from({ length: tasks }, (_, i) => (i % 5 === 4
    ? [`    - copy:`, `        content: "{{ inventory_hostname }} ${i}"`, `        dest: "${remote}/{{ inventory_hostname }}-${i}"`]
    : [`    - command: sh -c "sleep 1; echo {{ inventory_hostname }} ${i}"`]).join('\n'));
  const play = path.join(dir, 'play.yml');
  fs.writeFileSync(play, `- hosts: all\n  gather_facts: false\n  tasks:\n${body.join('\n')}\n`);
  const out = await new Promise<{ status: number | null; stdout: string }>((resolve) => {
    const child = spawn('ansible-playbook', ['-i', inventory, '-f', String(forks), play], {
      cwd: dir, stdio: ['ignore', 'pipe', 'ignore'],
      env: { ...CLIENT_ENV, ...PLAY_OUTPUT_ENV, ANSIBLE_SSH_CONTROL_PATH_DIR: path.join(dir, 'cp'), ANSIBLE_LOCAL_TEMP: path.join(dir, 'tmp') },
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.once('close', (status) => resolve({ status, stdout }));
  });
  fs.rmSync(remote, { recursive: true, force: true });
  const { recap, failures: failed } = playResults(out.stdout);
  if (recap.size === 0) return { n: tasks * hosts, failures: Array(tasks * hosts).fill(`ansible-playbook exited ${out.status} without a recap`) };
  const failures = failed.map((f) => `${f.kind}: ${f.message.split('\n')[0]}`);
  let n = 0;
  for (const counts of recap.values()) n += counts.ok + counts.failed + counts.unreachable;
  // Hosts unreachable early run no later tasks: those count as failed too.
  const missing = tasks * hosts - n;
  for (let i = 0; i < missing; i++) failures.push('not run: the host was unreachable before');
  return { n: tasks * hosts, failures };
}

/** Waits for sshd's unauthenticated connections from the last scenario to end, so that MaxStartups starts empty. */
async function settle(sshd: Sshd): Promise<void> {
  await waitFor(() => sshd.connectionPids().filter((p) => p.sshd).length === 0, 30_000);
  await new Promise((resolve) => setTimeout(resolve, 1000));
}

/** The clients measured, by version. */
function clientVersions(): { ansible: string; openssh: string } {
  const ansible = execFileSync('ansible-playbook', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().split('\n')[0];
  const openssh = spawnSync('ssh', ['-V'], { encoding: 'utf8' }).stderr.trim(); // ssh -V writes to stderr
  return { ansible, openssh };
}

function printTable(rows: Row[]): void {
  const head = ['scenario', 'system', 'n', 'ok', 'failed', 'Session open refused', 'sshd logins', 'MaxStartups drops', 'wall'];
  const body = rows.map((r) => [r.scenario, r.system, String(r.n), String(r.ok), r.failed ? `${r.failed} (${r.failures.join('; ')})` : '0',
    String(r.session_open_refused), String(r.sshd_logins), String(r.maxstartups_drops), `${r.wall_s} s`]);
  process.stdout.write(`${table(head, body)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  cleanupAll().finally(() => process.exit(1));
});
