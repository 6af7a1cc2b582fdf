// Typed failures inside the daemon. Every one reaches the caller as an
// Error frame with its code (proto Code enum) and a message that says what
// happened and what to do. A message said in more than one place comes
// from one function here (as OpenSSH's reply_error()), so the copies
// cannot drift apart.
import { Code, codeName, type CodeName } from '../proto';

export type Phase = 'queued' | 'handshaking' | 'opening' | 'running';

export class MuxError extends Error {
  override readonly name = 'MuxError';

  constructor(
    readonly code: Code,
    message: string,
    readonly phase?: Phase,
  ) {
    super(message);
  }

  get codeName(): CodeName | `CODE_${number}` {
    return codeName(this.code);
  }

  /** The daemon is stopping: no new work. */
  static shuttingDown(message = 'sshmuxd is shutting down; retry once it is back', phase: Phase = 'queued'): MuxError {
    return new MuxError(Code.SHUTTING_DOWN, message, phase);
  }

  /** The same failure seen from another phase (e.g. a handshake failure reaching a queued request). */
  inPhase(phase: Phase): MuxError {
    return new MuxError(this.code, this.message, phase);
  }
}

/** Any thrown value as a MuxError: ours pass through, anything else is a bug and says so. */
export function toMuxError(err: unknown): MuxError {
  return err instanceof MuxError ? err : new MuxError(Code.INTERNAL, `internal error: ${(err as Error).message}`);
}

export function isMuxError(err: unknown): err is MuxError {
  return err instanceof MuxError;
}

// ---- messages said in more than one place -------------------------------

/** The connection died before the server answered a channel open: nothing ran, so the request may go elsewhere. */
export function lostWhileOpening(connectionId: string): MuxError {
  return new MuxError(Code.CONNECTION_LOST, `connection ${connectionId} lost while opening a session`, 'opening');
}

/** An ssh_config file (the daemon's, an Include, or a client's -F) that cannot be read. */
export function cannotReadSshConfig(file: string, err: unknown): string {
  return `cannot read ssh config ${file}: ${(err as Error).message}`;
}
