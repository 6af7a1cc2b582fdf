// How the sshmux command ends on SIGHUP, SIGINT and SIGTERM: as OpenSSH's
// ssh does (clientloop.c). Before the session is up ssh has no handler, so
// the signal's default action ends it; once it is up, ssh exits 255 ("Killed
// by signal N." at -v), except on SIGTERM when it runs no session (-N, -W),
// which exits 0. Supervisors depend on it: autossh restarts a child that
// exits 255 and gives up on one that exits 0.
import type { Diagnostics } from './diagnostics';

export const ENDING_SIGNALS = ['SIGHUP', 'SIGINT', 'SIGTERM'] as const;
export type EndingSignal = (typeof ENDING_SIGNALS)[number];

/** ssh's exit status after `sig` once connected; says "Killed by signal N." under -v where ssh does. */
export function statusAfterSignal(sig: EndingSignal, runsSession: boolean, diag: Diagnostics): number {
  if (sig === 'SIGTERM' && !runsSession) return 0;
  const { constants } = require('node:os') as typeof import('node:os');
  diag.sshVerbose(`Killed by signal ${constants.signals[sig]}.`);
  return 255;
}

/**
 * Resolves with the first ending signal. Until then the process stays: a
 * stand-by (-N) holds nothing else that would keep Node's event loop alive
 * (with stdin at /dev/null, nothing at all). The handlers stay once it has
 * resolved, so a second signal cannot cut the clean-up short.
 */
export function untilSignalled(done?: Promise<unknown>): Promise<EndingSignal> {
  return new Promise((resolve) => {
    const keepAlive = setInterval(() => {}, 2 ** 31 - 1);
    // Once the work is done, nothing holds the process up waiting for a signal (it ends by its event loop emptying).
    void done?.finally(() => clearInterval(keepAlive));
    let first = true;
    for (const sig of ENDING_SIGNALS) {
      process.on(sig, () => {
        if (!first) return;
        first = false;
        clearInterval(keepAlive);
        resolve(sig);
      });
    }
  });
}
