// Programs no one here wrote, each calling ssh its own way through its own
// knob, with sshmux in ssh's place: git over ssh://host:port (GIT_SSH_COMMAND,
// after its `-G` probe), pdsh (-R ssh, PDSH_SSH_ARGS with options after the
// host), parallel-ssh (an `ssh` on PATH, options after the host), restic
// (an sftp repository through the `ssh` on PATH: `HOST -p PORT -l USER -s
// sftp`) and borg (BORG_RSH). Results are checked by value and by hash. The
// daemon's ssh_config gives these hosts no port or user, so each must come
// from the program's own command line. Then programs that keep ssh running:
// autossh (a -N -L tunnel it restarts when ssh exits 255) and sshfs (an
// sftp session under a FUSE mount). Then ssh's other modes: -O, -f, -E,
// -V, -Q.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePort, remoteProcesses, startSshd, tempDir, type Sshd } from '../helpers/sshd';
import { waitFor, type DaemonProc } from '../helpers/daemon';
import { fetchChecked, payloadServer } from '../helpers/http-payload';
import { pidsWithArg } from '../helpers/signals';
import { startWorld } from '../helpers/world';

const SSHMUX = path.join(__dirname, '..', '..', 'cli', 'sshmux.js');
let sshd: Sshd;
let daemon: DaemonProc;
/** PATH with a directory whose `ssh` is sshmux first. */
let env: NodeJS.ProcessEnv;
let port: string;
let user: string;
/** A directory the remote user owns. */
let remoteDir: string;

before(async () => {
  // The world's "t" has everything; node1..3 and 127.0.0.1 get no port and no user from the daemon's ssh_config.
  const world = await startWorld({
    sshConfig: (c) => fs.readFileSync(c.sshConfigPath, 'utf8') + ['', 'Host node1 node2 node3 127.0.0.1', '  HostName 127.0.0.1',
      `  IdentityFile ${c.identityPath}`, '  IdentitiesOnly yes', `  UserKnownHostsFile ${c.knownHostsPath}`,
      '  GlobalKnownHostsFile /dev/null', '  StrictHostKeyChecking yes', ''].join('\n'),
  });
  ({ sshd, daemon } = world);
  port = String(sshd.port);
  user = sshd.user.name;
  const bin = path.join(world.dir, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(SSHMUX, path.join(bin, 'ssh'));
  env = { ...world.env, PATH: `${bin}:${process.env.PATH}` };
  remoteDir = tempDir();
  fs.chownSync(remoteDir, sshd.user.uid, sshd.user.gid);
});

function run(cmd: string, args: string[], extra: NodeJS.ProcessEnv = {}, cwd?: string): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { env: { ...env, ...extra }, cwd, encoding: 'utf8', timeout: 120_000 });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.equal(r.status, 0, `${what} exited ${r.status}: ${r.stderr}${r.error ?? ''}`);
  return r.stdout;
}

/** A directory of random files; returns their SHA-256 by relative path. */
function randomTree(dir: string): Map<string, string> {
  const sums = new Map<string, string>();
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  for (const [name, size] of [['a.bin', 3 << 20], ['sub/b.bin', 200_000], ['sub/empty', 0], ['c.txt', 17]] as const) {
    const data = randomBytes(size);
    fs.writeFileSync(path.join(dir, name), data);
    sums.set(name, createHash('sha256').update(data).digest('hex'));
  }
  return sums;
}

function assertTree(dir: string, sums: Map<string, string>): void {
  for (const [name, sum] of sums) {
    assert.equal(createHash('sha256').update(fs.readFileSync(path.join(dir, name))).digest('hex'), sum, name);
  }
}

test('git clones and pushes over ssh://user@host:port with GIT_SSH_COMMAND=sshmux, after its -G probe', () => {
  const bare = path.join(remoteDir, 'repo.git');
  execFileSync('su', [user, '-s', '/bin/sh', '-c', `git init -q --bare ${bare}`]);
  const url = `ssh://${user}@127.0.0.1:${port}${bare}`;
  const git = (args: string[], cwd: string) => run('git', ['-c', 'user.email=t@example.com', '-c', 'user.name=t', ...args],
    { GIT_SSH_COMMAND: SSHMUX, GIT_TRACE: '1' }, cwd);
  const work = tempDir();
  ok(git(['init', '-q', '-b', 'main', '.'], work), 'git init');
  fs.writeFileSync(path.join(work, 'hello.txt'), 'over ssh:// with a port\n');
  ok(git(['add', 'hello.txt'], work), 'git add');
  ok(git(['commit', '-q', '-m', 'first'], work), 'git commit');
  const push = git(['push', '-q', url, 'main'], work);
  ok(push, 'git push');
  // git asked whether the program is OpenSSH, and then passed the port as OpenSSH takes it.
  assert.match(push.stderr, new RegExp(`run_command: .*sshmux\\.js -G -p ${port} ${user}@127\\.0\\.0\\.1`));
  assert.match(push.stderr, new RegExp(`run_command: .*sshmux\\.js (-o SendEnv=GIT_PROTOCOL )?-p ${port} ${user}@127\\.0\\.0\\.1 'git-receive-pack`));
  const clone = path.join(tempDir(), 'clone');
  ok(git(['clone', '-q', '-b', 'main', url, clone], work), 'git clone');
  assert.equal(fs.readFileSync(path.join(clone, 'hello.txt'), 'utf8'), 'over ssh:// with a port\n');
});

test('pdsh -R ssh runs on three hosts, with PDSH_SSH_ARGS putting -l and -p after the host', () => {
  const out = ok(run('pdsh', ['-R', 'ssh', '-w', 'node[1-3]', '-l', user, 'echo $((6*7)) $(id -un)'],
    { PDSH_SSH_ARGS: `-2 -a -x %h -l%u -p ${port}` }), 'pdsh');
  assert.deepEqual(out.trim().split('\n').sort(), ['node1: 42 ' + user, 'node2: 42 ' + user, 'node3: 42 ' + user]);
});

test('parallel-ssh runs on three hosts through the ssh on PATH (ssh -T HOST -o ... -l USER -p PORT CMD)', () => {
  const hosts = ['node1', 'node2', 'node3'].map((h) => `${h}:${port}`).join(' ');
  const out = ok(run('parallel-ssh', ['-H', hosts, '-l', user, '-i', 'echo $((6*7))']), 'parallel-ssh');
  for (const h of ['node1', 'node2', 'node3']) assert.match(out, new RegExp(`\\[SUCCESS\\] ${h}:${port}\\n42\\n`));
});

test('restic backs up to an sftp repository through the ssh on PATH and restores the same bytes', () => {
  const src = path.join(tempDir(), 'src');
  const sums = randomTree(src);
  const repo = `sftp://${user}@node1:${port}/${remoteDir}/restic`;
  const restic = (args: string[]) => run('restic', ['-r', repo, '--no-cache', '-q', ...args], { RESTIC_PASSWORD: 'not-secret' });
  ok(restic(['init']), 'restic init');
  ok(restic(['backup', src]), 'restic backup');
  const target = tempDir();
  ok(restic(['restore', 'latest', '--target', target]), 'restic restore');
  assertTree(path.join(target, src), sums);
});

test('borg creates and extracts an archive over BORG_RSH=sshmux, the same bytes back', () => {
  const src = path.join(tempDir(), 'src');
  const sums = randomTree(src);
  const repo = `ssh://${user}@node2:${port}${remoteDir}/borg`;
  const borgEnv = { BORG_RSH: SSHMUX, BORG_BASE_DIR: tempDir(), BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes' };
  ok(run('borg', ['init', '-e', 'none', repo], borgEnv), 'borg init');
  ok(run('borg', ['create', `${repo}::first`, '.'], borgEnv, src), 'borg create');
  const target = tempDir();
  ok(run('borg', ['extract', `${repo}::first`], borgEnv, target), 'borg extract');
  assertTree(target, sums);
});

test('autossh -M 0 -N -L through sshmux: fetches through the tunnel, which outlives an sshd restart; SIGHUP makes sshmux exit 255, and autossh starts another', async () => {
  // A world of its own: its sshd is restarted.
  const world = await startWorld({ alias: 'a' });
  const web = await payloadServer();
  const local = await freePort();
  // -E names the sshmux that autossh starts (autossh passes it on): its command line holds this path.
  const marker = path.join(world.dir, 'sshmux-under-autossh.log');
  const autosshLog = path.join(world.dir, 'autossh.log');
  // GATETIME 0: a restart counts even when the first run was short; POLL: no checks of its own meanwhile.
  const autossh = spawn('autossh', ['-M', '0', '-N', '-E', marker, '-L', `${local}:127.0.0.1:${web.port}`, 'a'], {
    env: { ...world.env, AUTOSSH_PATH: SSHMUX, AUTOSSH_GATETIME: '0', AUTOSSH_POLL: '600', AUTOSSH_LOGFILE: autosshLog },
    stdio: 'ignore',
  });
  const stopped = new Promise<number | null>((resolve) => autossh.once('exit', (code) => resolve(code)));
  const child = (): number[] => pidsWithArg(marker).filter((pid) => pid !== autossh.pid);
  const log = (): string => (fs.existsSync(autosshLog) ? fs.readFileSync(autosshLog, 'utf8') : '');
  try {
    assert.ok(await waitFor(async () => (await fetchChecked(local, 100_000)) === true, 20_000), `the tunnel never served: ${log()}`);
    const [first] = child();
    assert.ok(first, 'no sshmux under autossh');

    // The sshd restarts: the daemon reconnects, and the same sshmux carries on (autossh has nothing to do).
    const port = world.sshd.port;
    await world.sshd.stop();
    await startSshd({ port, hostKey: world.sshd.hostKey });
    assert.ok(await waitFor(async () => (await fetchChecked(local, 100_000)) === true, 20_000), `no fetch after the sshd restart: ${log()}`);
    assert.deepEqual(child(), [first]);

    // SIGHUP: sshmux exits 255, as ssh does, and autossh starts another (on 0 it would give up).
    process.kill(first, 'SIGHUP');
    assert.ok(await waitFor(() => child().length === 1 && child()[0] !== first, 10_000), `autossh did not start another sshmux: ${log()}`);
    assert.match(log(), /ssh exited with error status 255; restarting ssh/);
    assert.ok(await waitFor(async () => (await fetchChecked(local, 100_000)) === true, 20_000), `no fetch through the new tunnel: ${log()}`);
    assert.equal(autossh.exitCode, null, 'autossh gave up');
  } finally {
    autossh.kill('SIGTERM');
    await stopped;
  }
  assert.ok(await waitFor(() => child().length === 0, 5000), 'autossh left its sshmux behind');
});

test('sshfs mounts through sshmux (the ssh on PATH, -s sftp): 5 MB written and 5 MB read with equal hashes, then unmounted', {
  skip: !fs.existsSync('/dev/fuse') && 'no /dev/fuse here',
}, () => {
  const mount = tempDir();
  const dir = path.join(remoteDir, 'sshfs');
  execFileSync('su', [user, '-s', '/bin/sh', '-c', `mkdir ${dir} && head -c 5000000 /dev/urandom > ${dir}/from-remote`]);
  ok(run('sshfs', [`127.0.0.1:${dir}`, mount, '-p', port, '-o', `ssh_command=ssh -l ${user}`]), 'sshfs');
  try {
    const sent = randomBytes(5_000_000);
    fs.writeFileSync(path.join(mount, 'to-remote'), sent);
    const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');
    assert.equal(sha(fs.readFileSync(path.join(mount, 'from-remote'))), sha(fs.readFileSync(path.join(dir, 'from-remote'))));
    assert.equal(sha(fs.readFileSync(path.join(dir, 'to-remote'))), sha(sent));
    assert.equal(fs.statSync(path.join(dir, 'to-remote')).uid, sshd.user.uid, 'not written as the remote user');
  } finally {
    ok(run('fusermount3', ['-u', mount]), 'fusermount3 -u');
  }
});

test('-O check: exit 0 and "Master running" with the daemon\'s pid; 255 without a daemon or for a destination it cannot use', () => {
  const check = run(SSHMUX, ['-O', 'check', '-o', 'ControlPath=/tmp/cm-%C', 't']);
  assert.equal(check.status, 0, check.stderr);
  assert.equal(check.stderr, `Master running (pid=${daemon.pid})\r\n`);
  const bad = run(SSHMUX, ['-O', 'check', '-p', 'nan', 't']);
  assert.equal(bad.status, 255);
  const badOption = run(SSHMUX, ['-O', 'check', '-o', 'Port=notaport', 't']);
  assert.equal(badOption.status, 255);
  assert.match(badOption.stderr, /^sshmux: bad Port "notaport"/);
  // No daemon: nothing is started to answer "is a master running?".
  const socket = path.join(tempDir(), 'none', 'sshmuxd.sock');
  const none = run(SSHMUX, ['-O', 'check', 't'], { SSHMUX_SOCKET: socket });
  assert.equal(none.status, 255);
  assert.match(none.stderr, /^sshmux: no sshmuxd socket at /);
  assert.ok(!fs.existsSync(socket));
  const forward = run(SSHMUX, ['-O', 'forward', '-L', '1:a:2', 't']);
  assert.equal(forward.status, 255);
  assert.match(forward.stderr, /-O forward adds forwardings to a running master; the daemon holds no listeners/);
});

test('-O exit and -O stop drain the destination: a running command finishes, the next one gets a new connection', async () => {
  // Opened under another name for the same destination: draining "t" must reach it too.
  ok(run(SSHMUX, ['-p', port, '-l', user, 'node3', 'true']), 'warm-up');
  const loginsBefore = sshd.logins();
  for (const command of ['exit', 'stop']) {
    const slow = spawn(SSHMUX, ['t', 'sleep 1; echo finished'], { env });
    let out = '';
    slow.stdout.on('data', (d: Buffer) => (out += d));
    const slowExit = new Promise<number | null>((resolve) => slow.once('exit', resolve));
    assert.ok(await waitFor(() => remoteProcesses('sleep 1; echo finished').length > 0, 10_000), 'the command did not start');
    const r = run(SSHMUX, ['-O', command, 't']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, command === 'exit' ? 'Exit request sent.\r\n' : 'Stop listening request sent.\r\n');
    assert.equal(await slowExit, 0, 'the running command was cut off');
    assert.equal(out, 'finished\n');
    ok(run(SSHMUX, ['t', 'true']), 'after the drain');
  }
  assert.equal(sshd.logins() - loginsBefore, 2, 'each drain should make the next command log in afresh');
});

test('-f returns once the command has started and leaves it running; a failure before that is reported with 255', async () => {
  const marker = path.join(tempDir(), 'marker');
  fs.chmodSync(path.dirname(marker), 0o777);
  // As with ssh -f, the command keeps our stdout and stderr: a file, so that nothing waits for them to close.
  const output = fs.openSync(path.join(tempDir(), 'output'), 'w');
  const started = Date.now();
  const r = spawnSync(SSHMUX, ['-f', 't', `sleep 1; echo done > ${marker}`], { env, stdio: ['ignore', output, output], timeout: 30_000 });
  fs.closeSync(output);
  assert.equal(r.status, 0);
  assert.ok(Date.now() - started < 5000);
  assert.ok(!fs.existsSync(marker), 'sshmux -f waited for the command to end');
  assert.ok(await waitFor(() => fs.existsSync(marker) && fs.readFileSync(marker, 'utf8') === 'done\n', 10_000), 'the command did not run on');
  const fail = run(SSHMUX, ['-f', '-o', 'Port=notaport', 't', 'true']);
  assert.equal(fail.status, 255);
  assert.match(fail.stderr, /bad Port "notaport"/);
});

test('-E appends sshmux\'s own messages to a file, not to stderr; -V and -Q answer as ssh does', () => {
  const log = path.join(tempDir(), 'sshmux.log');
  fs.writeFileSync(log, 'earlier\n');
  const r = run(SSHMUX, ['-v', '-E', log, '-A', 't', 'echo out; echo err >&2']);
  assert.equal(r.status, 0);
  assert.equal(r.stdout, 'out\n');
  assert.equal(r.stderr, 'err\n');
  const text = fs.readFileSync(log, 'utf8');
  assert.match(text, /^earlier\nsshmux: ignoring -A: agent forwarding is not done/);
  assert.match(text, /sshmux: session on \S+#\d+ after \d+ ms/);
  const failed = run(SSHMUX, ['-E', log, '-o', 'Port=notaport', 't', 'true']);
  assert.equal(failed.status, 255);
  assert.equal(failed.stderr, '');
  assert.match(fs.readFileSync(log, 'utf8'), /sshmux: bad Port "notaport"/);

  const version = run(SSHMUX, ['-V', 'ignored', '-Z']);
  assert.equal(version.status, 0);
  assert.equal(version.stdout, '');
  assert.match(version.stderr, /^sshmux \d+\.\d+\.\d+, standing in for OpenSSH's ssh/);
  const ciphers = run(SSHMUX, ['-Q', 'cipher']);
  assert.equal(ciphers.status, 0);
  assert.ok(ciphers.stdout.split('\n').includes('aes128-gcm@openssh.com'), ciphers.stdout);
  assert.equal(run(SSHMUX, ['-Q', 'protocol-version']).stdout, '2\n');
  const unknown = run(SSHMUX, ['-Q', 'nonsense']);
  assert.equal(unknown.status, 255);
  assert.equal(unknown.stderr, 'Unsupported query "nonsense"\r\n');
});
