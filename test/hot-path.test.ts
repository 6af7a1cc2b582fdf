// What the hot path changed on the wire, against a real sshd: a command
// without stdin gets its EOF in the same write as its exec request, and the
// daemon still gets every command its EOF and every stdin its bytes when
// execs of one command line with and without stdin run at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { startSshd, type Sshd } from './helpers/sshd';
import { startWorld } from './helpers/world';

/** A TCP relay to sshd that counts the chunks the daemon sends: with TCP_NODELAY on both, one chunk per write(2). */
async function countingRelay(sshd: Sshd): Promise<{ port: number; chunks: () => number; close: () => void }> {
  let chunks = 0;
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
      chunks++;
      up.write(d);
    });
    up.pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    chunks: () => chunks,
    close: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

test('a command without stdin gets its EOF with the exec request: three writes to sshd per exec, not four', async () => {
  const sshd = await startSshd({ maxSessions: 10 });
  const relay = await countingRelay(sshd);
  try {
    const { mux } = await startWorld({ sshd: { ...sshd, port: relay.port } });
    for (let i = 0; i < 10; i++) assert.equal((await mux.exec('t', 'true')).code, 0);
    const before = relay.chunks();
    const n = 90;
    // cat ends only at EOF on its stdin: each one finishing shows the early EOF reached the command.
    for (let i = 0; i < n; i++) {
      const r = await mux.exec('t', 'cat; echo done', { timeoutMs: 10_000 });
      assert.deepEqual([r.code, r.stdout.toString()], [0, 'done\n']);
    }
    const perExec = (relay.chunks() - before) / n;
    // Channel open, exec + EOF, close; and a keepalive round trip per 9 sessions for slot reuse (see Slots).
    assert.ok(perExec <= 3.3, `${perExec.toFixed(2)} writes to sshd per exec (4 with the EOF on its own)`);
  } finally {
    relay.close();
  }
});

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
