// A pool's record of its handshakes: counts by outcome and code, the last
// failures for the status page, the metrics, and one log line each. Kept
// apart from the scheduling so that HostPool's handlers read as what a
// handshake's end does to the queue, and status readers have one place to
// look.
import { codeName } from '../../proto';
import type { MuxError } from '../errors';
import type { Logger } from '../log';
import type { Clock } from './clock';
import type { PoolMetrics } from './pool-metrics';
import type { PooledConnection } from '../ssh/pooled-connection';

export interface PoolStats {
  requests: number;
  handshakesOk: number;
  handshakesFailed: number;
  failuresByCode: Record<string, number>;
  lastError: string;
}

/** The last handshake failures kept for the status page. */
const KEPT_ERRORS = 10;

export class HandshakeRecord {
  readonly stats: PoolStats = { requests: 0, handshakesOk: 0, handshakesFailed: 0, failuresByCode: {}, lastError: '' };
  /** The last handshake failures, for the status page. */
  readonly recentErrors: Array<{ at: number; code: string; message: string }> = [];

  constructor(
    /** The pool's name (the alias asked for), for metrics and logs. */
    private readonly name: string,
    private readonly destination: string,
    private readonly clock: Clock,
    private readonly metrics: PoolMetrics,
    private readonly log: Logger,
  ) {}

  /** The pool has logged in at least once. */
  get loggedIn(): boolean {
    return this.stats.handshakesOk > 0;
  }

  succeeded(conn: PooledConnection): void {
    this.stats.handshakesOk++;
    this.metrics.countHandshake(this.name, 'ok');
    this.log.info({ host: this.name, connection: conn.id, destination: this.destination, ms: this.clock.now() - conn.createdAt },
      'connection ready');
    if (conn.hostKeyWarning) this.log.warn({ host: this.name, connection: conn.id, warning: conn.hostKeyWarning.message }, 'host key warning');
  }

  /** `failures`: the endpoint's failures in a row, this one included, for the log. */
  failed(conn: PooledConnection, err: MuxError, failures: number): void {
    const name = codeName(err.code);
    this.stats.handshakesFailed++;
    this.metrics.countHandshake(this.name, name);
    this.stats.failuresByCode[name] = (this.stats.failuresByCode[name] ?? 0) + 1;
    this.recentErrors.push({ at: this.clock.now(), code: name, message: err.message });
    if (this.recentErrors.length > KEPT_ERRORS) this.recentErrors.shift();
    this.stats.lastError = `${name}: ${err.message}`;
    this.log.warn({ host: this.name, connection: conn.id, code: name, failures, err: err.message }, 'handshake failed');
  }
}
