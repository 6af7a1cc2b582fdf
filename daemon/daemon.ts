// Wires the parts together: config, the pool agent, the socket and its
// clients. main.ts handles the process (arguments, signals); this file
// handles the daemon's life: start, status, reload, stop.
import * as fs from 'node:fs';
import type * as net from 'node:net';
import { v1 } from '../proto';
import { loadDaemonConfig, type DaemonConfig } from './config';
import type { Logger } from './log';
import { Agent } from './pool/agent';
import { ClientConn } from './rpc/client-conn';
import { listenUnix } from './rpc/server';
import { SshConfigResolver } from './ssh-config';

export const VERSION: string = require('../../package.json').version;

/** After the grace period: TERM, 2 s, KILL, 1 s, and a moment for the server's close. */
const CANCEL_WAIT_MS = 4000;

export interface DaemonOptions {
  socketPath: string;
  sshConfigFile?: string;
  configFile?: string;
  log: Logger;
}

export class Daemon {
  readonly startedAt = Date.now();
  private readonly clients = new Set<ClientConn>();
  private server: net.Server | undefined;
  accepting = true;

  private constructor(
    private readonly opts: DaemonOptions,
    private config: DaemonConfig,
    readonly agent: Agent,
  ) {}

  /** Loads the configs (throwing on errors) and listens. */
  static async start(opts: DaemonOptions): Promise<Daemon> {
    const { resolver, config } = loadConfigs(opts);
    const daemon = new Daemon(opts, config, new Agent(resolver, config, opts.log));
    daemon.server = await listenUnix(opts.socketPath, config.socketGroup, (socket) => daemon.accept(socket));
    opts.log.info({ socket: opts.socketPath, sshConfig: resolver.files, version: VERSION }, 'sshmuxd listening');
    return daemon;
  }

  status(): v1.IStatus {
    return {
      pid: process.pid,
      version: VERSION,
      uptimeS: (Date.now() - this.startedAt) / 1000,
      clients: this.clients.size,
      hosts: this.agent.status(),
    };
  }

  /** No client connected and no SSH connection open. */
  get idle(): boolean {
    return this.clients.size === 0 && this.agent.connections === 0;
  }

  /** Re-reads ssh_config and the daemon config; on error keeps the old ones. */
  reload(): boolean {
    try {
      const { resolver, config } = loadConfigs(this.opts);
      this.agent.reconfigure(resolver, config);
      this.config = config;
      this.opts.log.info({ sshConfig: resolver.files }, 'configuration reloaded');
      return true;
    } catch (err) {
      this.opts.log.error({ err: (err as Error).message }, 'reload refused: the new configuration is invalid; keeping the old one');
      return false;
    }
  }

  /** Stops accepting, lets running sessions finish within graceMs, then closes everything. */
  async stop(graceMs: number): Promise<void> {
    this.accepting = false;
    this.server?.close();
    try {
      fs.unlinkSync(this.opts.socketPath);
    } catch {
      // already gone
    }
    this.agent.shutdown();
    const until = Date.now() + graceMs;
    while (this.agent.sessions > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    if (this.agent.sessions > 0) {
      // Closing the connections alone would leave the remote commands running.
      this.opts.log.warn({ sessions: this.agent.sessions }, 'grace period over: sending TERM, then KILL, to the remaining commands');
      for (const client of this.clients) client.shutdown();
      const killed = Date.now() + CANCEL_WAIT_MS;
      while (this.agent.sessions > 0 && Date.now() < killed) await new Promise((r) => setTimeout(r, 50));
    }
    this.agent.destroy();
    for (const client of this.clients) client.protocolError('sshmuxd stopped');
  }

  private accept(socket: net.Socket): void {
    const client = new ClientConn(socket, {
      agent: this.agent,
      log: this.opts.log,
      version: VERSION,
      maxCallsPerClient: this.config.maxCallsPerClient,
      status: () => this.status(),
      get accepting() {
        return daemonAccepting();
      },
    }, (c) => this.clients.delete(c));
    const daemonAccepting = (): boolean => this.accepting;
    this.clients.add(client);
  }
}

function loadConfigs(opts: DaemonOptions): { resolver: SshConfigResolver; config: DaemonConfig } {
  const config = loadDaemonConfig(opts.configFile);
  const resolver = new SshConfigResolver({ configFile: opts.sshConfigFile });
  resolver.load();
  return { resolver, config };
}
