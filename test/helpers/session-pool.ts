// A HostPool over real Connections to a session server (session-server.ts),
// in process: the pool, the connection and ssh2 as the daemon runs them.
import pino from 'pino';
import { DEFAULT_LIMITS, type Limits } from '../../daemon/config';
import { Endpoint } from '../../daemon/pool/endpoint';
import { HostPool } from '../../daemon/pool/host-pool';
import { Connection } from '../../daemon/ssh/connection';
import type { SessionServer } from './session-server';

/** A pool named "inproc" for `s`, with the daemon's limits (no idle timeout) and `limits` over them; destroyed after the test. */
export function realPool(t: { after(fn: () => void): void }, s: SessionServer, limits: Partial<Limits>): HostPool {
  const l = { ...DEFAULT_LIMITS, idleTimeoutMs: 0, ...limits };
  const endpoint = new Endpoint(`${s.host.hostname}:${s.host.port}`, { maxConcurrentHandshakes: l.maxConcurrentHandshakes });
  const pool = new HostPool('inproc', s.host, l, endpoint, pino({ level: 'silent' }), undefined, {
    newConnection: (...args) => new Connection(...args),
  });
  t.after(() => pool.destroy());
  return pool;
}
