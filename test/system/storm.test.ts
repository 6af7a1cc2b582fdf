// A kill storm: 1,000 clients vanish at chosen points of their calls: at
// once (before the hello is answered), once the daemon greeted them (the
// call queued or its channel opening), while the command runs (after
// Started), and in the middle of output (after the first Data, the window
// exhausted). Each client waits for its point, reading the frames, and dies
// there as a killed process's socket closes, so the storm hits every stage
// however loaded the machine is; each reports the point it reached.
// Afterwards: 0 sessions open, 0 remote processes left, and the daemon
// still serves.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { SshMux } from '../../client-sdk';
import { encodeFrame, FrameDecoder, PROTOCOL_VERSION, v1 } from '../../proto';
import { cleanupAll, remoteProcesses, startSshd, tempDir, writeClientConfig } from '../helpers/sshd';
import { startDaemon, waitFor, type DaemonProc } from '../helpers/daemon';

let daemon: DaemonProc | undefined;
after(async () => {
  await daemon?.stop();
  await cleanupAll();
});

/** Where a client dies: at once, once greeted, once its command runs, once output flows. */
const STAGES = ['connect', 'greeted', 'running', 'output'] as const;
type Stage = (typeof STAGES)[number];

/** A client waits this long at most for its stage; one that never gets there dies anyway and says so. */
const STAGE_WAIT_MS = 20_000;

/** One client that speaks the protocol and is gone once its call reaches `stage` (plus up to `jitterMs`); the stage it reached. */
function doomedClient(socketPath: string, command: string, stage: Stage, jitterMs: number): Promise<Stage | 'never'> {
  return new Promise((resolve) => {
    const decoder = new FrameDecoder();
    const s = net.connect(socketPath);
    let dying = false;
    const die = (reached: Stage | 'never'): void => {
      if (dying) return;
      dying = true;
      clearTimeout(giveUp);
      setTimeout(() => {
        s.destroy(); // as the kernel closes a SIGKILLed process's socket
        resolve(reached);
      }, Math.floor(Math.random() * jitterMs));
    };
    const giveUp = setTimeout(() => die('never'), STAGE_WAIT_MS);
    s.on('error', () => {});
    // Reads, and so grants nothing beyond the first window.
    s.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        if (frame.welcome && stage === 'greeted') die('greeted');
        if (frame.started && frame.stream === 1 && stage === 'running') die('running');
        if (frame.data && frame.stream === 1 && (frame.data.data?.length ?? 0) > 0 && stage === 'output') die('output');
      }
    });
    s.once('connect', () => {
      s.write(encodeFrame({ stream: 0, hello: { version: PROTOCOL_VERSION, client: 'doomed', window: 65536 } }));
      s.write(encodeFrame({ stream: 1, session: { host: 't', kind: v1.SessionRequest.Kind.EXEC, command, stdin: true } }));
      if (stage === 'connect') die('connect');
    });
  });
}

test('1,000 clients killed at every stage of their calls (before the hello, queued, running, mid-output): 0 sessions left open, 0 orphan remote processes', async () => {
  const sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  const marker = `7${Math.floor(Math.random() * 1e5)}`;
  const commands: Record<Stage, string[]> = {
    connect: [`exec sleep 6${marker}`],
    greeted: [`exec sleep 5${marker}`, `cat; exec sleep 4${marker}`],
    running: [`exec sleep 6${marker}`, `cat; exec sleep 4${marker}`], // the second with its stdin still open
    output: [`yes ${marker} | head -c 50000000`], // killed mid-output, with its window exhausted
  };
  const reached: Record<Stage | 'never', number> = { connect: 0, greeted: 0, running: 0, output: 0, never: 0 };
  const wanted: Record<Stage, number> = { connect: 0, greeted: 0, running: 0, output: 0 };
  for (let batch = 0; batch < 10; batch++) {
    const outcomes = await Promise.all(Array.from({ length: 100 }, (_, i) => {
      const stage = STAGES[(batch + i) % STAGES.length];
      wanted[stage]++;
      const choices = commands[stage];
      return doomedClient(daemon!.socket, choices[Math.floor(Math.random() * choices.length)], stage, stage === 'connect' ? 20 : 200);
    }));
    for (const r of outcomes) reached[r]++;
  }
  assert.equal(daemon.child.exitCode, null, 'the daemon died');
  assert.deepEqual(reached, { ...wanted, never: 0 }, 'some clients never reached the stage they were to die at');
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
