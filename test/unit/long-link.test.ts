// The long link (test/helpers/long-link.ts) itself, in process against a
// local TCP server: bytes arrive whole and in order under load, each
// direction holds them half the round trip (not less, not much more), a
// rate cap paces them, a freeze holds everything (new connections too) and
// a thaw lets it through in order, half-closes pass both ways, and the
// flights counted are the round trips made.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import { startLongLink, type LongLink } from '../helpers/long-link';

interface Far {
  port: number;
  /** Sockets the far end accepted, in order. */
  accepted: net.Socket[];
  close(): void;
}

/** The far end: a TCP server that hands each accepted socket to `handle`. */
async function farEnd(handle: (s: net.Socket) => void): Promise<Far> {
  const accepted: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
    s.setNoDelay(true);
    s.on('error', () => {});
    handle(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted,
    close: () => {
      for (const s of accepted) s.destroy();
      server.close();
    },
  };
}

async function dialLink(link: LongLink): Promise<net.Socket> {
  const s = net.connect({ host: link.host, port: link.port, allowHalfOpen: true, noDelay: true });
  s.on('error', () => {});
  await once(s, 'connect');
  return s;
}

function collect(s: net.Socket): { bytes: () => Buffer; arrivals: number[] } {
  const chunks: Buffer[] = [];
  const arrivals: number[] = [];
  s.on('data', (d: Buffer) => {
    chunks.push(d);
    arrivals.push(performance.now());
  });
  return { bytes: () => Buffer.concat(chunks), arrivals };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('order under load: 8 MiB in 4,000 writes of random sizes arrive whole and in order, both ways at once', async () => {
  // The far end echoes: the same bytes go down while more come up.
  const far = await farEnd((s) => s.pipe(s));
  const link = await startLongLink({ target: { host: '127.0.0.1', port: far.port }, rttMs: 20 });
  try {
    const s = await dialLink(link);
    const got = collect(s);
    const sent = createHash('sha256');
    let total = 0;
    for (let i = 0; i < 4000; i++) {
      const chunk = randomBytes(1 + Math.floor(Math.random() * 4096));
      sent.update(chunk);
      total += chunk.length;
      s.write(chunk);
      if (i % 500 === 0) await sleep(1); // some writes land while earlier ones are being delivered
    }
    for (let i = 0; i < 400 && got.bytes().length < total; i++) await sleep(10);
    assert.equal(got.bytes().length, total);
    assert.equal(createHash('sha256').update(got.bytes()).digest('hex'), sent.digest('hex'));
    s.destroy();
  } finally {
    await link.close();
    far.close();
  }
});

test('delay: each direction holds a chunk half the round trip, not less and not much more', async () => {
  const far = await farEnd((s) => s.pipe(s));
  const link = await startLongLink({ target: { host: '127.0.0.1', port: far.port }, rttMs: 60 });
  try {
    const s = await dialLink(link);
    await sleep(50); // the relay's own connect to the far end
    const trips: number[] = [];
    const oneWay: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      let farAt = 0;
      far.accepted[0].once('data', () => {
        farAt = performance.now();
      });
      s.write(`ping ${i}`);
      await once(s, 'data');
      trips.push(performance.now() - t0);
      oneWay.push(farAt - t0);
    }
    assert.ok(Math.min(...oneWay) >= 29, `one way took ${Math.min(...oneWay).toFixed(1)} ms, under half of 60`);
    assert.ok(Math.min(...trips) >= 59, `a round trip took ${Math.min(...trips).toFixed(1)} ms, under 60`);
    // Timers and a shared machine add a little; a relay that held twice as long would show here.
    const median = [...trips].sort((a, b) => a - b)[2];
    assert.ok(median < 90, `the median round trip took ${median.toFixed(1)} ms for 60`);
    s.destroy();
  } finally {
    await link.close();
    far.close();
  }
});

test('rate: a cap of 4 MiB/s takes about 250 ms for 1 MiB, on top of the delay', async () => {
  let farGot = 0;
  let farDone = 0;
  const start = performance.now();
  const far = await farEnd((s) => s.on('data', (d: Buffer) => {
    farGot += d.length;
    if (farGot === 1 << 20) farDone = performance.now();
  }));
  const link = await startLongLink({ target: { host: '127.0.0.1', port: far.port }, rttMs: 10, rateBytesPerSec: 4 << 20 });
  try {
    const s = await dialLink(link);
    const t0 = performance.now();
    s.write(randomBytes(1 << 20));
    for (let i = 0; i < 200 && farGot < 1 << 20; i++) await sleep(10);
    assert.equal(farGot, 1 << 20);
    const ms = farDone - t0;
    assert.ok(ms >= 250, `1 MiB at 4 MiB/s took ${ms.toFixed(0)} ms`);
    assert.ok(ms < 600, `1 MiB at 4 MiB/s took ${ms.toFixed(0)} ms`);
    assert.ok(farDone > start);
    s.destroy();
  } finally {
    await link.close();
    far.close();
  }
});

test('freeze: nothing moves either way and nothing closes, a new connection carries nothing; the thaw delivers all of it in order', async () => {
  const far = await farEnd((s) => {
    s.write('banner\n');
    s.pipe(s);
  });
  const link = await startLongLink({ target: { host: '127.0.0.1', port: far.port }, rttMs: 20 });
  try {
    const s = await dialLink(link);
    const got = collect(s);
    await sleep(60);
    assert.equal(got.bytes().toString(), 'banner\n');
    link.freeze();
    s.write('one ');
    s.write('two ');
    const late = await dialLink(link);
    const lateGot = collect(late);
    let closed = false;
    s.once('close', () => {
      closed = true;
    });
    await sleep(200);
    assert.equal(got.bytes().toString(), 'banner\n', 'bytes crossed a frozen link');
    assert.equal(far.accepted.length, 1, 'a connection opened while frozen reached the far end');
    assert.equal(lateGot.bytes().length, 0);
    assert.equal(closed, false);
    assert.deepEqual([link.counters().connections, link.counters().connectionsWhileFrozen], [2, 1]);
    s.write('three');
    link.thaw();
    for (let i = 0; i < 100 && got.bytes().length < 20; i++) await sleep(10);
    assert.equal(got.bytes().toString(), 'banner\none two three');
    for (let i = 0; i < 100 && lateGot.bytes().length < 7; i++) await sleep(10);
    assert.equal(lateGot.bytes().toString(), 'banner\n', 'the connection opened while frozen did not reach the far end after the thaw');
    s.destroy();
    late.destroy();
  } finally {
    await link.close();
    far.close();
  }
});

test('half-close: an end passes after the data, and the other way still flows until its own end', async () => {
  const far = await farEnd((s) => {
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => {
      // Answer after our EOF: what we read, then our own end.
      s.write(`got ${Buffer.concat(chunks).toString()}`);
      setTimeout(() => s.end(' bye'), 30);
    });
  });
  const link = await startLongLink({ target: { host: '127.0.0.1', port: far.port }, rttMs: 20 });
  try {
    const s = await dialLink(link);
    const got = collect(s);
    s.end('request');
    await once(s, 'end');
    assert.equal(got.bytes().toString(), 'got request bye');
    await once(s, 'close');
  } finally {
    await link.close();
    far.close();
  }
});

test('an abort (RST) passes as an abort, after the data before it', async () => {
  const far = await farEnd((s) => {
    s.write('last words');
    setTimeout(() => s.resetAndDestroy(), 5);
  });
  const link = await startLongLink({ target: { host: '127.0.0.1', port: far.port }, rttMs: 20 });
  try {
    const s = await dialLink(link);
    const got = collect(s);
    let error: NodeJS.ErrnoException | undefined;
    s.once('error', (e) => {
      error = e;
    });
    await new Promise((resolve) => s.once('close', resolve));
    assert.equal(got.bytes().toString(), 'last words');
    assert.equal(error?.code, 'ECONNRESET', 'an abort arrived as a clean end');
  } finally {
    await link.close();
    far.close();
  }
});

test('flights: 10 requests answered one at a time are 10 flights up and 10 down', async () => {
  const far = await farEnd((s) => s.on('data', (d: Buffer) => {
    // An answer in two writes, as a server's reply often is: still one flight.
    s.write(d.subarray(0, 1));
    s.write(d.subarray(1));
  }));
  const link = await startLongLink({ target: { host: '127.0.0.1', port: far.port }, rttMs: 10 });
  try {
    const s = await dialLink(link);
    await sleep(20);
    link.resetCounters();
    for (let i = 0; i < 10; i++) {
      s.write(`q${i}`);
      let got = '';
      while (got.length < `q${i}`.length) got += (await once(s, 'data'))[0].toString();
    }
    assert.deepEqual(link.counters().flights, { up: 10, down: 10 });
    s.destroy();
  } finally {
    await link.close();
    far.close();
  }
});

test('a link holds at most maxQueuedBytes of a sender it cannot deliver to: the sender is held back', async () => {
  const far = await farEnd(() => {});
  const link = await startLongLink({ target: { host: '127.0.0.1', port: far.port }, rttMs: 10, maxQueuedBytes: 1 << 20 });
  try {
    const s = await dialLink(link);
    await sleep(30);
    far.accepted[0].pause(); // the far end reads nothing
    const chunk = Buffer.alloc(64 << 10);
    for (let i = 0; i < 512; i++) s.write(chunk); // 32 MiB
    await sleep(300);
    // What the link (1 MiB) and the kernels' buffers do not take stays with the sender.
    assert.ok(s.writableLength > 8 << 20, `the sender still holds ${s.writableLength} bytes of 32 MiB: the link took the rest`);
    s.destroy();
  } finally {
    await link.close();
    far.close();
  }
});
