// Keys, CAs and certificates for the tests, made by OpenSSH's own
// ssh-keygen (-s signs), so that what sshmux reads is what users have.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Key {
  /** The private key file; its public half is `${privatePath}.pub`. */
  privatePath: string;
  /** "type base64", as a known_hosts or authorized_keys line holds it. */
  line: string;
  blob: Buffer;
}

export function makeKey(dir: string, name: string, type = 'ed25519', bits?: number): Key {
  const privatePath = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(bits ? ['-b', String(bits)] : []), '-N', '', '-C', '', '-f', privatePath]);
  return keyAt(privatePath);
}

export function keyAt(privatePath: string): Key {
  const line = fs.readFileSync(`${privatePath}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  return { privatePath, line, blob: Buffer.from(line.split(' ')[1], 'base64') };
}

export interface SignOptions {
  /** Principals (-n); none: a certificate without principals. */
  principals?: string[];
  /** -V: e.g. "-5m:+1h", "+1m", "20200101:20200102". Default: valid from 5 minutes ago for an hour. */
  validity?: string;
  host?: boolean;
  id?: string;
  serial?: number;
  /** -t for the CA's signature, e.g. rsa-sha2-256 or ssh-rsa. */
  signatureAlgorithm?: string;
  /** Where to write it (default: the key's -cert.pub). */
  out?: string;
}

export interface Cert { path: string; line: string; blob: Buffer }

/** Signs `key` with `ca` (ssh-keygen -s); the certificate lands at KEY-cert.pub, or moved to `out`. */
export function signKey(ca: Key, key: Key, opts: SignOptions = {}): Cert {
  const args = ['-q', '-s', ca.privatePath, '-I', opts.id ?? 'sshmux-test', '-z', String(opts.serial ?? 1),
    '-V', opts.validity ?? '-5m:+1h'];
  if (opts.host) args.push('-h');
  if (opts.principals?.length) args.push('-n', opts.principals.join(','));
  if (opts.signatureAlgorithm) args.push('-t', opts.signatureAlgorithm);
  execFileSync('ssh-keygen', [...args, `${key.privatePath}.pub`], { stdio: 'pipe' });
  let certPath = `${key.privatePath}-cert.pub`;
  if (opts.out && opts.out !== certPath) {
    fs.renameSync(certPath, opts.out);
    certPath = opts.out;
  }
  const line = fs.readFileSync(certPath, 'utf8').trim();
  return { path: certPath, line, blob: Buffer.from(line.split(/\s+/)[1], 'base64') };
}
