// systemd integration: sd_notify messages, the watchdog, and socket
// activation. Node cannot send on a Unix datagram socket, so messages go
// through systemd-notify(1) (hence NotifyAccess=all in the unit); it waits
// for systemd's BARRIER answer, so a message is never attributed after the
// helper exited. The arguments are fixed strings of our own making, never
// anything a client sent. Without NOTIFY_SOCKET nothing runs at all.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import type { Logger } from './log';

const NOTIFY_TIMEOUT_MS = 10_000;
/** First fd systemd passes (SD_LISTEN_FDS_START). */
const LISTEN_FDS_START = 3;

export class Notifier {
  private readonly socket: string | undefined;
  private queue: Promise<void> = Promise.resolve();
  private warned = false;
  private watchdog: NodeJS.Timeout | undefined;
  private lastStatus = '';

  constructor(private readonly log: Logger, env: NodeJS.ProcessEnv = process.env, private readonly binary = 'systemd-notify') {
    this.socket = env.NOTIFY_SOCKET || undefined;
  }

  get enabled(): boolean {
    return this.socket !== undefined;
  }

  /** Sends KEY=VALUE assignments in order; failures are logged once and never thrown. */
  notify(fields: Record<string, string>): Promise<void> {
    if (!this.socket) return Promise.resolve();
    const args = Object.entries(fields).map(([k, v]) => `${k}=${v.replace(/\n/g, ' ')}`);
    this.queue = this.queue.then(() => new Promise<void>((resolve) => {
      execFile(this.binary, args, { timeout: NOTIFY_TIMEOUT_MS, env: { ...process.env, NOTIFY_SOCKET: this.socket } }, (err, _out, stderr) => {
        if (err && !this.warned) {
          this.warned = true;
          this.log.warn({ err: `${err.message} ${stderr}`.trim() }, 'cannot notify systemd (is systemd-notify installed?); the service may time out in start-up');
        }
        resolve();
      });
    }));
    return this.queue;
  }

  /** STATUS=, sent only when it changed. */
  status(line: string): void {
    if (line === this.lastStatus) return;
    this.lastStatus = line;
    void this.notify({ STATUS: line });
  }

  /**
   * WATCHDOG=1 every half WATCHDOG_USEC, from a timer on the event loop:
   * a loop that stops turning stops the pings, and systemd restarts us.
   */
  startWatchdog(env: NodeJS.ProcessEnv = process.env): number | undefined {
    const usec = Number(env.WATCHDOG_USEC);
    if (!this.socket || !(usec > 0)) return undefined;
    if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== process.pid) return undefined;
    const everyMs = Math.max(1, Math.floor(usec / 2000));
    this.watchdog = setInterval(() => void this.notify({ WATCHDOG: '1' }), everyMs);
    this.watchdog.unref();
    return everyMs;
  }

  stopWatchdog(): void {
    clearInterval(this.watchdog);
  }
}

/** The listening socket systemd passed us (socket activation), or undefined. */
export function activatedSocketFd(env: NodeJS.ProcessEnv = process.env): number | undefined {
  if (Number(env.LISTEN_PID) !== process.pid) return undefined;
  const count = Number(env.LISTEN_FDS);
  if (!(count >= 1)) return undefined;
  // Consumed: children we start must not think the socket is theirs.
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  const fd = LISTEN_FDS_START;
  if (!fs.fstatSync(fd).isSocket()) throw new Error(`LISTEN_FDS is set but fd ${fd} is not a socket; check the .socket unit`);
  return fd;
}
