// Where the daemon listens and clients connect, the same rule for both:
// $SSHMUX_SOCKET, else the per-user runtime dir, else the system service's.
import * as path from 'node:path';

export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SSHMUX_SOCKET) return env.SSHMUX_SOCKET;
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'sshmux', 'sshmuxd.sock');
  return '/run/sshmux/sshmuxd.sock';
}
