// The systemd units in packaging/systemd: systemd itself must accept them
// (systemd-analyze verify, sysusers and tmpfiles run into a temp root), and
// they must agree with the daemon and the Debian package: the command and
// the paths the package installs, the daemon's options and default socket
// paths, and the notify/watchdog/reload/graceful-stop behaviour the units
// rely on.
// The systemd tools are optional locally (those tests are skipped); CI
// installs systemd, so they run there. Nothing here needs systemd as PID 1.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultSocketPath } from '../../proto/socket-path';
import { COMMANDS, FILES, PREFIX } from '../../scripts/package-deb';
import { all, ANALYZE, assertVerified, command, executable, list, one, parseUnit, runSystemd as run, type Unit } from '../helpers/systemd-unit';

const ROOT = path.join(__dirname, '..', '..', '..');
const UNITS = path.join(ROOT, 'packaging', 'systemd');
const SYSTEM_UNITS = ['sshmuxd.service', 'sshmuxd.socket'];
const USER_UNITS = ['user/sshmuxd.service', 'user/sshmuxd.socket'];
/**
 * What every unit's ExecStart starts with: the daemon as the Debian package
 * installs it, a link to its script, whose #! line names the package's Node
 * (test/system/deb-package.test.ts checks the installed one).
 */
const DAEMON = ['/usr/bin/sshmuxd'];
const DAEMON_SCRIPT = path.join(ROOT, COMMANDS.sshmuxd);

const SYSUSERS = '/usr/bin/systemd-sysusers';
const TMPFILES = '/usr/bin/systemd-tmpfiles';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-systemd-'));
  dirs.push(dir);
  return dir;
}

function loadUnit(rel: string): Unit {
  return parseUnit(fs.readFileSync(path.join(UNITS, rel), 'utf8'));
}

/** A systemd time span ("30s", "1min 30s", "45") in seconds. */
function seconds(span: string | undefined): number {
  assert.ok(span, 'time span missing');
  const units: Record<string, number> = { '': 1, s: 1, sec: 1, m: 60, min: 60, h: 3600, ms: 0.001 };
  let total = 0;
  for (const part of span.split(/\s+/)) {
    const m = /^(\d+(?:\.\d+)?)([a-z]*)$/.exec(part);
    assert.ok(m && m[2] in units, `cannot read time span "${span}"`);
    total += Number(m[1]) * units[m[2]];
  }
  return total;
}

/**
 * Copies of the units in a temp dir, for verify. They are byte-identical
 * where the Debian package is installed; elsewhere verify, which insists
 * that ExecStart's binary exists, gets this checkout's daemon script in
 * place of /usr/bin/sshmuxd. The shipped path itself is asserted by the
 * directive tests below.
 */
function unitCopies(rels: string[], note: (s: string) => void): string[] {
  const dir = tempDir();
  return rels.map((rel) => {
    let text = fs.readFileSync(path.join(UNITS, rel), 'utf8');
    if (!executable(DAEMON[0])) {
      note(`${DAEMON[0]} is not installed here: verifying ${rel} with ExecStart=${DAEMON_SCRIPT}`);
      text = text.replace(/^(ExecStart=)\/usr\/bin\/sshmuxd /gm, `$1${DAEMON_SCRIPT} `);
    }
    const copy = path.join(dir, path.basename(rel));
    fs.writeFileSync(copy, text);
    return copy;
  });
}

test('system units pass systemd-analyze verify', (t) => {
  if (!executable(ANALYZE)) {
    t.skip(`${ANALYZE} not installed (apt-get install systemd); CI runs this`);
    return;
  }
  assertVerified(unitCopies(SYSTEM_UNITS, (s) => t.diagnostic(s)), { note: (s) => t.diagnostic(s) });
});

test('user units pass systemd-analyze --user verify', (t) => {
  if (!executable(ANALYZE)) {
    t.skip(`${ANALYZE} not installed (apt-get install systemd); CI runs this`);
    return;
  }
  // A user manager needs $XDG_RUNTIME_DIR (for %t). A fresh $HOME keeps the
  // invoking user's own ~/.config/systemd/user units out of it.
  const home = tempDir();
  const runtime = tempDir();
  assertVerified(unitCopies(USER_UNITS, (s) => t.diagnostic(s)), {
    user: true, note: (s) => t.diagnostic(s), env: { HOME: home, XDG_RUNTIME_DIR: runtime, XDG_CONFIG_HOME: path.join(home, '.config') },
  });
});

test('system service: notify, watchdog, reload, graceful stop, identity and directories as the daemon needs', () => {
  const svc = loadUnit('sshmuxd.service');
  const S = 'Service';
  const exec = command(one(svc, S, 'ExecStart'));
  assert.deepEqual(exec.argv.slice(0, DAEMON.length), DAEMON);
  // The command the unit runs is the Debian package's link to this checkout's daemon.
  assert.ok(fs.existsSync(DAEMON_SCRIPT), `${COMMANDS.sshmuxd} is not built`);
  assert.equal(exec.opt('--socket'), '/run/sshmux/sshmuxd.sock');
  assert.equal(exec.opt('--socket'), defaultSocketPath({}), 'the socket clients find without $XDG_RUNTIME_DIR');
  assert.equal(exec.opt('-F'), '/etc/sshmux/ssh_config');
  assert.equal(exec.opt('--config'), '/etc/sshmux/config.json');
  assert.equal(exec.opt('--http'), '127.0.0.1:9322');

  // The daemon notifies through the systemd-notify binary, a child process.
  assert.equal(one(svc, S, 'Type'), 'notify');
  assert.equal(one(svc, S, 'NotifyAccess'), 'all');
  const watchdog = seconds(one(svc, S, 'WatchdogSec'));
  assert.ok(watchdog >= 10 && watchdog <= 120, `WatchdogSec=${watchdog}s`);
  assert.match(one(svc, S, 'ExecReload') ?? '', /^\/(usr\/)?bin\/kill -(HUP|s HUP|SIGHUP) \$MAINPID$/);
  // systemd must not SIGKILL the graceful stop: stop timeout > --grace (default 30 s).
  const grace = Number(exec.opt('--grace') ?? 30);
  assert.ok(seconds(one(svc, S, 'TimeoutStopSec')) > grace, 'TimeoutStopSec must exceed the daemon\'s --grace');
  assert.equal(one(svc, S, 'Restart'), 'on-failure');
  assert.ok(list(svc, S, 'RestartPreventExitStatus').includes('78'), 'a config error (78) must not restart-loop');

  assert.equal(one(svc, S, 'User'), 'sshmux');
  assert.equal(one(svc, S, 'Group'), 'sshmux');
  // Socket and http-token live in RuntimeDirectory, which must survive a stop
  // while sshmuxd.socket keeps its socket in it.
  assert.equal(one(svc, S, 'RuntimeDirectory'), 'sshmux');
  assert.equal(path.dirname(exec.opt('--socket')!), '/run/sshmux');
  assert.equal(one(svc, S, 'RuntimeDirectoryMode'), '0750');
  assert.equal(one(svc, S, 'RuntimeDirectoryPreserve'), 'yes');
  assert.equal(one(svc, S, 'StateDirectory'), 'sshmux');
  assert.ok(list(svc, S, 'Environment').includes('HOME=/var/lib/sshmux'), 'HOME must be the state directory (~/.ssh)');
  assert.equal(one(svc, S, 'ConfigurationDirectory'), 'sshmux');
  assert.ok(Number(one(svc, S, 'LimitNOFILE')) >= 65536, 'LimitNOFILE too low for thousands of clients');
  assert.equal(one(svc, 'Install', 'WantedBy'), 'multi-user.target');
  assert.deepEqual(all(svc, 'Unit', 'Requires'), [], 'the service must also run without the socket unit');
});

test('system service: hardening', () => {
  const svc = loadUnit('sshmuxd.service');
  const S = 'Service';
  const yes = ['NoNewPrivileges', 'PrivateTmp', 'PrivateDevices', 'ProtectKernelTunables', 'ProtectKernelModules',
    'ProtectControlGroups', 'LockPersonality', 'RestrictNamespaces', 'RestrictRealtime', 'RestrictSUIDSGID'];
  for (const key of yes) assert.equal(one(svc, S, key), 'yes', `${key}=yes`);
  assert.equal(one(svc, S, 'ProtectSystem'), 'strict');
  assert.equal(one(svc, S, 'ProtectHome'), 'read-only');
  assert.deepEqual(list(svc, S, 'RestrictAddressFamilies').sort(), ['AF_INET', 'AF_INET6', 'AF_UNIX']);
  assert.equal(one(svc, S, 'CapabilityBoundingSet'), '', 'CapabilityBoundingSet= (empty: no capabilities)');
  assert.deepEqual(list(svc, S, 'CapabilityBoundingSet'), []);
  assert.deepEqual(list(svc, S, 'AmbientCapabilities'), []);
  assert.ok(list(svc, S, 'SystemCallFilter').includes('@system-service'));
  const oom = Number(one(svc, S, 'OOMScoreAdjust'));
  assert.ok(oom < 0 && oom > -1000, `OOMScoreAdjust=${oom}: negative, but not unkillable`);
  // V8's JIT needs writable+executable memory: this would kill Node at start.
  assert.notEqual(one(svc, S, 'MemoryDenyWriteExecute'), 'yes');
});

test('system socket: the daemon\'s socket, for group sshmux, in the service\'s runtime directory', () => {
  const svc = loadUnit('sshmuxd.service');
  const sock = loadUnit('sshmuxd.socket');
  const K = 'Socket';
  assert.deepEqual(all(sock, K, 'ListenStream'), [command(one(svc, 'Service', 'ExecStart')).opt('--socket')]);
  assert.equal(one(sock, K, 'Service'), undefined, 'same name as the service: it activates sshmuxd.service');
  assert.equal(one(sock, K, 'Accept') ?? 'no', 'no', 'one daemon takes the listening socket (fd 3)');
  assert.equal(one(sock, K, 'SocketUser'), 'sshmux');
  assert.equal(one(sock, K, 'SocketGroup'), 'sshmux');
  assert.equal(one(sock, K, 'SocketMode'), '0660');
  assert.equal(one(sock, K, 'DirectoryMode'), one(svc, 'Service', 'RuntimeDirectoryMode'));
  assert.match(one(sock, K, 'ExecStartPre') ?? '', /^\/usr\/bin\/systemd-tmpfiles --create (--prefix=\/run\/sshmux )?sshmux\.conf$/);
  assert.equal(one(sock, 'Install', 'WantedBy'), 'sockets.target');
});

test('user units: the SDK\'s per-user socket, no system paths, hardening an unprivileged manager can apply', () => {
  const svc = loadUnit('user/sshmuxd.service');
  const sock = loadUnit('user/sshmuxd.socket');
  const S = 'Service';
  const exec = command(one(svc, S, 'ExecStart'));
  assert.deepEqual(exec.argv, [...DAEMON, '--socket', '%t/sshmux/sshmuxd.sock']);
  // %t is $XDG_RUNTIME_DIR: the path the SDK and the sshmux command try first.
  const xdg = '/run/user/1000';
  assert.equal(exec.opt('--socket')!.replace('%t', xdg), defaultSocketPath({ XDG_RUNTIME_DIR: xdg }));
  assert.deepEqual(all(sock, 'Socket', 'ListenStream'), [exec.opt('--socket')]);
  assert.equal(one(sock, 'Socket', 'SocketMode'), '0600');
  assert.equal(one(sock, 'Socket', 'SocketUser'), undefined);
  assert.equal(one(sock, 'Install', 'WantedBy'), 'sockets.target');

  assert.equal(one(svc, S, 'Type'), 'notify');
  assert.equal(one(svc, S, 'NotifyAccess'), 'all');
  assert.ok(one(svc, S, 'WatchdogSec'));
  assert.match(one(svc, S, 'ExecReload') ?? '', /kill -HUP \$MAINPID$/);
  assert.equal(one(svc, S, 'Restart'), 'on-failure');
  assert.ok(seconds(one(svc, S, 'TimeoutStopSec')) > 30);
  assert.equal(one(svc, S, 'RuntimeDirectory'), 'sshmux');
  assert.equal(one(svc, S, 'RuntimeDirectoryPreserve'), 'yes');
  assert.equal(one(svc, 'Install', 'WantedBy'), 'default.target');
  // Runs as the user, with the user's ~/.ssh: nothing that needs privileges
  // or hides the home directory.
  for (const key of ['User', 'Group', 'ProtectHome', 'ProtectSystem', 'OOMScoreAdjust', 'CapabilityBoundingSet', 'MemoryDenyWriteExecute']) {
    assert.equal(one(svc, S, key), undefined, `${key}= does not belong in the user unit`);
  }
  assert.equal(one(svc, S, 'NoNewPrivileges'), 'yes');
  assert.deepEqual(list(svc, S, 'RestrictAddressFamilies').sort(), ['AF_INET', 'AF_INET6', 'AF_UNIX']);
  assert.ok(list(svc, S, 'SystemCallFilter').includes('@system-service'));
});

test('the daemon accepts every option the units pass it', () => {
  const main = path.join(ROOT, 'dist', 'daemon', 'main.js');
  const r = spawnSync(process.execPath, [main, '--help'], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 0, r.stderr);
  for (const rel of ['sshmuxd.service', 'user/sshmuxd.service']) {
    for (const arg of command(one(loadUnit(rel), 'Service', 'ExecStart')).argv.slice(DAEMON.length)) {
      if (arg.startsWith('-')) assert.match(r.stdout, new RegExp(`(^|\\s)${arg}\\s`), `${rel}: sshmuxd --help has no ${arg}`);
    }
  }
});

test('system service: systemd-analyze security exposure stays low', (t) => {
  if (!executable(ANALYZE) || !run(ANALYZE, ['--help']).stdout.includes('--offline')) {
    t.skip('needs systemd-analyze with security --offline (systemd >= 250)');
    return;
  }
  const [copy] = unitCopies(['sshmuxd.service'], (s) => t.diagnostic(s));
  // Exposure is 0-100 (printed as 0.0-10.0). The unit scores about 17; 30
  // leaves room for the score changes of other systemd versions, but fails
  // when a hardening line is dropped wholesale.
  const r = run(ANALYZE, ['security', '--offline=yes', '--threshold=30', '--no-pager', copy]);
  const score = /Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout);
  t.diagnostic(score ? `exposure ${score[1]}` : r.stdout.slice(-200));
  assert.equal(r.status, 0, `exposure above 3.0:\n${r.stdout}${r.stderr}`);
});

test('sysusers and tmpfiles snippets create the user and the directories the units use', (t) => {
  const svc = loadUnit('sshmuxd.service');
  // Static checks, which need no systemd.
  const sysusers = fs.readFileSync(path.join(UNITS, 'sshmux.sysusers.conf'), 'utf8');
  assert.match(sysusers, /^u\s+sshmux\s+-\s+"[^"]+"\s+\/var\/lib\/sshmux\s+\/usr\/sbin\/nologin$/m);
  const tmpfiles = fs.readFileSync(path.join(UNITS, 'sshmux.tmpfiles.conf'), 'utf8');
  assert.match(tmpfiles, /^d\s+\/run\/sshmux\s+0750\s+sshmux\s+sshmux\s+-$/m);
  // The socket unit's ExecStartPre and the package's postinst find the snippets by these names.
  const installedAs = new Map(FILES);
  assert.equal(installedAs.get('packaging/systemd/sshmux.tmpfiles.conf'), '/usr/lib/tmpfiles.d/sshmux.conf');
  assert.equal(installedAs.get('packaging/systemd/sshmux.sysusers.conf'), '/usr/lib/sysusers.d/sshmux.conf');
  for (const unit of [...SYSTEM_UNITS, ...USER_UNITS]) {
    const dir = unit.startsWith('user/') ? '/usr/lib/systemd/user' : '/usr/lib/systemd/system';
    assert.equal(installedAs.get(`packaging/systemd/${unit}`), `${dir}/${path.basename(unit)}`);
  }
  assert.ok(PREFIX.startsWith('/usr/lib/'));

  if (!executable(SYSUSERS) || !executable(TMPFILES)) {
    t.skip('systemd-sysusers/systemd-tmpfiles not installed; checked the lines only');
    return;
  }
  // Apply both to an empty root: sysusers writes root/etc/passwd and group,
  // tmpfiles resolves the names from there. tmpfiles is run with the
  // socket unit's own ExecStartPre, with the snippet installed under the
  // name the package gives it. (Only root may chown; others check modes.)
  const root = tempDir();
  fs.mkdirSync(path.join(root, 'etc', 'tmpfiles.d'), { recursive: true });
  const u = run(SYSUSERS, [`--root=${root}`, path.join(UNITS, 'sshmux.sysusers.conf')]);
  assert.equal(u.status, 0, u.stderr);
  const passwd = fs.readFileSync(path.join(root, 'etc', 'passwd'), 'utf8').split('\n').map((l) => l.split(':'));
  const user = passwd.find((f) => f[0] === one(svc, 'Service', 'User'));
  assert.ok(user, 'sysusers created no sshmux user');
  assert.equal(user[5], '/var/lib/sshmux', 'home = StateDirectory = HOME');
  const group = fs.readFileSync(path.join(root, 'etc', 'group'), 'utf8').split('\n').map((l) => l.split(':'))
    .find((f) => f[0] === one(svc, 'Service', 'Group'));
  assert.ok(group, 'sysusers created no sshmux group');

  fs.copyFileSync(path.join(UNITS, 'sshmux.tmpfiles.conf'), path.join(root, 'etc', 'tmpfiles.d', 'sshmux.conf'));
  const [bin, ...args] = one(loadUnit('sshmuxd.socket'), 'Socket', 'ExecStartPre')!.split(/\s+/);
  const isRoot = process.getuid?.() === 0;
  const pre = run(bin, [`--root=${root}`, ...args]);
  if (isRoot) assert.equal(pre.status, 0, pre.stderr);
  const full = run(TMPFILES, [`--root=${root}`, '--create', path.join(UNITS, 'sshmux.tmpfiles.conf')]);
  if (isRoot) assert.equal(full.status, 0, full.stderr);
  else {
    const other = full.stderr.split('\n').filter((l) => l.trim() && !/chown.*Operation not permitted/i.test(l));
    assert.deepEqual(other, [], 'systemd-tmpfiles failed for another reason than chown as non-root');
  }

  const expect: Array<[string, number]> = [['run/sshmux', 0o750], ['var/lib/sshmux', 0o700], ['var/lib/sshmux/.ssh', 0o700]];
  for (const [rel, mode] of expect) {
    const st = fs.statSync(path.join(root, rel));
    assert.ok(st.isDirectory(), `/${rel} not created`);
    assert.equal(st.mode & 0o7777, mode, `/${rel} mode ${(st.mode & 0o7777).toString(8)}`);
    if (isRoot) {
      assert.equal(st.uid, Number(user[2]), `/${rel} owner`);
      assert.equal(st.gid, Number(group[2]), `/${rel} group`);
    }
  }
});
