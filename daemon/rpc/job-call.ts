// A JobRequest from a client: one call on its stream, answered by one
// JobResult (or Error), or for LOGS by the log as Data frames within the
// client's window and then Exit{code 0}. Cancel and a client going away end
// the call, never the job: the job lives on its host. The door drives it as
// any call (DoorCall) and hears from it through the same kind of sink.
import { Code, Fd, v1 } from '../../proto';
import { STDERR, STDOUT, type CallOutcome, type CallSink, type DoorCall, type OutputFd } from '../call/call';
import { MuxError, toMuxError } from '../errors';
import { jobsStopping, type Jobs, type JobInfo } from '../jobs/jobs';
import type { JobLogs } from '../jobs/job-logs';

/** How a job call ends: a call's ending (a log's exit, a failure), or the JobResult that answers it. */
export type JobOutcome = CallOutcome | { jobResult: v1.IJobResult; exit?: undefined; error?: undefined };

export class JobCall implements DoorCall {
  private readonly abort = new AbortController();
  private reader: JobLogs | undefined;
  private ended = false;

  constructor(
    private readonly sink: CallSink<JobOutcome>,
    private readonly request: v1.JobRequest,
    private readonly ctx: { jobs: Jobs; outputWindow: number },
  ) {}

  start(): void {
    const r = this.request;
    const jobs = this.ctx.jobs;
    const A = v1.JobRequest.Action;
    const timeoutMs = r.timeoutMs || undefined;
    let answer: Promise<JobInfo[]>;
    try {
      switch (r.action) {
        case A.SUBMIT: answer = jobs.submit(r.host, r.command, { name: r.name, env: r.env ?? {}, timeoutMs }).then((j) => [j]); break;
        case A.GET: answer = jobs.get(r.id, timeoutMs).then((j) => [j]); break;
        case A.LIST: answer = jobs.list(r.host, timeoutMs); break;
        case A.WAIT: answer = jobs.wait(r.id, timeoutMs, this.abort.signal).then((j) => [j]); break;
        case A.CANCEL: answer = jobs.cancel(r.id, timeoutMs).then((j) => [j]); break;
        case A.REMOVE: answer = jobs.remove(r.id, r.force, timeoutMs).then(() => []); break;
        case A.LOGS: return this.streamLog();
        default: throw new MuxError(Code.BAD_REQUEST, `unknown job action ${r.action}`);
      }
    } catch (err) {
      return this.end({ error: toMuxError(err) });
    }
    answer.then((list) => this.end({ jobResult: { jobs: list } }), (err: unknown) => this.end({ error: toMuxError(err) }));
  }

  private streamLog(): void {
    const r = this.request;
    const fd: OutputFd = r.fd === Fd.STDERR ? STDERR : STDOUT;
    const from = Number(r.from ?? 0);
    if (!Number.isSafeInteger(from) || from < 0) return this.end({ error: new MuxError(Code.BAD_REQUEST, `log offset ${r.from} is not a byte offset`) });
    this.reader = this.ctx.jobs.logs(r.id, fd === STDERR ? 'stderr' : 'stdout', from, r.follow, r.timeoutMs || undefined, this.ctx.outputWindow, {
      data: (chunk) => {
        if (!this.ended && this.sink.alive) this.sink.data(fd, chunk);
      },
      end: () => this.end({ exit: { code: 0, signal: null } }),
      fail: (err) => this.end({ error: err }),
    });
  }

  // ---- frames from the client ------------------------------------------

  onData(): void {
    this.sink.protocolError('a job call takes no stdin');
  }

  onEof(): void {}

  onWindow(bytes: number): void {
    this.reader?.grant(bytes);
  }

  onResize(): void {}

  onSignal(): void {}

  onCancel(reason: string): void {
    this.stop(new MuxError(Code.CANCELLED, `cancelled by the client${reason ? `: ${reason}` : ''}; the job itself keeps running`));
  }

  shutdown(): void {
    this.stop(jobsStopping());
  }

  clientGone(): void {
    this.stop(new MuxError(Code.CANCELLED, 'the client went away; the job keeps running'));
  }

  private stop(reason: MuxError): void {
    if (this.ended) return;
    this.abort.abort(reason);
    this.reader?.stop();
    this.end({ error: reason });
  }

  private end(outcome: JobOutcome): void {
    if (this.ended) return;
    this.ended = true;
    this.sink.end(outcome);
  }
}
