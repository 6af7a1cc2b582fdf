// Windows sized to the link (daemon/ssh/link-window.ts), in process: the
// sizer's decisions against a simulated link with an injected clock, and
// patch 050 itself, with a patched ssh2 client and a patched ssh2 Server:
// a window set on a channel is what the server may send, a slow reader
// holds no more than that, and a window sized by sshmux grows with a reader
// that keeps up and never past the ceiling, and not at all with a slow one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as net from 'node:net';
import { Client, Server, utils, type ClientChannel, type ServerChannel } from '../../daemon/ssh/ssh2';
import {
  channelInFlight, InFlightSizer, LinkRtt, resetWindows, sizeReceiveWindow, windowBudget, WindowBudget,
} from '../../daemon/ssh/link-window';
import { parseDaemonConfig } from '../../daemon/config';
import { BASE_WINDOW, receiveWindowSize, receiveWindowsSettable, setReceiveWindow } from '../../daemon/ssh/ssh2/windows';

const MiB = 1 << 20;

/** A clock the test moves. */
function fakeClock(): { now: () => number; advance(ms: number): void } {
  let t = 0;
  return { now: () => t, advance: (ms) => (t += ms) };
}

/**
 * Feeds a sizer as a link would: each step of 10 ms delivers what the window
 * lets through (in flight per round trip) or what the link carries, the less.
 */
function run(sizer: InFlightSizer, clock: ReturnType<typeof fakeClock>, opts: { rttMs: number; linkBytesPerMs: number; ms: number; keptUp?: boolean }): number[] {
  const sizes: number[] = [];
  sizer.delivered(0, opts.rttMs, true);
  for (let t = 0; t < opts.ms; t += 10) {
    clock.advance(10);
    const windowRate = channelInFlight(sizer.size) / opts.rttMs;
    sizer.delivered(Math.min(windowRate, opts.linkBytesPerMs) * 10, opts.rttMs, opts.keptUp ?? true);
    sizes.push(sizer.size);
  }
  return sizes;
}

function sizer(clock: ReturnType<typeof fakeClock>, budget = new WindowBudget(1024 * MiB), ceiling = 16 * MiB): InFlightSizer {
  return new InFlightSizer({ base: BASE_WINDOW, ceiling, budget, inFlight: channelInFlight, now: clock.now });
}

test('a link round trip is the least of the recent samples', () => {
  const rtt = new LinkRtt();
  assert.equal(rtt.ms, undefined);
  for (const ms of [120, 101, 180, 150]) rtt.sample(ms);
  assert.equal(rtt.ms, 101);
  for (let i = 0; i < 8; i++) rtt.sample(110 + i);
  assert.equal(rtt.ms, 110, 'an old sample outlived the window');
});

test('window-limited over 100 ms with a reader that keeps up: the window doubles every two round trips up to the ceiling', () => {
  const clock = fakeClock();
  const s = sizer(clock);
  const sizes = run(s, clock, { rttMs: 100, linkBytesPerMs: Infinity, ms: 2000 });
  assert.equal(s.size, 16 * MiB);
  // 2 -> 4 -> 8 -> 16 MiB, each after an epoch of two round trips.
  assert.deepEqual([...new Set(sizes)], [2 * MiB, 4 * MiB, 8 * MiB, 16 * MiB]);
  assert.ok(sizes.indexOf(16 * MiB) <= 70, `the ceiling was reached only after ${sizes.indexOf(16 * MiB) * 10} ms`);
});

test('a link that carries 20 MiB/s over 100 ms: the window settles near twice its product, not at the ceiling', () => {
  const clock = fakeClock();
  const s = sizer(clock);
  run(s, clock, { rttMs: 100, linkBytesPerMs: 20 * MiB / 1000, ms: 5000 });
  const bdp = 2 * MiB; // 20 MiB/s x 100 ms
  assert.ok(s.size >= bdp && s.size <= 4 * bdp + MiB, `the window settled at ${s.size / MiB} MiB for a product of ${bdp / MiB} MiB`);
});

test('a reader that does not keep up: the window does not grow however long the link', () => {
  const clock = fakeClock();
  const s = sizer(clock);
  run(s, clock, { rttMs: 100, linkBytesPerMs: Infinity, ms: 3000, keptUp: false });
  assert.equal(s.size, BASE_WINDOW);
});

test('a grown window shrinks back when the writer slows down, and gives its memory back', () => {
  const clock = fakeClock();
  const budget = new WindowBudget(1024 * MiB);
  const s = sizer(clock, budget);
  run(s, clock, { rttMs: 100, linkBytesPerMs: Infinity, ms: 2000 });
  assert.equal(budget.used, 16 * MiB - BASE_WINDOW);
  run(s, clock, { rttMs: 100, linkBytesPerMs: 1 * MiB / 1000, ms: 2000 });
  assert.equal(s.size, BASE_WINDOW);
  assert.equal(budget.used, 0);
});

test('the daemon-wide budget: windows grow only as far as it lets them, and a released one lets the next grow', () => {
  const clock = fakeClock();
  const budget = new WindowBudget(10 * MiB);
  const a = sizer(clock, budget);
  const b = sizer(clock, budget);
  run(a, clock, { rttMs: 100, linkBytesPerMs: Infinity, ms: 2000 });
  run(b, clock, { rttMs: 100, linkBytesPerMs: Infinity, ms: 2000 });
  assert.ok(budget.used <= 10 * MiB);
  assert.equal(a.size + b.size, 2 * BASE_WINDOW + budget.used);
  assert.ok(b.size < 16 * MiB, 'the second window grew past the budget');
  a.release();
  run(b, clock, { rttMs: 100, linkBytesPerMs: Infinity, ms: 2000 });
  assert.ok(b.size > 8 * MiB, `the second window stayed at ${b.size / MiB} MiB after the first was released`);
  b.release();
  assert.equal(budget.used, 0);
});

test('on a LAN (1 ms) the window stays ssh2\'s own', () => {
  const clock = fakeClock();
  const s = sizer(clock);
  run(s, clock, { rttMs: 1, linkBytesPerMs: 500 * MiB / 1000, ms: 2000 });
  assert.equal(s.size, BASE_WINDOW);
});

// ---- patch 050 against ssh2 itself -------------------------------------------------

interface Pair {
  client: Client;
  /** The next exec's server side: it writes what the test asks. */
  serverChannel: Promise<ServerChannel>;
  close(): void;
}

/** A patched ssh2 Server and a patched ssh2 client connected over loopback; the client's first exec opens a channel. */
async function pair(): Promise<Pair> {
  const hostKey = utils.generateKeyPairSync('ecdsa', { bits: 256 }).private;
  let resolveChannel!: (c: ServerChannel) => void;
  const serverChannel = new Promise<ServerChannel>((r) => (resolveChannel = r));
  const server = new Server({ hostKeys: [hostKey] }, (conn) => {
    conn.on('error', () => {});
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('ready', () => conn.on('session', (accept) => accept().on('exec', (acceptExec) => resolveChannel(acceptExec()))));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = new Client();
  client.on('error', () => {});
  client.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, username: 'u', hostVerifier: () => true });
  await once(client, 'ready');
  return { client, serverChannel, close: () => {
    client.end();
    server.close();
  } };
}

function exec(client: Client): Promise<ClientChannel> {
  return new Promise((resolve, reject) => client.exec('stream', (err, ch) => (err ? reject(err) : resolve(ch))));
}

/** The window the server may still send in: what the client granted. */
function serverWindow(ch: ServerChannel): number {
  return (ch as unknown as { outgoing: { window: number } }).outgoing.window;
}

/** Writes `bytes` to the server channel as fast as its window lets; resolves once all is written. */
async function flood(ch: ServerChannel, bytes: number): Promise<void> {
  const chunk = Buffer.alloc(256 << 10);
  for (let left = bytes; left > 0; left -= chunk.length) {
    if (!ch.write(chunk)) await once(ch, 'drain');
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('patch 050: a window set on a channel is granted at once, and a reader that reads nothing holds no more than it', { timeout: 10_000 }, async () => {
  assert.ok(receiveWindowsSettable(), 'ssh2 lacks patch 050 (setReceiveWindow in lib/Channel.js)');
  const p = await pair();
  try {
    const channel = await exec(p.client);
    const server = await p.serverChannel;
    assert.equal(serverWindow(server), BASE_WINDOW);
    channel.pause(); // the reader reads nothing
    setReceiveWindow(channel, 6 * MiB, 4.5 * MiB);
    assert.equal(receiveWindowSize(channel), 6 * MiB);
    for (let i = 0; i < 100 && serverWindow(server) !== 6 * MiB; i++) await sleep(10);
    assert.equal(serverWindow(server), 6 * MiB, 'the server was not granted the window set');
    void flood(server, 64 * MiB).catch(() => {});
    await sleep(500);
    // ssh2 grants while its read buffer is under 2 MiB, and then no more: a
    // reader that reads nothing holds at most the window and that buffer.
    const held = channel.readableLength;
    assert.ok(held >= 6 * MiB && held <= 6 * MiB + BASE_WINDOW, `a paused reader holds ${held} bytes for a window of 6 MiB`);
    assert.equal(serverWindow(server), 0);
    // A smaller window takes effect as the one granted is used: no more than it once read.
    setReceiveWindow(channel, BASE_WINDOW, BASE_WINDOW / 2);
    let got = 0;
    channel.on('data', (d: Buffer) => (got += d.length));
    channel.resume();
    await sleep(300);
    assert.ok(got > 6 * MiB, 'reading did not let the server send again');
    assert.ok(serverWindow(server) <= BASE_WINDOW, `after shrinking, the server may send ${serverWindow(server)} bytes`);
  } finally {
    p.close();
  }
});

test('windows sized by sshmux on a long link: they grow with a reader that keeps up and stop at the ceiling; a slow reader keeps the base', { timeout: 15_000 }, async () => {
  resetWindows({ channelWindowMax: 8 * MiB, windowMemoryMax: 64 * MiB });
  const p = await pair();
  try {
    // The link is loopback; the sizer is told it is 20 ms long.
    const link = new LinkRtt();
    link.sample(20);
    const fast = await exec(p.client);
    const fastServer = await p.serverChannel;
    let fastGot = 0;
    fast.on('data', (d: Buffer) => (fastGot += d.length));
    sizeReceiveWindow(fast, link);
    let peak = 0;
    const fastFlood = flood(fastServer, 512 * MiB).catch(() => {});
    for (let i = 0; i < 150 && receiveWindowSize(fast) < 8 * MiB; i++) {
      await sleep(10);
      peak = Math.max(peak, serverWindow(fastServer));
    }
    assert.equal(receiveWindowSize(fast), 8 * MiB, `the window reached ${receiveWindowSize(fast) / MiB} MiB`);
    for (let i = 0; i < 50; i++) {
      await sleep(10);
      peak = Math.max(peak, serverWindow(fastServer));
    }
    assert.ok(peak <= 8 * MiB, `the server was granted ${peak} bytes, past the 8 MiB ceiling`);
    // What the window holds beyond the base comes out of the budget. Not 6 MiB as such: a writer
    // starved of CPU (seen under load) slows the link's measured rate, and the window steps back from the ceiling.
    assert.equal(windowBudget().used, receiveWindowSize(fast) - BASE_WINDOW);
    fastServer.end();
    fast.destroy();
    void fastFlood;
    assert.ok(fastGot > 8 * MiB);
    await sleep(100);
    assert.equal(windowBudget().used, 0, 'a closed channel kept its window\'s memory');

    // A reader that takes 64 KiB every 20 ms (3 MiB/s): far below what the link would carry.
    const p2 = await pair();
    try {
      const slow = await exec(p2.client);
      const slowServer = await p2.serverChannel;
      sizeReceiveWindow(slow, link);
      slow.pause();
      void flood(slowServer, 64 * MiB).catch(() => {});
      for (let i = 0; i < 25; i++) {
        await sleep(20);
        slow.read(64 << 10);
        // The window and ssh2's read buffer, both at 2 MiB.
        assert.ok(slow.readableLength <= 2 * BASE_WINDOW, `a slow reader holds ${slow.readableLength} bytes`);
      }
      assert.equal(receiveWindowSize(slow), BASE_WINDOW);
    } finally {
      p2.close();
    }
  } finally {
    p.close();
    resetWindows();
  }
});

test('config: channelWindowMax and windowMemoryMax are read, checked, and default to 16 MiB and 256 MiB', () => {
  assert.deepEqual(parseDaemonConfig({}).windows, { channelWindowMax: 16 * MiB, windowMemoryMax: 256 * MiB });
  assert.deepEqual(parseDaemonConfig({ channelWindowMax: 64 * MiB, windowMemoryMax: 0 }).windows, { channelWindowMax: 64 * MiB, windowMemoryMax: 0 });
  assert.throws(() => parseDaemonConfig({ channelWindowMax: MiB }), /channelWindowMax must be an integer >= 2097152/);
  assert.throws(() => parseDaemonConfig({ windowMemoryMax: -1 }), /windowMemoryMax must be an integer >= 0/);
  assert.throws(() => parseDaemonConfig({ windowMemory: 1 }), /unknown key "windowMemory" \(known: .*windowMemoryMax/);
});
