// Framing for the wire format in sshmux.proto, without any protobuf code:
// a 4-byte big-endian length, then one encoded Frame. Kept apart from
// protobufjs so that the sshmux command, which must start fast, can split
// and write frames without loading it (see wire.ts).

export const PROTOCOL_VERSION = 1;
/** Largest frame either side accepts. Data frames carry at most DATA_CHUNK. */
export const MAX_FRAME = 1024 * 1024;
/** Data larger than this is split, so one frame stays far under MAX_FRAME. */
export const DATA_CHUNK = 64 * 1024;

const HEADER = 4;

export class FrameError extends Error {
  override readonly name = 'FrameError';
}

/** An encoded Frame body with its length prefix. */
export function lengthPrefixed(body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, HEADER);
  return out;
}

/**
 * The bytes that precede `length` bytes of payload in an encoded
 * Frame{stream, data{fd, data}}: the hot path writes these and then the
 * payload itself, so output is never copied into a protobuf writer and
 * again into a framed buffer. Same bytes as a full encode (tested).
 */
export function dataFrameHeader(stream: number, fd: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(dataFrameHeaderSize(stream, fd, length));
  writeDataFrameHeader(out, 0, stream, fd, length);
  return out;
}

/** The size of dataFrameHeader(stream, fd, length). */
export function dataFrameHeaderSize(stream: number, fd: number, length: number): number {
  return HEADER + dataFrameBodySize(stream, fd, length) - length;
}

function dataFrameBodySize(stream: number, fd: number, length: number): number {
  // proto3 leaves default values out: fd 0 and empty data are not written.
  const inner = (fd ? 1 + varintSize(fd) : 0) + (length ? 1 + varintSize(length) + length : 0);
  return 1 + varintSize(stream) + 1 + varintSize(inner) + inner;
}

/** Writes dataFrameHeader(stream, fd, length) into `out` at `at`; returns where the payload goes. */
export function writeDataFrameHeader(out: Buffer, at: number, stream: number, fd: number, length: number): number {
  const inner = (fd ? 1 + varintSize(fd) : 0) + (length ? 1 + varintSize(length) + length : 0);
  out.writeUInt32BE(1 + varintSize(stream) + 1 + varintSize(inner) + inner, at);
  at += HEADER;
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
    at = writeVarint(out, at, length);
  }
  return at;
}

export function varintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

export function writeVarint(out: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    out[at++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  out[at++] = v;
  return at;
}

/**
 * Splits a byte stream into frame bodies. Holds at most one partial frame,
 * so its memory is bounded by maxFrame whatever the peer sends.
 */
export class FrameSplitter {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxFrame = MAX_FRAME) {}

  /** Feeds bytes; returns the complete frame bodies. Throws FrameError on an oversized frame. */
  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const bodies: Buffer[] = [];
    while (this.buffered >= HEADER) {
      const length = this.peekLength();
      if (length > this.maxFrame) {
        throw new FrameError(`frame of ${length} bytes exceeds the limit of ${this.maxFrame}`);
      }
      if (this.buffered < HEADER + length) break;
      bodies.push(this.take(HEADER + length).subarray(HEADER));
    }
    return bodies;
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

// ---- the frames every exec sends, without protobufjs ------------------------
// Started, Eof and Exit go out for every command, Window for every grant of
// stdin: encoded here straight into the daemon's output block, they cost no
// protobufjs writer (some 30 calls and two buffers each). They decode to
// what Frame.encode gives (tested); fields at their default are left out,
// as proto3 allows.

/** Started's fields this encoder writes (a download's size and warnings go through protobufjs). */
export interface HotStarted {
  connection: string;
  waitedMs: number;
  newConnection: boolean;
  window: number;
  hostname: string;
}

const TAG_STREAM = 0x08;
const TAG_STARTED = 0x2a;
const TAG_EOF = 0x3a;
const TAG_WINDOW = 0x42;
const TAG_EXIT = 0x62;

function stringFieldSize(s: string): number {
  if (!s) return 0;
  const n = Buffer.byteLength(s);
  return 1 + varintSize(n) + n;
}

function writeStringField(out: Buffer, at: number, tag: number, s: string): number {
  if (!s) return at;
  const n = Buffer.byteLength(s);
  out[at++] = tag;
  at = writeVarint(out, at, n);
  return at + out.write(s, at, n, 'utf8');
}

function varintFieldSize(v: number): number {
  return v ? 1 + varintSize(v) : 0;
}

function writeVarintField(out: Buffer, at: number, tag: number, v: number): number {
  if (!v) return at;
  out[at++] = tag;
  return writeVarint(out, at, v);
}

/** Frame{stream, <tag>: <body of bodySize>}: its size with the length prefix. */
function frameSize(stream: number, bodySize: number): number {
  return HEADER + 1 + varintSize(stream) + 1 + varintSize(bodySize) + bodySize;
}

function writeFrameStart(out: Buffer, at: number, stream: number, tag: number, bodySize: number): number {
  out.writeUInt32BE(frameSize(stream, bodySize) - HEADER, at);
  at += HEADER;
  out[at++] = TAG_STREAM;
  at = writeVarint(out, at, stream);
  out[at++] = tag;
  return writeVarint(out, at, bodySize);
}

function startedBodySize(s: HotStarted): number {
  return stringFieldSize(s.connection) + varintFieldSize(s.waitedMs) + (s.newConnection ? 2 : 0) +
    varintFieldSize(s.window) + stringFieldSize(s.hostname);
}

export function startedFrameSize(stream: number, s: HotStarted): number {
  return frameSize(stream, startedBodySize(s));
}

/** Writes Frame{stream, started: s} with its length prefix at `at`; returns the end. */
export function writeStartedFrame(out: Buffer, at: number, stream: number, s: HotStarted): number {
  at = writeFrameStart(out, at, stream, TAG_STARTED, startedBodySize(s));
  at = writeStringField(out, at, 0x0a, s.connection);
  at = writeVarintField(out, at, 0x10, s.waitedMs);
  if (s.newConnection) {
    out[at++] = 0x18;
    out[at++] = 1;
  }
  at = writeVarintField(out, at, 0x28, s.window);
  return writeStringField(out, at, 0x3a, s.hostname);
}

export function eofFrameSize(stream: number): number {
  return frameSize(stream, 0);
}

export function writeEofFrame(out: Buffer, at: number, stream: number): number {
  return writeFrameStart(out, at, stream, TAG_EOF, 0);
}

/** Exit{code} (sint32, zigzag): an exit status without a signal. */
function exitBodySize(code: number): number {
  return varintFieldSize(zigzag(code));
}

function zigzag(v: number): number {
  return v >= 0 ? v * 2 : -v * 2 - 1;
}

export function exitFrameSize(stream: number, code: number): number {
  return frameSize(stream, exitBodySize(code));
}

export function writeExitFrame(out: Buffer, at: number, stream: number, code: number): number {
  at = writeFrameStart(out, at, stream, TAG_EXIT, exitBodySize(code));
  return writeVarintField(out, at, 0x08, zigzag(code));
}

export function windowFrameSize(stream: number, bytes: number): number {
  return frameSize(stream, varintFieldSize(bytes));
}

export function writeWindowFrame(out: Buffer, at: number, stream: number, bytes: number): number {
  at = writeFrameStart(out, at, stream, TAG_WINDOW, varintFieldSize(bytes));
  return writeVarintField(out, at, 0x08, bytes);
}
