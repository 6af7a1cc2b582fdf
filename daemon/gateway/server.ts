// The SSH front door (sshmuxd --gateway ADDR): an SSH server (ssh2's Server)
// on a loopback TCP port or a Unix socket, so that any SSH client (OpenSSH,
// paramiko, asyncssh, JSch...) runs its sessions on the daemon's pooled
// connections by changing only the address it connects to. This file owns
// the listener, the keys and the connections; front-conn.ts speaks to one
// client; session-bridge.ts turns channels into calls.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Server, type ClientInfo, type Connection } from '../ssh/ssh2';
import type { v1 } from '../../proto';
import { parseListenAddress } from '../listen-address';
import { LogTally, type Logger } from '../log';
import type { Metrics } from '../metrics';
import { listenUnix } from '../rpc/server';
import { FrontConn, type AuthFailure } from './front-conn';
import { GREETING_LINES } from './greeting';
import { AuthorizedKeys, CLIENT_KEY_FILE, hostKeyAlgorithms, loadHostKeys, loadOrCreateKey, writeKnownHosts, type KeyFile } from './keys';
import type { BridgeContext } from './session-bridge';

export interface GatewayOptions {
  /** host:port (loopback unless allowRemote), or an absolute Unix socket path. */
  address: string;
  allowRemote: boolean;
  /** Where the host key (and the generated client key) live. */
  stateDir: string;
  /** gatewayAuthorizedKeys; unset: only the client key generated in stateDir. */
  authorizedKeysFile?: string;
  /** The Unix socket is opened to this group, as the RPC socket is. */
  socketGroup?: string;
  maxChannelsPerConnection: number;
  /** Client connections held at once, logged in or not: the daemon's maxClients, so they cannot exhaust its files. */
  maxConnections: number;
  bridge: BridgeContext;
  metrics: Metrics;
  accepting(): boolean;
  log: Logger;
  version: string;
}

export interface Gateway {
  /** Where it listens, with the port chosen when 0 was asked for. */
  readonly address: string;
  status(): v1.IGatewayStatus;
  readonly connections: number;
  /** A reload: the authorized keys file may have changed, and the limits. */
  reconfigure(authorizedKeysFile: string | undefined, maxChannelsPerConnection: number, maxConnections: number): void;
  /** The grace period is over: running commands get TERM, then KILL. */
  shutdown(): void;
  /** Stops listening; closes each client connection once its channels have ended, or after `ms`. */
  close(ms: number): Promise<void>;
}

/** As sshd's LoginGraceTime: a client that has not logged in by then is dropped, whatever stage it stalled in. */
const LOGIN_GRACE_MS = 30_000;

const refusedTally = new LogTally('gateway: maxClients reached: refused a new connection; clients that never close theirs hold them');

/** The name to put in known_hosts for a Unix-socket front door: clients connect to it under this name (HostKeyAlias). */
export const UNIX_HOST_ALIAS = 'sshmux-gateway';

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const unix = opts.address.startsWith('/');
  const tcp = unix ? undefined : parseListenAddress('--gateway', opts.address, opts.allowRemote, 'gatewayAllowRemote', '127.0.0.1:2222');
  const hostKeys = loadHostKeys(opts.stateDir);
  let clientKey: KeyFile | undefined;
  let keys: AuthorizedKeys;
  let maxChannels = opts.maxChannelsPerConnection;
  let maxConnections = opts.maxConnections;
  let sockets = 0;
  const authorize = (file: string | undefined): void => {
    if (file) {
      clientKey = undefined;
      keys = AuthorizedKeys.fromFile(file, opts.log);
      return;
    }
    // Without a keys file, one key of our own: its private half is readable by
    // the daemon's user only, so no other local user can log in with it.
    clientKey = loadOrCreateKey(path.join(opts.stateDir, CLIENT_KEY_FILE), 'sshmux gateway client key');
    keys = AuthorizedKeys.only(clientKey, opts.log);
  };
  authorize(opts.authorizedKeysFile);

  const clients = new Set<FrontConn>();
  const loginTimers = new WeakMap<net.Socket, NodeJS.Timeout>();
  let authFailures = 0;
  const ssh = new Server({
    hostKeys: hostKeys.map((k) => k.privateKey),
    // No compression: on the door's local link it only costs CPU (a ControlMaster made with ssh -C, as Ansible makes
    // its masters, moved 50 MB of text through the door 6-10 times slower), and the daemon's CPU is every client's.
    algorithms: { serverHostKey: hostKeyAlgorithms(hostKeys), compress: ['none'] },
    // The line the ssh_config block's ProxyCommand helper writes first (greeting.ts).
    clientGreetingLines: GREETING_LINES,
    ident: `sshmuxd_${opts.version}`,
  }, (conn: Connection, info: ClientInfo) => {
    const loginTimer = loginTimers.get(info.socket);
    conn.once('ready', () => clearTimeout(loginTimer));
    clients.add(new FrontConn(conn, info, {
      bridge: opts.bridge,
      keys: () => keys,
      maxChannels: () => maxChannels,
      accepting: opts.accepting,
      authFailed: (reason: AuthFailure) => {
        authFailures++;
        opts.metrics.countGatewayAuthFailure(reason);
      },
      log: opts.log,
    }, (c) => clients.delete(c)));
  });
  ssh.on('error', (err: Error) => opts.log.error({ err: err.message }, 'gateway: server error'));
  const inject = (socket: net.Socket): void => {
    socket.on('error', () => {
      // ssh2 reports it on the connection; a client resetting is routine.
    });
    if (sockets >= maxConnections) {
      refusedTally.note(opts.log, { maxConnections });
      socket.destroy();
      return;
    }
    sockets++;
    socket.once('close', () => sockets--);
    if (!unix) socket.setNoDelay(true); // as on the pooled side: no Nagle delay on small packets
    const timer = setTimeout(() => socket.destroy(), LOGIN_GRACE_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    loginTimers.set(socket, timer);
    ssh.injectSocket(socket);
  };
  const listener = unix ? await listenUnix(opts.address, opts.socketGroup, inject) : await listenTcp(tcp!.host, tcp!.port, inject);
  listener.on('error', (err) => opts.log.error({ err: err.message }, 'gateway: listener error'));
  const address = unix ? opts.address : formatAddress(listener.address() as net.AddressInfo);
  const name = unix ? UNIX_HOST_ALIAS : knownHostsName(listener.address() as net.AddressInfo);
  const knownHostsLines = hostKeys.map((k) => `${name} ${k.publicLine}`);
  const knownHostsFile = writeKnownHosts(opts.stateDir, knownHostsLines);
  opts.metrics.watchGateway(() => ({ connections: clients.size, sessions: channelsOf(clients) }));
  opts.log.info({ gateway: address, hostKeys: hostKeys.map((k) => k.path), knownHosts: knownHostsFile, authorizedKeys: opts.authorizedKeysFile ?? clientKey?.path },
    'gateway listening: SSH clients log in with the destination as user name');

  return {
    address,
    get connections() {
      return clients.size;
    },
    status: () => ({
      address,
      knownHosts: knownHostsLines.join('\n'),
      knownHostsFile,
      authorizedKeys: keys.file ?? '',
      clientKey: clientKey?.path ?? '',
      connections: clients.size,
      sessions: channelsOf(clients),
      authFailures,
    }),
    reconfigure(file, maxChannelsPerConnection, maxClients) {
      maxChannels = maxChannelsPerConnection;
      maxConnections = maxClients;
      if ((file && path.resolve(file)) !== keys.file) authorize(file);
    },
    shutdown() {
      for (const c of clients) c.shutdown();
    },
    async close(ms) {
      listener.close();
      if (unix) fs.rmSync(address, { force: true });
      await Promise.all([...clients].map((c) => c.close(ms)));
    },
  };
}

function channelsOf(clients: Set<FrontConn>): number {
  let n = 0;
  for (const c of clients) n += c.channels;
  return n;
}

function listenTcp(host: string, port: number, onConnection: (s: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer(onConnection);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function formatAddress(a: net.AddressInfo): string {
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** How ssh names a host:port in known_hosts: bare for port 22, else [host]:port. */
function knownHostsName(a: net.AddressInfo): string {
  return a.port === 22 ? a.address : `[${a.address}]:${a.port}`;
}
