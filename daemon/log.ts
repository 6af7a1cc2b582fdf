// pino JSON logs on stdout: one line per connection event and per failure,
// never per exec at info level. Secrets never reach a log line: we log no
// commands, environments or key material, and redact anything shaped like
// them in case a future call site slips.
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level = process.env.SSHMUX_LOG_LEVEL ?? 'info'): Logger {
  // Synchronous writes: a line is out before the next event, and nothing is
  // left to flush at exit.
  const destination = pino.destination({ dest: 1, sync: true });
  const logger = pino({
    level,
    base: { pid: process.pid },
    redact: {
      paths: ['command', 'env', 'password', 'passphrase', 'privateKey', 'key', '*.command', '*.env', '*.password', '*.privateKey'],
      censor: '[redacted]',
    },
  }, destination);
  // Whoever read our stdout is gone (a dead journald pipe, a parent that
  // exited): keep serving without logs rather than crash or spin on EPIPE.
  destination.on('error', () => {
    logger.level = 'silent';
  });
  return logger;
}

/**
 * One log line for a burst of the same event: the first at once, then one
 * per window saying how many followed, so a flood of misbehaving clients
 * cannot flood the log.
 */
export class LogTally {
  private more = 0;
  private window: NodeJS.Timeout | undefined;

  constructor(
    private readonly msg: string,
    private readonly windowMs = 10_000,
  ) {}

  note(log: Logger, fields: Record<string, unknown> = {}): void {
    if (this.window) {
      this.more++;
      return;
    }
    log.warn(fields, this.msg);
    this.window = setTimeout(() => {
      this.window = undefined;
      if (this.more > 0) log.warn({ count: this.more }, `${this.msg} (${this.more} more in the last ${this.windowMs / 1000} s)`);
      this.more = 0;
    }, this.windowMs);
    this.window.unref();
  }
}
