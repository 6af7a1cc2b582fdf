// The front door's generated keys: every one must be readable by the daemon
// that wrote it, or the daemon cannot start (ssh2's generator writes one
// unreadable ed25519 key in 256: mscdex/ssh2#1390).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { utils } from 'ssh2';
import { loadOrCreateKey } from '../../daemon/gateway/keys';

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
