// coalesceWrites: what one turn of the event loop writes goes to the stream
// as one write (small pieces joined, large ones as one writev, not copied),
// in order, with writes that carry a callback and end() sending what is held
// first. Checked on a Writable that records what reaches it, and end to end
// over a real Unix socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { Writable } from 'node:stream';
import { coalesceWrites } from '../../daemon/coalesce-writes';

/** A Writable that records each write and writev it receives. */
function recorder(): { stream: Writable; calls: Array<{ kind: 'write' | 'writev'; chunks: Buffer[] }> } {
  const calls: Array<{ kind: 'write' | 'writev'; chunks: Buffer[] }> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      calls.push({ kind: 'write', chunks: [chunk] });
      cb();
    },
    writev(chunks, cb) {
      calls.push({ kind: 'writev', chunks: chunks.map((c) => c.chunk as Buffer) });
      cb();
    },
  });
  return { stream, calls };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('small pieces of one turn reach the stream as one buffer, in order; the next turn is a new write', async () => {
  const { stream, calls } = recorder();
  coalesceWrites(stream);
  for (const s of ['a', 'bc', 'def']) stream.write(Buffer.from(s));
  assert.equal(calls.length, 0, 'written before the turn ended');
  await turn();
  assert.deepEqual(calls.map((c) => [c.kind, Buffer.concat(c.chunks).toString()]), [['write', 'abcdef']]);
  stream.write(Buffer.from('g'));
  await turn();
  assert.deepEqual(calls.map((c) => Buffer.concat(c.chunks).toString()), ['abcdef', 'g']);
});

test('large pieces go out as one writev of the same buffers, not copied', async () => {
  const { stream, calls } = recorder();
  coalesceWrites(stream);
  const header = Buffer.from('h');
  const payload = Buffer.alloc(64 * 1024, 1);
  stream.write(header);
  stream.write(payload);
  await turn();
  assert.equal(calls.length, 1);
  assert.equal(calls[0].kind, 'writev');
  assert.equal(calls[0].chunks[0], header);
  assert.equal(calls[0].chunks[1], payload, 'the payload was copied');
});

test('a write with a callback, and end(), first send what the turn holds', async () => {
  const { stream, calls } = recorder();
  coalesceWrites(stream);
  stream.write(Buffer.from('1'));
  let called = false;
  stream.write(Buffer.from('2'), () => (called = true));
  stream.write(Buffer.from('3'));
  stream.end(Buffer.from('4'));
  await new Promise((r) => stream.once('finish', r));
  assert.ok(called);
  assert.equal(calls.map((c) => Buffer.concat(c.chunks).toString()).join(''), '1234');
});

test('over a Unix socket: 10,000 pieces in bursts arrive complete and in order', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-coalesce-'));
  const sock = path.join(dir, 's');
  const received: Buffer[] = [];
  const done = new Promise<void>((resolve) => {
    const server = net.createServer((conn) => {
      conn.on('data', (d: Buffer) => received.push(d));
      conn.on('end', () => {
        server.close();
        resolve();
      });
    }).listen(sock);
  });
  const client = net.connect(sock);
  await new Promise((r) => client.once('connect', r));
  coalesceWrites(client);
  const expected: Buffer[] = [];
  for (let burst = 0; burst < 100; burst++) {
    for (let i = 0; i < 100; i++) {
      // Sizes from 1 byte to 40 KiB, so both the joined and the writev path are taken.
      const piece = Buffer.alloc(1 + ((burst * 100 + i) * 397) % (40 * 1024), (burst + i) & 0xff);
      expected.push(piece);
      client.write(piece);
    }
    if (burst % 3 === 0) await turn();
  }
  client.end();
  await done;
  fs.rmSync(dir, { recursive: true, force: true });
  assert.ok(Buffer.concat(received).equals(Buffer.concat(expected)), 'bytes lost or reordered');
});

test('a caller told to wait for drain gets it, even when the stream has room by the time the turn writes', async () => {
  const { stream, calls } = recorder();
  coalesceWrites(stream);
  // Held pieces past the high-water mark (16 KiB before Node 22, 64 KiB since) say "wait"; the recorder
  // takes each write at once, so the real write below finds room and Node itself would never emit 'drain'.
  let ok = true;
  let written = 0;
  while (ok && written <= stream.writableHighWaterMark) {
    ok = stream.write(Buffer.alloc(4096));
    written += 4096;
  }
  assert.equal(ok, false, 'the wrapper did not ask the caller to wait past the high-water mark');
  const drained = new Promise<void>((resolve, reject) => {
    stream.once('drain', resolve);
    setTimeout(() => reject(new Error('no drain within 2 s: a caller honouring backpressure would hang')), 2000).unref();
  });
  await drained;
  assert.equal(calls.reduce((n, c) => n + c.chunks.reduce((m, b) => m + b.length, 0), 0), written);
});
