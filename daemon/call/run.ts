// A call made by the daemon itself (the job poller, checks): a short
// command whose output is collected in memory, up to a bound, through the
// same call core as every door's calls, so it queues, keeps deadlines and
// cleans up like any other.
import { Code } from '../../proto';
import { MuxError } from '../errors';
import { ChannelCall } from './channel-call';
import { STDIN_WINDOW, type CallEnv, type CallOutcome, type CallRequest, type CallSink, type ExitStatus } from './call';

export interface RunOptions {
  /** Bytes for the command's stdin; absent: EOF at once. */
  stdin?: Buffer | string;
  /** Whole-call deadline. */
  timeoutMs: number;
  /** Most bytes of stdout plus stderr to keep; beyond it the call is cancelled with OUTPUT_LIMIT. */
  maxOutput?: number;
  options?: Record<string, string>;
  env?: Record<string, string>;
}

export interface RunResult extends ExitStatus {
  stdout: Buffer;
  stderr: Buffer;
}

/** Runs `command` on `host`; resolves with its exit and output, rejects with a MuxError. */
export function runCommand(env: CallEnv, host: string, command: string, opts: RunOptions): Promise<RunResult> {
  const maxOutput = opts.maxOutput ?? 16 * 1024 * 1024;
  const stdin = opts.stdin === undefined ? undefined : Buffer.from(opts.stdin);
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let total = 0;
    let overflow: MuxError | undefined;
    const request: CallRequest = { kind: 'exec', host, command, stdin: stdin !== undefined, timeoutMs: opts.timeoutMs, options: opts.options, env: opts.env };
    const sink: CallSink = {
      alive: true,
      started: () => {},
      data: (fd, chunk) => {
        total += chunk.length;
        if (total > maxOutput) {
          if (!overflow) {
            overflow = new MuxError(Code.OUTPUT_LIMIT, `the output of a daemon command on ${host} passed ${maxOutput} bytes; it was cancelled`, 'running');
            call.onCancel('output limit');
          }
          return;
        }
        (fd === 1 ? out : err).push(chunk);
      },
      stdinWritten: () => {},
      eof: () => {},
      end: (outcome: CallOutcome) => {
        if (overflow) return reject(overflow);
        if (outcome.error) return reject(outcome.error);
        resolve({ ...outcome.exit, stdout: Buffer.concat(out), stderr: Buffer.concat(err) });
      },
      protocolError: (message) => reject(new MuxError(Code.INTERNAL, `internal error: ${message}`)),
    };
    const call = new ChannelCall(sink, request, { ...env, outputWindow: maxOutput + 1, // all of it fits in memory by the bound above
      stdinCredit: Math.max(STDIN_WINDOW, stdin?.length ?? 0) });
    call.start();
    if (stdin) {
      if (stdin.length) call.onData(0, stdin);
      call.onEof();
    }
  });
}
