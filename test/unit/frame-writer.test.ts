// The daemon's output to a client in reused memory: FrameWriter copies each
// frame into a block (daemon/blocks.ts) and writes a turn's frames at once;
// ParkedOutput keeps output while a window is closed. Checked over a real
// Unix socket: every frame arrives whole and in order whatever the sizes,
// lent payloads may be overwritten the moment the call returns, a reader
// that stops makes the writes wait without losing or reordering anything,
// a turn is one write, and every block goes back once nothing refers to it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodeFrame, FrameDecoder, type v1 } from '../../proto';
import { BLOCK_SIZE, blockCounts, MAX_BLOCKS, takeBlock } from '../../daemon/blocks';
import { FrameWriter } from '../../daemon/rpc/frame-writer';
import { ParkedOutput } from '../../daemon/call/parked-output';
import { STDERR, STDOUT } from '../../daemon/call/call';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A connected pair of Unix sockets; `frames` decodes what the reading end got. */
async function pair(): Promise<{ writer: net.Socket; reader: net.Socket; frames: v1.Frame[]; done: Promise<void>; cleanup(): void }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-fw-'));
  const sock = path.join(dir, 's');
  const frames: v1.Frame[] = [];
  const decoder = new FrameDecoder(2 * BLOCK_SIZE);
  let reader!: net.Socket;
  const accepted = new Promise<net.Socket>((resolve) => {
    const server = net.createServer((s) => {
      server.close();
      resolve(s);
    }).listen(sock);
  });
  const writer = net.connect(sock);
  reader = await accepted;
  const done = new Promise<void>((resolve) => reader.on('end', resolve));
  reader.on('data', (d: Buffer) => frames.push(...decoder.push(d)));
  return { writer, reader, frames, done, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** A payload whose bytes say where they belong. */
function payload(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

test('frames of every size arrive whole and in order; lent payloads are copied before data() returns; blocks all go back', async () => {
  const { writer, frames, done, cleanup } = await pair();
  const out = new FrameWriter(writer);
  const sent: Array<{ stream: number; fd: number; bytes: Buffer } | { stream: number; exit: number }> = [];
  const lent = Buffer.allocUnsafe(BLOCK_SIZE);
  const sizes = [1, 10, 1000, 32 * 1024, 33 * 1024 + 7, 64 * 1024, 5, BLOCK_SIZE - 30, 0, 3];
  for (let round = 0; round < 40; round++) {
    for (let k = 0; k < 7; k++) {
      const n = sizes[(round * 7 + k) % sizes.length];
      const stream = 1 + ((round + k) % 5);
      const fd = k % 2 ? STDERR : STDOUT;
      const bytes = payload(n, round * 100 + k);
      // As ssh2 lends it: a view into memory the next read reuses.
      bytes.copy(lent);
      out.data(stream, fd, lent.subarray(0, n));
      lent.fill(0xee);
      sent.push({ stream, fd, bytes });
      if (k === 3) {
        out.exit(stream, round);
        sent.push({ stream, exit: round });
      }
    }
    // A frame too large to copy, in its own buffer, in between.
    out.frame(encodeFrame({ stream: 9, status: { version: 'x'.repeat(5000) } }));
    if (round % 3 === 0) await turn();
  }
  await turn();
  out.end();
  await done;
  const got = frames.filter((f) => f.stream !== 9);
  assert.equal(frames.filter((f) => f.stream === 9).length, 40);
  assert.equal(got.length, sent.length);
  got.forEach((f, i) => {
    const s = sent[i];
    if ('exit' in s) {
      assert.equal(f.body, 'exit', `frame ${i}`);
      assert.equal(f.exit!.code, s.exit);
    } else {
      assert.equal(f.body, 'data', `frame ${i}`);
      assert.equal(f.stream, s.stream);
      assert.equal(f.data!.fd, s.fd);
      assert.ok(Buffer.from(f.data!.data!).equals(s.bytes), `frame ${i}: ${s.bytes.length} bytes altered`);
    }
  });
  await turn();
  const { existing, spare } = blockCounts();
  assert.equal(spare, existing, `${existing - spare} blocks not given back`);
  cleanup();
});

test('one turn is one write; a reader that stops makes writes wait, and nothing is lost or reordered', async () => {
  const { writer, reader, frames, done, cleanup } = await pair();
  const out = new FrameWriter(writer);
  let writes = 0;
  const write = writer.write.bind(writer);
  writer.write = ((...args: Parameters<net.Socket['write']>) => {
    writes++;
    return write(...args);
  }) as net.Socket['write'];
  for (let i = 0; i < 20; i++) out.eof(i + 1);
  await turn();
  assert.equal(writes, 1, 'twenty small frames of one turn took more than one write');
  reader.pause();
  const total = 600;
  for (let i = 0; i < total; i++) {
    out.data(100 + (i % 3), STDOUT, payload(32 * 1024, i));
    if (i % 10 === 0) await turn();
  }
  await turn();
  // The kernel holds a little; the rest waits in blocks or in the socket's own queue.
  assert.ok(writer.writableLength > 0, 'nothing waited for the stopped reader');
  reader.resume();
  await turn();
  out.end();
  await done;
  const data = frames.filter((f) => f.body === 'data');
  assert.equal(data.length, total);
  data.forEach((f, i) => assert.ok(Buffer.from(f.data!.data!).equals(payload(32 * 1024, i)), `chunk ${i}`));
  await turn();
  const { existing, spare } = blockCounts();
  assert.equal(spare, existing, `${existing - spare} blocks not given back`);
  cleanup();
});

test('with every block in use, frames get memory of their own and still arrive in order', async () => {
  const { writer, frames, done, cleanup } = await pair();
  const taken = [];
  for (let b = takeBlock(); b; b = takeBlock()) taken.push(b);
  assert.equal(blockCounts().existing, MAX_BLOCKS);
  const out = new FrameWriter(writer);
  for (let i = 0; i < 50; i++) out.data(1, STDOUT, payload(1000 + i, i));
  out.exit(1, 3);
  await turn();
  for (const b of taken) b.retire();
  out.end();
  await done;
  assert.equal(frames.length, 51);
  frames.slice(0, 50).forEach((f, i) => assert.ok(Buffer.from(f.data!.data!).equals(payload(1000 + i, i))));
  assert.equal(frames[50].exit!.code, 3);
  cleanup();
});

test('output kept while a window is closed stays intact until taken, in order per stream, and its blocks go back', async () => {
  const parked = new ParkedOutput();
  const lent = Buffer.allocUnsafe(40 * 1024);
  const kept: Array<{ fd: typeof STDOUT | typeof STDERR; copy: Buffer; bytes: Buffer }> = [];
  for (let i = 0; i < 30; i++) {
    const bytes = payload(1000 + i * 1000, i);
    bytes.copy(lent);
    const fd = i % 3 === 0 ? STDERR : STDOUT;
    kept.push({ fd, copy: parked.keep(lent.subarray(0, bytes.length), fd), bytes });
    lent.fill(0xee);
  }
  // Taken in each stream's order (stdout and stderr interleave freely); the blocks filled meanwhile are reused.
  const byFd = (fd: number): typeof kept => kept.filter((k) => k.fd === fd);
  const order = [...byFd(STDOUT).slice(0, 10), ...byFd(STDERR), ...byFd(STDOUT).slice(10)];
  for (const k of order) {
    assert.ok(k.copy.equals(k.bytes), 'a kept copy changed before it was taken');
    parked.taken(k.fd, k.copy);
    // Another user takes whatever block came back, and writes over it.
    const other = takeBlock();
    other?.bytes.fill(0xaa);
    other?.retire();
  }
  parked.releaseAll();
  const { existing, spare } = blockCounts();
  assert.equal(spare, existing, `${existing - spare} blocks not given back`);
});

test('output still held when its stream closes is let go, and nothing else is', () => {
  const parked = new ParkedOutput();
  const out = [parked.keep(payload(5000, 1), STDOUT), parked.keep(payload(5000, 2), STDOUT)];
  const err = parked.keep(payload(5000, 3), STDERR);
  parked.releaseAll(STDOUT);
  assert.ok(err.equals(payload(5000, 3)));
  assert.notEqual(blockCounts().spare, blockCounts().existing, 'the block went back while stderr still held output in it');
  parked.taken(STDOUT, out[0]); // already let go: ignored
  parked.taken(STDERR, err);
  const { existing, spare } = blockCounts();
  assert.equal(spare, existing);
});
