// The one place where the fleet reads the pool's state and steers its
// connections: how many connections a pool could use, which of its
// connections are busy or idle, and how one is handed back. When the pool
// changes shape, this file changes with it, and nothing else in daemon/fleet/.
import type { PooledConnection } from '../pool/pooled-connection';
import type { HostPool } from '../pool/host-pool';

/**
 * Connections `pool` could use now: enough for the sessions it holds and
 * the requests it queues, at its MaxSessions each, within its own
 * maxConnections. A pool whose connections carry only a few sessions each
 * wants fewer than it holds. `waiting`: it asked for a connection (a jump
 * host's tunnels wait outside the queue, and need one connection, no slot).
 */
export function poolDemand(pool: HostPool, waiting: boolean): number {
  let slots = pool.queue.length;
  let tunnels = false;
  for (const conn of pool.connections) {
    if (conn.state === 'closed') continue;
    slots += conn.sessions;
    if (conn.tunnels > 0) tunnels = true;
  }
  let want = Math.ceil(slots / pool.maxSessions);
  if (waiting || tunnels) want = Math.max(want, 1);
  return Math.min(pool.limits.maxConnections, want);
}

export function connectionHandshaking(conn: PooledConnection): boolean {
  return conn.state === 'connecting';
}

/**
 * Does `pool`, which asked for a connection, still need one? Its queue
 * wants more slots than the connections on their way bring, or it has no
 * connection at all (a jump host's tunnels wait outside the queue). A pool
 * whose queue was served meanwhile does not.
 */
export function poolStillWaiting(pool: HostPool): boolean {
  const connecting = pool.connections.filter((c) => c.state === 'connecting').length;
  return pool.queue.length > connecting * pool.maxSessions || pool.connections.length === 0;
}

/** Ready, with no session and no tunnel: handing it back costs nobody anything. */
export function connectionIdle(conn: PooledConnection): boolean {
  return conn.state === 'ready' && conn.sessions === 0 && conn.tunnels === 0;
}

/** Already on its way out: closing, or closed. */
export function connectionLeaving(conn: PooledConnection): boolean {
  return conn.state === 'closing' || conn.state === 'closed';
}

export function connectionClosed(conn: PooledConnection): boolean {
  return conn.state === 'closed';
}

export function connectionSessions(conn: PooledConnection): number {
  return conn.sessions + conn.tunnels;
}

/** The connection takes no new sessions and closes once its running ones end (at once if idle); the pool's onClosed then releases its permits. */
export function handBack(conn: PooledConnection): void {
  conn.close();
}

/** The endpoint's connect timeout: how long a handshake may take, and so how long its permit lives. */
export function handshakeTimeoutMs(pool: HostPool): number {
  return pool.host.connectTimeoutMs;
}
