// Host-key checking against known_hosts files, deciding as OpenSSH's ssh
// does (sshconnect.c check_host_key, hostfile.c). ssh2 accepts every host
// key unless told otherwise, so this is the only thing standing between
// the daemon and a man in the middle.
//
// The name looked up is HostKeyAlias verbatim (lowercased, as ssh does),
// else the HostName, as "[host]:port" for ports other than 22, falling back
// to the bare name, read-only, when "[host]:port" knows nothing. Entries are
// plain or hashed (|1|salt|hash) names, comma lists of `*`/`?` patterns with
// `!` negation, `@cert-authority` (a CA trusted for the patterns' hosts)
// and `@revoked` (a key or CA refused). A host certificate is accepted when
// a CA line for the name signed it and it is valid now for the name
// (certificates.ts); otherwise its plain key is looked up, as ssh does.
// Deliberate difference: @revoked refuses even under StrictHostKeyChecking
// no (ssh connects then, with a warning).
import { createHash, createHmac, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { globMatch } from '../glob';
import {
  blobType, certificateSignatureProblem, hostCertificateProblem, isCertificateType, parseCertificate, systemNow,
  type Certificate, type Now,
} from './certificates';

export type StrictHostKeyChecking = 'yes' | 'accept-new' | 'no';

export interface HostKeyCheck {
  /** ssh's host name: HostName after %h, lowercased. */
  hostname: string;
  port: number;
  /** HostKeyAlias: the name keys are filed under, used verbatim (ssh lowercases it). */
  hostKeyAlias?: string;
  /** UserKnownHostsFile entries; the first is where accept-new and no record a new key. */
  userFiles: string[];
  /** GlobalKnownHostsFile entries, read after the user's. */
  globalFiles: string[];
  strict: StrictHostKeyChecking;
  /** HashKnownHosts: record new names hashed. */
  hashKnownHosts?: boolean;
  /** For certificate validity; seconds since the epoch. */
  now?: Now;
}

export type HostKeyCode = 'HOST_KEY_UNKNOWN' | 'HOST_KEY_MISMATCH' | 'HOST_KEY_REVOKED';

export type HostKeyVerdict =
  | { ok: true; added: boolean; warning?: string; certificate?: boolean }
  | { ok: false; code: HostKeyCode; message: string };

type Marker = '' | 'cert-authority' | 'revoked';

export interface Entry {
  file: string;
  line: number;
  marker: Marker;
  /** Comma-separated patterns, or a hashed name. */
  names: string;
  keyType: string;
  key: Buffer;
}

/** ssh files a host on port 22 under its name, any other port as "[name]:port". */
export function lookupName(host: string, port: number): string {
  return port === 22 || port === 0 ? host : `[${host}]:${port}`;
}

/** The name a check looks up: HostKeyAlias verbatim, else [host]:port. */
export function keyName(check: Pick<HostKeyCheck, 'hostname' | 'port' | 'hostKeyAlias'>): string {
  return check.hostKeyAlias ?? lookupName(check.hostname, check.port);
}

/** "SHA256:..." as ssh-keygen -l prints it. */
export function fingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** sshkey_type's words: ED25519, RSA, ECDSA, and -CERT for certificates. */
function typeWord(keyType: string): string {
  const cert = isCertificateType(keyType);
  const base = cert ? keyType.slice(0, keyType.indexOf('-cert-')) : keyType;
  const word = base === 'ssh-ed25519' ? 'ED25519' : base === 'ssh-rsa' ? 'RSA' : base === 'ssh-dss' ? 'DSA'
    : base.startsWith('ecdsa-') ? 'ECDSA' : base;
  return cert ? `${word}-CERT` : word;
}

// ---- which host key algorithms to ask for --------------------------------

/**
 * OpenSSH's default HostKeyAlgorithms, as ssh2 can verify them: certificates
 * first, then plain keys; ssh-rsa (SHA-1) last, as ssh2 offers it.
 */
export const HOST_KEY_ALGORITHMS = [
  'ssh-ed25519-cert-v01@openssh.com', 'ecdsa-sha2-nistp256-cert-v01@openssh.com', 'ecdsa-sha2-nistp384-cert-v01@openssh.com',
  'ecdsa-sha2-nistp521-cert-v01@openssh.com', 'rsa-sha2-512-cert-v01@openssh.com', 'rsa-sha2-256-cert-v01@openssh.com',
  'ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa',
];

/** The key type an algorithm's host key has: rsa-sha2-512-cert-v01 -> ssh-rsa. */
function algorithmKeyType(algorithm: string): string {
  const plain = algorithm.replace(/-cert-v01@openssh\.com$/, '');
  return plain.startsWith('rsa-sha2-') ? 'ssh-rsa' : plain;
}

/**
 * The algorithms to ask for, ordered as ssh's order_hostkeyalgs does: the
 * default list as it is when a plain key of its first type is known for
 * the name; otherwise the algorithms of known key types first (and every
 * certificate algorithm, when a @cert-authority line names the host), the
 * rest after, each group in the default order. A known ssh-dss key adds
 * ssh-dss, which ssh2 verifies but does not offer by default.
 */
export async function hostKeyAlgorithms(check: Pick<HostKeyCheck, 'hostname' | 'port' | 'hostKeyAlias' | 'userFiles' | 'globalFiles'>): Promise<string[]> {
  const entries = await matchingEntries([...check.userFiles, ...check.globalFiles], keyName(check));
  const plainTypes = new Set(entries.filter((e) => e.marker === '').map((e) => e.keyType));
  const anyCa = entries.some((e) => e.marker === 'cert-authority');
  const all = plainTypes.has('ssh-dss') ? [...HOST_KEY_ALGORITHMS, 'ssh-dss'] : HOST_KEY_ALGORITHMS;
  if (plainTypes.has(algorithmKeyType(all[0]))) return all;
  const first: string[] = [];
  const last: string[] = [];
  for (const alg of all) {
    const cert = isCertificateType(alg);
    if ((cert && anyCa) || plainTypes.has(algorithmKeyType(alg))) first.push(alg);
    else last.push(alg);
  }
  return [...first, ...last];
}

// ---- the decision ----------------------------------------------------------

type Status = 'ok' | 'new' | 'changed' | 'revoked';

/** The presented key as check_host_key sees it: a certificate (until downgraded) or a plain key. */
interface Presented {
  blob: Buffer;
  type: string;
  cert?: Certificate;
}

/** check_hostkeys_by_key_or_type: CA lines for a certificate, plain lines for a key; then @revoked. */
function lookUp(entries: Entry[], key: Presented): { status: Status; found?: Entry } {
  let status: Status = 'new';
  let found: Entry | undefined;
  const want: Marker = key.cert ? 'cert-authority' : '';
  for (const e of entries) {
    if (e.marker !== want) continue;
    if (key.cert) {
      if (e.key.equals(key.cert.signatureKey)) {
        status = 'ok';
        found = e;
        break;
      }
    } else {
      if (e.key.equals(key.blob)) {
        status = 'ok';
        found = e;
        break;
      }
      // A different key, of whatever type, is known for the name.
      status = 'changed';
      found = e;
    }
  }
  const plainKey = key.cert ? key.cert.publicKey : key.blob;
  const revoked = entries.find((e) => e.marker === 'revoked' &&
    (e.key.equals(plainKey) || (key.cert !== undefined && e.key.equals(key.cert.signatureKey))));
  if (revoked) return { status: 'revoked', found: revoked };
  return { status, found };
}

/** Characters that make ssh refuse to record a host name (check_host_key). */
const UNRECORDABLE = /[@?*#[\]|'"\\]/;

export async function verifyHostKey(check: HostKeyCheck, keyBlob: Buffer): Promise<HostKeyVerdict> {
  const now = (check.now ?? systemNow)();
  const name = keyName(check);
  const files = [...check.userFiles, ...check.globalFiles];
  let key: Presented = { blob: keyBlob, type: blobType(keyBlob) };
  if (isCertificateType(key.type)) {
    // ssh reads a certificate whole or not at all: a bad one ends the handshake.
    let cert: Certificate;
    try {
      cert = parseCertificate(keyBlob);
    } catch (err) {
      return refuse('HOST_KEY_MISMATCH', `${name} presented a malformed host certificate (${(err as Error).message}). Host key verification failed`);
    }
    const bad = certificateSignatureProblem(cert);
    if (bad) {
      return refuse('HOST_KEY_MISMATCH',
        `${name} presented a host certificate whose ${bad} (CA ${fingerprint(cert.signatureKey)}): someone could be intercepting the connection. ` +
        'Host key verification failed');
    }
    key = { blob: keyBlob, type: key.type, cert };
  }
  const readonly = UNRECORDABLE.test(check.hostname) || check.userFiles.length === 0;
  const entries = await matchingEntries(files, name);
  /** Why a certificate was not accepted, told when its plain key is refused too. */
  let certNote = '';

  for (;;) {
    const shown = `${typeWord(key.type)} key ${fingerprint(key.cert ? key.cert.publicKey : key.blob)}`;
    const { status, found } = lookUp(entries, key);
    let failure: HostKeyVerdict | undefined;
    switch (status) {
      case 'ok': {
        if (key.cert) {
          const problem = hostCertificateProblem(key.cert, check.hostKeyAlias ?? check.hostname, now);
          if (problem) {
            certNote = `${problem}; signed by the CA in ${found!.file}:${found!.line}. `;
            break;
          }
          return { ok: true, added: false, certificate: true };
        }
        return { ok: true, added: false };
      }
      case 'new': {
        if (check.hostKeyAlias === undefined && check.port !== 22) {
          // ssh's "checking without port identifier": what is filed under the bare name counts, read-only.
          const bare = lookUp(await matchingEntries(files, check.hostname), key);
          if (bare.status === 'ok' && !key.cert) return { ok: true, added: false };
          if (bare.status === 'ok' && key.cert && hostCertificateProblem(key.cert, check.hostname, now) === undefined) {
            return { ok: true, added: false, certificate: true };
          }
        }
        if (key.cert) break; // no CA for it: try the plain key
        if (readonly || check.strict === 'yes') {
          const others = entries.filter((e) => e.marker === '');
          const known = others.length ? ` (keys of other types are known for it: ${[...new Set(others.map((e) => e.keyType))].join(', ')})` : '';
          failure = refuse('HOST_KEY_UNKNOWN',
            `${certNote}No ${typeWord(key.type)} host key is known for ${name} and you have requested strict checking${known}; ` +
            `it presented ${shown}. Host key verification failed. Check that fingerprint out of band, then add the key to ` +
            `${check.userFiles[0] ?? check.globalFiles[0] ?? '~/.ssh/known_hosts'} (ssh-keyscan ${check.port === 22 ? '' : `-p ${check.port} `}${check.hostname}` +
            `${check.hostKeyAlias ? `, filed under ${check.hostKeyAlias}` : ''}), or an @cert-authority line for the host's CA, ` +
            'or set StrictHostKeyChecking accept-new for this host in the daemon\'s ssh_config');
          break;
        }
        await appendKey(check.userFiles[0], name, key.blob, check.hashKnownHosts === true);
        return {
          ok: true, added: true,
          warning: `${certNote}Permanently added '${name}' (${typeWord(key.type)}) to the list of known hosts (${check.userFiles[0]}).`,
        };
      }
      case 'revoked':
        return refuse('HOST_KEY_REVOKED',
          `WARNING: REVOKED HOST KEY DETECTED! The ${shown} presented by ${name} is marked as revoked ` +
          `(@revoked in ${found!.file}:${found!.line}${key.cert && found!.key.equals(key.cert.signatureKey) ? ', its certificate\'s CA' : ''}). ` +
          'This could mean that a stolen key is being used to impersonate this host; refusing to connect. ' +
          'Install a new host key (or certificate) on the server and add it to known_hosts');
      case 'changed': {
        const message = `REMOTE HOST IDENTIFICATION HAS CHANGED for ${name}! It presented ${shown}; ` +
          `Offending ${typeWord(found!.keyType)} key in ${found!.file}:${found!.line}. ` +
          'Someone could be eavesdropping on you right now (man-in-the-middle attack), or the host key has just been changed. ' +
          `If the change is expected, remove the old key with: ssh-keygen -R '${name}' -f ${found!.file}`;
        if (check.strict === 'no') return { ok: true, added: false, warning: message };
        failure = refuse('HOST_KEY_MISMATCH', `${certNote}${message}. Host key for ${name} has changed and you have requested strict checking`);
        break;
      }
    }
    if (failure) return failure;
    if (!key.cert) throw new Error('unreachable: a plain key that was neither accepted nor refused');
    // No CA accepted the certificate: retry with its plain key, as ssh does.
    key = { blob: key.cert.publicKey, type: key.cert.keyType };
  }
}

function refuse(code: HostKeyCode, message: string): HostKeyVerdict {
  return { ok: false, code, message };
}

// ---- reading -------------------------------------------------------------

interface Cached { mtimeMs: number; size: number; ino: number; entries: Entry[] }
const cache = new Map<string, Cached>();

/** Entries of the files, in order, whose names match `name`. */
export async function matchingEntries(files: string[], name: string): Promise<Entry[]> {
  const out: Entry[] = [];
  for (const file of files) for (const e of await readEntries(file)) if (matchesName(e.names, name)) out.push(e);
  return out;
}

/** Parsed entries of one file, re-read only when it changes; a missing file is empty. */
async function readEntries(file: string): Promise<Entry[]> {
  let stat: fs.Stats;
  try {
    stat = await fsp.stat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES') return [];
    throw err;
  }
  if (!stat.isFile()) return []; // /dev/null and the like
  const hit = cache.get(file);
  if (hit && hit.mtimeMs === stat.mtimeMs && hit.size === stat.size && hit.ino === stat.ino) return hit.entries;
  const entries = parseKnownHosts(file, await fsp.readFile(file, 'utf8'));
  cache.set(file, { mtimeMs: stat.mtimeMs, size: stat.size, ino: stat.ino, entries });
  return entries;
}

/** Lines as hostkeys_foreach reads them; a line ssh would skip as invalid is left out. */
export function parseKnownHosts(file: string, text: string): Entry[] {
  const entries: Entry[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const fields = lines[i].trim().split(/[ \t]+/);
    if (!fields[0] || fields[0].startsWith('#')) continue;
    let marker: Marker = '';
    if (fields[0].startsWith('@')) {
      if (fields[0] === '@cert-authority') marker = 'cert-authority';
      else if (fields[0] === '@revoked') marker = 'revoked';
      else continue; // an unknown marker: the line is invalid
      fields.shift();
      if (fields[0]?.startsWith('@')) continue; // only one marker is allowed
    }
    if (fields.length < 3) continue;
    const key = Buffer.from(fields[2], 'base64');
    if (key.length === 0 || blobType(key) !== fields[1]) continue; // malformed: ssh skips these too
    if (fields[0].startsWith('|') && !validHash(fields[0])) continue;
    entries.push({ file, line: i + 1, marker, names: fields[0], keyType: fields[1], key });
  }
  return entries;
}

// ---- matching ------------------------------------------------------------

/** match_hostname: some positive pattern matches and no negated one does, case-insensitively; hashed names match exactly. */
export function matchesName(names: string, name: string): boolean {
  if (names.startsWith('|')) return matchesHashed(names, name);
  let matched = false;
  for (const pattern of names.split(',')) {
    const negated = pattern.startsWith('!');
    if (globMatch(negated ? pattern.slice(1) : pattern, name, { ignoreCase: true })) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

function validHash(hashed: string): boolean {
  const parts = hashed.split('|'); // ['', '1', salt, hash]
  return parts.length === 4 && parts[1] === '1' && Buffer.from(parts[2], 'base64').length === 20;
}

function matchesHashed(hashed: string, name: string): boolean {
  if (!validHash(hashed)) return false;
  const parts = hashed.split('|');
  const salt = Buffer.from(parts[2], 'base64');
  return createHmac('sha1', salt).update(name).digest('base64') === parts[3];
}

/** A name as HashKnownHosts records it: |1|salt|HMAC-SHA1(salt, name). */
export function hashName(name: string): string {
  const salt = randomBytes(20);
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;
}

// ---- writing -------------------------------------------------------------

const appending = new Map<string, Promise<void>>();

/** Records the key for the name (hashed or not); serialized per file so concurrent handshakes cannot interleave writes. */
function appendKey(file: string, name: string, blob: Buffer, hash: boolean): Promise<void> {
  const previous = appending.get(file) ?? Promise.resolve();
  const next = previous.then(async () => {
    await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    // Another handshake may have recorded the same key a moment ago.
    const current = await fsp.readFile(file, 'utf8').catch(() => '');
    if (parseKnownHosts(file, current).some((e) => e.marker === '' && e.key.equals(blob) && matchesName(e.names, name))) return;
    const prefix = current.length && !current.endsWith('\n') ? '\n' : '';
    await fsp.appendFile(file, `${prefix}${hash ? hashName(name) : name} ${blobType(blob)} ${blob.toString('base64')}\n`, { mode: 0o600 });
  });
  appending.set(file, next.catch(() => undefined));
  return next;
}
