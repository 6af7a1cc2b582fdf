// What a test needs to signal a client at the right moment and find the
// processes it left: whether a process catches a signal yet (Linux's
// /proc/PID/status SigCgt), which is how ssh and sshmux both show that they
// have connected (neither handles SIGHUP while connecting), whether it
// sleeps (/proc/PID/stat), and the processes whose command line holds a
// marker (a background `-f` child).
import * as fs from 'node:fs';
import { constants } from 'node:os';

/** Whether `pid` has a handler for `sig` now; false once it has gone. */
export function catchesSignal(pid: number, sig: NodeJS.Signals): boolean {
  let status: string;
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return false;
  }
  const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status);
  return mask !== null && ((BigInt(`0x${mask[1]}`) >> BigInt(constants.signals[sig] - 1)) & 1n) === 1n;
}

/** Whether `pid`'s main thread sleeps now (waits for something to happen, not runnable); false once it has gone. */
export function isAsleep(pid: number): boolean {
  try {
    // The state follows the command's name, which is in parentheses and may hold anything.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] === 'S';
  } catch {
    return false;
  }
}

/** The pids of live processes whose command line contains `marker` as one of its words. */
export function pidsWithArg(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(marker)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}
