// The typed surface of the certificate patches (patches/ssh2+1.17.0+040+
// host-certificates.patch, +041+user-certificates.patch), and the checks
// that they do what sshmux relies on: a patched client against a patched
// server, in process. No module outside daemon/ssh/ssh2/ names what the
// patches add other than through this file.
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import * as ssh2 from 'ssh2';
import type { AuthContext, ConnectConfig, ParsedKey, PublicKeyAuthMethod } from 'ssh2';

/** Host key algorithms for certificates, which ssh2 negotiates only with the 040 patch. */
export const CERT_HOST_KEY_ALGORITHMS = [
  'ssh-ed25519-cert-v01@openssh.com', 'ecdsa-sha2-nistp256-cert-v01@openssh.com', 'ecdsa-sha2-nistp384-cert-v01@openssh.com',
  'ecdsa-sha2-nistp521-cert-v01@openssh.com', 'rsa-sha2-512-cert-v01@openssh.com', 'rsa-sha2-256-cert-v01@openssh.com',
] as const;

type Algorithms = NonNullable<ConnectConfig['algorithms']>;

/** ConnectConfig's algorithms.serverHostKey with the certificate algorithms 040 accepts. */
export function serverHostKeyAlgorithms(list: string[]): Algorithms['serverHostKey'] {
  return list as Algorithms['serverHostKey'];
}

/**
 * A publickey method that offers a user certificate for its key (041): the
 * certificate (an OpenSSH public key line or blob) goes on the wire, the key
 * signs.
 */
export interface CertificateAuthMethod extends PublicKeyAuthMethod {
  certificate: Buffer | string;
}

/**
 * A certificate or key, parsed by ssh2 (040 parses certificates: type is the
 * certificate's, getPublicSSH() the whole certificate); an Error when ssh2
 * cannot read it.
 */
export function parseSshKey(data: Buffer | string | ParsedKey, utils: typeof ssh2.utils = ssh2.utils): ParsedKey | Error {
  return utils.parseKey(data) as ParsedKey | Error;
}

/**
 * A host key for ssh2's Server that presents a host certificate: the
 * private key signs, the certificate is K_S. For the in-process checks
 * below and tests; ssh2's Server serves it under the certificate's
 * algorithm through 040's key exchange (an ed25519 or ECDSA certificate:
 * the Server lists RSA keys under their plain names only).
 */
export function hostKeyWithCertificate(privateKey: ParsedKey, certificate: Buffer, utils: typeof ssh2.utils = ssh2.utils): ParsedKey {
  const cert = parseSshKey(certificate, utils);
  if (cert instanceof Error) throw new Error(`cannot read the host certificate: ${cert.message}`);
  const blob = cert.getPublicSSH();
  return Object.create(privateKey, {
    type: { value: cert.type, enumerable: true },
    getPublicSSH: { value: () => blob },
  }) as ParsedKey;
}

// ---- behavioural checks ------------------------------------------------

/** What the checks need: made by the caller (ssh-keygen in tests; fixed blobs at daemon start). */
export interface CertificateFixture {
  /** An ed25519 host private key (OpenSSH format) and a host certificate for it. */
  hostKey: Buffer;
  hostCertificate: Buffer;
  /** An ed25519 user private key and a user certificate for it. */
  userKey: Buffer;
  userCertificate: Buffer;
}

export interface CertificateCheckResult {
  /** The blob the client's hostVerifier received, and the algorithm negotiated. */
  verifierBlob: Buffer;
  hostKeyAlgorithm: string;
  /** The publickey request as the server saw it. */
  offeredAlgorithm: string;
  offeredBlob: Buffer;
  /** Whether the signature verified with the certificate's key under the plain algorithm. */
  signatureValid: boolean;
}

/**
 * A patched client logs in to a patched server that presents a host
 * certificate, offering a user certificate: resolves with what each side
 * saw, or rejects naming what failed. Bounded by `timeoutMs`.
 */
export function runCertificateCheck(fx: CertificateFixture, timeoutMs = 5000, lib: Pick<typeof ssh2, 'Client' | 'Server' | 'utils'> = ssh2): Promise<CertificateCheckResult> {
  const { Client, Server, utils } = lib;
  const hostPrivate = parseSshKey(fx.hostKey, utils);
  const userPrivate = parseSshKey(fx.userKey, utils);
  if (hostPrivate instanceof Error || userPrivate instanceof Error) return Promise.reject(new Error('cannot read the fixture keys'));
  const userCert = parseSshKey(fx.userCertificate, utils);
  if (userCert instanceof Error) return Promise.reject(new Error(`ssh2 cannot read a user certificate: ${userCert.message}`));
  let hostKey: ParsedKey;
  try {
    hostKey = hostKeyWithCertificate(hostPrivate, fx.hostCertificate, utils);
  } catch (err) {
    return Promise.reject(err as Error);
  }

  return new Promise<CertificateCheckResult>((resolve, reject) => {
    let verifierBlob: Buffer | undefined;
    let offered: { algo: string; blob: Buffer; valid: boolean } | undefined;
    const server = new Server({ hostKeys: [{ key: hostKey } as never] }, (conn) => {
      conn.on('authentication', (ctx: AuthContext) => {
        if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
        if (!ctx.signature) return ctx.accept(); // the query: PK_OK
        offered = { algo: ctx.key.algo, blob: ctx.key.data, valid: userSignatureValid(ctx, userPrivate) };
        return offered.valid ? ctx.accept() : ctx.reject();
      });
      conn.on('ready', () => conn.end());
      conn.on('error', () => undefined);
    });
    const client = new Client();
    const timer = setTimeout(() => finish(new Error(`no login within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      client.end();
      server.close();
      if (err) return reject(err);
      if (!verifierBlob) return reject(new Error('the hostVerifier was not called'));
      if (!offered) return reject(new Error('no signed publickey request reached the server'));
      resolve({
        verifierBlob, hostKeyAlgorithm: blobTypeOf(verifierBlob), offeredAlgorithm: offered.algo, offeredBlob: offered.blob,
        signatureValid: offered.valid,
      });
    };
    client.on('ready', () => finish());
    client.on('error', (err) => finish(err));
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      const method: CertificateAuthMethod = { type: 'publickey', username: 'check', key: fx.userKey, certificate: fx.userCertificate };
      client.connect({
        host: '127.0.0.1', port, username: 'check', readyTimeout: 0,
        algorithms: { serverHostKey: serverHostKeyAlgorithms([...CERT_HOST_KEY_ALGORITHMS, 'ssh-ed25519']) },
        hostVerifier: (key: Buffer) => {
          verifierBlob = key;
          return true;
        },
        authHandler: [method],
      });
    });
  });
}

/** The server's side of a certificate login: the signature, made by the certified key, over what ssh2 hands the server. */
function userSignatureValid(ctx: AuthContext & { method: 'publickey' }, userPrivate: ParsedKey): boolean {
  if (!ctx.signature || !ctx.blob) return false;
  // ssh2's server strips the signature's algorithm name only when it equals
  // the key's; for a certificate it is the plain name, so the SSH form is left.
  let sig = ctx.signature;
  const nameLen = sig.length > 4 ? sig.readUInt32BE(0) : 0;
  const plain = ctx.key.algo.replace(/-cert-v01@openssh\.com$/, '');
  if (nameLen === plain.length && sig.toString('latin1', 4, 4 + nameLen) === plain) sig = sig.subarray(8 + nameLen);
  // The fixture's certificate certifies the user key, so its public half verifies.
  try {
    return plain === 'ssh-ed25519' && verify(null, ctx.blob, userPrivate.getPublicPEM(), sig);
  } catch {
    return false;
  }
}

function blobTypeOf(blob: Buffer): string {
  return blob.length >= 4 ? blob.toString('latin1', 4, 4 + blob.readUInt32BE(0)) : '';
}

/**
 * A fixture made in process, for the daemon's start-up check where
 * ssh-keygen may not be: ed25519 host and user keys (ssh2's generator) and
 * certificates for them signed by a throwaway ed25519 CA, written as
 * PROTOCOL.certkeys lays them out. Tests use ssh-keygen -s instead.
 */
export function makeCertificateFixture(utils: typeof ssh2.utils = ssh2.utils): CertificateFixture {
  const ca = generateKeyPairSync('ed25519');
  const caRaw = Buffer.from(ca.publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const caBlob = Buffer.concat([sshString('ssh-ed25519'), sshString(caRaw)]);
  const certify = (pubLine: string, type: 1 | 2, principal: string): Buffer => {
    const pub = Buffer.from(pubLine.split(' ')[1], 'base64');
    const keyFields = pub.subarray(4 + pub.readUInt32BE(0)); // the public key without its type name
    const now = BigInt(Math.floor(Date.now() / 1000));
    const body = Buffer.concat([
      sshString('ssh-ed25519-cert-v01@openssh.com'), sshString(randomBytes(32)), keyFields,
      uint64(1n), uint32(type), sshString('sshmux check'), sshString(sshString(principal)),
      uint64(now - 60n), uint64(now + 3600n), sshString(''), sshString(''), sshString(''), sshString(caBlob),
    ]);
    const signature = Buffer.concat([sshString('ssh-ed25519'), sshString(sign(null, body, ca.privateKey))]);
    return Buffer.concat([body, sshString(signature)]);
  };
  const ed25519 = (): { private: string; public: string } => {
    // ssh2's generator writes one key in 256 that it cannot read back (mscdex/ssh2#1390).
    for (;;) {
      const pair = utils.generateKeyPairSync('ed25519');
      if (!(utils.parseKey(pair.private) instanceof Error)) return pair;
    }
  };
  const host = ed25519();
  const user = ed25519();
  return {
    hostKey: Buffer.from(host.private), hostCertificate: certify(host.public, 2, 'sshmux-check-host'),
    userKey: Buffer.from(user.private), userCertificate: certify(user.public, 1, 'check'),
  };
}

function sshString(data: string | Buffer): Buffer {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  return Buffer.concat([uint32(bytes.length), bytes]);
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function uint64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
}
