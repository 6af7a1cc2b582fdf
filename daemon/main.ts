#!/usr/bin/env node
// sshmuxd [--socket PATH] [-F SSH_CONFIG] [--config FILE] [--http ADDR] [--gateway ADDR]
import { parseArgs } from 'node:util';
import { defaultSocketPath } from '../proto/socket-path';
import { Daemon, VERSION } from './daemon';
import { createLogger } from './log';
import { activatedSocketFd, Notifier } from './systemd';
import { ssh2NativeCrypto } from './ssh/ssh2';

const USAGE = `usage: sshmuxd [--socket PATH] [-F SSH_CONFIG] [--config FILE] [--log-level LEVEL]
               [--http ADDR] [--gateway ADDR] [--state-dir DIR]

  --socket PATH     Unix socket to listen on (default: $SSHMUX_SOCKET, else
                    $XDG_RUNTIME_DIR/sshmux/sshmuxd.sock, else /run/sshmux/sshmuxd.sock)
  -F SSH_CONFIG     OpenSSH client config to resolve hosts with (default:
                    ~/.ssh/config then /etc/ssh/ssh_config)
  --config FILE     daemon limits, JSON (see README: Configuration)
  --log-level LEVEL pino level: trace, debug, info (default), warn, error
  --grace SECONDS   on SIGTERM, how long running sessions may finish (default 30)
  --exit-when-idle SECONDS
                    exit after this long with no clients and no connections
                    (used when the sshmux command starts a daemon itself)
  --http ADDR       serve /metrics (Prometheus), / (live status page) and
                    /rpc (the RPC over WebSocket, bearer token) on ADDR,
                    e.g. 127.0.0.1:9322; loopback only unless httpAllowRemote
  --gateway ADDR    an SSH server for any SSH client, on host:port (loopback
                    only unless gatewayAllowRemote) or a Unix socket path; the
                    SSH user name names the destination (alias or user@alias)
  --state-dir DIR   where the gateway's host key (and its generated client key)
                    live (default: $STATE_DIRECTORY, else
                    $XDG_STATE_HOME/sshmux, else ~/.local/state/sshmux)

Under systemd: READY/STATUS/WATCHDOG/RELOADING/STOPPING go to $NOTIFY_SOCKET
(through systemd-notify), and a socket passed with LISTEN_FDS is used as is.
SIGHUP reloads the configs; SIGTERM stops: running sessions get --grace, then exit 0.`;
/** How often STATUS= is refreshed (sent only when it changed). */
const STATUS_EVERY_MS = 5000;

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
        'exit-when-idle': { type: 'string' },
        http: { type: 'string' },
        gateway: { type: 'string' },
        'state-dir': { type: 'string' },
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
  const idleExitS = args['exit-when-idle'] === undefined ? 0 : Number(args['exit-when-idle']);
  if (!Number.isFinite(idleExitS) || idleExitS < 0) {
    process.stderr.write(`sshmuxd: --exit-when-idle must be a number of seconds, got "${args['exit-when-idle']}"\n`);
    process.exit(EXIT_CONFIG);
  }
  const log = createLogger(args['log-level']);
  const notifier = new Notifier(log);
  if (!ssh2NativeCrypto()) {
    log.info('ssh2\'s native crypto binding is not built: SSH ciphers run in JavaScript, at more CPU per byte and per exec (README, design notes: "ssh2\'s C++ crypto binding"; npm ci builds it where a compiler is)');
  }

  // Handlers first: a SIGTERM that arrives while we start must still stop us cleanly.
  let daemon: Daemon | undefined;
  let stopping = false;
  const stop = (reason: string): void => {
    if (stopping) return;
    stopping = true;
    if (!daemon) return; // start() finishes, sees `stopping`, and exits
    log.info({ reason, graceS }, 'stopping: finishing running sessions');
    const d = daemon;
    notifier.stopWatchdog();
    notifier.notify({ STOPPING: '1', STATUS: `stopping (${reason}): ${d.summary()}` })
      .then(() => d.stop(graceS * 1000))
      .then(() => {
        log.info('stopped');
        process.exit(0);
      });
  };
  let reloading = Promise.resolve();
  const reload = (): void => {
    reloading = reloading.then(async () => {
      if (!daemon || stopping) return;
      // MONOTONIC_USEC lets a newer systemd tell this reload from an older one.
      await notifier.notify({ RELOADING: '1', MONOTONIC_USEC: String(process.hrtime.bigint() / 1000n) });
      const r = daemon.reload();
      await notifier.notify({ READY: '1', STATUS: r.ok ? daemon.summary() : `reload refused, old configuration kept: ${r.error}` });
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', reload);

  try {
    daemon = await Daemon.start({
      socketPath: args.socket ?? defaultSocketPath(),
      activatedFd: activatedSocketFd(),
      sshConfigFile: args.F,
      configFile: args.config,
      http: args.http,
      gateway: args.gateway,
      stateDir: args['state-dir'],
      log,
      requestStop: () => stop('sshmuxctl stop'),
    });
  } catch (err) {
    process.stderr.write(`sshmuxd: ${(err as Error).message}\n`);
    await notifier.notify({ STATUS: `failed to start: ${(err as Error).message}` });
    process.exit(EXIT_CONFIG);
  }
  // Ready only now: the socket listens and the configs are loaded.
  await notifier.notify({ READY: '1', STATUS: daemon.summary() });
  const watchdogMs = notifier.startWatchdog();
  if (watchdogMs) log.info({ everyMs: watchdogMs }, 'systemd watchdog armed');
  if (notifier.enabled) {
    const d = daemon;
    setInterval(() => notifier.status(d.summary()), STATUS_EVERY_MS).unref();
  }
  if (stopping) {
    stopping = false;
    stop('signal during start-up');
  }
  if (idleExitS > 0) exitWhenIdle(daemon, idleExitS * 1000, () => stop(`idle for ${idleExitS} s`));
}

/** For autostarted daemons: exit once nobody has used us for idleMs (no clients, no connections). */
function exitWhenIdle(daemon: Daemon, idleMs: number, exit: () => void): void {
  let idleSince = Date.now();
  setInterval(() => {
    if (!daemon.idle) idleSince = Date.now();
    else if (Date.now() - idleSince >= idleMs) exit();
  }, Math.min(5000, Math.max(100, idleMs / 4))).unref();
}

main();
