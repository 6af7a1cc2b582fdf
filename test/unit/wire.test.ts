// wire.ts, the sshmux command's codec without protobufjs, against
// protobufjs's generated code for the same sshmux.proto: byte-for-byte equal
// encodings and equal decodings, for the frames the command sends and
// receives and for 2,000 frames generated from the schema itself (so a
// field added to the .proto is covered without touching this file). The
// hot path's data header (dataFrameHeader) is checked against both, and its
// Started, Eof, Exit and Window frames decode as protobufjs's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { dataFrameHeader, encodeFrame as protobufEncode, Frame, type IFrame } from '../../proto';
import {
  eofFrameSize, exitFrameSize, startedFrameSize, windowFrameSize, writeEofFrame, writeExitFrame, writeStartedFrame, writeWindowFrame,
} from '../../proto/framing';
import { decodeFrame, encodeFrame as wireEncode, enumName, enumValue } from '../../proto/wire';

const schema = require('../../proto/gen/schema.json');
const v1 = schema.nested.sshmux.nested.v1.nested;

/** protobufjs's decoded message as plain data: own fields, recursively, bytes as Buffers. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = plain(x);
    return out;
  }
  return v;
}

function check(frame: IFrame): void {
  const expected = protobufEncode(frame);
  const got = wireEncode(frame);
  assert.ok(got.equals(expected), `encoding of ${JSON.stringify(frame)}:\n wire ${got.toString('hex')}\n pbjs ${expected.toString('hex')}`);
  const decoded = plain(decodeFrame(expected.subarray(4)));
  const reference = plain(Frame.decode(expected.subarray(4))) as Record<string, unknown>;
  // protobufjs names the oneof member through a getter on the prototype; wire.ts sets it as a field.
  const body = Frame.decode(expected.subarray(4)).body;
  if (body) reference.body = body;
  assert.deepEqual(decoded, reference, `decoding of ${JSON.stringify(frame)}`);
}

test('the frames the sshmux command sends and receives encode and decode as protobufjs does', () => {
  const frames: IFrame[] = [
    { stream: 0, hello: { version: 1, client: 'sshmux', window: 1 << 20 } },
    { stream: 0, welcome: { version: 1, daemon: '0.1.0', maxFrame: 1 << 20, window: 256 * 1024, pid: 4242 } },
    { stream: 1, session: { host: 't', options: { port: '2222', user: 'deploy', identityfile: '/k' }, kind: 0, command: "echo 'é ✓'", env: { A: '1', B: '' }, stdin: true } },
    { stream: 1, session: { host: 't', kind: 2, command: 'sftp', pty: { term: 'xterm-256color', cols: 120, rows: 40 }, timeoutMs: 30_000 } },
    { stream: 1, session: { host: 't', kind: 1, stdin: false, forwardHost: 'db', forwardPort: 5432 } },
    { stream: 1, started: { connection: 't#3', waitedMs: 12, newConnection: true, hostname: '10.0.0.5', window: 1 << 20, size: 2 ** 40 + 3 } },
    { stream: 1, data: { fd: 1, data: Buffer.from('out') } },
    { stream: 1, data: { fd: 2, data: Buffer.alloc(70_000, 7) } },
    { stream: 1, data: { fd: 0, data: Buffer.from('in') } },
    { stream: 1, data: { fd: 1, data: Buffer.alloc(0) } },
    { stream: 1, eof: {} },
    { stream: 1, window: { bytes: 262_144 } },
    { stream: 1, resize: { cols: 80, rows: 24 } },
    { stream: 1, signal: { name: 'INT' } },
    { stream: 1, cancel: { reason: 'SIGINT before the session started' } },
    { stream: 1, exit: { code: 3 } },
    { stream: 1, exit: { code: -1, signal: 'TERM', coreDumped: true, message: 'gone' } },
    { stream: 1, error: { code: 16, message: 'auth failed', phase: 'handshaking' } },
    { stream: 0, error: { code: 2, message: 'version mismatch' } },
    { stream: 1, controlRequest: { action: enumValue('ControlRequest.Action', 'RESOLVE'), host: 't', options: { port: '22' } } },
    { stream: 1, controlRequest: { action: 1, host: 't' } },
    { stream: 1, controlResult: { message: 'ok', ms: 61.5, count: 2, resolved: {
      host: 't', hostname: '127.0.0.1', port: 22, user: 'u', identityFiles: ['/a', '/b'], identitiesOnly: true,
      userKnownHostsFiles: ['/k'], strictHostKeyChecking: 'yes', connectTimeoutS: 15, proxyJump: 'j1,bob@j2:2', setEnv: { X: 'y' }, sendEnv: ['LANG'],
    } } },
    { stream: 2, status: { pid: 1, version: 'v', uptimeS: 1.25, clients: 3, hosts: [{ name: 'h', queued: 1, requests: 2 ** 40,
      handshakes: { ok: 5, failed: 1, byCode: { THROTTLED: 1 } }, connections: [{ id: 'h#1', state: 'ready', sessions: 2, maxSessions: 10, ageS: 3.5 }] }] } },
  ];
  for (const frame of frames) check(frame);
  assert.equal(enumName('Code', 13), 'THROTTLED');
});

test('the data header the hot path writes is the start of the full encoding', () => {
  for (const [stream, fd, length] of [[1, 0, 5], [1, 1, 0], [300, 2, 70_000], [2 ** 31, 1, 1]]) {
    const payload = Buffer.alloc(length, 1);
    const full = wireEncode({ stream, data: { fd, data: payload } });
    assert.ok(Buffer.concat([dataFrameHeader(stream, fd, length), payload]).equals(full), `header for ${stream}/${fd}/${length}`);
  }
});

/** An arbitrary message of `type`, built from the schema descriptor. */
function arbitrary(type: string, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const json = v1[type] ?? v1[type.split('.')[0]].nested[type.split('.')[1]];
  const oneofMembers = new Set<string>(Object.values(json.oneofs ?? {}).flatMap((o) => (o as { oneof: string[] }).oneof));
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [name, f] of Object.entries(json.fields as Record<string, { type: string; rule?: string; keyType?: string }>)) {
    if (oneofMembers.has(name)) continue;
    const value = scalar(f.type, depth, type);
    fields[name] = f.keyType ? fc.dictionary(fc.string({ maxLength: 8 }), value, { maxKeys: 3 })
      : f.rule === 'repeated' ? fc.array(value, { maxLength: 3 }) : value;
  }
  const base = fc.record(fields, { requiredKeys: [] });
  if (!oneofMembers.size) return base;
  // At most one member of the oneof, as protobufjs encodes it.
  const members = [...oneofMembers].map((name) => fc.record({ [name]: scalar(json.fields[name].type, depth, type) }));
  return fc.tuple(base, fc.oneof(fc.constant({}), ...members)).map(([b, m]) => ({ ...b, ...m }));
}

function scalar(type: string, depth: number, scope: string): fc.Arbitrary<unknown> {
  switch (type) {
    case 'uint32': return fc.nat({ max: 2 ** 32 - 1 });
    case 'uint64': return fc.nat({ max: Number.MAX_SAFE_INTEGER });
    case 'sint32': case 'int32': return fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
    case 'bool': return fc.boolean();
    case 'double': return fc.double({ noNaN: true });
    case 'string': return fc.string({ maxLength: 20, unit: 'grapheme' });
    case 'bytes': return fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b));
  }
  const nested = v1[scope]?.nested?.[type];
  const enumJson = nested?.values ? nested : v1[type]?.values ? v1[type] : undefined;
  if (enumJson) return fc.constantFrom(...Object.values(enumJson.values as Record<string, number>));
  if (depth > 3) return fc.constant({});
  return arbitrary(type, depth + 1);
}

test('2,000 frames generated from sshmux.proto encode and decode as protobufjs does', () => {
  fc.assert(fc.property(arbitrary('Frame'), (frame) => {
    check(frame as IFrame);
  }), { numRuns: 2000 });
});

test('the frames every exec sends, encoded without protobufjs, decode as the same frames', () => {
  // Every field of the body as decoded, defaults included: the fast encoder leaves out what is at its default.
  const decode = (b: Buffer): unknown => {
    const frame = Frame.decode(b.subarray(4)) as unknown as Record<string, Record<string, unknown>> & { stream: number; body: string };
    const type = frame.body[0].toUpperCase() + frame.body.slice(1);
    const fields = Object.keys(v1[type].fields as Record<string, unknown>);
    return { stream: frame.stream, body: frame.body, fields: Object.fromEntries(fields.map((f) => [f, plain(frame[frame.body][f])])) };
  };
  const same = (fast: (out: Buffer, at: number) => number, size: number, frame: IFrame, what: string): void => {
    const out = Buffer.alloc(size + 3, 0xee);
    const end = fast(out, 3);
    assert.equal(end, 3 + size, `${what}: size`);
    assert.equal(out.readUInt32BE(3), size - 4, `${what}: length prefix`);
    assert.deepEqual(decode(out.subarray(3, end)), decode(protobufEncode(frame)), what);
  };
  for (const stream of [1, 127, 128, 300, 2 ** 31]) {
    same((o, at) => writeEofFrame(o, at, stream), eofFrameSize(stream), { stream, eof: {} }, `eof ${stream}`);
    for (const code of [0, 1, 2, 127, 255, 64, -1, -200]) {
      same((o, at) => writeExitFrame(o, at, stream, code), exitFrameSize(stream, code), { stream, exit: { code } }, `exit ${stream}/${code}`);
    }
    for (const bytes of [0, 1, 65_536, 2 ** 32 - 1]) {
      same((o, at) => writeWindowFrame(o, at, stream, bytes), windowFrameSize(stream, bytes), { stream, window: { bytes } }, `window ${stream}/${bytes}`);
    }
    for (const started of [
      { connection: 't#1', waitedMs: 0, newConnection: false, window: 0, hostname: '' },
      { connection: 'host-ünïcode#12', waitedMs: 1234, newConnection: true, window: 262_144, hostname: 'example.org' },
      { connection: '', waitedMs: 2 ** 31, newConnection: false, window: 1, hostname: 'x'.repeat(300) },
    ]) {
      same((o, at) => writeStartedFrame(o, at, stream, started), startedFrameSize(stream, started), { stream, started }, `started ${stream}/${started.connection}`);
    }
  }
});
