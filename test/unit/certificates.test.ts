// OpenSSH certificates as sshmux reads them (daemon/ssh/certificates.ts),
// against what ssh-keygen wrote and prints (-L): every key type and CA type
// ssh2 can use, the CA signature, the window and the principals; and the
// 040/041 patches in process (daemon/ssh/ssh2/certificates.ts): a patched
// client logs in to a patched server with a host and a user certificate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  certificateSignatureProblem, describeValidity, hostCertificateProblem, parseCertificate, validityProblem,
} from '../../daemon/ssh/certificates';
import { runCertificateCheck } from '../../daemon/ssh/ssh2/certificates';
import { tempDir } from '../helpers/sshd';
import { makeKey, signKey } from '../helpers/certs';

const dir = tempDir();
const NOW = Math.floor(Date.now() / 1000);

const KEY_TYPES: Array<[string, number | undefined]> = [['ed25519', undefined], ['rsa', 2048], ['ecdsa', 256], ['ecdsa', 384], ['ecdsa', 521]];

test('every key type, signed by every CA type, parses as ssh-keygen -L shows it, and its CA signature verifies', () => {
  for (const [caType, caBits] of KEY_TYPES) {
    const ca = makeKey(dir, `ca-${caType}${caBits ?? ''}`, caType, caBits);
    for (const [type, bits] of KEY_TYPES) {
      const key = makeKey(dir, `k-${caType}${caBits ?? ''}-${type}${bits ?? ''}`, type, bits);
      const cert = signKey(ca, key, { principals: ['alice', 'ops'], id: `id-${type}`, serial: 42,
        signatureAlgorithm: caType === 'rsa' ? 'rsa-sha2-512' : undefined });
      const c = parseCertificate(cert.blob);
      const label = `${type}${bits ?? ''} signed by ${caType}${caBits ?? ''}`;
      assert.equal(c.type, cert.line.split(' ')[0], label);
      assert.ok(c.publicKey.equals(key.blob), `${label}: the certified key is the key`);
      assert.ok(c.signatureKey.equals(ca.blob), `${label}: the CA key`);
      assert.equal(c.keyId, `id-${type}`);
      assert.equal(c.serial, 42n);
      assert.equal(c.role, 'user');
      assert.deepEqual(c.principals, ['alice', 'ops']);
      assert.deepEqual(c.extensions.map((e) => e.name), ['permit-X11-forwarding', 'permit-agent-forwarding',
        'permit-port-forwarding', 'permit-pty', 'permit-user-rc']);
      assert.equal(certificateSignatureProblem(c), undefined, label);
      const shown = execFileSync('ssh-keygen', ['-L', '-f', cert.path]).toString();
      assert.match(shown, new RegExp(`Signing CA: .* \\(using ${c.signatureAlgorithm}\\)`), label);
    }
  }
});

test('a certificate altered after signing fails its signature; a truncated one does not parse', () => {
  const ca = makeKey(dir, 'ca-alter');
  const key = makeKey(dir, 'k-alter');
  const cert = signKey(ca, key, { principals: ['alice'] });
  const c = parseCertificate(cert.blob);
  const altered = Buffer.from(cert.blob);
  // The key id's first byte: inside what the CA signed.
  const at = altered.indexOf(Buffer.from('sshmux-test'));
  altered[at] ^= 0x20;
  assert.match(certificateSignatureProblem(parseCertificate(altered)) ?? '', /does not verify/);
  assert.throws(() => parseCertificate(cert.blob.subarray(0, cert.blob.length - 10)), /truncated/);
  assert.equal(c.role, 'user');
});

test('the window and the principals, as OpenSSH decides them', () => {
  const ca = makeKey(dir, 'ca-window');
  const key = makeKey(dir, 'k-window');
  const old = parseCertificate(signKey(ca, key, { host: true, principals: ['web1'], validity: '20200101:20200102', out: path.join(dir, 'w1') }).blob);
  assert.equal(validityProblem(old, NOW), 'expired');
  assert.equal(validityProblem(old, Date.UTC(2019, 11, 31) / 1000), 'not yet valid');
  assert.equal(validityProblem(old, Date.UTC(2020, 0, 1, 12) / 1000), undefined);
  assert.equal(describeValidity(old), `from ${new Date(Number(old.validAfter) * 1000).toISOString().replace('.000', '')} to ${new Date(Number(old.validBefore) * 1000).toISOString().replace('.000', '')}`);
  const forever = parseCertificate(signKey(ca, key, { host: true, principals: ['*.example.com'], validity: 'always:forever', out: path.join(dir, 'w2') }).blob);
  assert.equal(describeValidity(forever), 'forever');
  assert.equal(hostCertificateProblem(forever, 'db.example.com', NOW), undefined);
  assert.match(hostCertificateProblem(forever, 'example.org', NOW) ?? '', /not a listed principal/);
  const user = parseCertificate(signKey(ca, key, { principals: ['web1'], out: path.join(dir, 'w3') }).blob);
  assert.match(hostCertificateProblem(user, 'web1', NOW) ?? '', /not a host certificate/);
  const none = parseCertificate(signKey(ca, key, { host: true, out: path.join(dir, 'w4') }).blob);
  assert.match(hostCertificateProblem(none, 'web1', NOW) ?? '', /lacks principal list/);
  const sha1 = parseCertificate(signKey(makeKey(dir, 'ca-sha1', 'rsa', 2048), key, { host: true, principals: ['web1'], signatureAlgorithm: 'ssh-rsa', out: path.join(dir, 'w5') }).blob);
  assert.match(hostCertificateProblem(sha1, 'web1', NOW) ?? '', /disallowed algorithm/);
});

test('ssh2 with the 040/041 patches: a host certificate reaches the hostVerifier whole; a user certificate is offered under its algorithm and signed by its key', async () => {
  const ca = makeKey(dir, 'ca-seam');
  const host = makeKey(dir, 'host-seam');
  const user = makeKey(dir, 'user-seam');
  const hostCert = signKey(ca, host, { host: true, principals: ['check'] });
  const userCert = signKey(ca, user, { principals: ['check'] });
  const r = await runCertificateCheck({
    hostKey: fs.readFileSync(host.privatePath), hostCertificate: fs.readFileSync(hostCert.path),
    userKey: fs.readFileSync(user.privatePath), userCertificate: fs.readFileSync(userCert.path),
  });
  assert.ok(r.verifierBlob.equals(hostCert.blob), 'the verifier got the whole host certificate');
  assert.equal(r.hostKeyAlgorithm, 'ssh-ed25519-cert-v01@openssh.com');
  assert.equal(r.offeredAlgorithm, 'ssh-ed25519-cert-v01@openssh.com');
  assert.ok(r.offeredBlob.equals(userCert.blob), 'the server got the whole user certificate');
  assert.equal(r.signatureValid, true);
});
