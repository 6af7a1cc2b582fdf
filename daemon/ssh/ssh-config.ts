// Resolves a host alias as ssh does, from OpenSSH client config: the -F
// file, else ~/.ssh/config then /etc/ssh/ssh_config, first value wins.
//
// Host/Match evaluation is the ssh-config package's (SSHConfig#compute). This
// file adds what the package leaves out (Include, tokens, defaults,
// validation) and removes what a daemon must never do: `Match exec` runs a
// shell command, and CanonicalizeHostName + CanonicalDomains inside a Host
// block make the package spawn `nslookup` synchronously.
//
// Known differences from ssh, inherited from the package or chosen here:
// - Host patterns: `?` matches zero or one character (ssh: exactly one).
// - `Match host` sees HostName as written (before %h expansion); `Match user`
//   and `Match localuser` see the process's real user unless a User override
//   is given, not ResolverOptions.localUser. `Match canonical` never matches.
// - Include is textual (see expand()): an included file's own Host/Match
//   blocks apply even when the block the Include sits in does not match
//   (ssh would skip them).
// - `%l` is the short local host name (as the daemon's callers expect).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import SSHConfig, { LineType, type Line } from 'ssh-config';
import { argvSplit } from '../../proto/argv-split';
import { globRegExp } from '../glob';

// The type lives with the known_hosts checker that consumes it; re-exported
// so callers can take everything host-related from here.
export type { StrictHostKeyChecking } from './known-hosts';
import type { StrictHostKeyChecking } from './known-hosts';
import { cannotReadSshConfig } from '../errors';

export interface JumpHop { user?: string; host: string; port?: number }

export interface ResolvedHost {
  /** The name as asked. */
  alias: string;
  /** HostName after %h expansion (lowercased, as ssh does), else the alias. */
  hostname: string;
  port: number;
  user: string;
  /** Absolute paths, in the order ssh would try them. */
  identityFiles: string[];
  /**
   * CertificateFile entries (absolute paths). None configured: ssh tries
   * IDENTITY-cert.pub beside each IdentityFile instead (auth.ts).
   */
  certificateFiles: string[];
  identitiesOnly: boolean;
  /** Agent socket path; undefined means no agent. */
  identityAgent?: string;
  userKnownHostsFiles: string[];
  globalKnownHostsFiles: string[];
  /** HostKeyAlias, lowercased as ssh does. */
  hostKeyAlias?: string;
  strictHostKeyChecking: StrictHostKeyChecking;
  /** HashKnownHosts: names recorded by accept-new or no are hashed. */
  hashKnownHosts: boolean;
  connectTimeoutMs: number;
  serverAliveIntervalMs: number;
  serverAliveCountMax: number;
  proxyJump: JumpHop[];
  /** Raw, never executed here; the daemon refuses hosts that need one. */
  proxyCommand?: string;
  batchMode: boolean;
  sendEnv: string[];
  setEnv: Record<string, string>;
}

/** The message names the file, key or value at fault and what to do about it. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export interface ResolverOptions {
  /** Like ssh -F: only this file is read, and it must exist. */
  configFile?: string;
  home?: string;
  /** Defaults to /etc/ssh/ssh_config. */
  systemConfig?: string;
  localUser?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * The block `sshmuxctl ssh-config` prints sends ssh through this daemon
 * (a ProxyCommand to its front door, the door's host key and client key,
 * a ControlMaster). ssh must apply it; the daemon, resolving its own
 * connections upstream from the same files, must not, so it reads the lines
 * from the first marker to the second (or to the end of the file) as blank.
 */
export const CLIENT_BLOCK_BEGIN = '# >>> sshmux ssh-config';
export const CLIENT_BLOCK_END = '# <<< sshmux ssh-config';
/** ssh's READCONF_MAX_DEPTH. */
const MAX_INCLUDE_DEPTH = 16;
/** fill_default_options() order in OpenSSH 9.x. */
const DEFAULT_IDENTITIES = ['id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk', 'id_xmss', 'id_dsa'];
/** Directives the package acts on by spawning nslookup; dropped before it sees them. */
const CANONICALIZE = /^(CanonicalizeHostName|CanonicalDomains)$/i;
/** Parameter names compute() compares case-sensitively to track Match state. */
const TRACKED: Record<string, string> = { hostname: 'HostName', user: 'User' };
/** SendEnv accumulates in ssh but is first-wins in the package, so each line gets its own name. */
const SENDENV_PREFIX = 'sendenv#';
const SECTION_LINE = /^\s*(Host|Match)(\s|=)/i;
/** Resolutions kept per resolver; past this the memo starts afresh (a bound, not a cache policy). */
const MEMO_LIMIT = 1024;

type Computed = Record<string, string | string[] | undefined>;

export class SshConfigResolver {
  /** The config files actually read, in order (included files where they were included). */
  readonly files: string[] = [];
  private config: SSHConfig | undefined;
  /**
   * Resolving is a pure function of the loaded config, the alias and the
   * overrides, and costs more than the rest of a warm exec together (the
   * package walks every line and asks the OS for the user each time), so
   * the results are kept until load() reads the files again.
   */
  private memo = new Map<string, Readonly<ResolvedHost>>();
  private readonly home: string;
  private readonly localUser: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly localHost = os.hostname().split('.')[0];

  constructor(private readonly opts: ResolverOptions = {}) {
    this.env = opts.env ?? process.env;
    this.home = opts.home ?? os.homedir();
    this.localUser = opts.localUser ?? safeUsername();
  }

  load(): void {
    const files: string[] = [];
    const parts: string[] = [];
    const userDir = path.join(this.home, '.ssh');
    if (this.opts.configFile !== undefined) {
      // ssh -F: a missing file is fatal, and the system config is not read.
      const file = path.resolve(expandTilde(this.opts.configFile, this.home));
      if (!fs.existsSync(file)) throw new ConfigError(`ssh config ${file} (given as the config file) does not exist; create it or drop the option`);
      parts.push(this.expand(file, userDir, 0, files));
    } else {
      const user = path.join(userDir, 'config');
      if (fs.existsSync(user)) parts.push(this.expand(user, userDir, 0, files));
      const system = this.opts.systemConfig ?? '/etc/ssh/ssh_config';
      if (fs.existsSync(system)) parts.push(this.expand(system, path.dirname(system), 0, files));
    }
    let config: SSHConfig;
    try {
      config = SSHConfig.parse(parts.join('\n'));
    } catch (err) {
      throw new ConfigError(`cannot parse ssh config (${files.join(', ')}): ${(err as Error).message}`);
    }
    sanitize(config);
    this.config = config;
    this.memo = new Map();
    this.files.splice(0, this.files.length, ...files);
  }

  /** The host as ssh would resolve it; the same (frozen) object for the same alias and overrides. */
  resolve(alias: string, overrides: Record<string, string> = {}): Readonly<ResolvedHost> {
    if (!this.config) this.load();
    const key = memoKey(alias, overrides);
    let host = this.memo.get(key);
    if (!host) {
      host = Object.freeze(this.compute(alias, overrides));
      if (this.memo.size >= MEMO_LIMIT) this.memo.clear();
      this.memo.set(key, host);
    }
    return host;
  }

  private compute(alias: string, overrides: Record<string, string>): ResolvedHost {
    // -o options come before every file in ssh, so they win; lowercase keys
    // because ssh keywords are case-insensitive.
    const ov: Record<string, string> = {};
    for (const [key, value] of Object.entries(overrides)) ov[key.toLowerCase()] = String(value);
    // A User override must be the user `Match user` sees, and passing it to
    // compute() does exactly that (it is set before any file line).
    const query = ov.user !== undefined ? { Host: alias, User: ov.user } : { Host: alias };
    // matchExec: false makes `Match exec` not match instead of running it
    // (the package's default is to run it); sanitize() also removed those blocks.
    const computed = this.config!.compute(query, { ignoreCase: true, matchExec: false }) as Computed;
    return this.build(alias, computed, ov);
  }

  // ---- reading and Include ------------------------------------------------

  /**
   * The file's text with Include lines replaced by the included files' text.
   *
   * Textual inclusion keeps ssh's rule that an Include inside a Host/Match
   * block applies to that block. ssh also restores the including block once
   * the included file ends, so when an included file opened blocks of its
   * own we repeat the including block's header line after it (`Host *` at
   * the top level, where everything applies).
   */
  private expand(file: string, relativeTo: string, depth: number, files: string[], outerHeader = 'Host *'): string {
    if (depth > MAX_INCLUDE_DEPTH) {
      throw new ConfigError(`ssh config Include nested deeper than ${MAX_INCLUDE_DEPTH} at ${file}: is there an Include loop?`);
    }
    let text: string;
    try {
      text = withoutClientBlock(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ConfigError(cannotReadSshConfig(file, err));
    }
    // Parse alone first so a syntax error names the file it is in.
    try {
      SSHConfig.parse(text);
    } catch (err) {
      throw new ConfigError(`cannot parse ssh config ${file}: ${(err as Error).message}; fix the line or remove it`);
    }
    files.push(file);
    let header = outerHeader;
    const out: string[] = [];
    for (const line of text.split(/\r?\n/)) {
      if (SECTION_LINE.test(line)) header = line;
      const m = /^\s*Include(?:\s*=\s*|\s+)(.*?)\s*$/i.exec(line);
      if (!m) {
        out.push(line);
        continue;
      }
      for (const spec of splitArgs(stripComment(m[1]))) {
        for (const included of this.globFiles(spec, relativeTo)) {
          const body = this.expand(included, relativeTo, depth + 1, files, header);
          out.push(body);
          if (body.split('\n').some((l) => SECTION_LINE.test(l))) out.push(header);
        }
      }
    }
    return out.join('\n');
  }

  /** glob(3) for Include: `*`, `?` and `[...]` in any path component, lexical order, dotfiles only when asked for. */
  private globFiles(spec: string, relativeTo: string): string[] {
    let p = expandTilde(spec, this.home);
    if (!path.isAbsolute(p)) p = path.join(relativeTo, p);
    if (!/[*?[]/.test(p)) return isFile(p) ? [p] : []; // a missing file is skipped, as in ssh
    let candidates = ['/'];
    for (const part of p.split('/').filter(Boolean)) {
      const next: string[] = [];
      for (const dir of candidates) {
        if (!/[*?[]/.test(part)) {
          next.push(path.join(dir, part));
          continue;
        }
        const re = globRegExp(part, { classes: true });
        let names: string[] = [];
        try {
          names = fs.readdirSync(dir);
        } catch {
          // unreadable or missing directory: matches nothing, as in glob(3)
        }
        for (const n of names) if (re.test(n) && (part.startsWith('.') || !n.startsWith('.'))) next.push(path.join(dir, n));
      }
      candidates = next;
    }
    return candidates.filter(isFile).sort();
  }

  // ---- building the result ------------------------------------------------

  private build(alias: string, c: Computed, ov: Record<string, string>): ResolvedHost {
    // One value: an override, else the first obtained value from the files.
    const one = (key: string): string | undefined => {
      if (ov[key] !== undefined) return ov[key];
      const v = c[key];
      return Array.isArray(v) ? v.join(' ') : v;
    };
    // Keys ssh splits into several values; the package already split the file values.
    const list = (key: string): string[] => {
      if (ov[key] !== undefined) return splitArgs(ov[key]);
      const v = c[key];
      return v === undefined ? [] : Array.isArray(v) ? v : [v];
    };

    const port = intOption('Port', one('port') ?? '22', 1, 65535);
    // ssh expands only %h (and %%) in HostName, then lowercases the result.
    const hostname = expandTokens(one('hostname') ?? alias, { '%': '%', h: alias }, 'HostName').toLowerCase();
    const user = one('user') ?? this.localUser;
    // ssh lowercases HostKeyAlias before using it (ssh.c), for known_hosts and %k alike.
    const hostKeyAlias = one('hostkeyalias')?.toLowerCase();
    const tokens = this.tokens(alias, hostname, port, user, hostKeyAlias, one('proxyjump'));
    const pathValue = (s: string, key: string): string =>
      path.resolve(this.home, expandTilde(expandEnv(expandTokens(s, tokens, key), this.env, key), this.home));

    // IdentityFile accumulates: -o ones first, then the files'; none configured means ssh's defaults.
    const identitySpecs = [...(ov.identityfile !== undefined ? [ov.identityfile] : []), ...list2(c.identityfile)];
    const identityFiles = (identitySpecs.length ? identitySpecs : DEFAULT_IDENTITIES.map((n) => `~/.ssh/${n}`))
      .map((s) => pathValue(s, 'IdentityFile'));
    // CertificateFile accumulates as IdentityFile does, with the same expansion; no default.
    const certificateFiles = [...(ov.certificatefile !== undefined ? [ov.certificatefile] : []), ...list2(c.certificatefile)]
      .map((s) => pathValue(s, 'CertificateFile'));

    let identityAgent: string | undefined = this.env.SSH_AUTH_SOCK || undefined;
    const agentSpec = one('identityagent');
    if (agentSpec !== undefined) {
      if (agentSpec === 'none') identityAgent = undefined;
      else if (agentSpec === 'SSH_AUTH_SOCK') identityAgent = this.env.SSH_AUTH_SOCK || undefined;
      else if (/^\$[A-Za-z_][A-Za-z0-9_]*$/.test(agentSpec)) identityAgent = this.env[agentSpec.slice(1)] || undefined;
      else identityAgent = pathValue(agentSpec, 'IdentityAgent');
    }

    const userKnown = list('userknownhostsfile');
    const globalKnown = list('globalknownhostsfile');
    const known = (specs: string[], fallback: string[], expand: (s: string) => string): string[] =>
      specs.length === 1 && specs[0] === 'none' ? [] : (specs.length ? specs : fallback).map(expand);

    const proxyJumpSpec = one('proxyjump');
    const proxyCommand = one('proxycommand');

    return {
      alias,
      hostname,
      port,
      user,
      identityFiles,
      certificateFiles,
      identitiesOnly: yesNo('IdentitiesOnly', one('identitiesonly') ?? 'no'),
      identityAgent,
      userKnownHostsFiles: known(userKnown, ['~/.ssh/known_hosts', '~/.ssh/known_hosts2'], (s) => pathValue(s, 'UserKnownHostsFile')),
      // ssh expands only ~ here, no tokens.
      globalKnownHostsFiles: known(globalKnown, ['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2'],
        (s) => path.resolve(this.home, expandTilde(s, this.home))),
      hostKeyAlias,
      // Our default is yes, not ssh's ask: a daemon has nobody to ask.
      strictHostKeyChecking: strictness(one('stricthostkeychecking') ?? 'yes'),
      hashKnownHosts: yesNo('HashKnownHosts', one('hashknownhosts') ?? 'no'),
      // ConnectTimeout 0 would fire at once in the handshake; treat it as unset.
      connectTimeoutMs: timeOption('ConnectTimeout', one('connecttimeout') ?? '15') * 1000 || 15_000,
      serverAliveIntervalMs: timeOption('ServerAliveInterval', one('serveraliveinterval') ?? '15') * 1000,
      serverAliveCountMax: intOption('ServerAliveCountMax', one('serveralivecountmax') ?? '3', 0, 1_000_000),
      proxyJump: !proxyJumpSpec || proxyJumpSpec === 'none' ? [] : proxyJumpSpec.split(',').map((s) => parseJumpSpec(s)),
      proxyCommand: proxyCommand && proxyCommand !== 'none' ? proxyCommand : undefined,
      batchMode: yesNo('BatchMode', one('batchmode') ?? 'no'),
      sendEnv: this.sendEnv(c, ov),
      setEnv: parseSetEnv(one('setenv')),
    };
  }

  /** SendEnv lines accumulate in ssh; `-PATTERN` removes what earlier lines added. */
  private sendEnv(c: Computed, ov: Record<string, string>): string[] {
    const lines: string[][] = ov.sendenv !== undefined ? [splitArgs(ov.sendenv)] : [];
    for (const [key, value] of Object.entries(c)) if (key.startsWith(SENDENV_PREFIX)) lines.push(list2(value));
    const out: string[] = [];
    for (const name of lines.flat()) {
      if (name.startsWith('-')) {
        const re = globRegExp(name.slice(1), { classes: true });
        for (let i = out.length - 1; i >= 0; i--) if (re.test(out[i])) out.splice(i, 1);
      } else if (!out.includes(name)) {
        out.push(name);
      }
    }
    return out;
  }

  private tokens(alias: string, hostname: string, port: number, user: string, hostKeyAlias?: string, proxyJump?: string): Record<string, string> {
    return {
      '%': '%',
      h: hostname,
      p: String(port),
      r: user,
      u: this.localUser,
      d: this.home,
      n: alias,
      l: this.localHost,
      L: this.localHost,
      i: String(process.getuid?.() ?? 0),
      k: hostKeyAlias ?? hostname,
      j: proxyJump && proxyJump !== 'none' ? proxyJump : '',
      C: createHash('sha1').update(`${this.localHost}${hostname}${port}${user}`).digest('hex'),
    };
  }
}

/**
 * The memo's key: the alias and the overrides in order (a client sends them
 * in the same order each time). Unambiguous, so that no crafted value can
 * stand for another client's options.
 */
function memoKey(alias: string, overrides: Record<string, string>): string {
  for (const _ in overrides) return JSON.stringify([alias, overrides]);
  // No overrides, the common case, without a JSON walk: "=" starts no JSON text.
  return `=${alias}`;
}

/** "user@host:port", "host", "[v6addr]:port" or "ssh://user@host:port" as one ProxyJump hop. */
export function parseJumpSpec(spec: string): JumpHop {
  let rest = spec.trim();
  if (/^ssh:\/\//i.test(rest)) rest = rest.slice(6).replace(/\/$/, '');
  const hop: JumpHop = { host: '' };
  const at = rest.lastIndexOf('@'); // ssh splits at the last @, as user names may hold one
  if (at >= 0) {
    hop.user = rest.slice(0, at);
    rest = rest.slice(at + 1);
    if (!hop.user) throw new ConfigError(`bad ProxyJump hop "${spec}": empty user name; expected [user@]host[:port]`);
  }
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(rest);
  if (v6) {
    hop.host = v6[1];
    portText = v6[2];
  } else {
    const colon = rest.indexOf(':');
    // More than one colon and no brackets: a bare IPv6 address without a port.
    if (colon >= 0 && rest.lastIndexOf(':') === colon) {
      hop.host = rest.slice(0, colon);
      portText = rest.slice(colon + 1);
    } else {
      hop.host = rest;
    }
  }
  if (!hop.host || /[\s/@[\]]/.test(hop.host)) throw new ConfigError(`bad ProxyJump hop "${spec}": expected [user@]host[:port]`);
  if (portText !== undefined) hop.port = intOption('ProxyJump port', portText, 1, 65535);
  return hop;
}

// ---- the parsed config ------------------------------------------------------

/**
 * Makes the parsed config safe and readable for compute(): drops `Match exec`
 * blocks (never run, never match) and canonicalisation directives (they make
 * the package spawn nslookup), gives each SendEnv line its own name, and
 * spells HostName/User the way compute() looks for them.
 */
function sanitize(config: Line[]): void {
  prune(config);
  let sendEnvLines = 0;
  const rename = (lines: Line[]): void => {
    for (const line of lines) {
      if (line.type !== LineType.DIRECTIVE) continue;
      const lower = line.param.toLowerCase();
      if (TRACKED[lower]) line.param = TRACKED[lower];
      else if (lower === 'sendenv') line.param = `${SENDENV_PREFIX}${sendEnvLines++}`;
      if ('config' in line) rename(line.config);
    }
  };
  rename(config); // one pass in file order, so the numbering keeps SendEnv lines in order
}

function prune(config: Line[]): void {
  for (let i = config.length - 1; i >= 0; i--) {
    const line = config[i];
    if (line.type !== LineType.DIRECTIVE) continue;
    const isExec = 'criteria' in line && Object.keys(line.criteria).some((k) => k.replace(/^!/, '').toLowerCase() === 'exec');
    // Include lines were expanded already; none should be left for the package.
    if (isExec || CANONICALIZE.test(line.param) || /^Include$/i.test(line.param)) config.splice(i, 1);
    else if ('config' in line) prune(line.config);
  }
}

// ---- small helpers ----------------------------------------------------------

/** The text with the lines of sshmux's own client block blank (their count kept, so line numbers still point right). */
function withoutClientBlock(text: string): string {
  if (!text.includes(CLIENT_BLOCK_BEGIN)) return text;
  let inside = false;
  return text.split('\n').map((line) => {
    const trimmed = line.trim();
    if (!inside && trimmed.startsWith(CLIENT_BLOCK_BEGIN)) inside = true;
    else if (inside && trimmed.startsWith(CLIENT_BLOCK_END)) {
      inside = false;
      return '';
    }
    return inside ? '' : line;
  }).join('\n');
}

function list2(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function intOption(key: string, value: string, min: number, max: number): number {
  const v = value.trim();
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new ConfigError(`bad ${key} "${value}": expected an integer from ${min} to ${max}`);
  }
  return Number(v);
}

/** Seconds, in ssh's time format: 30, 30s, 1m30s, 1h, 1d, 1w. */
function timeOption(key: string, value: string): number {
  const v = value.trim();
  const units: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };
  if (!/^(\d+[smhdwSMHDW]?)+$/.test(v)) {
    throw new ConfigError(`bad ${key} "${value}": expected a non-negative number of seconds (e.g. 15, 30s, 1m)`);
  }
  let total = 0;
  for (const [, n, u] of v.matchAll(/(\d+)([smhdwSMHDW]?)/g)) total += Number(n) * units[u.toLowerCase()];
  return total;
}

function yesNo(key: string, value: string): boolean {
  const v = value.toLowerCase();
  if (v === 'yes' || v === 'true') return true;
  if (v === 'no' || v === 'false') return false;
  throw new ConfigError(`bad ${key} "${value}": expected yes or no`);
}

function strictness(value: string): StrictHostKeyChecking {
  switch (value.toLowerCase()) {
    case 'yes': case 'true': case 'on':
    case 'ask': // a daemon cannot ask, so ask is yes
      return 'yes';
    case 'accept-new':
      return 'accept-new';
    case 'no': case 'off': case 'false':
      return 'no';
    default:
      throw new ConfigError(`bad StrictHostKeyChecking "${value}": expected yes, accept-new, no or ask`);
  }
}

function expandTokens(s: string, tokens: Record<string, string>, key: string): string {
  return s.replace(/%(.?)/g, (_, t: string) => {
    const v = tokens[t];
    if (v === undefined) {
      throw new ConfigError(`${key} "${s}": unknown token %${t}; use %% for a literal percent sign`);
    }
    return v;
  });
}

/** ${VAR} as ssh expands it in paths; an unset variable is an error there too. */
function expandEnv(s: string, env: NodeJS.ProcessEnv, key: string): string {
  return s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const v = env[name];
    if (v === undefined) throw new ConfigError(`${key} "${s}": environment variable ${name} is not set; set it or change the path`);
    return v;
  });
}

function expandTilde(s: string, home: string): string {
  return s === '~' ? home : s.startsWith('~/') ? path.join(home, s.slice(2)) : s;
}

/** SetEnv NAME=VALUE ... (quotes group); within the first SetEnv line, the first of a name wins, as in ssh. */
function parseSetEnv(value: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of value === undefined ? [] : splitArgs(value)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new ConfigError(`bad SetEnv "${pair}": expected NAME=VALUE`);
    const name = pair.slice(0, eq);
    if (!(name in out)) out[name] = pair.slice(eq + 1);
  }
  return out;
}

/** ssh's argv_split, an open quote reported as a config error. */
function splitArgs(s: string): string[] {
  const args = argvSplit(s);
  if (!args) throw new ConfigError(`unterminated quote in "${s}"`);
  return args;
}

function stripComment(s: string): string {
  const hash = s.search(/\s#/);
  return hash >= 0 ? s.slice(0, hash) : s;
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function safeUsername(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? 'root';
  }
}
