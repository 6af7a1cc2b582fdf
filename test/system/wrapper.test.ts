// sshmux as a drop-in for ssh: the real git, rsync, scp and sftp call it
// unchanged; a pty under a real terminal; signals; fan-out from many
// wrapper processes; autostart of a per-user daemon.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cleanupAll, remoteProcesses, startSshd, tempDir, writeClientConfig, type Sshd } from '../helpers/sshd';
import { startDaemon, waitFor, type DaemonProc } from '../helpers/daemon';
import { underTerminal } from '../helpers/terminal';

const SSHMUX = path.join(__dirname, '..', '..', 'cli', 'sshmux.js');
let sshd: Sshd;
let daemon: DaemonProc;
let env: NodeJS.ProcessEnv;
/** A directory the remote user owns, on this same machine. */
let remoteDir: string;

before(async () => {
  sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  env = { ...process.env, SSHMUX_SOCKET: daemon.socket };
  remoteDir = tempDir();
  fs.chownSync(remoteDir, sshd.user.uid, sshd.user.gid);
});

after(async () => {
  await daemon?.stop();
  await cleanupAll();
});

function run(args: string[], input?: Buffer | string, extraEnv: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [SSHMUX, ...args], { input, env: { ...env, ...extraEnv }, timeout: 60_000, maxBuffer: 64 << 20 });
}

function md5(file: string): string {
  return createHash('md5').update(fs.readFileSync(file)).digest('hex');
}

/** Runs a real tool (git, rsync, scp, sftp) with sshmux in ssh's place. */
function tool(cmd: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}, cwd?: string): string {
  return execFileSync(cmd, args, { env: { ...env, ...extraEnv }, cwd, timeout: 60_000, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
}

test('exit status, stderr apart from stdout, 3 MB of random bytes through cat unchanged, -n', () => {
  const r = run(['t', 'echo out; echo err >&2; exit 42']);
  assert.equal(r.status, 42);
  assert.equal(r.stdout.toString(), 'out\n');
  assert.equal(r.stderr.toString(), 'err\n');
  const data = randomBytes(3 * 1024 * 1024);
  const cat = run(['t', 'cat'], data);
  assert.equal(cat.status, 0);
  assert.ok(Buffer.compare(cat.stdout, data) === 0, `cat returned ${cat.stdout.length} bytes, not the same 3 MB`);
  const n = run(['-n', 't', 'wc -c'], 'this must not reach the remote');
  assert.equal(n.stdout.toString().trim(), '0');
  const unknown = run(['no-such-host.invalid', 'true']);
  assert.equal(unknown.status, 255);
  assert.match(unknown.stderr.toString(), /^sshmux: could not resolve hostname no-such-host\.invalid/);
});

test('sshmux ends by letting its event loop empty, never through process.exit() (which can deadlock Node at exit, nodejs/node#54918): a status, output, stdin piped and left open, a terminal, an unknown host, -W, -N and -L ended by SIGTERM', async () => {
  const probe = path.join(tempDir(), 'exits');
  const PRELOAD = path.join(__dirname, '..', 'helpers', 'exit-probe.js');
  const started = performance.now();
  const runProbed = (args: string[], input?: string) => spawnSync(process.execPath, ['--require', PRELOAD, SSHMUX, ...args],
    { input, env: { ...env, SSHMUX_EXIT_PROBE: probe }, timeout: 30_000, maxBuffer: 64 << 20 });
  assert.equal(runProbed(['t', 'echo out; exit 3']).status, 3);
  assert.equal(runProbed(['t', 'head -c 5000000 /dev/zero']).stdout.length, 5_000_000);
  assert.equal(runProbed(['t', 'cat'], 'piped').stdout.toString(), 'piped');
  assert.equal(runProbed(['no-such-host.invalid', 'true']).status, 255);
  // stdin a pipe nobody closes: ssh exits once the command has, without waiting for EOF.
  const open = spawn(process.execPath, ['--require', PRELOAD, SSHMUX, 't', 'echo done'], { env: { ...env, SSHMUX_EXIT_PROBE: probe }, stdio: ['pipe', 'pipe', 'pipe'] });
  const [code] = await Promise.race([
    new Promise<[number | null]>((resolve) => open.once('exit', (c) => resolve([c]))),
    new Promise<[string]>((resolve) => setTimeout(resolve, 20_000, ['still running after 20 s'])),
  ]);
  open.kill('SIGKILL');
  assert.equal(code, 0);
  const http = spawnSync(process.execPath, ['--require', PRELOAD, SSHMUX, '-W', `127.0.0.1:${sshd.port}`, 't'],
    { input: 'SSH-2.0-probe\r\n', env: { ...env, SSHMUX_EXIT_PROBE: probe }, timeout: 30_000 });
  assert.match(http.stdout.toString(), /^SSH-2\.0-/);
  const term = underTerminal([process.execPath, '--require', PRELOAD, SSHMUX, '-t', 't', 'tty'], 'never', 15, { ...env, SSHMUX_EXIT_PROBE: probe });
  assert.match(term, /^0 restored .*\/dev\/pts\/\d+/s, term);
  // -N, and -N -L, stand by until SIGTERM, then end with ssh's status (0), on their own too.
  for (const args of [['-N', 't'], ['-N', '-L', `0:127.0.0.1:${sshd.port}`, 't']]) {
    const standing = spawn(process.execPath, ['--require', PRELOAD, SSHMUX, '-v', ...args], { env: { ...env, SSHMUX_EXIT_PROBE: probe }, stdio: ['ignore', 'ignore', 'pipe'] });
    let said = '';
    standing.stderr.on('data', (d: Buffer) => (said += d));
    assert.ok(await waitFor(() => /connected|listening/.test(said), 20_000), `sshmux ${args.join(' ')} never stood by: ${said}`);
    standing.kill('SIGTERM');
    const [status] = await Promise.race([
      new Promise<[number | null]>((resolve) => standing.once('exit', (c) => resolve([c]))),
      new Promise<[string]>((resolve) => setTimeout(resolve, 20_000, ['still running 20 s after SIGTERM'])),
    ]);
    standing.kill('SIGKILL');
    assert.equal(status, 0, `sshmux ${args.join(' ')}`);
  }
  assert.equal(fs.existsSync(probe) ? fs.readFileSync(probe, 'utf8') : '', '', 'an exit went through process.exit()');
  // Each ended at once: none waited out the 2 s fallback.
  assert.ok(performance.now() - started < 20_000);
});

test('a slow reader gets every byte of stdout and stderr before sshmux exits with the remote status (5 runs)', async () => {
  const file = path.join(remoteDir, 'eight-mib');
  const data = randomBytes(8 << 20);
  fs.writeFileSync(file, data, { mode: 0o644 });
  const want = createHash('sha256').update(data).digest('hex');
  for (let run = 0; run < 5; run++) {
    const child = spawn(process.execPath, [SSHMUX, 't', `cat ${file}; head -c 300000 ${file} >&2; exit 3`], { env });
    const hash = createHash('sha256');
    let errBytes = 0;
    child.stderr.on('data', (d: Buffer) => (errBytes += d.length));
    // A pause after every chunk: the remote finishes long before we do, so the tail sits in pipes and in sshmux.
    child.stdout.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      child.stdout.pause();
      setTimeout(() => child.stdout.resume(), 2);
    });
    const drained = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const status = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    await drained;
    assert.equal(status, 3, `run ${run}`);
    assert.equal(hash.digest('hex'), want, `run ${run}: stdout lost bytes`);
    assert.equal(errBytes, 300_000, `run ${run}: stderr lost bytes`);
  }
});

test('when the reader of stdout goes away, the remote command is ended and sshmux exits 255 without a word', async () => {
  const marker = `epipe${Math.floor(Math.random() * 1e6)}`;
  const r = spawnSync('bash', ['-c', `"${process.execPath}" "${SSHMUX}" t 'exec yes ${marker}' | head -1; echo "status \${PIPESTATUS[0]}"`],
    { env: { ...env }, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.stdout, `${marker}\nstatus 255\n`);
  assert.equal(r.stderr, '');
  assert.ok(await waitFor(() => remoteProcesses(marker).length === 0, 5000), 'the remote command outlived its reader');
});

test('ssh option grammar: packed flags, -oKey value, ssh:// URLs, Ansible-style quoting, refused and unknown options', () => {
  const r = run(['-qTx', '-oConnectTimeout 5', '-o', 'User="' + sshd.user.name + '"', '-o', 'ControlMaster=auto', '-o', 'ControlPersist=60s',
    '-C', `ssh://t:${sshd.port}`, 'id', '-un']);
  assert.equal(r.status, 0, r.stderr.toString());
  assert.equal(r.stdout.toString(), `${sshd.user.name}\n`);
  const proxy = run(['-o', 'ProxyCommand=nc %h %p', 't', 'true']);
  assert.equal(proxy.status, 255);
  assert.match(proxy.stderr.toString(), /ProxyCommand is refused: sshmuxd never runs a command a client sends; set it in the daemon's ssh_config/);
  assert.equal(run(['-oPermitLocalCommand=no', '-oProxyCommand=none', 't', 'true']).status, 0);
  const unknown = run(['-Z', 't', 'true']);
  assert.equal(unknown.status, 255);
  assert.match(unknown.stderr.toString(), /unknown option -- Z/);
  const sendEnv = run(['-o', 'SendEnv=SSHMUX_*', '-o', 'SetEnv=SSHMUX_B=2', 't', 'echo $SSHMUX_A$SSHMUX_B'], undefined, { SSHMUX_A: '1' });
  assert.equal(sendEnv.stdout.toString(), '12\n');
});

test('-F resolves through the caller\'s own ssh_config; relative paths are the caller\'s', () => {
  const dir = tempDir();
  const own = writeClientConfig(dir, [{ alias: 'only-in-F', sshd }]);
  const r = spawnSync(process.execPath, [SSHMUX, '-F', path.basename(own.sshConfigPath), 'only-in-F', 'echo via F'],
    { cwd: dir, env, timeout: 30_000 });
  assert.equal(r.stderr.toString(), '');
  assert.equal(r.stdout.toString(), 'via F\n');
  // Without -F the daemon's own config does not know that name.
  assert.equal(run(['only-in-F', 'true']).status, 255);
});

test('git push and clone over GIT_SSH_COMMAND', () => {
  const bare = path.join(remoteDir, 'repo.git');
  execFileSync('su', [sshd.user.name, '-s', '/bin/sh', '-c', `git init -q --bare ${bare}`]);
  const work = tempDir();
  const git = (args: string[], cwd: string) => tool('git', ['-c', 'user.email=t@example.com', '-c', 'user.name=t', ...args], { GIT_SSH_COMMAND: SSHMUX }, cwd);
  git(['init', '-q', '-b', 'main', '.'], work);
  fs.writeFileSync(path.join(work, 'hello.txt'), 'hello over sshmux\n');
  git(['add', 'hello.txt'], work);
  git(['commit', '-q', '-m', 'first'], work);
  git(['push', '-q', `t:${bare}`, 'main'], work);
  const clone = path.join(tempDir(), 'clone');
  git(['clone', '-q', '-b', 'main', `t:${bare}`, clone], work);
  assert.equal(fs.readFileSync(path.join(clone, 'hello.txt'), 'utf8'), 'hello over sshmux\n');
});

test('rsync -e, scp -S and sftp -S copy 5 MB both ways with equal checksums', () => {
  const local = path.join(tempDir(), 'five');
  fs.writeFileSync(local, randomBytes(5 * 1024 * 1024));
  const sum = md5(local);
  const remoteSum = (name: string) => run(['t', `md5sum ${path.join(remoteDir, name)}`]).stdout.toString().split(' ')[0];
  const back = (name: string) => path.join(tempDir(), name);

  tool('rsync', ['-e', SSHMUX, local, `t:${remoteDir}/rsynced`]);
  assert.equal(remoteSum('rsynced'), sum);
  const rsyncBack = back('rsync-back');
  tool('rsync', ['-e', SSHMUX, `t:${remoteDir}/rsynced`, rsyncBack]);
  assert.equal(md5(rsyncBack), sum);

  tool('scp', ['-S', SSHMUX, local, `t:${remoteDir}/scped`]);
  assert.equal(remoteSum('scped'), sum);
  const scpBack = back('scp-back');
  tool('scp', ['-S', SSHMUX, `t:${remoteDir}/scped`, scpBack]);
  assert.equal(md5(scpBack), sum);

  const sftpBack = back('sftp-back');
  execFileSync('sftp', ['-b', '-', '-S', SSHMUX, 't'], {
    env, input: `put ${local} ${remoteDir}/sftped\nget ${remoteDir}/sftped ${sftpBack}\n`, timeout: 60_000, stdio: ['pipe', 'pipe', 'pipe'],
  });
  assert.equal(remoteSum('sftped'), sum);
  assert.equal(md5(sftpBack), sum);
});

test('-t under a real terminal: the remote sees a tty and a window-size change; the terminal is restored', () => {
  // Resize only once the remote shell has its trap: a WINCH before it is ignored.
  const remote = 'tty; stty size; trap "stty size; exit 0" WINCH; echo armed; sleep 10';
  const out = underTerminal([process.execPath, SSHMUX, '-t', 't', remote], 'armed', 15, env);
  assert.match(out, /^0 restored /, out);
  assert.match(out, /\/dev\/pts\/\d+/, 'the remote did not get a tty');
  assert.match(out, /30 100/);
  assert.match(out, /40 120/, 'the window-size change did not arrive');
  // Without a local terminal, -t is ignored as ssh does; -tt forces.
  assert.equal(run(['-t', 't', 'test -t 0 && echo tty || echo notty']).stdout.toString(), 'notty\n');
  assert.match(run(['-tt', 't', 'test -t 0 && echo tty || echo notty']).stdout.toString(), /^tty\r?\n$/);
});

test('SIGINT to the wrapper ends the remote process, and the wrapper exits once it has', async () => {
  const marker = `sleep 93${Math.floor(Math.random() * 1e5)}`;
  const child = spawn(process.execPath, [SSHMUX, 't', `exec ${marker}`], { env, stdio: 'ignore' });
  assert.ok(await waitFor(() => remoteProcesses(marker).length === 1, 5000), 'the remote command did not start');
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGINT');
  assert.equal(await exited, 255);
  assert.ok(await waitFor(() => remoteProcesses(marker).length === 0, 3000), 'the remote process outlived the wrapper');
});

test('150 wrapper processes at once against MaxSessions 10, MaxStartups 10:30:100: all succeed, at most 8 logins, no drop', async () => {
  const fresh = await startSshd({ maxSessions: 10, maxStartups: '10:30:100' });
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 'f', sshd: fresh }]);
  const d = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  try {
    const results = await Promise.all(Array.from({ length: 150 }, (_, i) => new Promise<string>((resolve) => {
      const child = spawn(process.execPath, [SSHMUX, 'f', `sleep 0.3; echo ${i}`], { env: { ...process.env, SSHMUX_SOCKET: d.socket } });
      let out = '';
      let err = '';
      child.stdout.on('data', (b: Buffer) => (out += b));
      child.stderr.on('data', (b: Buffer) => (err += b));
      child.once('close', (code) => resolve(code === 0 && out === `${i}\n` ? 'ok' : `${code}: ${out}${err}`));
    })));
    assert.deepEqual(results.filter((r) => r !== 'ok'), []);
    assert.ok(fresh.logins() <= 8, `sshd logged ${fresh.logins()} logins`);
    assert.equal(fresh.drops(), 0);
  } finally {
    await d.stop();
  }
});

test('autostart: 20 wrappers at once with no daemon running start exactly one', async () => {
  const fresh = await startSshd();
  const home = tempDir();
  fs.mkdirSync(path.join(home, '.ssh'), { mode: 0o700 });
  const client = writeClientConfig(path.join(home, '.ssh'), [{ alias: 'a', sshd: fresh }]);
  fs.renameSync(client.sshConfigPath, path.join(home, '.ssh', 'config'));
  const runtime = tempDir();
  const socket = path.join(runtime, 'sshmux', 'sshmuxd.sock');
  const wrapperEnv: NodeJS.ProcessEnv = { ...process.env, HOME: home, XDG_RUNTIME_DIR: runtime };
  delete wrapperEnv.SSHMUX_SOCKET;
  delete wrapperEnv.SSHMUX_NO_AUTOSTART;
  const daemons = (): number[] => fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
      return cmd.includes('daemon/main.js') && cmd.includes(socket);
    } catch {
      return false;
    }
  }).map(Number);
  try {
    const codes = await Promise.all(Array.from({ length: 20 }, (_, i) => new Promise<string>((resolve) => {
      const child = spawn(process.execPath, [SSHMUX, 'a', `echo ${i}`], { env: wrapperEnv });
      let out = '';
      let err = '';
      child.stdout.on('data', (b: Buffer) => (out += b));
      child.stderr.on('data', (b: Buffer) => (err += b));
      child.once('close', (code) => resolve(code === 0 && out === `${i}\n` ? 'ok' : `${code}: ${out}${err}`));
    })));
    assert.deepEqual(codes.filter((c) => c !== 'ok'), []);
    assert.equal(daemons().length, 1, `${daemons().length} daemons were started`);
    assert.equal(fs.statSync(socket).mode & 0o777, 0o600);
    assert.ok(fs.existsSync(path.join(runtime, 'sshmux', 'sshmuxd.log')));
    // An explicit SSHMUX_SOCKET is never autostarted.
    const explicit = spawnSync(process.execPath, [SSHMUX, 'a', 'true'], { env: { ...wrapperEnv, SSHMUX_SOCKET: path.join(runtime, 'other.sock') } });
    assert.equal(explicit.status, 255);
    assert.match(explicit.stderr.toString(), /no sshmuxd socket at/);
  } finally {
    for (const pid of daemons()) process.kill(pid, 'SIGTERM');
    await waitFor(() => daemons().length === 0, 5000);
  }
});
