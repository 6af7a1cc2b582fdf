// Wires the parts together: config, the pool agent, the socket and its
// clients. main.ts handles the process (arguments, signals); this file
// handles the daemon's life: start, status, reload, stop.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Code, v1 } from '../proto';
import { jobOwner, loadDaemonConfig, type DaemonConfig } from './config';
import { MuxError } from './errors';
import { startGateway, type Gateway } from './gateway/server';
import { defaultStateDir } from './gateway/keys';
import { Fleet } from './fleet/fleet';
import { registerFleetMetrics } from './fleet/metrics';
import { startHttp, type HttpServer } from './http/server';
import { LogTally, type Logger } from './log';
import { Metrics } from './metrics';
import { Agent } from './pool/agent';
import { TERMINATE_MS } from './ssh/channel';
import { ssh2NativeCrypto } from './ssh/ssh2';
import { verifySsh2Capabilities } from './ssh/ssh2/capabilities';
import { Jobs } from './jobs/jobs';
import { configureWindows, windowBudget } from './ssh/link-window';
import { ClientConn, MAX_LINGERING, sayAndClose } from './rpc/client-conn';
import { listenUnix } from './rpc/server';
import { SshConfigResolver, type ResolvedHost } from './ssh/ssh-config';

export const VERSION: string = require('../../package.json').version;

/** At exit, how long a slow client may take to read what is still queued for it. */
const CLIENT_FLUSH_MS = 5000;
/**
 * At maxClients, a greeted client with no call open that has been quiet this
 * long may be closed to make room (it reconnects at its next call); one
 * quiet for less may be about to send its request.
 */
const IDLE_CLIENT_MS = 1000;
const clientsRefused = new LogTally('maxClients reached: refused a new client, every one held has a call open');
const clientsReplaced = new LogTally('maxClients reached: closed a silent or idle client to make room for a new one');

export interface DaemonOptions {
  socketPath: string;
  /** A listening socket systemd passed us (socket activation): used instead of creating socketPath. */
  activatedFd?: number;
  sshConfigFile?: string;
  configFile?: string;
  /** --http host:port */
  http?: string;
  /** --gateway host:port or socket path; else the config's gateway key. */
  gateway?: string;
  /** --state-dir: where the gateway's keys live. */
  stateDir?: string;
  log: Logger;
  /** sshmuxctl stop: the same path as SIGTERM. */
  requestStop?: () => void;
}

export class Daemon {
  readonly startedAt = Date.now();
  private readonly clients = new Set<ClientConn>();
  private server: net.Server | undefined;
  private http: HttpServer | undefined;
  private gateway: Gateway | undefined;
  readonly jobs: Jobs;
  /** The socket is open to a group: clients may not set owner-only options or stop the daemon. */
  private shared = false;
  accepting = true;
  /** config.maxClients, held to half the open-file limit. */
  private maxClients: number;

  private constructor(
    private readonly opts: DaemonOptions,
    private config: DaemonConfig,
    readonly agent: Agent,
    /** Sharing each endpoint's budget with other daemons through Redis; none without a "fleet" config. */
    private readonly fleet: Fleet | undefined,
    /** Counted into by the pools (given to the agent), the calls and the front door. */
    readonly metrics: Metrics,
  ) {
    this.maxClients = clientLimit(config.maxClients, opts.log);
    metrics.watchPools(() => this.agent.load().pools.map(({ name, load }) => ({
      host: metrics.host(name), sessions: load.sessions, queued: load.queued, connections: load.connectionsByState,
    })), () => this.agent.breakers(),
    () => this.jobs.status().map((j) => ({ host: metrics.host(j.host!), states: j.states ?? {} })));
    this.jobs = new Jobs({ agent, log: opts.log, metrics, ...jobSettings(config) });
    if (fleet) registerFleetMetrics(metrics.registry, () => fleet.status());
  }

  /** Loads the configs (throwing on errors) and listens. */
  static async start(opts: DaemonOptions): Promise<Daemon> {
    // A generous deadline: daemons started together on a busy machine must not fail their checks for want of CPU.
    await verifySsh2Capabilities({ timeoutMs: 30_000 });
    const { resolver, config } = loadConfigs(opts);
    configureWindows(config.windows);
    // Redis is waited for 2 s at most: without it the fleet runs on local limits.
    const fleet = config.fleet ? await Fleet.start(config.fleet, opts.log) : undefined;
    const metrics = new Metrics();
    const daemon = new Daemon(opts, config, new Agent(resolver, config, opts.log, { fleet, metrics }), fleet, metrics);
    const accept = (socket: net.Socket): void => daemon.accept(socket);
    if (opts.activatedFd !== undefined) {
      daemon.server = net.createServer(accept);
      await new Promise<void>((resolve, reject) => {
        daemon.server!.once('error', reject);
        daemon.server!.listen({ fd: opts.activatedFd }, resolve);
      });
      daemon.shared = sharedSocket(opts.socketPath);
      if (daemon.shared && !config.socketGroup) {
        // The .socket unit opened it to a group: treat it as socketGroup would.
        config.socketGroup = String(fs.statSync(opts.socketPath).gid);
      }
    } else {
      daemon.server = await listenUnix(opts.socketPath, config.socketGroup, accept);
      daemon.shared = config.socketGroup !== undefined;
    }
    // accept() failing (out of file descriptors) must not end the daemon.
    daemon.server.on('error', (err) => opts.log.warn({ err: err.message }, 'accepting a client failed'));
    if (opts.http) {
      try {
        daemon.http = await startHttp({
          address: opts.http, allowRemote: config.httpAllowRemote, tokenPath: path.join(path.dirname(opts.socketPath), 'http-token'),
          metrics: daemon.metrics, snapshot: () => daemon.snapshot(), acceptRpc: (stream) => daemon.accept(stream, true), log: opts.log,
        });
      } catch (err) {
        daemon.server.close();
        throw err;
      }
    }
    const gatewayAddress = opts.gateway ?? config.gateway;
    if (gatewayAddress) {
      try {
        daemon.gateway = await startGateway({
          address: gatewayAddress, allowRemote: config.gatewayAllowRemote, stateDir: opts.stateDir ?? defaultStateDir(),
          authorizedKeysFile: config.gatewayAuthorizedKeys, socketGroup: config.socketGroup,
          maxChannelsPerConnection: config.maxCallsPerClient, maxConnections: daemon.maxClients, bridge: { agent: daemon.agent, log: opts.log, metrics: daemon.metrics },
          metrics: daemon.metrics, accepting: () => daemon.accepting, log: opts.log, version: VERSION,
        });
      } catch (err) {
        daemon.server.close();
        daemon.http?.close();
        throw err;
      }
    }
    opts.log.info({ socket: opts.socketPath, activated: opts.activatedFd !== undefined, sshConfig: resolver.files, version: VERSION },
      'sshmuxd listening');
    return daemon;
  }

  /** One line for systemd's STATUS=. */
  summary(): string {
    const { pools, total } = this.agent.load();
    const gateway = this.gateway ? `, ${this.gateway.connections} gateway clients` : '';
    return `${pools.length} hosts, ${total.connections} connections, ${total.sessions} sessions, ${total.queued} queued, ${this.clients.size} clients${gateway}`;
  }

  /** The status page's view: host names and counts, no commands. */
  snapshot(): unknown {
    const s = this.status();
    const g = s.gateway;
    return {
      ...s,
      hosts: (s.hosts ?? []).map((h) => ({ ...h, recentErrors: this.agent.recentErrors(h.name!) })),
      gateway: g && { address: g.address, connections: g.connections, sessions: g.sessions, authFailures: g.authFailures },
    };
  }

  /** sshmuxctl check/drain/reload/stop, and resolve (sshmux -G). `owner`: the caller may steer the whole daemon. */
  async control(req: v1.IControlRequest, owner: boolean): Promise<v1.IControlResult> {
    const Action = v1.ControlRequest.Action;
    const action = req.action ?? Action.CHECK;
    if ((action === Action.RELOAD || action === Action.STOP) && !owner) {
      throw new MuxError(Code.BAD_REQUEST, 'reload and stop are refused on a group-shared socket; use systemctl reload/stop sshmuxd');
    }
    switch (action) {
      case Action.CHECK: {
        // Through the pool, as a request goes: a ready connection answers at
        // once; else one is opened within the host's handshake budget, its
        // circuit breaker and the fleet's gate, and stays pooled.
        const pool = this.agent.pool(req.host ?? '', req.options ?? {});
        const ready = pool.readyConnections;
        const started = Date.now();
        const conn = await pool.connected(pool.limits.queueTimeoutMs).ready;
        // Drained meanwhile (sshmuxctl drain, a reload): ask the pool that replaced it.
        if (!conn) return this.control(req, owner);
        const ms = Date.now() - started;
        const warning = conn.hostKeyWarning ? `; warning: ${conn.hostKeyWarning.message}` : '';
        const what = ready > 0 ? `connected: ${ready} pooled connection${ready > 1 ? 's' : ''} ready, no new handshake`
          : `handshake ok in ${ms} ms (a new pooled connection, opened within the host's handshake budget and circuit breaker)`;
        return { message: `${pool.name} (${pool.destination}): ${what}${warning}`, ms };
      }
      case Action.DRAIN: {
        const n = this.agent.drainHost(req.host ?? '', req.options ?? {});
        return { message: `${req.host}: drained; its ${n} connections close once their sessions end, new requests open fresh ones`, count: n };
      }
      case Action.RELOAD: {
        const r = this.reload();
        if (!r.ok) throw new MuxError(Code.BAD_REQUEST, `reload refused, the old configuration stays: ${r.error}`);
        return { message: `reloaded: ${r.kept} pools kept their connections, ${r.replaced} replaced`, count: r.replaced };
      }
      case Action.RESOLVE: {
        const host = this.agent.resolve(req.host ?? '', req.options ?? {});
        return { message: `${host.alias} resolves to ${host.user}@${host.hostname}:${host.port}`, resolved: resolvedToWire(host) };
      }
      case Action.STOP:
        setImmediate(() => this.opts.requestStop?.());
        return { message: 'stopping: running sessions get the grace period' };
      default:
        throw new MuxError(Code.BAD_REQUEST, `unknown control action ${action}`);
    }
  }

  status(): v1.IStatus {
    const { total } = this.agent.load();
    return {
      pid: process.pid,
      version: VERSION,
      uptimeS: (Date.now() - this.startedAt) / 1000,
      clients: this.clients.size,
      hosts: this.agent.status(),
      totals: { connections: total.connections, sessions: total.sessions, sessionCapacity: total.sessionCapacity, queued: total.queued },
      jobs: this.jobs.status(),
      gateway: this.gateway?.status(),
      ...(this.fleet ? { fleet: this.fleet.status() } : {}),
      windows: { heldBytes: windowBudget().used, maxBytes: windowBudget().max, channelMaxBytes: this.config.windows.channelWindowMax },
      nodeVersion: process.version,
      ssh2CryptoBinding: ssh2NativeCrypto(),
    };
  }

  /** No client connected and no SSH connection open. */
  get idle(): boolean {
    return this.clients.size === 0 && (this.gateway?.connections ?? 0) === 0 && this.agent.load().total.connections === 0;
  }

  /**
   * Re-reads ssh_config and the daemon config; on error keeps the old ones.
   * Pools whose resolved settings did not change keep their connections.
   */
  reload(): { ok: true; kept: number; replaced: number } | { ok: false; error: string } {
    try {
      const { resolver, config } = loadConfigs(this.opts);
      // The socket stays as it is until a restart.
      config.socketGroup = this.config.socketGroup;
      if (JSON.stringify(config.fleet?.redis) !== JSON.stringify(this.config.fleet?.redis)) {
        // The fleet's limits follow a reload; joining, leaving or moving to another Redis takes a restart.
        this.opts.log.warn({ redis: this.fleet?.config.redis.display ?? 'none' },
          'fleet.redis changed: it takes effect at the next restart; the fleet limits of the new config apply now');
        config.fleet = this.config.fleet && config.fleet ? { ...config.fleet, redis: this.config.fleet.redis } : this.config.fleet;
      }
      const { kept, replaced } = this.agent.reconfigure(resolver, config);
      configureWindows(config.windows);
      this.jobs.reconfigure(jobSettings(config));
      this.config = config;
      this.maxClients = clientLimit(config.maxClients, this.opts.log);
      // The gateway's address, like the socket, stays until a restart; its keys file and limits follow the config.
      this.gateway?.reconfigure(config.gatewayAuthorizedKeys, config.maxCallsPerClient, this.maxClients);
      this.opts.log.info({ sshConfig: resolver.files, kept, replaced }, 'configuration reloaded');
      return { ok: true, kept, replaced };
    } catch (err) {
      const error = (err as Error).message;
      this.opts.log.error({ err: error }, 'reload refused: the new configuration is invalid; keeping the old one');
      return { ok: false, error };
    }
  }

  /** Stops accepting, lets running sessions finish within graceMs, then closes everything. */
  async stop(graceMs: number): Promise<void> {
    this.accepting = false;
    // Jobs run on their hosts without us; only their watchers end here.
    this.jobs.close();
    this.server?.close();
    this.http?.close();
    // An activated socket belongs to the .socket unit, which keeps it for our next start.
    if (this.opts.activatedFd === undefined) {
      try {
        fs.unlinkSync(this.opts.socketPath);
      } catch {
        // already gone
      }
    }
    this.agent.close();
    const sessions = (): number => this.agent.load().total.sessions;
    const until = Date.now() + graceMs;
    while (sessions() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    if (sessions() > 0) {
      // Closing the connections alone would leave the remote commands running.
      this.opts.log.warn({ sessions: sessions() }, 'grace period over: sending TERM, then KILL, to the remaining commands');
      for (const client of this.clients) client.shutdown();
      this.gateway?.shutdown();
      const killed = Date.now() + TERMINATE_MS;
      while (sessions() > 0 && Date.now() < killed) await new Promise((r) => setTimeout(r, 50));
    }
    this.agent.destroy();
    await this.fleet?.close();
    await Promise.all([...[...this.clients].map((client) => client.close(CLIENT_FLUSH_MS)), this.gateway?.close(CLIENT_FLUSH_MS)]);
  }

  /** A client on the socket, or on /rpc (whose bearer token only the daemon's user can read: an owner). */
  private accept(socket: net.Socket, viaToken = false): void {
    if (this.clients.size >= this.maxClients && !this.makeRoom()) {
      clientsRefused.note(this.opts.log, { clients: this.clients.size });
      sayAndClose(socket, Code.TOO_MANY_CLIENTS, `sshmuxd already serves ${this.clients.size} clients (its maxClients) and each `
        + 'has a call running; retry in a moment. A program that opens an SshMux per task should share one, or close() '
        + 'those it is done with; or raise maxClients in the daemon\'s config');
      return;
    }
    const owner = viaToken || !this.shared;
    const client = new ClientConn(socket, {
      agent: this.agent,
      log: this.opts.log,
      metrics: this.metrics,
      version: VERSION,
      maxCallsPerClient: this.config.maxCallsPerClient,
      status: () => this.status(),
      control: (req) => this.control(req, owner),
      jobs: this.jobs,
      get accepting() {
        return daemonAccepting();
      },
    }, (c) => this.clients.delete(c));
    const daemonAccepting = (): boolean => this.accepting;
    this.clients.add(client);
  }

  /**
   * At maxClients: closes the client that has been doing nothing longest, so
   * one program that leaks connections cannot lock the others out. Silent
   * ones (no hello yet) go first, oldest first; then greeted ones with no
   * call open, quiet for IDLE_CLIENT_MS at least. False if every client is busy.
   */
  private makeRoom(): boolean {
    let silent: ClientConn | undefined;
    let idle: ClientConn | undefined;
    for (const c of this.clients) {
      if (!c.greeted) {
        if (!silent || c.quietForMs > silent.quietForMs) silent = c;
      } else if (c.activeCalls === 0 && c.quietForMs >= IDLE_CLIENT_MS && (!idle || c.quietForMs > idle.quietForMs)) {
        idle = c;
      }
    }
    const victim = silent ?? idle;
    if (!victim) return false;
    clientsReplaced.note(this.opts.log, { clients: this.clients.size, silent: victim === silent });
    victim.closeWith(Code.TOO_MANY_CLIENTS, victim === silent
      ? `sshmuxd already serves its maxClients (${this.maxClients} clients) and closed this connection, which had not said hello, to make room`
      : `sshmuxd already serves its maxClients (${this.maxClients} clients) and closed this connection, idle for ${Math.round(victim.quietForMs / 1000)} s, `
        + 'to make room for another; nothing of it was running. An SshMux reconnects at its next call; a program that opens '
        + 'one per task should share one, or close() those it is done with');
    return true;
  }
}

/**
 * maxClients, but within half the daemon's open-file limit: every client is
 * a file descriptor (and so is each of the MAX_LINGERING closed ones still
 * reading why), and the other half is for the SSH connections (one each)
 * and everything else.
 */
function clientLimit(maxClients: number, log: Logger): number {
  const fds = openFileLimit();
  if (fds === undefined || maxClients + MAX_LINGERING <= fds / 2) return maxClients;
  const limit = Math.max(1, Math.floor(fds / 2) - MAX_LINGERING);
  log.warn({ maxClients, openFileLimit: fds, holding: limit },
    `maxClients ${maxClients} would leave too few of the ${fds} file descriptors for SSH connections; holding at most ${limit} clients. `
    + 'Raise the limit (ulimit -n, or LimitNOFILE= in the unit) or lower maxClients');
  return limit;
}

/** RLIMIT_NOFILE (soft), as /proc says; undefined where it cannot tell or it is unlimited. */
function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function jobSettings(config: DaemonConfig): { owner: string; retentionMs: number; requestTimeoutMs: number } {
  return { owner: jobOwner(config.jobOwner), retentionMs: config.jobRetentionMs, requestTimeoutMs: config.limits.requestTimeoutMs };
}

/** A resolved host for RESOLVE (sshmux -G): ProxyJump as ssh -G prints it, times in seconds. */
function resolvedToWire(h: ResolvedHost): v1.IResolvedHost {
  const hop = (j: { user?: string; host: string; port?: number }): string =>
    `${j.user ? `${j.user}@` : ''}${j.host.includes(':') ? `[${j.host}]` : j.host}${j.port ? `:${j.port}` : ''}`;
  return {
    host: h.alias,
    hostname: h.hostname,
    port: h.port,
    user: h.user,
    identityFiles: h.identityFiles,
    certificateFiles: h.certificateFiles,
    identitiesOnly: h.identitiesOnly,
    identityAgent: h.identityAgent ?? '',
    userKnownHostsFiles: h.userKnownHostsFiles,
    globalKnownHostsFiles: h.globalKnownHostsFiles,
    hostKeyAlias: h.hostKeyAlias ?? '',
    strictHostKeyChecking: h.strictHostKeyChecking,
    connectTimeoutS: Math.round(h.connectTimeoutMs / 1000),
    serverAliveIntervalS: Math.round(h.serverAliveIntervalMs / 1000),
    serverAliveCountMax: h.serverAliveCountMax,
    proxyJump: h.proxyJump.map(hop).join(','),
    batchMode: h.batchMode,
    sendEnv: h.sendEnv,
    setEnv: h.setEnv,
  };
}

/** Whether anyone but the owner may open the socket file. */
function sharedSocket(socketPath: string): boolean {
  try {
    return (fs.statSync(socketPath).mode & 0o077) !== 0;
  } catch {
    return false;
  }
}

function loadConfigs(opts: DaemonOptions): { resolver: SshConfigResolver; config: DaemonConfig } {
  const config = loadDaemonConfig(opts.configFile);
  const resolver = new SshConfigResolver({ configFile: opts.sshConfigFile });
  resolver.load();
  return { resolver, config };
}
