// Where the sshmux command's own messages go, as ssh routes its log: to
// stderr, appended to a file with -E, to syslog with -y (through logger(1):
// Node has no datagram socket for /dev/log), and nowhere under -q, which in
// ssh silences even fatal errors. Lines end in CRLF on stderr, as ssh's do
// (the terminal may be in raw mode). The remote command's stderr is not a
// diagnostic: it always goes to stderr.
import { output } from './stdio';
import * as fs from 'node:fs';

export interface DiagnosticsOptions {
  quiet?: boolean;
  verbose?: number;
  logFile?: string;
  syslog?: boolean;
}

export class Diagnostics {
  constructor(private readonly opts: DiagnosticsOptions = {}) {}

  get verbose(): boolean {
    return (this.opts.verbose ?? 0) > 0;
  }

  /** A failure: "sshmux: ..." unless -q. */
  error(message: string): void {
    if (!this.opts.quiet) this.write(`sshmux: ${message}`);
  }

  /** One of ssh's own warnings, worded (and ended) as ssh writes it. */
  warn(message: string, lineEnd: '\r\n' | '\n' = '\r\n'): void {
    if (!this.opts.quiet) this.write(message, lineEnd);
  }

  /** -v only. */
  info(message: string): void {
    if (this.verbose && !this.opts.quiet) this.write(`sshmux: ${message}`);
  }

  /** -v only: one of ssh's own verbose lines, worded as ssh writes it ("Killed by signal 1."). */
  sshVerbose(message: string): void {
    if (this.verbose && !this.opts.quiet) this.write(message);
  }

  private write(line: string, lineEnd = '\r\n'): void {
    if (this.opts.logFile !== undefined) {
      try {
        fs.appendFileSync(this.opts.logFile, `${line}\n`, { mode: 0o600 });
        return;
      } catch (err) {
        output(2).write(`sshmux: cannot write to ${this.opts.logFile} (${(err as Error).message}); logging here instead\n`);
        this.opts.logFile = undefined;
      }
    }
    if (this.opts.syslog) {
      const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
      const r = spawnSync('logger', ['-t', 'sshmux', '-p', 'user.info', '--', line], { stdio: 'ignore', timeout: 5000 });
      if (r.status === 0) return;
      this.opts.syslog = false;
      output(2).write('sshmux: logger(1) failed, so -y cannot reach syslog; logging here instead\n');
    }
    output(2).write(`${line}${lineEnd}`);
  }
}
