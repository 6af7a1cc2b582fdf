// known_hosts checking: the daemon's only defence against a man in the
// middle, since ssh2 accepts any host key by itself. Keys come from
// ssh-keygen and hashed lines from `ssh-keygen -H`, so the formats are
// OpenSSH's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fingerprint, knownKeyTypes, preferredHostKeyAlgorithms, verifyHostKey, type HostKeyCheck } from '../../daemon/ssh/known-hosts';
import { tempDir } from '../helpers/sshd';

function key(dir: string, name: string, type = 'ed25519'): { line: string; blob: Buffer } {
  const p = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', '', '-f', p]);
  const line = fs.readFileSync(`${p}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  return { line, blob: Buffer.from(line.split(' ')[1], 'base64') };
}

const dir = tempDir();
const a = key(dir, 'a');
const b = key(dir, 'b');
const rsa = key(dir, 'r', 'rsa');

function check(file: string, over: Partial<HostKeyCheck> = {}): HostKeyCheck {
  return { host: 'web1', port: 22, files: [file], strict: 'yes', ...over };
}

function write(name: string, text: string): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
}

test('a known key passes; port 22 is filed by name, others as [host]:port', async () => {
  const f = write('kh1', `web1 ${a.line}\n[web1]:2222 ${b.line}\n`);
  assert.deepEqual(await verifyHostKey(check(f), a.blob), { ok: true, added: false });
  assert.deepEqual(await verifyHostKey(check(f, { port: 2222 }), b.blob), { ok: true, added: false });
  const wrongPort = await verifyHostKey(check(f, { port: 2222 }), a.blob);
  assert.equal(wrongPort.ok, false);
});

test('hashed names (ssh-keygen -H) match, comma lists, wildcards and negation', async () => {
  const f = write('kh2', `web1,[web1]:2200 ${a.line}\n*.example.com,!evil.example.com ${b.line}\n`);
  execFileSync('ssh-keygen', ['-q', '-H', '-f', f]);
  assert.match(fs.readFileSync(f, 'utf8'), /^\|1\|/m);
  assert.equal((await verifyHostKey(check(f), a.blob)).ok, true);
  assert.equal((await verifyHostKey(check(f, { port: 2200 }), a.blob)).ok, true);
  // ssh-keygen -H leaves wildcard lines unhashed; they still work.
  assert.equal((await verifyHostKey(check(f, { host: 'db.example.com' }), b.blob)).ok, true);
  const negated = await verifyHostKey(check(f, { host: 'evil.example.com' }), b.blob);
  assert.equal(negated.ok, false);
  assert.equal(!negated.ok && negated.code, 'HOST_KEY_UNKNOWN');
});

test('a changed key is HOST_KEY_MISMATCH naming file, line and the ssh-keygen -R to run', async () => {
  const f = write('kh3', `# comment\nother ${b.line}\nweb1 ${b.line}\n`);
  const v = await verifyHostKey(check(f), a.blob);
  assert.equal(v.ok, false);
  assert.ok(!v.ok);
  assert.equal(v.code, 'HOST_KEY_MISMATCH');
  assert.ok(v.message.includes(`${f}:3`), v.message);
  assert.ok(v.message.includes(fingerprint(a.blob)));
  assert.match(v.message, /ssh-keygen -R 'web1'/);
  // StrictHostKeyChecking no connects anyway, as ssh does, with the warning.
  const lax = await verifyHostKey(check(f, { strict: 'no' }), a.blob);
  assert.equal(lax.ok, true);
  assert.ok(lax.ok && /HAS CHANGED/.test(lax.warning ?? ''));
  // accept-new never accepts a changed key.
  assert.equal((await verifyHostKey(check(f, { strict: 'accept-new', addTo: f }), a.blob)).ok, false);
});

test('@revoked refuses the key whatever StrictHostKeyChecking says; @cert-authority lines are ignored', async () => {
  const f = write('kh4', `@revoked * ${a.line}\n@cert-authority *.example.com ${b.line}\nweb1 ${a.line}\n`);
  for (const strict of ['yes', 'accept-new', 'no'] as const) {
    const v = await verifyHostKey(check(f, { strict, addTo: f }), a.blob);
    assert.equal(!v.ok && v.code, 'HOST_KEY_REVOKED');
  }
  const ca = await verifyHostKey(check(f, { host: 'x.example.com' }), b.blob);
  assert.equal(!ca.ok && ca.code, 'HOST_KEY_UNKNOWN');
});

test('unknown: refused under yes with the fingerprint; accept-new appends once, concurrently safe', async () => {
  const f = path.join(dir, 'sub', 'kh5');
  const refused = await verifyHostKey(check(f), a.blob);
  assert.equal(!refused.ok && refused.code, 'HOST_KEY_UNKNOWN');
  assert.ok(!refused.ok && refused.message.includes(fingerprint(a.blob)));
  assert.equal(fs.existsSync(f), false);

  const results = await Promise.all(Array.from({ length: 5 }, () =>
    verifyHostKey(check(f, { strict: 'accept-new', addTo: f, port: 2022 }), a.blob)));
  assert.ok(results.every((r) => r.ok));
  assert.equal(fs.readFileSync(f, 'utf8'), `[web1]:2022 ${a.line}\n`);
  assert.equal(fs.statSync(f).mode & 0o777, 0o600);
  assert.deepEqual(await verifyHostKey(check(f, { port: 2022 }), a.blob), { ok: true, added: false });
});

test('known key types steer negotiation: rsa offers the SHA-2 signatures first', async () => {
  const f = write('kh6', `web1 ${rsa.line}\nweb1 ${a.line}\n@revoked web1 ${b.line}\n`);
  const types = await knownKeyTypes({ host: 'web1', port: 22, files: [f] });
  assert.deepEqual(types.sort(), ['ssh-ed25519', 'ssh-rsa']);
  assert.deepEqual(preferredHostKeyAlgorithms(['ssh-rsa']), ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
  assert.equal(preferredHostKeyAlgorithms([]), undefined);
  assert.equal(preferredHostKeyAlgorithms(['sk-ssh-ed25519@openssh.com']), undefined);
});

test('fingerprints are what ssh-keygen -l prints', () => {
  const p = path.join(dir, 'a.pub');
  const printed = execFileSync('ssh-keygen', ['-l', '-f', p]).toString().split(' ')[1];
  assert.equal(fingerprint(a.blob), printed);
});
