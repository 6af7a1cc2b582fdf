// Typed failures inside the daemon. Every one reaches the caller as an
// Error frame with its code (proto Code enum) and a message that says what
// happened and what to do.
import { Code, codeName } from '../proto';

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

  get codeName(): string {
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
