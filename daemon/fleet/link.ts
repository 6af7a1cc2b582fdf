// The daemon's one connection to the fleet's Redis (ioredis), set up so that
// Redis can never hold a request up: every command fails fast rather than
// wait (no offline queue, no retries, a short command timeout), while the
// client keeps reconnecting in the background. The link is up or down: any
// failed command takes it down, and the fleet falls back to local limits;
// it comes up again when Redis answers a PING. One warning per outage, the
// password never in a message.
import Redis from 'ioredis';
import type { Logger } from '../log';
import { scrub, type RedisAddress } from '../redis-url';

/** Longest any Redis command may take before the link counts as down. */
export const COMMAND_TIMEOUT_MS = 1000;
/** TCP and TLS connect, and the wait for Redis at start-up. */
const CONNECT_TIMEOUT_MS = 2000;
/** Reconnect attempts back off to this. */
const RECONNECT_MAX_MS = 2000;
/** While down with the socket still open (a slow or stopped Redis): how often to PING. */
const PROBE_EVERY_MS = 1000;
/** Outages within this long of the last warning are logged at debug only. */
const WARN_EVERY_MS = 60_000;

export class RedisLink {
  readonly client: Redis;
  up = false;
  /** Times the link went down: the daemon fell back to its local limits. */
  outages = 0;
  /** Redis commands that failed or timed out. */
  errors = 0;
  /** Why it is down, for status. */
  lastError = '';
  private warnedAt = 0;
  /** This outage was warned about, so its end is told at info (otherwise at debug: a flapping Redis is not a log storm). */
  private warned = false;
  private probe: NodeJS.Timeout | undefined;
  /** The PING in flight, if any: every caller waits for the same one. */
  private checking: Promise<void> | undefined;
  private closed = false;

  constructor(
    readonly address: RedisAddress,
    private readonly log: Logger,
    private readonly onChange: (up: boolean) => void,
  ) {
    this.client = new Redis({
      host: address.host,
      port: address.port,
      db: address.db,
      username: address.username,
      password: address.password,
      tls: address.tls ? {} : undefined,
      connectionName: 'sshmuxd',
      lazyConnect: true,
      // A command while disconnected fails at once instead of queueing...
      enableOfflineQueue: false,
      // ...and one caught by a disconnect is failed, not resent later.
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: COMMAND_TIMEOUT_MS,
      connectTimeout: CONNECT_TIMEOUT_MS,
      // Never give up reconnecting: the fleet limits apply again once Redis is back.
      retryStrategy: (times) => Math.min(200 * times, RECONNECT_MAX_MS),
    });
    // Every reconnect attempt emits 'error'; the outage was already reported once.
    this.client.on('error', (err: Error) => {
      this.lastError = scrub(err.message, address);
    });
    this.client.on('ready', () => void this.check());
    this.client.on('close', () => {
      if (this.up) this.down('the connection to Redis closed');
    });
  }

  /** Connects, waiting at most CONNECT_TIMEOUT_MS; if Redis does not answer, the daemon starts on local limits. */
  async start(): Promise<void> {
    this.lastError = '';
    const connected = this.client.connect().then(() => true, (err: Error) => {
      // The 'error' event said why (WRONGPASS, ECONNREFUSED); the rejection only says "Connection is closed."
      this.lastError ||= scrub(err.message, this.address);
      return false;
    });
    const timedOut = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), CONNECT_TIMEOUT_MS + 500).unref());
    if (await Promise.race([connected, timedOut])) await this.check();
    if (!this.up) this.down(this.lastError || `no answer within ${CONNECT_TIMEOUT_MS} ms`, true);
  }

  /**
   * Runs one Redis operation. Never throws: a failure takes the link down
   * and gives undefined, and the caller falls back to local limits.
   */
  async run<T>(what: string, op: (client: Redis) => Promise<T>): Promise<T | undefined> {
    if (!this.up) return undefined;
    try {
      return await op(this.client);
    } catch (err) {
      this.errors++;
      this.down(`${what}: ${scrub((err as Error).message, this.address)}`);
      return undefined;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.probe);
    this.up = false;
    try {
      await Promise.race([this.client.quit(), new Promise((resolve) => setTimeout(resolve, COMMAND_TIMEOUT_MS).unref())]);
    } catch {
      // gone already
    }
    this.client.disconnect();
  }

  private down(reason: string, atStart = false): void {
    if (this.closed) return;
    this.lastError = reason;
    const wasUp = this.up;
    this.up = false;
    if (wasUp || atStart) {
      this.outages++;
      const now = Date.now();
      const fields = { redis: this.address.display, err: reason };
      const message = atStart
        ? 'fleet: Redis does not answer; serving on this daemon\'s local limits until it does'
        : 'fleet: lost Redis; serving on this daemon\'s local limits until it is back';
      if (now - this.warnedAt >= WARN_EVERY_MS) {
        this.warnedAt = now;
        this.warned = true;
        this.log.warn(fields, message);
      } else {
        this.log.debug(fields, message);
      }
      if (wasUp) this.onChange(false);
    }
    this.startProbing();
  }

  /** While down: PING whenever the client has a socket, until Redis answers. */
  private startProbing(): void {
    if (this.probe || this.closed) return;
    this.probe = setInterval(() => void this.check(), PROBE_EVERY_MS);
    this.probe.unref();
  }

  /** Comes up if Redis answers a PING; a no-op while up, closed, or without a socket. */
  private check(): Promise<void> {
    if (this.up || this.closed || this.client.status !== 'ready') return Promise.resolve();
    this.checking ??= this.ping().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async ping(): Promise<void> {
    try {
      await this.client.ping();
    } catch (err) {
      this.lastError = scrub((err as Error).message, this.address);
      return;
    }
    if (this.closed) return;
    clearInterval(this.probe);
    this.probe = undefined;
    this.up = true;
    this.lastError = '';
    const fields = { redis: this.address.display };
    if (this.outages === 0) {
      this.log.info(fields, 'fleet: connected to Redis; the fleet limits apply');
    } else {
      // Told at the level its outage was.
      this.log[this.warned ? 'info' : 'debug'](fields, 'fleet: Redis answers again; the fleet limits apply');
    }
    this.warned = false;
    this.onChange(true);
  }
}
