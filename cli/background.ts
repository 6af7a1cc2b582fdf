// sshmux -f: as ssh -f, go to the background once the session has started
// (after authentication, so a wrong host or key is still reported here,
// with ssh's exit status) and let the command run on. Node cannot fork, so
// the same command line runs again as a detached child (its own session,
// stdin from /dev/null, stdout and stderr shared), which says "started"
// on a pipe; this process exits 0 then, or with the child's status if it
// fails first.
import * as fs from 'node:fs';

/** Set in the child's environment: the fd of the pipe to say "started" on. */
const READY_FD_ENV = 'SSHMUX_BACKGROUND_FD';

/** In the child: the pipe to the waiting parent, taken out of the environment (SendEnv must not see it). */
export function takeReadyFd(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const fd = env[READY_FD_ENV];
  delete env[READY_FD_ENV];
  return fd === undefined ? undefined : Number(fd);
}

/** In the child: the session started; the parent may exit. */
export function signalReady(fd: number): void {
  try {
    fs.writeSync(fd, 'started\n');
    fs.closeSync(fd);
  } catch {
    // the parent is gone already
  }
}

/** In the parent: runs argv in a detached child; resolves with 0 once it started, or with its status if it ended first. */
export function runInBackground(script: string, argv: string[]): Promise<number> {
  // Required here: child_process costs milliseconds that the usual path does not need.
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...argv], {
      detached: true,
      stdio: ['ignore', 'inherit', 'inherit', 'pipe'],
      env: { ...process.env, [READY_FD_ENV]: '3' },
    });
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.once('data', () => {
      child.unref();
      (pipe as unknown as { destroy(): void }).destroy();
      resolve(0);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 255 : 0)));
  });
}
