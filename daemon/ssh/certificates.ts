// OpenSSH certificates (PROTOCOL.certkeys), read and checked as OpenSSH
// does: the blob's fields, the CA's signature (node:crypto), the validity
// window against an injectable clock, and the principals. ssh2 only
// carries certificates (the 040/041 patches); every decision about one is
// made here, for host certificates (known-hosts.ts) and user certificates
// (auth.ts) alike.
import { createPublicKey, verify, type KeyObject } from 'node:crypto';

export const CERT_SUFFIX = '-cert-v01@openssh.com';

/** The key types a certificate can certify, as ssh2 can use them. */
const CERT_KEY_TYPES = new Set(['ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521']);

/** OpenSSH's default CASignatureAlgorithms (ssh_config(5)), less the security-key ones ssh2 cannot verify. */
export const CA_SIGNATURE_ALGORITHMS = [
  'ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256',
];

/** A value too far in the future to be a time: OpenSSH's "forever". */
const FOREVER = 0xffffffffffffffffn;

export interface Certificate {
  /** e.g. ssh-ed25519-cert-v01@openssh.com */
  type: string;
  /** The certified key's type, e.g. ssh-ed25519. */
  keyType: string;
  /** The certified key as a plain public key blob (what a known_hosts line or authorized_keys holds). */
  publicKey: Buffer;
  serial: bigint;
  role: 'user' | 'host';
  keyId: string;
  principals: string[];
  /** Seconds since the epoch; validBefore FOREVER when it never expires. */
  validAfter: bigint;
  validBefore: bigint;
  criticalOptions: Array<{ name: string; data: Buffer }>;
  extensions: Array<{ name: string; data: Buffer }>;
  /** The CA's public key blob. */
  signatureKey: Buffer;
  /** The signature's algorithm, e.g. rsa-sha2-512. */
  signatureAlgorithm: string;
  signature: Buffer;
  /** What the CA signed: the blob up to the signature. */
  signed: Buffer;
  /** The whole certificate, as it goes on the wire. */
  blob: Buffer;
}

export class CertificateError extends Error {
  override readonly name = 'CertificateError';
}

export function isCertificateType(type: string): boolean {
  return type.endsWith(CERT_SUFFIX);
}

/** The type name at the head of an SSH key blob, '' when there is none. */
export function blobType(blob: Buffer): string {
  if (blob.length < 4) return '';
  const len = blob.readUInt32BE(0);
  return len > 0 && len < 128 && 4 + len <= blob.length ? blob.toString('latin1', 4, 4 + len) : '';
}

/** A reader of SSH wire fields (RFC 4251) that throws, naming the field, on a short buffer. */
class Reader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}

  get offset(): number {
    return this.pos;
  }

  get done(): boolean {
    return this.pos === this.buf.length;
  }

  /** Throws unless `n` more bytes are there. */
  private need(n: number, field: string): void {
    if (this.pos + n > this.buf.length) throw new CertificateError(`certificate truncated at ${field}`);
  }

  bytes(field: string): Buffer {
    this.need(4, field);
    const len = this.buf.readUInt32BE(this.pos);
    this.need(4 + len, field);
    const out = this.buf.subarray(this.pos + 4, this.pos + 4 + len);
    this.pos += 4 + len;
    return out;
  }

  string(field: string): string {
    return this.bytes(field).toString('utf8');
  }

  uint32(field: string): number {
    this.need(4, field);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  uint64(field: string): bigint {
    this.need(8, field);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
}

function sshString(b: Buffer | string): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b) : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
}

/** Name/data pairs of critical options or extensions; names strictly ordered, as OpenSSH requires. */
function options(buf: Buffer, field: string): Array<{ name: string; data: Buffer }> {
  const r = new Reader(buf);
  const out: Array<{ name: string; data: Buffer }> = [];
  while (!r.done) {
    const name = r.string(field);
    const data = r.bytes(field);
    if (out.length && out[out.length - 1].name >= name) throw new CertificateError(`certificate ${field} out of order or repeated at "${name}"`);
    out.push({ name, data });
  }
  return out;
}

/** Parses a certificate blob; throws CertificateError saying what is wrong. The CA signature is not checked here (verifyCertificate). */
export function parseCertificate(blob: Buffer): Certificate {
  const r = new Reader(blob);
  const type = r.string('type');
  if (!isCertificateType(type)) throw new CertificateError(`not a certificate: key type ${type || '(none)'}`);
  const keyType = type.slice(0, -CERT_SUFFIX.length);
  if (!CERT_KEY_TYPES.has(keyType)) throw new CertificateError(`unsupported certificate type ${type}`);
  r.bytes('nonce');
  const keyFields: Buffer[] = [];
  const fieldCount = keyType === 'ssh-rsa' ? 2 : keyType === 'ssh-ed25519' ? 1 : 2; // e,n | pk | curve,Q
  for (let i = 0; i < fieldCount; i++) keyFields.push(r.bytes('public key'));
  if (keyType === 'ssh-ed25519' && keyFields[0].length !== 32) throw new CertificateError('certificate has a malformed ed25519 key');
  const publicKey = Buffer.concat([sshString(keyType), ...keyFields.map((f) => sshString(f))]);
  const serial = r.uint64('serial');
  const roleCode = r.uint32('type');
  if (roleCode !== 1 && roleCode !== 2) throw new CertificateError(`certificate of unknown type ${roleCode}`);
  const keyId = r.string('key id');
  const principalReader = new Reader(r.bytes('valid principals'));
  const principals: string[] = [];
  while (!principalReader.done) principals.push(principalReader.string('valid principals'));
  const validAfter = r.uint64('valid after');
  const validBefore = r.uint64('valid before');
  const criticalOptions = options(r.bytes('critical options'), 'critical options');
  const extensions = options(r.bytes('extensions'), 'extensions');
  r.bytes('reserved');
  const signatureKey = r.bytes('signature key');
  const signedEnd = r.offset;
  const signatureBlob = r.bytes('signature');
  if (!r.done) throw new CertificateError('certificate has trailing bytes');
  if (isCertificateType(blobType(signatureKey))) throw new CertificateError('certificate signing key is itself a certificate');
  const sig = new Reader(signatureBlob);
  const signatureAlgorithm = sig.string('signature');
  const signature = sig.bytes('signature');
  return {
    type, keyType, publicKey, serial, role: roleCode === 1 ? 'user' : 'host', keyId, principals,
    validAfter, validBefore, criticalOptions, extensions, signatureKey, signatureAlgorithm, signature,
    signed: blob.subarray(0, signedEnd), blob,
  };
}

// ---- keys and signatures --------------------------------------------------

const CURVES: Record<string, { crv: string; hash: string; size: number }> = {
  'ecdsa-sha2-nistp256': { crv: 'P-256', hash: 'sha256', size: 32 },
  'ecdsa-sha2-nistp384': { crv: 'P-384', hash: 'sha384', size: 48 },
  'ecdsa-sha2-nistp521': { crv: 'P-521', hash: 'sha512', size: 66 },
};

function b64url(b: Buffer): string {
  return b.toString('base64url');
}

/** An SSH mpint's magnitude without its sign byte. */
function unsigned(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

/** A node:crypto public key from an SSH public key blob (ed25519, RSA, ECDSA). */
export function sshKeyObject(blob: Buffer): KeyObject {
  const r = new Reader(blob);
  const type = r.string('key type');
  if (type === 'ssh-ed25519') {
    return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64url(r.bytes('key')) }, format: 'jwk' });
  }
  if (type === 'ssh-rsa') {
    const e = unsigned(r.bytes('key'));
    const n = unsigned(r.bytes('key'));
    return createPublicKey({ key: { kty: 'RSA', n: b64url(n), e: b64url(e) }, format: 'jwk' });
  }
  const curve = CURVES[type];
  if (curve) {
    r.bytes('curve');
    const q = r.bytes('key');
    if (q[0] !== 4 || q.length !== 1 + 2 * curve.size) throw new CertificateError(`malformed ${type} key`);
    return createPublicKey({
      key: { kty: 'EC', crv: curve.crv, x: b64url(q.subarray(1, 1 + curve.size)), y: b64url(q.subarray(1 + curve.size)) },
      format: 'jwk',
    });
  }
  throw new CertificateError(`unsupported key type ${type || '(none)'}`);
}

/** Whether `signature` (SSH format, of the named algorithm) is `key`'s over `data`. */
export function verifySshSignature(keyBlob: Buffer, algorithm: string, signature: Buffer, data: Buffer): boolean {
  const keyType = blobType(keyBlob);
  const key = sshKeyObject(keyBlob);
  switch (algorithm) {
    case 'ssh-ed25519':
      return keyType === 'ssh-ed25519' && verify(null, data, key, signature);
    case 'rsa-sha2-256':
    case 'rsa-sha2-512':
    case 'ssh-rsa':
      return keyType === 'ssh-rsa' &&
        verify(algorithm === 'ssh-rsa' ? 'sha1' : algorithm === 'rsa-sha2-256' ? 'sha256' : 'sha512', data, key, signature);
    default: {
      const curve = CURVES[algorithm];
      if (!curve || keyType !== algorithm) return false;
      const r = new Reader(signature);
      const fixed = (m: Buffer): Buffer => {
        const v = unsigned(m);
        if (v.length > curve.size) throw new CertificateError('malformed ECDSA signature');
        return Buffer.concat([Buffer.alloc(curve.size - v.length), v]);
      };
      const rs = Buffer.concat([fixed(r.bytes('signature r')), fixed(r.bytes('signature s'))]);
      return verify(curve.hash, data, { key, dsaEncoding: 'ieee-p1363' }, rs);
    }
  }
}

/**
 * Whether the CA's signature holds, as OpenSSH checks it when it reads a
 * certificate (a certificate whose signature fails is no key at all).
 * Returns why not, or undefined.
 */
export function certificateSignatureProblem(cert: Certificate): string | undefined {
  let ok: boolean;
  try {
    ok = verifySshSignature(cert.signatureKey, cert.signatureAlgorithm, cert.signature, cert.signed);
  } catch (err) {
    return `certificate signature cannot be checked: ${(err as Error).message}`;
  }
  return ok ? undefined : `certificate signature (${cert.signatureAlgorithm}) does not verify with its CA key`;
}

// ---- validity and principals ----------------------------------------------

/** Seconds since the epoch; injectable so tests can move time. */
export type Now = () => number;
export const systemNow: Now = () => Math.floor(Date.now() / 1000);

/** OpenSSH's wording for why a certificate is outside its window, or undefined. */
export function validityProblem(cert: Certificate, now: number): 'not yet valid' | 'expired' | undefined {
  const t = BigInt(Math.max(0, Math.floor(now)));
  if (t < cert.validAfter) return 'not yet valid';
  if (t >= cert.validBefore) return 'expired';
  return undefined;
}

function isoTime(seconds: bigint): string {
  return new Date(Number(seconds) * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/** The window as ssh-keygen -L says it: "forever", "from A to B", "after A", "before B" (in UTC). */
export function describeValidity(cert: Certificate): string {
  const start = cert.validAfter !== 0n;
  const end = cert.validBefore !== FOREVER;
  if (!start && !end) return 'forever';
  if (!start) return `before ${isoTime(cert.validBefore)}`;
  if (!end) return `after ${isoTime(cert.validAfter)}`;
  return `from ${isoTime(cert.validAfter)} to ${isoTime(cert.validBefore)}`;
}

/** OpenSSH's match_pattern: `*` any run, `?` one character, everything else literal. */
function matchPattern(text: string, pattern: string): boolean {
  let re = '';
  for (const ch of pattern) re += ch === '*' ? '.*' : ch === '?' ? '.' : ch.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  return new RegExp(`^${re}$`, 's').test(text);
}

/**
 * sshkey_cert_check_host as of OpenSSH 10.3: a host certificate, within its
 * window, with principals, one of which (a pattern) matches the name, and
 * no critical options, signed by an allowed algorithm. Returns OpenSSH's reason
 * when it is refused.
 */
export function hostCertificateProblem(cert: Certificate, name: string, now: number): string | undefined {
  if (cert.role !== 'host') return 'Certificate invalid: not a host certificate';
  const window = validityProblem(cert, now);
  if (window) return `Certificate invalid: ${window} (valid ${describeValidity(cert)})`;
  if (cert.principals.length === 0) return 'Certificate lacks principal list';
  if (!cert.principals.some((p) => matchPattern(name, p))) {
    return `Certificate invalid: name is not a listed principal (${name} is not among ${cert.principals.join(', ')})`;
  }
  if (cert.criticalOptions.length) return 'Certificate contains unsupported critical options';
  if (!CA_SIGNATURE_ALGORITHMS.includes(cert.signatureAlgorithm)) {
    return `Certificate signed with disallowed algorithm (${cert.signatureAlgorithm}; CASignatureAlgorithms ${CA_SIGNATURE_ALGORITHMS.join(',')})`;
  }
  return undefined;
}
