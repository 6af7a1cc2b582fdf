// The one error type the SDK (and the sshmux command) reports, with a code
// from proto/sshmux.proto's Code enum; the README's error table says what
// each means and what to do. Code names come from wire.ts, not protobufjs,
// so that the sshmux command can use this class without loading protobufjs.
import type { CodeName } from '../proto';
import { enumName } from '../proto/wire';

/** "THROTTLED", "AUTH_FAILED"...; a code this SDK is too old to know keeps its number ("CODE_60"). */
export type SshMuxErrorCode = CodeName | `CODE_${number}`;

/** Every failure the SDK reports. `code` is the proto Code name, e.g. "THROTTLED". */
export class SshMuxError extends Error {
  override readonly name = 'SshMuxError';
  /** Where the call was when it failed: "queued", "handshaking", "opening", "running", or "". */
  readonly phase: string;

  constructor(
    readonly code: SshMuxErrorCode,
    message: string,
    phase = '',
  ) {
    super(message);
    this.phase = phase;
  }

  static fromWire(body: { code?: number | null; message?: string | null; phase?: string | null }): SshMuxError {
    const code = body.code ?? 0;
    return new SshMuxError((enumName('Code', code) as CodeName | undefined) ?? `CODE_${code}`, body.message ?? '', body.phase ?? '');
  }
}
