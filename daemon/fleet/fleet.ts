// A fleet of daemons (many orchestrator hosts, each with its own sshmuxd)
// sharing one handshake budget and one connection cap per sshd endpoint
// through Redis, so that together they never trip its MaxStartups. This is
// the daemon's side of it: the Redis link, one gate per endpoint (fleet-endpoint.ts),
// a heartbeat that keeps presence, leases and shares current, and the fleet
// view for status and metrics. See README "Many orchestrator hosts".
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import type { FleetConfig, FleetLimits } from '../config';
import type { Logger } from '../log';
import type { FleetGate, FleetGates } from '../pool/fleet-gate';
import { RedisLink } from './link';
import { FleetEndpoint, HEARTBEAT_MS, type FleetEndpointStatus } from './fleet-endpoint';

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
  /** Per endpoint (named targets on the wire and in the fleet metrics' labels). */
  targets: FleetEndpointStatus[];
}

export class Fleet implements FleetGates {
  readonly daemonId = `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private readonly link: RedisLink;
  private readonly endpoints = new Map<string, FleetEndpoint>();
  private readonly heartbeat: NodeJS.Timeout;

  private constructor(readonly config: FleetConfig, private readonly log: Logger) {
    this.link = new RedisLink(config.redis, log, (up) => {
      if (!up) for (const e of this.endpoints.values()) e.linkDown();
    });
    this.heartbeat = setInterval(() => {
      for (const e of this.endpoints.values()) {
        e.tick().catch((err: Error) => log.error({ endpoint: e.endpoint, err: err.message }, 'fleet: heartbeat failed'));
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
    let gate = this.endpoints.get(endpoint);
    if (!gate) {
      gate = new FleetEndpoint(endpoint, limits, this.link, this.daemonId, this.log);
      this.endpoints.set(endpoint, gate);
    }
    return gate;
  }

  status(): FleetStatus {
    return {
      redis: this.config.redis.display,
      redisUp: this.link.up,
      redisError: this.link.up ? '' : this.link.lastError,
      daemonId: this.daemonId,
      outages: this.link.outages,
      redisErrors: this.link.errors,
      targets: [...this.endpoints.values()].map((e) => e.status()),
    };
  }

  /** Daemon exit: permits back, presence gone, the link closed; a second at most if Redis is slow. */
  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    await Promise.all([...this.endpoints.values()].map((e) => e.close()));
    await this.link.close();
  }
}
