// pino JSON logs on stdout: one line per connection event and per failure,
// never per exec at info level. Secrets never reach a log line: we log no
// commands, environments or key material, and redact anything shaped like
// them in case a future call site slips.
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level = process.env.SSHMUX_LOG_LEVEL ?? 'info'): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    redact: {
      paths: ['command', 'env', 'password', 'passphrase', 'privateKey', 'key', '*.command', '*.env', '*.password', '*.privateKey'],
      censor: '[redacted]',
    },
  });
}
