// Unknown host key, changed host key, wrong client key: clear typed errors,
// and no retry storm against the server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SshMux, SshMuxError } from '../../client-sdk';
import { startSshd, type ClientConfig, type Sshd } from '../helpers/sshd';
import { startWorld } from '../helpers/world';


function newKey(dir: string, name: string): { privatePath: string; publicLine: string } {
  const privatePath = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', privatePath]);
  return { privatePath, publicLine: fs.readFileSync(`${privatePath}.pub`, 'utf8').split(' ').slice(0, 2).join(' ') };
}

async function setup(sshd: Sshd, configText: (c: ClientConfig) => string | undefined, knownHost = true) {
  const { dir, client, daemon, mux } = await startWorld({ sshd, sshConfig: configText, knownHost });
  return { dir, client, daemon, mux };
}

async function burst(mux: SshMux, n: number): Promise<SshMuxError[]> {
  const results = await Promise.allSettled(Array.from({ length: n }, () => mux.exec('t', 'true')));
  return results.map((r) => (r.status === 'rejected' ? r.reason : new SshMuxError('CODE_UNSPECIFIED', 'the call succeeded')));
}

test('unknown host key: HOST_KEY_UNKNOWN with the fingerprint, one handshake for a burst', async () => {
  const sshd = await startSshd();
  const { mux } = await setup(sshd, () => undefined, false);
  const errors = await burst(mux, 20);
  for (const e of errors) {
    assert.equal(e.code, 'HOST_KEY_UNKNOWN');
    assert.match(e.message, /SHA256:/);
  }
  const host = (await mux.status()).hosts![0];
  assert.ok(Number(host.handshakes!.failed) <= 2, `${host.handshakes!.failed} handshakes for one burst`);
  mux.close();
});

test('changed host key: HOST_KEY_MISMATCH naming the known_hosts line, never retried', async () => {
  const sshd = await startSshd();
  const { client, mux, dir } = await setup(sshd, () => undefined);
  const other = newKey(dir, 'other_host_key');
  fs.writeFileSync(client.knownHostsPath, `[127.0.0.1]:${sshd.port} ${other.publicLine}\n`);
  const errors = await burst(mux, 20);
  for (const e of errors) {
    assert.equal(e.code, 'HOST_KEY_MISMATCH');
    assert.match(e.message, new RegExp(client.knownHostsPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  }
  const host = (await mux.status()).hosts![0];
  assert.ok(Number(host.handshakes!.failed) <= 2);
  assert.equal(sshd.logins(), 0);
  mux.close();
});

test('wrong client key: AUTH_FAILED naming the user, no retry storm', async () => {
  const sshd = await startSshd();
  let keyDir = '';
  const { mux } = await setup(sshd, (c) => {
    keyDir = c.dir;
    const wrong = newKey(c.dir, 'not_authorized');
    return fs.readFileSync(c.sshConfigPath, 'utf8').replace(/IdentityFile .*/, `IdentityFile ${wrong.privatePath}`);
  });
  assert.ok(keyDir);
  const errors = await burst(mux, 20);
  for (const e of errors) {
    assert.equal(e.code, 'AUTH_FAILED');
    assert.match(e.message, new RegExp(sshd.user.name));
  }
  const host = (await mux.status()).hosts![0];
  assert.ok(Number(host.handshakes!.failed) <= 2);
  mux.close();
});

test('connection refused: REFUSED after a few attempts, within seconds', async () => {
  const sshd = await startSshd();
  const { mux } = await setup(sshd, () => undefined);
  await sshd.stop();
  const started = Date.now();
  await assert.rejects(mux.exec('t', 'true'), (e: SshMuxError) => e.code === 'REFUSED' && /refused/.test(e.message));
  assert.ok(Date.now() - started < 10_000);
  mux.close();
});

const SSHMUX = path.join(__dirname, '..', '..', 'cli', 'sshmux.js');

test('StrictHostKeyChecking no with a changed host key: the command runs, and the warning reaches the log, every caller and the wrapper\'s stderr (not with -q)', async () => {
  const sshd = await startSshd();
  const { client, mux, dir, daemon } = await setup(sshd, (c) =>
    fs.readFileSync(c.sshConfigPath, 'utf8').replace('StrictHostKeyChecking yes', 'StrictHostKeyChecking no'));
  const other = newKey(dir, 'other_host_key');
  fs.writeFileSync(client.knownHostsPath, `[127.0.0.1]:${sshd.port} ${other.publicLine}\n`);
  const first = await mux.exec('t', 'echo ran');
  assert.equal(first.stdout.toString(), 'ran\n');
  assert.equal(first.warnings.length, 1);
  assert.match(first.warnings[0], /REMOTE HOST IDENTIFICATION HAS CHANGED/);
  // The next call rides the same connection: as ssh warns on every connection, every caller is told.
  const second = await mux.exec('t', 'true');
  assert.match(second.warnings.join('\n'), /REMOTE HOST IDENTIFICATION HAS CHANGED/);
  const events: string[] = [];
  const proc = mux.spawn('t', 'true', { stdin: false });
  proc.on('warning', (w: string) => events.push(w));
  await proc.exited;
  assert.equal(events.length, 1);
  assert.equal(sshd.logins(), 1);
  assert.match(daemon.logs(), /host key warning.*REMOTE HOST IDENTIFICATION HAS CHANGED|REMOTE HOST IDENTIFICATION HAS CHANGED.*host key warning/);
  const env = { ...process.env, SSHMUX_SOCKET: daemon.socket };
  const loud = spawnSync(process.execPath, [SSHMUX, 't', 'echo ok'], { env, timeout: 30_000 });
  assert.equal(loud.stdout.toString(), 'ok\n');
  assert.match(loud.stderr.toString(), /^Warning: REMOTE HOST IDENTIFICATION HAS CHANGED/);
  const quiet = spawnSync(process.execPath, [SSHMUX, '-q', 't', 'echo ok'], { env, timeout: 30_000 });
  assert.equal(quiet.stderr.toString(), '');
  // The known key was not replaced: ssh does not either.
  assert.equal(fs.readFileSync(client.knownHostsPath, 'utf8'), `[127.0.0.1]:${sshd.port} ${other.publicLine}\n`);
  mux.close();
});

test('StrictHostKeyChecking accept-new: the first caller is told the key was permanently added, later ones are not', async () => {
  const sshd = await startSshd();
  const { client, mux } = await setup(sshd, (c) =>
    fs.readFileSync(c.sshConfigPath, 'utf8').replace('StrictHostKeyChecking yes', 'StrictHostKeyChecking accept-new'), false);
  const first = await mux.exec('t', 'true');
  assert.equal(first.code, 0);
  assert.equal(first.warnings.length, 1);
  assert.match(first.warnings[0], /Permanently added '\[127\.0\.0\.1\]:\d+' \(ED25519\) to the list of known hosts/);
  assert.match(fs.readFileSync(client.knownHostsPath, 'utf8'), new RegExp(`\\[127\\.0\\.0\\.1\\]:${sshd.port} ssh-ed25519 `));
  const second = await mux.exec('t', 'true');
  assert.deepEqual(second.warnings, []);
  mux.close();
});
