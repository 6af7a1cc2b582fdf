// Durable remote jobs (README: Long-running jobs): submit, get, list, wait,
// cancel, remove and logs, for any front door. A job runs on its host under
// a small runner, detached from every session, and the host holds its whole
// state, so this class keeps nothing it cannot learn again by asking: the
// caller, the daemon and the connection can all go away and come back.
import { Code, codeName, type v1 } from '../../proto';
import type { CallEnv } from '../call/call';
import { MuxError, toMuxError } from '../errors';
import { HostJobs, retryable, type KnownJob, type Report } from './host-jobs';
import { formatId, newKey, parseId, type JobRef } from './job-id';
import { JobLogs, type LogSink } from './job-logs';
import type { Reply } from './scripts';

/** A job's command, name and environment: bounded so that they fit one exec's argument on any host. */
const MAX_COMMAND = 64 * 1024;
const MAX_NAME = 256;
const MAX_ENV = 64 * 1024;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Deadline of every call but wait and logs when the caller gives none. */
const DEFAULT_CALL_MS = 30_000;
/** A submit waits for its runner to start too. */
const DEFAULT_SUBMIT_MS = 60_000;

export type JobInfo = v1.IJobInfo;

export interface JobsOptions extends CallEnv {
  /** This daemon user's jobs root on every host: ~/.sshmux/jobs/OWNER. */
  owner: string;
  retentionMs: number;
  /** Whole-call deadline when the caller gives none (the daemon's requestTimeoutMs); 0: none. */
  requestTimeoutMs: number;
}

export class Jobs {
  private readonly hosts = new Map<string, HostJobs>();
  private closed = false;

  constructor(private opts: JobsOptions) {}

  /** A reload: new retention and default deadline apply at once; a new owner to new operations. */
  reconfigure(opts: Pick<JobsOptions, 'owner' | 'retentionMs' | 'requestTimeoutMs'>): void {
    if (opts.owner !== this.opts.owner) {
      for (const h of this.hosts.values()) h.close(MuxError.shuttingDown('the jobOwner setting changed; ask again'));
      this.hosts.clear();
    }
    this.opts = { ...this.opts, ...opts };
  }

  async submit(host: string, command: string, opts: { name?: string; env?: Record<string, string>; timeoutMs?: number }): Promise<JobInfo> {
    const name = opts.name ?? '';
    const env = opts.env ?? {};
    checkSubmit(command, name, env);
    // An unusable host name or option fails here, before an id exists; nothing is created for it.
    this.opts.agent.resolve(host, {});
    const ref = { host, key: newKey() };
    const deadline = this.deadline(opts.timeoutMs, DEFAULT_SUBMIT_MS);
    let replies: Reply[];
    try {
      ({ replies } = await this.hostJobs(host).run({ kind: 'submit', key: ref.key, command, name, env }, deadline));
    } catch (e) {
      const err = toMuxError(e);
      // The id was chosen here, so the caller can still find out what happened.
      if (retryable(err)) throw new MuxError(err.code, `${err.message}; job ${formatId(ref)} may or may not have started: ask with sshmuxctl job status ${formatId(ref)}`, err.phase);
      throw err;
    }
    const job = replies.find((r) => r.type === 'job');
    if (job?.type === 'job') return this.info(ref, this.known(ref)!);
    const error = replies.find((r) => r.type === 'error');
    throw submitError(host, this.opts.owner, error?.type === 'error' ? error.reason : '');
  }

  /** The job now; if its host cannot be reached within the deadline, the last known state and why it is stale. */
  async get(id: string, timeoutMs?: number): Promise<JobInfo> {
    const ref = parseId(id);
    const h = this.hostJobs(ref.host);
    try {
      const { replies } = await h.run({ kind: 'status', keys: [ref.key], detail: true, sizes: false }, this.deadline(timeoutMs, DEFAULT_CALL_MS));
      this.expectJob(ref, replies);
      return this.info(ref, this.known(ref)!);
    } catch (e) {
      const err = toMuxError(e);
      const known = this.known(ref);
      if (!known || !unreachable(err)) throw err;
      return this.info(ref, known, `${codeName(err.code)}: ${err.message}`);
    }
  }

  /** Every job of this daemon user on `host`, oldest first; the last known list, marked stale, if the host cannot be reached. */
  async list(host: string, timeoutMs?: number): Promise<JobInfo[]> {
    this.opts.agent.resolve(host, {});
    const h = this.hostJobs(host);
    let stale: string | undefined;
    try {
      await h.run({ kind: 'scan', detail: true }, this.deadline(timeoutMs, DEFAULT_CALL_MS));
    } catch (e) {
      const err = toMuxError(e);
      if (!unreachable(err) || h.known.size === 0) throw err;
      stale = `${codeName(err.code)}: ${err.message}`;
    }
    return [...h.known.values()].sort((a, b) => (a.key < b.key ? -1 : 1)).map((j) => this.info({ host, key: j.key }, j, stale));
  }

  /** Resolves once the job has ended. Polls with every other waiter of its host: one session per POLL_MS whatever their number. */
  wait(id: string, timeoutMs?: number, signal?: AbortSignal): Promise<JobInfo> {
    const ref = parseId(id);
    const h = this.hostJobs(ref.host);
    const deadline = this.deadline(timeoutMs, this.opts.requestTimeoutMs || Infinity);
    return new Promise<JobInfo>((resolve, reject) => {
      let finished = false;
      let lastFailure: MuxError | undefined;
      const finish = (fn: () => void): void => {
        if (finished) return;
        finished = true;
        unwatch();
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const onAbort = (): void => finish(() => reject(signal!.reason instanceof MuxError ? signal!.reason
        : new MuxError(Code.CANCELLED, 'cancelled by the client; the job keeps running')));
      const report = (r: Report): void => {
        if (r.type === 'failed') {
          lastFailure = r.err;
          if (!retryable(r.err)) finish(() => reject(r.err));
          return;
        }
        lastFailure = undefined;
        if (r.type === 'gone') return finish(() => reject(noSuchJob(ref, this.opts.owner, r.owner)));
        if (r.type !== 'job' || r.state === 'running') return;
        // Ended. The poll just confirmed it; only the command and name may be unknown here (after a daemon restart).
        const known = this.known(ref);
        if (known?.command !== undefined) return finish(() => resolve(this.info(ref, known)));
        finish(() => this.get(formatId(ref), Math.max(1000, Math.min(deadline - Date.now(), DEFAULT_CALL_MS))).then(resolve, reject));
      };
      const unwatch = h.watch(ref.key, false, report);
      const timer = deadline === Infinity ? undefined : setTimeout(() => finish(() => {
        const known = this.known(ref);
        const state = known ? `${known.state} as of ${new Date(known.checkedAt).toISOString()}` : 'not known yet';
        reject(new MuxError(Code.DEADLINE_EXCEEDED, `job ${id} had not ended within the deadline (last known state: ${state}` +
          `${lastFailure ? `; ${ref.host} could not be reached: ${codeName(lastFailure.code)}: ${lastFailure.message}` : ''}); it keeps running`));
      }), deadline - Date.now());
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** TERM to the job's process group, KILL after the grace period; the record will say it was cancelled. */
  async cancel(id: string, timeoutMs?: number): Promise<JobInfo> {
    const ref = parseId(id);
    const { replies } = await this.hostJobs(ref.host).run({ kind: 'cancel', key: ref.key }, this.deadline(timeoutMs, DEFAULT_CALL_MS));
    this.expectJob(ref, replies);
    return this.info(ref, this.known(ref)!);
  }

  /** Deletes a finished job's directory; a running one only with `force`, which cancels it first. Retried on a dropped connection. */
  async remove(id: string, force: boolean, timeoutMs?: number): Promise<void> {
    const ref = parseId(id);
    const { replies, attempts } = await this.hostJobs(ref.host).run({ kind: 'remove', key: ref.key, force }, this.deadline(timeoutMs, DEFAULT_CALL_MS));
    if (replies.some((r) => r.type === 'removed')) return;
    const gone = replies.find((r) => r.type === 'gone');
    // Gone on a second attempt: the first one removed it before its connection dropped.
    if (gone?.type === 'gone') {
      if (attempts > 1 && !gone.owner) return;
      throw noSuchJob(ref, this.opts.owner, gone.owner);
    }
    if (replies.some((r) => r.type === 'job' && r.state === 'running')) {
      throw new MuxError(Code.BAD_REQUEST, `job ${id} is still running; cancel it first, or remove it with force (which cancels it)`);
    }
    throw new MuxError(Code.INTERNAL, `internal error: no answer about removing job ${id}`);
  }

  /** Streams a job's log to `sink` from byte `from`, within the client's flow-control window. */
  logs(id: string, log: 'stdout' | 'stderr', from: number, follow: boolean, timeoutMs: number | undefined, window: number, sink: LogSink): JobLogs {
    const ref = parseId(id);
    const h = this.hostJobs(ref.host);
    // The whole stream's deadline, as an exec's; each read has its own, shorter, for retries.
    const deadline = this.deadline(timeoutMs, this.opts.requestTimeoutMs || Infinity);
    const reader = new JobLogs(h, ref, log, from, follow, window, deadline, sink, (r) => noSuchJob(ref, this.opts.owner, r));
    reader.start();
    return reader;
  }

  /** Jobs per host by state, for status and metrics. */
  status(): v1.IHostJobs[] {
    return [...this.hosts.values()].filter((h) => h.known.size > 0).map((h) => ({
      host: h.host,
      states: h.counts(),
      stale: h.lastFailure ? `${codeName(h.lastFailure.code)}: ${h.lastFailure.message}` : '',
    }));
  }

  close(): void {
    this.closed = true;
    const err = jobsStopping();
    for (const h of this.hosts.values()) h.close(err);
    this.hosts.clear();
  }

  // ---- internals -----------------------------------------------------------

  private hostJobs(host: string): HostJobs {
    if (this.closed) throw MuxError.shuttingDown();
    let h = this.hosts.get(host);
    if (!h) {
      h = new HostJobs(host, { agent: this.opts.agent, log: this.opts.log, metrics: this.opts.metrics, owner: this.opts.owner, retentionMs: () => this.opts.retentionMs },
        (idle) => {
          if (this.hosts.get(host) === idle) this.hosts.delete(host);
        });
      this.hosts.set(host, h);
    }
    return h;
  }

  private known(ref: JobRef): KnownJob | undefined {
    return this.hosts.get(ref.host)?.known.get(ref.key);
  }

  private expectJob(ref: JobRef, replies: Reply[]): void {
    const gone = replies.find((r) => r.type === 'gone');
    if (gone?.type === 'gone') throw noSuchJob(ref, this.opts.owner, gone.owner);
    if (!this.known(ref)) throw new MuxError(Code.INTERNAL, `internal error: no answer about job ${formatId(ref)}`);
  }

  private deadline(timeoutMs: number | undefined, fallback: number): number {
    return Date.now() + (timeoutMs && timeoutMs > 0 ? timeoutMs : fallback);
  }

  private info(ref: JobRef, j: KnownJob, stale?: string): JobInfo {
    return {
      id: formatId(ref), host: ref.host, command: j.command ?? '', name: j.name ?? '', state: j.state,
      exitCode: j.exitCode ?? 0, signal: j.signal ?? '', startedAt: (j.startedS ?? 0) * 1000, endedAt: (j.endedS ?? 0) * 1000,
      cancelled: j.cancelled, stale: stale ?? '', checkedAt: j.checkedAt,
    };
  }
}


/** What a job's caller hears when the daemon stops: the job itself runs on. */
export function jobsStopping(): MuxError {
  return MuxError.shuttingDown('sshmuxd is stopping; the job keeps running on its host: ask again once the daemon is back');
}

function checkSubmit(command: string, name: string, env: Record<string, string>): void {
  const bad = (msg: string): never => {
    throw new MuxError(Code.BAD_REQUEST, msg);
  };
  if (!command.trim()) bad('a job needs a command');
  if (Buffer.byteLength(command) > MAX_COMMAND) bad(`a job's command is at most ${MAX_COMMAND / 1024} KiB; upload a script and run that instead`);
  if (command.includes('\0')) bad('a job\'s command cannot contain NUL bytes');
  if (Buffer.byteLength(name) > MAX_NAME || /[\x00-\x1f\x7f]/.test(name)) bad(`a job's name is at most ${MAX_NAME} bytes of printable text`);
  let size = 0;
  for (const [k, v] of Object.entries(env)) {
    if (!ENV_NAME.test(k)) bad(`environment variable name ${JSON.stringify(k.slice(0, 60))} is not a shell name ([A-Za-z_][A-Za-z0-9_]*)`);
    if (v.includes('\0')) bad(`environment variable ${k} cannot contain NUL bytes`);
    size += k.length + Buffer.byteLength(v);
  }
  if (size > MAX_ENV) bad(`a job's environment is at most ${MAX_ENV / 1024} KiB`);
}

function noSuchJob(ref: JobRef, owner: string, otherOwner: string | null): MuxError {
  const id = formatId(ref);
  if (otherOwner && otherOwner !== owner) {
    return new MuxError(Code.NO_SUCH_JOB, `job ${id} belongs to another sshmux daemon user on ${ref.host} (${otherOwner}), ` +
      `not to this one (${owner}); ask the daemon that submitted it`);
  }
  return new MuxError(Code.NO_SUCH_JOB, `no job ${ref.key} on ${ref.host} for this daemon user (${owner}): ` +
    'it was removed, reaped after the retention period, or never existed');
}

function submitError(host: string, owner: string, reason: string): MuxError {
  switch (reason) {
    case 'setsid':
      return new MuxError(Code.BAD_REQUEST, `${host} has no setsid command, which jobs need to run detached (util-linux or busybox provides it)`);
    case 'mkdir':
    case 'runner':
      return new MuxError(Code.REMOTE_FILE, `cannot write ~/.sshmux/jobs/${owner} on ${host}: is the home directory writable and not full?`);
    case 'create':
      return new MuxError(Code.REMOTE_FILE, `cannot create the job's directory under ~/.sshmux/jobs/${owner} on ${host}: is the disk full?`);
    case 'start':
      return new MuxError(Code.DEADLINE_EXCEEDED, `the job's runner on ${host} did not start within 30 s (an overloaded host?); the job did not run`, 'running');
    default:
      return new MuxError(Code.INTERNAL, `internal error: no answer about the submit to ${host}`);
  }
}

/** Failures that mean "could not ask the host" rather than "asked, and the answer is no". */
function unreachable(err: MuxError): boolean {
  return retryable(err) || [Code.AUTH_FAILED, Code.CERTIFICATE_INVALID, Code.HOST_KEY_UNKNOWN, Code.HOST_KEY_MISMATCH, Code.HOST_KEY_REVOKED]
    .includes(err.code);
}
