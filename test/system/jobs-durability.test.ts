// A job's state lives on its host: it outlives the client that submitted
// it, the daemon and sshd itself, each killed outright while it runs, and
// a waiter rides out the outage. While the host cannot be reached, get
// answers the last known state and why it is stale; remove is retried
// until the host is back.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SshMux } from '../../client-sdk';
import { cleanupAll, startSshd, tempDir, writeClientConfig } from '../helpers/sshd';
import { startDaemon, waitFor, type DaemonProc } from '../helpers/daemon';
import { hostProcesses, jobDir, killJobs, readLog, removeJobRoots, uniqueOwner } from '../helpers/jobs';

const daemons: DaemonProc[] = [];
after(async () => {
  for (const d of daemons) await d.stop();
  killJobs(`started-${process.pid}x`);
  removeJobRoots();
  await cleanupAll();
});

test('a job outlives its client (SIGKILL), the daemon (SIGKILL, restart) and sshd (killed, restarted); wait rides out the outage and returns its exit code, logs its output', async () => {
  let sshd = await startSshd();
  const dir = tempDir();
  const { sshConfigPath } = writeClientConfig(dir, [{ alias: 't', sshd }]);
  // A short breaker cool-down: the failed polls while sshd is down would otherwise
  // keep the host marked down for 30 s after it is back (correct, but slow to test).
  const config = { jobOwner: uniqueOwner(), breakerCooldownMs: 1000 };
  const first = await startDaemon({ dir, sshConfigPath, config });
  daemons.push(first);
  const m = `${process.pid}x${Date.now() % 100000}`;
  const go = path.join(tempDir(), 'go');
  // Bounded, so that a failed run leaves nothing for long.
  const command = `echo started-${m}; i=0; while [ ! -e ${go} ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done; echo finished-${m}; exit 3`;

  // The client submits, starts waiting, and is SIGKILLed.
  const sdk = path.join(__dirname, '..', '..', 'client-sdk');
  const client = spawn(process.execPath, ['-e', `
    const { SshMux } = require(${JSON.stringify(sdk)});
    SshMux.connect({ socket: ${JSON.stringify(first.socket)} }).then(async (mux) => {
      const job = await mux.jobs.submit('t', ${JSON.stringify(command)});
      console.log(job.id);
      await mux.jobs.wait(job.id);
    });`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const id = await new Promise<string>((resolve, reject) => {
    client.stdout!.on('data', (d: Buffer) => resolve(d.toString().trim()));
    client.once('exit', (code) => reject(new Error(`the client exited early with ${code}`)));
  });
  const running = (): boolean => hostProcesses(`finished-${m}`).length > 0;
  assert.ok(await waitFor(running, 5000), 'the job is not running on the host');
  client.kill('SIGKILL');

  // The daemon, SIGKILLed and started again on the same socket: it knows nothing and asks the host.
  first.child.kill('SIGKILL');
  await first.exited;
  const second = await startDaemon({ dir, sshConfigPath, config, socket: first.socket });
  daemons.push(second);
  const mux = await SshMux.connect({ socket: second.socket });
  assert.ok(running());
  const seen = await mux.jobs.get(id);
  assert.deepEqual([seen.state, seen.command, seen.stale], ['running', command, null]);

  // sshd, with every connection it served: the job is in a session of its own and lives on.
  const waiting = mux.jobs.wait(id, { timeoutMs: 60_000 });
  const port = sshd.port;
  await sshd.stop();
  assert.ok(running(), 'killing sshd killed the job');
  const stale = await mux.jobs.get(id, { timeoutMs: 3000 });
  assert.equal(stale.state, 'running');
  assert.match(stale.stale ?? '', /REFUSED|CONNECTION_LOST|HOST_UNAVAILABLE|DEADLINE_EXCEEDED/);
  assert.ok(stale.checkedAt && stale.checkedAt.getTime() <= Date.now() - 1000, 'a stale answer must say when it was last confirmed');
  sshd = await startSshd({ port });
  fs.writeFileSync(go, '');

  const ended = await waiting;
  assert.deepEqual([ended.state, ended.exitCode, ended.stale], ['exited', 3, null]);
  assert.equal((await readLog(mux, id)).toString(), `started-${m}\nfinished-${m}\n`);

  // remove while the host is unreachable: retried until sshd is back.
  await sshd.stop();
  const removing = mux.jobs.remove(id, { timeoutMs: 30_000 });
  await new Promise((r) => setTimeout(r, 2000));
  sshd = await startSshd({ port });
  await removing;
  assert.equal(fs.existsSync(jobDir(config.jobOwner, id.split('/')[1])), false);
  mux.close();
});
