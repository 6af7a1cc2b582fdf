// A fleet of daemons (many orchestrator hosts, each with its own sshmuxd)
// sharing one handshake budget and one connection cap per target sshd
// through Redis, so that together they never trip its MaxStartups. This is
// the daemon's side of it: the Redis link, one gate per target (target.ts),
// a heartbeat that keeps presence, leases and shares current, and the fleet
// view for status and metrics. See README "Many orchestrator hosts".
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import type { FleetConfig, FleetLimits } from '../config';
import type { Logger } from '../log';
import type { FleetGate } from './gate';
import { RedisLink } from './link';
import { FleetTarget, HEARTBEAT_MS, type FleetTargetStatus } from './target';

export interface FleetStatus {
  /** The Redis URL, its password hidden. */
  redis: string;
  /** Redis answers: the fleet limits apply. False: this daemon runs on its local limits. */
  redisUp: boolean;
  /** Why Redis is down, when it is. */
  redisError: string;
  daemonId: string;
  /** Times this daemon lost Redis (or did not find it at start) and fell back to its local limits. */
  outages: number;
  /** Redis commands that failed or timed out. */
  redisErrors: number;
  targets: FleetTargetStatus[];
}

export class Fleet {
  readonly daemonId = `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private readonly link: RedisLink;
  private readonly targets = new Map<string, FleetTarget>();
  private readonly heartbeat: NodeJS.Timeout;

  private constructor(readonly config: FleetConfig, private readonly log: Logger) {
    this.link = new RedisLink(config.redis, log, (up) => {
      if (!up) for (const t of this.targets.values()) t.linkDown();
    });
    this.heartbeat = setInterval(() => {
      for (const t of this.targets.values()) {
        t.tick().catch((err: Error) => log.error({ target: t.endpoint, err: err.message }, 'fleet: heartbeat failed'));
      }
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /** Connects to Redis (waiting 2 s at most: without it the daemon serves on its local limits). */
  static async start(config: FleetConfig, log: Logger): Promise<Fleet> {
    const fleet = new Fleet(config, log);
    log.info({ redis: config.redis.display, daemon: fleet.daemonId, ...config.limits }, 'fleet: joining');
    await fleet.link.start();
    return fleet;
  }

  /** The gate to `endpoint` (host:port, as the local Endpoint keys it); `limits` is read afresh each time, so a reload applies. */
  gate(endpoint: string, limits: () => FleetLimits): FleetGate {
    let target = this.targets.get(endpoint);
    if (!target) {
      target = new FleetTarget(endpoint, limits, this.link, this.daemonId, this.log);
      this.targets.set(endpoint, target);
    }
    return target;
  }

  status(): FleetStatus {
    return {
      redis: this.config.redis.display,
      redisUp: this.link.up,
      redisError: this.link.up ? '' : this.link.lastError,
      daemonId: this.daemonId,
      outages: this.link.outages,
      redisErrors: this.link.errors,
      targets: [...this.targets.values()].map((t) => t.status()),
    };
  }

  /** Daemon exit: permits back, presence gone, the link closed; a second at most if Redis is slow. */
  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    await Promise.all([...this.targets.values()].map((t) => t.close()));
    await this.link.close();
  }
}
