// A bare TCP connect, which the circuit breaker uses between probe
// handshakes to notice that a port which refused connections listens again.
// While nothing listens the kernel answers it, so it costs the server
// nothing; once something accepts, the socket is closed before a byte is
// sent and the real probe handshake follows.
import * as net from 'node:net';
import type { Reachability } from './endpoint';

export function tcpReachable(host: string, port: number, timeoutMs: number): Promise<Reachability> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (result: Reachability): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done('unknown'), timeoutMs);
    socket.once('connect', () => done('open'));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : 'unknown'));
  });
}
