// The daemon's own config file (--config FILE): limits as data, global with
// per-host overrides. JSON, because it needs no parser and every tool can
// write it; unknown keys are an error so a typo never silently does nothing.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { globRegExp } from './glob';
import { parseRedisUrl, type RedisAddress } from './redis-url';
import { DEFAULT_WINDOW_LIMITS, type WindowLimits } from './ssh/link-window';

export interface Limits {
  /** Session channels per connection; sshd's MaxSessions (default 10). */
  maxSessions: number;
  /** Connections per host pool. */
  maxConnections: number;
  /** Handshakes in flight per host:port, far under sshd's MaxStartups (10). */
  maxConcurrentHandshakes: number;
  /** Requests waiting for a session per host pool; beyond it: QUEUE_FULL. */
  queueLimit: number;
  /** A connection with no channels is closed after this long. */
  idleTimeoutMs: number;
  /** Longest a request may wait for a session (queued, handshaking, opening). */
  queueTimeoutMs: number;
  /** Whole-call deadline when the client gives none (default 24 h: every request has one); 0: none. */
  requestTimeoutMs: number;
  /** Consecutive DNS/refused/connect-timeout failures before queued requests fail. */
  connectionAttempts: number;
  /** Consecutive hard handshake failures (not throttling) that mark a host down; 0: never. */
  breakerThreshold: number;
  /** How long a host stays down before one probe handshake may try again. */
  breakerCooldownMs: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxSessions: 10,
  maxConnections: 8,
  maxConcurrentHandshakes: 2,
  queueLimit: 4096,
  idleTimeoutMs: 300_000,
  queueTimeoutMs: 60_000,
  requestTimeoutMs: 86_400_000,
  connectionAttempts: 3,
  breakerThreshold: 5,
  breakerCooldownMs: 30_000,
});

/** A fleet's limits per endpoint (host:port), shared by every daemon through Redis (daemon/fleet/). */
export interface FleetLimits {
  /** Handshakes in flight to one endpoint from the whole fleet; under sshd's MaxStartups (10). */
  maxConcurrentHandshakes: number;
  /** Connections open to one endpoint from the whole fleet. */
  maxConnections: number;
}

export const DEFAULT_FLEET_LIMITS: Readonly<FleetLimits> = Object.freeze({ maxConcurrentHandshakes: 8, maxConnections: 40 });
const FLEET_LIMIT_KEYS = Object.keys(DEFAULT_FLEET_LIMITS) as Array<keyof FleetLimits>;

export interface FleetConfig {
  redis: RedisAddress;
  limits: FleetLimits;
}

export interface DaemonConfig {
  limits: Limits;
  /** Per-host overrides, first matching pattern wins (ssh_config-style * and ? against the alias). */
  hosts: Array<{ pattern: string; match: RegExp; limits: Partial<Limits>; fleet?: Partial<FleetLimits> }>;
  /** Many daemons sharing one budget per endpoint through Redis; none: this daemon's limits only. */
  fleet?: FleetConfig;
  /** Group allowed to use the socket (mode 0660); none: owner only (0600). */
  socketGroup?: string;
  /** Concurrent calls one client may have open. */
  maxCallsPerClient: number;
  /** Client connections (socket and /rpc) the daemon holds at once; each is a file descriptor. */
  maxClients: number;
  /** Let --http listen on a non-loopback address. */
  httpAllowRemote: boolean;
  /** Finished jobs nobody removed are deleted from their host this long after they ended. */
  jobRetentionMs: number;
  /** This daemon user's jobs root on hosts (~/.sshmux/jobs/OWNER); default user@hostname. */
  jobOwner?: string;
  /** The SSH front door's address (host:port or a Unix socket path), as --gateway; the flag wins. */
  gateway?: string;
  /** The public keys the front door accepts, authorized_keys format; none: a key the daemon generates for its own user. */
  gatewayAuthorizedKeys?: string;
  /** Let the front door listen on a non-loopback address. */
  gatewayAllowRemote: boolean;
  /** How far channel windows may grow to fill a long link: per channel, and in all (daemon/ssh/link-window.ts). */
  windows: WindowLimits;
}

export class DaemonConfigError extends Error {
  override readonly name = 'DaemonConfigError';
}

const LIMIT_KEYS = Object.keys(DEFAULT_LIMITS) as Array<keyof Limits>;
/** ssh2's own channel window, which every channel has. */
const MIN_CHANNEL_WINDOW = 2 * 1024 * 1024;
const MIN: Record<keyof Limits, number> = {
  maxSessions: 1, maxConnections: 1, maxConcurrentHandshakes: 1, queueLimit: 0,
  idleTimeoutMs: 0, queueTimeoutMs: 1, requestTimeoutMs: 0, connectionAttempts: 1,
  breakerThreshold: 0, breakerCooldownMs: 0,
};

export function defaultDaemonConfig(): DaemonConfig {
  return { limits: { ...DEFAULT_LIMITS }, hosts: [], maxCallsPerClient: 4096, maxClients: 1000, httpAllowRemote: false, jobRetentionMs: 3 * 86_400_000, gatewayAllowRemote: false,
    windows: { ...DEFAULT_WINDOW_LIMITS } };
}

export function loadDaemonConfig(file: string | undefined): DaemonConfig {
  if (!file) return defaultDaemonConfig();
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new DaemonConfigError(`cannot read daemon config ${file}: ${(err as Error).message}`);
  }
  return parseDaemonConfig(raw, file);
}

export function parseDaemonConfig(raw: unknown, source = 'config'): DaemonConfig {
  const fail = (msg: string): never => {
    throw new DaemonConfigError(`${source}: ${msg}`);
  };
  if (!isObject(raw)) fail('must be a JSON object');
  const obj = raw as Record<string, unknown>;
  const config = defaultDaemonConfig();
  for (const [key, value] of Object.entries(obj)) {
    if ((LIMIT_KEYS as string[]).includes(key)) {
      config.limits[key as keyof Limits] = limitValue(key as keyof Limits, value, '', fail);
    } else if (key === 'socketGroup') {
      if (typeof value !== 'string' || value === '') fail('socketGroup must be a group name');
      config.socketGroup = value as string;
    } else if (key === 'httpAllowRemote' || key === 'gatewayAllowRemote') {
      if (typeof value !== 'boolean') fail(`${key} must be true or false`);
      config[key] = value as boolean;
    } else if (key === 'gateway' || key === 'gatewayAuthorizedKeys') {
      if (typeof value !== 'string' || value === '') fail(`${key} must be a non-empty string`);
      config[key] = value as string;
    } else if (key === 'maxCallsPerClient' || key === 'maxClients') {
      config[key] = intValue(key, value, 1, fail);
    } else if (key === 'jobRetentionMs') {
      config.jobRetentionMs = intValue(key, value, 0, fail);
    } else if (key === 'channelWindowMax') {
      // Below ssh2's own 2 MiB a window would only shrink what every channel already has.
      config.windows.channelWindowMax = intValue(key, value, MIN_CHANNEL_WINDOW, fail);
    } else if (key === 'windowMemoryMax') {
      config.windows.windowMemoryMax = intValue(key, value, 0, fail);
    } else if (key === 'jobOwner') {
      if (typeof value !== 'string' || !JOB_OWNER.test(value)) fail('jobOwner must be 1-64 characters A-Z a-z 0-9 . _ @ - (not starting with .)');
      config.jobOwner = value as string;
    } else if (key === 'fleet') {
      config.fleet = fleetValue(value, fail);
    } else if (key === 'hosts') {
      if (!isObject(value)) fail('hosts must be an object of pattern -> limits');
      for (const [pattern, overrides] of Object.entries(value as Record<string, unknown>)) {
        if (!isObject(overrides)) fail(`hosts["${pattern}"] must be an object`);
        const limits: Partial<Limits> = {};
        let fleet: Partial<FleetLimits> | undefined;
        for (const [k, v] of Object.entries(overrides as Record<string, unknown>)) {
          if (k === 'fleet') {
            fleet = fleetLimitsValue(v, `hosts["${pattern}"].fleet`, fail);
            continue;
          }
          if (!(LIMIT_KEYS as string[]).includes(k)) {
            fail(`hosts["${pattern}"]: unknown key "${k}" (known: ${[...LIMIT_KEYS, 'fleet'].join(', ')})`);
          }
          limits[k as keyof Limits] = limitValue(k as keyof Limits, v, `hosts["${pattern}"].`, fail);
        }
        config.hosts.push({ pattern, match: globRegExp(pattern, { ignoreCase: true }), limits, ...(fleet ? { fleet } : {}) });
      }
    } else {
      fail(`unknown key "${key}" (known: ${[...LIMIT_KEYS, 'maxCallsPerClient', 'maxClients', 'socketGroup', 'httpAllowRemote', 'jobRetentionMs', 'jobOwner',
        'gateway', 'gatewayAuthorizedKeys', 'gatewayAllowRemote', 'channelWindowMax', 'windowMemoryMax', 'hosts', 'fleet'].join(', ')})`);
    }
  }
  return config;
}

/** The name of this daemon's jobs root on hosts (jobOwner): safe as a path component, quoted anyway. */
const JOB_OWNER = /^[A-Za-z0-9_@-][A-Za-z0-9._@-]{0,63}$/;

/** This daemon user's name for its jobs root: the configured one, else user@hostname made path-safe. */
export function jobOwner(configured: string | undefined): string {
  if (configured !== undefined) return configured;
  const raw = `${os.userInfo().username}@${os.hostname()}`;
  const owner = raw.replace(/[^A-Za-z0-9._@-]/g, '_').replace(/^\./, '_').slice(0, 64);
  return JOB_OWNER.test(owner) ? owner : 'sshmux';
}

/** The limits in force for a host alias. */
export function limitsFor(config: DaemonConfig, alias: string): Limits {
  const entry = config.hosts.find((h) => h.match.test(alias));
  return entry ? { ...config.limits, ...entry.limits } : config.limits;
}

/** The fleet limits in force for a host alias: the first matching hosts pattern's, over the fleet's own. */
export function fleetLimitsFor(config: DaemonConfig, alias: string): FleetLimits {
  const base = config.fleet?.limits ?? DEFAULT_FLEET_LIMITS;
  const entry = config.hosts.find((h) => h.match.test(alias));
  return entry?.fleet ? { ...base, ...entry.fleet } : base;
}

function fleetValue(value: unknown, fail: (m: string) => never): FleetConfig {
  if (!isObject(value)) fail('fleet must be an object: { "redis": "redis://HOST:PORT", "maxConcurrentHandshakes": 8, "maxConnections": 40 }');
  const { redis, ...rest } = value as Record<string, unknown>;
  if (redis === undefined) fail('fleet.redis is missing: the URL of the Redis server the fleet shares (redis://HOST:PORT[/DB])');
  let address: RedisAddress;
  try {
    address = parseRedisUrl(redis);
  } catch (err) {
    // The message never repeats the URL: it may carry a password.
    fail(`fleet.redis: ${(err as Error).message}`);
  }
  return { redis: address!, limits: { ...DEFAULT_FLEET_LIMITS, ...fleetLimitsValue(rest, 'fleet', fail) } };
}

function fleetLimitsValue(value: unknown, where: string, fail: (m: string) => never): Partial<FleetLimits> {
  if (!isObject(value)) fail(`${where} must be an object`);
  const limits: Partial<FleetLimits> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (!(FLEET_LIMIT_KEYS as string[]).includes(k)) {
      fail(`${where}: unknown key "${k}" (known: ${where === 'fleet' ? 'redis, ' : ''}${FLEET_LIMIT_KEYS.join(', ')})`);
    }
    limits[k as keyof FleetLimits] = intValue(`${where}.${k}`, v, 1, fail);
  }
  return limits;
}

function limitValue(key: keyof Limits, value: unknown, where: string, fail: (m: string) => never): number {
  return intValue(where + key, value, MIN[key], fail);
}

function intValue(key: string, value: unknown, min: number, fail: (m: string) => never): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    fail(`${key} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return value as number;
}

function isObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
