// The socket: private from birth, stale ones replaced, a live daemon never clobbered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startSshd, tempDir, writeClientConfig } from '../helpers/sshd';
import { startDaemon } from '../helpers/daemon';


const MAIN = path.join(__dirname, '..', '..', 'daemon', 'main.js');

test('socket mode 0600, a stale socket is replaced, a live daemon is an error that says so', async () => {
  const sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const socket = path.join(dir, 'run', 'sshmuxd.sock');

  // A stale socket: bound by a process that was SIGKILLed (libuv unlinks
  // the path on a clean close, so only a killed process leaves one behind).
  fs.mkdirSync(path.dirname(socket), { recursive: true });
  const holder = spawn(process.execPath, ['-e',
    `require('net').createServer().listen(${JSON.stringify(socket)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((r) => holder.stdout!.once('data', r));
  holder.kill('SIGKILL');
  await new Promise((r) => holder.once('exit', r));
  assert.ok(fs.lstatSync(socket).isSocket());

  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, socket });
  assert.equal(fs.statSync(socket).mode & 0o777, 0o600);

  const second = spawnSync(process.execPath, [MAIN, '--socket', socket, '-F', client.sshConfigPath], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(second.status, 78);
  assert.match(second.stderr, /already listening/);
  assert.equal(daemon.child.exitCode, null, 'the first daemon was disturbed');

  const notSocket = path.join(dir, 'plain-file');
  fs.writeFileSync(notSocket, 'x');
  const third = spawnSync(process.execPath, [MAIN, '--socket', notSocket, '-F', client.sshConfigPath], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(third.status, 78);
  assert.match(third.stderr, /not a socket/);
  assert.equal(fs.readFileSync(notSocket, 'utf8'), 'x');
});

test('bad daemon options and configs are refused with a clear message', () => {
  const dir = tempDir();
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify({ maxSesions: 3 }));
  const r1 = spawnSync(process.execPath, [MAIN, '--socket', path.join(dir, 's'), '--config', bad], { encoding: 'utf8' });
  assert.equal(r1.status, 78);
  assert.match(r1.stderr, /unknown key "maxSesions"/);
  const r2 = spawnSync(process.execPath, [MAIN, '--bogus'], { encoding: 'utf8' });
  assert.equal(r2.status, 78);
  assert.match(r2.stderr, /bogus/);
  const r3 = spawnSync(process.execPath, [MAIN, '--socket', path.join(dir, 's'), '-F', path.join(dir, 'missing_config')], { encoding: 'utf8' });
  assert.equal(r3.status, 78);
  assert.match(r3.stderr, /missing_config/);
});

test('SIGTERM: the daemon exits 0 and removes its socket', async () => {
  const sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  assert.equal(await daemon.stop(), 0);
  assert.equal(fs.existsSync(daemon.socket), false);
});

test('--exit-when-idle: a daemon nobody uses exits 0 by itself', async () => {
  const dir = tempDir();
  const sshConfig = path.join(dir, 'ssh_config');
  fs.writeFileSync(sshConfig, '');
  const daemon = await startDaemon({ dir, sshConfigPath: sshConfig, args: ['--exit-when-idle', '1'] });
  const started = Date.now();
  const code = await Promise.race([daemon.exited, new Promise((r) => setTimeout(() => r('still running'), 5000))]);
  assert.equal(code, 0, `after ${Date.now() - started} ms: ${code}`);
  assert.equal(fs.existsSync(daemon.socket), false);
});
