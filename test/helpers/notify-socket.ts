// A stand-in for systemd's notify socket: a real AF_UNIX datagram socket
// (Node has none, so a small python3 process holds it) that records each
// message and answers BARRIER=1 as systemd does, by closing the fd the
// message carries.
import { spawn } from 'node:child_process';
import * as path from 'node:path';

const SCRIPT = String.raw`
import array, json, os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
print(json.dumps({"listening": path}), flush=True)
while True:
    msg, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
    fds = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[: len(data) - (len(data) % a.itemsize)])
            fds.extend(a)
    print(json.dumps({"message": msg.decode("utf-8", "replace"), "fds": len(fds)}), flush=True)
    for fd in fds:
        os.close(fd)
`;

export interface NotifySocket {
  readonly path: string;
  /** Every assignment received, in order (one message may carry several). */
  assignments(): string[];
  close(): void;
}

export async function startNotifySocket(dir: string): Promise<NotifySocket> {
  const sockPath = path.join(dir, 'notify.sock');
  const child = spawn('python3', ['-c', SCRIPT, sockPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const entry = JSON.parse(buf.slice(0, i)) as { listening?: string; message?: string };
        buf = buf.slice(i + 1);
        if (entry.listening) resolve();
        if (entry.message !== undefined) lines.push(...entry.message.split('\n').filter(Boolean));
      }
    });
  });
  process.once('exit', () => child.kill('SIGKILL'));
  return { path: sockPath, assignments: () => [...lines], close: () => child.kill() };
}
