// The usual test world, set up in one place: a real sshd, an ssh_config and
// known_hosts that reach it, a daemon resolving through them, and an SDK
// client. The daemon and sshd stop when the test file ends (helpers/daemon.ts);
// the clients made here close then too.
import { after } from 'node:test';
import * as fs from 'node:fs';
import { SshMux } from '../../client-sdk';
import { startDaemon, type DaemonProc } from './daemon';
import { startSshd, tempDir, writeClientConfig, type ClientConfig, type Sshd, type SshdOptions } from './sshd';

export interface WorldOptions {
  /** The host alias in ssh_config (default "t"). */
  alias?: string;
  /** An sshd to use, or the options to start one with. */
  sshd?: Sshd | SshdOptions;
  /** More ssh_config lines for the host. */
  extra?: string[];
  /** Whether known_hosts lists the sshd's key (default true). */
  knownHost?: boolean;
  /** Rewrites the ssh_config text written for the host (undefined: keep it). */
  sshConfig?: (client: ClientConfig) => string | undefined;
  /** The daemon's config file (limits). */
  config?: Record<string, unknown>;
  /** More sshmuxd arguments. */
  daemonArgs?: string[];
}

export interface World {
  sshd: Sshd;
  /** The directory of the ssh_config, known_hosts and the daemon's socket. */
  dir: string;
  client: ClientConfig;
  daemon: DaemonProc;
  mux: SshMux;
  /** process.env with SSHMUX_SOCKET pointing at this daemon, for the sshmux command. */
  env: NodeJS.ProcessEnv;
}

const clients: SshMux[] = [];
after(() => {
  for (const m of clients.splice(0)) m.close();
});

export async function startWorld(opts: WorldOptions = {}): Promise<World> {
  const sshd = opts.sshd && 'pid' in opts.sshd ? opts.sshd : await startSshd(opts.sshd as SshdOptions | undefined);
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: opts.alias ?? 't', sshd, extra: opts.extra, knownHost: opts.knownHost }]);
  const text = opts.sshConfig?.(client);
  if (text !== undefined) fs.writeFileSync(client.sshConfigPath, text);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, config: opts.config, args: opts.daemonArgs });
  const mux = await SshMux.connect({ socket: daemon.socket });
  clients.push(mux);
  return { sshd, dir, client, daemon, mux, env: { ...process.env, SSHMUX_SOCKET: daemon.socket } };
}
