// sshmux's command line against OpenSSH's own, on the same sshd: for each
// command line the remote command, the pty decision, stdin, the environment
// sent, the exit status and ssh's own messages must be what OpenSSH's ssh
// gives. The sshd here has a ForceCommand that prints the command it was
// asked to run ($SSH_ORIGINAL_COMMAND) instead of running it, so what
// reached the server is compared byte for byte. Then -G against ssh -G.
// Last, how each ends on SIGHUP, SIGINT and SIGTERM (a table of its own,
// against a second sshd that runs the commands): the same status, signal,
// stdout and stderr.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort, type Sshd } from '../helpers/sshd';
import { waitFor, type DaemonProc } from '../helpers/daemon';
import { catchesSignal, isAsleep, pidsWithArg } from '../helpers/signals';
import { startWorld, type World } from '../helpers/world';

const SSHMUX = path.join(__dirname, '..', '..', 'cli', 'sshmux.js');
let sshd: Sshd;
let daemon: DaemonProc;
let config: string;
let port: string;
let user: string;

/** What the server reports for every session: the command it was given, a tty or not, stdin's length, an env value. */
const REPORT = `printf 'cmd=[%s] ' "$SSH_ORIGINAL_COMMAND"; if [ -t 0 ]; then printf 'tty '; else printf 'notty '; fi; ` +
  `printf 'env=[%s] ' "$SSHMUX_X"; if [ -t 0 ]; then echo; else wc -c | tr -d ' '; fi; exit 7`;

before(async () => {
  // "t" has everything; 127.0.0.1 needs its port (and user) from the command line. ssh and the daemon read the same file.
  const world = await startWorld({
    sshd: { extraConfig: [`ForceCommand ${REPORT}`] },
    sshConfig: (c) => {
      const common = [`  IdentityFile ${c.identityPath}`, '  IdentitiesOnly yes', `  UserKnownHostsFile ${c.knownHostsPath}`,
        '  GlobalKnownHostsFile /dev/null', '  StrictHostKeyChecking yes', '  BatchMode yes'];
      return fs.readFileSync(c.sshConfigPath, 'utf8') + ['  BatchMode yes', `Host 127.0.0.1`, ...common, ''].join('\n');
    },
  });
  ({ sshd, daemon } = world);
  config = world.client.sshConfigPath;
  port = String(sshd.port);
  user = sshd.user.name;
});

interface Outcome { status: number | null; stdout: string; stderr: string }

/** Stdin for a command line: none where a pty is forced, or its echo would race the output. */
const inputFor = (args: string[]): string => (args.some((a) => a === '-tt' || /RequestTTY=force/.test(a)) ? '' : 'hello\n');

function ssh(args: string[], env: NodeJS.ProcessEnv = {}): Outcome {
  return outcome(spawnSync('ssh', ['-F', config, ...args], { input: inputFor(args), env: { ...process.env, ...env }, timeout: 30_000 }));
}

function sshmux(args: string[], env: NodeJS.ProcessEnv = {}): Outcome {
  return outcome(spawnSync(process.execPath, [SSHMUX, ...args], {
    input: inputFor(args), env: { ...process.env, SSHMUX_SOCKET: daemon.socket, ...env }, timeout: 30_000,
  }));
}

function outcome(r: ReturnType<typeof spawnSync>): Outcome {
  // Usage text differs by program name and by OpenSSH version (9.4 moved -b); its first word does not.
  const stderr = r.stderr.toString().replace(/^usage: (ssh|sshmux) [\s\S]*$/m, 'usage: ...');
  return { status: r.status, stdout: r.stdout.toString(), stderr };
}

/** Command lines whose remote command, pty, stdin and environment must match ssh's. {P} is the sshd's port, {U} its user, {CONFIG} the ssh_config. */
const SESSIONS: string[][] = [
  ['t', 'echo', 'a', 'b'],
  ['t', '-n', 'echo', 'x'],
  ['t', '--', '-n', 'echo'],
  ['-n', 't', 'ls', '-la', '-n'],
  ['t', 'cmd', '--', '-x', 'y'],
  ['t', '-o', 'BatchMode=yes', 'cmd', '-o', 'x'],
  ['t', '-oBatchMode=yes', '-T', 'a'],
  ['-nT', 't', 'packed'],
  ['-Tn', '-oBatchMode yes', 't', '-q', 'x'],
  ['-p', '{P}', '{U}@127.0.0.1', 'port', 'before'],
  ['{U}@127.0.0.1', '-p', '{P}', 'port', 'after'],
  ['127.0.0.1', '-p{P}', '-l{U}', 'attached'],
  ['-l', '{U}', '-p{P}', '127.0.0.1', 'x'],
  ['127.0.0.1', '-l', '{U}', '-p', '{P}', '-n', 'x'],
  ['{U}@127.0.0.1', '-p', '{P}', 'x'],
  ['-o', 'User {U}', '-o', 'Port={P}', '127.0.0.1', 'key', 'space', 'value'],
  ['-o', 'User = {U}', '-o', 'Port {P}', '127.0.0.1', 'x'],
  ['-o', 'User="{U}"', '127.0.0.1', '-oPort={P}', 'quoted'],
  ['-o', 'Port={P}', '-p', '1', '-o', 'User={U}', '-l', 'nobody', '127.0.0.1', 'first', 'wins'],
  ['ssh://{U}@127.0.0.1:{P}', 'uri'],
  ['ssh://127.0.0.1:{P}/', '-l', '{U}', 'uri', 'slash'],
  ['-p', '{P}', 'ssh://{U}@127.0.0.1:1', 'port', 'flag', 'wins'],
  ['t', '-tt', 'forced'],
  ['t', '-t', 'no', 'terminal'],
  ['-t', '-n', 't', 'x'],
  ['t'],
  ['-T', 't'],
  ['t', '-o', 'RequestTTY=force'],
  ['-o', 'RequestTTY=yes', 't', 'x'],
  ['-o', 'SetEnv=SSHMUX_X=set', 't', 'x'],
  ['t', '-o', 'SendEnv=SSHMUX_*', 'x'],
  ['-o', 'SendEnv=SSHMUX_*', '-o', 'SendEnv=-SSHMUX_X', 't', 'x'],
  ['-o', 'RemoteCommand=echo remote', 't'],
  ['-o', 'RemoteCommand=none', 't', 'given'],
  ['t', '-s', 'sftp'],
  ['-s', 't', 'sftp'],
  ['-e', 'none', '-x', '-a', '-C', '-4', '-2', '-k', '-oControlMaster=no', '-S', '/nonexistent/cm', 't', 'ignored'],
  ['-oControlPath=none', '-o', 'ControlPersist=60s', '-M', 't', '-A', 'x'],
  ['-o', 'IgnoreUnknown=Frob*', '-o', 'FrobNicate=yes', 't', 'x'],
  ['t', '-v', '-q', 'x'],
  ['-E', '/dev/null', 't', 'x'],
  ['t', '-o', 'StdinNull=yes', 'x'],
  ['-F', '{CONFIG}', '-F', '{CONFIG}', 't', 'x'],
];

/** Command lines both must refuse with the same status and message. */
const ERRORS: string[][] = [
  ['-Z', 't'],
  ['t', '-Z', 'x'],
  ['-p'],
  ['t', '-p'],
  ['-o', 'Foo=bar', 't', 'x'],
  ['t', '-o', 'BatchMode'],
  ['-1', 't'],
  ['-J', 'a', '-J', 'b', 't'],
  ['-o', 'ProxyJump=a', '-J', 'b', 't'],
  ['-p', 'abc', 't'],
  ['-p', '0', 't'],
  ['-e', 'xx', 't'],
  ['-W', 'foo', 't'],
  ['-s', 't'],
  ['-f', 't'],
  ['-N', '-s', 't', 'x'],
  ['-y', '-E', '/dev/null', 't', 'x'],
  ['@t'],
  ['ssh://t:99999'],
  ['ssh://t/path'],
  ['-O', 'bogus', 't'],
  ['-W', 'a:1', '-O', 'check', 't'],
  ['-o', 'Host=x', 't'],
  ['-o', 'Include=/dev/null', 't'],
  ['-o', 'RemoteCommand=echo', 't', 'cmd'],
  ['-o', 'User a b', 't'],
  ['-Q', 'nonsense'],
  [],
];

const fill = (args: string[]): string[] => args.map((a) => a.replace(/\{P\}/g, port).replace(/\{U\}/g, user).replace(/\{CONFIG\}/g, config));

test('the remote command, pty, stdin, environment and status are what OpenSSH gives, for each command line', () => {
  const env = { SSHMUX_X: 'sent' };
  for (const row of SESSIONS) {
    const args = fill(row);
    const want = ssh(args, env);
    // ssh must have reached the server through its ForceCommand, or the row tests nothing.
    assert.equal(want.status, 7, `ssh ${args.join(' ')} did not reach the server: ${want.stderr}`);
    assert.match(want.stdout, /^cmd=\[/);
    const got = sshmux(args, env);
    assert.deepEqual(got, want, `sshmux ${args.join(' ')}`);
  }
});

test('command lines OpenSSH refuses are refused with its status and message', () => {
  for (const row of ERRORS) {
    const args = fill(row);
    const want = ssh(args);
    assert.equal(want.status, 255, `ssh ${args.join(' ')} was expected to fail`);
    const got = sshmux(args);
    assert.equal(got.status, 255, `sshmux ${args.join(' ')}: ${got.stderr}`);
    assert.equal(got.stderr.split('\n')[0], want.stderr.split('\n')[0], `sshmux ${args.join(' ')}`);
  }
});

test('what only sshmux refuses says why and exits 255', () => {
  const cases: Array<[string[], RegExp]> = [
    [['-R', '8080:localhost:80', 't'], /^sshmux: -R is refused: remote forwarding is not done/],
    [['t', '-D', '1080'], /^sshmux: -D is refused: a SOCKS proxy \(dynamic forwarding\) is not done/],
    [['-b', '127.0.0.1', 't', 'x'], /^sshmux: -b is refused: sessions ride the daemon's pooled connections/],
    [['-B', 'lo', 't', 'x'], /^sshmux: -B is refused/],
    [['-w', '0:0', 't'], /^sshmux: -w is refused: tun device forwarding/],
    [['-I', '/usr/lib/pkcs11.so', 't'], /^sshmux: -I is refused/],
    [['-o', 'ProxyCommand=nc %h %p', 't'], /^sshmux: -o ProxyCommand is refused: sshmuxd never runs a command a client sends/],
    [['t', '-o', 'LocalCommand=id', 'x'], /^sshmux: -o LocalCommand is refused/],
    [['-o', 'Tunnel=yes', 't'], /^sshmux: -o Tunnel is refused/],
    [['-o', 'RemoteCommand=echo %h', 't'], /^sshmux: -o RemoteCommand with %-tokens is refused/],
  ];
  for (const [args, message] of cases) {
    const r = sshmux(args);
    assert.equal(r.status, 255, args.join(' '));
    assert.match(r.stderr, message, args.join(' '));
  }
});

test('-v says which options were accepted and ignored, and why', () => {
  const r = sshmux(['-v', '-A', '-c', 'aes128-ctr', '-o', 'ControlMaster=auto', '-S', '/tmp/cm', 't', 'x']);
  assert.equal(r.status, 7);
  assert.match(r.stderr, /ignoring -A: agent forwarding is not done: it would forward the daemon's agent, not yours/);
  assert.match(r.stderr, /ignoring -c aes128-ctr: it shapes the SSH connection, which the daemon opens/);
  assert.match(r.stderr, /ignoring -o ControlMaster=auto: the daemon is the master/);
  assert.match(r.stderr, /ignoring -S \/tmp\/cm: the daemon is the master/);
  assert.match(r.stderr, /session on t#\d+ after \d+ ms/);
});

/** The lines of ssh -G output for these keys; sshmux prints paths expanded, as the daemon uses them. */
function configOf(text: string, keys: string[]): string[] {
  return text.split('\n').filter((l) => keys.includes(l.split(' ')[0])).map((l) => l.replace(/^identityfile ~\//, `identityfile ${os.homedir()}/`));
}

test('-G prints what ssh -G prints for user, hostname, port, identityfile and proxyjump, resolved by the daemon', () => {
  const keys = ['user', 'hostname', 'port', 'identityfile', 'proxyjump'];
  const rows: string[][] = [
    ['t'],
    ['-p', '2222', 't'],
    ['t', '-p', '2222'],
    ['-l', 'bob', 't'],
    ['bob@t', '-l', 'alice'],
    ['ssh://bob@t:2200'],
    ['-o', 'Port=2201', '-o', 'User=carol', 't'],
    ['-J', 'j1,bob@j2:2', 't'],
    ['-i', sshd.clientKeyPath, 't'],
    ['-G', 'T', 'ignored', 'command'],
    ['127.0.0.1', '-l', 'dave'],
  ];
  for (const row of rows) {
    const want = spawnSync('ssh', ['-G', '-F', config, ...row], { encoding: 'utf8' });
    assert.equal(want.status, 0, want.stderr);
    const got = spawnSync(process.execPath, [SSHMUX, '-G', ...row], { encoding: 'utf8', env: { ...process.env, SSHMUX_SOCKET: daemon.socket } });
    assert.equal(got.status, 0, `sshmux -G ${row.join(' ')}: ${got.stderr}`);
    assert.deepEqual(configOf(got.stdout, keys), configOf(want.stdout, keys), `-G ${row.join(' ')}`);
    assert.match(got.stdout, /^host /);
  }
  // A destination the daemon would refuse is refused here too.
  const bad = spawnSync(process.execPath, [SSHMUX, '-G', '-o', 'Port=notaport', 't'],
    { encoding: 'utf8', env: { ...process.env, SSHMUX_SOCKET: daemon.socket } });
  assert.equal(bad.status, 255);
  assert.match(bad.stderr, /^sshmux: bad Port "notaport"/);
});

test('what the server cannot show: -F and -E keep their last value, -P takes a tag, -O and -W exclude each other, ssh\'s pty rule', () => {
  const { parseCommandLine, ptyDecision } = require('../../cli/ssh-args') as typeof import('../../cli/ssh-args');
  const inv = parseCommandLine(['-F', '/a', '-E', '/log1', '-P', 'tag', 't', '-F', '/b', '-E', '/log2', '-o', 'ControlPath=x', 'cmd']);
  assert.equal(inv.options.configfile, '/b');
  assert.equal(inv.logFile, '/log2');
  assert.equal(inv.command, 'cmd');
  assert.deepEqual(inv.ignored.map((w) => w.split(':')[0]), ['-P tag', '-o ControlPath=x']);
  assert.equal(parseCommandLine(['-F', 'none', 't']).options.configfile, '/dev/null');
  assert.equal(parseCommandLine(['-F', 'rel/cfg', 't']).options.configfile, path.resolve('rel/cfg'));
  assert.equal(parseCommandLine(['-O', 'exit', 't']).action, 'control');
  assert.equal(parseCommandLine(['-O', 'check', '-G', 't']).action, 'print-config');
  assert.equal(parseCommandLine(['-V', '-Z']).action, 'version');
  assert.equal(parseCommandLine(['-o', 'ClearAllForwardings=yes', '-L', '1:a:2', 't']).localForwards.length, 0);
  assert.equal(parseCommandLine(['-p', 'ssh', 't']).options.port, '22');
  const tty = (args: string[], isTty: boolean) => ptyDecision(parseCommandLine(args), () => isTty);
  assert.deepEqual(tty(['t'], true), { pty: true, warn: false });
  assert.deepEqual(tty(['t'], false), { pty: false, warn: true });
  assert.deepEqual(tty(['t', 'cmd'], false), { pty: false, warn: false });
  assert.deepEqual(tty(['-t', 't', 'cmd'], true), { pty: true, warn: false });
  assert.deepEqual(tty(['-tt', '-n', 't', 'cmd'], false), { pty: true, warn: false });
  assert.deepEqual(tty(['-t', '-n', 't', 'cmd'], true), { pty: false, warn: true });
  assert.deepEqual(tty(['-N', '-t', 't'], true), { pty: false, warn: false });
});

// ---- signals ---------------------------------------------------------------

/**
 * When to send the signal. `output`: once stdout shows what the row waits
 * for (the remote command has started; -W's target has answered).
 * `connected`: once the process handles SIGHUP, which ssh and sshmux both
 * do only once connected (-N, -N -L), and is seen asleep so twice, 20 ms
 * apart. `connecting`: the destination never answers, and a second later
 * (sshmux has asked the daemon by then) both are still connecting.
 */
type Moment = { output: string } | 'connected' | 'connecting';

interface SignalRow { args: string[]; signals: NodeJS.Signals[]; when: Moment; stdin?: 'pipe' | 'null'; verbose?: boolean }

const ALL: NodeJS.Signals[] = ['SIGHUP', 'SIGINT', 'SIGTERM'];
const READY = 'echo ready; exec sleep 30';
/** {L} is a free local port, {P} the sshd's port. */
const SIGNAL_ROWS: SignalRow[] = [
  { args: ['-N', 's'], signals: ALL, when: 'connected' },
  { args: ['-N', 's'], signals: ALL, when: 'connected', stdin: 'null' },
  { args: ['-n', '-N', 's'], signals: ['SIGHUP'], when: 'connected' },
  { args: ['-N', '-L', '{L}:127.0.0.1:{P}', 's'], signals: ALL, when: 'connected', stdin: 'null' },
  { args: ['-W', '127.0.0.1:{P}', 's'], signals: ALL, when: { output: 'SSH-2.0-' } },
  { args: ['s', READY], signals: ALL, when: { output: 'ready' } },
  { args: ['-n', 's', READY], signals: ['SIGHUP'], when: { output: 'ready' } },
  { args: ['-tt', 's', READY], signals: ALL, when: { output: 'ready' } },
  // A command that ignores them all: ssh leaves at once; sshmux after its grace, TERM and KILL.
  { args: ['s', `trap "" HUP INT TERM; ${READY}`], signals: ['SIGHUP'], when: { output: 'ready' } },
  { args: ['stall', 'true'], signals: ALL, when: 'connecting' },
  { args: ['-N', 'stall'], signals: ['SIGTERM'], when: 'connecting' },
  { args: ['-v', '-N', 's'], signals: ['SIGHUP', 'SIGTERM'], when: 'connected', verbose: true },
  { args: ['-v', 's', READY], signals: ['SIGTERM'], when: { output: 'ready' }, verbose: true },
];

interface Ended { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

let signalWorld: World;
let stall: net.Server;
const stalled: net.Socket[] = [];
after(() => {
  for (const s of stalled) s.destroy();
  stall?.close();
});

/** Runs ssh or sshmux (argv[0]) with `row`'s stdin, sends `sig` at the row's moment, and reports how it ended. */
async function signalled(argv: string[], env: NodeJS.ProcessEnv, row: SignalRow, sig: NodeJS.Signals): Promise<Ended> {
  const child = spawn(argv[0], argv.slice(1), { env, stdio: [row.stdin === 'null' ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const ended = new Promise<Ended>((resolve) => child.once('close', (status, signal) => resolve({ status, signal, stdout, stderr })));
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const when = row.when;
  if (when === 'connecting') {
    await new Promise((r) => setTimeout(r, 1000));
  } else {
    // Each installs its handlers one after another, SIGHUP's first: once it handles SIGHUP it is connected, and
    // once it has also gone to sleep it has installed the rest (seen under load: SIGTERM sent while sshmux was
    // still between the two, which it then died of).
    let seenAsleep = 0;
    const connected = () => (catchesSignal(child.pid!, 'SIGHUP') && isAsleep(child.pid!) ? ++seenAsleep : (seenAsleep = 0)) >= 2;
    const ready = typeof when === 'object' ? () => stdout.includes(when.output) : connected;
    assert.ok(await waitFor(ready, 20_000, 20), `${argv.join(' ')} never got ready for ${sig}: ${stderr}`);
  }
  child.kill(sig);
  const result = await ended;
  clearTimeout(killer);
  return result;
}

/** What must match: all of it, but under -v only ssh's "Killed by signal" line (the rest is each one's debug output). */
function comparable(e: Ended, row: SignalRow): Ended {
  return row.verbose ? { ...e, stderr: e.stderr.split('\n').filter((l) => /^Killed by signal/.test(l)).join('\n') } : e;
}

test('SIGHUP, SIGINT and SIGTERM end sshmux with the status, signal and messages OpenSSH\'s ssh ends with', async (t) => {
  // Commands run here (no ForceCommand); "stall" accepts TCP and never answers, so both are still connecting.
  stall = net.createServer((s) => stalled.push(s)).listen(0, '127.0.0.1');
  await new Promise((r) => stall.once('listening', r));
  const stallPort = (stall.address() as net.AddressInfo).port;
  signalWorld = await startWorld({
    alias: 's',
    sshConfig: (c) => fs.readFileSync(c.sshConfigPath, 'utf8') + ['  BatchMode yes', 'Host stall', '  HostName 127.0.0.1', `  Port ${stallPort}`,
      '  ConnectTimeout 60', `  IdentityFile ${c.identityPath}`, `  UserKnownHostsFile ${c.knownHostsPath}`, '  BatchMode yes', ''].join('\n'),
  });
  const config = signalWorld.client.sshConfigPath;
  const sshdPort = String(signalWorld.sshd.port);
  const table: string[] = [];
  const runs: Array<() => Promise<void>> = [];
  for (const row of SIGNAL_ROWS) {
    for (const sig of row.signals) {
      runs.push(async () => {
        const fillRow = async (): Promise<string[]> => {
          const local = String(await freePort());
          return row.args.map((a) => a.replace('{L}', local).replace('{P}', sshdPort));
        };
        const t0 = Date.now();
        const [want, got] = await Promise.all([
          signalled(['ssh', '-F', config, ...await fillRow()], process.env, row, sig),
          signalled([process.execPath, SSHMUX, ...await fillRow()], signalWorld.env, row, sig),
        ]);
        const line = `${row.args.join(' ')}${row.stdin === 'null' ? ' </dev/null' : ''} ${sig}: ssh ${want.status ?? want.signal}, sshmux ${got.status ?? got.signal}`;
        table.push(`${line} (${Date.now() - t0} ms)`);
        assert.deepEqual(comparable(got, row), comparable(want, row), line);
        if (row.verbose && want.status === 255) assert.match(want.stderr, /^Killed by signal \d+\.\r$/m, 'the row compares nothing');
      });
    }
  }
  // Seven cases at a time (each waits mostly on the other side; the command that ignores the signals takes 4 s).
  await Promise.all(Array.from({ length: 7 }, async () => {
    for (let run = runs.shift(); run; run = runs.shift()) await run();
  }));
  for (const line of table) t.diagnostic(line);
});

test('-f -N stands by in the background until signalled, whatever stdin is; -f -N -M (a master) checks and leaves nothing behind', async () => {
  const env = signalWorld?.env ?? (await startWorld({ alias: 's' })).env;
  const marker = path.join(os.tmpdir(), `sshmux-fN-${process.pid}-${Date.now()}.log`);
  const parent = spawnSync(process.execPath, [SSHMUX, '-f', '-N', '-E', marker, 's'], { env, stdio: 'ignore', timeout: 20_000 });
  assert.equal(parent.status, 0);
  const [child] = pidsWithArg(marker);
  assert.ok(child, 'nothing stands by in the background');
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(pidsWithArg(marker), [child], 'the background sshmux did not stay');
  process.kill(child, 'SIGHUP');
  assert.ok(await waitFor(() => pidsWithArg(marker).length === 0, 5000), 'SIGHUP did not end it');

  const master = spawnSync(process.execPath, [SSHMUX, '-f', '-N', '-M', '-E', marker, 's'], { env, stdio: 'ignore', timeout: 20_000 });
  assert.equal(master.status, 0);
  assert.ok(await waitFor(() => pidsWithArg(marker).length === 0, 5000), '-f -N -M left a process behind');
  fs.rmSync(marker, { force: true });
});
