#!/usr/bin/env node
// sshmuxd [--socket PATH] [-F SSH_CONFIG] [--config FILE]
import { parseArgs } from 'node:util';
import { defaultSocketPath } from '../proto/socket-path';
import { Daemon, VERSION } from './daemon';
import { createLogger } from './log';

const USAGE = `usage: sshmuxd [--socket PATH] [-F SSH_CONFIG] [--config FILE] [--log-level LEVEL]

  --socket PATH     Unix socket to listen on (default: $SSHMUX_SOCKET, else
                    $XDG_RUNTIME_DIR/sshmux/sshmuxd.sock, else /run/sshmux/sshmuxd.sock)
  -F SSH_CONFIG     OpenSSH client config to resolve hosts with (default:
                    ~/.ssh/config then /etc/ssh/ssh_config)
  --config FILE     daemon limits, JSON (see README: Configuration)
  --log-level LEVEL pino level: trace, debug, info (default), warn, error
  --grace SECONDS   on SIGTERM, how long running sessions may finish (default 30)`;

/** Exit status for bad usage or configuration, as sysexits' EX_CONFIG. */
const EXIT_CONFIG = 78;

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({
      options: {
        socket: { type: 'string' },
        F: { type: 'string', short: 'F' },
        config: { type: 'string' },
        'log-level': { type: 'string' },
        grace: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
      },
      allowPositionals: false,
    }).values;
  } catch (err) {
    process.stderr.write(`sshmuxd: ${(err as Error).message}\n${USAGE}\n`);
    process.exit(EXIT_CONFIG);
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (args.version) {
    process.stdout.write(`sshmuxd ${VERSION}\n`);
    return;
  }
  const graceS = args.grace === undefined ? 30 : Number(args.grace);
  if (!Number.isFinite(graceS) || graceS < 0) {
    process.stderr.write(`sshmuxd: --grace must be a number of seconds, got "${args.grace}"\n`);
    process.exit(EXIT_CONFIG);
  }
  const log = createLogger(args['log-level']);
  let daemon: Daemon;
  try {
    daemon = await Daemon.start({
      socketPath: args.socket ?? defaultSocketPath(),
      sshConfigFile: args.F,
      configFile: args.config,
      log,
    });
  } catch (err) {
    process.stderr.write(`sshmuxd: ${(err as Error).message}\n`);
    process.exit(EXIT_CONFIG);
  }

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, graceS }, 'stopping: finishing running sessions');
    daemon.stop(graceS * 1000).then(() => {
      log.info('stopped');
      process.exit(0);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => daemon.reload());
}

main();
