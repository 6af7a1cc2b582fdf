// Steady load through the SDK (one command every few milliseconds, each with
// its own deadline) and the faults that interrupt it: an sshd killed and
// started again on the same port, a listener frozen. What the load saw is
// summed up per fault as recovery figures, so the recovery test asserts on
// them and bench/recovery.ts prints them, against old and new code alike.
import type { SshMux, SshMuxError } from '../../client-sdk';
import { startSshd, type Sshd, type SshdOptions } from './sshd';

export interface Outcome {
  startedAt: number;
  endedAt: number;
  /** When the request's own deadline ran out. */
  deadlineAt: number;
  /** 'OK', or the error code. */
  code: string;
  message: string;
}

export class SteadyLoad {
  readonly outcomes: Outcome[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly mux: SshMux,
    private readonly host: string,
    private readonly opts: { everyMs: number; timeoutMs: number; command?: string } = { everyMs: 50, timeoutMs: 5000 },
  ) {}

  start(): void {
    this.timer = setInterval(() => this.one(), this.opts.everyMs);
  }

  /** Stops issuing requests and waits for the ones in flight (each ends by its deadline). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    while (this.inflight.size) await Promise.all([...this.inflight]);
  }

  private one(): void {
    const startedAt = Date.now();
    const p = this.mux.exec(this.host, this.opts.command ?? 'true', { timeoutMs: this.opts.timeoutMs }).then(
      (r) => this.record(startedAt, r.code === 0 ? 'OK' : `exit ${r.code}`, ''),
      (e: SshMuxError) => this.record(startedAt, e.code ?? 'UNTYPED', e.message),
    ).finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  private record(startedAt: number, code: string, message: string): void {
    this.outcomes.push({ startedAt, endedAt: Date.now(), deadlineAt: startedAt + this.opts.timeoutMs, code, message });
  }
}

/** A fault's timeline: when it began and when the server answered again. */
export interface Fault {
  kind: string;
  startedAt: number;
  answeredAt: number;
}

/** sshd killed (its connections with it) and started again on the same port `downMs` later. */
export async function restartSshd(sshd: Sshd, downMs: number, opts: SshdOptions = {}): Promise<{ sshd: Sshd; fault: Fault }> {
  const startedAt = Date.now();
  await sshd.stop();
  await sleep(downMs - (Date.now() - startedAt));
  const back = await startSshd({ ...opts, port: sshd.port });
  return { sshd: back, fault: { kind: `sshd down ${downMs / 1000} s`, startedAt, answeredAt: Date.now() } };
}

/**
 * The listener frozen (SIGSTOP) for `ms` and its connections killed at the
 * same moment, so every request needs a new handshake against a listener
 * that accepts TCP and says nothing: the banner stall.
 */
export async function freezeListener(sshd: Sshd, ms: number): Promise<Fault> {
  const startedAt = Date.now();
  sshd.signalListener('SIGSTOP');
  const pids = sshd.connectionPids();
  for (const p of pids) if (p.sshd) killQuietly(p.pid);
  for (const p of pids) if (!p.sshd) killQuietly(p.pid);
  await sleep(ms);
  sshd.signalListener('SIGCONT');
  return { kind: `listener frozen ${ms / 1000} s`, startedAt, answeredAt: Date.now() };
}

export interface Recovery {
  fault: string;
  /** From the server answering again to the first request that then succeeded; -1: none did. */
  firstOkMs: number;
  /** Requests that failed after the server answered again. */
  failedAfter: number;
  /**
   * Requests that arrived during the fault, or after it, with a deadline
   * reaching `graceMs` past the server's return, and still failed: each
   * could have waited for the server. A request still running when the
   * next fault began is that fault's casualty: its command may have started
   * (CONNECTION_LOST, not retried), which no deadline changes.
   */
  failedThoughDeadlineReached: Outcome[];
  /** Failures during the fault, by code. */
  during: Record<string, number>;
}

/** The load's outcomes around one fault, up to `until` (the next fault, or the end). */
export function recovery(outcomes: Outcome[], fault: Fault, graceMs: number, until = Infinity): Recovery {
  const mine = outcomes.filter((o) => o.endedAt >= fault.startedAt && o.startedAt < until);
  const firstOk = mine.filter((o) => o.code === 'OK' && o.endedAt >= fault.answeredAt).sort((a, b) => a.endedAt - b.endedAt)[0];
  const during: Record<string, number> = {};
  for (const o of mine) if (o.code !== 'OK' && o.endedAt < fault.answeredAt) during[o.code] = (during[o.code] ?? 0) + 1;
  return {
    fault: fault.kind,
    firstOkMs: firstOk ? firstOk.endedAt - fault.answeredAt : -1,
    failedAfter: mine.filter((o) => o.code !== 'OK' && o.endedAt >= fault.answeredAt).length,
    failedThoughDeadlineReached: mine.filter((o) => o.code !== 'OK' && o.startedAt >= fault.startedAt &&
      o.deadlineAt >= fault.answeredAt + graceMs && o.endedAt < until),
    during,
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}
