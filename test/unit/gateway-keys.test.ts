// The front door's generated keys: every one must be readable by the daemon
// that wrote it, or the daemon cannot start (ssh2's generator writes one
// unreadable ed25519 key in 256: mscdex/ssh2#1390); the host keys are one of
// each type, kept, and offered under SHA-2 only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { utils } from 'ssh2';
import { hostKeyAlgorithms, loadHostKeys, loadOrCreateKey, writeKnownHosts } from '../../daemon/gateway/keys';

test('3,000 generated keys each load back, with the 32-byte public key ssh-ed25519 requires', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-keys-'));
  try {
    for (let i = 0; i < 3000; i++) {
      const key = loadOrCreateKey(path.join(dir, `k${i}`), 'sshmux test key');
      const blob = key.parsed.getPublicSSH();
      // string "ssh-ed25519" (4 + 11), then string key (4 + 32).
      assert.equal(blob.length, 51, `key ${i}: public blob of ${blob.length} bytes`);
      assert.equal(blob.readUInt32BE(15), 32);
      const pub = utils.parseKey(fs.readFileSync(path.join(dir, `k${i}.pub`), 'utf8'));
      assert.ok(!(pub instanceof Error), `key ${i}: .pub unreadable: ${pub instanceof Error ? pub.message : ''}`);
      assert.ok(pub.getPublicSSH().equals(blob), `key ${i}: .pub differs from the private key's public half`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an unreadable key file is refused with what to do, not replaced behind the owner\'s back', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-keys-'));
  try {
    const file = path.join(dir, 'gateway_host_ed25519_key');
    fs.writeFileSync(file, '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n', { mode: 0o600 });
    assert.throws(() => loadOrCreateKey(file, 'k'), /gateway_host_ed25519_key: .*; if sshmux generated it, remove it and a new key is generated at start/);
    assert.match(fs.readFileSync(file, 'utf8'), /AAAA/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('host keys: ed25519, ECDSA P-256 and RSA 3072, each generated once and kept; RSA offered under rsa-sha2-512 and -256 only', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-keys-'));
  try {
    const keys = loadHostKeys(dir);
    assert.deepEqual(keys.map((k) => path.basename(k.path)), ['gateway_host_ed25519_key', 'gateway_host_ecdsa_key', 'gateway_host_rsa_key']);
    assert.deepEqual(keys.map((k) => k.parsed.type), ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ssh-rsa']);
    // string "ssh-rsa", string e, string n: a 3072-bit n is 384 bytes and a sign byte.
    const rsa = keys[2].parsed.getPublicSSH();
    assert.equal(rsa.readUInt32BE(4 + 7 + 4 + rsa.readUInt32BE(11)), 385);
    for (const k of keys) assert.equal(fs.statSync(k.path).mode & 0o777, 0o600, k.path);
    assert.deepEqual(hostKeyAlgorithms(keys), ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'rsa-sha2-512', 'rsa-sha2-256']);
    assert.deepEqual(loadHostKeys(dir).map((k) => k.publicLine), keys.map((k) => k.publicLine), 'a second start generated new keys');
    const file = writeKnownHosts(dir, keys.map((k) => `[127.0.0.1]:2222 ${k.publicLine}`));
    assert.equal(fs.readFileSync(file, 'utf8'), keys.map((k) => `[127.0.0.1]:2222 ${k.publicLine}\n`).join(''));
    assert.equal(fs.statSync(file).mode & 0o777, 0o644);
    // A key of another type where one is expected (an ECDSA key put in the ed25519 file) stops the start, saying which.
    fs.copyFileSync(keys[1].path, keys[0].path);
    assert.throws(() => loadHostKeys(dir), /gateway_host_ed25519_key holds an ecdsa-sha2-nistp256 key, not ed25519: remove it and a new key is generated/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('300 generated ECDSA keys each load back, the private key\'s public half equal to the .pub', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-keys-'));
  try {
    for (let i = 0; i < 300; i++) {
      const key = loadOrCreateKey(path.join(dir, `k${i}`), 'sshmux test key', 'ecdsa');
      const pub = utils.parseKey(fs.readFileSync(path.join(dir, `k${i}.pub`), 'utf8'));
      assert.ok(!(pub instanceof Error) && pub.getPublicSSH().equals(key.parsed.getPublicSSH()), `key ${i}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
