// The seam between the pool and the fleet (daemon/fleet/), on the pool's
// side, so that pool/ imports nothing from fleet/: what the pool asks before
// it opens a connection (one gate per endpoint, host:port), and what the
// fleet may read of a pool and its connections (GatedPool and
// PooledConnection, nothing else). Without a fleet (no "fleet" in the
// config) the gate is LOCAL_GATE, which always says yes, so the pool has
// one code path.
import type { FleetLimits } from '../config';
import type { PooledConnection } from '../ssh/pooled-connection';

/** Leave to open one connection: the fleet's handshake permit and a connection permit within this daemon's share. */
export interface FleetPermit {
  /** The connection the permit is for; it is held until released(conn). */
  bind(conn: PooledConnection): void;
}

/** What the fleet reads of a pool to share the endpoint's budget. */
export interface GatedPool {
  /** Connections it could use now: enough for its sessions and queue, within its maxConnections. */
  wantedConnections(): number;
  /** It needs a connection beyond those on their way (it asked, and still does). */
  readonly waitingForConnection: boolean;
  /** No connection and nothing queued. */
  readonly empty: boolean;
  /** How long one of its handshakes may take (ConnectTimeout), and so how long a handshake permit lives. */
  readonly handshakeTimeoutMs: number;
}

export interface FleetGate {
  /**
   * A permit to open one more connection for `pool` now, or undefined: the
   * fleet is at its budget, this daemon at its share, or Redis is being
   * asked; `wake` is then called once when it is worth asking again.
   */
  take(pool: GatedPool, wake: () => void): FleetPermit | undefined;
  /** `wake` is no longer interested. */
  forget(wake: () => void): void;
  /** The connection's handshake ended and it is ready: its handshake permit goes back to the fleet. */
  handshakeEnded(conn: PooledConnection): void;
  /** The connection is gone (its handshake failed, or it closed): every permit it held goes back. */
  released(conn: PooledConnection): void;
  /** Why the fleet holds this daemon back from opening connections, for a request's deadline error; '' when it does not. */
  why(): string;
}

/** The fleet as the Agent sees it: the gate to each endpoint; `limits` is read afresh each time, so a reload applies. */
export interface FleetGates {
  gate(endpoint: string, limits: () => FleetLimits): FleetGate;
}

const NO_FLEET_PERMIT: FleetPermit = { bind() {} };

export const LOCAL_GATE: FleetGate = {
  take: () => NO_FLEET_PERMIT,
  forget() {},
  handshakeEnded() {},
  released() {},
  why: () => '',
};
