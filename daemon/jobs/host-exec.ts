// The one place where jobs run something on a host: a short exec session
// through the same call path as a client's (pool queue, deadlines, flow
// control, TERM then KILL on cancel), driven by an in-process sink instead
// of a client socket. Everything else in daemon/jobs/ calls runOnHost, so
// moving onto another call core changes this file only.
import { Code, codeName, Fd, type IFrame, v1 } from '../../proto';
import type { Agent } from '../pool/agent';
import { MuxError } from '../errors';
import type { Logger } from '../log';
import { SessionCall, type CallSink } from '../rpc/session-call';

export interface HostExecOptions {
  /** Written to the command's stdin, then EOF. */
  stdin?: Buffer;
  /** Whole call: waiting for a session, running. */
  timeoutMs: number;
  /** Most bytes of stdout plus stderr kept; beyond it the call is cancelled and fails with OUTPUT_LIMIT. */
  maxOutput: number;
}

export interface HostExecResult {
  code: number | null;
  signal: string | null;
  stdout: Buffer;
  stderr: Buffer;
}

/** Output granted ahead of what has been collected; collection is immediate, so this only sizes the SSH reads. */
const OUTPUT_WINDOW = 1024 * 1024;
/** Stdin credit before the call acknowledges writes (as a client's Welcome.window). */
const STDIN_WINDOW = 256 * 1024;
const STDIN_CHUNK = 64 * 1024;

/** Runs `command` on `host` (an alias, as a client names it) and collects its output, bounded by maxOutput. */
export function runOnHost(agent: Agent, log: Logger, host: string, command: string, opts: HostExecOptions): Promise<HostExecResult> {
  return new Promise((resolve, reject) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let collected = 0;
    let settled = false;
    let credit = STDIN_WINDOW;
    let stdinAt = 0;
    let running = false;
    const stdin = opts.stdin ?? Buffer.alloc(0);
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      fn();
    };
    const pushStdin = (): void => {
      while (running && stdinAt < stdin.length && credit > 0) {
        const n = Math.min(credit, STDIN_CHUNK, stdin.length - stdinAt);
        credit -= n;
        call.onData(Fd.STDIN, stdin.subarray(stdinAt, stdinAt + n));
        stdinAt += n;
      }
      if (running && stdinAt >= stdin.length) call.onEof();
    };
    const sink: CallSink = {
      alive: true,
      send(frame: IFrame): void {
        if (frame.started) {
          running = true;
          // After the call has finished setting up the channel.
          queueMicrotask(pushStdin);
        } else if (frame.window) {
          credit += frame.window.bytes ?? 0;
          pushStdin();
        } else if (frame.exit) {
          const signal = frame.exit.signal || null;
          settle(() => resolve({ code: signal ? null : frame.exit!.code ?? 0, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) }));
        } else if (frame.error) {
          const e = frame.error;
          settle(() => reject(new MuxError(e.code ?? Code.INTERNAL, e.message ?? codeName(e.code ?? 0), (e.phase || undefined) as MuxError['phase'])));
        }
      },
      sendData(_stream: number, fd: number, data: Buffer): void {
        if (settled) return;
        collected += data.length;
        if (collected > opts.maxOutput) {
          settle(() => reject(new MuxError(Code.OUTPUT_LIMIT, `the answer from ${host} exceeded ${opts.maxOutput} bytes`, 'running')));
          queueMicrotask(() => call.onCancel('output limit'));
          return;
        }
        // A copy: the chunk may be a view into ssh2's reusable buffer.
        (fd === Fd.STDERR ? stderr : stdout).push(Buffer.from(data));
        queueMicrotask(() => call.onWindow(data.length));
      },
      callEnded(): void {},
      protocolError(message: string): void {
        settle(() => reject(new MuxError(Code.INTERNAL, `internal error running a job script on ${host}: ${message}`)));
      },
    };
    const request = v1.SessionRequest.create({
      host, kind: v1.SessionRequest.Kind.EXEC, command, stdin: true, timeoutMs: opts.timeoutMs,
    });
    const call = new SessionCall(sink, 0, request, { agent, log, clientWindow: OUTPUT_WINDOW, stdinWindow: STDIN_WINDOW });
    call.start();
  });
}
