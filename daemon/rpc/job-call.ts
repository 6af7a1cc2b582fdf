// A JobRequest from a client: one call on its stream, answered by one
// JobResult (or Error), or for LOGS by the log as Data frames within the
// client's window and then Exit{code 0}. Cancel and a client going away end
// the call, never the job: the job lives on its host.
import { Code, DATA_CHUNK, Fd, type IFrame, v1 } from '../../proto';
import { MuxError, toMuxError } from '../errors';
import type { Jobs, JobInfo } from '../jobs/jobs';
import type { JobLogs } from '../jobs/job-logs';
import { errorBody, type CallSink } from './session-call';

export class JobCall {
  private readonly abort = new AbortController();
  private reader: JobLogs | undefined;
  private ended = false;

  constructor(
    private readonly sink: CallSink,
    readonly stream: number,
    private readonly request: v1.JobRequest,
    private readonly ctx: { jobs: Jobs; clientWindow: number },
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
      return this.end({ error: errorBody(toMuxError(err)) });
    }
    answer.then((list) => this.end({ jobResult: { jobs: list } }), (err: unknown) => this.end({ error: errorBody(toMuxError(err)) }));
  }

  private streamLog(): void {
    const r = this.request;
    const fd = r.fd === Fd.STDERR ? Fd.STDERR : Fd.STDOUT;
    const from = Number(r.from ?? 0);
    if (!Number.isSafeInteger(from) || from < 0) return this.end({ error: errorBody(new MuxError(Code.BAD_REQUEST, `log offset ${r.from} is not a byte offset`)) });
    this.reader = this.ctx.jobs.logs(r.id, fd === Fd.STDERR ? 'stderr' : 'stdout', from, r.follow, r.timeoutMs || undefined, this.ctx.clientWindow, {
      data: (chunk) => {
        if (this.ended || !this.sink.alive) return;
        for (let off = 0; off < chunk.length; off += DATA_CHUNK) this.sink.sendData(this.stream, fd, chunk.subarray(off, off + DATA_CHUNK));
      },
      end: () => this.end({ exit: { code: 0 } }),
      fail: (err) => this.end({ error: errorBody(err) }),
    });
  }

  // ---- frames from the client ------------------------------------------

  onData(): void {
    this.sink.protocolError(`stream ${this.stream}: a job call takes no stdin`);
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
    this.stop(new MuxError(Code.SHUTTING_DOWN, 'sshmuxd is stopping; the job keeps running on its host: ask again once the daemon is back'));
  }

  clientGone(): void {
    this.stop(new MuxError(Code.CANCELLED, 'the client went away'));
  }

  private stop(reason: MuxError): void {
    if (this.ended) return;
    this.abort.abort(reason);
    this.reader?.stop();
    this.end({ error: errorBody(reason) });
  }

  private end(body: Omit<IFrame, 'stream'>): void {
    if (this.ended) return;
    this.ended = true;
    if (this.sink.alive) this.sink.send({ stream: this.stream, ...body });
    this.sink.callEnded(this.stream);
  }
}
