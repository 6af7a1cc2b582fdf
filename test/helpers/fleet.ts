// A fleet of real sshmuxd processes on one machine, each with its own
// socket and config, sharing one Redis, as many orchestrator hosts would:
// the world of test/fleet.test.ts and bench/fleet.ts. And the fan-out they
// are asked for: every daemon, many execs at once.
import * as path from 'node:path';
import * as fs from 'node:fs';
import { SshMux } from '../../client-sdk';
import { startDaemon, type DaemonProc } from './daemon';

export interface FleetOptions {
  n: number;
  dir: string;
  sshConfigPath: string;
  /** The daemon config each gets (with its "fleet", or without one for the baseline). */
  config: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  args?: string[];
}

export interface FleetMember {
  daemon: DaemonProc;
  mux: SshMux;
}

/**
 * Starts `n` daemons, a few at a time (each start waits for its own socket;
 * ten Node processes starting at once on a loaded 2-core machine can take
 * longer than that wait). If any fails to start, the others are stopped:
 * a daemon nobody stops keeps the test process alive through its pipes.
 */
export async function startFleet(opts: FleetOptions): Promise<FleetMember[]> {
  const members: FleetMember[] = [];
  try {
    for (let i = 0; i < opts.n; i += START_AT_ONCE) {
      const batch = Array.from({ length: Math.min(START_AT_ONCE, opts.n - i) }, async (_, j) => {
        const dir = path.join(opts.dir, `d${i + j}`);
        fs.mkdirSync(dir, { recursive: true });
        const daemon = await startDaemon({ dir, sshConfigPath: opts.sshConfigPath, config: opts.config, env: opts.env, args: opts.args });
        const member = { daemon, mux: await SshMux.connect({ socket: daemon.socket }) };
        members.push(member);
        return member;
      });
      const settled = await Promise.allSettled(batch);
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
  } catch (err) {
    await stopFleet(members);
    throw err;
  }
  return members;
}

const START_AT_ONCE = 5;

export async function stopFleet(members: FleetMember[]): Promise<void> {
  await Promise.all(members.map(async (m) => {
    m.mux.close();
    await m.daemon.stop();
  }));
}

export interface FanOutResult {
  ok: number;
  /** Failures by error code (or "exit N", "wrong output"). */
  failed: Record<string, number>;
  wallMs: number;
  /** Per daemon: its slowest exec. */
  slowestMs: number[];
}

/**
 * Every member runs `perDaemon` execs of `command` at once (`%i` in it is
 * replaced by the exec's number, and its output must be that number).
 */
export async function fanOut(members: FleetMember[], host: string, perDaemon: number, command: string,
  timeoutMs = 120_000): Promise<FanOutResult> {
  const failed: Record<string, number> = {};
  let ok = 0;
  const started = Date.now();
  const slowestMs = await Promise.all(members.map(async (m, d) => {
    let slowest = 0;
    await Promise.all(Array.from({ length: perDaemon }, async (_, j) => {
      const i = d * perDaemon + j;
      const t0 = Date.now();
      let outcome: string;
      try {
        const r = await m.mux.exec(host, command.replace(/%i/g, String(i)), { timeoutMs });
        outcome = r.code !== 0 ? `exit ${r.code}` : r.stdout.toString().trim() === String(i) ? 'ok' : 'wrong output';
      } catch (err) {
        outcome = (err as { code?: string }).code ?? 'error';
      }
      slowest = Math.max(slowest, Date.now() - t0);
      if (outcome === 'ok') ok++;
      else failed[outcome] = (failed[outcome] ?? 0) + 1;
    }));
    return slowest;
  }));
  return { ok, failed, wallMs: Date.now() - started, slowestMs };
}
