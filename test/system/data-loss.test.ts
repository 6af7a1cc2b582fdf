// Nothing is lost: every byte reaches its reader, however slow, before
// anything reports an end. Slow readers, some runs under CPU load, many runs
// each: the losses these tests guard against were races that a quiet machine
// with a fast reader hid.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type SpawnOptions } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { SshMux } from '../../client-sdk';
import { cleanupAll, startSshd, tempDir, writeClientConfig, type Sshd } from '../helpers/sshd';
import { startDaemon, type DaemonProc } from '../helpers/daemon';
import { slowReader, underCpuLoad } from '../helpers/load';

const SSHMUX = path.join(__dirname, '..', '..', 'cli', 'sshmux.js');
let sshd: Sshd;
let daemon: DaemonProc;
let env: NodeJS.ProcessEnv;
let mux: SshMux;
/** A directory the remote user owns, on this same machine. */
let remoteDir: string;
const closers: Array<() => void> = [];

before(async () => {
  sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  env = { ...process.env, SSHMUX_SOCKET: daemon.socket };
  mux = await SshMux.connect({ socket: daemon.socket });
  remoteDir = tempDir();
  fs.chownSync(remoteDir, sshd.user.uid, sshd.user.gid);
});

after(async () => {
  for (const c of closers) c();
  mux?.close();
  await daemon?.stop();
  await cleanupAll();
});

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Writes random files on the remote side; returns their sha256 as the remote's sha256sum computes it. */
async function remoteFiles(sizes: Record<string, number>): Promise<Record<string, string>> {
  const names = Object.keys(sizes);
  const make = names.map((n) => `head -c ${sizes[n]} /dev/urandom > ${n}`).join('; ');
  const r = await mux.exec('t', `cd ${remoteDir} && ${make} && sha256sum ${names.join(' ')}`);
  assert.equal(r.code, 0, r.stderr.toString());
  const sums: Record<string, string> = {};
  for (const line of r.stdout.toString().trim().split('\n')) {
    const [sum, name] = line.split(/\s+/);
    sums[name] = sum;
  }
  return sums;
}

/** Spawns the wrapper with stdout and stderr piped into the given readers, as a shell pipeline would. */
function wrapperInto(args: string[], stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream | 'inherit', extra: SpawnOptions = {}): Promise<number | null> {
  // A hang is a failure too: no run may wait for ever.
  const child = spawn(process.execPath, [SSHMUX, ...args], { env, stdio: ['ignore', stdout as never, stderr as never], timeout: 60_000, ...extra });
  // Our copies of the readers' pipes: closed, so each reader sees EOF when the wrapper's end closes.
  (stdout as net.Socket).destroy();
  if (stderr !== 'inherit') (stderr as net.Socket).destroy();
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

test('wrapper: stdout and stderr into slow readers, 12 runs of 6 MB + 2 MB, half under CPU load; hashes match the remote\'s, exit status is the remote\'s', async () => {
  const sums = await remoteFiles({ 'out.bin': 6_000_000, 'err.bin': 2_000_000 });
  const failures: string[] = [];
  for (let run = 0; run < 12; run++) {
    const go = async (): Promise<void> => {
      const out = slowReader(run % 3 === 0 ? 1 : 0.3, 16384, 0.001);
      const err = slowReader(0.5, 8192, 0.002);
      const code = await wrapperInto(['t', `cd ${remoteDir} && { cat out.bin & cat err.bin >&2; wait; exit 7; }`], out.stdin, err.stdin);
      const [o, e] = await Promise.all([out.result, err.result]);
      if (code !== 7) failures.push(`run ${run}: exit ${code}`);
      if (o.sha256 !== sums['out.bin']) failures.push(`run ${run}: stdout ${o.bytes} bytes, hash differs`);
      if (e.sha256 !== sums['err.bin']) failures.push(`run ${run}: stderr ${e.bytes} bytes, hash differs`);
    };
    if (run % 2 === 1) await underCpuLoad(go);
    else await go();
  }
  assert.deepEqual(failures, []);
});

test('wrapper: tar c | (sleep 1; tar x) extracts the same tree, 4 runs, two under CPU load', async () => {
  const tree = path.join(remoteDir, 'tree');
  const r = await mux.exec('t', `mkdir -p ${tree}/a/b && cd ${tree} && ` +
    'for i in 1 2 3 4 5 6 7 8; do head -c $((i * 250000)) /dev/urandom > a/f$i; done; ' +
    'head -c 3000000 /dev/urandom > a/b/big; : > a/b/empty; ' +
    'find . -type f | sort | xargs sha256sum');
  assert.equal(r.code, 0, r.stderr.toString());
  const expected = r.stdout.toString();
  const failures: string[] = [];
  for (let run = 0; run < 4; run++) {
    const go = async (): Promise<void> => {
      const dest = tempDir();
      const tar = spawn('sh', ['-c', `sleep 1; tar xf - -C ${dest}`], { stdio: ['pipe', 'ignore', 'ignore'], timeout: 60_000 });
      const tarDone = once(tar, 'exit');
      const code = await wrapperInto(['t', `tar cf - -C ${tree} .`], tar.stdin, 'inherit');
      const [tarCode] = await tarDone;
      const got = execFileSync('sh', ['-c', 'find . -type f | sort | xargs -r sha256sum'], { cwd: dest }).toString();
      if (code !== 0 || tarCode !== 0 || got !== expected) failures.push(`run ${run}: wrapper exit ${code}, tar x exit ${tarCode}, tree ${got === expected ? 'same' : 'differs'}`);
    };
    if (run % 2 === 1) await underCpuLoad(go);
    else await go();
  }
  assert.deepEqual(failures, []);
});

test('git clone (3 times) and push (2 times) of an 8 MB repository over GIT_SSH_COMMAND=sshmux, under CPU load', async () => {
  const bare = path.join(remoteDir, 'big.git');
  execFileSync('su', [sshd.user.name, '-s', '/bin/sh', '-c', `git init -q --bare ${bare}`]);
  const work = tempDir();
  const git = (args: string[], cwd: string): string => execFileSync('git', ['-c', 'user.email=t@example.com', '-c', 'user.name=t', ...args],
    { cwd, env: { ...env, GIT_SSH_COMMAND: SSHMUX }, timeout: 120_000, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  git(['init', '-q', '-b', 'main', '.'], work);
  for (let i = 0; i < 8; i++) fs.writeFileSync(path.join(work, `blob${i}`), randomBytes(1024 * 1024));
  git(['add', '.'], work);
  git(['commit', '-q', '-m', 'eight random megabytes'], work);
  const failures: string[] = [];
  const attempt = (what: string, fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      failures.push(`${what}: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim().split('\n').pop()}`);
    }
  };
  await underCpuLoad(async () => {
    attempt('push 1', () => git(['push', '-q', `t:${bare}`, 'main'], work));
    for (let i = 0; i < 3; i++) {
      const clone = path.join(tempDir(), 'clone');
      attempt(`clone ${i}`, () => {
        git(['clone', '-q', '-b', 'main', `t:${bare}`, clone], work);
        assert.equal(git(['rev-parse', 'HEAD^{tree}'], clone), git(['rev-parse', 'HEAD^{tree}'], work), 'another tree');
        git(['fsck', '--full', '--strict'], clone);
      });
    }
    fs.writeFileSync(path.join(work, 'blob8'), randomBytes(2 * 1024 * 1024));
    git(['add', '.'], work);
    git(['commit', '-q', '-m', 'two more'], work);
    attempt('push 2', () => git(['push', '-q', `t:${bare}`, 'main'], work));
  });
  assert.deepEqual(failures, []);
  const remoteHead = execFileSync('git', ['--git-dir', bare, 'rev-parse', 'main']).toString();
  assert.equal(remoteHead, git(['rev-parse', 'HEAD'], work));
  execFileSync('git', ['--git-dir', bare, 'fsck', '--full', '--strict'], { stdio: 'pipe' });
});

/** A TCP server on the remote side that answers every connection with the same random bytes, then closes. */
async function blobServer(size: number): Promise<{ port: number; sha256: string }> {
  const body = randomBytes(size);
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, sha256: sha256(body) };
}

test('-W: a 20 MB stream read slowly arrives whole, 6 runs, half under CPU load', async () => {
  const blob = await blobServer(20_000_000);
  const failures: string[] = [];
  for (let run = 0; run < 6; run++) {
    const go = async (): Promise<void> => {
      const out = slowReader(1, 65536, 0.001);
      const code = await wrapperInto(['-W', `127.0.0.1:${blob.port}`, 't'], out.stdin, 'inherit');
      const got = await out.result;
      if (code !== 0 || got.bytes !== 20_000_000 || got.sha256 !== blob.sha256) failures.push(`run ${run}: exit ${code}, ${got.bytes} bytes`);
    };
    if (run % 2 === 1) await underCpuLoad(go);
    else await go();
  }
  assert.deepEqual(failures, []);
});

/** Reads `port` slowly (a wait, then small reads with pauses); resolves with what arrived. */
function slowTcpRead(port: number): Promise<{ bytes: number; sha256: string }> {
  // bytes -1: the reader failed or hung (killed after 60 s).
  const script = [
    'import socket, sys, time, hashlib',
    `s = socket.create_connection(('127.0.0.1', ${port}))`,
    'time.sleep(1)',
    'h = hashlib.sha256(); n = 0',
    'while True:',
    '    b = s.recv(32768)',
    '    if not b: break',
    '    h.update(b); n += len(b)',
    '    time.sleep(0.001)',
    'print(n, h.hexdigest())',
  ].join('\n');
  return new Promise((resolve) => {
    const child = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'], timeout: 60_000 });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.once('close', (code, signal) => {
      const m = /^(\d+) ([0-9a-f]{64})$/.exec(out.trim());
      if (!m) resolve({ bytes: -1, sha256: `reader ended ${code ?? signal}: ${out}` });
      else resolve({ bytes: Number(m[1]), sha256: m[2] });
    });
  });
}

test('-L: 20 MB fetched through a local forward by a slow reader arrives whole, 6 runs, half under CPU load', async () => {
  const blob = await blobServer(20_000_000);
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const localPort = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const fwd = spawn(process.execPath, [SSHMUX, '-N', '-L', `${localPort}:127.0.0.1:${blob.port}`, 't'], { env, stdio: 'ignore' });
  closers.push(() => fwd.kill('SIGKILL'));
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(localPort, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const failures: string[] = [];
  for (let run = 0; run < 6; run++) {
    const go = async (): Promise<void> => {
      const got = await slowTcpRead(localPort);
      if (got.bytes !== 20_000_000 || got.sha256 !== blob.sha256) failures.push(`run ${run}: ${got.bytes} bytes`);
    };
    if (run % 2 === 1) await underCpuLoad(go);
    else await go();
  }
  fwd.kill('SIGTERM');
  assert.equal((await once(fwd, 'exit'))[0], 0);
  assert.deepEqual(failures, []);
});

test('SDK openTcp: a stream read after a pause delivers every byte before it ends, 4 runs', async () => {
  const blob = await blobServer(8_000_000);
  const failures: string[] = [];
  for (let run = 0; run < 4; run++) {
    const stream = mux.openTcp('t', '127.0.0.1', blob.port);
    stream.end();
    await new Promise((r) => setTimeout(r, 500));
    const hash = createHash('sha256');
    let bytes = 0;
    stream.on('data', (d: Buffer) => {
      hash.update(d);
      bytes += d.length;
    });
    const closed = await Promise.race([once(stream, 'close').then(() => true), new Promise((r) => setTimeout(r, 30_000, false))]);
    if (!closed || bytes !== 8_000_000 || hash.digest('hex') !== blob.sha256) failures.push(`run ${run}: ${closed ? 'closed' : 'no close in 30 s'} after ${bytes} bytes`);
    stream.destroy();
  }
  assert.deepEqual(failures, []);
});

test('SDK spawn: `closed` settles only after the last byte was read, while `exited` comes as soon as the status does; 6 runs, half under CPU load', async () => {
  const sums = await remoteFiles({ 'spawn.bin': 4_000_000 });
  let exitedEarly = 0;
  for (let run = 0; run < 6; run++) {
    const go = async (): Promise<void> => {
      const proc = mux.spawn('t', `cat ${remoteDir}/spawn.bin; echo done >&2; exit 5`, { stdin: false });
      let bytes = 0;
      let exitedAt = -1;
      let closedAt = -1;
      let closeEvent: unknown[] = [];
      proc.exited.then(() => (exitedAt = bytes));
      proc.closed.then(() => (closedAt = bytes));
      proc.once('close', (...args: unknown[]) => (closeEvent = args));
      let err = '';
      proc.stderr.on('data', (d: Buffer) => (err += d));
      const hash = createHash('sha256');
      // A slow reader: a pause first, then small reads with pauses.
      await new Promise((r) => setTimeout(r, 300));
      for (;;) {
        const chunk = (proc.stdout.read(32768) ?? proc.stdout.read()) as Buffer | null;
        if (chunk) {
          hash.update(chunk);
          bytes += chunk.length;
          await new Promise((r) => setTimeout(r, 2));
          continue;
        }
        if (proc.stdout.readableEnded) break;
        await Promise.race([once(proc.stdout, 'readable'), once(proc.stdout, 'end')]);
      }
      assert.deepEqual(await proc.closed, { code: 5, signal: null });
      assert.equal(bytes, 4_000_000, `run ${run}`);
      assert.equal(hash.digest('hex'), sums['spawn.bin']);
      assert.equal(closedAt, 4_000_000, `run ${run}: closed settled after ${closedAt} bytes`);
      assert.deepEqual(closeEvent, [5, null]);
      assert.equal(err, 'done\n');
      if (exitedAt < 4_000_000) exitedEarly++;
    };
    if (run % 2 === 1) await underCpuLoad(go);
    else await go();
  }
  // What `closed` is for: the status arrives while output still waits unread.
  assert.ok(exitedEarly > 0, 'exited never came before the last byte was read: this test no longer shows the difference');
});

test('SDK: a reader that takes a whole window per read() after a pause gets every byte (a grant computed before read() took its data never came), 4 runs, half under CPU load', async () => {
  const size = 8 << 20;
  for (let run = 0; run < 4; run++) {
    const go = async (): Promise<void> => {
      const proc = mux.spawn('t', `head -c ${size} /dev/zero | tr '\\0' x`, { stdin: false, timeoutMs: 60_000 });
      proc.stderr.resume();
      let got = 0;
      let bytesOk = true;
      // Paused mode, one read() of everything buffered every 50 ms: by then the daemon has sent the whole window.
      const deadline = Date.now() + 30_000;
      while (true) {
        if (Date.now() > deadline || proc.stdout.destroyed) assert.fail(`run ${run}: stalled after ${got} of ${size} bytes`);
        await new Promise((r) => setTimeout(r, 50));
        let chunk: Buffer | null;
        while ((chunk = proc.stdout.read() as Buffer | null) !== null) {
          got += chunk.length;
          if (chunk.some((b) => b !== 0x78)) bytesOk = false;
        }
        if (proc.stdout.readableEnded || got >= size) break;
      }
      await proc.closed;
      assert.equal(got, size, `run ${run}`);
      assert.ok(bytesOk, `run ${run}: bytes other than the remote's`);
    };
    await (run % 2 ? underCpuLoad(go) : go());
  }
});
