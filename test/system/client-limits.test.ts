// Clients that never say hello, and more clients than the daemon holds:
// silent connections are closed after the hello deadline, the daemon holds
// at most maxClients, and a newcomer makes room by closing a silent or idle
// client; only when every client is busy is it refused, with a
// TOO_MANY_CLIENTS that says what to do. Real sockets, the real daemon.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { once } from 'node:events';
import { SshMux, SshMuxError, type RemoteProcess } from '../../client-sdk';
import { Code, encodeFrame, FrameDecoder, PROTOCOL_VERSION, type IFrame } from '../../proto';
import { cleanupAll, startSshd, tempDir, writeClientConfig, type ClientConfig } from '../helpers/sshd';
import { startDaemon, waitFor, type DaemonProc } from '../helpers/daemon';
import { underCpuLoad } from '../helpers/load';

const SSHMUX = path.join(__dirname, '..', '..', 'cli', 'sshmux.js');
const HELLO = encodeFrame({ stream: 0, hello: { version: PROTOCOL_VERSION, client: 'test', window: 65536 } });

let client: ClientConfig;
let dir: string;
const daemons: DaemonProc[] = [];
const muxes: SshMux[] = [];

before(async () => {
  const sshd = await startSshd({ maxSessions: 10 });
  dir = tempDir();
  client = writeClientConfig(dir, [{ alias: 't', sshd }]);
});

after(async () => {
  for (const m of muxes) m.close();
  await Promise.all(daemons.map((d) => d.stop()));
  await cleanupAll();
});

async function daemonWith(config?: Record<string, unknown>): Promise<DaemonProc> {
  const d = await startDaemon({ dir: tempDir(), sshConfigPath: client.sshConfigPath, config });
  daemons.push(d);
  return d;
}

async function connect(d: DaemonProc): Promise<SshMux> {
  const mux = await SshMux.connect({ socket: d.socket });
  muxes.push(mux);
  return mux;
}

/** A client on the raw socket that records every frame the daemon sends and when it closed us. */
interface Raw {
  socket: net.Socket;
  frames: IFrame[];
  openedAt: number;
  /** ms after it began to connect at which each frame arrived */
  frameAt: number[];
  closed: Promise<void>;
  isClosed: boolean;
}

async function raw(d: DaemonProc, sayHello = false): Promise<Raw> {
  const { socket, openedAt } = await connected(d.socket);
  const decoder = new FrameDecoder();
  const r: Raw = { socket, frames: [], frameAt: [], openedAt, isClosed: false, closed: once(socket, 'close').then(() => {
    r.isClosed = true;
  }) };
  socket.on('data', (d: Buffer) => {
    for (const f of decoder.push(d)) {
      r.frames.push(f);
      r.frameAt.push(Date.now() - r.openedAt);
    }
  });
  if (sayHello) {
    socket.write(HELLO);
    assert.ok(await waitFor(() => r.frames.length > 0, 5000), 'no welcome');
    assert.ok(r.frames[0].welcome, `expected a welcome, got ${JSON.stringify(r.frames[0])}`);
  }
  return r;
}

/**
 * A connected socket, and when it started to connect (the daemon's hello
 * deadline runs from later); a full listen backlog (EAGAIN) is tried again,
 * as a persistent flooder would.
 */
async function connected(socketPath: string): Promise<{ socket: net.Socket; openedAt: number }> {
  for (;;) {
    const openedAt = Date.now();
    const socket = net.connect(socketPath);
    const outcome = await new Promise<Error | undefined>((resolve) => {
      socket.once('connect', () => resolve(undefined));
      socket.once('error', resolve);
    });
    if (!outcome) {
      socket.on('error', () => {});
      return { socket, openedAt };
    }
    if ((outcome as NodeJS.ErrnoException).code !== 'EAGAIN') throw outcome;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Opens n silent connections, 100 at a time so the listen backlog never overflows. */
async function silentFlood(d: DaemonProc, n: number): Promise<Raw[]> {
  const all: Raw[] = [];
  while (all.length < n) all.push(...await Promise.all(Array.from({ length: Math.min(100, n - all.length) }, () => raw(d))));
  return all;
}

/** `p`, or a failure saying what did not happen within `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer!: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  })]).finally(() => clearTimeout(timer));
}

function openFds(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

async function running(mux: SshMux, command: string): Promise<RemoteProcess> {
  const proc = mux.spawn('t', command, { stdin: false });
  await once(proc, 'started', { signal: AbortSignal.timeout(30_000) });
  return proc;
}

for (const loaded of [false, true]) {
  test(`1,300 silent connections${loaded ? ', under CPU load,' : ''} are closed after the hello deadline, each told why, and a well-behaved client is served meanwhile`, async () => {
    const d = await daemonWith();
    const mux = await connect(d);
    await mux.exec('t', 'true'); // warm pool
    const baselineFds = openFds(d.pid);
    await (loaded ? underCpuLoad : (fn: () => Promise<void>) => fn())(async () => {
      const silent = await silentFlood(d, 1300);
      // Past the default maxClients (1000): a newcomer takes a silent one's place.
      const late = await connect(d);
      const r = await late.exec('t', 'echo served');
      assert.equal(r.stdout.toString(), 'served\n');
      assert.ok((await late.status()).clients! <= 1000, 'more clients held than maxClients');

      await within(Promise.all(silent.map((s) => s.closed)), 10_000, 'the silent connections were not all closed');
      let timedOut = 0;
      let madeRoom = 0;
      for (const s of silent) {
        assert.equal(s.frames.length, 1, `a silent client got ${JSON.stringify(s.frames)}`);
        const { stream, error } = s.frames[0];
        assert.equal(stream, 0);
        if (error?.code === Code.PROTOCOL_ERROR) {
          assert.match(error.message!, /^protocol error: no hello within 5 s of connecting; sshmuxd closes connections that say nothing/);
          assert.ok(s.frameAt[0] >= 4900, `closed after ${s.frameAt[0]} ms, before the deadline`);
          timedOut++;
        } else {
          assert.equal(error?.code, Code.TOO_MANY_CLIENTS, JSON.stringify(error));
          assert.match(error!.message!, /maxClients \(1000 clients\) and closed this connection, which had not said hello, to make room/);
          madeRoom++;
        }
      }
      // 300 beyond the limit, plus one for the well-behaved client.
      assert.ok(madeRoom >= 301, `${madeRoom} made room, ${timedOut} timed out`);
      assert.equal(timedOut + madeRoom, 1300);

      // The well-behaved clients never noticed, and the descriptors are back.
      assert.equal((await mux.exec('t', 'echo still')).stdout.toString(), 'still\n');
      assert.equal((await late.exec('t', 'echo still')).stdout.toString(), 'still\n');
      assert.equal((await mux.status()).clients, 2);
      assert.ok(await waitFor(() => openFds(d.pid) <= baselineFds + 2, 5000), `${openFds(d.pid)} fds open, ${baselineFds} before the flood`);
    });
    assert.match(d.logs(), /clients that sent no hello within 5 s closed/);
  });
}

test('under a low open-file limit the daemon holds fewer clients and says so; 1,000 silent connections neither exhaust its descriptors nor lock a client out', async () => {
  // 300 descriptors: half for clients, less 64 for those being told why they were closed.
  const d = await startDaemon({ dir: tempDir(), sshConfigPath: client.sshConfigPath, openFileLimit: 300 });
  daemons.push(d);
  assert.match(d.logs(), /maxClients 1000 would leave too few of the 300 file descriptors for SSH connections; holding at most 86 clients/);
  const silent = await silentFlood(d, 1000);
  const mux = await connect(d);
  assert.equal((await mux.exec('t', 'echo served')).stdout.toString(), 'served\n');
  assert.ok((await mux.status()).clients! <= 86);
  await within(Promise.all(silent.map((s) => s.closed)), 10_000, 'the silent connections were not all closed');
  // Each was told why, or (past the 64 lingering) closed at once; none was left hanging.
  const told = silent.filter((s) => s.frames.length === 1 && s.frames[0].error).length;
  assert.ok(told >= 86, `only ${told} silent clients were told why`);
  assert.equal((await mux.exec('t', 'echo still')).stdout.toString(), 'still\n');
  assert.ok(openFds(d.pid) < 150, `${openFds(d.pid)} fds open`);
});

test('a full listen backlog (the daemon paused under a flood): SshMux.connect() tries again within its deadline and is served', async () => {
  const d = await daemonWith();
  process.kill(d.pid, 'SIGSTOP');
  const flood: net.Socket[] = [];
  let refused = 0;
  try {
    // 4096 fit in the backlog; the rest are refused with EAGAIN.
    await Promise.all(Array.from({ length: 4300 }, () => new Promise<void>((resolve) => {
      const socket = net.connect(d.socket);
      flood.push(socket);
      socket.once('connect', () => resolve());
      socket.once('error', () => {
        refused++;
        resolve();
      });
    })));
    assert.ok(refused > 0, 'the backlog never filled');
    const mux = SshMux.connect({ socket: d.socket });
    setTimeout(() => process.kill(d.pid, 'SIGCONT'), 500);
    const m = await mux;
    muxes.push(m);
    assert.equal((await m.exec('t', 'echo served')).stdout.toString(), 'served\n');
  } finally {
    process.kill(d.pid, 'SIGCONT');
    for (const s of flood) s.destroy();
  }
});

test('past maxClients with every client busy, the newcomer gets TOO_MANY_CLIENTS saying what to do (SDK and sshmux); room frees when a call ends', async () => {
  const d = await daemonWith({ maxClients: 3 });
  const busy = await Promise.all([1, 2, 3].map(() => connect(d)));
  const procs = await Promise.all(busy.map((m) => running(m, 'sleep 60')));

  const refused = await SshMux.connect({ socket: d.socket }).then(() => undefined, (e: unknown) => e);
  assert.ok(refused instanceof SshMuxError, `connect did not fail: ${refused}`);
  assert.equal(refused.code, 'TOO_MANY_CLIENTS');
  assert.match(refused.message, /^sshmuxd already serves 3 clients \(its maxClients\) and each has a call running; retry in a moment\. A program that opens an SshMux per task should share one, or close\(\) those it is done with; or raise maxClients/);

  const wrapper = spawnSync(process.execPath, [SSHMUX, 't', 'true'], { env: { ...process.env, SSHMUX_SOCKET: d.socket }, encoding: 'utf8', timeout: 30_000 });
  assert.equal(wrapper.status, 255, wrapper.stderr);
  assert.match(wrapper.stderr, /^sshmux: sshmuxd already serves 3 clients \(its maxClients\)/);

  // A busy client's calls were untouched; when one client goes, a newcomer gets in.
  for (const p of procs) assert.equal(p.finished, false);
  busy[0].close();
  assert.ok(await waitFor(async () => (await busy[1].status()).clients === 2, 5000));
  const next = await connect(d);
  assert.equal((await next.exec('t', 'echo in')).stdout.toString(), 'in\n');
  for (const p of procs.slice(1)) p.kill('KILL');
  assert.match(d.logs(), /maxClients reached: refused a new client/);
});

test('at maxClients, the client idle longest makes room, is told why, and an SshMux reconnects at its next call', async () => {
  const d = await daemonWith({ maxClients: 3 });
  // Raw greeted clients that then do nothing, oldest first.
  const idle = [await raw(d, true), await raw(d, true)];
  const sdk = await connect(d);
  await sdk.exec('t', 'true');
  await new Promise((r) => setTimeout(r, 1200));

  const newcomer = await connect(d);
  assert.equal((await newcomer.exec('t', 'echo room')).stdout.toString(), 'room\n');
  await within(idle[0].closed, 5000, 'the idle client was not closed');
  assert.equal(idle[0].frames.length, 2);
  const { stream, error } = idle[0].frames[1];
  assert.equal(stream, 0);
  assert.equal(error?.code, Code.TOO_MANY_CLIENTS);
  assert.match(error!.message!, /^sshmuxd already serves its maxClients \(3 clients\) and closed this connection, idle for \d+ s, to make room for another; nothing of it was running\. An SshMux reconnects at its next call/);
  assert.equal(idle[1].isClosed, false);

  // The next newcomer closes the next quietest (the second raw client, quieter than the SDK's)...
  await new Promise((r) => setTimeout(r, 1200));
  const third = await connect(d);
  await third.exec('t', 'true');
  await within(idle[1].closed, 5000, 'the second idle client was not closed');
  // ...and the SDK client, closed in turn, reconnects by itself.
  await new Promise((r) => setTimeout(r, 1200));
  const fourth = await connect(d);
  await fourth.exec('t', 'true');
  assert.equal((await fourth.status()).clients, 3);
  assert.equal((await sdk.exec('t', 'echo back')).stdout.toString(), 'back\n');
  assert.ok((await sdk.status()).clients! <= 3);
  assert.match(d.logs(), /maxClients reached: closed a silent or idle client to make room/);
});

test('a client that sends its hello after the deadline is closed with the message, one in time is served past it', async () => {
  const d = await daemonWith();
  const [late, onTime] = await Promise.all([raw(d), raw(d)]);
  setTimeout(() => onTime.socket.write(HELLO), 3000);
  await new Promise((r) => setTimeout(r, 5500));
  late.socket.write(HELLO); // too late: the daemon said why and closed (it may already be gone)
  await within(late.closed, 5000, 'the late client was not closed');
  assert.equal(late.frames.length, 1, JSON.stringify(late.frames));
  assert.equal(late.frames[0].error?.code, Code.PROTOCOL_ERROR);
  assert.equal(late.frames[0].error?.message, 'protocol error: no hello within 5 s of connecting; sshmuxd closes connections '
    + 'that say nothing. Connect with the sshmux SDK, sshmux or sshmuxctl');
  assert.ok(late.frameAt[0] >= 4900, `closed after ${late.frameAt[0]} ms`);

  assert.equal(onTime.isClosed, false);
  assert.ok(onTime.frames[0].welcome);
  onTime.socket.write(encodeFrame({ stream: 1, statusRequest: {} }));
  assert.ok(await waitFor(() => onTime.frames.length === 2, 5000));
  assert.equal(onTime.frames[1].status?.clients, 1);
  onTime.socket.destroy();
});
