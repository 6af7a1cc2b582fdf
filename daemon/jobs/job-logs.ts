// A job's log as a stream: read from the host in chunks no larger than what
// the client has granted (so a log of any size passes with at most one
// chunk in the daemon's memory), and with `follow`, more whenever a poll
// shows the log has grown, until the job has ended and everything is read.
// Waiting for growth rides the host's polls: no session is held meanwhile.
import { Code } from '../../proto';
import { MuxError, toMuxError } from '../errors';
import type { HostJobs, Report } from './host-jobs';
import { formatId, type JobRef } from './job-id';

/** The most read from the host at once, whatever the client grants. */
const CHUNK = 1024 * 1024;
/** How long one read may keep retrying an unreachable host before the stream fails. */
const READ_DEADLINE_MS = 60_000;

export interface LogSink {
  data(chunk: Buffer): void;
  /** Everything was sent. */
  end(): void;
  fail(err: MuxError): void;
}

export class JobLogs {
  private stopped = false;
  private windowOpened: (() => void) | undefined;
  private stopWaiting: (() => void) | undefined;

  constructor(
    private readonly host: HostJobs,
    private readonly ref: JobRef,
    private readonly log: 'stdout' | 'stderr',
    private offset: number,
    private readonly follow: boolean,
    /** Bytes the client lets us send before it grants more. */
    private window: number,
    private readonly deadline: number,
    private readonly sink: LogSink,
    private readonly gone: (otherOwner: string | null) => MuxError,
  ) {}

  start(): void {
    this.run().then(() => {
      if (!this.stopped) this.sink.end();
    }, (err: unknown) => {
      if (!this.stopped) this.sink.fail(toMuxError(err));
    });
  }

  /** The client consumed `bytes`: that much more may be sent. */
  grant(bytes: number): void {
    this.window += bytes;
    if (this.window > 0) this.windowOpened?.();
  }

  /** The caller is gone or cancelled: read nothing more. */
  stop(): void {
    this.stopped = true;
    this.windowOpened?.();
    this.stopWaiting?.();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.window <= 0) {
        await new Promise<void>((resolve) => (this.windowOpened = resolve));
        this.windowOpened = undefined;
        continue;
      }
      const want = Math.min(this.window, CHUNK);
      const r = await this.host.readLog(this.ref.key, this.log, this.offset, want, Math.min(this.deadline, Date.now() + READ_DEADLINE_MS));
      if (this.stopped) return;
      if (r.type === 'gone') throw this.gone(r.owner);
      if (r.data.length > 0) {
        this.offset += r.data.length;
        this.window -= r.data.length;
        this.sink.data(r.data);
      }
      if (r.data.length === want) continue;
      // At the end of what the log holds now.
      if (r.state !== 'running') {
        if (this.offset >= r.size) return;
        continue;
      }
      if (!this.follow) return;
      await this.grown();
    }
  }

  /** Resolves once a poll shows the log longer than our offset, or the job ended. */
  private grown(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (fn: () => void): void => {
        unwatch();
        clearTimeout(timer);
        this.stopWaiting = undefined;
        fn();
      };
      const report = (r: Report): void => {
        if (r.type === 'gone') return done(() => reject(this.gone(r.owner)));
        if (r.type === 'failed') {
          if (r.err.code === Code.SHUTTING_DOWN) done(() => reject(r.err));
          return; // unreachable for now: keep waiting, within the deadline
        }
        if (r.type !== 'job') return;
        const size = this.log === 'stdout' ? r.stdoutSize : r.stderrSize;
        if (r.state !== 'running' || (size ?? 0) > this.offset) done(resolve);
      };
      const unwatch = this.host.watch(this.ref.key, true, report);
      this.stopWaiting = () => done(resolve);
      if (this.deadline !== Infinity) {
        timer = setTimeout(() => done(() => reject(new MuxError(Code.DEADLINE_EXCEEDED,
          `following the log of job ${formatId(this.ref)} ran past its deadline`))), this.deadline - Date.now());
      }
    });
  }
}
