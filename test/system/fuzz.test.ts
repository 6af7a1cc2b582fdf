// Protocol fuzzing with fast-check: 10,000 generated frame sequences (valid
// frames in any order, mangled frames, raw garbage, lies about lengths)
// from throwaway clients, while a well-behaved client keeps running
// commands. The daemon must stay up and keep serving it throughout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import fc from 'fast-check';
import { SshMux } from '../../client-sdk';
import { encodeFrame, Fd, PROTOCOL_VERSION, type IFrame } from '../../proto';
import { cleanupAll, startSshd, tempDir, writeClientConfig } from '../helpers/sshd';
import { startDaemon, type DaemonProc } from '../helpers/daemon';

let daemon: DaemonProc;

before(async () => {
  const sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, config: { maxCallsPerClient: 16 } });
});

after(async () => {
  await daemon?.stop();
  await cleanupAll();
});

const stream = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
const text = fc.string({ maxLength: 40 });
const frame: fc.Arbitrary<IFrame> = fc.oneof(
  fc.record({ stream, hello: fc.record({ version: fc.oneof(fc.constant(PROTOCOL_VERSION), fc.nat()), client: text, window: fc.nat() }) }),
  fc.record({ stream, session: fc.record({
    host: fc.oneof(fc.constant('t'), fc.constant('no-such-host.invalid'), text),
    command: fc.oneof(fc.constant('true'), fc.constant('echo fuzz'), text),
    kind: fc.integer({ min: 0, max: 5 }),
    stdin: fc.boolean(),
    timeoutMs: fc.nat({ max: 5000 }),
    options: fc.dictionary(fc.constantFrom('Port', 'User', 'ProxyCommand', 'ConnectTimeout', 'x'), text, { maxKeys: 2 }),
    env: fc.dictionary(fc.constantFrom('SSHMUX_A', 'PATH', 'X'), text, { maxKeys: 2 }),
  }) }),
  fc.record({ stream, data: fc.record({ fd: fc.constantFrom(Fd.STDIN, Fd.STDOUT, Fd.STDERR, 7), data: fc.uint8Array({ maxLength: 300 }) }) }),
  fc.record({ stream, eof: fc.constant({}) }),
  fc.record({ stream, window: fc.record({ bytes: fc.nat() }) }),
  fc.record({ stream, signal: fc.record({ name: fc.oneof(fc.constantFrom('TERM', 'INT', 'KILL'), text) }) }),
  fc.record({ stream, resize: fc.record({ cols: fc.nat(), rows: fc.nat() }) }),
  fc.record({ stream, cancel: fc.record({ reason: text }) }),
  fc.record({ stream, statusRequest: fc.constant({}) }),
  // Every job action but SUBMIT (which would leave fuzzed commands running on the host), and ones that do not exist.
  fc.record({ stream, jobRequest: fc.record({
    action: fc.integer({ min: 1, max: 9 }),
    host: fc.oneof(fc.constant('t'), text),
    id: fc.oneof(fc.constant('t/0mwtij0656of88rqy'), text.map((s) => `t/${s}`), text),
    from: fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER)),
    fd: fc.constantFrom(Fd.STDOUT, Fd.STDERR, 7),
    follow: fc.boolean(),
    force: fc.boolean(),
    timeoutMs: fc.nat({ max: 5000 }),
  }) }),
  fc.record({ stream, exit: fc.record({ code: fc.integer() }) }),
  fc.record({ stream, welcome: fc.record({ version: fc.nat() }) }),
);
const hello = encodeFrame({ stream: 0, hello: { version: PROTOCOL_VERSION, client: 'fuzz', window: 65536 } });
/** One piece of what a client writes: a frame, a frame cut short or bit-flipped, garbage, or a length that lies. */
const piece: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: frame.map((f) => encodeFrame(f)) },
  { weight: 1, arbitrary: fc.tuple(frame, fc.nat()).map(([f, cut]) => {
    const b = encodeFrame(f);
    return b.subarray(0, cut % (b.length + 1));
  }) },
  { weight: 1, arbitrary: fc.tuple(frame, fc.nat(), fc.integer({ min: 1, max: 255 })).map(([f, at, x]) => {
    const b = Buffer.from(encodeFrame(f));
    b[at % b.length] ^= x;
    return b;
  }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)) },
  { weight: 1, arbitrary: fc.nat().map((n) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0);
    return b;
  }) },
);
const sequence = fc.tuple(fc.boolean(), fc.array(piece, { minLength: 1, maxLength: 12 }))
  .map(([greet, pieces]) => (greet ? [hello, ...pieces] : pieces));

/** Writes the sequence, ends, and resolves once the daemon closed us or 200 ms passed. */
function play(seq: Buffer[]): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(daemon.socket);
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve();
    };
    const timer = setTimeout(done, 200);
    s.on('error', done);
    s.on('close', done);
    s.on('data', () => {});
    s.once('connect', () => {
      for (const b of seq) s.write(b);
      s.end();
    });
  });
}

test('10,000 generated frame sequences: the daemon stays up and a well-behaved client is served throughout', async () => {
  const mux = await SshMux.connect({ socket: daemon.socket });
  let stop = false;
  let served = 0;
  const failures: string[] = [];
  const worker = (async () => {
    while (!stop) {
      try {
        const r = await mux.exec('t', `echo ${served}`);
        if (r.stdout.toString() !== `${served}\n`) failures.push(`wrong output ${JSON.stringify(r.stdout.toString())}`);
        served++;
      } catch (err) {
        failures.push(`${(err as { code?: string }).code}: ${(err as Error).message}`);
      }
    }
  })();
  let runs = 0;
  await fc.assert(fc.asyncProperty(sequence, async (seq) => {
    runs++;
    await play(seq);
    return daemon.child.exitCode === null;
  }), { numRuns: 10_000 });
  stop = true;
  await worker;
  assert.equal(runs, 10_000);
  assert.equal(daemon.child.exitCode, null, 'the daemon died');
  assert.deepEqual(failures, []);
  assert.ok(served > 50, `the well-behaved client ran only ${served} commands meanwhile`);
  assert.equal((await mux.exec('t', 'echo after')).stdout.toString(), 'after\n');
  mux.close();
});
