// The SSH front door's keys: its host keys (ed25519, ECDSA and RSA, as sshd
// has one of each, so that every client finds a type it knows: JSch 0.1.5x
// knows no ed25519, a FIPS-mode client only ECDSA and RSA), the client key it
// generates when no gatewayAuthorizedKeys file is configured, and the
// authorized_keys file that says who may log in. Keys are generated in-process
// (ssh2's generator, OpenSSH format) and written 0600 with O_EXCL, so a file
// another user planted is never used: an existing key must be a regular file
// owned by the daemon's user and readable by nobody else, as sshd insists too.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { utils, type ParsedKey, type ServerHostKeyAlgorithm } from '../ssh/ssh2';
import { fingerprint } from '../ssh/known-hosts';
import type { Logger } from '../log';

export class GatewayKeyError extends Error {
  override readonly name = 'GatewayKeyError';
}

export interface KeyFile {
  path: string;
  /** The private key, OpenSSH format. */
  privateKey: string;
  /** "ssh-ed25519 AAAA...", for known_hosts and authorized_keys. */
  publicLine: string;
  parsed: ParsedKey;
}

export type KeyType = 'ed25519' | 'ecdsa' | 'rsa';

/** The host keys, in the order they are offered, named as sshd names its own. */
export const HOST_KEYS: ReadonlyArray<{ type: KeyType; file: string }> = [
  { type: 'ed25519', file: 'gateway_host_ed25519_key' },
  { type: 'ecdsa', file: 'gateway_host_ecdsa_key' },
  { type: 'rsa', file: 'gateway_host_rsa_key' },
];
export const CLIENT_KEY_FILE = 'gateway_client_ed25519_key';
/** Written into the state directory at each start: a known_hosts line per host key, for clients on this machine. */
export const KNOWN_HOSTS_FILE = 'gateway_known_hosts';

/** As ssh-keygen's defaults: P-256 for ECDSA (the curve every ECDSA client has), 3072 bits for RSA. */
const GENERATOR_OPTIONS: Record<KeyType, { bits?: number }> = { ed25519: {}, ecdsa: { bits: 256 }, rsa: { bits: 3072 } };

/**
 * Where the daemon keeps what must outlive a restart (the front door's keys):
 * --state-dir, else systemd's StateDirectory, else the XDG state directory.
 * Not beside the socket: /run and $XDG_RUNTIME_DIR are emptied at boot, and a
 * host key that changes at every boot would teach users to ignore warnings.
 */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.STATE_DIRECTORY) return env.STATE_DIRECTORY.split(':')[0];
  const base = env.XDG_STATE_HOME || path.join(env.HOME || os.homedir(), '.local', 'state');
  return path.join(base, 'sshmux');
}

/** The key at `file`, generated (of `type`, ed25519 unless said) if there is none yet. */
export function loadOrCreateKey(file: string, comment: string, type: KeyType = 'ed25519'): KeyFile {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  if (!fs.existsSync(file)) create(file, comment, type);
  checkPrivate(file);
  const privateKey = fs.readFileSync(file, 'utf8');
  const parsed = parseOne(utils.parseKey(privateKey), file);
  if (parsed.isPrivateKey() !== true) throw new GatewayKeyError(`${file} holds no private key`);
  return { path: file, privateKey, publicLine: publicLine(parsed), parsed };
}

/** The host keys in `stateDir`, each generated on the first start. */
export function loadHostKeys(stateDir: string): KeyFile[] {
  return HOST_KEYS.map(({ type, file }) => {
    const key = loadOrCreateKey(path.join(stateDir, file), 'sshmux gateway host key', type);
    if (!keyTypeIs(key.parsed.type, type)) {
      throw new GatewayKeyError(`${key.path} holds an ${key.parsed.type} key, not ${type}: remove it and a new key is generated (or put it in the file for its type)`);
    }
    return key;
  });
}

function keyTypeIs(sshType: string, type: KeyType): boolean {
  return type === 'ecdsa' ? sshType.startsWith('ecdsa-sha2-') : sshType === (type === 'rsa' ? 'ssh-rsa' : 'ssh-ed25519');
}

/**
 * The signature algorithms a host key is offered under. RSA only with SHA-2
 * (RFC 8332): SHA-1 `ssh-rsa` is not offered, as OpenSSH stopped offering
 * it in 8.8 (ssh2 would add it of its own accord but for patch 034).
 */
export function hostKeyAlgorithms(keys: KeyFile[]): ServerHostKeyAlgorithm[] {
  return keys.flatMap((k): ServerHostKeyAlgorithm[] => (k.parsed.type === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256'] : [k.parsed.type as ServerHostKeyAlgorithm]));
}

/**
 * Writes `lines` (known_hosts lines, one per host key) to the state
 * directory's gateway_known_hosts, whole or not at all (a client reading it
 * meanwhile sees the old file or the new one), readable by all: host keys are
 * public, and a client on this machine can use the file as its
 * UserKnownHostsFile.
 */
export function writeKnownHosts(stateDir: string, lines: string[]): string {
  const file = path.join(stateDir, KNOWN_HOSTS_FILE);
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    fs.writeFileSync(tmp, lines.map((l) => `${l}\n`).join(''), { mode: 0o644, flag: 'wx' });
    fs.renameSync(tmp, file);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return file;
}

export function publicLine(key: ParsedKey): string {
  return `${key.type} ${key.getPublicSSH().toString('base64')}`;
}

/**
 * A pair from ssh2's generator, regenerated while ssh2 cannot read its own
 * output: for ed25519 it strips every leading zero byte of the public key,
 * so one pair in 256 carries a 31-byte key that parseKey() calls malformed
 * (mscdex/ssh2#1390, #1513). Sixteen tries fail together with odds of
 * 2^-128. Its ECDSA and RSA output reads back (DER integers are already SSH
 * mpints); it is checked all the same, as a generator change would show here.
 */
export function generateKey(type: KeyType, comment: string): { private: string; public: string } {
  for (let attempt = 0; attempt < 16; attempt++) {
    const pair = utils.generateKeyPairSync(type, { ...GENERATOR_OPTIONS[type], comment });
    if (!(utils.parseKey(pair.private) instanceof Error) && !(utils.parseKey(pair.public) instanceof Error)) return pair;
  }
  throw new GatewayKeyError(`ssh2 generated no readable ${type} key in 16 tries`);
}

function create(file: string, comment: string, type: KeyType): void {
  const pair = generateKey(type, comment);
  // Written under a random name, then linked into place: a reader never sees
  // half a key, and a daemon starting at the same moment keeps its own key
  // rather than having it replaced (link, unlike rename, refuses to overwrite).
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, pair.private, { mode: 0o600, flag: 'wx' });
  try {
    fs.linkSync(tmp, file);
    fs.writeFileSync(`${file}.pub`, `${pair.public}\n`, { mode: 0o644 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

function checkPrivate(file: string): void {
  const st = fs.lstatSync(file);
  const uid = process.getuid?.() ?? 0;
  if (!st.isFile()) throw new GatewayKeyError(`${file} is not a regular file (a symbolic link?); remove it and a new key is generated`);
  if (st.uid !== uid) throw new GatewayKeyError(`${file} is owned by uid ${st.uid}, not by the daemon's user (${uid}); remove it and a new key is generated`);
  if ((st.mode & 0o077) !== 0) {
    throw new GatewayKeyError(`${file} has mode ${(st.mode & 0o777).toString(8)}: a private key must be readable by its owner only (chmod 600)`);
  }
}

function parseOne(result: ParsedKey | ParsedKey[] | Error, what: string): ParsedKey {
  if (result instanceof Error) {
    throw new GatewayKeyError(`${what}: ${result.message}; if sshmux generated it, remove it and a new key is generated at start`);
  }
  return Array.isArray(result) ? result[0] : result;
}

/** Key types an authorized_keys line may start with; anything else in front is an option. */
const KEY_TYPE = /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9-]+@openssh\.com)(-cert-v01@openssh\.com)?$/;

export interface AuthorizedKey { key: ParsedKey; blob: Buffer; fingerprint: string; where: string }

/**
 * Who may use the front door. Either a fixed list (the generated client key)
 * or an authorized_keys file, re-read when it changes, so adding a key needs
 * no reload. A file others could write (or in a directory they could write)
 * authorizes nobody: otherwise any local user could add their own key.
 */
export class AuthorizedKeys {
  private keys: AuthorizedKey[] = [];
  private stamp = '';

  private constructor(readonly file: string | undefined, fixed: AuthorizedKey[], private readonly log: Logger) {
    this.keys = fixed;
  }

  static fromFile(file: string, log: Logger): AuthorizedKeys {
    const keys = new AuthorizedKeys(path.resolve(file), [], log);
    keys.refresh();
    return keys;
  }

  static only(key: KeyFile, log: Logger): AuthorizedKeys {
    const blob = key.parsed.getPublicSSH();
    return new AuthorizedKeys(undefined, [{ key: key.parsed, blob, fingerprint: fingerprint(blob), where: key.path }], log);
  }

  get count(): number {
    return this.keys.length;
  }

  /** The listed key with this public blob, if any. */
  find(blob: Buffer): AuthorizedKey | undefined {
    this.refresh();
    return this.keys.find((k) => k.blob.equals(blob));
  }

  private refresh(): void {
    if (!this.file) return;
    let stamp: string;
    try {
      const st = fs.statSync(this.file);
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}:${st.mode}:${st.uid}`;
    } catch (err) {
      stamp = `missing:${(err as Error).message}`;
    }
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    try {
      this.checkModes();
      this.keys = this.parse(fs.readFileSync(this.file, 'utf8'));
      this.log.info({ file: this.file, keys: this.keys.length }, 'gateway: authorized keys loaded');
    } catch (err) {
      this.keys = [];
      this.log.error({ file: this.file, err: (err as Error).message }, 'gateway: no key is authorized until this is fixed');
    }
  }

  private checkModes(): void {
    const uid = process.getuid?.() ?? 0;
    for (const p of [this.file!, path.dirname(this.file!)]) {
      const st = fs.statSync(p);
      if (st.uid !== uid && st.uid !== 0) throw new Error(`${p} is owned by uid ${st.uid}, neither the daemon's user nor root`);
      if ((st.mode & 0o022) !== 0) throw new Error(`${p} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}), so anyone could add a key`);
    }
  }

  private parse(text: string): AuthorizedKey[] {
    const keys: AuthorizedKey[] = [];
    text.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      if (!line || line.startsWith('#')) return;
      const where = `${this.file}:${i + 1}`;
      const [type, b64] = line.split(/\s+/);
      if (!KEY_TYPE.test(type)) {
        // from=, command=, restrict...: ignoring them would grant more than the line says.
        this.log.warn({ line: where }, 'gateway: key options (from=, command=, ...) are not supported; this key is not authorized');
        return;
      }
      const parsed = utils.parseKey(`${type} ${b64 ?? ''}`);
      if (parsed instanceof Error) {
        this.log.warn({ line: where, err: parsed.message }, 'gateway: unreadable key; skipped');
        return;
      }
      const key = Array.isArray(parsed) ? parsed[0] : parsed;
      const blob = key.getPublicSSH();
      keys.push({ key, blob, fingerprint: fingerprint(blob), where });
    });
    return keys;
  }
}
