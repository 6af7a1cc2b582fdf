// Starting a per-user daemon on demand, for the `sshmux` wrapper: when
// nothing answers at the default socket, start sshmuxd in the background
// (detached, logging to a file beside its socket, exiting once idle). A
// lock file makes 100 wrappers starting at once start one daemon: the
// others wait for its socket.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SshMux, SshMuxError } from '../client-sdk';
import { defaultSocketPath, mayAutostart } from '../proto/socket-path';

const DAEMON_MAIN = path.join(__dirname, '..', 'daemon', 'main.js');
/** An autostarted daemon exits after this long with no clients and no connections. */
export const AUTOSTART_IDLE_S = 600;
const START_TIMEOUT_MS = 10_000;
/** A lock older than this whose holder is gone is stale. */
const STALE_LOCK_MS = START_TIMEOUT_MS + 2000;

/** Connects to the daemon, starting one first when allowed and none answers. */
export async function connectOrStart(clientName: string, env: NodeJS.ProcessEnv = process.env): Promise<SshMux> {
  try {
    return await SshMux.connect({ clientName });
  } catch (err) {
    if (!(err instanceof SshMuxError) || err.code !== 'DAEMON_UNAVAILABLE' || !mayAutostart(env)) throw err;
  }
  return SshMux.connect({ socket: await startDefaultDaemon(env), clientName });
}

/** Starts the per-user daemon at the default socket unless one answers there (one, however many ask at once); returns the socket. */
export async function startDefaultDaemon(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const socket = defaultSocketPath(env);
  await startDaemon(socket);
  return socket;
}

async function startDaemon(socket: string): Promise<void> {
  const dir = path.dirname(socket);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new SshMuxError('DAEMON_UNAVAILABLE',
      `no sshmuxd answers at ${socket} and one cannot be started there (${(err as Error).message}); ` +
      'start sshmuxd yourself or set SSHMUX_SOCKET');
  }
  const lock = `${socket}.lock`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (takeLock(lock)) {
      try {
        // Someone may have finished starting one while we waited for the lock.
        if (!(await answers(socket))) await spawnDaemon(socket, dir, deadline);
      } finally {
        fs.rmSync(lock, { force: true });
      }
      return;
    }
    // Another wrapper is starting it: wait for the socket.
    if (await answers(socket)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new SshMuxError('DAEMON_UNAVAILABLE',
    `started sshmuxd but it did not listen on ${socket} within ${START_TIMEOUT_MS / 1000} s; see ${path.join(dir, 'sshmuxd.log')}`);
}

function takeLock(lock: string): boolean {
  try {
    fs.writeFileSync(lock, String(process.pid), { flag: 'wx', mode: 0o600 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  // A holder that died (or hung) must not block everyone forever.
  try {
    const holder = Number(fs.readFileSync(lock, 'utf8'));
    const age = Date.now() - fs.statSync(lock).mtimeMs;
    if (age > STALE_LOCK_MS || !alive(holder)) fs.rmSync(lock, { force: true });
  } catch {
    // gone already
  }
  return false;
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function answers(socket: string): Promise<boolean> {
  try {
    const mux = await SshMux.connect({ socket, clientName: 'sshmux-autostart' });
    mux.close();
    return true;
  } catch {
    return false;
  }
}

async function spawnDaemon(socket: string, dir: string, deadline: number): Promise<void> {
  const logPath = path.join(dir, 'sshmuxd.log');
  const log = fs.openSync(logPath, 'a', 0o600);
  const child = spawn(process.execPath, [DAEMON_MAIN, '--socket', socket, '--exit-when-idle', String(AUTOSTART_IDLE_S)], {
    detached: true,
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  child.unref();
  let exited: number | null = null;
  child.once('exit', (code) => {
    exited = code ?? -1;
  });
  while (Date.now() < deadline) {
    if (await answers(socket)) return;
    if (exited !== null && exited !== 0) {
      throw new SshMuxError('DAEMON_UNAVAILABLE', `sshmuxd could not start (exit ${exited}); see ${logPath}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}
