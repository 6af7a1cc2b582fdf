// Host-key checking against known_hosts files, as ssh does it. ssh2
// accepts every host key unless told otherwise, so this is the only thing
// standing between the daemon and a man in the middle.
//
// Understood: plain and hashed (|1|salt|hash) names, "[host]:port" for
// non-22 ports, wildcard and negated patterns, @revoked. Ignored:
// @cert-authority lines (ssh2 negotiates no host certificates).
import { createHash, createHmac } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { globMatch } from '../glob';

export type StrictHostKeyChecking = 'yes' | 'accept-new' | 'no';

export interface HostKeyCheck {
  /** Name the key is filed under: HostKeyAlias, else the HostName. */
  host: string;
  port: number;
  /** User files first, then global ones, as ssh reads them. */
  files: string[];
  /** Where accept-new / no record a new key (the first UserKnownHostsFile). */
  addTo?: string;
  strict: StrictHostKeyChecking;
}

export type HostKeyVerdict =
  | { ok: true; added: boolean; warning?: string }
  | { ok: false; code: 'HOST_KEY_UNKNOWN' | 'HOST_KEY_MISMATCH' | 'HOST_KEY_REVOKED'; message: string };

interface Entry {
  file: string;
  line: number;
  marker: '' | 'revoked';
  /** Comma-separated patterns, or a hashed name. */
  names: string;
  keyType: string;
  key: Buffer;
}

/** ssh files a host on port 22 under its name, any other port as "[name]:port". */
export function lookupName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** "SHA256:..." as ssh-keygen -l prints it. */
export function fingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** Key types known for the host (revoked keys excluded), to steer negotiation toward them as ssh does. */
export async function knownKeyTypes(check: Pick<HostKeyCheck, 'host' | 'port' | 'files'>): Promise<string[]> {
  const name = lookupName(check.host, check.port);
  const types = new Set<string>();
  for (const file of check.files) {
    for (const e of await readEntries(file)) if (e.marker === '' && matchesName(e.names, name)) types.add(e.keyType);
  }
  return [...types];
}

/** Host-key algorithms ssh2 should offer, given the known key types; undefined leaves ssh2's default. */
export function preferredHostKeyAlgorithms(types: string[]): string[] | undefined {
  const algorithms: string[] = [];
  for (const type of types) {
    if (type === 'ssh-rsa') algorithms.push('rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa');
    else if (SUPPORTED_KEY_TYPES.has(type)) algorithms.push(type);
  }
  return algorithms.length ? algorithms : undefined;
}

const SUPPORTED_KEY_TYPES = new Set(['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-dss']);

export async function verifyHostKey(check: HostKeyCheck, keyBlob: Buffer): Promise<HostKeyVerdict> {
  const name = lookupName(check.host, check.port);
  const keyType = blobKeyType(keyBlob);
  const shown = `${keyType} key ${fingerprint(keyBlob)}`;
  const matching: Entry[] = [];
  for (const file of check.files) {
    for (const e of await readEntries(file)) if (matchesName(e.names, name)) matching.push(e);
  }

  const revoked = matching.find((e) => e.marker === 'revoked' && e.key.equals(keyBlob));
  if (revoked) {
    return {
      ok: false, code: 'HOST_KEY_REVOKED',
      message: `the ${shown} presented by ${name} is marked @revoked in ${revoked.file}:${revoked.line}; refusing to connect. ` +
        'Install a new host key on the server and add it to known_hosts',
    };
  }
  const plain = matching.filter((e) => e.marker === '');
  if (plain.some((e) => e.key.equals(keyBlob))) return { ok: true, added: false };

  const sameType = plain.find((e) => e.keyType === keyType);
  if (sameType) {
    const message = `REMOTE HOST IDENTIFICATION HAS CHANGED for ${name}: it presented ${shown}, but ${sameType.file}:${sameType.line} ` +
      `holds a different ${keyType} key. Someone could be intercepting the connection, or the host key was just replaced. ` +
      `If the change is expected, remove the old key with: ssh-keygen -R '${name}' -f ${sameType.file}`;
    if (check.strict === 'no') return { ok: true, added: false, warning: message };
    return { ok: false, code: 'HOST_KEY_MISMATCH', message };
  }

  if (check.strict === 'yes' || !check.addTo) {
    const others = plain.length ? ` (only ${[...new Set(plain.map((e) => e.keyType))].join(', ')} keys are known for it)` : '';
    return {
      ok: false, code: 'HOST_KEY_UNKNOWN',
      message: `no host key is known for ${name}${others} and StrictHostKeyChecking is ${check.strict}; it presented ${shown}. ` +
        `Check that fingerprint out of band, then add the key to ${check.files[0] ?? '~/.ssh/known_hosts'} ` +
        `(ssh-keyscan ${check.port === 22 ? '' : `-p ${check.port} `}${check.host}), ` +
        'or set StrictHostKeyChecking accept-new for this host in the daemon\'s ssh_config',
    };
  }
  await appendKey(check.addTo, `${name} ${keyType} ${keyBlob.toString('base64')}\n`);
  return { ok: true, added: true, warning: `permanently added ${shown} for ${name} to ${check.addTo}` };
}

// ---- reading -------------------------------------------------------------

interface Cached { mtimeMs: number; size: number; entries: Entry[] }
const cache = new Map<string, Cached>();

/** Parsed entries of one file, re-read only when it changes; a missing file is empty. */
async function readEntries(file: string): Promise<Entry[]> {
  let stat: fs.Stats;
  try {
    stat = await fsp.stat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw err;
  }
  const hit = cache.get(file);
  if (hit && hit.mtimeMs === stat.mtimeMs && hit.size === stat.size) return hit.entries;
  const entries = parseKnownHosts(file, await fsp.readFile(file, 'utf8'));
  cache.set(file, { mtimeMs: stat.mtimeMs, size: stat.size, entries });
  return entries;
}

export function parseKnownHosts(file: string, text: string): Entry[] {
  const entries: Entry[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const fields = lines[i].trim().split(/\s+/);
    if (!fields[0] || fields[0].startsWith('#')) continue;
    let marker: Entry['marker'] = '';
    if (fields[0].startsWith('@')) {
      // @cert-authority lines name CAs, not host keys; skip them.
      if (fields[0] !== '@revoked') continue;
      marker = 'revoked';
      fields.shift();
    }
    if (fields.length < 3) continue;
    const key = Buffer.from(fields[2], 'base64');
    if (key.length === 0 || blobKeyType(key) !== fields[1]) continue; // malformed: ssh skips these too
    entries.push({ file, line: i + 1, marker, names: fields[0], keyType: fields[1], key });
  }
  return entries;
}

function blobKeyType(blob: Buffer): string {
  if (blob.length < 4) return '';
  const len = blob.readUInt32BE(0);
  return len > 0 && len < 64 && 4 + len <= blob.length ? blob.toString('latin1', 4, 4 + len) : '';
}

// ---- matching ------------------------------------------------------------

/** ssh's rule: some positive pattern matches and no negated one does; hashed names match exactly. */
export function matchesName(names: string, name: string): boolean {
  if (names.startsWith('|1|')) return matchesHashed(names, name);
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

function matchesHashed(hashed: string, name: string): boolean {
  const parts = hashed.split('|'); // ['', '1', salt, hash]
  if (parts.length !== 4) return false;
  const salt = Buffer.from(parts[2], 'base64');
  return createHmac('sha1', salt).update(name).digest('base64') === parts[3];
}

// ---- writing -------------------------------------------------------------

const appending = new Map<string, Promise<void>>();

/** Appends one line; serialized per file so concurrent handshakes cannot interleave writes. */
function appendKey(file: string, line: string): Promise<void> {
  const previous = appending.get(file) ?? Promise.resolve();
  const next = previous.then(async () => {
    await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    // Another handshake may have recorded the same key a moment ago.
    const current = await fsp.readFile(file, 'utf8').catch(() => '');
    if (current.split('\n').includes(line.trimEnd())) return;
    const prefix = current.length && !current.endsWith('\n') ? '\n' : '';
    await fsp.appendFile(file, prefix + line, { mode: 0o600 });
  });
  appending.set(file, next.catch(() => undefined));
  return next;
}
