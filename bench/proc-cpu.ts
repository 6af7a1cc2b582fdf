// What the kernel says a process spent on the CPU, for the benches: every
// figure of CPU they report is read here, from /proc, never estimated.
import * as fs from 'node:fs';

/** /proc/PID/stat counts in clock ticks of 1/100 s (Linux's USER_HZ). */
const TICKS_PER_SECOND = 100;

/**
 * A process's CPU seconds: the sum of its threads' run time from
 * /proc/PID/task/TID/schedstat (nanoseconds; /proc/PID/stat counts ticks of
 * 10 ms, too coarse for a batch of execs), else utime + stime from /proc/PID/stat.
 */
export function cpuSeconds(pid: number): number {
  try {
    let ns = 0;
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    }
    if (ns > 0) return ns / 1e9;
  } catch {
    // no schedstat (or a thread ended while read): fall back to ticks
  }
  return statSeconds(pid);
}

/**
 * utime + stime of a process from /proc/PID/stat, in seconds (10 ms steps),
 * and with `reaped` the CPU of the children it has reaped (cutime + cstime):
 * summed over a tree, a process that ended is then counted once, in its
 * parent. 0 for a process that has gone.
 */
export function statSeconds(pid: number, reaped = false): number {
  try {
    return fieldSeconds(statFields(pid), reaped);
  } catch {
    return 0; // ended between the listing and the read: its parent has it now
  }
}

/**
 * CPU seconds of everything below an sshd listener: its connection
 * processes, their sessions and the commands they reaped (cutime, cstime),
 * in ticks of 10 ms (fine summed over a batch).
 */
export function sshdTreeSeconds(listener: number): number {
  const parent = new Map<number, number>();
  const seconds = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    const pid = Number(entry);
    if (!pid) continue;
    try {
      const f = statFields(pid); // one read per process: its parent and its CPU from the same moment
      parent.set(pid, Number(f[1]));
      seconds.set(pid, fieldSeconds(f, true));
    } catch {
      // ended while read
    }
  }
  let total = 0;
  for (const [pid, s] of seconds) {
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p)) {
      if (p === listener) {
        total += s;
        break;
      }
    }
  }
  return total;
}

/** The CPU seconds of the children a process has waited for (cutime + cstime); 0 for a process that has gone. */
export function reapedSeconds(pid: number): number {
  try {
    const f = statFields(pid);
    return (Number(f[13]) + Number(f[14])) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** utime + stime (and with `reaped`, cutime + cstime) from statFields(), in seconds. */
function fieldSeconds(f: string[], reaped: boolean): number {
  // f[0] is field 3 (the state): utime is [11], stime [12], cutime [13], cstime [14].
  return (Number(f[11]) + Number(f[12]) + (reaped ? Number(f[13]) + Number(f[14]) : 0)) / TICKS_PER_SECOND;
}

/** Fields of /proc/PID/stat after the command name (field 3, the state, is [0]). */
function statFields(pid: number): string[] {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(') ') + 2).split(' ');
}
