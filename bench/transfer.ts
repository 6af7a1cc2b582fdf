// npm run bench:transfer: one file uploaded and downloaded through sshmux
// (SDK upload/download over a pooled SFTP session) against OpenSSH's sftp
// and scp, and bare ssh2's fastPut/fastGet, in one run against one sshd.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { Client } from 'ssh2';
import { SshMux } from '../client-sdk';
import { startDaemon } from '../test/helpers/daemon';
import { cleanupAll, startSshd, tempDir, writeClientConfig } from '../test/helpers/sshd';
import { wholeNumber } from './options';
import { loadAverage, measuredOn, writeResult } from './results';
import { round } from './stats';

interface Row { system: string; direction: 'upload' | 'download'; mib: number; seconds: number; mib_per_s: number; intact: boolean }

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { mib: { type: 'string', default: '100' }, json: { type: 'boolean' } } });
  const mib = wholeNumber('mib', values.mib);
  const loadStart = loadAverage();
  const sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  const remoteDir = path.join(tempDir(), 'remote');
  fs.mkdirSync(remoteDir);
  fs.chownSync(remoteDir, sshd.user.uid, sshd.user.gid);
  const local = path.join(dir, 'src.bin');
  const fd = fs.openSync(local, 'w');
  for (let i = 0; i < mib; i++) fs.writeSync(fd, randomBytes(1024 * 1024));
  fs.closeSync(fd);
  const want = sha(local);
  const rows: Row[] = [];
  const time = async (system: string, direction: Row['direction'], run: (remote: string, back: string) => Promise<void> | void): Promise<void> => {
    const remote = path.join(remoteDir, `${system.replace(/\W+/g, '_')}.bin`);
    const back = path.join(dir, `${system.replace(/\W+/g, '_')}.back`);
    if (direction === 'download') fs.copyFileSync(local, remote);
    const t = performance.now();
    await run(remote, back);
    const seconds = (performance.now() - t) / 1000;
    const intact = sha(direction === 'upload' ? remote : back) === want;
    rows.push({ system, direction, mib, seconds: round(seconds), mib_per_s: round(mib / seconds), intact });
    fs.rmSync(remote, { force: true });
    fs.rmSync(back, { force: true });
  };
  const ssh = ['-F', client.sshConfigPath, '-o', 'BatchMode=yes'];
  const sh = (cmd: string, args: string[], input?: string): void => {
    const r = spawnSync(cmd, args, { input, stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'] });
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  };
  const mux = await SshMux.connect({ socket: daemon.socket });
  await mux.exec('t', 'true'); // the pool is warm, as it is for a running orchestrator
  const conn = await ssh2Connect(sshd.port, sshd.user.name, client.identityPath);
  try {
    for (const direction of ['upload', 'download'] as const) {
      const up = direction === 'upload';
      await time('sshmux SDK', direction, async (remote, back) => {
        await (up ? mux.upload('t', local, remote) : mux.download('t', remote, back)).done;
      });
      await time('OpenSSH sftp', direction, (remote, back) => sh('sftp', [...ssh, '-q', '-b', '-', 't'], up ? `put ${local} ${remote}\n` : `get ${remote} ${back}\n`));
      await time('OpenSSH scp', direction, (remote, back) => sh('scp', [...ssh, '-q', ...(up ? [local, `t:${remote}`] : [`t:${remote}`, back])]));
      await time('ssh2 fastPut/fastGet', direction, (remote, back) => new Promise<void>((resolve, reject) => {
        conn.sftp((err, sftp) => {
          if (err) return reject(err);
          const done = (e?: Error | null): void => {
            sftp.end();
            if (e) reject(e);
            else resolve();
          };
          if (up) sftp.fastPut(local, remote, done);
          else sftp.fastGet(remote, back, done);
        });
      }));
    }
  } finally {
    conn.end();
    mux.close();
    await daemon.stop();
    await cleanupAll();
  }
  console.log(['system'.padEnd(22), 'direction', 'MiB'.padStart(5), 'seconds'.padStart(8), 'MiB/s'.padStart(7), 'intact'].join('  '));
  for (const r of rows) {
    console.log([r.system.padEnd(22), r.direction.padEnd(9), String(r.mib).padStart(5), String(r.seconds).padStart(8),
      String(r.mib_per_s).padStart(7), String(r.intact)].join('  '));
  }
  const result = { ...measuredOn(loadStart), transfer: rows };
  console.log(`wrote ${writeResult(result, { prefix: 'transfer-' })}`);
  console.log(JSON.stringify(result));
  if (rows.some((r) => !r.intact)) process.exitCode = 1;
}

function ssh2Connect(port: number, username: string, keyPath: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    c.once('ready', () => resolve(c)).once('error', reject)
      .connect({ host: '127.0.0.1', port, username, privateKey: fs.readFileSync(keyPath), hostVerifier: () => true });
  });
}

function sha(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
