// The SSH front door (sshmuxd --gateway): real SSH clients in front
// (OpenSSH's ssh, sftp, scp and rsync; Debian's paramiko and asyncssh), a
// real sshd behind, and the daemon in between. A client changes only the
// address it connects to; its sessions ride the pooled connections.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { once } from 'node:events';
import WebSocket from 'ws';
import { SshMux } from '../../client-sdk';
import { cleanupAll, freePort, remoteProcesses, startSshd, tempDir, writeClientConfig, type ClientHost, type Sshd } from '../helpers/sshd';
import { startDaemon, waitFor, type DaemonProc } from '../helpers/daemon';
import { fetchChecked, payloadServer } from '../helpers/http-payload';
import { slowReader, underCpuLoad } from '../helpers/load';
import { underTerminal } from '../helpers/terminal';

const PYTHON = '/usr/bin/python3';
const CLIENTS = path.join(__dirname, '..', '..', '..', 'test', 'helpers', 'ssh_clients.py');
const MAIN = path.join(__dirname, '..', '..', 'daemon', 'main.js');
const SSHMUXCTL = path.join(__dirname, '..', '..', 'cli', 'sshmuxctl.js');

interface Door {
  daemon: DaemonProc;
  mux: SshMux;
  sshd: Sshd;
  dir: string;
  stateDir: string;
  port: number;
  /** A known_hosts file holding the line sshmuxctl gateway printed. */
  knownHosts: string;
  /** The client key the daemon generated (no gatewayAuthorizedKeys set). */
  key: string;
}

const doors: Door[] = [];
const closers: Array<() => void> = [];
let door: Door;
/** A directory the remote user owns, on this same machine. */
let remoteDir: string;
let web: { port: number };

async function startDoor(opts: { sshd?: Sshd; hosts?: (sshd: Sshd) => ClientHost[]; config?: Record<string, unknown>;
  args?: string[]; stateDir?: string } = {}): Promise<Door> {
  const sshd = opts.sshd ?? await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, opts.hosts ? opts.hosts(sshd) : [{ alias: 't', sshd }]);
  const stateDir = opts.stateDir ?? path.join(dir, 'state');
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, config: opts.config,
    args: ['--gateway', '127.0.0.1:0', '--state-dir', stateDir, ...(opts.args ?? [])] });
  const mux = await SshMux.connect({ socket: daemon.socket });
  const info = JSON.parse(execFileSync(process.execPath, [SSHMUXCTL, '--socket', daemon.socket, '--json', 'gateway']).toString());
  const knownHosts = path.join(dir, 'gateway_known_hosts');
  fs.writeFileSync(knownHosts, `${info.knownHosts}\n`, { mode: 0o644 });
  const d = { daemon, mux, sshd, dir, stateDir, port: Number(/:(\d+)$/.exec(info.address)![1]), knownHosts, key: info.clientKey };
  doors.push(d);
  return d;
}

before(async () => {
  door = await startDoor({
    args: ['--http', '127.0.0.1:0'],
    hosts: (sshd) => [
      { alias: 't', sshd },
      // One slot and a short wait: a second session there runs past its queue deadline.
      // (ConnectTimeout makes it a destination of its own: pools are per resolved destination.)
      { alias: 'one-slot', sshd, extra: ['ConnectTimeout 14'] },
      // Looked up under another name in known_hosts, where it is not: HOST_KEY_UNKNOWN.
      { alias: 'stranger', sshd, extra: ['HostKeyAlias stranger.example'] },
    ],
    config: { hosts: { 'one-slot': { maxSessions: 1, maxConnections: 1, queueTimeoutMs: 1500 } } },
  });
  remoteDir = tempDir();
  fs.chownSync(remoteDir, door.sshd.user.uid, door.sshd.user.gid);
  web = await payloadServer();
});

after(async () => {
  for (const c of closers) c();
  for (const d of doors) {
    d.mux.close();
    await d.daemon.stop();
  }
  await cleanupAll();
});

/** OpenSSH's ssh (or sftp/scp argv) options that reach the door with the generated key and strict host-key checking. */
function sshOptions(d: Door, key = d.key): string[] {
  return ['-F', '/dev/null', '-i', key, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${d.knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes'];
}

function ssh(d: Door, destination: string, args: string[], input?: Buffer | string, key?: string): SpawnSyncReturns<Buffer> {
  return spawnSync('ssh', [...sshOptions(d, key), '-p', String(d.port), `${destination}@127.0.0.1`, ...args],
    { input, timeout: 60_000, maxBuffer: 64 << 20 });
}

function sshAsync(d: Door, destination: string, args: string[], input: string): Promise<{ status: number | null; stdout: Buffer; stderr: Buffer }> {
  const child = spawn('ssh', [...sshOptions(d), '-p', String(d.port), `${destination}@127.0.0.1`, ...args]);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => err.push(b));
  child.stdin.end(input);
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) => child.once('close', (status) => {
    clearTimeout(timer);
    resolve({ status, stdout: Buffer.concat(out), stderr: Buffer.concat(err) });
  }));
}

/** Runs a mode of the Python clients; resolves with the JSON it prints. */
function py(d: Door, mode: string, args: string[], user = 't', key = d.key): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [CLIENTS, mode, '--port', String(d.port), '--key', key, '--known-hosts', d.knownHosts, '--user', user, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b));
    child.stderr.on('data', (b: Buffer) => (err += b));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`${mode} exited ${code}: ${out}${err}`));
      }
    });
  });
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Whether the daemon logs `what` within 5 s (its output is read while the test awaits, not during a spawnSync). */
function logged(d: Door, what: string | RegExp): Promise<boolean> {
  return waitFor(() => (typeof what === 'string' ? d.daemon.logs().includes(what) : what.test(d.daemon.logs())), 5000);
}

async function sessionsOpen(d: Door): Promise<number> {
  return ((await d.mux.status()).hosts ?? []).reduce((n, h) => n + (h.connections ?? []).reduce((m, c) => m + (c.sessions ?? 0), 0), 0);
}

test('OpenSSH ssh: exit status, stderr apart, 3 MB of random bytes through cat unchanged, -n, env', () => {
  const r = ssh(door, 't', ['echo out; echo err >&2; exit 42']);
  assert.equal(r.status, 42, r.stderr.toString());
  assert.equal(r.stdout.toString(), 'out\n');
  assert.equal(r.stderr.toString(), 'err\n');
  const data = randomBytes(3 * 1024 * 1024);
  const cat = ssh(door, 't', ['cat'], data);
  assert.equal(cat.status, 0, cat.stderr.toString());
  assert.ok(Buffer.compare(cat.stdout, data) === 0, `cat returned ${cat.stdout.length} bytes, not the same 3 MB`);
  const n = spawnSync('ssh', ['-n', ...sshOptions(door), '-p', String(door.port), 't@127.0.0.1', 'wc -c'], { input: 'not for the remote' });
  assert.equal(n.stdout.toString().trim(), '0');
  // sshd's AcceptEnv SSHMUX_* decides, as for a direct login.
  const env = spawnSync('ssh', [...sshOptions(door), '-o', 'SetEnv=SSHMUX_X=1', '-p', String(door.port), 't@127.0.0.1', 'echo ${SSHMUX_X:-unset}']);
  assert.equal(env.stdout.toString(), '1\n');
  // user@alias logs into the alias as that user.
  assert.equal(ssh(door, `${door.sshd.user.name}@t`, ['id -un']).stdout.toString(), `${door.sshd.user.name}\n`);
});

test('signals: one sent to a running command reaches it, and a command killed by one reports exit-signal', async () => {
  const r = await py(door, 'asyncssh-signal', ['--command', 'echo started; exec sleep 30']);
  assert.deepEqual(r.sent, [-1, 'TERM']); // asyncssh's exit_status when a signal ended it
  assert.deepEqual(r.killed, [-1, 'KILL']);
  // OpenSSH reports a command killed by a signal as 255, as it does with sshd.
  assert.equal(ssh(door, 't', ['kill -KILL $$']).status, 255);
});

test('what the door does not carry is refused, each as the client expects: -R, -X, -A, Unix-socket forwards', async () => {
  const r = spawnSync('ssh', [...sshOptions(door), '-o', 'ExitOnForwardFailure=yes', '-N', '-R', '0:127.0.0.1:1', '-p', String(door.port), 't@127.0.0.1'], { timeout: 20_000 });
  assert.equal(r.status, 255);
  assert.match(r.stderr.toString(), /remote port forwarding failed/);
  const x = spawnSync('ssh', [...sshOptions(door), '-X', '-p', String(door.port), 't@127.0.0.1', 'echo still runs'], { env: { ...process.env, DISPLAY: ':9' }, timeout: 20_000 });
  assert.equal(x.stdout.toString(), 'still runs\n');
  assert.match(x.stderr.toString(), /X11 forwarding request failed/);
  // Agent forwarding: OpenSSH asks without wanting a reply; the remote sees no agent.
  const agentSock = path.join(tempDir(), 'agent.sock');
  const agent = spawn('ssh-agent', ['-D', '-a', agentSock], { stdio: 'ignore' });
  closers.push(() => agent.kill('SIGKILL'));
  assert.ok(await waitFor(() => fs.existsSync(agentSock), 5000));
  const a = spawnSync('ssh', [...sshOptions(door), '-A', '-p', String(door.port), 't@127.0.0.1', 'echo "agent:${SSH_AUTH_SOCK:-none}"'], { env: { ...process.env, SSH_AUTH_SOCK: agentSock }, timeout: 20_000 });
  agent.kill('SIGKILL');
  assert.equal(a.stdout.toString(), 'agent:none\n');
  const unixFwd = path.join(tempDir(), 'fwd.sock');
  const l = spawn('ssh', [...sshOptions(door), '-N', '-L', `${unixFwd}:/run/nothing.sock`, '-p', String(door.port), 't@127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  closers.push(() => l.kill('SIGKILL'));
  let lErr = '';
  l.stderr.on('data', (b: Buffer) => (lErr += b));
  assert.ok(await waitFor(() => fs.existsSync(unixFwd), 10_000));
  net.connect(unixFwd).on('error', () => {});
  assert.ok(await waitFor(() => /open failed: administratively prohibited: forwarding to Unix sockets is refused/.test(lErr), 10_000), lErr);
  l.kill('SIGTERM');
  assert.ok(await logged(door, /"request":"tcpip-forward".*remote forwarding refused/));
  assert.ok(await logged(door, /agent forwarding refused/));
  assert.ok(await logged(door, /X11 forwarding refused/));
});

test('a pty session under a real terminal: the remote sees a tty and a window-size change', () => {
  // sleep in the background, so that the WINCH trap runs at once rather than after it.
  const remote = 'trap \'stty size; kill $!; exit 7\' WINCH; tty; stty size; sleep 10 & wait';
  const out = underTerminal(['ssh', ...sshOptions(door), '-p', String(door.port), 't@127.0.0.1', '-t', remote], '30 100', 20);
  assert.match(out, /^7 /, out);
  assert.match(out, /\/dev\/pts\/\d+/, 'the remote did not get a tty');
  assert.match(out, /30 100/);
  assert.match(out, /40 120/, 'the window-size change did not arrive');
});

test('paramiko: 120 threads, each with a new connection per command, against MaxSessions 10 and MaxStartups 10:30:100: all succeed, at most 8 logins, no drop', async () => {
  const fresh = await startDoor({ sshd: await startSshd({ maxSessions: 10, maxStartups: '10:30:100' }) });
  const r = await py(fresh, 'fanout', ['--n', '120', '--command', 'sleep 0.5; echo {i}']);
  assert.deepEqual(r.failures, []);
  assert.equal(r.ok, 120);
  assert.ok(fresh.sshd.logins() <= 8, `sshd logged ${fresh.sshd.logins()} logins`);
  assert.equal(fresh.sshd.drops(), 0);
});

test('paramiko: 30 channels at once on one Transport wait for slots on MaxSessions 10 instead of failing', async () => {
  const r = await py(door, 'channels', ['--n', '30', '--command', 'sleep 0.3; echo {i}']);
  assert.deepEqual(r.failures, []);
  assert.equal(r.ok, 30);
});

test('asyncssh: 40 concurrent connections, stdout, stderr and exit codes each their own', async () => {
  const r = await py(door, 'asyncssh', ['--n', '40', '--command', 'echo out{i}; echo err{i} >&2; exit $(({i} % 7))']);
  assert.deepEqual(r.failures, []);
  assert.equal(r.ok, 40);
});

test('SFTP through the door: paramiko SFTPClient and OpenSSH sftp, scp and rsync, 5 MB each way with equal hashes', async () => {
  const local = path.join(tempDir(), 'five');
  fs.writeFileSync(local, randomBytes(5 * 1024 * 1024));
  const sum = sha256(local);
  const remoteSum = (name: string): string => ssh(door, 't', [`sha256sum ${path.join(remoteDir, name)}`]).stdout.toString().split(' ')[0];
  const back = (name: string): string => path.join(tempDir(), name);

  const pBack = back('paramiko-back');
  const r = await py(door, 'sftp', ['--local', local, '--remote', `${remoteDir}/paramiko`, '--local2', pBack]);
  assert.equal(r.size, 5 * 1024 * 1024);
  assert.equal(remoteSum('paramiko'), sum);
  assert.equal(sha256(pBack), sum);

  const opts = [...sshOptions(door), '-P', String(door.port)];
  const sBack = back('sftp-back');
  execFileSync('sftp', ['-b', '-', ...opts, 't@127.0.0.1'], { input: `put ${local} ${remoteDir}/sftped\nget ${remoteDir}/sftped ${sBack}\n`, timeout: 60_000, stdio: 'pipe' });
  assert.equal(remoteSum('sftped'), sum);
  assert.equal(sha256(sBack), sum);

  const cBack = back('scp-back');
  execFileSync('scp', ['-q', ...opts, local, `t@127.0.0.1:${remoteDir}/scped`], { timeout: 60_000, stdio: 'pipe' });
  execFileSync('scp', ['-q', ...opts, `t@127.0.0.1:${remoteDir}/scped`, cBack], { timeout: 60_000, stdio: 'pipe' });
  assert.equal(remoteSum('scped'), sum);
  assert.equal(sha256(cBack), sum);

  const rsh = ['ssh', ...sshOptions(door), '-p', String(door.port)].join(' ');
  const rBack = back('rsync-back');
  execFileSync('rsync', ['-e', rsh, local, `t@127.0.0.1:${remoteDir}/rsynced`], { timeout: 60_000, stdio: 'pipe' });
  execFileSync('rsync', ['-e', rsh, `t@127.0.0.1:${remoteDir}/rsynced`, rBack], { timeout: 60_000, stdio: 'pipe' });
  assert.equal(remoteSum('rsynced'), sum);
  assert.equal(sha256(rBack), sum);
});

test('direct-tcpip: paramiko open_channel, ssh -W and ssh -L reach a server behind the host, outside MaxSessions', async () => {
  assert.equal(ssh(door, 't', ['true']).status, 0); // the pool is up: what follows must cost no login
  const logins = door.sshd.logins();
  const r = await py(door, 'tcpip', ['--n', '20', '--target-host', '127.0.0.1', '--target-port', String(web.port), '--size', String(256 * 1024)]);
  assert.deepEqual(r.failures, []);
  assert.equal(r.ok, 20);

  // ssh -W: stdin and stdout are the stream. (Not spawnSync: the web server runs in this process.)
  const w = await sshAsync(door, 't', ['-W', `127.0.0.1:${web.port}`], 'GET /1000 HTTP/1.0\r\n\r\n');
  assert.equal(w.status, 0, w.stderr.toString());
  const [head, body] = [w.stdout.subarray(0, w.stdout.indexOf('\r\n\r\n')).toString(), w.stdout.subarray(w.stdout.indexOf('\r\n\r\n') + 4)];
  assert.equal(createHash('sha256').update(body).digest('hex'), /x-sha256: (\w+)/.exec(head)![1]);

  // ssh -N -L: a local listener in ssh whose connections are direct-tcpip channels.
  const localPort = await freePort();
  const fwd = spawn('ssh', [...sshOptions(door), '-N', '-L', `${localPort}:127.0.0.1:${web.port}`, '-p', String(door.port), 't@127.0.0.1'], { stdio: 'ignore' });
  closers.push(() => fwd.kill('SIGKILL'));
  assert.ok(await waitFor(async () => (await fetchChecked(localPort, 10)) === true, 15_000), 'the -L forward never worked');
  const many = await Promise.all(Array.from({ length: 20 }, () => fetchChecked(localPort, 100_000)));
  assert.deepEqual(many.filter((x) => x !== true), []);
  fwd.kill('SIGTERM');
  // Streams ride the pooled connection: no login beyond the pool's.
  assert.equal(door.sshd.logins(), logins);
});

test('errors reach each client in its own form: open failures carry the code and message, a slot deadline is stderr and 255', async () => {
  // A failed upstream handshake is the channel's open failure.
  const o = ssh(door, 'stranger', ['true']);
  assert.equal(o.status, 255);
  assert.match(o.stderr.toString(), /open failed: connect failed: HOST_KEY_UNKNOWN: .*stranger/);
  const a = await py(door, 'asyncssh-error', ['--command', 'true'], 'stranger');
  assert.equal(a.error, 'ChannelOpenError');
  assert.match(a.message, /^HOST_KEY_UNKNOWN: /);
  // paramiko raises ChannelException(2, 'Connect failed'): it keeps the server's text
  // out of the exception and logs it (at ERROR, on the paramiko.transport logger).
  const p = await py(door, 'exec', ['--command', 'true'], 'stranger');
  assert.equal(p.error, 'ChannelException');
  assert.ok(p.log.some((l: string) => /open FAILED: HOST_KEY_UNKNOWN: /.test(l)), JSON.stringify(p.log));

  // Once the exec is accepted, a deadline is what OpenSSH users know: a message on stderr, exit 255.
  const holder = spawn('ssh', [...sshOptions(door), '-p', String(door.port), 'one-slot@127.0.0.1', 'sleep 8'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let holderErr = '';
  holder.stderr.on('data', (b: Buffer) => (holderErr += b));
  assert.ok(await waitFor(async () => (await door.mux.status()).hosts!.some((h) => h.name === 'one-slot' && (h.connections?.[0]?.sessions ?? 0) === 1), 10_000),
    `the first session on one-slot did not start: ${holderErr} ${JSON.stringify((await door.mux.status()).hosts)} ${door.daemon.logs().slice(-3000)}`);
  const late = ssh(door, 'one-slot', ['true']);
  assert.equal(late.status, 255);
  assert.match(late.stderr.toString(), /^sshmux: DEADLINE_EXCEEDED: no session slot on one-slot became free within 2 s/);
  const lateP = await py(door, 'exec', ['--command', 'true'], 'one-slot');
  assert.equal(lateP.status, 255);
  assert.match(lateP.stderr, /^sshmux: DEADLINE_EXCEEDED: /);
  holder.kill('SIGKILL');

  // A user name that does not resolve fails at authentication, with a banner saying why.
  const bad = await py(door, 'exec', ['--command', 'true'], 'x@-oProxyCommand=evil');
  assert.equal(bad.error, 'BadAuthenticationType'); // paramiko's AuthenticationException for "no method left"
  const badO = spawnSync('ssh', [...sshOptions(door), '-l', 'x@-oProxyCommand=evil', '-p', String(door.port), '127.0.0.1', 'true']);
  assert.equal(badO.status, 255);
  assert.match(badO.stderr.toString(), /sshmux: the user name names the destination host: BAD_REQUEST: invalid host name/);
  assert.ok(await logged(door, /"reason":"destination".*"msg":"gateway: authentication refused"/));
});

test('who may log in: an unlisted key and passwords are refused; another local user cannot get in without a listed key',
  { skip: process.getuid!() !== 0 && 'needs root, to run a client as another local user' }, async () => {
  const keysFile = path.join(tempDir(), 'gateway_authorized_keys');
  fs.writeFileSync(keysFile, '# nobody yet\n', { mode: 0o644 });
  const d = await startDoor({ sshd: door.sshd, config: { gatewayAuthorizedKeys: keysFile }, args: ['--http', '127.0.0.1:0'] });
  const other = door.sshd.user; // a different local account than the daemon's (root)
  const home = tempDir();
  fs.chownSync(home, other.uid, other.gid);
  fs.chmodSync(home, 0o700);
  const otherKey = path.join(home, 'id_ed25519');
  execFileSync('runuser', ['-u', other.name, '--', 'ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'other', '-f', otherKey]);
  const asOther = (key: string, extra: string[] = []): SpawnSyncReturns<Buffer> => spawnSync('runuser',
    ['-u', other.name, '--', 'ssh', ...sshOptions(d, key), ...extra, '-p', String(d.port), 't@127.0.0.1', 'id -un'], { timeout: 30_000 });

  // Not listed yet: refused, and the refusal names the key by fingerprint only.
  const refused = asOther(otherKey);
  assert.equal(refused.status, 255);
  assert.match(refused.stderr.toString(), /Permission denied \(publickey\)/);
  const fp = execFileSync('ssh-keygen', ['-lf', `${otherKey}.pub`]).toString().split(' ')[1];
  assert.ok(await logged(d, `"fingerprint":"${fp}"`), 'the refusal was not logged with the key\'s fingerprint');
  // Passwords are refused, whatever they are.
  const pw = await py(d, 'exec', ['--password', 'hunter2'], 't', otherKey);
  assert.equal(pw.error, 'BadAuthenticationType');
  assert.ok(!d.daemon.logs().includes('hunter2'), 'a password reached the log');
  // The daemon's own generated key would not help them: they cannot read it.
  const door0 = door.key;
  assert.notEqual(spawnSync('runuser', ['-u', other.name, '--', 'cat', door0]).status, 0);
  assert.equal(fs.statSync(door0).mode & 0o777, 0o600);

  // Listed (no reload needed): in. A line with options authorizes nobody, and says so in the log.
  const [type, b64] = fs.readFileSync(`${otherKey}.pub`, 'utf8').split(' ');
  fs.writeFileSync(keysFile, `from="10.0.0.0/8" ${fs.readFileSync(`${door.key}.pub`, 'utf8').trim()}\n${type} ${b64} other\n`);
  const ok = asOther(otherKey);
  assert.equal(ok.status, 0, ok.stderr.toString());
  assert.equal(ok.stdout.toString(), `${door.sshd.user.name}\n`);
  assert.equal(ssh(d, 't', ['true'], undefined, door.key).status, 255, 'a key listed with options got in');
  assert.ok(await logged(d, /key options \(from=, command=, \.\.\.\) are not supported; this key is not authorized/));

  // A keys file others may write authorizes nobody: anyone could have added a key.
  fs.chmodSync(keysFile, 0o666);
  assert.equal(asOther(otherKey).status, 255);
  assert.ok(await logged(d, /writable by group or others.*no key is authorized until this is fixed/));
  fs.chmodSync(keysFile, 0o644);
  assert.equal(asOther(otherKey).status, 0);

  // Counted: by reason in the metrics, in all in sshmuxctl gateway.
  const port = Number(/"http":"127\.0\.0\.1:(\d+)"/.exec(d.daemon.logs())![1]);
  const metrics = await new Promise<string>((resolve, reject) => http.get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
    let body = '';
    res.on('data', (c) => (body += c));
    res.on('end', () => resolve(body));
  }).on('error', reject));
  assert.match(metrics, /sshmux_gateway_auth_failures_total\{reason="key_not_authorized"\} [1-9]/);
  assert.match(metrics, /sshmux_gateway_auth_failures_total\{reason="method_refused"\} [1-9]/);
  assert.ok(Number((await d.mux.status()).gateway!.authFailures) >= 4);
});

test('a client SIGKILLed while its commands run, and a channel the client closes: no session, no remote process left', async () => {
  const marker = `sleep 97${Math.floor(Math.random() * 1e5)}`;
  const child = spawn(PYTHON, [CLIENTS, 'hold', '--port', String(door.port), '--key', door.key, '--known-hosts', door.knownHosts,
    '--user', 't', '--n', '5', '--command', `exec ${marker}`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => b.toString().includes('started') && resolve());
    child.once('exit', (code) => reject(new Error(`the client exited early with ${code}`)));
  });
  assert.ok(await waitFor(() => remoteProcesses(marker).length === 5, 5000), 'the 5 remote commands are not running');
  child.kill('SIGKILL');
  assert.ok(await waitFor(async () => (await sessionsOpen(door)) === 0 && remoteProcesses(marker).length === 0, 3000),
    `${await sessionsOpen(door)} sessions open, ${remoteProcesses(marker).length} remote processes left`);

  // A channel closed while its connection stays: its command ends, the connection lives on.
  const c = `sleep 94${Math.floor(Math.random() * 1e5)}`;
  const closer = spawn(PYTHON, [CLIENTS, 'close', '--port', String(door.port), '--key', door.key, '--known-hosts', door.knownHosts,
    '--user', 't', '--command', `exec ${c}`], { stdio: ['pipe', 'pipe', 'inherit'] });
  closers.push(() => closer.kill('SIGKILL'));
  let said = '';
  closer.stdout.on('data', (b: Buffer) => (said += b));
  assert.ok(await waitFor(() => remoteProcesses(c).length === 1, 5000), 'the remote command did not start');
  closer.stdin.write('\n');
  assert.ok(await waitFor(() => said.includes('closed'), 5000));
  assert.ok(await waitFor(() => remoteProcesses(c).length === 0, 3000), 'the command outlived its closed channel');
  assert.equal((await door.mux.status()).gateway!.connections, 1);
  closer.kill('SIGKILL');

  // ssh killed outright, with a pty and without.
  for (const tty of [[], ['-tt']]) {
    const m = `sleep 96${Math.floor(Math.random() * 1e5)}`;
    const s = spawn('ssh', [...sshOptions(door), ...tty, '-p', String(door.port), 't@127.0.0.1', `exec ${m}`], { stdio: ['pipe', 'ignore', 'ignore'] });
    assert.ok(await waitFor(() => remoteProcesses(m).length === 1, 5000), 'the remote command did not start');
    s.kill('SIGKILL');
    assert.ok(await waitFor(async () => remoteProcesses(m).length === 0 && (await sessionsOpen(door)) === 0, 3000), `${m} outlived its client`);
  }
  assert.equal((await door.mux.status()).gateway!.sessions, 0);
});

test('slow readers: 8 MiB arrives whole through paramiko reading 4 KiB at a time and through ssh into a slow pipe, 3 at once, twice, under CPU load', async () => {
  const file = path.join(remoteDir, 'eight');
  fs.writeFileSync(file, randomBytes(8 * 1024 * 1024));
  fs.chmodSync(file, 0o644);
  const want = { bytes: 8 * 1024 * 1024, sha256: sha256(file) };
  const viaSsh = async (): Promise<{ bytes: number; sha256: string }> => {
    const reader = slowReader(0.5, 16 * 1024, 0.001);
    const child = spawn('ssh', [...sshOptions(door), '-p', String(door.port), 't@127.0.0.1', `cat ${file}`], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.pipe(reader.stdin as NodeJS.WritableStream);
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    return reader.result;
  };
  await underCpuLoad(async () => {
    for (let round = 0; round < 2; round++) {
      const runs = await Promise.all([
        py(door, 'slow', ['--command', `cat ${file}`, '--read-size', '4096', '--delay', '0.0005']),
        py(door, 'slow', ['--command', `cat ${file}`, '--read-size', '4096', '--delay', '0.0005']),
        viaSsh(),
      ]);
      for (const r of runs) assert.deepEqual({ bytes: r.bytes, sha256: r.sha256, status: (r as { status?: number }).status ?? 0 }, { ...want, status: 0 });
    }
  });
  // Flow control held the output at the remote writer, not in the daemon.
  assert.ok(door.daemon.peakRssMiB() < 400, `daemon peak RSS ${door.daemon.peakRssMiB()} MiB`);
});

test('the host keys: ed25519, ECDSA and RSA, each 0600, the same after a restart and a reload; a key others can read stops the start; remote addresses need gatewayAllowRemote', async () => {
  const stateDir = path.join(tempDir(), 'state');
  const first = await startDoor({ sshd: door.sshd, stateDir });
  const lines = fs.readFileSync(first.knownHosts, 'utf8');
  assert.deepEqual(lines.split('\n').map((l) => l.split(' ')[1]), ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ssh-rsa', undefined]);
  // The daemon writes the same lines into its state directory, for clients to use as they are.
  assert.equal(fs.readFileSync(path.join(stateDir, 'gateway_known_hosts'), 'utf8'), lines);
  const hostKey = path.join(stateDir, 'gateway_host_ed25519_key');
  for (const type of ['ed25519', 'ecdsa', 'rsa']) assert.equal(fs.statSync(path.join(stateDir, `gateway_host_${type}_key`)).mode & 0o777, 0o600, type);
  first.daemon.child.kill('SIGHUP');
  assert.ok(await waitFor(() => /configuration reloaded/.test(first.daemon.logs()), 5000));
  const again = JSON.parse(execFileSync(process.execPath, [SSHMUXCTL, '--socket', first.daemon.socket, '--json', 'gateway']).toString());
  assert.equal(`${again.knownHosts}\n`, lines);
  first.mux.close();
  await first.daemon.stop();
  const second = await startDoor({ sshd: door.sshd, stateDir });
  const keysOnly = (text: string): string[] => text.split('\n').map((l) => l.split(' ').slice(1).join(' '));
  assert.deepEqual(keysOnly(fs.readFileSync(second.knownHosts, 'utf8')), keysOnly(lines));
  assert.equal(ssh(second, 't', ['echo same']).stdout.toString(), 'same\n');

  fs.chmodSync(hostKey, 0o640);
  const dir = tempDir();
  const refused = spawnSync(process.execPath, [MAIN, '--socket', path.join(dir, 's.sock'), '--gateway', '127.0.0.1:0', '--state-dir', stateDir], { timeout: 10_000 });
  assert.equal(refused.status, 78);
  assert.match(refused.stderr.toString(), /gateway_host_ed25519_key has mode 640: a private key must be readable by its owner only/);
  fs.chmodSync(hostKey, 0o600);
  const remote = spawnSync(process.execPath, [MAIN, '--socket', path.join(dir, 's.sock'), '--gateway', '0.0.0.0:0', '--state-dir', stateDir], { timeout: 10_000 });
  assert.equal(remote.status, 78);
  assert.match(remote.stderr.toString(), /--gateway 0\.0\.0\.0:0 is not a loopback address.*gatewayAllowRemote/);
});

test('a Unix-socket gateway, owner-only, used by paramiko through an open socket', async () => {
  const dir = tempDir();
  const sock = path.join(dir, 'gateway.sock');
  const client = writeClientConfig(dir, [{ alias: 't', sshd: door.sshd }]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, args: ['--gateway', sock, '--state-dir', path.join(dir, 'state')] });
  const mux = await SshMux.connect({ socket: daemon.socket });
  doors.push({ ...door, daemon, mux });
  const g = (await mux.status()).gateway!;
  assert.equal(g.address, sock);
  assert.match(g.knownHosts!, /^sshmux-gateway ssh-ed25519 /);
  assert.equal(fs.statSync(sock).mode & 0o777, 0o600);
  const knownHosts = path.join(dir, 'kh');
  fs.writeFileSync(knownHosts, `${g.knownHosts}\n`);
  // Port 22: paramiko then looks the key up under the bare name, as the known_hosts line has it.
  const r = await py({ ...door, knownHosts, port: 22 }, 'exec', ['--unix', sock, '--host', 'sshmux-gateway', '--command', 'echo via unix'], 't', g.clientKey!);
  assert.equal(Buffer.from(r.stdout, 'base64').toString(), 'via unix\n');
});

test('status and metrics count front-door connections and their sessions; sshmuxctl gateway prints the address and a known_hosts line per host key', async () => {
  const m = `sleep 95${Math.floor(Math.random() * 1e5)}`;
  const holder = spawn(PYTHON, [CLIENTS, 'hold', '--port', String(door.port), '--key', door.key, '--known-hosts', door.knownHosts,
    '--user', 't', '--n', '3', '--command', `exec ${m}`], { stdio: ['ignore', 'pipe', 'ignore'] });
  closers.push(() => holder.kill('SIGKILL'));
  await once(holder.stdout, 'data');
  assert.ok(await waitFor(async () => (await door.mux.status()).gateway!.connections === 1, 5000), 'other gateway connections linger');
  assert.equal((await door.mux.status()).gateway!.sessions, 3);
  const text = execFileSync(process.execPath, [SSHMUXCTL, '--socket', door.daemon.socket, 'gateway']).toString();
  assert.match(text, new RegExp(`^address +127\\.0\\.0\\.1:${door.port}$`, 'm'));
  for (const type of ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ssh-rsa']) {
    assert.match(text, new RegExp(`^known_hosts +\\[127\\.0\\.0\\.1\\]:${door.port} ${type} AAAA`, 'm'));
  }
  assert.match(text, new RegExp(`^host keys file +${door.stateDir}/gateway_known_hosts `, 'm'));
  assert.match(text, /1 connections, 3 sessions/);
  const port = Number(/"http":"127\.0\.0\.1:(\d+)"/.exec(door.daemon.logs())![1]);
  const metrics = await new Promise<string>((resolve, reject) => http.get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
    let body = '';
    res.on('data', (c) => (body += c));
    res.on('end', () => resolve(body));
  }).on('error', reject));
  assert.match(metrics, /^sshmux_gateway_connections 1$/m);
  assert.match(metrics, /^sshmux_gateway_sessions 3$/m);
  // The status page's feed: counts, no key paths.
  const ws = new WebSocket(`ws://127.0.0.1:${port}/status`);
  const [snapshot] = await once(ws, 'message');
  ws.close();
  const g = JSON.parse(snapshot.toString()).gateway;
  assert.deepEqual({ ...g, authFailures: typeof g.authFailures }, { address: `127.0.0.1:${door.port}`, connections: 1, sessions: 3, authFailures: 'number' });
  holder.kill('SIGKILL');
  assert.ok(await waitFor(async () => (await door.mux.status()).gateway!.connections === 0 && remoteProcesses(m).length === 0, 5000));
});

test('at most maxClients front-door connections, logged in or not: a newcomer beyond is refused and logged; one closing makes room', async () => {
  const d = await startDoor({ sshd: door.sshd, config: { maxClients: 3 } });
  const idle = await Promise.all([1, 2, 3].map(() => new Promise<net.Socket>((resolve) => {
    const s = net.connect(d.port, '127.0.0.1', () => resolve(s));
  })));
  closers.push(() => idle.forEach((s) => s.destroy()));
  const refused = await py(d, 'exec', ['--command', 'echo in']);
  assert.ok(refused.error, `a fourth connection got in: ${JSON.stringify(refused)}`);
  assert.ok(await logged(d, /gateway: maxClients reached: refused a new connection/));
  idle[0].destroy();
  await waitFor(() => false, 200);
  const admitted = await py(d, 'exec', ['--command', 'echo in']);
  assert.equal(Buffer.from(admitted.stdout ?? '', 'base64').toString(), 'in\n', JSON.stringify(admitted));
});

test('the daemon stopping: a running command gets the grace period, then TERM, and its client SHUTTING_DOWN on stderr with 255', async () => {
  const d = await startDoor({ sshd: door.sshd, args: ['--grace', '1'] });
  const m = `sleep 93${Math.floor(Math.random() * 1e5)}`;
  const run = sshAsync(d, 't', [`exec ${m}`], '');
  assert.ok(await waitFor(() => remoteProcesses(m).length === 1, 5000), 'the remote command did not start');
  const stopped = d.daemon.stop();
  const r = await run;
  assert.equal(r.status, 255);
  assert.match(r.stderr.toString(), /^sshmux: SHUTTING_DOWN: sshmuxd stopped and its grace period ran out; the command was sent TERM, then KILL/);
  assert.equal(await stopped, 0);
  assert.equal(remoteProcesses(m).length, 0);
});
