// A program under a real terminal: Python's pty module gives it a
// controlling terminal of 30x100, which becomes 40x120 (with SIGWINCH) once
// the program has printed a given text, for tests of -t sessions and window
// changes. Debian's python3, whose pty module is the standard one.
import { execFileSync } from 'node:child_process';

const SCRIPT = `
import os, pty, subprocess, termios, fcntl, struct, time, signal, select, sys
resize_after, seconds, argv = sys.argv[1].encode(), float(sys.argv[2]), sys.argv[3:]
master, slave = pty.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 30, 100, 0, 0))
before = termios.tcgetattr(slave)
p = subprocess.Popen(argv,
    stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
out = b''
deadline = time.time() + seconds
resized = False
while p.poll() is None and time.time() < deadline:
    r, _, _ = select.select([master], [], [], 0.1)
    if r: out += os.read(master, 65536)
    if not resized and resize_after in out:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 40, 120, 0, 0))
        os.killpg(p.pid, signal.SIGWINCH)
        resized = True
rc = p.wait(timeout=5)
while True:
    r, _, _ = select.select([master], [], [], 0.2)
    if not r: break
    out += os.read(master, 65536)
print(rc, 'restored' if termios.tcgetattr(slave) == before else 'NOT-restored', repr(out.decode()))
`;

/**
 * Runs argv under a new terminal for at most `seconds`, resizing it once `resizeAfter` appears in its output
 * (a remote shell ignores a WINCH before its trap is set). Returns "<exit code> restored|NOT-restored '<output>'":
 * whether the terminal's modes ended as they began, and everything the program wrote.
 */
export function underTerminal(argv: string[], resizeAfter: string, seconds: number, env?: NodeJS.ProcessEnv): string {
  return execFileSync('/usr/bin/python3', ['-c', SCRIPT, resizeAfter, String(seconds), ...argv], { env, timeout: 2 * seconds * 1000 }).toString();
}
