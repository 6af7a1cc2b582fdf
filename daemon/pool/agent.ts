// The top of the pool hierarchy (undici's Agent): resolves the host a
// client names through ssh_config and routes the request to the pool for
// that exact destination, creating pools and endpoints on first use.
import { Code, v1 } from '../../proto';
import { CLIENT_OPTIONS } from '../../proto/client-options';
import { fleetLimitsFor, limitsFor, type DaemonConfig, type Limits } from '../config';
import { cannotReadSshConfig, MuxError } from '../errors';
import type { Logger } from '../log';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError, SshConfigResolver, type JumpHop, type ResolvedHost } from '../ssh/ssh-config';
import type { BreakerSample } from '../metrics';
import { Endpoint, type BreakerTransition } from './endpoint';
import type { FleetGates } from './fleet-gate';
import { NO_POOL_METRICS, type PoolMetrics } from './pool-metrics';
import { Connection } from '../ssh/connection';
import { HostPool, type PendingSession } from './host-pool';
import { tcpReachable } from './reachability';
import { totalLoad, type PoolLoad } from './stats';

/** Hops in a ProxyJump chain, counting the jump hosts' own ProxyJump. */
const MAX_JUMP_DEPTH = 8;

/** An empty pool is forgotten after this long, so odd host names cannot pile up. */
const POOL_LINGER_MS = 10 * 60_000;

/** A reachability check gives up after this long (or the host's ConnectTimeout, if shorter): no answer tells nothing. */
const REACHABILITY_TIMEOUT_MS = 2000;

export class Agent {
  private readonly pools = new Map<string, HostPool>();
  /**
   * The pool each name asked for without options went to: a warm exec's
   * lookup, instead of resolving its name again (the profile put that at a
   * few percent of the daemon's CPU per exec). Forgotten whenever a pool
   * leaves `pools` or the configuration changes.
   */
  private readonly plainNames = new Map<string, HostPool>();
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly clientResolvers = new Map<string, { mtimeMs: number; resolver: SshConfigResolver }>();
  /** Pools a reload or drainHost drained, until their last sessions end: still counted, still stopped with the daemon. */
  private readonly draining = new Set<HostPool>();
  /** How each pool was asked for, so a reload can resolve it again. */
  private readonly origins = new WeakMap<HostPool, PoolOrigin>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;
  private readonly metrics: PoolMetrics;

  constructor(
    private resolver: SshConfigResolver,
    private config: DaemonConfig,
    private readonly log: Logger,
    private readonly deps: {
      /** Many daemons sharing each endpoint's budget through Redis; none: local limits only. */
      fleet?: FleetGates;
      /** Where the pools count handshakes, breaker transitions and reachability checks. */
      metrics?: PoolMetrics;
    } = {},
  ) {
    this.metrics = deps.metrics ?? NO_POOL_METRICS;
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  /** The pool for `alias` with `options`, created on first use; throws MuxError(BAD_REQUEST) for a bad host or option. */
  pool(alias: string, options: Record<string, string>): HostPool {
    if (this.closed) throw MuxError.shuttingDown();
    const plain = isEmpty(options);
    const known = plain ? this.plainNames.get(alias) : undefined;
    if (known) return known;
    const pool = this.poolFor(this.route(this.lookup(alias, options)));
    if (plain) {
      if (this.plainNames.size >= PLAIN_NAMES_MAX) this.plainNames.clear();
      this.plainNames.set(alias, pool);
    }
    return pool;
  }

  /**
   * How `alias` with `options` resolves (ssh -G), its jump hosts included,
   * under the same rules as pool() (throwing what it would throw) and
   * creating nothing: no pool, no endpoint, no connection. Doors check a
   * host name with it before they take a request for it.
   */
  resolve(alias: string, options: Record<string, string>): ResolvedHost {
    return this.route(this.lookup(alias, options)).host;
  }

  /** The resolver, alias and overrides a request names: "user@host", the option allow-list, ssh -F; at the head of its chain. */
  private lookup(alias: string, options: Record<string, string>): PoolOrigin {
    const at = alias.lastIndexOf('@');
    if (at > 0) {
      // "user@host", as ssh takes it; an explicit User option wins.
      options = { user: alias.slice(0, at), ...options };
      alias = alias.slice(at + 1);
    }
    checkAlias(alias);
    const overrides: Record<string, string> = {};
    let resolver = this.resolver;
    for (const [key, value] of Object.entries(options)) {
      const rule = CLIENT_OPTIONS[key.toLowerCase()];
      if (!rule || (rule === 'owner' && this.config.socketGroup)) {
        throw new MuxError(Code.BAD_REQUEST,
          `option ${key} cannot be set by a client${rule ? ' of a group-shared daemon' : ''}; set it in the daemon's ssh_config instead`);
      }
      if (key.toLowerCase() === 'configfile') resolver = this.clientResolver(value);
      else overrides[key] = value;
    }
    return { resolver, alias, overrides, jumps: undefined, depth: 0 };
  }

  /**
   * Resolves a destination and its ProxyJump chain, creating nothing.
   * `jumps` replaces the host's own ProxyJump (as ssh does for the hops of
   * a -J chain); `depth` stops a config whose jump hosts jump through
   * themselves.
   */
  private route(origin: PoolOrigin): Route {
    const { resolver, alias, overrides, jumps, depth } = origin;
    if (depth > MAX_JUMP_DEPTH) {
      throw new MuxError(Code.BAD_REQUEST, `ProxyJump chain deeper than ${MAX_JUMP_DEPTH} at ${alias}: does a jump host jump through itself? Exclude it in ssh_config (Host * !bastion)`);
    }
    let host = resolveChecked(resolver, alias, overrides);
    if (jumps) host = { ...host, proxyJump: jumps };
    // ssh's -J a,b,c: c is reached through b, which is reached through a.
    let via: Route | undefined;
    if (host.proxyJump.length) {
      const hops = host.proxyJump;
      const last = hops[hops.length - 1];
      via = this.route({ resolver, alias: last.host, overrides: hopOverrides(last), jumps: hops.length > 1 ? hops.slice(0, -1) : undefined, depth: depth + 1 });
    }
    return { origin, host, via };
  }

  /** The pool for a resolved destination (and its jump hosts' pools), created on first use. */
  private poolFor(route: Route): HostPool {
    const via = route.via && this.poolFor(route.via);
    const { host, origin } = route;
    const key = poolKey(host);
    let pool = this.pools.get(key);
    if (!pool) {
      const limits = limitsFor(this.config, origin.alias);
      const endpoint = this.endpoint(host, limits, via);
      pool = new HostPool(origin.alias, host, limits, endpoint, this.log, via, {
        newConnection: (...args) => new Connection(...args),
        fleet: this.deps.fleet?.gate(endpoint.key, () => fleetLimitsFor(this.config, origin.alias)),
        metrics: this.metrics,
      });
      this.pools.set(key, pool);
      this.origins.set(pool, origin);
    }
    return pool;
  }

  /** A resolver for a client's own ssh_config file (ssh -F), re-read when the file changes. */
  private clientResolver(file: string): SshConfigResolver {
    if (!path.isAbsolute(file)) throw new MuxError(Code.BAD_REQUEST, `ConfigFile must be an absolute path, not ${JSON.stringify(file)}`);
    let mtimeMs: number;
    try {
      mtimeMs = fs.statSync(file).mtimeMs;
    } catch (err) {
      throw new MuxError(Code.BAD_REQUEST, cannotReadSshConfig(file, err));
    }
    const cached = this.clientResolvers.get(file);
    if (cached && cached.mtimeMs === mtimeMs) return cached.resolver;
    const resolver = new SshConfigResolver({ configFile: file });
    try {
      resolver.load();
    } catch (err) {
      throw new MuxError(Code.BAD_REQUEST, (err as Error).message);
    }
    if (this.clientResolvers.size >= 64) this.clientResolvers.clear(); // a bound, not a cache policy
    this.clientResolvers.set(file, { mtimeMs, resolver });
    return resolver;
  }

  /**
   * Swaps in a reloaded ssh_config and daemon config. Each pool is resolved
   * again: where nothing changed it keeps its connections (with the new
   * limits); where anything did (or its jump host changed) it is drained: its
   * running sessions finish on the old connections, and its waiting
   * requests move to a pool for the new settings.
   */
  reconfigure(resolver: SshConfigResolver, config: DaemonConfig): { kept: number; replaced: number } {
    const previous = this.resolver;
    this.resolver = resolver;
    this.config = config;
    this.plainNames.clear();
    const drained = new Set<HostPool>();
    for (const [key, pool] of this.pools) {
      const origin = this.origins.get(pool);
      // Pools from a client's own -F file follow that file, not ours.
      if (!origin || origin.resolver !== previous) continue;
      let same = false;
      try {
        const host = resolver.resolve(origin.alias, origin.overrides);
        same = poolKey(origin.jumps ? { ...host, proxyJump: origin.jumps } : host) === key;
      } catch {
        // No longer resolvable: drain it; its waiting requests get the error.
      }
      if (same) pool.limits = limitsFor(config, pool.name);
      else drained.add(pool);
    }
    // A pool whose jump host was drained would tunnel through a drained pool.
    for (let grew = true; grew;) {
      grew = false;
      for (const pool of this.pools.values()) {
        if (!drained.has(pool) && pool.via && drained.has(pool.via)) {
          drained.add(pool);
          grew = true;
        }
      }
    }
    const moved: Array<[PendingSession, PoolOrigin]> = [];
    for (const [key, pool] of [...this.pools]) {
      if (!drained.has(pool)) continue;
      this.forget(key);
      this.draining.add(pool);
      const origin = this.origins.get(pool)!;
      for (const pending of pool.drain()) moved.push([pending, origin]);
    }
    const kept = this.pools.size;
    for (const [pending, origin] of moved) this.rehome(pending, origin.resolver === previous ? { ...origin, resolver } : origin);
    return { kept, replaced: drained.size };
  }

  /**
   * Drains `alias`'s pools (sshmuxctl drain, sshmux -O exit): the pools of
   * that name, and the one `alias` with `options` resolves to, which another
   * name may have opened first. Their connections close once their sessions
   * end; waiting and new requests go to fresh ones.
   */
  drainHost(alias: string, options: Record<string, string> = {}): number {
    let resolvedKey: string | undefined;
    try {
      const t = this.lookup(alias, options);
      resolvedKey = poolKey(resolveChecked(t.resolver, t.alias, t.overrides));
    } catch {
      // A name that does not resolve drains by name only.
    }
    let n = 0;
    for (const [key, pool] of [...this.pools]) {
      if (pool.name !== alias && key !== resolvedKey) continue;
      this.forget(key);
      this.draining.add(pool);
      const origin = this.origins.get(pool)!;
      const waiting = pool.drain();
      n += pool.connections.length;
      for (const pending of waiting) this.rehome(pending, origin);
    }
    return n;
  }

  /** Moves a request a drained pool gave back to the pool `origin` resolves to now; if it no longer resolves, the request fails. */
  private rehome(pending: PendingSession, origin: PoolOrigin): void {
    try {
      this.poolFor(this.route(origin)).adopt(pending);
    } catch (err) {
      pending.pool.fail(pending, err instanceof MuxError ? err : new MuxError(Code.BAD_REQUEST, (err as Error).message));
    }
  }

  /** Every pool, the draining ones included. */
  private *allPools(): Iterable<HostPool> {
    yield* this.pools.values();
    yield* this.draining;
  }

  /** Each pool's load (the draining ones included), and their sum. */
  load(): { pools: Array<{ name: string; load: PoolLoad }>; total: PoolLoad } {
    const pools = [...this.allPools()].map((pool) => ({ name: pool.name, load: pool.load }));
    return { pools, total: totalLoad(pools.map((p) => p.load)) };
  }

  /** Every endpoint's breaker, for the metrics. */
  breakers(): BreakerSample[] {
    return [...this.endpoints.values()].map((e) => ({ endpoint: e.key, state: e.breaker }));
  }

  status(): v1.IHostStatus[] {
    const now = Date.now();
    return [...this.allPools()].map((pool) => {
      const load = pool.load;
      const e = pool.endpoint;
      return {
        name: pool.name,
        destination: pool.destination,
        queued: load.queued,
        sessions: load.sessions,
        sessionCapacity: load.sessionCapacity,
        state: pool.state,
        lastError: pool.stats.lastError,
        maxSessions: pool.maxSessions,
        maxConnections: pool.limits.maxConnections,
        requests: pool.stats.requests,
        handshakes: { ok: pool.stats.handshakesOk, failed: pool.stats.handshakesFailed, byCode: { ...pool.stats.failuresByCode } },
        connections: pool.connections.map((c) => ({
          id: c.id, state: c.state, sessions: c.sessions, maxSessions: c.maxSessions, ageS: (now - c.createdAt) / 1000,
          rttMs: c.link.ms ?? 0, heardAgoS: (c.heardAgoMs ?? 0) / 1000,
        })),
        via: pool.via?.name ?? '',
        breaker: e.breaker,
        nextProbeInS: e.nextProbeIn(now) / 1000,
        downForS: e.downFor(now) / 1000,
        breakerTransitionCount: e.transitionCount,
        breakerTransitions: e.transitions.map((t) => ({ atMs: t.at, from: t.from, to: t.to, reason: t.reason })),
      };
    });
  }

  /** The last handshake failures of the pools named `alias`. */
  recentErrors(alias: string): Array<{ at: number; code: string; message: string }> {
    const out: Array<{ at: number; code: string; message: string }> = [];
    for (const pool of this.allPools()) if (pool.name === alias) out.push(...pool.recentErrors);
    return out.sort((a, b) => a.at - b.at).slice(-10);
  }

  /** Stops new work and fails what waits; running sessions finish on their connections. */
  close(): void {
    this.closed = true;
    for (const pool of this.allPools()) pool.close();
  }

  /** Closes every connection now (daemon exit). */
  destroy(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const pool of this.allPools()) pool.destroy();
    for (const endpoint of this.endpoints.values()) endpoint.destroy();
  }

  private endpoint(host: ResolvedHost, limits: Limits, via: HostPool | undefined): Endpoint {
    // Behind a jump host, the same name may be another machine.
    const key = `${via ? `${via.destination}>` : ''}${host.hostname}:${host.port}`;
    let endpoint = this.endpoints.get(key);
    if (!endpoint) {
      const timeoutMs = Math.min(REACHABILITY_TIMEOUT_MS, host.connectTimeoutMs);
      endpoint = new Endpoint(key, {
        maxConcurrentHandshakes: limits.maxConcurrentHandshakes,
        breakerThreshold: limits.breakerThreshold,
        breakerCooldownMs: limits.breakerCooldownMs,
        checkReachable: via ? undefined : async () => {
          const result = await tcpReachable(host.hostname, host.port, timeoutMs);
          this.metrics.countReachabilityCheck(key, result);
          return result;
        },
        onTransition: (t) => this.breakerTransition(key, t),
      });
      this.endpoints.set(key, endpoint);
    }
    return endpoint;
  }

  /** Each transition once: a log line and a count, never one per request. */
  private breakerTransition(endpoint: string, t: BreakerTransition): void {
    this.metrics.countBreakerTransition(endpoint, t.to);
    const fields = { endpoint, from: t.from, to: t.to, reason: t.reason, nextProbeInS: t.nextProbeInMs / 1000 };
    if (t.to === 'open' && t.from === 'closed') {
      this.log.warn(fields, 'host marked down (circuit breaker open): requests wait for the next probe within their deadlines');
    } else if (t.to === 'open') {
      this.log.warn(fields, 'probe failed: host still down');
    } else if (t.to === 'half-open') {
      this.log.info(fields, 'probing a host marked down');
    } else {
      this.log.info(fields, 'host answers again (circuit breaker closed)');
    }
  }

  /** Takes a pool out of `pools`, and with it every name remembered as leading to a pool. */
  private forget(key: string): void {
    this.pools.delete(key);
    this.plainNames.clear();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [key, pool] of this.pools) {
      if (pool.empty && now - pool.lastUsed > POOL_LINGER_MS) this.forget(key);
    }
    for (const pool of this.draining) if (pool.connections.length === 0) this.draining.delete(pool);
  }
}

/** What resolving a request's host takes: the ssh_config (the daemon's, or a client's -F file), the alias, the overrides. */
interface HostLookup {
  resolver: SshConfigResolver;
  alias: string;
  overrides: Record<string, string>;
}

/** How a pool was asked for: a lookup, and for a jump host, where it sits in the chain. */
interface PoolOrigin extends HostLookup {
  jumps: JumpHop[] | undefined;
  depth: number;
}

/** A destination resolved with the chain of jump hosts it is reached through. */
interface Route {
  origin: PoolOrigin;
  host: ResolvedHost;
  via: Route | undefined;
}

/** poolKey's answers for the resolver's memoized hosts, which come back as the same objects. */
const poolKeys = new WeakMap<ResolvedHost, string>();

/** Names remembered by Agent.pool(): more are forgotten all at once (a client naming many hosts costs lookups, not memory). */
const PLAIN_NAMES_MAX = 4096;

function isEmpty(options: Record<string, string>): boolean {
  for (const _ in options) return false;
  return true;
}

/** Pools are per resolved destination: everything that shapes the connection, not the name it was asked by. */
function poolKey(host: ResolvedHost): string {
  let key = poolKeys.get(host);
  if (key === undefined) {
    const { alias: _alias, ...identity } = host;
    key = JSON.stringify(identity);
    poolKeys.set(host, key);
  }
  return key;
}

/** A ProxyJump hop's own user and port, as options for resolving it. */
function hopOverrides(hop: JumpHop): Record<string, string> {
  const overrides: Record<string, string> = {};
  if (hop.user) overrides.user = hop.user;
  if (hop.port) overrides.port = String(hop.port);
  return overrides;
}

/** resolver.resolve() with its failures as BAD_REQUEST, and hosts that need a ProxyCommand refused. */
function resolveChecked(resolver: SshConfigResolver, alias: string, overrides: Record<string, string>): ResolvedHost {
  let host: ResolvedHost;
  try {
    host = resolver.resolve(alias, overrides);
  } catch (err) {
    if (err instanceof ConfigError) throw new MuxError(Code.BAD_REQUEST, (err as Error).message);
    throw err;
  }
  if (host.proxyCommand) {
    throw new MuxError(Code.BAD_REQUEST,
      `${alias} uses ProxyCommand, which sshmuxd does not run; use ProxyJump in the daemon's ssh_config`);
  }
  return host;
}

function checkAlias(alias: string): void {
  // ssh would take "-oProxyCommand=..." as an option; names are plain words.
  if (!alias || alias.length > 255 || alias.startsWith('-') || /[\s\x00-\x1f\x7f'"`\\$;&|<>()]/.test(alias)) {
    throw new MuxError(Code.BAD_REQUEST, `invalid host name ${JSON.stringify(alias.slice(0, 80))}`);
  }
}
