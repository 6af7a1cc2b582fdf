// The front door against clients that each know only some key types: OpenSSH
// limited to one host key algorithm at a time (as FIPS-mode clients are),
// Debian's JSch 0.1.54 (no ed25519, no rsa-sha2-*, PEM keys only: Jenkins
// and many Java programs) and Go's golang.org/x/crypto/ssh (20 sessions at
// once on one connection). Each verifies the door's host key strictly
// against the known_hosts file the daemon writes into its state directory,
// and logs in with a key of another type, listed in gatewayAuthorizedKeys.
// The Java and Go clients are built once per run, into a temp dir, offline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cleanupAll, startSshd, tempDir, writeClientConfig, type Sshd } from '../helpers/sshd';
import { startDaemon, waitFor, type DaemonProc } from '../helpers/daemon';

const SSHMUXCTL = path.join(__dirname, '..', '..', 'cli', 'sshmuxctl.js');
const HELPERS = path.join(__dirname, '..', '..', '..', 'test', 'helpers');
const JSCH_JAR = '/usr/share/java/jsch.jar';
/** Debian's golang-golang-x-crypto-dev, as a GOPATH. */
const GOPATH = '/usr/share/gocode';

let sshd: Sshd;
let daemon: DaemonProc;
let port: number;
/** The daemon's own gateway_known_hosts: a line per host key. */
let knownHosts: string;
/** Client keys by type, all listed in gatewayAuthorizedKeys; PEM where JSch reads them. */
const keys: Record<'ed25519' | 'ecdsa256' | 'ecdsa384' | 'ecdsa521' | 'rsa', string> = { ed25519: '', ecdsa256: '', ecdsa384: '', ecdsa521: '', rsa: '' };
let build: string;

before(async () => {
  sshd = await startSshd();
  const dir = tempDir();
  build = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const specs: Record<keyof typeof keys, string[]> = {
    ed25519: ['-t', 'ed25519'], ecdsa256: ['-t', 'ecdsa', '-b', '256', '-m', 'PEM'], ecdsa384: ['-t', 'ecdsa', '-b', '384'],
    ecdsa521: ['-t', 'ecdsa', '-b', '521'], rsa: ['-t', 'rsa', '-b', '2048', '-m', 'PEM'],
  };
  const authorized: string[] = [];
  for (const [name, spec] of Object.entries(specs) as Array<[keyof typeof keys, string[]]>) {
    keys[name] = path.join(dir, `id_${name}`);
    execFileSync('ssh-keygen', ['-q', ...spec, '-N', '', '-C', name, '-f', keys[name]]);
    authorized.push(fs.readFileSync(`${keys[name]}.pub`, 'utf8').trim());
  }
  const authorizedKeys = path.join(dir, 'gateway_authorized_keys');
  fs.writeFileSync(authorizedKeys, `${authorized.join('\n')}\n`, { mode: 0o644 });
  const stateDir = path.join(dir, 'state');
  daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, config: { gatewayAuthorizedKeys: authorizedKeys },
    args: ['--gateway', '127.0.0.1:0', '--state-dir', stateDir] });
  const info = JSON.parse(execFileSync(process.execPath, [SSHMUXCTL, '--socket', daemon.socket, '--json', 'gateway']).toString());
  port = Number(/:(\d+)$/.exec(info.address)![1]);
  knownHosts = info.knownHostsFile;
  assert.equal(knownHosts, path.join(stateDir, 'gateway_known_hosts'));
});

after(async () => {
  await daemon?.stop();
  await cleanupAll();
});

function ssh(args: string[], key = keys.ed25519): ReturnType<typeof spawnSync> {
  return spawnSync('ssh', ['-F', '/dev/null', '-i', key, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-p', String(port), ...args],
  { encoding: 'utf8', timeout: 30_000 });
}

test('OpenSSH limited to one host key algorithm, each in turn, and to ECDSA and RSA as FIPS-mode clients are: the door offers it and the key verifies', () => {
  for (const algorithms of ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'rsa-sha2-512', 'rsa-sha2-256', 'ecdsa-sha2-nistp256,rsa-sha2-256']) {
    const r = ssh(['-v', '-o', `HostKeyAlgorithms=${algorithms}`, 't@127.0.0.1', 'echo in']);
    assert.equal(r.status, 0, `${algorithms}: ${r.stderr}`);
    assert.equal(r.stdout, 'in\n');
    assert.match(r.stderr as string, new RegExp(`kex: host key algorithm: ${algorithms.split(',')[0]}\\r?$`, 'm'));
    assert.match(r.stderr as string, /Host '\[127\.0\.0\.1\]:\d+' is known and matches the \S+ host key/);
  }
});


test('SHA-1 ssh-rsa is not offered as a host key algorithm', () => {
  const r = ssh(['-o', 'HostKeyAlgorithms=ssh-rsa', 't@127.0.0.1', 'true']);
  assert.equal(r.status, 255);
  assert.match(r.stderr as string, /no matching host key type found\. Their offer: ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256\r?$/m);
});

test('client keys of each type log in (ed25519, ECDSA P-256/384/521, RSA under rsa-sha2-256); RSA signing with SHA-1 is not offered', async () => {
  for (const [name, key] of Object.entries(keys)) {
    const r = ssh(['t@127.0.0.1', `echo ${name}`], key);
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    assert.equal(r.stdout, `${name}\n`);
  }
  const sha256 = ssh(['-o', 'PubkeyAcceptedAlgorithms=rsa-sha2-256', 't@127.0.0.1', 'echo sha2'], keys.rsa);
  assert.equal(sha256.status, 0, sha256.stderr as string);
  // server-sig-algs offers no SHA-1, so OpenSSH does not even try it (JSch does, below).
  const sha1 = ssh(['-o', 'PubkeyAcceptedAlgorithms=ssh-rsa', 't@127.0.0.1', 'true'], keys.rsa);
  assert.equal(sha1.status, 255);
  assert.match(sha1.stderr as string, /Permission denied \(publickey\)/);
});

test('an RSA client key under rsa-sha2-512 only', () => {
  const r = ssh(['-o', 'PubkeyAcceptedAlgorithms=rsa-sha2-512', 't@127.0.0.1', 'echo sha2'], keys.rsa);
  assert.equal(r.status, 0, r.stderr as string);
});

test('JSch 0.1.54 (Debian\'s libjsch-java): an ECDSA host key and an ECDSA client key, a command\'s output and exit status; an RSA key (which JSch signs with SHA-1) refused, and logged why', async () => {
  const compiled = spawnSync('javac', ['-cp', JSCH_JAR, '-d', build, path.join(HELPERS, 'JschClient.java')], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(compiled.status, 0, compiled.stderr);
  // One JVM for every case: default algorithms; ECDSA only, as a Java client pinned to it; the RSA key.
  const r = spawnSync('java', ['-cp', `${build}:${JSCH_JAR}`, 'JschClient', String(port), knownHosts, 't', 'echo out; echo err >&2; exit 3',
    keys.ecdsa256, `${keys.ecdsa256},ecdsa-sha2-nistp256`, keys.rsa], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  const [defaults, ecdsaOnly, rsa] = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  for (const c of [defaults, ecdsaOnly]) {
    assert.equal(c.error, undefined, c.error);
    assert.equal(Buffer.from(c.stdout, 'base64').toString(), 'out\n');
    assert.equal(Buffer.from(c.stderr, 'base64').toString(), 'err\n');
    assert.equal(c.exit, 3);
  }
  assert.equal(ecdsaOnly.hostKey, 'ecdsa-sha2-nistp256');
  // JSch 0.1.54 asks for ssh-rsa first; the door does not offer SHA-1, so it gets the ECDSA key.
  assert.equal(defaults.hostKey, 'ecdsa-sha2-nistp256');
  assert.equal(rsa.error, 'Auth fail');
  assert.ok(await waitFor(() => /"reason":"sha1_signature".*ssh-rsa signatures \(SHA-1\) are refused/.test(daemon.logs()), 5000),
    'the refusal of a SHA-1 signature was not logged with its reason');
});

let goClient: string | undefined;

/** Go's x/crypto/ssh client, built once: offline, from Debian's source (GOPATH mode). */
function goSsh(args: string[]): ReturnType<typeof spawnSync> {
  if (!goClient) {
    const src = path.join(build, 'src');
    fs.mkdirSync(src);
    fs.copyFileSync(path.join(HELPERS, 'go_ssh_client.go'), path.join(src, 'main.go'));
    const binary = path.join(build, 'go-ssh-client');
    const built = spawnSync('go', ['build', '-o', binary, 'main.go'], {
      cwd: src, encoding: 'utf8', timeout: 120_000,
      env: { ...process.env, GO111MODULE: 'off', GOPATH, GOCACHE: path.join(build, 'gocache'), GOFLAGS: '', GOPROXY: 'off' },
    });
    assert.equal(built.status, 0, built.stderr);
    goClient = binary;
  }
  return spawnSync(goClient, ['-port', String(port), '-known-hosts', knownHosts, '-user', 't', ...args], { encoding: 'utf8', timeout: 60_000 });
}

/** Runs `sessions` sessions at once on one Go connection; each must print its number and exit with it. */
function goSessions(algorithm: string, key: keyof typeof keys, sessions: number): void {
  const r = goSsh(['-key', keys[key], '-host-key-algorithms', algorithm, '-sessions', String(sessions), '-command', 'sleep 0.2; echo %d; exit %d']);
  assert.equal(r.status, 0, r.stderr as string);
  const report = JSON.parse(r.stdout as string);
  assert.equal(report.error, undefined, `${algorithm}, ${key} key: ${report.error}`);
  assert.equal(report.hostKey, algorithm.startsWith('rsa-') ? 'ssh-rsa' : algorithm);
  assert.deepEqual(report.sessions, Array.from({ length: sessions }, (_, i) => ({ stdout: `${i}\n`, exit: i })), `${algorithm}, ${key} key`);
}

test('Go\'s x/crypto/ssh: 20 sessions at once on one connection; each host key algorithm; ed25519 and ECDSA client keys', () => {
  goSessions('ssh-ed25519', 'ed25519', 20);
  goSessions('ecdsa-sha2-nistp256', 'ecdsa384', 4);
  goSessions('rsa-sha2-256', 'ecdsa256', 4);
  goSessions('rsa-sha2-512', 'ecdsa521', 4);
});

test('Go\'s x/crypto/ssh with an RSA client key (rsa-sha2-256)', () => {
  goSessions('ssh-ed25519', 'rsa', 2);
});
