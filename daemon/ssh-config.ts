// Resolves a host alias as ssh does, from OpenSSH client config: the -F
// file, else ~/.ssh/config then /etc/ssh/ssh_config, first value wins.
// Host/Match evaluation is the ssh-config package's; this file adds what it
// leaves out (Include, tokens, defaults, validation) and removes what a
// daemon must never do: `Match exec` runs a shell command, and
// CanonicalizeHostName makes the package spawn nslookup.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import SSHConfig from 'ssh-config';
import type { StrictHostKeyChecking } from './known-hosts';

export type { StrictHostKeyChecking } from './known-hosts';

export interface JumpHop { user?: string; host: string; port?: number }

export interface ResolvedHost {
  alias: string;
  hostname: string;
  port: number;
  user: string;
  identityFiles: string[];
  identitiesOnly: boolean;
  identityAgent?: string;
  userKnownHostsFiles: string[];
  globalKnownHostsFiles: string[];
  hostKeyAlias?: string;
  strictHostKeyChecking: StrictHostKeyChecking;
  connectTimeoutMs: number;
  serverAliveIntervalMs: number;
  serverAliveCountMax: number;
  proxyJump: JumpHop[];
  proxyCommand?: string;
  batchMode: boolean;
  sendEnv: string[];
  setEnv: Record<string, string>;
}

export class ConfigError extends Error {}

export interface ResolverOptions {
  /** Like ssh -F: only this file is read. */
  configFile?: string;
  home?: string;
  systemConfig?: string;
  localUser?: string;
  env?: NodeJS.ProcessEnv;
}

const MAX_INCLUDE_DEPTH = 16;
const DEFAULT_IDENTITIES = ['id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk', 'id_xmss', 'id_dsa'];
/** Keys the package would act on by running something; dropped before it sees them. */
const STRIPPED = /^\s*(CanonicalizeHostName|CanonicalDomains)\b/i;

type Computed = Record<string, string | string[] | undefined>;

export class SshConfigResolver {
  readonly files: string[] = [];
  private config: SSHConfig | undefined;
  private readonly home: string;
  private readonly localUser: string;
  private readonly env: NodeJS.ProcessEnv;

  constructor(private readonly opts: ResolverOptions = {}) {
    this.env = opts.env ?? process.env;
    this.home = opts.home ?? os.homedir();
    this.localUser = opts.localUser ?? safeUsername();
  }

  load(): void {
    const parts: string[] = [];
    if (this.opts.configFile) {
      if (!fs.existsSync(this.opts.configFile)) {
        throw new ConfigError(`ssh config ${this.opts.configFile} (given with -F) does not exist`);
      }
      parts.push(this.expand(this.opts.configFile, path.join(this.home, '.ssh'), 0));
    } else {
      const user = path.join(this.home, '.ssh', 'config');
      if (fs.existsSync(user)) parts.push(this.expand(user, path.join(this.home, '.ssh'), 0));
      const system = this.opts.systemConfig ?? '/etc/ssh/ssh_config';
      if (fs.existsSync(system)) parts.push(this.expand(system, path.dirname(system), 0));
    }
    try {
      this.config = SSHConfig.parse(parts.join('\n'));
    } catch (err) {
      throw new ConfigError(`cannot parse ssh config (${this.files.join(', ')}): ${(err as Error).message}`);
    }
  }

  resolve(alias: string, overrides: Record<string, string> = {}): ResolvedHost {
    if (!this.config) this.load();
    const computed = this.config!.compute({ Host: alias }, { ignoreCase: true, matchExec: false }) as Computed;
    for (const [key, value] of Object.entries(overrides)) {
      // -o options come before every file, so they win; repeatable ones go first.
      const k = key.toLowerCase();
      const existing = computed[k];
      computed[k] = Array.isArray(existing) ? [value, ...existing] : value;
    }
    return this.build(alias, computed);
  }

  // ---- reading and Include ------------------------------------------------

  /** The file's text with Include lines replaced by the included files' text. */
  private expand(file: string, relativeTo: string, depth: number): string {
    if (depth > MAX_INCLUDE_DEPTH) throw new ConfigError(`ssh config Include nested deeper than ${MAX_INCLUDE_DEPTH} at ${file}: is there a loop?`);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read ssh config ${file}: ${(err as Error).message}`);
    }
    this.files.push(file);
    const out: string[] = [];
    for (const line of text.split(/\r?\n/)) {
      if (STRIPPED.test(line)) continue;
      const m = /^\s*Include\s*[=\s]\s*(.+?)\s*$/i.exec(line);
      if (!m) {
        out.push(line);
        continue;
      }
      // Textual inclusion: an Include inside a Host block lands inside it, as
      // in ssh, and a Host line in the included file starts its own block.
      for (const spec of splitArgs(m[1])) {
        for (const included of this.globFiles(spec, relativeTo)) out.push(this.expand(included, relativeTo, depth + 1));
      }
    }
    return out.join('\n');
  }

  private globFiles(spec: string, relativeTo: string): string[] {
    let p = expandTilde(spec, this.home);
    if (!path.isAbsolute(p)) p = path.join(relativeTo, p);
    const parts = p.split('/').filter(Boolean);
    let dirs = ['/'];
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      const last = i === parts.length - 1;
      const next: string[] = [];
      for (const dir of dirs) {
        if (!/[*?[]/.test(part)) {
          next.push(path.join(dir, part));
          continue;
        }
        const re = globRegExp(part);
        let names: string[] = [];
        try {
          names = fs.readdirSync(dir).filter((n) => re.test(n) && !n.startsWith('.')).sort();
        } catch {
          // unreadable or missing directory: matches nothing, as glob(3)
        }
        next.push(...names.map((n) => path.join(dir, n)));
      }
      dirs = last ? next : next.filter((d) => isDir(d));
    }
    return dirs.filter((f) => isFile(f));
  }

  // ---- building the result ------------------------------------------------

  private build(alias: string, c: Computed): ResolvedHost {
    const one = (key: string): string | undefined => {
      const v = c[key];
      return Array.isArray(v) ? v[0] : v;
    };
    const list = (key: string): string[] => {
      const v = c[key];
      if (v === undefined) return [];
      return Array.isArray(v) ? v : [v]; // the package already split multi-value keys
    };

    const port = intOption('Port', one('port') ?? '22', 1, 65535);
    const hostnameRaw = one('hostname') ?? alias;
    const hostname = hostnameRaw.replace(/%%/g, '\0').replace(/%h/g, alias).replace(/\0/g, '%');
    const user = one('user') ?? this.localUser;
    const tokens = this.tokens(alias, hostname, port, user);
    const file = (s: string, key: string): string => expandTilde(expandEnv(expandTokens(s, tokens, key), this.env, key), this.home);

    const identitySpecs = list('identityfile');
    const identityFiles = (identitySpecs.length ? identitySpecs : DEFAULT_IDENTITIES.map((n) => `~/.ssh/${n}`))
      .map((s) => file(s, 'IdentityFile'));

    let identityAgent: string | undefined = this.env.SSH_AUTH_SOCK || undefined;
    const agentSpec = one('identityagent');
    if (agentSpec !== undefined) {
      if (agentSpec === 'none') identityAgent = undefined;
      else if (agentSpec === 'SSH_AUTH_SOCK') identityAgent = this.env.SSH_AUTH_SOCK || undefined;
      else if (agentSpec.startsWith('$')) identityAgent = this.env[agentSpec.slice(1).replace(/^\{|\}$/g, '')] || undefined;
      else identityAgent = file(agentSpec, 'IdentityAgent');
    }

    const knownFiles = (key: string, fallback: string[]): string[] => {
      const specs = list(key.toLowerCase());
      if (specs.length === 1 && specs[0] === 'none') return [];
      return (specs.length ? specs : fallback).map((s) => file(s, key));
    };

    const proxyJumpSpec = one('proxyjump');
    const proxyCommand = one('proxycommand');
    const setEnv: Record<string, string> = {};
    for (const pair of list('setenv')) {
      const eq = pair.indexOf('=');
      if (eq > 0) setEnv[pair.slice(0, eq)] = pair.slice(eq + 1);
    }

    return {
      alias,
      hostname,
      port,
      user,
      identityFiles,
      identitiesOnly: yesNo('IdentitiesOnly', one('identitiesonly') ?? 'no'),
      identityAgent,
      userKnownHostsFiles: knownFiles('UserKnownHostsFile', ['~/.ssh/known_hosts', '~/.ssh/known_hosts2']),
      globalKnownHostsFiles: knownFiles('GlobalKnownHostsFile', ['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2']),
      hostKeyAlias: one('hostkeyalias'),
      strictHostKeyChecking: strictness(one('stricthostkeychecking') ?? 'yes'),
      connectTimeoutMs: intOption('ConnectTimeout', one('connecttimeout') ?? '15', 0, 86_400) * 1000 || 15_000,
      serverAliveIntervalMs: intOption('ServerAliveInterval', one('serveraliveinterval') ?? '15', 0, 86_400) * 1000,
      serverAliveCountMax: intOption('ServerAliveCountMax', one('serveralivecountmax') ?? '3', 0, 1000),
      proxyJump: !proxyJumpSpec || proxyJumpSpec === 'none' ? [] : proxyJumpSpec.split(',').map((s) => parseJumpSpec(s.trim())),
      proxyCommand: proxyCommand && proxyCommand !== 'none' ? proxyCommand : undefined,
      batchMode: yesNo('BatchMode', one('batchmode') ?? 'no'),
      sendEnv: list('sendenv'),
      setEnv,
    };
  }

  private tokens(alias: string, hostname: string, port: number, user: string): Record<string, string> {
    const local = os.hostname().split('.')[0];
    return {
      '%': '%',
      h: hostname,
      p: String(port),
      r: user,
      u: this.localUser,
      d: this.home,
      n: alias,
      l: local,
      i: String(process.getuid?.() ?? 0),
      C: createHash('sha1').update(`${local}${hostname}${port}${user}`).digest('hex'),
    };
  }
}

/** "user@host:port", "host", "[v6addr]:port" or "ssh://user@host:port" as one ProxyJump hop. */
export function parseJumpSpec(spec: string): JumpHop {
  let rest = spec.trim();
  const url = /^ssh:\/\//i.test(rest);
  if (url) rest = rest.slice(6).replace(/\/$/, '');
  const hop: JumpHop = { host: '' };
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    hop.user = rest.slice(0, at);
    rest = rest.slice(at + 1);
    if (!hop.user) throw new ConfigError(`bad ProxyJump hop "${spec}": empty user name`);
  }
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(rest);
  if (v6) {
    hop.host = v6[1];
    portText = v6[2];
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon >= 0 && rest.indexOf(':') === colon) {
      hop.host = rest.slice(0, colon);
      portText = rest.slice(colon + 1);
    } else {
      hop.host = rest;
    }
  }
  if (!hop.host || /[\s/]/.test(hop.host)) throw new ConfigError(`bad ProxyJump hop "${spec}": expected [user@]host[:port]`);
  if (portText !== undefined) hop.port = intOption('ProxyJump port', portText, 1, 65535);
  return hop;
}

// ---- small helpers ----------------------------------------------------------

function intOption(key: string, value: string, min: number, max: number): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < min || Number(value) > max) {
    throw new ConfigError(`bad ${key} "${value}": expected an integer from ${min} to ${max}`);
  }
  return Number(value);
}

function yesNo(key: string, value: string): boolean {
  const v = value.toLowerCase();
  if (v === 'yes' || v === 'true') return true;
  if (v === 'no' || v === 'false') return false;
  throw new ConfigError(`bad ${key} "${value}": expected yes or no`);
}

function strictness(value: string): StrictHostKeyChecking {
  switch (value.toLowerCase()) {
    case 'yes': case 'true': case 'ask': // a daemon cannot ask, so ask is yes
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
  return s.replace(/%(.)/g, (_, t: string) => {
    const v = tokens[t];
    if (v === undefined) throw new ConfigError(`${key} "${s}": unknown token %${t}`);
    return v;
  });
}

function expandEnv(s: string, env: NodeJS.ProcessEnv, key: string): string {
  return s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const v = env[name];
    if (v === undefined) throw new ConfigError(`${key} "${s}": environment variable ${name} is not set`);
    return v;
  });
}

function expandTilde(s: string, home: string): string {
  return s === '~' ? home : s.startsWith('~/') ? path.join(home, s.slice(2)) : s;
}

/** Splits an ssh_config argument list: whitespace-separated, double quotes group. */
function splitArgs(s: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  for (let m = re.exec(s); m; m = re.exec(s)) out.push(m[1] ?? m[2]);
  return out;
}

function globRegExp(part: string): RegExp {
  const body = part.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
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
