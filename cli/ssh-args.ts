// ssh's command line, parsed as OpenSSH 9's ssh.c parses it: getopt (BSD
// semantics: packed flags, attached or separate values, options end at the
// first non-option word or `--`) up to the destination, then getopt again
// over what follows the destination, up to the first non-option word (or
// `--`), which starts the remote command. Values follow ssh's precedence:
// most options keep their first value (-p, -l, -o Key=...), a few their last
// (-F, -E), some accumulate (-L, -o SendEnv). What each -o keyword does here
// is in ssh-options.ts. No general CLI parser models this, hence this one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { argvSplit } from '../proto/argv-split';

/** The keyword and flag tables, loaded only when a command line needs them (most do not): they cost a millisecond. */
const tables = (): typeof import('./ssh-options') => require('./ssh-options');

/** ssh.c's getopt string (OpenSSH 9.4 to 9.9; 9.2's -P took no value). */
const GETOPT = '1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:P:Q:R:S:TVw:W:XYy';
const FLAGS = new Set(GETOPT.replace(/:/g, ''));
const VALUE_FLAGS = new Set([...GETOPT.matchAll(/(.):/g)].map((m) => m[1]));

export type ControlCommand = 'check' | 'forward' | 'exit' | 'stop' | 'cancel' | 'proxy';
export type RequestTty = 'no' | 'yes' | 'force' | 'auto';

export interface Invocation {
  /** What to do: a session or forwarding (the usual), or one of ssh's other modes. */
  action: 'connect' | 'print-config' | 'control' | 'version' | 'query';
  /** -Q: what to list. */
  query?: string;
  /** -O: the multiplexing command. */
  control?: ControlCommand;
  /** The host as given, without user@ or ssh://; the user and port go into `options`. */
  destination: string;
  /** The remote command: the words after the options, joined with spaces, as ssh does. */
  command: string;
  /** -N / -W: no session; -s: the command is a subsystem name. */
  sessionType: 'default' | 'none' | 'subsystem';
  /** Options for the daemon, ssh -o style with lower-case keys (port, user, identityfile...). */
  options: Record<string, string>;
  /** Environment to send (SendEnv patterns matched against ours, SetEnv). */
  env: Record<string, string>;
  /** -n (and -f): the remote reads an empty stdin. */
  stdinNull: boolean;
  /** -t/-T/RequestTTY; undefined: ssh's default (a pty for a login shell on a terminal). */
  requestTty?: RequestTty;
  /** -f: go to the background once the session has started. */
  fork: boolean;
  /** -M, or ControlMaster other than no: the caller wants a master started (the daemon is one). */
  master: boolean;
  /** -W host:port. */
  forward?: { host: string; port: number };
  /** -L, in order. */
  localForwards: LocalForwardSpec[];
  quiet: boolean;
  /** -v count. */
  verbose: number;
  /** -E: sshmux's own diagnostics are appended there. */
  logFile?: string;
  /** -y: sshmux's own diagnostics go to syslog. */
  syslog: boolean;
  /** What was accepted but ignored, and why (shown with -v). */
  ignored: string[];
  /** ssh's non-fatal warnings (an -i file that is not there...), shown unless -q, with ssh's line ends. */
  warnings: Array<{ text: string; lineEnd: '\r\n' | '\n' }>;
}

export interface LocalForwardSpec { bindAddress: string; port: number; host: string; hostPort: number }

/**
 * A command line ssh would refuse: `message` is ssh's; `usage` says whether
 * ssh prints its usage after it; `lineEnd` is CRLF for what ssh logs and LF
 * for what it prints with fprintf.
 */
export class UsageError extends Error {
  override readonly name = 'UsageError';

  constructor(message: string, readonly usage = false, readonly lineEnd: '\r\n' | '\n' = '\r\n') {
    super(message);
  }
}

export const USAGE = 'usage: sshmux [-46AaCfGgKkMNnqsTtVvXxYy] [-B bind_interface] [-b bind_address]\n' +
  '           [-c cipher_spec] [-D [bind_address:]port] [-E log_file]\n' +
  '           [-e escape_char] [-F configfile] [-I pkcs11] [-i identity_file]\n' +
  '           [-J destination] [-L address] [-l login_name] [-m mac_spec]\n' +
  '           [-O ctl_cmd] [-o option] [-P tag] [-p port] [-R address]\n' +
  '           [-S ctl_path] [-W host:port] [-w local_tun[:remote_tun]]\n' +
  '           destination [command [argument ...]]\n' +
  '       sshmux [-Q query_option]';

/** The flags ssh-options.ts refuses (kept here so that checking one needs no table). */
const REFUSED_FLAGS = new Set('bBDRwI');
const CONTROL_COMMANDS = new Set<string>(['check', 'forward', 'exit', 'stop', 'cancel', 'proxy']);
/** Options naming local files: made absolute, as the daemon has another working directory. */
const PATH_OPTIONS = new Set(['identityfile', 'certificatefile', 'userknownhostsfile', 'configfile']);

/** Parses argv (without node and the script) as ssh does; throws UsageError where ssh would exit 255. */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv = process.env): Invocation {
  const p = new Parser(env);
  // First pass: options up to the destination.
  let next = p.getopt(argv, 0);
  if (p.done) return p.finish();
  const optTerminated = next > 0 && argv[next - 1] === '--';
  if (next < argv.length) {
    p.destination(argv[next++]);
    // ssh.c resets getopt after the destination and parses options again.
    if (next < argv.length && !optTerminated) next = p.getopt(argv, next);
    if (p.done) return p.finish();
    p.inv.command = argv.slice(next).join(' ');
  }
  return p.finish();
}

class Parser {
  readonly inv: Invocation = {
    action: 'connect', destination: '', command: '', sessionType: 'default', options: {}, env: {}, stdinNull: false,
    fork: false, master: false, localForwards: [], quiet: false, verbose: 0, syslog: false, ignored: [], warnings: [],
  };
  /** Set by -V and -Q, which end the parse at once, as ssh exits there. */
  done = false;
  private hasDestination = false;
  private sessionTypeSet = false;
  private logLevelSet = false;
  private stdinNullSet = false;
  private forkSet = false;
  private gatewayPorts: boolean | undefined;
  private clearForwardings: boolean | undefined;
  private remoteCommand: string | undefined;
  private readonly forwardSpecs: string[] = [];
  private sendEnv: string[] = [];
  private setEnvGiven = false;
  private readonly ignoreUnknown: string[] = [];
  private identities = 0;

  constructor(private readonly env: NodeJS.ProcessEnv) {}

  /** BSD getopt from argv[start]; returns the index of the first word it did not take. */
  getopt(argv: string[], start: number): number {
    let k = start;
    while (k < argv.length && !this.done) {
      const arg = argv[k];
      if (arg === '--') return k + 1;
      if (!arg.startsWith('-') || arg === '-') return k;
      k++;
      for (let j = 1; j < arg.length && !this.done; j++) {
        const flag = arg[j];
        if (!FLAGS.has(flag)) throw new UsageError(`unknown option -- ${flag}`, true);
        if (!VALUE_FLAGS.has(flag)) {
          this.flag(flag);
          continue;
        }
        let value = arg.slice(j + 1);
        if (!value) {
          if (k >= argv.length) throw new UsageError(`option requires an argument -- ${flag}`, true);
          value = argv[k++];
        }
        this.valueFlag(flag, value);
        break;
      }
    }
    return k;
  }

  private flag(flag: string): void {
    const inv = this.inv;
    switch (flag) {
      case '1': throw new UsageError('SSH protocol v.1 is no longer supported');
      case 'n': inv.stdinNull = true; this.stdinNullSet = true; return;
      case 'f': inv.fork = true; inv.stdinNull = true; this.forkSet = true; this.stdinNullSet = true; return;
      case 'y': inv.syslog = true; return;
      case 'G': inv.action = 'print-config'; return;
      case 'g': this.gatewayPorts = true; return;
      case 'V': inv.action = 'version'; this.done = true; return;
      case 't': inv.requestTty = inv.requestTty === 'yes' ? 'force' : 'yes'; return;
      case 'T': inv.requestTty = 'no'; return;
      case 'v': inv.verbose++; inv.quiet = false; this.logLevelSet = true; return;
      case 'q': inv.quiet = true; this.logLevelSet = true; return;
      case 'N':
        if (this.sessionTypeSet && inv.sessionType !== 'none') throw new UsageError('Cannot specify -N with -s/SessionType');
        inv.sessionType = 'none';
        this.sessionTypeSet = true;
        inv.requestTty = 'no';
        return;
      case 's':
        if (this.sessionTypeSet && inv.sessionType !== 'subsystem') throw new UsageError('Cannot specify -s with -N/SessionType');
        inv.sessionType = 'subsystem';
        this.sessionTypeSet = true;
        return;
      default:
        if (flag === 'M') inv.master = true;
        inv.ignored.push(`-${flag}: ${tables().IGNORED_FLAGS[flag]}`);
    }
  }

  private valueFlag(flag: string, value: string): void {
    const inv = this.inv;
    const refused = REFUSED_FLAGS.has(flag) && tables().REFUSED_FLAGS[flag];
    if (refused) throw new UsageError(`sshmux: -${flag} is refused: ${refused}`);
    switch (flag) {
      case 'E': inv.logFile = value; return;
      case 'F': this.setPath('configfile', value === 'none' ? '/dev/null' : value, true); return;
      case 'i': return this.identity(value);
      case 'J':
        // A ProxyJump from -o counts too, as in ssh.
        if (inv.options.proxyjump !== undefined) {
          throw new UsageError('Only a single -J option is permitted (use commas to separate multiple jump hops)');
        }
        if (!value || /\s/.test(value)) throw new UsageError('Invalid -J argument');
        inv.options.proxyjump = value;
        return;
      case 'L':
        this.forwardSpecs.push(value);
        parseLocalForward(value, false, `Bad local forwarding specification '${value}'`);
        return;
      case 'l': this.setOnce('user', value); return;
      case 'O':
        if (inv.forward) throw new UsageError('Cannot specify multiplexing command with -W');
        if (inv.control) throw new UsageError('Multiplexing command already specified');
        if (!CONTROL_COMMANDS.has(value)) throw new UsageError('Invalid multiplex command.');
        inv.control = value as ControlCommand;
        if (inv.action === 'connect') inv.action = 'control';
        return;
      case 'o': return this.option(value);
      case 'p':
        if (inv.options.port === undefined) inv.options.port = String(portNumber(value, `Bad port '${value}'`));
        return;
      case 'Q': inv.action = 'query'; inv.query = value; this.done = true; return;
      case 'W': {
        if (inv.forward) throw new UsageError('stdio forward already specified');
        if (inv.control) throw new UsageError('Cannot specify stdio forward with -O');
        inv.forward = parseHostPort(value, `Bad stdio forwarding specification '${value}'`);
        inv.requestTty = 'no';
        inv.sessionType = 'none';
        this.sessionTypeSet = true;
        return;
      }
      case 'e':
        if (!(value === 'none' || [...value].length === 1 || /^\^[@-\x7f]$/.test(value))) throw new UsageError(`Bad escape character '${value}'.`, false, '\n');
        if (value !== 'none') inv.ignored.push(`-e ${value}: ${tables().IGNORED_VALUE_FLAGS.e}`);
        return;
      case 'c':
        checkAlgorithms(value, `Unknown cipher type '${value}'`);
        inv.ignored.push(`-c ${value}: ${tables().IGNORED_VALUE_FLAGS.c}`);
        return;
      case 'm':
        checkAlgorithms(value, `Unknown mac type '${value}'`);
        inv.ignored.push(`-m ${value}: ${tables().IGNORED_VALUE_FLAGS.m}`);
        return;
      default: // -S, -P
        inv.ignored.push(`-${flag} ${value}: ${tables().IGNORED_VALUE_FLAGS[flag]}`);
    }
  }

  /** -i: ssh warns about a file that is not there and goes on without it. */
  private identity(value: string): void {
    const file = value.startsWith('~/') || value === '~' ? path.join((require('node:os') as typeof import('node:os')).homedir(), value.slice(1)) : value;
    if (!fs.existsSync(file)) {
      this.inv.warnings.push({ text: `Warning: Identity file ${file} not accessible: No such file or directory.`, lineEnd: '\n' });
      return;
    }
    if (this.identities++ === 0) this.setPath('identityfile', file, false);
    else this.inv.ignored.push(`-i ${value}: the daemon takes one identity file per call, the first one given`);
  }

  /** -o: one ssh_config line, as process_config_line reads it. */
  private option(line: string): void {
    const m = /^[ \t]*([^ \t"'=]*)[ \t]*(?:=[ \t]*)?([\s\S]*?)[ \t\f\r\n]*$/.exec(line)!;
    const keyword = m[1].toLowerCase();
    const rest = m[2];
    if (!keyword) return;
    if (!rest) throw new UsageError(`command-line line 0: no argument after keyword "${keyword}"`);
    const args = argvSplit(rest);
    if (!args) throw new UsageError('command-line line 0: invalid quotes');
    const rule = tables().OPTION_RULES[keyword];
    if (!rule) {
      if (this.ignoreUnknown.some((pattern) => globMatch(pattern, keyword, true))) return;
      throw new UsageError(`command-line: line 0: Bad configuration option: ${keyword}`);
    }
    const first = args[0] ?? '';
    switch (rule.kind) {
      case 'daemon':
        if (!rule.list && args.length > 1) throw new UsageError(`command-line line 0: keyword ${keyword} extra arguments at end of line`);
        if (PATH_OPTIONS.has(keyword)) this.setPath(keyword, rule.list ? args.join(' ') : first, false);
        else this.setOnce(keyword, first);
        return;
      case 'local': return this.localOption(keyword, first, args, rest);
      case 'refused':
        if (rule.off?.(first)) return;
        throw new UsageError(`sshmux: -o ${m[1]} is refused: ${rule.why}`);
      case 'ignored':
        if (keyword === 'controlmaster') this.inv.master ||= first.toLowerCase() !== 'no';
        this.inv.ignored.push(`-o ${m[1]}=${rest}: ${rule.why}`);
        return;
      case 'unsupported': this.inv.warnings.push({ text: `command-line line 0: Unsupported option "${keyword}"`, lineEnd: '\r\n' }); return;
      case 'config-only': throw new UsageError(rule.why);
      default: // deprecated, ignore: ssh says nothing above debug level
    }
  }

  private localOption(keyword: string, first: string, args: string[], rest: string): void {
    const inv = this.inv;
    switch (keyword) {
      case 'sendenv':
        for (const name of args) {
          if (!name || name.includes('=')) throw new UsageError('command-line line 0: Invalid environment name.');
          // "-PATTERN" removes the patterns given so far that it matches, as ssh's rm_env().
          if (name.startsWith('-')) this.sendEnv = this.sendEnv.filter((p) => !globMatch(name.slice(1), p));
          else this.sendEnv.push(name);
        }
        return;
      case 'setenv':
        if (args.some((pair) => !pair.includes('='))) throw new UsageError('command-line line 0: Invalid SetEnv.');
        // Only the first SetEnv line counts, and in it the first value of a name, as in ssh.
        if (this.setEnvGiven) return;
        this.setEnvGiven = true;
        for (const pair of args) {
          const eq = pair.indexOf('=');
          if (!(pair.slice(0, eq) in inv.env)) inv.env[pair.slice(0, eq)] = pair.slice(eq + 1);
        }
        return;
      case 'requesttty':
        if (inv.requestTty === undefined) inv.requestTty = choice(keyword, first, { no: 'no', yes: 'yes', force: 'force', auto: 'auto', true: 'yes', false: 'no' });
        return;
      case 'sessiontype':
        if (!this.sessionTypeSet) {
          inv.sessionType = choice(keyword, first, { none: 'none', subsystem: 'subsystem', default: 'default' });
          this.sessionTypeSet = true;
        }
        return;
      case 'stdinnull':
        if (!this.stdinNullSet) inv.stdinNull = yesNo(keyword, first);
        this.stdinNullSet = true;
        return;
      case 'forkafterauthentication':
        if (!this.forkSet) inv.fork = yesNo(keyword, first);
        this.forkSet = true;
        return;
      case 'localforward':
        if (args.length !== 2) throw new UsageError(`command-line line 0: Missing target argument.`);
        this.forwardSpecs.push(`${args[0]}:${args[1]}`);
        parseLocalForward(`${args[0]}:${args[1]}`, false, `command-line line 0: Bad forwarding specification.`);
        return;
      case 'gatewayports': this.gatewayPorts ??= yesNo(keyword, first); return;
      case 'clearallforwardings': this.clearForwardings ??= yesNo(keyword, first); return;
      case 'remotecommand': this.remoteCommand ??= rest; return;
      case 'loglevel': {
        if (this.logLevelSet) return;
        const level = first.toUpperCase();
        if (!/^(QUIET|FATAL|ERROR|INFO|VERBOSE|DEBUG[123]?)$/.test(level)) throw new UsageError(`command-line line 0: unsupported log level '${first}'`);
        inv.quiet = /^(QUIET|FATAL|ERROR)$/.test(level);
        inv.verbose = level.startsWith('DEBUG') ? Number(level.slice(5) || 1) : 0;
        this.logLevelSet = true;
        return;
      }
      case 'escapechar': inv.ignored.push(`-o EscapeChar=${rest}: ${tables().IGNORED_VALUE_FLAGS.e}`); return;
      case 'ignoreunknown': if (!this.ignoreUnknown.length) this.ignoreUnknown.push(...first.split(',')); return;
    }
  }

  /** The destination: ssh://[user@]host[:port] or [user@]host; its user and port give way to -l, -p and -o. */
  destination(word: string): void {
    this.hasDestination = true;
    if (word.startsWith('ssh://')) {
      const uri = parseSshUri(word);
      if (!uri) throw new UsageError('', true);
      if (uri.user !== undefined) this.setOnce('user', uri.user);
      if (uri.port !== undefined) this.setOnce('port', String(uri.port));
      this.inv.destination = uri.host;
      return;
    }
    const at = word.lastIndexOf('@');
    if (at === 0) throw new UsageError('', true);
    if (at > 0) this.setOnce('user', word.slice(0, at));
    this.inv.destination = word.slice(at + 1);
  }

  /** The checks ssh.c makes once the command line is read, and the derived values. */
  finish(): Invocation {
    const inv = this.inv;
    if (this.done) return inv;
    if (!this.hasDestination) throw new UsageError('', true);
    if (!inv.command && inv.sessionType === 'subsystem') throw new UsageError('You must specify a subsystem to invoke.', true, '\n');
    if (inv.syslog && inv.logFile !== undefined) throw new UsageError("Can't specify both -y and -E");
    if (this.remoteCommand !== undefined && this.remoteCommand.toLowerCase() !== 'none') {
      if (inv.command) throw new UsageError('Cannot execute command-line and remote command.');
      if (/%[^%]/.test(this.remoteCommand)) {
        throw new UsageError('sshmux: -o RemoteCommand with %-tokens is refused: sshmux does not expand them; give the command after the destination');
      }
      inv.command = this.remoteCommand.replace(/%%/g, '%');
    }
    if (inv.fork && !inv.command && inv.sessionType !== 'none') throw new UsageError('Cannot fork into background without a command to execute.');
    if (inv.sessionType === 'none' && inv.command) inv.ignored.push(`the command "${inv.command}": -N and -W run no command, as in ssh`);
    inv.localForwards = this.clearForwardings ? [] : this.forwardSpecs.map((s) => parseLocalForward(s, this.gatewayPorts === true, s));
    for (const name of matchEnv(this.sendEnv, this.env)) if (!(name in inv.env)) inv.env[name] = this.env[name]!;
    return inv;
  }

  /** First value wins, as ssh's options do. */
  private setOnce(key: string, value: string): void {
    if (this.inv.options[key] === undefined) this.inv.options[key] = value;
  }

  /** A path option, made absolute: the daemon has another working directory. `last`: the last value wins (-F). */
  private setPath(key: string, value: string, last: boolean): void {
    const abs = value.split(' ').map((v) => (/^[~%/]/.test(v) ? v : path.resolve(v))).join(' ');
    if (last) this.inv.options[key] = abs;
    else this.setOnce(key, abs);
  }
}

/**
 * Whether to allocate a pty, as ssh.c decides; `warn`: ssh's "will not be
 * allocated" message applies. `stdinIsTty` is asked only when it matters.
 */
export function ptyDecision(inv: Invocation, stdinIsTty: () => boolean): { pty: boolean; warn: boolean } {
  const tty = inv.requestTty;
  let pty = tty === 'yes' || tty === 'force';
  if (!inv.command) pty = tty !== 'no';
  if (tty === 'no' || inv.sessionType === 'none') pty = false;
  if (!pty || tty === 'force') return { pty, warn: false };
  if (inv.stdinNull || !stdinIsTty()) return { pty: false, warn: true };
  return { pty, warn: false };
}

/** ssh's -L grammar, TCP only: [bind_address:]port:host:hostport, IPv6 addresses in brackets. */
export function parseLocalForward(value: string, gatewayPorts = false, message?: string): LocalForwardSpec {
  const parts: string[] = [];
  const re = /\[([^\]]*)\]|([^:]+)/y;
  let pos = 0;
  while (pos <= value.length) {
    re.lastIndex = pos;
    const m = re.exec(value);
    if (!m) break;
    parts.push(m[1] ?? m[2]);
    pos = re.lastIndex;
    if (value[pos] !== ':') break;
    pos++;
  }
  const bad = (why: string): UsageError =>
    (message ? new UsageError(message, false, '\n') : new UsageError(`bad -L "${value}": ${why}; expected [bind_address:]port:host:hostport`));
  if (pos !== value.length || (parts.length !== 3 && parts.length !== 4)) {
    throw bad(value.includes('/') ? 'Unix socket forwarding is not supported' : 'wrong number of fields');
  }
  // As ssh: no address means loopback unless -g (GatewayPorts); "*" or empty every interface.
  const [bindAddress, port, host, hostPort] = parts.length === 4 ? parts : [gatewayPorts ? '*' : 'localhost', ...parts];
  const num = (v: string, min: number): number => {
    const n = /^\d+$/.test(v) ? Number(v) : NaN;
    if (!(n >= min && n <= 65535)) throw bad(`"${v}" is not a port`);
    return n;
  };
  const addr = bindAddress === '*' || bindAddress === '' ? '0.0.0.0' : bindAddress === 'localhost' ? '127.0.0.1' : bindAddress;
  return { bindAddress: addr, port: num(port, 0), host, hostPort: num(hostPort, 1) };
}

/** -W host:port (IPv6 in brackets). */
function parseHostPort(value: string, message: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):([^:]+)$/.exec(value);
  if (!m) throw new UsageError(message, false, '\n');
  return { host: m[1] ?? m[2], port: portNumber(m[3], message) };
}

/** ssh's a2port: a number from 1 to 65535, or a service name from /etc/services. */
function portNumber(value: string, message: string): number {
  if (/^\d+$/.test(value)) {
    const n = Number(value);
    if (n >= 1 && n <= 65535) return n;
    throw new UsageError(message, false, '\n');
  }
  let services = '';
  try {
    services = fs.readFileSync('/etc/services', 'utf8');
  } catch {
    // no services file: names do not resolve
  }
  for (const line of services.split('\n')) {
    const [name, portProto, ...aliases] = line.replace(/#.*/, '').trim().split(/\s+/);
    if (portProto?.endsWith('/tcp') && (name === value || aliases.includes(value))) return Number(portProto.split('/')[0]);
  }
  throw new UsageError(message, false, '\n');
}

/** parse_ssh_uri(): ssh://[user[;params]@]host[:port][/], host a domain name or a bracketed address. */
function parseSshUri(uri: string): { user?: string; host: string; port?: number } | undefined {
  let rest = uri.slice('ssh://'.length);
  let user: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    user = decodeUri(rest.slice(0, at).split(';')[0]);
    if (!user) return undefined;
    rest = rest.slice(at + 1);
  }
  const m = /^(\[[^\]]*\]|[^:/[]*)(?:([:/])(.*))?$/.exec(rest);
  if (!m || !m[1]) return undefined;
  const host = m[1].startsWith('[') ? m[1].slice(1, -1) : m[1];
  // ssh's valid_domain(), which also rejects bracketed IPv6 addresses here.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(host) || host.includes('..')) return undefined;
  let port: number | undefined;
  let tail = m[3] ?? '';
  if (m[2] === ':') {
    const slash = tail.indexOf('/');
    const portText = slash >= 0 ? tail.slice(0, slash) : tail;
    if (!/^\d+$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) return undefined;
    port = Number(portText);
    tail = slash >= 0 ? tail.slice(slash + 1) : '';
  }
  if (tail) return undefined; // a path is not allowed
  return { user, host: host.replace(/\.$/, ''), port };
}

function decodeUri(s: string): string | undefined {
  if (/%(?![0-9A-Fa-f]{2})/.test(s)) return undefined;
  return s.replace(/\+/g, ' ').replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** -c and -m take comma-separated algorithm names, optionally prefixed with +, - or ^. */
function checkAlgorithms(value: string, message: string): void {
  if (!/^[+^-]?[A-Za-z0-9@._-]+(,[A-Za-z0-9@._-]+)*$/.test(value)) throw new UsageError(message, false, '\n');
}

function yesNo(keyword: string, value: string): boolean {
  return choice(keyword, value, { yes: true, no: false, true: true, false: false });
}

function choice<T>(keyword: string, value: string, choices: Record<string, T>): T {
  const v = choices[value.toLowerCase()];
  if (v === undefined) throw new UsageError(`command-line line 0: unsupported option "${value}" for ${keyword}.`);
  return v;
}

/** The names of our environment variables that SendEnv patterns select. */
function matchEnv(patterns: string[], env: NodeJS.ProcessEnv): string[] {
  return Object.keys(env).filter((name) => env[name] !== undefined && patterns.some((p) => globMatch(p, name)));
}

/** ssh's match_pattern: `*` and `?` wildcards; IgnoreUnknown matches without case. */
function globMatch(pattern: string, s: string, ignoreCase = false): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`, ignoreCase ? 'i' : '').test(s);
}
