#!/usr/bin/env node
// sshmux [options] destination [command [argument ...]]: ssh's command line,
// with every session riding sshmuxd's pooled connections.
import { SshMux, SshMuxError } from '../client-sdk';

/** ssh's own status for "sshmux or the connection failed". */
const EXIT_FAILURE = 255;

interface Invocation {
  destination: string;
  command: string;
  options: Record<string, string>;
  stdin: boolean;
  quiet: boolean;
  verbose: boolean;
}

class UsageError extends Error {}

/** Flags ssh takes without an argument that mean nothing here (no X11, agent forwarding, compression...). */
const IGNORED_FLAGS = new Set(['4', '6', 'A', 'a', 'C', 'T', 'X', 'x', 'Y', 'k', 'K', 'g', 't']);
/** -o keys that describe the local ssh process, meaningless when the daemon owns the connection. */
const IGNORED_OPTIONS = new Set(['controlmaster', 'controlpath', 'controlpersist', 'compression', 'loglevel', 'forwardagent',
  'forwardx11', 'requesttty', 'visualhostkey', 'addkeystoagent', 'ipqos', 'escapechar', 'tcpkeepalive', 'updatehostkeys']);
/** -o keys that would make something run a local command: the daemon never does. */
const REFUSED_OPTIONS = new Set(['proxycommand', 'localcommand', 'permitlocalcommand', 'knownhostscommand', 'remotecommand', 'proxyusefdpass']);

export function parseCommandLine(argv: string[]): Invocation {
  const inv: Invocation = { destination: '', command: '', options: {}, stdin: true, quiet: false, verbose: false };
  let i = 0;
  const setOption = (spec: string): void => {
    const m = /^\s*([A-Za-z0-9]+)\s*(?:=|\s)\s*(.*)$/.exec(spec);
    if (!m) throw new UsageError(`bad -o option "${spec}": expected Key=Value`);
    const key = m[1].toLowerCase();
    if (REFUSED_OPTIONS.has(key)) {
      throw new UsageError(`-o ${m[1]} is refused: sshmuxd never runs a command a client sends; set it in the daemon's ssh_config if you need it`);
    }
    if (!IGNORED_OPTIONS.has(key) && !(key in inv.options)) inv.options[key] = m[2];
  };
  for (; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      i++;
      break;
    }
    if (!arg.startsWith('-') || arg === '-') break;
    for (let j = 1; j < arg.length; j++) {
      const flag = arg[j];
      const takesValue = 'ploieFJLRDWbcmESBIQw'.includes(flag);
      if (!takesValue) {
        if (flag === 'n') inv.stdin = false;
        else if (flag === 'q') inv.quiet = true;
        else if (flag === 'v') inv.verbose = true;
        else if (!IGNORED_FLAGS.has(flag)) throw new UsageError(`unknown option -- ${flag}`);
        continue;
      }
      let value = arg.slice(j + 1);
      if (!value) {
        if (++i >= argv.length) throw new UsageError(`option requires an argument -- ${flag}`);
        value = argv[i];
      }
      switch (flag) {
        case 'p': setOption(`Port=${value}`); break;
        case 'l': setOption(`User=${value}`); break;
        case 'o': setOption(value); break;
        case 'i': setOption(`IdentityFile=${value}`); break;
        case 'e': if (value !== 'none') throw new UsageError('only "-e none" is supported: there is no escape character'); break;
        default: throw new UsageError(`option -${flag} is not supported by sshmux yet`);
      }
      break;
    }
  }
  if (i >= argv.length) throw new UsageError('missing destination');
  let destination = argv[i++];
  const url = /^ssh:\/\/(?:([^@/]+)@)?([^:/]+|\[[^\]]+\])(?::(\d+))?\/?$/.exec(destination);
  if (url) {
    destination = url[1] ? `${url[1]}@${url[2]}` : url[2];
    if (url[3] && !('port' in inv.options)) inv.options.port = url[3];
  }
  inv.destination = destination;
  // As ssh does: the command and its arguments joined with spaces for the remote shell.
  inv.command = argv.slice(i).join(' ');
  return inv;
}

async function main(): Promise<number> {
  let inv: Invocation;
  try {
    inv = parseCommandLine(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`sshmux: ${(err as Error).message}\nusage: sshmux [-nqv] [-l user] [-p port] [-o option] destination [command [argument ...]]\n`);
    return EXIT_FAILURE;
  }
  if (!inv.command) {
    process.stderr.write('sshmux: an interactive login needs a command for now; run: sshmux host command\n');
    return EXIT_FAILURE;
  }
  const mux = await SshMux.connect({ clientName: 'sshmux' });
  const proc = mux.spawn(inv.destination, inv.command, { stdin: inv.stdin, options: inv.options });
  if (inv.verbose) {
    proc.once('started', (s) => process.stderr.write(
      `sshmux: session on ${s.connection} after ${s.waitedMs} ms${s.newConnection ? ' (new connection)' : ''}\n`));
  }
  if (inv.stdin) process.stdin.pipe(proc.stdin);
  proc.stdout.pipe(process.stdout);
  proc.stderr.pipe(process.stderr);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => proc.kill(sig));
  const result = await proc.exited;
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  if (result.signal) {
    if (!inv.quiet) process.stderr.write(`sshmux: remote command killed by signal ${result.signal}\n`);
    return EXIT_FAILURE;
  }
  return result.code ?? EXIT_FAILURE;
}

function drained(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => (stream.writableLength === 0 ? resolve() : stream.write('', () => resolve())));
}

if (require.main === module) {
  main().then((code) => process.exit(code), (err) => {
    const msg = err instanceof SshMuxError ? err.message : (err as Error).stack;
    process.stderr.write(`sshmux: ${msg}\n`);
    process.exit(EXIT_FAILURE);
  });
}
