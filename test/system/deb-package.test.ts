// The Debian package (npm run package:deb) as an operator meets it: built
// (or taken from $SSHMUX_DEB: .ci/run builds it once for all its runs),
// checked by lintian, installed with `apt-get install ./sshmux_*.deb` as the
// README says, its files and units checked (systemd-analyze verify on the
// installed paths, man pages included), the installed daemon run as its
// unit's user with its unit's ExecStart, environment and notify socket, an
// exec through it with the installed sshmux to a throwaway sshd, then the
// package removed and purged with nothing of it left.
// Needs root and dpkg (CI has both). systemd is not PID 1 here, so systemd
// itself starts nothing: the unit's settings are applied by hand, and what
// that leaves unchecked is said in docs/systemd.md. The package is installed
// system-wide, so a lock keeps two runs of this file apart, and a sshmux
// package this file did not install is left alone (the file is skipped).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BINDING, COMMANDS, CONFFILES, FILES, NODE, PREFIX } from '../../scripts/package-deb';
import { waitFor } from '../helpers/daemon';
import { startNotifySocket } from '../helpers/notify-socket';
import { startSshd, tempDir, type Sshd } from '../helpers/sshd';
import { ANALYZE, assertVerified, command, executable, list, one, parseUnit } from '../helpers/systemd-unit';

const ROOT = path.join(__dirname, '..', '..', '..');
const LOCK = '/run/lock/sshmux-deb-package-test';
const STATE = '/var/lib/sshmux';
const SOCKET = '/run/sshmux/sshmuxd.sock';

function sh(cmd: string, args: string[], opts: { timeout?: number; env?: NodeJS.ProcessEnv } = {}): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeout ?? 60_000, env: { ...process.env, LC_ALL: 'C', ...opts.env } });
  assert.ifError(r.error);
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function ok(cmd: string, args: string[], opts: { timeout?: number; env?: NodeJS.ProcessEnv } = {}): string {
  const r = sh(cmd, args, opts);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}:\n${r.out}`);
  return r.out;
}

const installed = (): boolean => /^install ok installed$/m.test(sh('dpkg-query', ['-W', '-f=${Status}\n', 'sshmux']).out);

let skipWhy = '';
let locked = false;
let deb = '';
/** What the package holds: [path, is a directory]. */
let contents: Array<[string, boolean]> = [];

/** Whether a process with this pid runs. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The lock: a directory (mkdir is atomic) holding the holder's pid, and
 * "installed" while the package this run installed is on the machine. A
 * holder that is gone (a run killed by its timeout runs no after hook)
 * leaves a stale lock: the next run takes it, and purges the package the
 * dead run left installed. A live holder is waited for.
 */
async function lock(): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      fs.mkdirSync(LOCK);
      fs.writeFileSync(`${LOCK}/pid`, String(process.pid));
      locked = true;
      return;
    } catch {
      let holder = 0;
      try {
        holder = Number(fs.readFileSync(`${LOCK}/pid`, 'utf8')) || 0;
      } catch {
        // Not written yet (the holder is between its mkdir and its write), or the lock has just gone.
      }
      const age = Date.now() - (fs.statSync(LOCK, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (holder ? !alive(holder) : age > 10_000) {
        if (fs.existsSync(`${LOCK}/installed`) && installed()) ok('dpkg', ['--purge', 'sshmux']);
        fs.rmSync(LOCK, { recursive: true, force: true });
      } else if (Date.now() > deadline) {
        throw new Error(`${LOCK} is held by pid ${holder}, another run of this test, for 2 minutes`);
      } else {
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }
}

/** npm run package:deb, with fast compression, without blocking the event loop (so that timeouts and hooks still run). */
async function buildPackage(): Promise<string> {
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'scripts', 'package-deb.js')], {
    cwd: ROOT, env: { ...process.env, SSHMUX_DEB_COMPRESSION: 'fast' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.equal(code, 0, `npm run package:deb failed:\n${err}`);
  return out.trim();
}

// On Node 20 and 22 the runner's --test-timeout (180 s) is the whole file's: building the package here (npm ci
// for its node_modules when the lockfile or the patches changed, gzip -1) stays well inside it; .ci/run builds
// the package once, with xz, and gives it as SSHMUX_DEB.
before(async () => {
  if (process.getuid?.() !== 0) skipWhy = 'needs root: it installs a package (CI runs it)';
  else if (!executable('/usr/bin/dpkg-deb')) skipWhy = 'needs dpkg';
  if (skipWhy) return;
  await lock();
  if (installed()) {
    skipWhy = 'a sshmux package is installed on this machine, and this test would replace it (dpkg --purge sshmux, if it is a leftover)';
    return;
  }
  deb = process.env.SSHMUX_DEB || await buildPackage();
  contents = ok('dpkg-deb', ['--contents', deb]).trim().split('\n').map((line) => {
    // drwxr-xr-x root/root 0 2026-11-24 10:00 ./usr/bin/  ;  lrwxrwxrwx ... ./usr/bin/sshmux -> ../lib/...
    const name = line.split(/\s+/).slice(5).join(' ').replace(/ -> .*$/, '').replace(/^\./, '').replace(/\/$/, '');
    return [name || '/', line.startsWith('d')] as [string, boolean];
  });
}, { timeout: 170_000 });

after(async () => {
  try {
    if (deb && installed() && fs.existsSync(`${LOCK}/installed`)) sh('dpkg', ['--purge', 'sshmux']);
  } finally {
    if (locked) fs.rmSync(LOCK, { recursive: true, force: true });
  }
});

test('the package: the daemon, the commands, its Node, ssh2\'s binding, units, snippets, conffiles, docs and man pages; lintian finds nothing', (t) => {
  if (skipWhy) return t.skip(skipWhy);
  const files = new Set(contents.filter(([, dir]) => !dir).map(([p]) => p));
  const expected = [NODE, BINDING, ...Object.keys(COMMANDS).map((c) => `/usr/bin/${c}`), ...Object.values(COMMANDS).map((s) => `${PREFIX}/${s}`),
    ...FILES.map(([, to]) => to), '/usr/share/doc/sshmux/copyright', '/usr/share/doc/sshmux/README.md.gz', '/usr/share/doc/sshmux/systemd.md.gz',
    '/usr/share/man/man8/sshmuxd.8.gz', '/usr/share/man/man1/sshmux.1.gz', '/usr/share/man/man1/sshmuxctl.1.gz'];
  assert.deepEqual(expected.filter((f) => !files.has(f)), [], 'missing from the package');
  // Production dependencies only, ssh2 patched: no dev tool, no test or bench code.
  for (const p of files) {
    assert.doesNotMatch(p, /\/node_modules\/(typescript|patch-package|fast-check|@types|protobufjs-cli)\//, `a dev dependency: ${p}`);
    assert.doesNotMatch(p, /\/dist\/(test|bench|scripts)\//, `not for the package: ${p}`);
  }
  assert.ok(files.has(`${PREFIX}/node_modules/ssh2/package.json`) && files.has(`${PREFIX}/node_modules/protobufjs/package.json`));
  assert.deepEqual(ok('dpkg-deb', ['--info', deb, 'conffiles']).trim().split('\n'), CONFFILES);
  const field = (name: string): string => ok('dpkg-deb', ['--field', deb, name]).trim();
  assert.equal(field('Package'), 'sshmux');
  assert.match(field('Depends'), /libc6 \(>= [\d.]+\)/);
  t.diagnostic(`${path.basename(deb)}: ${(fs.statSync(deb).size / 2 ** 20).toFixed(1)} MiB, ${files.size} files, Installed-Size ${field('Installed-Size')} KiB; Depends: ${field('Depends')}`);

  if (!executable('/usr/bin/lintian')) return t.skip('lintian not installed (scripts/system-deps.sh test installs it)');
  // Findings at info level and above are shown; errors and warnings fail (overridden ones are explained in packaging/debian/lintian-overrides).
  const lint = sh('lintian', ['--display-info', '--fail-on', 'error,warning', deb], { timeout: 120_000 });
  for (const line of lint.out.split('\n').filter((l) => /^[EWIPNO]: /.test(l))) t.diagnostic(line);
  assert.equal(lint.status, 0, `lintian:\n${lint.out}`);
});

test('installed with apt-get: the user, its directories, the commands on the package\'s Node with ssh2\'s binding, units verified', (t) => {
  if (skipWhy) return t.skip(skipWhy);
  fs.writeFileSync(`${LOCK}/installed`, '');
  ok('apt-get', ['install', '-y', '-q', '-o', 'DPkg::Lock::Timeout=60', path.resolve(deb)], { timeout: 120_000, env: { DEBIAN_FRONTEND: 'noninteractive' } });
  assert.ok(installed());
  for (const [p, dir] of contents) assert.ok(fs.existsSync(p) || fs.lstatSync(p, { throwIfNoEntry: false }), `${p}${dir ? '/' : ''} not installed`);

  const [user, , uid, gid, , home, shell] = ok('getent', ['passwd', 'sshmux']).trim().split(':');
  assert.deepEqual([user, home, shell], ['sshmux', STATE, '/usr/sbin/nologin']);
  for (const [dir, mode] of [['/run/sshmux', 0o750], [STATE, 0o700], [`${STATE}/.ssh`, 0o700]] as const) {
    const st = fs.statSync(dir);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [Number(uid), Number(gid), mode], `${dir}: owner, group or mode`);
  }
  for (const f of CONFFILES) assert.equal(fs.readFileSync(f, 'utf8'), fs.readFileSync(path.join(ROOT, FILES.find(([, to]) => to === f)![0]), 'utf8'));

  const pinned = ok(path.join(ROOT, 'scripts', 'node-runtime.sh'), ['--role', 'deb']).trim();
  assert.equal(ok(NODE, ['--version']).trim(), `v${pinned}`);
  assert.equal(ok(NODE, ['-p', `require('${PREFIX}/node_modules/ssh2/lib/protocol/crypto.js').bindingAvailable`]).trim(), 'true');
  // The commands run the package's Node (their #! lines), with no node flag.
  for (const command of ['sshmuxd', 'sshmux', 'sshmuxctl']) assert.equal(fs.readFileSync(fs.realpathSync(`/usr/bin/${command}`), 'utf8').split('\n')[0], `#!${NODE}`);
  assert.equal(ok('/usr/bin/sshmuxd', ['--version']).trim(), `sshmuxd ${JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version}`);
  assert.match(ok('/usr/bin/sshmuxctl', ['--help']), /^usage: sshmuxctl/);
  assert.match(ok('/usr/bin/sshmux', ['-V']), /^sshmux \d/);
  assert.match(ok('man', ['-P', 'cat', '8', 'sshmuxd'], { env: { MANWIDTH: '100' } }), /--socket PATH/);

  if (!executable(ANALYZE)) return t.skip(`${ANALYZE} not installed`);
  const system = ['/usr/lib/systemd/system/sshmuxd.service', '/usr/lib/systemd/system/sshmuxd.socket'];
  assertVerified(system, { man: true, note: (s) => t.diagnostic(s) });
  const userHome = tempDir();
  assertVerified(['/usr/lib/systemd/user/sshmuxd.service', '/usr/lib/systemd/user/sshmuxd.socket'], {
    user: true, man: true, note: (s) => t.diagnostic(s),
    env: { HOME: userHome, XDG_RUNTIME_DIR: tempDir(), XDG_CONFIG_HOME: path.join(userHome, '.config') },
  });
});

/** Starts the installed unit's ExecStart as systemd would here: its user and group, environment, umask, notify socket. */
async function startAsUnit(notifySocket: string): Promise<{ child: ChildProcess; log: () => string }> {
  const unit = parseUnit(fs.readFileSync('/usr/lib/systemd/system/sshmuxd.service', 'utf8'));
  const S = 'Service';
  const exec = command(one(unit, S, 'ExecStart'));
  const env: NodeJS.ProcessEnv = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    NOTIFY_SOCKET: notifySocket,
    RUNTIME_DIRECTORY: `/run/${one(unit, S, 'RuntimeDirectory')}`,
    STATE_DIRECTORY: `/var/lib/${one(unit, S, 'StateDirectory')}`,
    CONFIGURATION_DIRECTORY: `/etc/${one(unit, S, 'ConfigurationDirectory')}`,
  };
  for (const assignment of list(unit, S, 'Environment')) {
    const eq = assignment.indexOf('=');
    env[assignment.slice(0, eq)] = assignment.slice(eq + 1);
  }
  const setpriv = ['--reuid', one(unit, S, 'User')!, '--regid', one(unit, S, 'Group')!, '--init-groups', '--no-new-privs',
    '--inh-caps=-all', '--bounding-set=-all'];
  const previous = process.umask(Number.parseInt(one(unit, S, 'UMask')!, 8));
  let child: ChildProcess;
  try {
    // setpriv execs the command: the pid is the daemon's.
    child = spawn('setpriv', [...setpriv, '--', ...exec.argv], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  } finally {
    process.umask(previous);
  }
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d));
  child.stderr!.on('data', (d: Buffer) => (log += d));
  return { child, log: () => log };
}

test('the installed daemon, run as its unit runs it, serves an exec from the installed sshmux to a real sshd; sshmuxctl shows its Node and ssh2\'s binding', async (t) => {
  if (skipWhy) return t.skip(skipWhy);
  const sshd: Sshd = await startSshd();
  // What an operator does (docs/systemd.md): the daemon's key and the server's host key in its ~/.ssh.
  const [sshmux] = ok('getent', ['passwd', 'sshmux']).split(':').slice(2, 4).map(Number);
  fs.copyFileSync(sshd.clientKeyPath, `${STATE}/.ssh/id_ed25519`);
  fs.writeFileSync(`${STATE}/.ssh/known_hosts`, `[${sshd.host}]:${sshd.port} ${sshd.hostKey.publicLine}\n`);
  for (const f of ['id_ed25519', 'known_hosts']) {
    fs.chownSync(`${STATE}/.ssh/${f}`, sshmux, sshmux);
    fs.chmodSync(`${STATE}/.ssh/${f}`, 0o600);
  }

  // The notify socket in a directory the sshmux user can reach, as /run/systemd/notify is.
  const notifyDir = tempDir();
  fs.chmodSync(notifyDir, 0o755);
  const notify = await startNotifySocket(notifyDir);
  const daemon = await startAsUnit(notify.path);
  try {
    assert.ok(await waitFor(() => notify.assignments().includes('READY=1'), 15_000), `no READY=1; the daemon said:\n${daemon.log()}`);
    assert.doesNotMatch(daemon.log(), /started without these node flags|crypto binding is not built/, daemon.log());
    const sock = fs.statSync(SOCKET);
    assert.deepEqual([sock.uid, sock.mode & 0o777], [sshmux, 0o660], 'the socket: the daemon\'s, for group sshmux');

    // A member of group sshmux (nobody, with that group added) on the default socket path: no $XDG_RUNTIME_DIR, no $SSHMUX_SOCKET.
    const gid = ok('getent', ['group', 'sshmux']).split(':')[2];
    const member = ['--reuid', 'nobody', '--regid', 'nogroup', `--groups=${gid}`, '--'];
    const env = { PATH: '/usr/bin:/bin', HOME: '/nonexistent' };
    const r = sh('setpriv', [...member, '/usr/bin/sshmux', '-p', String(sshd.port), `${sshd.user.name}@${sshd.host}`, 'echo', 'through the package'], { env });
    assert.deepEqual([r.status, r.out], [0, 'through the package\n']);
    assert.equal(sshd.logins(), 1);
    const status = JSON.parse(ok('setpriv', [...member, '/usr/bin/sshmuxctl', 'status', '--json'], { env }));
    assert.deepEqual([status.nodeVersion, status.ssh2CryptoBinding], [ok(NODE, ['--version']).trim(), true]);
    assert.match(ok('setpriv', [...member, '/usr/bin/sshmuxctl', 'status'], { env }), /^Node v[\d.]+, ssh2 crypto: its C\+\+ binding$/m);
    // Group sshmux reaches the socket; others do not.
    const outsider = sh('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', '--', '/usr/bin/sshmuxctl', 'status'], { env });
    assert.notEqual(outsider.status, 0, outsider.out);

    const http = one(parseUnit(fs.readFileSync('/usr/lib/systemd/system/sshmuxd.service', 'utf8')), 'Service', 'ExecStart')!.match(/--http (\S+)/)![1];
    assert.match(ok('curl', ['-sf', `http://${http}/metrics`]), /^sshmux_sessions_open/m);
  } finally {
    daemon.child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => (daemon.child.exitCode !== null ? resolve(daemon.child.exitCode) : daemon.child.once('exit', resolve)));
    notify.close();
    await sshd.stop();
    assert.equal(code, 0, `the daemon's exit on SIGTERM:\n${daemon.log().slice(-2000)}`);
  }
  assert.ok(notify.assignments().includes('STOPPING=1'));
});

test('remove keeps the configuration and the state; purge leaves nothing of the package (the sshmux user stays, as Debian leaves system users)', (t) => {
  if (skipWhy) return t.skip(skipWhy);
  ok('dpkg', ['--remove', 'sshmux']);
  for (const c of Object.keys(COMMANDS)) assert.ok(!fs.existsSync(`/usr/bin/${c}`), `/usr/bin/${c} left after remove`);
  assert.ok(!fs.existsSync(PREFIX), `${PREFIX} left after remove`);
  for (const f of CONFFILES) assert.ok(fs.existsSync(f), `${f}: a conffile goes only at purge`);
  assert.ok(fs.existsSync(`${STATE}/.ssh/id_ed25519`), 'the daemon\'s key goes only at purge');

  ok('dpkg', ['--purge', 'sshmux']);
  fs.rmSync(`${LOCK}/installed`);
  assert.ok(!installed());
  // Every file, and the directories that are the package's alone (/usr/bin and the like are everyone's).
  const own = (p: string): boolean => [PREFIX, '/etc/sshmux', '/usr/share/doc/sshmux'].some((d) => p === d || p.startsWith(`${d}/`));
  const left = contents.filter(([p, dir]) => !dir || own(p)).map(([p]) => p).filter((p) => fs.lstatSync(p, { throwIfNoEntry: false }));
  assert.deepEqual(left, [], 'left after purge');
  for (const p of ['/etc/sshmux', STATE, '/run/sshmux']) assert.ok(!fs.existsSync(p), `${p} left after purge`);
  assert.ok(sh('getent', ['passwd', 'sshmux']).status === 0, 'the sshmux user');
});
