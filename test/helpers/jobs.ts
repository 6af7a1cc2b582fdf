// For the jobs tests: the host's processes and job directories (the sshd is
// local, so the test can look at them directly), and logs read whole.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { LogOptions, SshMux } from '../../client-sdk';
import { testUser } from './sshd';

/**
 * Live processes of the login user whose command line contains needle (a
 * string) or matches it (a RegExp: /^sleep 3001/ leaves out the job's shell,
 * whose command line holds the whole job).
 * A job runs detached from sshd (its own session, reparented), so descent
 * from sshd does not find it: the owner and the command line do.
 */
export function hostProcesses(needle: string | RegExp): number[] {
  const uid = testUser().uid;
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const status = fs.readFileSync(`/proc/${name}/status`, 'utf8');
      if (Number(/^Uid:\s+(\d+)/m.exec(status)![1]) !== uid || /^State:\s+Z/m.test(status)) continue;
      const cmdline = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (typeof needle === 'string' ? cmdline.includes(needle) : needle.test(cmdline)) out.push(Number(name));
    } catch {
      // exited while we looked
    }
  }
  return out;
}

const owners: string[] = [];

/** A jobs root of its own for each daemon a test starts, so runs and files never see each other's jobs. */
export function uniqueOwner(): string {
  const owner = `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  owners.push(owner);
  return owner;
}

/** Deletes the jobs roots uniqueOwner() named (after the daemons have stopped). */
export function removeJobRoots(): void {
  for (const owner of owners.splice(0)) fs.rmSync(path.join(testUser().home, '.sshmux', 'jobs', owner), { recursive: true, force: true });
}

export function jobDir(owner: string, key: string): string {
  return path.join(testUser().home, '.sshmux', 'jobs', owner, key);
}

export async function readLog(mux: SshMux, id: string, opts: LogOptions = {}): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of mux.jobs.logs(id, opts)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Kills, with everything in their process groups, the jobs whose command line contains needle (a test that failed midway). */
export function killJobs(needle: string): void {
  for (const pid of hostProcesses(needle)) {
    try {
      // A job leads its own process group (its runner started it with setsid).
      const pgid = Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[2]);
      process.kill(pgid === pid ? -pid : pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}
