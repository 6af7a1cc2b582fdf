// sshmuxctl job ...: durable remote jobs for shells and for programs in any
// language (README: Long-running jobs). Ids are printed and taken as is.
import { constants } from 'node:os';
import { pipeline } from 'node:stream/promises';
import { SshMuxError, type JobInfo, type SshMux } from '../client-sdk';

export const JOB_USAGE = `  job submit HOST [--name N] -- COMMAND...
                    start COMMAND on HOST detached; prints the job id
  job status ID [--json]
  job wait ID [--timeout S]
                    exits with the job's exit status (128+N for signal N);
                    255 with a message when it cannot tell
  job logs ID [--stderr] [--from N] [--follow]
  job cancel ID     TERM to the job's process group, KILL 10 s later
  job ls HOST [--json]
  job rm ID [--force]`;

export interface JobFlags {
  json?: boolean;
  name?: string;
  timeout?: string;
  stderr?: boolean;
  from?: string;
  follow?: boolean;
  force?: boolean;
}

/** Which flags each subcommand takes, and how many words after it. */
const GRAMMAR: Record<string, { words: string; flags: Array<keyof JobFlags> }> = {
  submit: { words: 'HOST -- COMMAND...', flags: ['name'] },
  status: { words: 'ID', flags: ['json'] },
  wait: { words: 'ID', flags: ['timeout'] },
  logs: { words: 'ID', flags: ['stderr', 'from', 'follow'] },
  cancel: { words: 'ID', flags: [] },
  ls: { words: 'HOST', flags: ['json'] },
  rm: { words: 'ID', flags: ['force'] },
};

/** A usage error: why, or undefined when `args` fit the grammar. */
export function checkJobArgs(args: string[], flags: JobFlags): string | undefined {
  const [sub, ...rest] = args;
  const g = GRAMMAR[sub];
  if (!g) return sub ? `unknown job command "${sub}"` : 'job needs a command (submit, status, wait, logs, cancel, ls, rm)';
  for (const [flag, value] of Object.entries(flags)) {
    if (value !== undefined && !g.flags.includes(flag as keyof JobFlags)) return `job ${sub} does not take --${flag}`;
  }
  if (sub === 'submit' ? rest.length < 2 : rest.length !== 1) return `usage: sshmuxctl job ${sub} ${g.words}`;
  if (flags.timeout !== undefined && !(Number(flags.timeout) > 0)) return `--timeout must be a number of seconds, got "${flags.timeout}"`;
  if (flags.from !== undefined && !/^\d+$/.test(flags.from)) return `--from must be a byte offset, got "${flags.from}"`;
  return undefined;
}

/** Runs a checked job command; resolves with the exit status. */
export async function runJobCommand(mux: SshMux, args: string[], flags: JobFlags): Promise<number> {
  const [sub, target, ...command] = args;
  switch (sub) {
    case 'submit': {
      // As ssh joins its command words: the remote shell parses the line.
      const job = await mux.jobs.submit(target, command.join(' '), { name: flags.name });
      process.stdout.write(`${job.id}\n`);
      return 0;
    }
    case 'status': {
      const job = await mux.jobs.get(target);
      process.stdout.write(flags.json ? `${JSON.stringify(job, null, 2)}\n` : describe(job));
      return 0;
    }
    case 'wait':
      return wait(mux, target, flags.timeout === undefined ? undefined : Number(flags.timeout) * 1000);
    case 'logs': {
      const log = mux.jobs.logs(target, { stream: flags.stderr ? 'stderr' : 'stdout', from: Number(flags.from ?? 0), follow: flags.follow });
      try {
        await pipeline(log, process.stdout);
      } catch (err) {
        // The reader went away (| head): as cat does, stop quietly.
        if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err;
      }
      return 0;
    }
    case 'cancel': {
      const job = await mux.jobs.cancel(target);
      process.stdout.write(job.state === 'running'
        ? `${job.id}: cancelled (its process group got TERM; KILL follows in 10 s for anything left)\n`
        : `${job.id}: had already ended (${stateText(job)})\n`);
      return 0;
    }
    case 'ls': {
      const jobs = await mux.jobs.list(target);
      process.stdout.write(flags.json ? `${JSON.stringify(jobs, null, 2)}\n` : table(jobs));
      return 0;
    }
    case 'rm':
      await mux.jobs.remove(target, { force: flags.force });
      return 0;
    default:
      throw new Error(`unchecked job command ${sub}`);
  }
}

/** The job's own exit status, as a shell reports it; 255 and a message when it cannot tell. */
async function wait(mux: SshMux, id: string, timeoutMs: number | undefined): Promise<number> {
  let job: JobInfo;
  try {
    job = await mux.jobs.wait(id, { timeoutMs });
  } catch (err) {
    if (!(err instanceof SshMuxError)) throw err;
    process.stderr.write(`sshmuxctl: ${err.code}: ${err.message}\n`);
    return 255;
  }
  if (job.state === 'exited') return job.exitCode ?? 255;
  if (job.state === 'signaled') {
    const n = (constants.signals as Record<string, number>)[`SIG${job.signal}`];
    if (n) return 128 + n;
    process.stderr.write(`sshmuxctl: job ${id} was killed by signal ${job.signal}, which this system does not know\n`);
    return 255;
  }
  process.stderr.write(job.state === 'lost'
    ? `sshmuxctl: job ${id} was lost: its runner vanished without recording how the job ended (the host rebooted, or the runner was killed)\n`
    : `sshmuxctl: job ${id} is ${job.state}${job.stale ? ` as last known (${job.stale})` : ''}\n`);
  return 255;
}

function stateText(j: JobInfo): string {
  if (j.state === 'exited') return `exited ${j.exitCode}`;
  if (j.state === 'signaled') return `killed by SIG${j.signal}`;
  return j.state;
}

function describe(j: JobInfo): string {
  const rows: Array<[string, string]> = [
    ['id', j.id],
    ['name', j.name],
    ['state', `${stateText(j)}${j.cancelled ? ' (cancelled)' : ''}`],
    ['started', j.startedAt?.toISOString() ?? '-'],
    ['ended', j.endedAt?.toISOString() ?? '-'],
    ['command', j.command],
  ];
  if (j.stale) rows.push(['stale', `last known as of ${j.checkedAt?.toISOString() ?? '?'}: ${j.stale}`]);
  return rows.map(([k, v]) => `${k.padEnd(8)} ${v}\n`).join('');
}

function table(jobs: JobInfo[]): string {
  const rows = [['ID', 'STATE', 'STARTED', 'NAME', 'COMMAND']];
  for (const j of jobs) {
    rows.push([j.id, `${stateText(j)}${j.cancelled ? ' (cancelled)' : ''}`, j.startedAt?.toISOString() ?? '-', j.name,
      j.command.replace(/\s+/g, ' ').slice(0, 60)]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const stale = jobs.find((j) => j.stale)?.stale;
  return rows.map((r) => `${r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()}\n`).join('') +
    (stale ? `(last known state: ${stale})\n` : '');
}
