// The wire format without protobufjs, for the sshmux command, which must
// start fast: loading protobufjs and the generated module costs about 16 ms
// of every invocation. This is a small protobuf codec that interprets the
// schema descriptor the build generates from sshmux.proto
// (proto/gen/schema.json, `pbjs -t json`), so the .proto stays the one
// source. It handles the subset of protobuf the schema uses (scalars,
// enums, nested messages, repeated strings and messages, string-keyed maps)
// and refuses anything else when it first meets it, so a schema change it
// cannot follow fails test/wire.test.ts, which also checks that it encodes
// byte for byte as protobufjs does and decodes what protobufjs encodes.
import type { sshmux } from './gen/sshmux';
import { FrameError, lengthPrefixed, varintSize, writeVarint } from './framing';

const VARINT_TOO_LONG = 'varint longer than 10 bytes';
const FIELD_PAST_END = 'field runs past the end of its message';

export type IFrame = sshmux.v1.IFrame;

interface FieldJson { type: string; id: number; rule?: string; keyType?: string }
interface TypeJson { fields?: Record<string, FieldJson>; oneofs?: Record<string, { oneof: string[] }>; values?: Record<string, number>; nested?: Record<string, TypeJson> }

type Scalar = 'uint32' | 'uint64' | 'int32' | 'sint32' | 'bool' | 'string' | 'bytes' | 'double' | 'enum';
interface Field {
  name: string;
  id: number;
  kind: Scalar | 'message' | 'map';
  repeated: boolean;
  /** kind 'message': its type; kind 'map': the value's field. */
  message?: MessageType;
  mapValue?: Field;
  /** The oneof this field belongs to. */
  oneof?: string;
}
interface MessageType { name: string; fields: Field[]; byId: Map<number, Field>; repeatedOrMap: Field[] }

const WIRE_TYPE: Record<Scalar | 'message' | 'map', number> = {
  uint32: 0, uint64: 0, int32: 0, sint32: 0, bool: 0, enum: 0, double: 1, string: 2, bytes: 2, message: 2, map: 2,
};

const schema: TypeJson = require('./gen/schema.json');
const PACKAGE = ['sshmux', 'v1'];
const compiled = new Map<string, MessageType>();

/** The message type `name` in package sshmux.v1 (e.g. "Frame"), compiled on first use. */
function messageType(path: string[]): MessageType {
  const key = path.join('.');
  let type = compiled.get(key);
  if (type) return type;
  const json = lookup(path);
  if (!json?.fields) throw new Error(`wire: ${key} is not a message in sshmux.proto`);
  type = { name: key, fields: [], byId: new Map(), repeatedOrMap: [] };
  compiled.set(key, type); // before the fields: messages may refer to themselves
  const oneofOf = new Map<string, string>();
  for (const [oneof, { oneof: members }] of Object.entries(json.oneofs ?? {})) for (const m of members) oneofOf.set(m, oneof);
  for (const [name, f] of Object.entries(json.fields)) {
    const field = compileField(name, f, path);
    field.oneof = oneofOf.get(name);
    type.fields.push(field);
    type.byId.set(field.id, field);
    if (field.repeated || field.kind === 'map') type.repeatedOrMap.push(field);
  }
  return type;
}

function compileField(name: string, f: FieldJson, scope: string[]): Field {
  const repeated = f.rule === 'repeated';
  if (f.keyType !== undefined) {
    if (f.keyType !== 'string') throw new Error(`wire: map key type ${f.keyType} (field ${name}) is not supported`);
    return { name, id: f.id, kind: 'map', repeated: false, mapValue: compileField('value', { type: f.type, id: 2 }, scope) };
  }
  if (['uint32', 'uint64', 'int32', 'sint32', 'bool', 'string', 'bytes', 'double'].includes(f.type)) {
    // proto3 packs repeated numbers; nothing in the schema needs that yet.
    if (repeated && f.type !== 'string' && f.type !== 'bytes') throw new Error(`wire: packed repeated ${f.type} (field ${name}) is not supported`);
    return { name, id: f.id, kind: f.type as Scalar, repeated };
  }
  const target = resolveType(f.type, scope);
  if (target.json.values) {
    if (repeated) throw new Error(`wire: repeated enum (field ${name}) is not supported`);
    return { name, id: f.id, kind: 'enum', repeated };
  }
  // Compiled on first use: a frame that never carries a Status never compiles it.
  const field: Field = { name, id: f.id, kind: 'message', repeated };
  Object.defineProperty(field, 'message', { get: () => messageType(target.path) });
  return field;
}

/** A type name as protobuf resolves it: from the innermost scope outwards. */
function resolveType(name: string, scope: string[]): { path: string[]; json: TypeJson } {
  const parts = name.split('.');
  for (let i = scope.length; i >= 0; i--) {
    const path = [...scope.slice(0, i), ...parts];
    const json = lookup(path);
    if (json) return { path, json };
  }
  throw new Error(`wire: unknown type ${name} in sshmux.proto`);
}

function lookup(path: string[]): TypeJson | undefined {
  let node: TypeJson | undefined = schema;
  for (const part of path) node = node?.nested?.[part];
  return node;
}

// ---- encoding ------------------------------------------------------------------

/** Encodes a message of `type` (e.g. "Frame") as protobufjs does: fields in declaration order, proto3 defaults left out. */
export function encode(type: string, value: object): Buffer {
  const parts: Uint8Array[] = [];
  encodeMessage(messageType([...PACKAGE, type]), value as Record<string, unknown>, parts);
  return Buffer.concat(parts);
}

/** A whole frame: length prefix and encoded Frame. */
export function encodeFrame(frame: IFrame): Buffer {
  return lengthPrefixed(encode('Frame', frame));
}

function encodeMessage(type: MessageType, value: Record<string, unknown>, out: Uint8Array[]): void {
  for (const field of type.fields) {
    const v = value[field.name];
    if (v === undefined || v === null) continue;
    if (field.kind === 'map') {
      for (const [k, mv] of Object.entries(v as Record<string, unknown>)) {
        const entry: Uint8Array[] = [];
        writeScalar('string', 1, k, entry, true);
        writeValue(field.mapValue!, mv, entry, true);
        writeDelimited(field.id, entry, out);
      }
    } else if (field.repeated) {
      for (const item of v as unknown[]) writeValue(field, item, out, true);
    } else {
      writeValue(field, v, out, false);
    }
  }
}

/** `always`: write even a default value (repeated items, map entries), as protobufjs does. */
function writeValue(field: Field, v: unknown, out: Uint8Array[], always: boolean): void {
  if (field.kind === 'message') {
    const inner: Uint8Array[] = [];
    encodeMessage(field.message!, v as Record<string, unknown>, inner);
    writeDelimited(field.id, inner, out);
    return;
  }
  writeScalar(field.kind as Scalar, field.id, v, out, always);
}

function writeScalar(kind: Scalar, id: number, v: unknown, out: Uint8Array[], always: boolean): void {
  if (!always && isDefault(kind, v)) return;
  out.push(varint(id * 8 + WIRE_TYPE[kind]));
  switch (kind) {
    case 'string':
    case 'bytes': {
      const bytes = kind === 'string' ? Buffer.from(v as string, 'utf8') : v as Uint8Array;
      out.push(varint(bytes.length), bytes);
      return;
    }
    case 'double': {
      const b = Buffer.allocUnsafe(8);
      b.writeDoubleLE(v as number, 0);
      out.push(b);
      return;
    }
    case 'bool':
      out.push(varint(v ? 1 : 0));
      return;
    case 'sint32': {
      const n = v as number;
      out.push(varint(((n << 1) ^ (n >> 31)) >>> 0));
      return;
    }
    case 'int32':
    case 'enum': {
      const n = v as number;
      // A negative int32 is sign-extended to 64 bits: ten bytes.
      out.push(n < 0 ? negativeVarint(n) : varint(n));
      return;
    }
    default: // uint32, uint64
      out.push(varint(v as number));
  }
}

function isDefault(kind: Scalar, v: unknown): boolean {
  switch (kind) {
    case 'string': return v === '';
    case 'bytes': return (v as Uint8Array).length === 0;
    case 'bool': return v === false;
    // -0 is written, as protobufjs writes it: only +0 is a double's default.
    case 'double': return Object.is(v, 0);
    default: return v === 0;
  }
}

function writeDelimited(id: number, inner: Uint8Array[], out: Uint8Array[]): void {
  let length = 0;
  for (const p of inner) length += p.length;
  out.push(varint(id * 8 + 2), varint(length), ...inner);
}

function varint(v: number): Uint8Array {
  const out = new Uint8Array(varintSize(v));
  writeVarint(out, 0, v);
  return out;
}

function negativeVarint(n: number): Uint8Array {
  let big = BigInt.asUintN(64, BigInt(n));
  const out = new Uint8Array(10);
  for (let i = 0; i < 10; i++) {
    out[i] = Number(big & 0x7fn) | (i < 9 ? 0x80 : 0);
    big >>= 7n;
  }
  return out;
}

// ---- decoding ------------------------------------------------------------------

/**
 * Decodes a message of `type` into a plain object with the fields that are
 * present, every repeated field and map (empty when absent, as protobufjs
 * has them) and, for each oneof, its name set to the member present.
 * Unknown fields are skipped, as protobuf requires.
 */
export function decode(type: string, bytes: Uint8Array): Record<string, unknown> {
  try {
    return decodeMessage(messageType([...PACKAGE, type]), new Reader(bytes, 0, bytes.length));
  } catch (err) {
    if (err instanceof FrameError) throw err;
    throw new FrameError(`undecodable ${type}: ${(err as Error).message}`);
  }
}

/** A Frame body (as FrameSplitter returns it), decoded. */
export function decodeFrame(body: Uint8Array): IFrame & { body?: string } {
  return decode('Frame', body) as IFrame & { body?: string };
}

class Reader {
  constructor(readonly buf: Uint8Array, public pos: number, readonly end: number) {}

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new FrameError('truncated varint');
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    throw new FrameError(VARINT_TOO_LONG);
  }

  /** As protobufjs reads int32: the low 32 bits of the varint, signed. */
  int32(): number {
    let low = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new FrameError('truncated varint');
      const b = this.buf[this.pos++];
      if (i < 5) low |= (b & 0x7f) << (7 * i);
      if (b < 0x80) return low | 0;
    }
    throw new FrameError(VARINT_TOO_LONG);
  }

  bytes(): Uint8Array {
    const n = this.varint();
    if (this.pos + n > this.end) throw new FrameError(FIELD_PAST_END);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0: this.varint(); return;
      case 1: this.advance(8); return;
      case 2: this.bytes(); return;
      case 5: this.advance(4); return;
      default: throw new FrameError(`wire type ${wireType} is not supported`);
    }
  }

  advance(n: number): void {
    if (this.pos + n > this.end) throw new FrameError(FIELD_PAST_END);
    this.pos += n;
  }
}

function decodeMessage(type: MessageType, r: Reader): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of type.repeatedOrMap) out[f.name] = f.kind === 'map' ? {} : [];
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = type.byId.get(Math.floor(tag / 8));
    const wireType = tag & 7;
    if (!field || wireType !== WIRE_TYPE[field.kind]) {
      r.skip(wireType);
      continue;
    }
    if (field.kind === 'map') {
      const entry = r.bytes();
      const er = new Reader(entry, 0, entry.length);
      let key = '';
      let value: unknown = defaultOf(field.mapValue!);
      while (er.pos < er.end) {
        const t = er.varint();
        if (t === 10) key = Buffer.from(er.bytes()).toString('utf8');
        else if (Math.floor(t / 8) === 2 && (t & 7) === WIRE_TYPE[field.mapValue!.kind]) value = readValue(field.mapValue!, er);
        else er.skip(t & 7);
      }
      (out[field.name] as Record<string, unknown>)[key] = value;
      continue;
    }
    const value = readValue(field, r);
    if (field.repeated) (out[field.name] as unknown[]).push(value);
    else out[field.name] = value;
    if (field.oneof) out[field.oneof] = field.name;
  }
  return out;
}

function readValue(field: Field, r: Reader): unknown {
  switch (field.kind) {
    case 'message': {
      const bytes = r.bytes();
      return decodeMessage(field.message!, new Reader(bytes, 0, bytes.length));
    }
    case 'string': return Buffer.from(r.bytes()).toString('utf8');
    case 'bytes': return r.bytes();
    case 'bool': return r.varint() !== 0;
    case 'double': {
      const at = r.pos;
      r.advance(8);
      return Buffer.from(r.buf.buffer, r.buf.byteOffset + at, 8).readDoubleLE(0);
    }
    case 'sint32': {
      const n = r.varint();
      return n % 2 ? -(n + 1) / 2 : n / 2;
    }
    case 'int32':
    case 'enum':
      return r.int32();
    default: // uint32, uint64
      return r.varint();
  }
}

function defaultOf(field: Field): unknown {
  switch (field.kind) {
    case 'string': return '';
    case 'bytes': return new Uint8Array(0);
    case 'bool': return false;
    case 'message': return {};
    default: return 0;
  }
}

/** The numeric value of an enum member, e.g. enumValue('SessionRequest.Kind', 'SUBSYSTEM'). */
export function enumValue(name: string, member: string): number {
  const json = lookup([...PACKAGE, ...name.split('.')]);
  const v = json?.values?.[member];
  if (v === undefined) throw new Error(`wire: ${name}.${member} is not in sshmux.proto`);
  return v;
}

/** The name of an enum value, e.g. enumName('Code', 13) -> "THROTTLED". */
export function enumName(name: string, value: number): string | undefined {
  const values = lookup([...PACKAGE, ...name.split('.')])?.values ?? {};
  return Object.keys(values).find((k) => values[k] === value);
}
