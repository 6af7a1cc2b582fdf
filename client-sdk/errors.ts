import { Code, codeName } from '../proto';

/** Every failure the SDK reports. `code` is the proto Code name, e.g. "THROTTLED". */
export class SshMuxError extends Error {
  override readonly name = 'SshMuxError';
  /** Where the call was when it failed: "queued", "handshaking", "opening", "running", or "". */
  readonly phase: string;

  constructor(
    readonly code: string,
    message: string,
    phase = '',
  ) {
    super(message);
    this.phase = phase;
  }

  static fromWire(body: { code?: number | null; message?: string | null; phase?: string | null }): SshMuxError {
    return new SshMuxError(codeName(body.code ?? Code.CODE_UNSPECIFIED), body.message ?? '', body.phase ?? '');
  }
}
