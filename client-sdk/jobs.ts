// mux.jobs: durable remote jobs (README: Long-running jobs). A job runs on
// its host detached from any session, so it survives this process, the
// daemon and the connection; its id names its host, so every call but
// submit and list takes the id alone.
import type { Readable } from 'node:stream';
import { Fd, v1 } from '../proto';
import { SshMuxError } from './errors';
import type { RemoteProcess } from './remote-process';

export type JobState = 'running' | 'exited' | 'signaled' | 'lost';

export interface JobInfo {
  /** "HOST/KEY": pass it to every other call. */
  id: string;
  host: string;
  command: string;
  name: string;
  /** running; exited (see exitCode); signaled (see signal); lost: the runner vanished without a record (host rebooted, runner killed). */
  state: JobState;
  exitCode: number | null;
  /** Signal name without SIG, e.g. "KILL" (as the OOM killer sends). */
  signal: string | null;
  /** Host clock, 1 s resolution. */
  startedAt: Date | null;
  endedAt: Date | null;
  /** cancel() (or remove with force) asked it to stop. */
  cancelled: boolean;
  /** Set when the host could not be asked: this is the last known state, and this says why it is not the current one. */
  stale: string | null;
  /** When the host last confirmed this. */
  checkedAt: Date | null;
}

export interface SubmitOptions {
  /** Set by the job's runner on the host (not subject to sshd's AcceptEnv). */
  env?: Record<string, string>;
  /** Free text, shown by list and status. */
  name?: string;
  timeoutMs?: number;
}

export interface WaitOptions {
  /** Give up (DEADLINE_EXCEEDED) after this long; the job keeps running. Default: the daemon's requestTimeoutMs. */
  timeoutMs?: number;
  /** Aborting stops waiting (CANCELLED); the job keeps running. */
  signal?: AbortSignal;
}

export interface LogOptions {
  stream?: 'stdout' | 'stderr';
  /** Byte offset to start at (default 0). */
  from?: number;
  /** Keep reading while the job runs; the stream ends once it has ended and everything is read. */
  follow?: boolean;
}

/** How Jobs reaches the daemon: provided by SshMux. */
export interface JobTransport {
  request(req: v1.IJobRequest, opts: { timeoutMs?: number; signal?: AbortSignal }): Promise<v1.IJobResult>;
  stream(req: v1.IJobRequest): RemoteProcess;
}

const A = v1.JobRequest.Action;

export class Jobs {
  constructor(private readonly transport: JobTransport) {}

  /** Starts `command` on `host`, detached; resolves once it runs there. */
  async submit(host: string, command: string, opts: SubmitOptions = {}): Promise<JobInfo> {
    return this.one({ action: A.SUBMIT, host, command, name: opts.name ?? '', env: opts.env, timeoutMs: opts.timeoutMs ?? 0 }, opts);
  }

  /** The job now; if its host cannot be reached, the last known state with `stale` saying why. NO_SUCH_JOB for an unknown id. */
  async get(id: string, opts: { timeoutMs?: number } = {}): Promise<JobInfo> {
    return this.one({ action: A.GET, id, timeoutMs: opts.timeoutMs ?? 0 }, opts);
  }

  /** Every job of this daemon user on `host`, oldest first. */
  async list(host: string, opts: { timeoutMs?: number } = {}): Promise<JobInfo[]> {
    const r = await this.transport.request({ action: A.LIST, host, timeoutMs: opts.timeoutMs ?? 0 }, opts);
    return (r.jobs ?? []).map(toJobInfo);
  }

  /** Resolves once the job has ended (exited, signaled or lost). */
  async wait(id: string, opts: WaitOptions = {}): Promise<JobInfo> {
    return this.one({ action: A.WAIT, id, timeoutMs: opts.timeoutMs ?? 0 }, opts);
  }

  /**
   * The job's output as a stream, from byte `from`; with `follow`, until the
   * job has ended. Backpressure reaches the daemon's reads from the host, so
   * a log of any size passes in bounded memory. Errors destroy the stream
   * with an SshMuxError; destroying it stops the reading.
   */
  logs(id: string, opts: LogOptions = {}): Readable {
    const stderr = opts.stream === 'stderr';
    const proc = this.transport.stream({ action: A.LOGS, id, fd: stderr ? Fd.STDERR : Fd.STDOUT, from: opts.from ?? 0, follow: !!opts.follow });
    const out = stderr ? proc.stderr : proc.stdout;
    proc.exited.then(() => undefined, (err: SshMuxError) => out.destroy(err));
    out.once('close', () => {
      if (!proc.finished) proc.cancel('stream closed');
    });
    return out;
  }

  /** TERM to the job's whole process group, KILL 10 s later if anything is left; its record will say cancelled. */
  async cancel(id: string, opts: { timeoutMs?: number } = {}): Promise<JobInfo> {
    return this.one({ action: A.CANCEL, id, timeoutMs: opts.timeoutMs ?? 0 }, opts);
  }

  /** Deletes the job and its logs from the host; a running job only with `force`, which cancels it first. */
  async remove(id: string, opts: { force?: boolean; timeoutMs?: number } = {}): Promise<void> {
    await this.transport.request({ action: A.REMOVE, id, force: !!opts.force, timeoutMs: opts.timeoutMs ?? 0 }, opts);
  }

  private async one(req: v1.IJobRequest, opts: { timeoutMs?: number; signal?: AbortSignal }): Promise<JobInfo> {
    const r = await this.transport.request(req, opts);
    const job = r.jobs?.[0];
    if (!job) throw new SshMuxError('PROTOCOL_ERROR', 'sshmuxd answered a job call without the job');
    return toJobInfo(job);
  }
}

function toJobInfo(j: v1.IJobInfo): JobInfo {
  const state = (j.state || 'running') as JobState;
  const date = (ms: number | null | undefined): Date | null => (ms ? new Date(ms) : null);
  return {
    id: j.id ?? '',
    host: j.host ?? '',
    command: j.command ?? '',
    name: j.name ?? '',
    state,
    exitCode: state === 'exited' ? j.exitCode ?? 0 : null,
    signal: state === 'signaled' ? j.signal || null : null,
    startedAt: date(j.startedAt),
    endedAt: date(j.endedAt),
    cancelled: !!j.cancelled,
    stale: j.stale || null,
    checkedAt: date(j.checkedAt),
  };
}
