// Where the daemon listens and clients connect, the same rule for both:
// $SSHMUX_SOCKET, else the per-user runtime dir, else the system service's;
// whether a client may start a daemon there, and what it says when nothing
// answers there.
import * as path from 'node:path';

export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SSHMUX_SOCKET) return env.SSHMUX_SOCKET;
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'sshmux', 'sshmuxd.sock');
  return '/run/sshmux/sshmuxd.sock';
}

/** Whether a client may start a daemon: never behind an explicit socket, which is someone's deliberate choice. */
export function mayAutostart(env: NodeJS.ProcessEnv = process.env): boolean {
  return !env.SSHMUX_SOCKET && env.SSHMUX_NO_AUTOSTART !== '1';
}

/** What to tell a user whose connect() to the daemon's socket failed (`helloTimeoutMs`: how long EAGAIN was retried). */
export function unavailableMessage(socketPath: string, err: NodeJS.ErrnoException, helloTimeoutMs: number): string {
  switch (err.code) {
    case 'ENOENT':
      return `no sshmuxd socket at ${socketPath}: start the daemon (sshmuxd, or systemctl start sshmuxd) or set SSHMUX_SOCKET`;
    case 'ECONNREFUSED':
      return `no sshmuxd is listening on ${socketPath} (stale socket): start the daemon`;
    case 'EPIPE':
    case 'ECONNRESET':
      return `sshmuxd at ${socketPath} closed the connection before answering hello: it may be out of file descriptors; check its log (maxClients, ulimit -n)`;
    case 'EAGAIN':
      return `sshmuxd at ${socketPath} left every connection attempt unaccepted for ${helloTimeoutMs / 1000} s (its backlog is full): it is overloaded or stuck; check its log`;
    case 'EACCES':
      return `permission denied opening ${socketPath}: the socket belongs to another user; use your own daemon or join its socketGroup`;
    default:
      return `cannot reach sshmuxd at ${socketPath}: ${err.message}`;
  }
}

/** The daemon accepted the connection but did not answer the hello in time. */
export function noAnswerMessage(path: string, seconds: number): string {
  return `sshmuxd at ${path} did not answer within ${seconds} s; is it stuck? Check its log`;
}

/** The daemon closed the connection before its welcome. */
export function closedDuringHelloMessage(path: string): string {
  return `sshmuxd at ${path} closed the connection during hello`;
}
