// The systemd units in packaging/systemd: systemd itself must accept them
// (systemd-analyze verify, sysusers and tmpfiles run into a temp root), and
// they must agree with the daemon: how it is started, its default socket paths, and
// the notify/watchdog/reload/drain behaviour the units rely on.
// The systemd tools are optional locally (those tests are skipped); CI
// installs systemd, so they run there. Nothing here needs systemd as PID 1.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultSocketPath } from '../../proto/socket-path';

const ROOT = path.join(__dirname, '..', '..', '..');
const UNITS = path.join(ROOT, 'packaging', 'systemd');
const SYSTEM_UNITS = ['sshmuxd.service', 'sshmuxd.socket'];
const USER_UNITS = ['user/sshmuxd.service', 'user/sshmuxd.socket'];
const INSTALL_PREFIX = '/opt/sshmux/';
const NODE = '/usr/bin/node';
/** What every unit's ExecStart starts with: node (no flags), then the daemon. */
const DAEMON = [NODE, `${INSTALL_PREFIX}dist/daemon/main.js`];

const ANALYZE = '/usr/bin/systemd-analyze';
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

function executable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

type Unit = Map<string, Array<[string, string]>>;

/** A unit file as systemd reads it: sections of key=value assignments, in order (comments and continuations handled). */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Array<[string, string]> | undefined;
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = pending + raw.trim();
    pending = '';
    if (line.endsWith('\\')) {
      pending = line.slice(0, -1) + ' ';
      continue;
    }
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = [];
      unit.set(header[1], section);
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(section && eq > 0, `not a unit-file line: ${line}`);
    section.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return unit;
}

function loadUnit(rel: string): Unit {
  return parseUnit(fs.readFileSync(path.join(UNITS, rel), 'utf8'));
}

/** Every assignment of `key` in `section`, in order (an empty one resets list settings in systemd). */
function all(unit: Unit, section: string, key: string): string[] {
  return (unit.get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);
}

/** The value systemd ends up with for a single-valued key: the last assignment. */
function one(unit: Unit, section: string, key: string): string | undefined {
  return all(unit, section, key).at(-1);
}

/** A list setting as systemd accumulates it: an empty assignment clears what came before. */
function list(unit: Unit, section: string, key: string): string[] {
  let items: string[] = [];
  for (const v of all(unit, section, key)) items = v === '' ? [] : [...items, ...v.split(/\s+/)];
  return items;
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

/** ExecStart split into argv (our units use no quoting), with `--flag value` pairs looked up by flag. */
function command(line: string | undefined): { argv: string[]; opt: (flag: string) => string | undefined } {
  assert.ok(line, 'ExecStart missing');
  const argv = line.split(/\s+/);
  return {
    argv,
    opt: (flag) => {
      const i = argv.indexOf(flag);
      return i < 0 ? undefined : argv[i + 1];
    },
  };
}

/**
 * Messages from systemd-analyze that are about one of our units. A line
 * attributed to another unit ("/lib/systemd/system/foo.service:12: ..." or
 * "foo.service: ...") is left out: verify also loads the units ours
 * reference (network.target, sockets.target, ...) and complains about
 * whatever the host ships. That isn't ours to fix, so it is only reported
 * as a diagnostic. Every other line counts, attributed or not.
 */
function ourProblems(output: string, note: (s: string) => void): string[] {
  const problems: string[] = [];
  for (const line of output.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const m = /^([^\s:]+\.(?:service|socket|target|slice|mount|automount|swap|path|timer|scope|device))(?::\d+)?:\s/.exec(line);
    if (m && !path.basename(m[1]).startsWith('sshmuxd.')) note(`ignored, about another unit: ${line}`);
    else problems.push(line);
  }
  return problems;
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  const r = spawnSync(file, args, {
    encoding: 'utf8',
    timeout: 10_000,
    // Plain, uncoloured messages without source locations, in English.
    env: { ...process.env, SYSTEMD_LOG_COLOR: '0', SYSTEMD_LOG_LOCATION: '0', SYSTEMD_LOG_TIME: '0', SYSTEMD_PAGER: 'cat', LC_ALL: 'C', ...env },
  });
  assert.ifError(r.error);
  return r;
}

/**
 * Copies of the units in a temp dir, for verify. They are byte-identical
 * except on a machine without /usr/bin/node (some CI images keep node
 * elsewhere). verify insists that ExecStart's binary exists, so there the
 * copy points at this node instead. The shipped path itself is asserted by
 * the directive tests below.
 */
function unitCopies(rels: string[], note: (s: string) => void): string[] {
  const dir = tempDir();
  return rels.map((rel) => {
    let text = fs.readFileSync(path.join(UNITS, rel), 'utf8');
    if (!executable(NODE) && /^ExecStart=\/usr\/bin\/node /m.test(text)) {
      note(`${NODE} is missing here: verifying ${rel} with ExecStart=${process.execPath}`);
      text = text.replace(/^(ExecStart=)\/usr\/bin\/node /gm, `$1${process.execPath} `);
    }
    const copy = path.join(dir, path.basename(rel));
    fs.writeFileSync(copy, text);
    return copy;
  });
}

function verifyArgs(): string[] {
  const help = run(ANALYZE, ['--help']).stdout;
  const args = ['verify', '--man=no'];
  // systemd >= 250: let only our own units decide the exit status.
  if (help.includes('--recursive-errors')) args.push('--recursive-errors=no');
  return args;
}

function assertVerified(r: SpawnSyncReturns<string>, note: (s: string) => void): void {
  const problems = ourProblems(`${r.stdout}\n${r.stderr}`, note);
  assert.deepEqual(problems, [], `systemd-analyze verify complained:\n${problems.join('\n')}`);
  assert.equal(r.status, 0, `systemd-analyze verify exited ${r.status}:\n${r.stdout}${r.stderr}`);
}

test('system units pass systemd-analyze verify', (t) => {
  if (!executable(ANALYZE)) {
    t.skip(`${ANALYZE} not installed (apt-get install systemd); CI runs this`);
    return;
  }
  const r = run(ANALYZE, [...verifyArgs(), ...unitCopies(SYSTEM_UNITS, (s) => t.diagnostic(s))]);
  assertVerified(r, (s) => t.diagnostic(s));
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
  const r = run(ANALYZE, ['--user', ...verifyArgs(), ...unitCopies(USER_UNITS, (s) => t.diagnostic(s))], {
    HOME: home, XDG_RUNTIME_DIR: runtime, XDG_CONFIG_HOME: path.join(home, '.config'),
  });
  assertVerified(r, (s) => t.diagnostic(s));
});

test('system service: notify, watchdog, reload, drain, identity and directories as the daemon needs', () => {
  const svc = loadUnit('sshmuxd.service');
  const S = 'Service';
  const exec = command(one(svc, S, 'ExecStart'));
  assert.deepEqual(exec.argv.slice(0, DAEMON.length), DAEMON);
  // The script the unit runs is this package's daemon, at its place in the package.
  const script = DAEMON[DAEMON.length - 1];
  assert.ok(fs.existsSync(path.join(ROOT, script.slice(INSTALL_PREFIX.length))), `${script} is not in the package`);
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
  // systemd must not SIGKILL the drain: stop timeout > --grace (default 30 s).
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
  // The socket unit's ExecStartPre finds the snippet by this name.
  assert.match(fs.readFileSync(path.join(ROOT, 'docs', 'systemd.md'), 'utf8'), /\/etc\/tmpfiles\.d\/sshmux\.conf/);

  if (!executable(SYSUSERS) || !executable(TMPFILES)) {
    t.skip('systemd-sysusers/systemd-tmpfiles not installed; checked the lines only');
    return;
  }
  // Apply both to an empty root: sysusers writes root/etc/passwd and group,
  // tmpfiles resolves the names from there. tmpfiles is run with the
  // socket unit's own ExecStartPre, with the snippet installed under the
  // name the docs give. (Only root may chown; others check modes.)
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
