// A client that dies must not leave sessions or remote processes behind.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { SshMux } from '../../client-sdk';
import { cleanupAll, remoteProcesses, startSshd, tempDir, writeClientConfig } from '../helpers/sshd';
import { startDaemon, waitFor, type DaemonProc } from '../helpers/daemon';

let daemon: DaemonProc | undefined;
after(async () => {
  await daemon?.stop();
  await cleanupAll();
});

test('a client SIGKILLed while holding 5 remote commands: sessions and processes gone within 3 s', async () => {
  const sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  const marker = `sleep 97${Math.floor(Math.random() * 1e5)}`;
  const sdk = path.join(__dirname, '..', '..', 'client-sdk');
  const script = `
    const { SshMux } = require(${JSON.stringify(sdk)});
    SshMux.connect({ socket: ${JSON.stringify(daemon.socket)} }).then((mux) => {
      let started = 0;
      for (let i = 0; i < 5; i++) {
        const p = mux.spawn('t', 'exec ${marker}', { stdin: false });
        p.once('started', () => { if (++started === 5) console.log('started'); });
      }
    });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('started') && resolve());
    child.once('exit', (code) => reject(new Error(`client exited early with ${code}`)));
  });
  assert.ok(await waitFor(() => remoteProcesses(marker).length === 5, 5000), 'the 5 remote commands are not running');
  child.kill('SIGKILL');
  const killedAt = Date.now();
  const mux = await SshMux.connect({ socket: daemon.socket });
  const sessions = async (): Promise<number> => ((await mux.status()).hosts ?? [])
    .reduce((n, h) => n + (h.connections ?? []).reduce((m, c) => m + (c.sessions ?? 0), 0), 0);
  assert.ok(await waitFor(async () => (await sessions()) === 0 && remoteProcesses(marker).length === 0, 3000),
    `after ${Date.now() - killedAt} ms: ${await sessions()} sessions open, ${remoteProcesses(marker).length} remote processes left`);
  mux.close();
});
