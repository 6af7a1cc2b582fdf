// known_hosts checking: the daemon's only defence against a man in the
// middle, since ssh2 accepts any host key by itself. Keys, certificates and
// hashed lines come from ssh-keygen, so the formats are OpenSSH's own; the
// decisions are sshconnect.c's check_host_key (test/system/known-hosts-
// openssh.test.ts compares them with ssh's own against a real sshd).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  HOST_KEY_ALGORITHMS, fingerprint, hostKeyAlgorithms, verifyHostKey, type HostKeyCheck,
} from '../../daemon/ssh/known-hosts';
import { tempDir } from '../helpers/sshd';
import { makeKey, signKey } from '../helpers/certs';

const dir = tempDir();
const a = makeKey(dir, 'a');
const b = makeKey(dir, 'b');
const rsa = makeKey(dir, 'r', 'rsa', 2048);
const ca = makeKey(dir, 'ca');
const otherCa = makeKey(dir, 'ca2');
const hostKey = makeKey(dir, 'h');
const hostCert = signKey(ca, hostKey, { host: true, principals: ['web1', 'web1.example.com'], out: path.join(dir, 'h-web1-cert.pub') });
const NOW = Math.floor(Date.now() / 1000);

function check(file: string, over: Partial<HostKeyCheck> = {}): HostKeyCheck {
  return { hostname: 'web1', port: 22, userFiles: [file], globalFiles: [], strict: 'yes', ...over };
}

function write(name: string, text: string): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
}

test('a known key passes; port 22 is filed by name, others as [host]:port, and the bare name counts for any port', async () => {
  const f = write('kh1', `web1 ${a.line}\n[web1]:2222 ${b.line}\n`);
  assert.deepEqual(await verifyHostKey(check(f), a.blob), { ok: true, added: false });
  assert.deepEqual(await verifyHostKey(check(f, { port: 2222 }), b.blob), { ok: true, added: false });
  // ssh: "checking without port identifier" when [web1]:2222 knows nothing of this key... but it knows b: a changed key.
  assert.equal((await verifyHostKey(check(f, { port: 2222 }), a.blob)).ok, false);
  // A port with nothing filed under [host]:port: the key filed under the bare name is accepted.
  assert.deepEqual(await verifyHostKey(check(f, { port: 2200 }), a.blob), { ok: true, added: false });
});

test('HostKeyAlias is the name, verbatim: no [alias]:port, and no bare-name fallback', async () => {
  const f = write('kh-alias', `[127.0.0.1]:41239 ${a.line}\nweb1 ${b.line}\n`);
  const alias = { hostname: '127.0.0.1', port: 47687, hostKeyAlias: '[127.0.0.1]:41239' };
  assert.deepEqual(await verifyHostKey(check(f, alias), a.blob), { ok: true, added: false });
  const other = await verifyHostKey(check(f, { hostname: 'web1', port: 2222, hostKeyAlias: 'db9' }), b.blob);
  assert.equal(!other.ok && other.code, 'HOST_KEY_UNKNOWN');
  assert.match(!other.ok ? other.message : '', /known for db9 /);
});

test('hashed names (ssh-keygen -H) match, comma lists, wildcards and negation', async () => {
  const f = write('kh2', `web1,[web1]:2200 ${a.line}\n*.example.com,!evil.example.com ${b.line}\n`);
  execFileSync('ssh-keygen', ['-q', '-H', '-f', f]);
  assert.match(fs.readFileSync(f, 'utf8'), /^\|1\|/m);
  assert.equal((await verifyHostKey(check(f), a.blob)).ok, true);
  assert.equal((await verifyHostKey(check(f, { port: 2200 }), a.blob)).ok, true);
  // ssh-keygen -H leaves wildcard lines unhashed; they still work, case-insensitively.
  assert.equal((await verifyHostKey(check(f, { hostname: 'db.example.com' }), b.blob)).ok, true);
  assert.equal((await verifyHostKey(check(f, { hostname: 'db.EXAMPLE.com' }), b.blob)).ok, true);
  const negated = await verifyHostKey(check(f, { hostname: 'evil.example.com' }), b.blob);
  assert.equal(!negated.ok && negated.code, 'HOST_KEY_UNKNOWN');
});

test('a changed key is HOST_KEY_MISMATCH naming file, line and the ssh-keygen -R to run; a key of another type is a change too, as in ssh', async () => {
  const f = write('kh3', `# comment\nother ${b.line}\nweb1 ${b.line}\n`);
  const v = await verifyHostKey(check(f), a.blob);
  assert.ok(!v.ok);
  assert.equal(v.code, 'HOST_KEY_MISMATCH');
  assert.ok(v.message.includes(`${f}:3`), v.message);
  assert.ok(v.message.includes(fingerprint(a.blob)));
  assert.match(v.message, /ssh-keygen -R 'web1'/);
  assert.match(v.message, /REMOTE HOST IDENTIFICATION HAS CHANGED/);
  const lax = await verifyHostKey(check(f, { strict: 'no' }), a.blob);
  assert.ok(lax.ok && /HAS CHANGED/.test(lax.warning ?? ''));
  assert.equal((await verifyHostKey(check(f, { strict: 'accept-new' }), a.blob)).ok, false);
  const rsaOnly = write('kh3b', `web1 ${rsa.line}\n`);
  const typed = await verifyHostKey(check(rsaOnly), a.blob);
  assert.equal(!typed.ok && typed.code, 'HOST_KEY_MISMATCH');
});

test('@revoked refuses the key whatever StrictHostKeyChecking says; a @revoked CA refuses its certificates', async () => {
  const f = write('kh4', `@revoked * ${a.line}\nweb1 ${a.line}\n`);
  for (const strict of ['yes', 'accept-new', 'no'] as const) {
    const v = await verifyHostKey(check(f, { strict }), a.blob);
    assert.equal(!v.ok && v.code, 'HOST_KEY_REVOKED');
  }
  const g = write('kh4b', `@cert-authority * ${ca.line}\n@revoked * ${ca.line}\n`);
  const v = await verifyHostKey(check(g), hostCert.blob);
  assert.equal(!v.ok && v.code, 'HOST_KEY_REVOKED');
  assert.match(!v.ok ? v.message : '', /CA/);
  // The certificate's own key revoked refuses the certificate too.
  const k = write('kh4c', `@cert-authority * ${ca.line}\n@revoked web1 ${hostKey.line}\n`);
  assert.equal(!(await verifyHostKey(check(k), hostCert.blob)).ok, true);
});

test('@cert-authority: a certificate for the name, within its window, signed by a CA listed for the name', async () => {
  const f = write('kh-ca', `@cert-authority *.example.com,web1 ${ca.line}\n`);
  assert.deepEqual(await verifyHostKey(check(f), hostCert.blob), { ok: true, added: false, certificate: true });
  assert.equal((await verifyHostKey(check(f, { hostname: 'web1.example.com' }), hostCert.blob)).ok, true);
  // The CA line's patterns do not cover the name: its plain key is looked up, and is unknown.
  const outside = await verifyHostKey(check(f, { hostname: 'db1' }), hostCert.blob);
  assert.equal(!outside.ok && outside.code, 'HOST_KEY_UNKNOWN');
  // The CA covers the name, but the certificate is for other principals.
  const g = write('kh-ca2', `@cert-authority * ${ca.line}\n`);
  const named = await verifyHostKey(check(g, { hostname: 'db1' }), hostCert.blob);
  assert.ok(!named.ok && /not a listed principal/.test(named.message), JSON.stringify(named));
  // HostKeyAlias is the name principals must include.
  assert.equal((await verifyHostKey(check(g, { hostname: '10.0.0.9', hostKeyAlias: 'web1' }), hostCert.blob)).ok, true);
  // Another CA: not trusted.
  const h = write('kh-ca3', `@cert-authority * ${otherCa.line}\n`);
  assert.equal((await verifyHostKey(check(h), hostCert.blob)).ok, false);
  // A certificate whose CA is unknown, but whose plain key is known: accepted as the key, as ssh does.
  const plain = write('kh-ca4', `web1 ${hostKey.line}\n`);
  assert.deepEqual(await verifyHostKey(check(plain), hostCert.blob), { ok: true, added: false });
});

test('a host certificate outside its window is refused, and an expired one falls back to the plain key', async () => {
  const expired = signKey(ca, hostKey, { host: true, principals: ['web1'], validity: '20200101:20200102', out: path.join(dir, 'h-old-cert.pub') });
  const future = signKey(ca, hostKey, { host: true, principals: ['web1'], validity: '+1d:+2d', out: path.join(dir, 'h-new-cert.pub') });
  const f = write('kh-win', `@cert-authority * ${ca.line}\n`);
  for (const [cert, word] of [[expired, 'expired'], [future, 'not yet valid']] as const) {
    const v = await verifyHostKey(check(f), cert.blob);
    assert.ok(!v.ok && v.code === 'HOST_KEY_UNKNOWN' && v.message.includes(word), JSON.stringify(v));
  }
  // An injected clock inside the window accepts it.
  assert.equal((await verifyHostKey(check(f, { now: () => Date.UTC(2020, 0, 1, 12) / 1000 }), expired.blob)).ok, true);
  const both = write('kh-win2', `@cert-authority * ${ca.line}\nweb1 ${hostKey.line}\n`);
  assert.equal((await verifyHostKey(check(both), expired.blob)).ok, true);
});

test('a certificate whose signature does not verify is refused outright', async () => {
  const forged = Buffer.from(hostCert.blob);
  forged[forged.length - 5] ^= 0xff;
  const f = write('kh-forged', `@cert-authority * ${ca.line}\nweb1 ${hostKey.line}\n`);
  const v = await verifyHostKey(check(f), forged);
  assert.equal(!v.ok && v.code, 'HOST_KEY_MISMATCH');
});

test('unknown: refused under yes with the fingerprint; accept-new appends once (hashed with HashKnownHosts), concurrently safe', async () => {
  const f = path.join(dir, 'sub', 'kh5');
  const refused = await verifyHostKey(check(f), a.blob);
  assert.equal(!refused.ok && refused.code, 'HOST_KEY_UNKNOWN');
  assert.ok(!refused.ok && refused.message.includes(fingerprint(a.blob)));
  assert.ok(!refused.ok && refused.message.includes('No ED25519 host key is known for web1 and you have requested strict checking'));
  assert.equal(fs.existsSync(f), false);

  const results = await Promise.all(Array.from({ length: 5 }, () => verifyHostKey(check(f, { strict: 'accept-new', port: 2022 }), a.blob)));
  assert.ok(results.every((r) => r.ok));
  assert.equal(fs.readFileSync(f, 'utf8'), `[web1]:2022 ${a.line}\n`);
  assert.equal(fs.statSync(f).mode & 0o777, 0o600);
  assert.deepEqual(await verifyHostKey(check(f, { port: 2022 }), a.blob), { ok: true, added: false });

  const hashed = path.join(dir, 'kh5h');
  await Promise.all(Array.from({ length: 3 }, () => verifyHostKey(check(hashed, { strict: 'accept-new', hashKnownHosts: true }), b.blob)));
  const text = fs.readFileSync(hashed, 'utf8');
  assert.equal(text.split('\n').filter(Boolean).length, 1);
  assert.match(text, /^\|1\|[^|]+\|[^ ]+ ssh-ed25519 /);
  // ssh-keygen finds the hashed name, so ssh will too.
  assert.match(execFileSync('ssh-keygen', ['-F', 'web1', '-f', hashed]).toString(), /ssh-ed25519/);
  // No user file: nothing can be recorded, as in ssh.
  const none = await verifyHostKey({ ...check(f, { strict: 'accept-new' }), userFiles: [], globalFiles: [f] }, b.blob);
  assert.equal(none.ok, false);
});

test('several files: user files, then global ones; a line in any of them counts', async () => {
  const u1 = write('kh-u1', '');
  const u2 = write('kh-u2', `web1 ${a.line}\n`);
  const g = write('kh-g', `[web1]:2222 ${b.line}\n`);
  const files = { userFiles: [u1, u2], globalFiles: [g] };
  assert.equal((await verifyHostKey(check(u1, files), a.blob)).ok, true);
  assert.equal((await verifyHostKey(check(u1, { ...files, port: 2222 }), b.blob)).ok, true);
  // accept-new records into the first user file.
  assert.equal((await verifyHostKey(check(u1, { ...files, strict: 'accept-new', hostname: 'db1' }), b.blob)).ok, true);
  assert.match(fs.readFileSync(u1, 'utf8'), /^db1 ssh-ed25519 /);
});

test('host key algorithms are ordered as ssh orders them: certificates first unless a plain key of another type is known', async () => {
  const none = write('kh6a', '');
  assert.deepEqual(await hostKeyAlgorithms({ hostname: 'web1', port: 22, userFiles: [none], globalFiles: [] }), HOST_KEY_ALGORITHMS);
  const rsaKnown = write('kh6', `web1 ${rsa.line}\n`);
  const order = await hostKeyAlgorithms({ hostname: 'web1', port: 22, userFiles: [rsaKnown], globalFiles: [] });
  assert.deepEqual(order.slice(0, 4), ['rsa-sha2-512-cert-v01@openssh.com', 'rsa-sha2-256-cert-v01@openssh.com', 'rsa-sha2-512', 'rsa-sha2-256']);
  const caKnown = write('kh6c', `web1 ${rsa.line}\n@cert-authority * ${ca.line}\n`);
  const withCa = await hostKeyAlgorithms({ hostname: 'web1', port: 22, userFiles: [caKnown], globalFiles: [] });
  assert.ok(withCa.slice(0, 6).every((alg) => alg.endsWith('-cert-v01@openssh.com')), withCa.join());
});

test('fingerprints are what ssh-keygen -l prints', () => {
  const printed = execFileSync('ssh-keygen', ['-l', '-f', `${a.privatePath}.pub`]).toString().split(' ')[1];
  assert.equal(fingerprint(a.blob), printed);
  assert.ok(NOW > 0);
});
