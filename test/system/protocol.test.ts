// Bad input harms nobody else: malformed, oversized and out-of-order frames
// close only the client that sent them, with a PROTOCOL_ERROR saying why.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import { SshMux } from '../../client-sdk';
import { Code, dataFrameHeader, encodeFrame, Fd, FrameDecoder, FrameError, MAX_FRAME, PROTOCOL_VERSION, type IFrame } from '../../proto';
import type { DaemonProc } from '../helpers/daemon';
import { startWorld } from '../helpers/world';

let daemon: DaemonProc;

// The daemon and sshd stop when the file ends (helpers/daemon.ts).
before(async () => {
  ({ daemon } = await startWorld());
});

const hello = encodeFrame({ stream: 0, hello: { version: PROTOCOL_VERSION, client: 'test', window: 65536 } });

/** Sends `bytes`, returns every frame the daemon answered until it closed us (or 3 s passed). */
function send(bytes: Buffer[]): Promise<{ frames: IFrame[]; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(daemon.socket);
    const decoder = new FrameDecoder();
    const frames: IFrame[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ frames, closed: false });
    }, 3000);
    socket.on('data', (d: Buffer) => {
      try {
        frames.push(...decoder.push(d));
      } catch {
        // the daemon never sends bad frames; the assertions below would show it
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ frames, closed: true });
    });
    for (const b of bytes) socket.write(b);
  });
}

function lengthPrefixed(body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

function protocolErrorOf(r: { frames: IFrame[]; closed: boolean }): string {
  assert.ok(r.closed, 'the daemon kept a misbehaving client open');
  const err = r.frames.find((f) => f.error)?.error;
  assert.ok(err, 'no error frame before the close');
  assert.equal(err.code, Code.PROTOCOL_ERROR);
  return err.message ?? '';
}

test('FrameDecoder: frames split anywhere reassemble; oversized lengths are refused before buffering', () => {
  const frames = Array.from({ length: 50 }, (_, i) => encodeFrame({ stream: i + 1, data: { fd: Fd.STDOUT, data: crypto.randomBytes(i * 97) } }));
  const all = Buffer.concat(frames);
  for (const step of [1, 3, 7, 1000]) {
    const decoder = new FrameDecoder();
    const got: number[] = [];
    for (let off = 0; off < all.length; off += step) got.push(...decoder.push(all.subarray(off, off + step)).map((f) => f.stream));
    assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => i + 1));
  }
  const head = Buffer.alloc(4);
  head.writeUInt32BE(MAX_FRAME + 1);
  assert.throws(() => new FrameDecoder().push(head), FrameError);
});

test('dataFrameHeader + payload is byte for byte what encodeFrame makes', () => {
  for (const stream of [1, 127, 128, 300000, 2 ** 31]) {
    for (const fd of [Fd.STDIN, Fd.STDOUT, Fd.STDERR]) {
      for (const size of [0, 1, 127, 128, 16383, 16384, 65536]) {
        const data = crypto.randomBytes(size);
        const fast = Buffer.concat([dataFrameHeader(stream, fd, size), data]);
        assert.deepEqual(fast, encodeFrame({ stream, data: { fd, data } }), `stream ${stream} fd ${fd} size ${size}`);
      }
    }
  }
});

test('malformed and out-of-order frames close only that client, with a reason', async () => {
  // Random bytes behind a length that frames them: 64 bare random bytes open with a random length, which
  // 1 time in 4,096 announces a frame of up to 1 MiB that never comes (the hello deadline, 5 s, then ends it).
  assert.match(protocolErrorOf(await send([lengthPrefixed(crypto.randomBytes(60))])), /protocol error/);
  const big = Buffer.alloc(4);
  big.writeUInt32BE(64 * 1024 * 1024);
  assert.match(protocolErrorOf(await send([big])), /exceeds the limit/);
  assert.match(protocolErrorOf(await send([encodeFrame({ stream: 1, statusRequest: {} })])), /first frame must be hello/);
  assert.match(protocolErrorOf(await send([hello, encodeFrame({ stream: 7, data: { fd: Fd.STDIN, data: Buffer.from('x') } })])), /never opened/);
  assert.match(protocolErrorOf(await send([hello, encodeFrame({ stream: 2, statusRequest: {} }), encodeFrame({ stream: 1, statusRequest: {} })])), /out of order/);
  assert.match(protocolErrorOf(await send([hello, lengthPrefixed(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]))])), /undecodable|protocol/);
  assert.match(protocolErrorOf(await send([hello, encodeFrame({ stream: 0, welcome: { version: 1 } })])), /unexpected welcome/);
  const wrongVersion = await send([encodeFrame({ stream: 0, hello: { version: 99, window: 65536 } })]);
  assert.equal(wrongVersion.frames[0]?.error?.code, Code.VERSION_MISMATCH);
});

test('stdin beyond the granted window is refused (memory stays bounded)', async () => {
  const open = encodeFrame({ stream: 1, session: { host: 't', command: 'sleep 5', stdin: true } });
  const flood = Array.from({ length: 8 }, () => encodeFrame({ stream: 1, data: { fd: Fd.STDIN, data: Buffer.alloc(60_000) } }));
  assert.match(protocolErrorOf(await send([hello, open, ...flood])), /beyond the granted window/);
});

test('random frame sequences from one client while another runs commands: the other is unaffected', async () => {
  const mux = await SshMux.connect({ socket: daemon.socket });
  let stop = false;
  let ok = 0;
  const worker = (async () => {
    while (!stop) {
      const r = await mux.exec('t', 'echo alive');
      assert.equal(r.stdout.toString(), 'alive\n');
      ok++;
    }
  })();
  const kinds: Array<() => IFrame> = [
    () => ({ stream: rnd(4), session: { host: rnd(2) ? 't' : crypto.randomBytes(4).toString('hex'), command: 'true', stdin: !!rnd(2) } }),
    () => ({ stream: rnd(4), data: { fd: rnd(3), data: crypto.randomBytes(rnd(100)) } }),
    () => ({ stream: rnd(4), window: { bytes: rnd(1 << 30) } }),
    () => ({ stream: rnd(4), cancel: { reason: 'x' } }),
    () => ({ stream: rnd(4), eof: {} }),
    () => ({ stream: rnd(4), signal: { name: ['TERM', 'KILL', 'BOGUS', ''][rnd(4)] } }),
    () => ({ stream: rnd(4), resize: { cols: rnd(1000), rows: rnd(1000) } }),
    () => ({ stream: rnd(4), statusRequest: {} }),
    () => ({ stream: rnd(4), exit: { code: 1 } }),
  ];
  for (let round = 0; round < 300; round++) {
    const seq: Buffer[] = rnd(4) ? [hello] : [];
    for (let i = 0; i < 1 + rnd(8); i++) {
      seq.push(rnd(10) === 0 ? crypto.randomBytes(rnd(40)) : encodeFrame(kinds[rnd(kinds.length)]()));
    }
    const s = net.connect(daemon.socket);
    s.on('error', () => {});
    s.on('data', () => {});
    for (const b of seq) s.write(b);
    setTimeout(() => s.destroy(), rnd(50));
    if (round % 50 === 0) await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 1500));
  stop = true;
  await worker;
  assert.ok(ok > 10, `only ${ok} execs ran alongside the garbage`);
  assert.equal(daemon.child.exitCode, null, 'the daemon died');
  const r = await mux.exec('t', 'echo still');
  assert.equal(r.stdout.toString(), 'still\n');
  mux.close();
});

function rnd(n: number): number {
  return Math.floor(Math.random() * n);
}

/** Sends `frames` after the hello; records each answer with when it came and in which read, until `ends` streams have ended. */
function converse(frames: IFrame[], ends: number): Promise<Array<{ frame: IFrame; ms: number; read: number }>> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(daemon.socket);
    const decoder = new FrameDecoder();
    const got: Array<{ frame: IFrame; ms: number; read: number }> = [];
    const start = performance.now();
    let reads = 0;
    let ended = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no end within 10 s: ${JSON.stringify(got.map((g) => g.frame))}`));
    }, 10_000);
    socket.on('data', (d: Buffer) => {
      reads++;
      for (const frame of decoder.push(d)) {
        got.push({ frame, ms: performance.now() - start, read: reads });
        if (frame.stream && (frame.exit || frame.error)) ended++;
      }
      if (ended === ends) {
        clearTimeout(timer);
        socket.destroy();
        resolve(got);
      }
    });
    socket.on('error', reject);
    socket.write(hello);
    for (const f of frames) socket.write(encodeFrame(f));
  });
}

test('deferStarted without stdin: Started comes in the same write as the first output; otherwise at once', async () => {
  const command = 'sleep 0.5; echo hi';
  const got = await converse([
    { stream: 1, session: { host: 't', command, stdin: false } },
    { stream: 2, session: { host: 't', command, stdin: false, deferStarted: true } },
    // With stdin the caller needs its credit, so Started is never held.
    { stream: 3, session: { host: 't', command, stdin: true, deferStarted: true } },
  ], 3);
  const of = (stream: number, kind: 'started' | 'data' | 'exit') => {
    const g = got.find((x) => x.frame.stream === stream && x.frame[kind]);
    assert.ok(g, `stream ${stream} had no ${kind}: ${JSON.stringify(got.map((x) => x.frame))}`);
    return g;
  };
  for (const stream of [1, 3]) {
    assert.ok(of(stream, 'data').ms - of(stream, 'started').ms > 300, `stream ${stream}: Started was held until the output`);
  }
  assert.equal(of(2, 'started').read, of(2, 'data').read, 'deferred Started and the output came in different writes');
  assert.ok(of(2, 'started').ms > 400, 'deferred Started came before the command had any output');
  const order = got.filter((x) => x.frame.stream === 2).map((x) => x.frame.body);
  assert.deepEqual(order.slice(0, 2), ['started', 'data'], `stream 2's frames in order: ${order.join(', ')}`);
  for (const stream of [1, 2, 3]) assert.equal(of(stream, 'exit').frame.exit!.code ?? 0, 0);
});

test('deferStarted: a command with no output still gets Started, just before its Exit; exec() has its warnings', async () => {
  const got = await converse([{ stream: 1, session: { host: 't', command: 'true', stdin: false, deferStarted: true } }], 1);
  const call = got.filter((x) => x.frame.stream === 1);
  assert.deepEqual(call.map((x) => x.frame.body), ['started', 'eof', 'exit']);
  assert.equal(call[0].read, call[1].read, 'Started and the Eof after it came in different writes');
  const mux = await SshMux.connect({ socket: daemon.socket });
  try {
    const r = await mux.exec('t', 'echo ok');
    assert.equal(r.stdout.toString(), 'ok\n');
    assert.deepEqual(r.warnings, []);
  } finally {
    mux.close();
  }
});
