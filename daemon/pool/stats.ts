// One snapshot of how loaded the pools are (undici's PoolStats): each pool
// counts its connections, sessions and queue once, here, and every reader
// (sshmuxctl status, the status page, /metrics, systemd's STATUS= line, the
// daemon's stop) takes these figures instead of summing on its own.
import type { ConnectionState } from '../ssh/pooled-connection';

export interface PoolLoad {
  connections: number;
  connectionsByState: Partial<Record<ConnectionState, number>>;
  /** Sessions opening or open (a slot the server closed and sshd may still count is not one). */
  sessions: number;
  /** Session slots the connections have in all (their MaxSessions). */
  sessionCapacity: number;
  queued: number;
}

export function emptyLoad(): PoolLoad {
  return { connections: 0, connectionsByState: {}, sessions: 0, sessionCapacity: 0, queued: 0 };
}

export function poolLoad(connections: Iterable<{ state: ConnectionState; sessions: number; maxSessions: number }>, queued: number): PoolLoad {
  const load = emptyLoad();
  load.queued = queued;
  for (const c of connections) {
    load.connections++;
    load.connectionsByState[c.state] = (load.connectionsByState[c.state] ?? 0) + 1;
    load.sessions += c.sessions;
    load.sessionCapacity += c.maxSessions;
  }
  return load;
}

/** The sum of several pools' loads. */
export function totalLoad(loads: Iterable<PoolLoad>): PoolLoad {
  const total = emptyLoad();
  for (const l of loads) {
    total.connections += l.connections;
    total.sessions += l.sessions;
    total.sessionCapacity += l.sessionCapacity;
    total.queued += l.queued;
    for (const [state, n] of Object.entries(l.connectionsByState) as Array<[ConnectionState, number]>) {
      total.connectionsByState[state] = (total.connectionsByState[state] ?? 0) + n;
    }
  }
  return total;
}
