// A kill storm: 1,000 clients vanish at random points of their calls
// (before the hello, while queued, while the channel opens, while the
// command runs, in the middle of output). Their sockets close as a killed
// process's do. Afterwards: 0 sessions open, 0 remote processes left.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { SshMux } from '../../client-sdk';
import { encodeFrame, PROTOCOL_VERSION, v1 } from '../../proto';
import { cleanupAll, remoteProcesses, startSshd, tempDir, writeClientConfig } from '../helpers/sshd';
import { startDaemon, waitFor, type DaemonProc } from '../helpers/daemon';

let daemon: DaemonProc | undefined;
after(async () => {
  await daemon?.stop();
  await cleanupAll();
});

/** One client that speaks the protocol and is gone after `lifeMs`, whatever it was doing. */
function doomedClient(socketPath: string, command: string, lifeMs: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    s.on('error', () => {});
    s.on('data', () => {}); // reads, and so grants nothing beyond the first window
    s.once('connect', () => {
      s.write(encodeFrame({ stream: 0, hello: { version: PROTOCOL_VERSION, client: 'doomed', window: 65536 } }));
      s.write(encodeFrame({ stream: 1, session: { host: 't', kind: v1.SessionRequest.Kind.EXEC, command, stdin: true } }));
    });
    setTimeout(() => {
      s.destroy(); // as the kernel closes a SIGKILLed process's socket
      resolve();
    }, lifeMs);
  });
}

test('1,000 clients killed at random points of their calls: 0 sessions left open, 0 orphan remote processes', async () => {
  const sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  const marker = `7${Math.floor(Math.random() * 1e5)}`;
  const commands = [
    `exec sleep 6${marker}`, // killed while running
    `exec sleep 5${marker}`,
    `yes ${marker} | head -c 50000000`, // killed mid-output, with its window exhausted
    `cat; exec sleep 4${marker}`, // stdin still open
  ];
  let started = 0;
  for (let batch = 0; batch < 10; batch++) {
    await Promise.all(Array.from({ length: 100 }, () => {
      started++;
      return doomedClient(daemon!.socket, commands[Math.floor(Math.random() * commands.length)], Math.floor(Math.random() * 400));
    }));
  }
  assert.equal(started, 1000);
  assert.equal(daemon.child.exitCode, null, 'the daemon died');
  const mux = await SshMux.connect({ socket: daemon.socket });
  const sessions = async (): Promise<number> => ((await mux.status()).hosts ?? [])
    .reduce((n, h) => n + (h.connections ?? []).reduce((m, c) => m + (c.sessions ?? 0), 0), 0);
  const clean = await waitFor(async () => (await sessions()) === 0 && remoteProcesses(marker).length === 0, 10_000, 100);
  assert.ok(clean, `${await sessions()} sessions open, ${remoteProcesses(marker).length} remote processes left: ` +
    remoteProcesses(marker).slice(0, 5).map((p) => p.cmdline).join('; '));
  // And the daemon still serves.
  assert.equal((await mux.exec('t', 'echo alive')).stdout.toString(), 'alive\n');
  mux.close();
});
