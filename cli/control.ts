// sshmux -O CMD: ssh's multiplexing commands, answered by the daemon, which
// is the master for every destination. check: the daemon is up and the
// destination resolves; exit and stop: drain the destination's connections
// (sshmuxctl drain), which take no new sessions and close once their
// sessions end; forward, cancel, proxy: refused. Never starts a daemon:
// "is a master running?" must not be answered by starting one.
import { output } from './stdio';
import { enumValue } from '../proto/wire';
import { askDaemon } from './daemon-call';
import type { Diagnostics } from './diagnostics';
import { EXIT_FAILURE } from './session';
import { resolveRequest } from './print-config';
import type { ControlCommand, Invocation } from './ssh-args';

const REFUSED: Partial<Record<ControlCommand, string>> = {
  forward: '-O forward adds forwardings to a running master; the daemon holds no listeners of its own (sshmux -L listens in the sshmux process): run sshmux -N -L instead',
  cancel: '-O cancel removes forwardings from a running master; the daemon holds none: stop the sshmux -L process instead',
  proxy: '-O proxy speaks the ControlMaster protocol, which sshmuxd does not; use the sshmux command or the SDK',
};

/** What ssh prints on stderr when the master took the command. */
const SENT: Partial<Record<ControlCommand, string>> = {
  exit: 'Exit request sent.',
  stop: 'Stop listening request sent.',
};

export async function control(inv: Invocation, socketPath: string, diag: Diagnostics): Promise<number> {
  const command = inv.control!;
  const refused = REFUSED[command];
  if (refused) {
    diag.error(refused);
    return EXIT_FAILURE;
  }
  try {
    if (command === 'check') {
      const { pid } = await askDaemon(socketPath, resolveRequest(inv));
      output(2).write(`Master running (pid=${pid})\r\n`);
      return 0;
    }
    const drain = { controlRequest: { action: enumValue('ControlRequest.Action', 'DRAIN'), host: inv.destination, options: inv.options } };
    const { answer } = await askDaemon(socketPath, drain);
    diag.info(answer.controlResult?.message ?? '');
    output(2).write(`${SENT[command]}\r\n`);
    return 0;
  } catch (err) {
    diag.error((err as Error).message);
    return EXIT_FAILURE;
  }
}
