// The Unix socket: created so that only its owner (or a configured group)
// can open it, from the first moment it exists. A stale socket left by a
// dead daemon is replaced; a live daemon on it is an error that says so.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

export class ListenError extends Error {
  override readonly name = 'ListenError';
}

export async function listenUnix(socketPath: string, group: string | undefined, onConnection: (s: net.Socket) => void): Promise<net.Server> {
  const dir = path.dirname(socketPath);
  if (!fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true, mode: group ? 0o750 : 0o700 });
  await clearStale(socketPath);
  const gid = group === undefined ? undefined : groupId(group);
  const server = net.createServer({ pauseOnConnect: false }, onConnection);
  // umask makes the socket private at bind time; chmod afterwards would
  // leave a window in which anyone could connect.
  const mode = gid === undefined ? 0o600 : 0o660;
  const oldMask = process.umask(0o777 & ~mode);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // A burst of clients waits in the kernel's backlog until accepted; the
      // default 511 overflows (the client's connect fails with EAGAIN).
      server.listen({ path: socketPath, backlog: 4096 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(oldMask);
  }
  fs.chmodSync(socketPath, mode);
  if (gid !== undefined) fs.chownSync(socketPath, -1, gid);
  return server;
}

async function clearStale(socketPath: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch {
    return;
  }
  if (!st.isSocket()) {
    throw new ListenError(`${socketPath} exists and is not a socket; remove it or choose another --socket`);
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) {
    throw new ListenError(`another sshmuxd is already listening on ${socketPath}; stop it first (systemctl stop sshmuxd, or SIGTERM its pid) or choose another --socket`);
  }
  fs.unlinkSync(socketPath);
}

function groupId(name: string): number {
  if (/^\d+$/.test(name)) return Number(name);
  const line = fs.readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.split(':')[0] === name);
  if (!line) throw new ListenError(`socketGroup "${name}" is not a group on this machine (see /etc/group)`);
  return Number(line.split(':')[2]);
}
