// The wire format in sshmux.proto through protobufjs: the generated
// messages and whole-frame encode/decode, shared by the daemon and the SDK.
// The length prefix lives in framing.ts; the sshmux command uses wire.ts.
import * as protobuf from 'protobufjs/minimal';
import { FrameError, FrameSplitter, MAX_FRAME } from './framing';
import { sshmux } from './gen/sshmux';

// Counters are uint64 on the wire; plain numbers (exact to 2^53) are
// plenty and keep Long objects out of every API built on these messages.
protobuf.util.Long = undefined as unknown as typeof protobuf.util.Long;
protobuf.configure();

export import v1 = sshmux.v1;
export const Frame = sshmux.v1.Frame;
export type IFrame = sshmux.v1.IFrame;
export const Code = sshmux.v1.Code;
export type Code = sshmux.v1.Code;
/** A Code's name, e.g. "THROTTLED": what SshMuxError.code and the README's error table say. */
export type CodeName = keyof typeof sshmux.v1.Code;
export const Fd = sshmux.v1.Fd;

export { DATA_CHUNK, dataFrameHeader, FrameError, MAX_FRAME, PROTOCOL_VERSION } from './framing';

export function encodeFrame(frame: IFrame): Buffer {
  // Encoded after 4 placeholder bytes, which then take the length: one buffer, no copy.
  const out = Frame.encode(frame, protobuf.Writer.create().fixed32(0)).finish() as Buffer;
  out.writeUInt32BE(out.length - 4, 0);
  return out;
}

/**
 * Name of a Code value, e.g. 13 -> "THROTTLED". A number this build does not
 * know (a newer daemon's code) keeps its number: "CODE_60".
 */
export function codeName(code: number): CodeName | `CODE_${number}` {
  return (Code[code] as CodeName | undefined) ?? `CODE_${code}`;
}

/** Splits a byte stream into decoded frames; memory bounded by one partial frame. */
export class FrameDecoder {
  private readonly splitter: FrameSplitter;

  constructor(maxFrame = MAX_FRAME) {
    this.splitter = new FrameSplitter(maxFrame);
  }

  /** Feeds bytes; returns the complete frames. Throws FrameError on bad input. */
  push(chunk: Buffer): sshmux.v1.Frame[] {
    return this.splitter.push(chunk).map((bytes) => {
      try {
        return Frame.decode(bytes);
      } catch (err) {
        throw new FrameError(`undecodable frame: ${(err as Error).message}`);
      }
    });
  }
}
