// Plain OpenSSH through the ssh_config block that `sshmuxctl ssh-config`
// prints: ssh, scp, sftp, rsync, git and Ansible, unchanged, each reading
// an ssh_config that Includes the block before the hosts' own settings (as
// ~/.ssh/config would; -F here, so the machine's own stays out of it). Every
// destination gets a ControlMaster whose connection goes to the daemon's
// front door; sessions past MaxSessions queue there instead of being refused.
// Checked: results by value and hash, exit statuses, the typed error of a
// destination with a bad host key on ssh's stderr, a slow reader, a caller
// killed, 150 commands at once and Ansible at fan-out 30 against one sshd
// with MaxSessions 10 (counts: logins, drops, refusals), and a daemon
// without a front door refusing to print the block.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { playResults, PLAY_OUTPUT_ENV } from '../helpers/ansible';
import { remoteProcesses, startSshd, tempDir, type Sshd } from '../helpers/sshd';
import { waitFor } from '../helpers/daemon';
import { slowReader } from '../helpers/load';
import { startWorld, type World } from '../helpers/world';

const SSHMUXCTL = path.join(__dirname, '..', '..', 'cli', 'sshmuxctl.js');
/**
 * The clients' environment. ssh runs the block's ProxyCommand through $SHELL,
 * and bash with a socket on stdin and SHLVL unset or 0 sources ~/.bashrc
 * first (as if rshd had started it): SHLVL=1, as from a terminal, keeps this
 * machine's ~/.bashrc out of what is tested.
 */
const CLIENT_ENV = { ...process.env, SHLVL: '1' };

let sshd: Sshd;
let world: World;
/** The ssh_config every client here reads: the block first, then the hosts. */
let clientConfig: string;
let blockText: string;
/** A directory the remote user owns, on this same machine. */
let remoteDir: string;

before(async () => {
  sshd = await startSshd({ maxSessions: 10 });
  const state = tempDir();
  world = await startWorld({
    sshd,
    daemonArgs: ['--gateway', '127.0.0.1:0', '--state-dir', state],
    // "bad" is the same sshd under another name, whose known_hosts line holds another key: HOST_KEY_MISMATCH.
    // (Another host name, so that its ControlMaster is not t's: masters are per host, port and user.)
    sshConfig: (c) => {
      fs.appendFileSync(c.knownHostsPath, `[localhost]:${sshd.port} ${fs.readFileSync(`${c.identityPath}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ')}\n`);
      return `${fs.readFileSync(c.sshConfigPath, 'utf8')}\nHost bad\n  HostName localhost\n  Port ${sshd.port}\n  User ${sshd.user.name}\n` +
        `  IdentityFile ${c.identityPath}\n  UserKnownHostsFile ${c.knownHostsPath}\n  StrictHostKeyChecking yes\n`;
    },
  });
  const printed = spawnSync(process.execPath, [SSHMUXCTL, '--socket', world.daemon.socket, 'ssh-config', 't', 'bad'], { encoding: 'utf8' });
  assert.equal(printed.status, 0, printed.stderr);
  blockText = printed.stdout;
  const block = path.join(world.dir, 'sshmux.conf');
  fs.writeFileSync(block, blockText);
  clientConfig = path.join(world.dir, 'client_config');
  fs.writeFileSync(clientConfig, `Include ${block}\nInclude ${world.client.sshConfigPath}\n`);
  remoteDir = tempDir();
  fs.chownSync(remoteDir, sshd.user.uid, sshd.user.gid);
});

after(() => {
  // The masters end with the daemon's connections anyway; -O exit says so at once.
  for (const host of ['t', 'bad']) spawnSync('ssh', ['-F', clientConfig, '-O', 'exit', host], { stdio: 'ignore', timeout: 10_000, env: CLIENT_ENV });
});

function ssh(args: string[], input?: string | Buffer): SpawnSyncReturns<Buffer> {
  return spawnSync('ssh', ['-F', clientConfig, '-o', 'BatchMode=yes', ...args], { input, timeout: 120_000, maxBuffer: 64 << 20, env: CLIENT_ENV });
}

function ok(r: SpawnSyncReturns<Buffer | string>, what: string): string {
  assert.equal(r.status, 0, `${what} exited ${r.status}: ${r.stderr}${r.error ?? ''}`);
  return r.stdout.toString();
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The front door's connections and sessions now (sshmuxctl gateway --json). */
function door(): { connections: number; sessions: number } {
  return JSON.parse(execFileSync(process.execPath, [SSHMUXCTL, '--socket', world.daemon.socket, '--json', 'gateway']).toString());
}

test('the block: its first line says what the daemon needs, the door is checked as one known identity, sshmuxd skips it', () => {
  const lines = blockText.split('\n');
  assert.match(lines[0], /^# >>> sshmux ssh-config: needs sshmuxd --gateway 127\.0\.0\.1:PORT/);
  const knownHosts = fs.readFileSync(/UserKnownHostsFile (\S+)/.exec(blockText)![1], 'utf8');
  const alias = /HostKeyAlias (\S+)/.exec(blockText)![1];
  assert.ok(knownHosts.split('\n').filter((l) => l.startsWith(`${alias} `)).length >= 3, `no ${alias} lines in gateway_known_hosts:\n${knownHosts}`);
  assert.match(blockText, /^ {4}StrictHostKeyChecking yes$/m);
  assert.match(blockText, /^# <<< sshmux ssh-config$/m);
  // ssh resolves t through the block; the daemon resolves the same names without it (sshmux -G asks the daemon).
  const g = ok(spawnSync('ssh', ['-F', clientConfig, '-G', 't'], { encoding: 'utf8', env: CLIENT_ENV }), 'ssh -G');
  assert.match(g, /^proxycommand .*gateway-dial\.js/m);
  assert.match(g, /^controlmaster auto$/m);
});

test('ssh HOST CMD: output, stdin, stderr apart and the exit status, on one master and one door connection', () => {
  const r = ssh(['t', 'cat; echo to-stderr >&2; exit 7'], 'from stdin\n');
  assert.equal(r.status, 7, r.stderr.toString());
  assert.equal(r.stdout.toString(), 'from stdin\n');
  assert.equal(r.stderr.toString(), 'to-stderr\n');
  assert.match(ssh(['-O', 'check', 't']).stderr.toString(), /^Master running \(pid=\d+\)/);
  const before = door().connections;
  for (let i = 0; i < 5; i++) assert.equal(ok(ssh(['t', `echo ${i}`]), 'ssh'), `${i}\n`);
  assert.equal(door().connections, before, 'a later ssh opened a connection of its own instead of riding the master');
  // A remote command killed by a signal: 255, as ssh says it.
  assert.equal(ssh(['t', 'kill -TERM $$']).status, 255);
});

test('scp, sftp and rsync move files both ways, hashes equal', () => {
  const local = tempDir();
  const data = randomBytes(5 << 20);
  fs.writeFileSync(path.join(local, 'up.bin'), data);
  ok(spawnSync('scp', ['-F', clientConfig, '-q', path.join(local, 'up.bin'), `t:${remoteDir}/scp.bin`], { env: CLIENT_ENV }), 'scp up');
  ok(spawnSync('scp', ['-F', clientConfig, '-q', `t:${remoteDir}/scp.bin`, path.join(local, 'scp-down.bin')], { env: CLIENT_ENV }), 'scp down');
  assert.equal(sha256(fs.readFileSync(path.join(local, 'scp-down.bin'))), sha256(data));
  ok(spawnSync('sftp', ['-F', clientConfig, '-q', '-b', '-', 't'], {
    input: `put ${local}/up.bin ${remoteDir}/sftp.bin\nget ${remoteDir}/sftp.bin ${local}/sftp-down.bin\n`, env: CLIENT_ENV,
  }), 'sftp');
  assert.equal(sha256(fs.readFileSync(path.join(local, 'sftp-down.bin'))), sha256(data));
  const tree = path.join(local, 'tree');
  fs.mkdirSync(path.join(tree, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(tree, 'sub', 'a.bin'), data.subarray(0, 300_000));
  fs.writeFileSync(path.join(tree, 'b.txt'), 'b\n');
  const rsh = `ssh -F ${clientConfig}`;
  ok(spawnSync('rsync', ['-a', '-e', rsh, `${tree}/`, `t:${remoteDir}/tree/`], { env: CLIENT_ENV }), 'rsync up');
  ok(spawnSync('rsync', ['-a', '-e', rsh, `t:${remoteDir}/tree/`, `${local}/tree-down/`], { env: CLIENT_ENV }), 'rsync down');
  assert.equal(sha256(fs.readFileSync(path.join(local, 'tree-down', 'sub', 'a.bin'))), sha256(data.subarray(0, 300_000)));
  assert.equal(fs.readFileSync(path.join(local, 'tree-down', 'b.txt'), 'utf8'), 'b\n');
});

test('git pushes and clones over ssh://t/...', () => {
  const bare = path.join(remoteDir, 'repo.git');
  execFileSync('su', [sshd.user.name, '-s', '/bin/sh', '-c', `git init -q --bare ${bare}`]);
  const work = tempDir();
  const env = { ...CLIENT_ENV, GIT_SSH_COMMAND: `ssh -F ${clientConfig}` };
  const git = (args: string[], cwd: string): SpawnSyncReturns<string> =>
    spawnSync('git', ['-c', 'user.email=t@example.com', '-c', 'user.name=t', ...args], { cwd, env, encoding: 'utf8', timeout: 120_000 });
  fs.writeFileSync(path.join(work, 'hello.txt'), 'hello through the block\n');
  ok(git(['init', '-q', '-b', 'main', '.'], work), 'git init');
  ok(git(['add', 'hello.txt'], work), 'git add');
  ok(git(['commit', '-q', '-m', 'first'], work), 'git commit');
  ok(git(['push', '-q', `ssh://t${bare}`, 'main'], work), 'git push');
  const clone = path.join(tempDir(), 'clone');
  ok(git(['clone', '-q', '-b', 'main', `ssh://t${bare}`, clone], work), 'git clone');
  assert.equal(fs.readFileSync(path.join(clone, 'hello.txt'), 'utf8'), 'hello through the block\n');
});

test('a destination with a bad host key: ssh prints the typed error and exits 255, every time', () => {
  for (let i = 0; i < 2; i++) {
    const r = ssh(['bad', 'echo should-not-run']);
    assert.equal(r.status, 255, r.stderr.toString());
    assert.equal(r.stdout.toString(), '');
    assert.match(r.stderr.toString(), /^sshmux: HOST_KEY_MISMATCH: REMOTE HOST IDENTIFICATION HAS CHANGED for \[localhost\]:\d+/m);
  }
});

test('a slow reader gets every byte', async () => {
  const file = path.join(remoteDir, 'big.bin');
  const data = randomBytes(24 << 20);
  fs.writeFileSync(file, data);
  fs.chownSync(file, sshd.user.uid, sshd.user.gid);
  const reader = slowReader(1, 65536, 0.002);
  const child = spawn('ssh', ['-F', clientConfig, '-o', 'BatchMode=yes', 't', `cat ${file}`], { stdio: ['ignore', 'pipe', 'pipe'], env: CLIENT_ENV });
  child.stdout.pipe(reader.stdin as NodeJS.WritableStream);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const [status] = await Promise.all([new Promise((r) => child.once('close', r)), reader.result]);
  assert.equal(status, 0, stderr);
  assert.deepEqual(await reader.result, { bytes: data.length, sha256: sha256(data) });
});

test('the caller killed (SIGKILL, SIGTERM) ends the remote command', async () => {
  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    // A duration no other test uses marks the remote process.
    const marker = `sleep ${3000 + Math.floor(Math.random() * 6000)}`;
    const child = spawn('ssh', ['-F', clientConfig, '-o', 'BatchMode=yes', 't', `exec ${marker}`], { stdio: 'ignore', env: CLIENT_ENV });
    assert.ok(await waitFor(() => remoteProcesses(marker).length > 0, 20_000), 'the remote command never started');
    child.kill(signal);
    assert.ok(await waitFor(() => remoteProcesses(marker).length === 0, 15_000), `the remote command outlived the caller's ${signal}`);
  }
});

test('150 commands at once, no master yet: all succeed, at most 8 logins, no MaxStartups drops', async () => {
  // -O exit: the race for the master, the worst case (each loser makes a door connection of its own).
  ssh(['-O', 'exit', 't']);
  await waitFor(() => door().connections === 0, 10_000);
  const logins = sshd.logins();
  const runs = Array.from({ length: 150 }, (_, i) => new Promise<{ status: number | null; out: string; err: string }>((resolve) => {
    const child = spawn('ssh', ['-F', clientConfig, '-o', 'BatchMode=yes', 't', `sleep 0.5; echo ${i}`], { stdio: ['ignore', 'pipe', 'pipe'], env: CLIENT_ENV });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.once('close', (status) => resolve({ status, out, err }));
  }));
  const results = await Promise.all(runs);
  const failed = results.map((r, i) => ({ ...r, i })).filter((r) => r.status !== 0 || r.out !== `${r.i}\n`);
  assert.deepEqual(failed.slice(0, 3), [], `${failed.length} of 150 failed`);
  assert.ok(sshd.logins() - logins <= 8, `${sshd.logins() - logins} logins`);
  assert.equal(sshd.drops(), 0);
  assert.ok(!results.some((r) => /open refused|Session open refused/.test(r.err)));
});

test('Ansible, forks 30, thirty inventory names for one sshd with MaxSessions 10: every task succeeds, at most 8 logins', () => {
  const dir = tempDir();
  const inventory = path.join(dir, 'inventory');
  const names = Array.from({ length: 30 }, (_, i) => `h${String(i + 1).padStart(2, '0')}`);
  fs.writeFileSync(inventory, `[all]\n${names.map((n) => `${n} ansible_host=t`).join('\n')}\n\n[all:vars]\n` +
    'ansible_python_interpreter=/usr/bin/python3\n' +
    // -F in place of ~/.ssh/config; Ansible's own ssh arguments (-C, ControlMaster, ControlPersist, ControlPath) stay as they are.
    `ansible_ssh_extra_args=-F ${clientConfig}\n`);
  const out = path.join(remoteDir, 'ansible');
  const playbook = path.join(dir, 'play.yml');
  fs.writeFileSync(playbook, [
    '- hosts: all',
    '  gather_facts: false',
    '  tasks:',
    '    - command: sh -c "sleep 0.3; echo {{ inventory_hostname }}"',
    '      register: echoed',
    '    - copy:',
    '        content: "{{ echoed.stdout }}"',
    `        dest: "${out}-{{ inventory_hostname }}"`,
    `    - command: cat "${out}-{{ inventory_hostname }}"`,
    '      register: read',
    '      failed_when: read.stdout != inventory_hostname',
    '',
  ].join('\n'));
  const logins = sshd.logins();
  const controlDir = path.join(dir, 'cp');
  const r = spawnSync('ansible-playbook', ['-i', inventory, '-f', '30', playbook], {
    encoding: 'utf8', timeout: 170_000, cwd: dir,
    env: { ...CLIENT_ENV, ...PLAY_OUTPUT_ENV, ANSIBLE_SSH_CONTROL_PATH_DIR: controlDir, ANSIBLE_LOCAL_TEMP: path.join(dir, 'tmp') },
  });
  // Ansible's masters would stay 60 s (its ControlPersist): end them now.
  for (const socket of fs.existsSync(controlDir) ? fs.readdirSync(controlDir) : []) {
    ssh(['-o', `ControlPath=${path.join(controlDir, socket)}`, '-O', 'exit', 't']);
  }
  assert.equal(r.status, 0, `${r.stdout.slice(-3000)}\n${r.stderr}`);
  const { recap, failures } = playResults(r.stdout);
  assert.deepEqual([...recap.keys()].sort(), names);
  for (const [name, s] of recap) assert.deepEqual([s.ok, s.failed, s.unreachable], [3, 0, 0], name);
  assert.deepEqual(failures, []);
  assert.doesNotMatch(r.stdout + r.stderr, /Session open refused/);
  assert.ok(sshd.logins() - logins <= 8, `${sshd.logins() - logins} logins`);
  assert.equal(sshd.drops(), 0);
});

test('a line before the SSH identification that is not the helper\'s ends the connection, and says so in the log', async () => {
  const address = JSON.parse(execFileSync(process.execPath, [SSHMUXCTL, '--socket', world.daemon.socket, '--json', 'gateway']).toString()).address as string;
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  const closed = await new Promise<boolean>((resolve) => {
    const socket = net.connect(port, host, () => socket.write('GET / HTTP/1.0\r\nSSH-2.0-OpenSSH_9.2\r\n'));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, 10_000);
    socket.on('data', () => {});
    socket.on('error', () => {});
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  assert.ok(closed, 'the door kept the connection open');
  assert.match(world.daemon.logs(), /not \\"sshmux-destination USER@HOST PORT\\": \\"GET \/ HTTP\/1\.0.*?"msg":"gateway: connection refused"/);
});

test('nothing left behind: once the masters exit, no door connection, channel or pooled session remains', async () => {
  for (const host of ['t', 'bad']) ssh(['-O', 'exit', host]);
  assert.ok(await waitFor(() => door().connections === 0, 15_000), `door connections left: ${JSON.stringify(door())}`);
  assert.equal(door().sessions, 0);
  const status = await world.mux.status();
  assert.equal(status.totals?.sessions ?? 0, 0, 'pooled sessions still open');
});

test('a daemon without a front door: sshmuxctl ssh-config fails with what the block needs', async () => {
  const plain = await startWorld({ sshd });
  const r = spawnSync(process.execPath, [SSHMUXCTL, '--socket', plain.daemon.socket, 'ssh-config'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /needs sshmuxd --gateway 127\.0\.0\.1:PORT/);
});
