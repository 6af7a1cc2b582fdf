// Callers that wait for a ready connection, not for a session slot: a
// readiness check (the SSH front door before it accepts a channel, so that a
// failed handshake is the channel's open failure; sshmuxctl check) and a
// connection to a host behind this jump host, which needs a forwarding
// channel (a tunnel). Neither takes a slot; both make the pool open a
// connection if it has none (HostPool.shortfall). The pool decides whether
// one may wait at all (closed, breaker open); these lists keep the ones
// that do.
import type { Duplex } from 'node:stream';
import type { MuxError } from '../errors';
import type { Clock } from './clock';
import type { PooledConnection } from '../ssh/pooled-connection';

interface ReadyWaiter {
  /** A ready connection; undefined when the pool was drained meanwhile (the next request goes to a fresh pool). */
  resolve(conn: PooledConnection | undefined): void;
  reject(err: MuxError): void;
}

export interface ReadyCheck {
  ready: Promise<PooledConnection | undefined>;
  cancel(): void;
}

export class ReadyWaiters {
  private list: ReadyWaiter[] = [];

  constructor(
    private readonly clock: Clock,
    /** A waiter left without an answer (its deadline, or cancelled): the pool may stop asking for a connection. */
    private readonly left: () => void,
  ) {}

  get length(): number {
    return this.list.length;
  }

  /**
   * A check with its deadline: after waitMs it fails with expired()'s
   * error. `answer` is what it gets at once: a ready connection, or why it
   * may not wait; if nothing, it waits in the list, and then `waiting` runs
   * (the pool opens a connection for it).
   */
  check(waitMs: number, expired: () => MuxError, answer: PooledConnection | MuxError | undefined, waiting: () => void): ReadyCheck {
    let waiter!: ReadyWaiter;
    let timer: unknown;
    const ready = new Promise<PooledConnection | undefined>((resolve, reject) => {
      timer = this.clock.setTimeout(() => {
        this.remove(waiter);
        reject(expired());
      }, waitMs);
      waiter = {
        resolve: (conn) => {
          this.clock.clearTimeout(timer);
          resolve(conn);
        },
        reject: (err) => {
          this.clock.clearTimeout(timer);
          reject(err);
        },
      };
    });
    if (answer instanceof Error) {
      waiter.reject(answer);
    } else if (answer) {
      waiter.resolve(answer);
    } else {
      this.list.push(waiter);
      waiting();
    }
    return {
      ready,
      cancel: () => {
        this.clock.clearTimeout(timer);
        this.remove(waiter);
      },
    };
  }

  resolveAll(conn: PooledConnection | undefined): void {
    for (const w of this.list.splice(0)) w.resolve(conn);
  }

  rejectAll(err: MuxError): void {
    for (const w of this.list.splice(0)) w.reject(err);
  }

  private remove(waiter: ReadyWaiter): void {
    this.list = this.list.filter((w) => w !== waiter);
    this.left();
  }
}

interface TunnelWaiter {
  host: string;
  port: number;
  resolve(stream: Duplex): void;
  reject(err: MuxError): void;
}

export interface TunnelRequest {
  stream: Promise<Duplex>;
  cancel(): void;
}

export class TunnelWaiters {
  private list: TunnelWaiter[] = [];

  constructor(
    /** A waiter gave up: the pool may stop asking for a connection. */
    private readonly left: () => void,
  ) {}

  get length(): number {
    return this.list.length;
  }

  /** A tunnel to host:port; `refused`: why it may not wait. Otherwise it waits in the list, and then `waiting` runs. */
  request(host: string, port: number, refused: MuxError | undefined, waiting: () => void): TunnelRequest {
    let waiter!: TunnelWaiter;
    const stream = new Promise<Duplex>((resolve, reject) => {
      waiter = { host, port, resolve, reject };
    });
    if (refused) {
      waiter.reject(refused);
    } else {
      this.list.push(waiter);
      waiting();
    }
    return {
      stream,
      cancel: () => {
        this.list = this.list.filter((w) => w !== waiter);
        this.left();
      },
    };
  }

  /** Opens a tunnel for each waiter, first come first served, on the connection `pick` chooses, while it chooses one. */
  serve(pick: () => PooledConnection | undefined): void {
    while (this.list.length > 0) {
      const conn = pick();
      if (!conn) return;
      const w = this.list.shift()!;
      conn.openTunnel(w.host, w.port, (err, stream) => (err ? w.reject(err) : w.resolve(stream!)));
    }
  }

  rejectAll(err: MuxError): void {
    for (const w of this.list.splice(0)) w.reject(err);
  }
}
