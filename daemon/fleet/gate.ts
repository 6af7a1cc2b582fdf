// What the pool sees of the fleet: one gate per endpoint (host:port), asked
// before each new connection. Without a fleet (no "fleet" in the config) the
// gate is LOCAL_GATE, which always says yes, so the pool has one code path.
import type { PooledConnection } from '../pool/pooled-connection';
import type { HostPool } from '../pool/host-pool';

/** Leave to open one connection: the fleet's handshake permit and a connection permit within this daemon's share. */
export interface FleetPermit {
  /** The connection the permit is for; it is held until released(conn). */
  bind(conn: PooledConnection): void;
}

export interface FleetGate {
  /**
   * A permit to open one more connection for `pool` now, or undefined: the
   * fleet is at its budget, this daemon at its share, or Redis is being
   * asked; `wake` is then called once when it is worth asking again.
   */
  take(pool: HostPool, wake: () => void): FleetPermit | undefined;
  /** `wake` is no longer interested. */
  forget(wake: () => void): void;
  /** The connection's handshake ended and it is ready: its handshake permit goes back to the fleet. */
  handshakeEnded(conn: PooledConnection): void;
  /** The connection is gone (its handshake failed, or it closed): every permit it held goes back. */
  released(conn: PooledConnection): void;
  /** Why the fleet holds this daemon back from opening connections, for a request's deadline error; '' when it does not. */
  why(): string;
}

const NO_FLEET_PERMIT: FleetPermit = { bind() {} };

export const LOCAL_GATE: FleetGate = {
  take: () => NO_FLEET_PERMIT,
  forget() {},
  handshakeEnded() {},
  released() {},
  why: () => '',
};
