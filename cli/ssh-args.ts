// ssh's command line, parsed as ssh parses it: getopt flags (packed, with
// attached or separate values) up to the first positional, which is the
// destination; everything after it is the remote command. No general CLI
// parser models that grammar, hence this small hand-written one.
import * as path from 'node:path';
import { CLIENT_OPTIONS } from '../proto/client-options';

export interface Invocation {
  destination: string;
  /** Remote command: the arguments joined with spaces, as ssh does. Empty: a login shell. */
  command: string;
  /** -s: the command is a subsystem name (scp and sftp call ssh this way). */
  subsystem: boolean;
  /** ssh -o style options the daemon applies (lower-case keys). */
  options: Record<string, string>;
  /** Environment to send (-o SendEnv / SetEnv). */
  env: Record<string, string>;
  /** false: -n, the remote reads an empty stdin. */
  stdin: boolean;
  /** 'auto': a pty when the local stdin is a terminal and there is no command, as ssh decides. */
  tty: 'no' | 'auto' | 'yes' | 'force';
  /** -N: no remote command. */
  noCommand: boolean;
  /** -W host:port: stdio forwarded to that address through the destination. */
  forward?: { host: string; port: number };
  /** -L [bind_address:]port:host:hostport, in order. */
  localForwards: LocalForwardSpec[];
  quiet: boolean;
  verbose: boolean;
  /** What was accepted but ignored (shown with -v). */
  ignored: string[];
}

export interface LocalForwardSpec { bindAddress: string; port: number; host: string; hostPort: number }

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const USAGE = 'usage: sshmux [-46AaCNnqsTtvXxY] [-e none] [-F configfile] [-i identity_file] [-J destination]\n' +
  '              [-L [bind_address:]port:host:hostport] [-l login_name] [-o option] [-p port]\n' +
  '              [-W host:port] destination [command [argument ...]]';

/** Flags without a value that change nothing when the daemon owns the connection. */
const IGNORED_FLAGS = new Set(['4', '6', 'A', 'a', 'C', 'g', 'K', 'k', 'X', 'x', 'Y']);
/** Flags with a value, in ssh's getopt string. */
const VALUE_FLAGS = 'BbcDEeFIiJLlmOoPpQRSWw';

/** -o keys the daemon applies per call: its allow-list. */
const PASSED_OPTIONS = new Set(Object.keys(CLIENT_OPTIONS));
/** Options naming local files. */
const PATH_OPTIONS = new Set(['identityfile', 'userknownhostsfile', 'configfile']);
/** -o keys that describe the local ssh process or the connection's setup, meaningless here: accepted so tools' command lines pass. */
const IGNORED_OPTIONS = new Set(['controlmaster', 'controlpath', 'controlpersist', 'compression', 'loglevel', 'forwardagent',
  'forwardx11', 'forwardx11trusted', 'visualhostkey', 'addkeystoagent', 'ipqos', 'escapechar', 'tcpkeepalive', 'updatehostkeys',
  'clearallforwardings', 'gssapiauthentication', 'gssapidelegatecredentials', 'kbdinteractiveauthentication',
  'challengeresponseauthentication', 'passwordauthentication', 'preferredauthentications', 'pubkeyauthentication',
  'hostbasedauthentication', 'hashknownhosts', 'checkhostip', 'exitonforwardfailure', 'numberofpasswordprompts',
  'connectionattempts', 'addressfamily', 'protocol', 'forkafterauthentication', 'sessiontype', 'stdinnull',
  'verifyhostkeydns', 'streamlocalbindunlink', 'enableescapecommandline', 'obscurekeystroketiming']);
/** -o keys that would make something run a local command, refused unless they are switched off. */
const COMMAND_OPTIONS: Record<string, (v: string) => boolean> = {
  proxycommand: (v) => v.toLowerCase() !== 'none',
  localcommand: (v) => v !== '' && v.toLowerCase() !== 'none',
  permitlocalcommand: (v) => v.toLowerCase() !== 'no',
  knownhostscommand: (v) => v.toLowerCase() !== 'none',
  proxyusefdpass: (v) => v.toLowerCase() !== 'no',
};

export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv = process.env): Invocation {
  const inv: Invocation = {
    destination: '', command: '', subsystem: false, options: {}, env: {}, stdin: true, tty: 'auto',
    noCommand: false, quiet: false, verbose: false, ignored: [], localForwards: [],
  };
  let ttyFlags = 0;
  const seen = new Set<string>();
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      i++;
      break;
    }
    if (!arg.startsWith('-') || arg === '-') break;
    for (let j = 1; j < arg.length; j++) {
      const flag = arg[j];
      if (!VALUE_FLAGS.includes(flag)) {
        switch (flag) {
          case 'n': inv.stdin = false; break;
          case 'N': inv.noCommand = true; break;
          case 'q': inv.quiet = true; break;
          case 'v': inv.verbose = true; break;
          case 's': inv.subsystem = true; break;
          case 't': ttyFlags++; break;
          case 'T': inv.tty = 'no'; ttyFlags = -100; break;
          default:
            if (!IGNORED_FLAGS.has(flag)) throw new UsageError(`unknown option -- ${flag}`);
            inv.ignored.push(`-${flag}`);
        }
        continue;
      }
      let value = arg.slice(j + 1);
      if (!value) {
        if (++i >= argv.length) throw new UsageError(`option requires an argument -- ${flag}`);
        value = argv[i];
      }
      switch (flag) {
        case 'p': setOption(inv, seen, 'Port', value, env); break;
        case 'l': setOption(inv, seen, 'User', value, env); break;
        case 'i': setOption(inv, seen, 'IdentityFile', value, env); break;
        case 'F': setOption(inv, seen, 'ConfigFile', value, env); break;
        case 'J': setOption(inv, seen, 'ProxyJump', value, env); break;
        case 'o': {
          const m = /^\s*([A-Za-z0-9]+)\s*(?:=\s*|\s+)(.*)$/.exec(value);
          if (!m) throw new UsageError(`bad -o option "${value}": expected Key=Value`);
          setOption(inv, seen, m[1], unquote(m[2].trim()), env);
          break;
        }
        case 'e':
          if (value !== 'none') throw new UsageError('only "-e none" is supported: sshmux has no escape character');
          break;
        case 'W': {
          const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(value);
          if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535) throw new UsageError(`bad -W "${value}": expected host:port`);
          inv.forward = { host: m[1] ?? m[2], port: Number(m[3]) };
          break;
        }
        case 'L':
          inv.localForwards.push(parseLocalForward(value));
          break;
        case 'R':
          throw new UsageError('-R (remote forwarding) is not supported: a listener on a pooled connection would outlive ' +
            'this process and be shared by every client of the daemon; use ssh -R for it');
        case 'D':
          throw new UsageError('-D (SOCKS proxy) is not supported; use ssh -D, or -L for a fixed destination');
        default:
          throw new UsageError(`option -${flag} is not supported by sshmux`);
      }
      break;
    }
  }
  if (i >= argv.length) throw new UsageError('missing destination');
  let destination = argv[i++];
  const url = /^ssh:\/\/(?:([^@/]+)@)?([^:/@]+|\[[^\]]+\])(?::(\d+))?\/?$/.exec(destination);
  if (url) {
    destination = url[1] ? `${url[1]}@${url[2]}` : url[2];
    if (url[3] && !seen.has('port')) inv.options.port = url[3];
  } else if (destination.startsWith('ssh://')) {
    throw new UsageError(`bad destination "${destination}": expected ssh://[user@]host[:port]`);
  }
  inv.destination = destination;
  // As ssh does: the command and its arguments joined with spaces for the remote shell.
  inv.command = argv.slice(i).join(' ');
  if (inv.subsystem && !inv.command) throw new UsageError('-s needs a subsystem name after the destination');
  if (inv.noCommand && inv.command) throw new UsageError('-N means no remote command, but one was given');
  if (inv.forward && inv.command) throw new UsageError('-W forwards stdio, so it takes no remote command');
  if (inv.forward && inv.localForwards.length) throw new UsageError('-W cannot be combined with -L');
  if (ttyFlags >= 2) inv.tty = 'force';
  else if (ttyFlags === 1) inv.tty = 'yes';
  else if (inv.tty === 'auto' && inv.command) inv.tty = 'no';
  return inv;
}

/** ssh's -L grammar, TCP only: [bind_address:]port:host:hostport, IPv6 addresses in brackets. */
export function parseLocalForward(value: string): LocalForwardSpec {
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
  const bad = (why: string): UsageError => new UsageError(`bad -L "${value}": ${why}; expected [bind_address:]port:host:hostport`);
  if (pos !== value.length || (parts.length !== 3 && parts.length !== 4)) {
    throw bad(value.includes('/') ? 'Unix socket forwarding is not supported' : 'wrong number of fields');
  }
  const [bindAddress, port, host, hostPort] = parts.length === 4 ? parts : ['127.0.0.1', ...parts];
  const num = (v: string, min: number): number => {
    const n = /^\d+$/.test(v) ? Number(v) : NaN;
    if (!(n >= min && n <= 65535)) throw bad(`"${v}" is not a port`);
    return n;
  };
  // As ssh: "*" or an empty address means every interface, "localhost" the loopback.
  const addr = bindAddress === '*' || bindAddress === '' ? '0.0.0.0' : bindAddress === 'localhost' ? '127.0.0.1' : bindAddress;
  return { bindAddress: addr, port: num(port, 0), host, hostPort: num(hostPort, 1) };
}

/** First value wins, as in ssh; returns nothing but fills inv. */
function setOption(inv: Invocation, seen: Set<string>, keyIn: string, value: string, env: NodeJS.ProcessEnv): void {
  const key = keyIn.toLowerCase();
  const refuse = COMMAND_OPTIONS[key];
  if (refuse) {
    if (refuse(value)) {
      throw new UsageError(`-o ${keyIn} is refused: sshmuxd never runs a command a client sends; ` +
        "set it in the daemon's ssh_config if the daemon should use it");
    }
    return;
  }
  if (key === 'sendenv') {
    // Patterns of local variables to send; sshd's AcceptEnv decides what it takes.
    for (const pattern of value.split(/\s+/).filter(Boolean)) {
      const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
      for (const [name, v] of Object.entries(env)) if (v !== undefined && re.test(name) && !(name in inv.env)) inv.env[name] = v;
    }
    return;
  }
  if (key === 'setenv') {
    for (const pair of value.split(/\s+/).filter(Boolean)) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new UsageError(`bad SetEnv "${pair}": expected NAME=value`);
      inv.env[pair.slice(0, eq)] = unquote(pair.slice(eq + 1));
    }
    return;
  }
  if (key === 'requesttty') {
    const v = value.toLowerCase();
    const map: Record<string, Invocation['tty']> = { no: 'no', auto: 'auto', yes: 'yes', force: 'force', false: 'no', true: 'yes' };
    if (!map[v]) throw new UsageError(`bad RequestTTY "${value}": expected no, auto, yes or force`);
    inv.tty = map[v];
    return;
  }
  if (key === 'remotecommand') {
    if (value.toLowerCase() !== 'none') throw new UsageError('-o RemoteCommand is not supported: give the command after the destination');
    return;
  }
  if (IGNORED_OPTIONS.has(key)) {
    inv.ignored.push(`-o ${keyIn}=${value}`);
    return;
  }
  if (!PASSED_OPTIONS.has(key)) throw new UsageError(`-o ${keyIn} is not supported by sshmux`);
  if (seen.has(key)) return;
  seen.add(key);
  // The daemon has another working directory: relative paths are ours.
  inv.options[key] = PATH_OPTIONS.has(key) && !/^[~%/]/.test(value) ? path.resolve(value) : value;
}

/** Ansible writes -o 'User="deploy"'. */
function unquote(v: string): string {
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
}
