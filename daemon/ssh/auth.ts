// Which credentials a connection offers, from the resolved ssh_config, read
// from disk for each new connection (so a certificate renewed on disk is
// used by the next connection; connections already up are not touched):
// 1. each CertificateFile, paired with its private key (the IdentityFile
//    whose public key it certifies, else the key held by the agent, else
//    the file named as the certificate without -cert.pub);
// 2. the agent's identities (unless IdentitiesOnly), its certificates first;
// 3. each IdentityFile: its IDENTITY-cert.pub first (when no CertificateFile
//    is set, as ssh does), then the key itself.
// A user certificate outside its validity window is not offered (sshd would
// refuse it, and each refused login costs the whole host a penalty on
// OpenSSH >= 9.8); why is kept for the error. The daemon never prompts:
// encrypted keys without an agent are skipped.
import * as fs from 'node:fs/promises';
import { BaseAgent, createAgent, utils, type AgentAuthMethod, type ParsedKey, type PublicKeyAuthMethod } from './ssh2';
import type { ResolvedHost } from './ssh-config';
import {
  describeValidity, isCertificateType, parseCertificate, systemNow, validityProblem, type Certificate, type Now,
} from './certificates';
import { fingerprint } from './known-hosts';
import { parseSshKey, type CertificateAuthMethod } from './ssh2/certificates';

export type AuthMethod = AgentAuthMethod | PublicKeyAuthMethod | CertificateAuthMethod;

/** A user certificate, as the errors describe it. */
export interface CertificateInfo {
  /** Where it came from: a file, or "agent". */
  source: string;
  cert: Certificate;
}

export interface Credentials {
  methods: AuthMethod[];
  /** Why some identities were not offered; goes into AUTH_FAILED messages. */
  skipped: string[];
  /** Certificates not offered because they are outside their validity window (agent ones are added during authentication). */
  outOfWindow: CertificateInfo[];
  /** Certificates offered from files (agent ones are added during authentication). */
  offered: CertificateInfo[];
}

/** One certificate in a few words: where, key id, serial, CA, principals, window. */
export function describeCertificate(c: CertificateInfo): string {
  return `certificate ${c.source} (key id "${c.cert.keyId}", serial ${c.cert.serial}, CA ${fingerprint(c.cert.signatureKey)}, ` +
    `principals ${c.cert.principals.length ? c.cert.principals.join(',') : '(none)'}, valid ${describeValidity(c.cert)})`;
}

export async function credentialsFor(host: ResolvedHost, now: Now = systemNow): Promise<Credentials> {
  const creds: Credentials = { methods: [], skipped: [], outOfWindow: [], offered: [] };
  const t = now();
  const keys = await Promise.all(host.identityFiles.map((file) => readPrivateKey(file, creds.skipped)));
  const agent = host.identityAgent;

  /** A user certificate read from a file, or undefined (and why, in skipped). */
  const usable = async (file: string, missingIsQuiet: boolean): Promise<{ cert: Certificate; text: Buffer } | undefined> => {
    let text: Buffer;
    try {
      text = await fs.readFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !missingIsQuiet) creds.skipped.push(`${file}: ${(err as Error).message}`);
      return undefined;
    }
    const cert = certificateOf(text);
    if (cert instanceof Error) {
      creds.skipped.push(`${file}: ${cert.message}`);
      return undefined;
    }
    if (cert.role !== 'user') {
      creds.skipped.push(`${file}: not a user certificate`);
      return undefined;
    }
    if (validityProblem(cert, t)) {
      creds.outOfWindow.push({ source: file, cert });
      return undefined;
    }
    return { cert, text };
  };

  // 1. CertificateFile, each with its private key.
  for (const file of host.certificateFiles) {
    const found = await usable(file, false);
    if (!found) continue;
    const key = keys.find((k) => k?.publicKey.equals(found.cert.publicKey))
      ?? await readPrivateKey(file.replace(/-cert\.pub$/, ''), [], found.cert.publicKey);
    if (key) {
      creds.methods.push({ type: 'publickey', username: host.user, key: key.parsed, certificate: found.text });
    } else if (agent) {
      creds.methods.push({ type: 'agent', username: host.user, agent: new CertificateByAgent(agent, found.cert, found.text) });
    } else {
      creds.skipped.push(`${file}: no private key for this certificate among the IdentityFiles, and no agent`);
      continue;
    }
    creds.offered.push({ source: file, cert: found.cert });
  }

  // 2. The agent.
  if (agent && !host.identitiesOnly) {
    creds.methods.push({ type: 'agent', username: host.user, agent: new AgentView(agent, now, creds) });
  }

  // 3. IdentityFiles, each with the certificate beside it first.
  for (let i = 0; i < host.identityFiles.length; i++) {
    const key = keys[i];
    if (!key) continue;
    if (host.certificateFiles.length === 0) {
      const found = await usable(`${host.identityFiles[i]}-cert.pub`, true);
      if (found && found.cert.publicKey.equals(key.publicKey)) {
        creds.methods.push({ type: 'publickey', username: host.user, key: key.parsed, certificate: found.text });
        creds.offered.push({ source: `${host.identityFiles[i]}-cert.pub`, cert: found.cert });
      } else if (found) {
        creds.skipped.push(`${host.identityFiles[i]}-cert.pub: certifies another key than ${host.identityFiles[i]}`);
      }
    }
    creds.methods.push({ type: 'publickey', username: host.user, key: key.parsed });
  }
  return creds;
}

interface PrivateKey { parsed: ParsedKey; publicKey: Buffer }

/** A private key file, parsed; undefined when missing (quietly) or unusable (reason in skipped). */
async function readPrivateKey(file: string, skipped: string[], wanted?: Buffer): Promise<PrivateKey | undefined> {
  let text: Buffer;
  try {
    text = await fs.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') skipped.push(`${file}: ${(err as Error).message}`);
    return undefined;
  }
  const parsed = utils.parseKey(text);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key instanceof Error || !key.isPrivateKey()) {
    skipped.push(`${file}: ${key instanceof Error ? key.message : 'not a private key'}`);
    return undefined;
  }
  const publicKey = key.getPublicSSH();
  if (wanted && !publicKey.equals(wanted)) return undefined;
  return { parsed: key, publicKey };
}

/** The certificate in an OpenSSH public key line (or blob), or why there is none. */
function certificateOf(text: Buffer): Certificate | Error {
  const parsed = parseSshKey(text);
  if (parsed instanceof Error) return new Error(`not a certificate ssh2 can read (${parsed.message})`);
  if (!isCertificateType(parsed.type)) return new Error(`not a certificate (a ${parsed.type} key)`);
  try {
    return parseCertificate(parsed.getPublicSSH());
  } catch (err) {
    return err as Error;
  }
}

// ---- agents ----------------------------------------------------------------

type Identities = (err: Error | undefined, keys?: ParsedKey[]) => void;

const noIdentities = (): Error => new Error('the agent listed no identities');
type Signed = (err?: Error | null, signature?: Buffer) => void;

/**
 * The agent as ssh offers it: its certificates before its plain keys,
 * without the certificates outside their window (recorded in the
 * credentials for the error, as for files).
 */
class AgentView extends BaseAgent<ParsedKey> {
  private readonly agent: BaseAgent;

  constructor(socket: string, private readonly now: Now, private readonly creds: Credentials) {
    super();
    this.agent = createAgent(socket);
  }

  getIdentities(cb: Identities): void {
    this.agent.getIdentities((err, keys) => {
      if (err || !keys) return cb(err ?? noIdentities());
      const certs: ParsedKey[] = [];
      const plain: ParsedKey[] = [];
      for (const raw of keys) {
        const key = parseSshKey(raw as ParsedKey);
        if (key instanceof Error) continue;
        if (!isCertificateType(key.type)) {
          plain.push(key);
          continue;
        }
        let cert: Certificate;
        try {
          cert = parseCertificate(key.getPublicSSH());
        } catch {
          continue;
        }
        const info = { source: `agent (${key.comment || 'no comment'})`, cert };
        if (cert.role !== 'user') continue;
        if (validityProblem(cert, this.now())) this.creds.outOfWindow.push(info);
        else {
          this.creds.offered.push(info);
          certs.push(key);
        }
      }
      cb(undefined, [...certs, ...plain]);
    });
  }

  sign(pubKey: ParsedKey, data: Buffer, options: unknown, cb?: Signed): void {
    this.agent.sign(pubKey, data, options as never, cb as never);
  }
}

/** A CertificateFile whose private key the agent holds: the certificate is offered, the agent signs with the key. */
class CertificateByAgent extends BaseAgent<ParsedKey> {
  private readonly agent: BaseAgent;
  private key: ParsedKey | undefined;

  constructor(socket: string, private readonly cert: Certificate, private readonly text: Buffer) {
    super();
    this.agent = createAgent(socket);
  }

  getIdentities(cb: Identities): void {
    this.agent.getIdentities((err, keys) => {
      if (err || !keys) return cb(err ?? noIdentities());
      this.key = (keys as ParsedKey[]).find((k) => !(k instanceof Error) && k.getPublicSSH().equals(this.cert.publicKey));
      const offered = parseSshKey(this.text);
      cb(undefined, this.key && !(offered instanceof Error) ? [offered] : []);
    });
  }

  sign(_pubKey: ParsedKey, data: Buffer, options: unknown, cb?: Signed): void {
    if (!this.key) return cb?.(new Error('the agent no longer holds the certificate\'s key'));
    this.agent.sign(this.key, data, options as never, cb as never);
  }
}
