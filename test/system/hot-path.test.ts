// What the hot path changed on the wire, against a real sshd: a warm exec
// goes out as one write (its request and EOF on the spare channel, the next
// spare's open, and the close owed for the last session), a held close
// still reaches sshd when nothing follows it, a server with fewer sessions
// than assumed refuses the spare and the pool learns from it, a spare the
// server closes is answered and not used, and the daemon still gets every
// command its EOF and every stdin its bytes when execs of one command line
// with and without stdin run at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { Server } from 'ssh2';
import { closeSessionFromServer } from '../../daemon/ssh/ssh2/capabilities';
import { startSshd, type Sshd } from '../helpers/sshd';
import { waitFor } from '../helpers/daemon';
import { startWorld } from '../helpers/world';

/** A chunk the relay passed: which way, when (ms), how many bytes. */
interface Chunk { up: boolean; at: number; bytes: number }

/**
 * A TCP relay to sshd that logs the chunks each way: with TCP_NODELAY on
 * both sides, a write(2) of the daemon's is one chunk here.
 */
async function loggingRelay(sshd: Sshd): Promise<{ port: number; chunks: Chunk[]; close: () => void }> {
  const chunks: Chunk[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect({ host: sshd.host, port: sshd.port, noDelay: true });
    down.setNoDelay(true);
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        down.destroy();
        up.destroy();
      });
    }
    down.on('data', (d: Buffer) => {
      chunks.push({ up: true, at: performance.now(), bytes: d.length });
      up.write(d);
    });
    up.on('data', (d: Buffer) => {
      chunks.push({ up: false, at: performance.now(), bytes: d.length });
      down.write(d);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    chunks,
    close: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

/**
 * One SSH packet with no data in it (a channel close, a keepalive, a
 * channel open) is well under this many bytes once encrypted; an exec's
 * write (the exec request, its EOF, the next spare's open) is well over.
 */
const ONE_CONTROL_PACKET = 100;
/** A close reply held for the next open goes alone after 100 ms (daemon/ssh/dial.ts); a write after this much silence from sshd is one. */
const HOLD_RAN_OUT_MS = 90;

test('a warm exec is one write to sshd: exec and EOF on the spare channel, the next spare, the last close', async () => {
  const sshd = await startSshd({ maxSessions: 10 });
  const relay = await loggingRelay(sshd);
  try {
    const { mux } = await startWorld({ sshd: { ...sshd, port: relay.port } });
    for (let i = 0; i < 10; i++) assert.equal((await mux.exec('t', 'true')).code, 0);
    const from = relay.chunks.length;
    const n = 90;
    // cat ends only at EOF on its stdin: each one finishing shows the early EOF reached the command.
    for (let i = 0; i < n; i++) {
      const r = await mux.exec('t', 'cat; echo done', { timeoutMs: 10_000 });
      assert.deepEqual([r.code, r.stdout.toString()], [0, 'done\n']);
    }
    // Every write to sshd, sorted: an exec's; a small one on its own: once per maxSessions - 2
    // sessions the connection is full of closed slots, and a keepalive reclaims them, and the open
    // it held back goes when it is answered; or a close reply whose hold ran out because the next
    // exec came later than 100 ms (a loaded machine), which the exec then did not carry.
    let execs = 0;
    let alone = 0;
    let heldTooLong = 0;
    let lastFromSshd = 0;
    for (const c of relay.chunks.slice(from)) {
      if (!c.up) lastFromSshd = c.at;
      else if (c.bytes > ONE_CONTROL_PACKET) execs++;
      else if (c.at - lastFromSshd >= HOLD_RAN_OUT_MS) heldTooLong++;
      else alone++;
    }
    const detail = `${execs} exec writes, ${alone} single packets, ${heldTooLong} held closes sent alone, for ${n} execs`;
    assert.equal(execs, n, detail);
    // Without the spare each exec's open goes alone (90 more), without the held close each close (90 more).
    assert.ok(alone <= 2 * Math.ceil(n / 8), detail);
  } finally {
    relay.close();
  }
});

test('a close held for the next open reaches sshd within its hold when nothing follows: sshd frees every session', async () => {
  const { sshd, mux } = await startWorld({ sshd: { maxSessions: 10 } });
  const closed = (): number => (sshd.log().match(/Close session: /g) ?? []).length;
  for (let i = 0; i < 5; i++) assert.equal((await mux.exec('t', 'echo hi')).code, 0);
  // The last close waits for a next open that does not come: at most 100 ms, then it goes alone.
  await waitFor(() => closed() >= 5, 2000, 20);
  assert.equal(closed(), 5, 'sshd did not get the close of the last session');
});

for (const maxSessions of [1, 2]) {
  test(`sshd at MaxSessions ${maxSessions} while the daemon assumes 10: the refused spare teaches the pool, sequential and concurrent execs all succeed`, async () => {
    const { sshd, daemon, mux } = await startWorld({ alias: 'low', sshd: { maxSessions }, config: { maxSessions: 10, maxConnections: 1 } });
    for (let i = 0; i < 30; i++) {
      const r = await mux.exec('low', `echo ${i}`);
      assert.deepEqual([r.code, r.stdout.toString()], [0, `${i}\n`]);
    }
    const host = (await mux.status()).hosts!.find((h) => h.name === 'low')!;
    assert.equal(host.maxSessions, maxSessions, 'the pool did not learn the server\'s lower MaxSessions from the refused spare');
    assert.ok(daemon.logs().includes('MaxSessions is lower than assumed'));
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) =>
      mux.exec('low', `echo ${i}`).then((r) => r.code === 0 && r.stdout.toString() === `${i}\n`, (e) => `${e.code}: ${e.message}`)));
    assert.deepEqual(results.filter((r) => r !== true), []);
    assert.equal(sshd.logins(), 1);
  });
}

test('execs of one command line with and without stdin at once: each with stdin gets all of it, each without gets EOF', async () => {
  const { mux } = await startWorld({ sshd: { maxSessions: 10 } });
  for (let round = 0; round < 10; round++) {
    const results = await Promise.all(Array.from({ length: 12 }, async (_, i) => {
      const input = i % 2 ? `${round}.${i}\n`.repeat(1000) : undefined;
      const r = await mux.exec('t', 'cat', { stdin: input, timeoutMs: 15_000 });
      return r.code === 0 && r.stdout.toString() === (input ?? '') ? 'ok' : `${i}: exit ${r.code}, ${r.stdout.length} bytes`;
    }));
    assert.deepEqual(results.filter((r) => r !== 'ok'), [], `round ${round}`);
  }
});

/**
 * An SSH server (ssh2's Server, with the real sshd's host key) that closes a
 * session channel nobody has started within `idleMs`, which sshd never does
 * to a spare; it runs any command as "echo ok". Counts the CHANNEL_CLOSEs it
 * receives.
 */
async function spareClosingServer(sshd: Sshd, idleMs: number): Promise<{ port: number; closesReceived: () => number; sparesClosed: () => number; close: () => void }> {
  let closesReceived = 0;
  let sparesClosed = 0;
  const server = new Server({
    hostKeys: [fs.readFileSync(sshd.hostKey.privatePath)],
    debug: (line: string) => {
      if (line.includes('Inbound: CHANNEL_CLOSE')) closesReceived++;
    },
  }, (conn) => {
    conn.on('error', () => {});
    conn.on('authentication', (ctx) => (ctx.method === 'publickey' ? ctx.accept() : ctx.reject(['publickey'])));
    conn.on('session', (accept) => {
      const session = accept();
      let started = false;
      setTimeout(() => {
        if (started) return;
        sparesClosed++;
        closeSessionFromServer(conn, session);
      }, idleMs);
      session.on('exec', (acceptExec) => {
        started = true;
        const channel = acceptExec();
        channel.write('ok\n');
        channel.exit(0);
        channel.end();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    closesReceived: () => closesReceived,
    sparesClosed: () => sparesClosed,
    close: () => server.close(),
  };
}

test('a server that closes the unused spare: the daemon answers the close, and the next session opens a channel of its own', async () => {
  const sshd = await startSshd({ maxSessions: 10 });
  const server = await spareClosingServer(sshd, 200);
  try {
    const { mux } = await startWorld({ sshd: { ...sshd, port: server.port }, config: { maxConnections: 1 } });
    for (let round = 0; round < 5; round++) {
      const r = await mux.exec('t', 'anything', { timeoutMs: 5000 });
      assert.deepEqual([r.code, r.stdout.toString()], [0, 'ok\n'], `round ${round}`);
      // The spare opened beside it is closed by the server meanwhile.
      const closedBefore = server.sparesClosed();
      await waitFor(() => server.sparesClosed() > closedBefore, 3000, 20);
      assert.equal(server.sparesClosed(), closedBefore + 1, `round ${round}: no spare was opened`);
    }
    // Every channel closed, by either side, got its close from the daemon: 5 sessions and 5 spares.
    await waitFor(() => server.closesReceived() >= 10, 2000, 20);
    assert.equal(server.closesReceived(), 10);
  } finally {
    server.close();
  }
});
