// What an ansible-playbook run did, read from the output of ansible-core's
// own default stdout callback: its PLAY RECAP (each host's counts) and its
// "fatal:" lines (each failed or unreachable task, with Ansible's result as
// JSON). Not the `json` callback: that lives in the ansible.posix
// collection, which Debian's ansible-core does not carry.

/** The environment that makes ansible-playbook print what playResults() reads. */
export const PLAY_OUTPUT_ENV = { ANSIBLE_STDOUT_CALLBACK: 'default', ANSIBLE_NOCOLOR: '1' } as const;

export interface HostCounts { ok: number; changed: number; unreachable: number; failed: number }
export interface TaskFailure { host: string; kind: 'failed' | 'unreachable'; message: string }

/** Each host's counts from the recap (none if the run never got that far) and each failed or unreachable task. */
export function playResults(stdout: string): { recap: Map<string, HostCounts>; failures: TaskFailure[] } {
  const recap = new Map<string, HostCounts>();
  const at = stdout.lastIndexOf('PLAY RECAP');
  if (at >= 0) {
    for (const m of stdout.slice(at).matchAll(/^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)/gm)) {
      recap.set(m[1], { ok: Number(m[2]), changed: Number(m[3]), unreachable: Number(m[4]), failed: Number(m[5]) });
    }
  }
  const failures: TaskFailure[] = [];
  for (const m of stdout.matchAll(/^fatal: \[([^\]]+)\]: (FAILED|UNREACHABLE)! => (.*)$/gm)) {
    let message = m[3];
    try {
      message = String((JSON.parse(m[3]) as { msg?: unknown }).msg ?? '');
    } catch {
      // Not one line of JSON (another result format): the line as it is.
    }
    failures.push({ host: m[1], kind: m[2] === 'FAILED' ? 'failed' : 'unreachable', message });
  }
  return { recap, failures };
}
