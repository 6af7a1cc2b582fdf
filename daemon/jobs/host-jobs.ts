// The jobs of one host, as this daemon talks to them. Operations queue up
// and go out together as one script in one short session (a "round"), at
// most two rounds at a time, so a burst of submits or of waiters costs a
// session or two, not one each. A poll every POLL_MS asks about every job
// someone waits for, in one round; a sweep every few minutes lists all of
// them, marks dead runners lost and reaps finished jobs past the retention
// period. What is learnt is cached only to answer "the last known state"
// when the host cannot be reached: the host holds the truth.
import { Code, codeName } from '../../proto';
import type { CallEnv } from '../call/call';
import { MuxError, toMuxError } from '../errors';
import { runCommand } from '../call/run';
import { logScript, parseLog, parseReplies, ReplyError, roundScript, START_WAIT_S, type JobStateName, type Op, type Reply } from './scripts';

/** How often jobs someone waits for are asked about. */
export const POLL_MS = 2000;
/** A new waiter's first poll waits this long for others arriving with it. */
const POLL_SOON_MS = 20;
/** Rounds in flight per host, and log reads: together the most sessions jobs take on a host. */
const MAX_ROUNDS = 2;
const MAX_LOG_READS = 2;
/** A round carries at most this many operations, and about this much script. */
const MAX_BATCH_OPS = 1000;
const MAX_BATCH_BYTES = 1024 * 1024;
/** The most a round's answer may be (a list of many jobs with long commands). */
const MAX_ROUND_OUTPUT = 64 * 1024 * 1024;
const MAX_SWEEP_EVERY_MS = 10 * 60_000;
/** Known jobs kept per host for "last known state" answers. */
const MAX_KNOWN = 100_000;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 5000;

/** Failures that asking again cannot fix. Everything else (a dropped connection, a busy or unreachable host) is retried within the deadline. */
const FINAL = new Set<Code>([Code.BAD_REQUEST, Code.AUTH_FAILED, Code.CERTIFICATE_INVALID, Code.HOST_KEY_UNKNOWN, Code.HOST_KEY_MISMATCH,
  Code.HOST_KEY_REVOKED, Code.SHUTTING_DOWN, Code.INTERNAL, Code.OUTPUT_LIMIT, Code.NO_SUCH_JOB, Code.CANCELLED]);

export function retryable(err: MuxError): boolean {
  return !FINAL.has(err.code);
}

export interface KnownJob {
  key: string;
  state: JobStateName;
  exitCode: number | null;
  signal: string | null;
  startedS: number | null;
  endedS: number | null;
  cancelled: boolean;
  /** When the host last confirmed this (ms). */
  checkedAt: number;
  command?: string;
  name?: string;
}

/** What a watcher hears after each poll. */
export type Report = Reply | { type: 'failed'; err: MuxError };

interface Watcher { sizes: boolean; report(r: Report): void }

interface PendingOp {
  op: Op;
  deadline: number;
  attempts: number;
  lastError: MuxError | undefined;
  settled: boolean;
  timer: NodeJS.Timeout | undefined;
  resolve(r: { replies: Reply[]; attempts: number }): void;
  reject(err: MuxError): void;
}

export interface HostJobsContext extends CallEnv {
  owner: string;
  retentionMs(): number;
}

export class HostJobs {
  readonly known = new Map<string, KnownJob>();
  /** The last failure to reach the host since it last answered. */
  lastFailure: MuxError | undefined;
  private queue: PendingOp[] = [];
  private rounds = 0;
  private pumpScheduled = false;
  private logReads = 0;
  private logWaiters: Array<() => void> = [];
  private readonly watchers = new Map<string, Set<Watcher>>();
  private polling = false;
  private pollDue = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private sweeping = false;
  private nextSweepAt: number | undefined;
  private ticker: NodeJS.Timeout | undefined;
  /** Why this was closed (shutdown, or a reload that changed the owner); set: nothing more is done. */
  private closedBy: MuxError | undefined;

  constructor(
    readonly host: string,
    private readonly ctx: HostJobsContext,
    /** Called when nothing is left to watch or sweep here. */
    private readonly onIdle: (h: HostJobs) => void,
  ) {}

  /** Queues an operation for the next round; resolves with its replies (and how many attempts it took). */
  run(op: Op, deadline: number): Promise<{ replies: Reply[]; attempts: number }> {
    this.touch();
    return new Promise((resolve, reject) => {
      const pending: PendingOp = { op, deadline, attempts: 0, lastError: undefined, settled: false, timer: undefined, resolve, reject };
      pending.timer = setTimeout(() => this.expire(pending), Math.max(0, deadline - Date.now()));
      this.enqueue(pending);
    });
  }

  /** Calls `report` after every poll with this job's state (and its log sizes, with `sizes`) until the returned function is called. */
  watch(key: string, sizes: boolean, report: (r: Report) => void): () => void {
    if (this.closedBy) {
      const err = this.closedBy;
      queueMicrotask(() => report({ type: 'failed', err }));
      return () => {};
    }
    this.touch();
    const watcher: Watcher = { sizes, report };
    let set = this.watchers.get(key);
    if (!set) this.watchers.set(key, set = new Set());
    set.add(watcher);
    this.pollSoon();
    return () => {
      set!.delete(watcher);
      if (set!.size === 0) this.watchers.delete(key);
    };
  }

  /** Reads part of a job's log in a session of its own (at most MAX_LOG_READS at once), retrying within the deadline. */
  async readLog(key: string, log: 'stdout' | 'stderr', offset: number, length: number, deadline: number): Promise<ReturnType<typeof parseLog>> {
    this.touch();
    const { script, skip } = logScript(this.ctx.owner, key, log, offset, length);
    return this.retrying(deadline, async (timeoutMs) => {
      while (this.logReads >= MAX_LOG_READS) await new Promise<void>((r) => this.logWaiters.push(r));
      this.logReads++;
      try {
        const r = await runCommand(this.ctx, this.host, 'sh -s', { stdin: script, timeoutMs, maxOutput: length + skip + 8192 });
        this.answered();
        return parseOrFail(this.host, () => parseLog(r.stdout, skip, length), r.stderr);
      } finally {
        this.logReads--;
        this.logWaiters.shift()?.();
      }
    });
  }

  /** Job counts by state, as last seen. */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const j of this.known.values()) out[j.state] = (out[j.state] ?? 0) + 1;
    return out;
  }

  close(err: MuxError): void {
    this.closedBy = err;
    clearTimeout(this.ticker);
    clearTimeout(this.pollTimer);
    for (const p of this.queue.splice(0)) this.settle(p, () => p.reject(err));
    for (const set of this.watchers.values()) for (const w of set) w.report({ type: 'failed', err });
    this.watchers.clear();
  }

  // ---- rounds ------------------------------------------------------------

  private enqueue(p: PendingOp): void {
    const closedBy = this.closedBy;
    if (closedBy) return this.settle(p, () => p.reject(closedBy));
    this.queue.push(p);
    // Next turn of the event loop: operations asked for together go out together.
    if (!this.pumpScheduled) {
      this.pumpScheduled = true;
      setImmediate(() => {
        this.pumpScheduled = false;
        this.pump();
      });
    }
  }

  private pump(): void {
    while (this.rounds < MAX_ROUNDS) {
      this.queue = this.queue.filter((p) => !p.settled);
      if (this.queue.length === 0) return;
      const batch: PendingOp[] = [];
      let bytes = 0;
      while (this.queue.length > 0 && batch.length < MAX_BATCH_OPS && (batch.length === 0 || bytes < MAX_BATCH_BYTES)) {
        const p = this.queue.shift()!;
        bytes += estimateBytes(p.op);
        batch.push(p);
      }
      this.rounds++;
      this.round(batch).finally(() => {
        this.rounds--;
        this.pump();
      });
    }
  }

  private async round(batch: PendingOp[]): Promise<void> {
    const started = Date.now();
    const latest = Math.max(...batch.map((p) => p.deadline));
    const submits = batch.some((p) => p.op.kind === 'submit');
    // Long enough for the runners to start; the operations' own deadlines answer their callers sooner.
    const timeoutMs = Math.min(Math.max(latest - started, 10_000), 120_000) + (submits ? START_WAIT_S * 1000 : 0);
    for (const p of batch) p.attempts++;
    let replies: Reply[][];
    try {
      const script = roundScript(this.ctx.owner, batch.map((p) => p.op));
      const r = await runCommand(this.ctx, this.host, 'sh -s', { stdin: script, timeoutMs, maxOutput: MAX_ROUND_OUTPUT });
      if (r.signal) throw new MuxError(Code.CONNECTION_LOST, `the job script on ${this.host} was killed by SIG${r.signal}`, 'running');
      replies = parseOrFail(this.host, () => parseReplies(r.stdout, batch.length), r.stderr);
      this.answered();
    } catch (e) {
      const err = toMuxError(e);
      if (err.code !== Code.INTERNAL && err.code !== Code.SHUTTING_DOWN) this.lastFailure = err;
      if (err.code === Code.INTERNAL) this.ctx.log.error({ host: this.host, err: err.message }, 'job script failed');
      for (const p of batch) this.retryOrFail(p, err);
      return;
    }
    batch.forEach((p, i) => this.learn(p.op, replies[i], started));
    batch.forEach((p, i) => this.settle(p, () => p.resolve({ replies: replies[i], attempts: p.attempts })));
  }

  private retryOrFail(p: PendingOp, err: MuxError): void {
    if (p.settled) return;
    p.lastError = err;
    const delay = Math.min(RETRY_FIRST_MS * 2 ** (p.attempts - 1), RETRY_MAX_MS);
    if (!retryable(err) || Date.now() + delay >= p.deadline || this.closedBy) return this.settle(p, () => p.reject(err));
    setTimeout(() => this.enqueue(p), delay);
  }

  private expire(p: PendingOp): void {
    this.settle(p, () => p.reject(deadlineError(this.host, p.lastError)));
  }

  private settle(p: PendingOp, fn: () => void): void {
    if (p.settled) return;
    p.settled = true;
    clearTimeout(p.timer);
    fn();
  }

  /** Retries `attempt` on the failures retrying can fix, within the deadline. */
  private async retrying<T>(deadline: number, attempt: (timeoutMs: number) => Promise<T>): Promise<T> {
    for (let n = 0; ; n++) {
      const left = deadline - Date.now();
      if (left <= 0) throw deadlineError(this.host, this.lastFailure);
      try {
        return await attempt(Math.min(left, 120_000));
      } catch (e) {
        const err = toMuxError(e);
        if (err.code !== Code.INTERNAL) this.lastFailure = err;
        const delay = Math.min(RETRY_FIRST_MS * 2 ** n, RETRY_MAX_MS);
        if (!retryable(err) || Date.now() + delay >= deadline || this.closedBy) throw err;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private answered(): void {
    this.lastFailure = undefined;
  }

  /** Updates the cache from an operation's replies; a scan is the whole truth about which jobs exist. */
  private learn(op: Op, replies: Reply[], roundStarted: number): void {
    const now = Date.now();
    const seen = new Set<string>();
    for (const r of replies) {
      if (r.type !== 'error') seen.add(r.key);
      if (r.type === 'job') {
        const old = this.known.get(r.key);
        this.remember({
          key: r.key, state: r.state, exitCode: r.exitCode, signal: r.signal, startedS: r.startedS, endedS: r.endedS,
          cancelled: r.cancelled, checkedAt: now, command: old?.command, name: old?.name,
        });
      } else if (r.type === 'detail') {
        const old = this.known.get(r.key);
        if (old) Object.assign(old, { command: r.command, name: r.name });
      } else if (r.type === 'gone' || r.type === 'removed' || r.type === 'reaped') {
        this.known.delete(r.key);
      }
    }
    if (op.kind === 'submit') {
      const known = this.known.get(op.key);
      if (known) Object.assign(known, { command: op.command, name: op.name });
    }
    if (op.kind === 'scan') {
      for (const [key, j] of this.known) if (!seen.has(key) && j.checkedAt < roundStarted) this.known.delete(key);
    }
  }

  private remember(j: KnownJob): void {
    if (!this.known.has(j.key) && this.known.size >= MAX_KNOWN) {
      const oldest = this.known.keys().next().value;
      if (oldest !== undefined) this.known.delete(oldest);
    }
    this.known.set(j.key, j);
  }

  // ---- polls and sweeps ----------------------------------------------------

  /** The host has jobs this daemon deals with: keep sweeping it. */
  private touch(): void {
    if (this.closedBy) return;
    this.nextSweepAt ??= Date.now() + POLL_MS;
    if (!this.ticker) this.ticker = setTimeout(() => this.tick(), POLL_MS);
  }

  /** A poll within POLL_SOON_MS: waiters that arrive together (300 wait calls over a few socket reads) share it. */
  private pollSoon(): void {
    this.pollDue = true;
    this.pollTimer ??= setTimeout(() => {
      this.pollTimer = undefined;
      this.poll();
    }, POLL_SOON_MS);
  }

  private tick(): void {
    this.ticker = undefined;
    if (this.closedBy) return;
    if (this.watchers.size > 0) this.pollSoon();
    if (this.nextSweepAt !== undefined && Date.now() >= this.nextSweepAt) this.sweep();
    if (this.watchers.size > 0 || this.nextSweepAt !== undefined) this.ticker = setTimeout(() => this.tick(), POLL_MS);
    else this.onIdle(this);
  }

  private poll(): void {
    if (this.polling || !this.pollDue || this.closedBy) return;
    this.pollDue = false;
    const keys = [...this.watchers.keys()];
    if (keys.length === 0) return;
    const sizes = keys.some((k) => [...this.watchers.get(k)!].some((w) => w.sizes));
    this.polling = true;
    this.run({ kind: 'status', keys, detail: false, sizes }, Date.now() + 5 * POLL_MS).then(({ replies }) => {
      for (const r of replies) if (r.type !== 'error') for (const w of [...this.watchers.get(r.key) ?? []]) w.report(r);
    }, (err: MuxError) => {
      for (const key of keys) for (const w of [...this.watchers.get(key) ?? []]) w.report({ type: 'failed', err });
    }).finally(() => {
      this.polling = false;
      // Someone started watching while this poll was out: they should not wait a whole interval.
      if (this.pollDue) this.poll();
    });
  }

  private sweep(): void {
    if (this.sweeping) return;
    this.sweeping = true;
    const retentionMs = this.ctx.retentionMs();
    const every = Math.min(Math.max(retentionMs / 4, POLL_MS), MAX_SWEEP_EVERY_MS);
    this.run({ kind: 'scan', detail: false, reapAfterS: retentionMs / 1000 }, Date.now() + 60_000).then(() => {
      // Nothing left there and nobody waiting: stop until the next job operation.
      this.nextSweepAt = this.known.size === 0 && this.watchers.size === 0 ? undefined : Date.now() + every;
    }, () => {
      this.nextSweepAt = Date.now() + every;
    }).finally(() => {
      this.sweeping = false;
    });
  }
}

function estimateBytes(op: Op): number {
  switch (op.kind) {
    case 'submit': return 1024 + op.command.length + op.name.length + Object.entries(op.env).reduce((n, [k, v]) => n + k.length + v.length + 16, 0);
    case 'status': return 200 + op.keys.length * 20;
    default: return 300;
  }
}

function deadlineError(host: string, last: MuxError | undefined): MuxError {
  return new MuxError(Code.DEADLINE_EXCEEDED, last
    ? `${host} did not answer within the deadline; last attempt: ${codeName(last.code)}: ${last.message}`
    : `${host} did not answer within the deadline`, last?.phase);
}

function parseOrFail<T>(host: string, parse: () => T, stderr: Buffer): T {
  try {
    return parse();
  } catch (err) {
    if (!(err instanceof ReplyError)) throw err;
    const said = stderr.toString('utf8').trim().slice(-300);
    throw new MuxError(Code.INTERNAL, `the job script on ${host} gave an answer sshmuxd cannot read: ${err.message}` +
      `${said ? `; its stderr: ${said}` : ''}. Does the host have a POSIX sh? (README: Long-running jobs)`, 'running');
  }
}
