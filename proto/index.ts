// Framing for the wire format in sshmux.proto: a 4-byte big-endian length,
// then one encoded Frame. Shared by the daemon and every client.
import * as protobuf from 'protobufjs/minimal';
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

export const PROTOCOL_VERSION = 1;
/** Largest frame either side accepts. Data frames carry at most DATA_CHUNK. */
export const MAX_FRAME = 1024 * 1024;
/** Data larger than this is split, so one frame stays far under MAX_FRAME. */
export const DATA_CHUNK = 64 * 1024;

const HEADER = 4;

export function encodeFrame(frame: IFrame): Buffer {
  const body = Frame.encode(frame).finish();
  const out = Buffer.allocUnsafe(HEADER + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, HEADER);
  return out;
}

/**
 * The bytes that precede `length` bytes of payload in an encoded
 * Frame{stream, data{fd, data}}: the hot path writes these and then the
 * payload itself, so output is never copied into a protobuf writer and
 * again into a framed buffer. Same bytes as encodeFrame (tested).
 */
export function dataFrameHeader(stream: number, fd: number, length: number): Buffer {
  // proto3 leaves default values out: fd 0 and empty data are not written.
  const inner = (fd ? 1 + varintSize(fd) : 0) + (length ? 1 + varintSize(length) + length : 0);
  const body = 1 + varintSize(stream) + 1 + varintSize(inner) + inner;
  const out = Buffer.allocUnsafe(HEADER + body - length);
  out.writeUInt32BE(body, 0);
  let at = HEADER;
  out[at++] = 0x08; // Frame.stream, varint
  at = writeVarint(out, at, stream);
  out[at++] = 0x32; // Frame.data, length-delimited
  at = writeVarint(out, at, inner);
  if (fd) {
    out[at++] = 0x08; // Data.fd, varint
    at = writeVarint(out, at, fd);
  }
  if (length) {
    out[at++] = 0x12; // Data.data, length-delimited
    writeVarint(out, at, length);
  }
  return out;
}

function varintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function writeVarint(out: Buffer, at: number, v: number): number {
  while (v >= 0x80) {
    out[at++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  out[at++] = v;
  return at;
}

/**
 * Name of a Code value, e.g. 13 -> "THROTTLED". A number this build does not
 * know (a newer daemon's code) keeps its number: "CODE_60".
 */
export function codeName(code: number): CodeName | `CODE_${number}` {
  return (Code[code] as CodeName | undefined) ?? `CODE_${code}`;
}

export class FrameError extends Error {
  override readonly name = 'FrameError';
}

/**
 * Splits a byte stream into frames. Holds at most one partial frame, so its
 * memory is bounded by maxFrame whatever the peer sends.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxFrame = MAX_FRAME) {}

  /** Feeds bytes; returns the complete frames. Throws FrameError on bad input. */
  push(chunk: Buffer): sshmux.v1.Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: sshmux.v1.Frame[] = [];
    while (this.buffered >= HEADER) {
      const length = this.peekLength();
      if (length > this.maxFrame) {
        throw new FrameError(`frame of ${length} bytes exceeds the limit of ${this.maxFrame}`);
      }
      if (this.buffered < HEADER + length) break;
      const bytes = this.take(HEADER + length).subarray(HEADER);
      let frame: sshmux.v1.Frame;
      try {
        frame = Frame.decode(bytes);
      } catch (err) {
        throw new FrameError(`undecodable frame: ${(err as Error).message}`);
      }
      frames.push(frame);
    }
    return frames;
  }

  private peekLength(): number {
    const first = this.chunks[0];
    if (first.length >= HEADER) return first.readUInt32BE(0);
    const head = this.take(this.buffered);
    this.chunks = [head];
    this.buffered = head.length;
    return head.readUInt32BE(0);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first.length >= n) {
      // Common case: the whole frame sits in one chunk; no copy.
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      const want = n - filled;
      if (c.length <= want) {
        out.set(c, filled);
        filled += c.length;
        this.chunks.shift();
      } else {
        out.set(c.subarray(0, want), filled);
        this.chunks[0] = c.subarray(want);
        filled += want;
      }
    }
    this.buffered -= n;
    return out;
  }
}
