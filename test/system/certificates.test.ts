// SSH certificates through every door, against real sshds that trust only a
// CA made here with ssh-keygen -s (TrustedUserCAKeys, no authorized key) and
// present a host certificate (HostCertificate), with only an
// @cert-authority line in known_hosts: exec through the SDK, the sshmux
// command and the SSH front door (OpenSSH and paramiko), sftp, a job, a
// ProxyJump pair with a certificate for each hop;
// an expired certificate, a wrong principal and a revoked CA refused with
// their codes, one login attempt at most reaching sshd for a burst of 40;
// and a certificate valid for a minute renewed on disk while commands run.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SshMux, SshMuxError } from '../../client-sdk';
import { startDaemon } from '../helpers/daemon';
import { startSshd, tempDir, type Sshd, type SshdOptions } from '../helpers/sshd';
import { makeKey, signKey, type Key } from '../helpers/certs';
import { fingerprint } from '../../daemon/ssh/known-hosts';

const SSHMUX = path.join(__dirname, '..', '..', 'cli', 'sshmux.js');
const SSHMUXCTL = path.join(__dirname, '..', '..', 'cli', 'sshmuxctl.js');
const CLIENTS = path.join(__dirname, '..', '..', '..', 'test', 'helpers', 'ssh_clients.py');
const dir = tempDir();
let userCa: Key;
let hostCa: Key;
let hostKey: Key;

before(() => {
  userCa = makeKey(dir, 'user_ca');
  hostCa = makeKey(dir, 'host_ca');
  hostKey = makeKey(dir, 'host_ed25519');
  signKey(hostCa, hostKey, { host: true, principals: ['127.0.0.1'] });
});

/** An sshd that lets in only certificates signed by userCa, presenting a host certificate signed by hostCa. */
function certSshd(opts: SshdOptions = {}): Promise<Sshd> {
  return startSshd({
    hostKey: { privatePath: hostKey.privatePath, publicLine: hostKey.line },
    hostCertificate: `${hostKey.privatePath}-cert.pub`,
    trustedUserCaKeys: [userCa.line],
    authorizedKeys: [],
    ...opts,
  });
}

/** `identity`: the IdentityFile, offered alone (IdentitiesOnly); none: the agent's keys only. */
interface HostSpec { alias: string; sshd: Sshd; identity?: string; extra?: string[] }

/** ssh_config for the hosts and a known_hosts holding only the host CA. */
function clientFiles(hosts: HostSpec[], d = tempDir()): { sshConfig: string; dir: string } {
  const knownHosts = path.join(d, 'known_hosts');
  fs.writeFileSync(knownHosts, `@cert-authority * ${hostCa.line}\n`);
  const sshConfig = path.join(d, 'ssh_config');
  fs.writeFileSync(sshConfig, hosts.map((h) => [
    `Host ${h.alias}`,
    `  HostName ${h.sshd.host}`,
    `  Port ${h.sshd.port}`,
    `  User ${h.sshd.user.name}`,
    ...(h.identity ? [`  IdentityFile ${h.identity}`, '  IdentitiesOnly yes'] : []),
    `  UserKnownHostsFile ${knownHosts}`,
    '  GlobalKnownHostsFile /dev/null',
    '  StrictHostKeyChecking yes',
    ...(h.extra ?? []).map((l) => `  ${l}`),
  ].join('\n')).join('\n\n') + '\n');
  return { sshConfig, dir: d };
}

async function daemonFor(hosts: HostSpec[], args: string[] = []): Promise<{ mux: SshMux; env: NodeJS.ProcessEnv; sshConfig: string; socket: string; dir: string }> {
  const files = clientFiles(hosts);
  const daemon = await startDaemon({ dir: files.dir, sshConfigPath: files.sshConfig, args });
  const mux = await SshMux.connect({ socket: daemon.socket });
  return { mux, env: { ...process.env, SSHMUX_SOCKET: daemon.socket }, sshConfig: files.sshConfig, socket: daemon.socket, dir: files.dir };
}

test('a user certificate beside the key (-cert.pub) and a host certificate: SDK exec, the sshmux command, sftp and a job log in by certificate', async () => {
  const sshd = await certSshd();
  const user = makeKey(tempDir(), 'id_ed25519');
  signKey(userCa, user, { principals: [sshd.user.name] });
  const { mux, env, sshConfig } = await daemonFor([{ alias: 'c', sshd, identity: user.privatePath }]);

  const r = await mux.exec('c', 'echo by certificate');
  assert.equal(r.stdout.toString(), 'by certificate\n');
  assert.match(sshd.log(), /Accepted publickey for \S+ from .* ED25519-CERT SHA256:\S+ ID sshmux-test \(serial 1\) CA ED25519/);

  const cmd = spawnSync(process.execPath, [SSHMUX, 'c', 'echo', 'via sshmux'], { env, timeout: 30_000 });
  assert.equal(cmd.stdout.toString(), 'via sshmux\n', cmd.stderr.toString());
  // OpenSSH's own ssh, with the same files, agrees that this is how to log in.
  const ssh = spawnSync('ssh', ['-F', sshConfig, '-o', 'BatchMode=yes', 'c', 'echo', 'via ssh'], { timeout: 30_000 });
  assert.equal(ssh.stdout.toString(), 'via ssh\n', ssh.stderr.toString());

  const local = path.join(tempDir(), 'up.txt');
  fs.writeFileSync(local, 'certified bytes\n');
  const remote = path.join(tempDir(), 'remote.txt');
  fs.chmodSync(path.dirname(remote), 0o777);
  await mux.upload('c', local, remote).done;
  assert.equal(fs.readFileSync(remote, 'utf8'), 'certified bytes\n');

  const job = await mux.jobs.submit('c', 'echo job by certificate');
  const ended = await mux.jobs.wait(job.id, { timeoutMs: 30_000 });
  assert.equal(ended.state, 'exited');
  await mux.jobs.remove(job.id);
  assert.equal(sshd.failedLogins(), 0);
  mux.close();
});

test('the SSH front door: OpenSSH and paramiko reach a host the daemon logs into by certificate', async () => {
  const sshd = await certSshd();
  const user = makeKey(tempDir(), 'id_ed25519');
  signKey(userCa, user, { principals: [sshd.user.name], id: 'door' });
  const stateDir = path.join(tempDir(), 'state');
  const { mux, socket, dir: d } = await daemonFor([{ alias: 'c', sshd, identity: user.privatePath }], ['--gateway', '127.0.0.1:0', '--state-dir', stateDir]);
  const info = JSON.parse(execFileSync(process.execPath, [SSHMUXCTL, '--socket', socket, '--json', 'gateway']).toString());
  const knownHosts = path.join(d, 'gateway_known_hosts');
  fs.writeFileSync(knownHosts, `${info.knownHosts}\n`);
  const port = /:(\d+)$/.exec(info.address)![1];
  const ssh = spawnSync('ssh', ['-F', '/dev/null', '-i', info.clientKey, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-p', port, 'c@127.0.0.1', 'echo through the door'],
  { timeout: 60_000 });
  assert.equal(ssh.stdout.toString(), 'through the door\n', ssh.stderr.toString());
  const py = spawnSync('/usr/bin/python3', [CLIENTS, 'exec', '--port', port, '--key', info.clientKey, '--known-hosts', knownHosts,
    '--user', 'c', '--command', 'echo paramiko'], { timeout: 60_000 });
  const r = JSON.parse(py.stdout.toString());
  assert.equal(Buffer.from(r.stdout, 'base64').toString(), 'paramiko\n', py.stdout.toString() + py.stderr.toString());
  assert.match(sshd.log(), /Accepted publickey for \S+ from .* ED25519-CERT .* ID door/);
  mux.close();
});

test('CertificateFile, and an RSA key whose certificate is offered as rsa-sha2-*-cert-v01@openssh.com', async () => {
  const sshd = await certSshd();
  const d = tempDir();
  const rsa = makeKey(d, 'id_rsa', 'rsa', 2048);
  const cert = signKey(userCa, rsa, { principals: [sshd.user.name], out: path.join(d, 'my-cert.pub') });
  const { mux, env } = await daemonFor([{ alias: 'r', sshd, identity: rsa.privatePath, extra: [`CertificateFile ${cert.path}`, 'HostKeyAlias 127.0.0.1'] }]);
  assert.equal((await mux.exec('r', 'echo rsa cert')).stdout.toString(), 'rsa cert\n');
  assert.match(sshd.log(), /Accepted publickey for \S+ from .* RSA-CERT SHA256:/);
  // sshmux -G prints them as ssh -G does.
  const g = spawnSync(process.execPath, [SSHMUX, '-G', 'r'], { env, timeout: 30_000 }).stdout.toString();
  assert.match(g, new RegExp(`^certificatefile ${cert.path}$`, 'm'));
  assert.match(g, /^hostkeyalias 127\.0\.0\.1$/m);
  // -o CertificateFile per call, routed to the daemon as IdentityFile is, and offered first.
  const other = signKey(userCa, rsa, { principals: [sshd.user.name], id: 'per-call', out: path.join(d, 'per-call-cert.pub') });
  const perCall = spawnSync(process.execPath, [SSHMUX, '-o', `CertificateFile=${other.path}`, 'r', 'echo', 'per call'], { env, timeout: 30_000 });
  assert.equal(perCall.stdout.toString(), 'per call\n', perCall.stderr.toString());
  assert.match(sshd.log(), /ID per-call/);
  mux.close();
});

/** A real ssh-agent on a socket of its own, in the foreground (-D) so that it goes when the test ends. */
function startAgent(): { socket: string; add(key: string): void; stop(): void } {
  const socket = path.join(tempDir(), 'agent.sock');
  const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(socket)) {
    if (Date.now() > deadline) throw new Error('ssh-agent did not create its socket within 10 s');
    spawnSync('sleep', ['0.05']);
  }
  return {
    socket,
    // ssh-add loads KEY-cert.pub beside KEY too, as users' agents hold them.
    add: (key) => execFileSync('ssh-add', [key], { env: { ...process.env, SSH_AUTH_SOCK: socket }, stdio: 'pipe' }),
    stop: () => agent.kill(),
  };
}

test('the agent: a certificate it holds is offered before its keys; a CertificateFile whose key only the agent holds is signed by the agent', async () => {
  const sshd = await certSshd();
  const agent = startAgent();
  try {
    // The agent holds a key and its certificate (added together, as ssh-add does).
    const held = makeKey(tempDir(), 'id_held');
    signKey(userCa, held, { principals: [sshd.user.name], id: 'in-agent' });
    agent.add(held.privatePath);
    // And a plain key whose certificate is only on disk, as CertificateFile.
    const keyOnly = makeKey(tempDir(), 'id_key_only');
    agent.add(keyOnly.privatePath);
    const onDisk = signKey(userCa, keyOnly, { principals: [sshd.user.name], id: 'file-by-agent', out: path.join(tempDir(), 'key-only-cert.pub') });
    const files = clientFiles([
      { alias: 'a', sshd, extra: [`IdentityAgent ${agent.socket}`] },
      { alias: 'f', sshd, extra: [`IdentityAgent ${agent.socket}`, `CertificateFile ${onDisk.path}`] },
    ]);
    const daemon = await startDaemon({ dir: files.dir, sshConfigPath: files.sshConfig });
    const mux = await SshMux.connect({ socket: daemon.socket });
    assert.equal((await mux.exec('a', 'echo agent cert')).stdout.toString(), 'agent cert\n');
    assert.match(sshd.log(), /Accepted publickey for \S+ from .* ED25519-CERT .* ID in-agent/);
    assert.equal((await mux.exec('f', 'echo file cert')).stdout.toString(), 'file cert\n');
    assert.match(sshd.log(), /Accepted publickey for \S+ from .* ED25519-CERT .* ID file-by-agent/);
    // sshd trusts no plain key: nothing was refused on the way.
    assert.equal(sshd.failedLogins(), 0);
    mux.close();
  } finally {
    agent.stop();
  }
});

test('ProxyJump: a certificate for the jump host and another for the node', async () => {
  const [jump, node] = await Promise.all([certSshd(), certSshd()]);
  const d = tempDir();
  const jumpKey = makeKey(d, 'jump_key');
  const nodeKey = makeKey(d, 'node_key');
  signKey(userCa, jumpKey, { principals: [jump.user.name], id: 'for-jump' });
  signKey(userCa, nodeKey, { principals: [node.user.name], id: 'for-node' });
  const { mux } = await daemonFor([
    { alias: 'bastion', sshd: jump, identity: jumpKey.privatePath },
    { alias: 'inner', sshd: node, identity: nodeKey.privatePath, extra: ['ProxyJump bastion'] },
  ]);
  assert.equal((await mux.exec('inner', 'echo behind the bastion')).stdout.toString(), 'behind the bastion\n');
  assert.match(jump.log(), /ID for-jump/);
  assert.match(node.log(), /ID for-node/);
  mux.close();
});

async function burst(mux: SshMux, host: string, n: number): Promise<SshMuxError[]> {
  const results = await Promise.allSettled(Array.from({ length: n }, () => mux.exec(host, 'true')));
  return results.map((r) => (r.status === 'rejected' ? r.reason : new SshMuxError('CODE_UNSPECIFIED', 'the call succeeded')));
}

test('expired, wrong principal, revoked CA: each refused with its code and a message saying what to do, at most one login attempt reaching sshd for 40 requests', async () => {
  const otherCa = makeKey(dir, 'revoked_ca');
  const sshd = await certSshd({ trustedUserCaKeys: [userCa.line, otherCa.line], revokedKeys: [otherCa.line] });
  const d = tempDir();
  const expiredKey = makeKey(d, 'expired');
  signKey(userCa, expiredKey, { principals: [sshd.user.name], validity: '20200101:20200102' });
  const wrongKey = makeKey(d, 'wrong');
  signKey(userCa, wrongKey, { principals: ['somebody-else'] });
  const revokedKey = makeKey(d, 'revoked');
  signKey(otherCa, revokedKey, { principals: [sshd.user.name] });
  const { mux } = await daemonFor([
    { alias: 'expired', sshd, identity: expiredKey.privatePath },
    { alias: 'wrong', sshd, identity: wrongKey.privatePath },
    { alias: 'revoked', sshd, identity: revokedKey.privatePath },
  ]);
  const expect: Array<[string, string, RegExp]> = [
    ['expired', 'CERTIFICATE_INVALID', /expired \(valid from 2020-01-01T00:00:00Z to 2020-01-02T00:00:00Z\).*Renew the certificate/],
    ['wrong', 'CERTIFICATE_INVALID', /principals somebody-else.*does not list \S+ among its principals.*-n /],
    ['revoked', 'AUTH_FAILED', /certificates offered: certificate .*revoked\.?-cert\.pub.*RevokedKeys/],
  ];
  for (const [host, code, message] of expect) {
    const before = sshd.failedLogins();
    const errors = await burst(mux, host, 40);
    for (const e of errors) {
      assert.equal(e.code, code, `${host}: ${e.code}: ${e.message}`);
      assert.match(e.message, message);
    }
    // sshd logs the failed login when the connection closes, a moment after the callers heard: wait for it (bounded), then a little more for any second one.
    for (const until = Date.now() + 5000; sshd.failedLogins() === before && Date.now() < until;) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 500));
    const attempts = sshd.failedLogins() - before;
    // One: the daemon cannot know the server's verdict on the key (the plain key, for the expired certificate) before asking.
    assert.equal(attempts, 1, `${host}: ${attempts} login attempts reached sshd for one burst`);
    // The expired certificate itself never reaches sshd; its plain key is still offered, as ssh offers it.
    if (host === 'expired') {
      assert.ok(!sshd.log().includes(`ED25519-CERT ${fingerprint(expiredKey.blob)}`), 'the expired certificate reached sshd');
      assert.doesNotMatch(sshd.log(), /Certificate invalid: expired/);
    }
  }
  mux.close();
});

test('renewal: a certificate valid for a minute is replaced on disk while commands run; new connections log in with the new one, running ones are untouched', async () => {
  const sshd = await certSshd();
  const d = tempDir();
  const key = makeKey(d, 'id_ed25519');
  signKey(userCa, key, { principals: [sshd.user.name], validity: '-1m:+1m', id: 'first', serial: 1 });
  const { mux } = await daemonFor([{ alias: 'renew', sshd, identity: key.privatePath, extra: ['ServerAliveInterval 1'] }]);
  // A long command on the first certificate's connection.
  const running = mux.exec('renew', 'sleep 4; echo still here');
  await new Promise((r) => setTimeout(r, 500));
  assert.match(sshd.log(), /ID first/);
  // Renewed on disk, as a cron job or an agent does.
  signKey(userCa, key, { principals: [sshd.user.name], validity: '-1m:+1h', id: 'second', serial: 2 });
  // Enough work to need new connections (MaxSessions 10 per connection, one taken).
  const more = await Promise.all(Array.from({ length: 25 }, (_, i) => mux.exec('renew', `sleep 1; echo ${i}`)));
  assert.ok(more.every((r, i) => r.stdout.toString() === `${i}\n`));
  assert.match(sshd.log(), /ID second/, 'no new connection used the renewed certificate');
  assert.equal((await running).stdout.toString(), 'still here\n');
  assert.equal(sshd.failedLogins(), 0);
  mux.close();
});
