// What the pool needs of one connection, and what a connection tells its
// pool: the contract between scheduling (daemon/pool/) and the SSH
// connection that carries the sessions (connection.ts). It lives here, below
// the pool, so that ssh/ imports nothing from pool/. The unit tests' fake
// connection implements the same interface, so a fake that drifts from the
// real one is a type error, not a test that passes against a connection
// that no longer exists.
import type { Duplex } from 'node:stream';
import type { MuxError } from '../errors';
import type { HostKeyWarning, Tunneler } from './dial';
import type { ResolvedHost } from './ssh-config';
import type { ClientChannel, PseudoTtyOptions, SFTPWrapper } from './ssh2';
import type { LinkRtt } from './link-window';

/** connecting: the handshake runs. closing: no new sessions; it closes once the running ones end. */
export type ConnectionState = 'connecting' | 'ready' | 'closing' | 'closed';

/** The session channel a request asks the pool for. */
export interface SessionSpec {
  /** 'sftp': an SFTP session for a file transfer, pooled between transfers. */
  kind: 'exec' | 'shell' | 'subsystem' | 'sftp';
  /** The command line (exec) or subsystem name. */
  command: string;
  env?: Record<string, string>;
  pty?: PseudoTtyOptions;
  /** exec: the command has no stdin, so its EOF goes with the request. */
  closeStdin?: boolean;
}

/** How an open attempt ended, so the pool can decide: hand over, requeue, or fail. */
export type OpenResult =
  | { ok: true; channel: ClientChannel; sftp?: undefined }
  | { ok: true; sftp: SFTPWrapper; channel?: undefined }
  | { ok: false; retry: boolean; error: MuxError };

/** What a connection tells its pool. */
export interface ConnectionOwner {
  onReady(conn: PooledConnection): void;
  onHandshakeFailed(conn: PooledConnection, err: MuxError): void;
  /** A slot freed, or the connection's limit changed: the queue may move. */
  onCapacity(conn: PooledConnection): void;
  onClosed(conn: PooledConnection, err?: Error): void;
}

/** Makes a connection for a pool (not yet connecting); `via`, the jump host's pool, carries it. */
export type ConnectionFactory = (id: string, host: ResolvedHost, maxSessions: number, idleTimeoutMs: number,
  owner: ConnectionOwner, via?: Tunneler) => PooledConnection;

export interface PooledConnection {
  /** "host#n", for logs, status and a call's Started. */
  readonly id: string;
  readonly state: ConnectionState;
  readonly createdAt: number;
  /** The most sessions it holds at once; lowered when the server refuses one below it. */
  readonly maxSessions: number;
  /** Sessions opening or open. */
  readonly sessions: number;
  /** Sessions ever opened here (0: the next one is its first). */
  readonly sessionsOpened: number;
  /** Forwarding channels to hosts behind it: they hold it open but take no session slot. */
  readonly tunnels: number;
  /** Slots a session can take now. */
  readonly freeSlots: number;
  /** Slots the server closed that a round trip is about to give back: capacity on its way. */
  readonly reclaimableSlots: number;
  /** SFTP sessions kept between transfers. */
  readonly idleSftpSessions: number;
  /** What the handshake had to say about the host key. */
  readonly hostKeyWarning: HostKeyWarning | undefined;
  /** Its measured round trip, which sizes the windows of the channels on it (link-window.ts). */
  readonly link: LinkRtt;
  /** Why it was lost, when the pool knows better than "lost": its link went silent, for how long. */
  readonly lostReason: string | undefined;
  /** How long since anything arrived from the server, ms; undefined before it is ready. */
  readonly heardAgoMs: number | undefined;

  /** The host-key warnings a session opened here passes on to its caller. */
  warningsFor(firstSession: boolean): string[];
  /** Starts the handshake; the owner hears onReady or onHandshakeFailed. */
  connect(): void;
  /** Opens a session channel; the caller checked freeSlots. */
  openSession(spec: SessionSpec, done: (result: OpenResult) => void): void;
  /** Opens a forwarding channel to host:port (a connection to a host behind this one). */
  openTunnel(host: string, port: number, done: (err: MuxError | undefined, stream?: Duplex) => void): void;
  /** A pooled SFTP session, if one waits here; it keeps the slot it holds. */
  takeIdleSftp(): SFTPWrapper | undefined;
  /** A transfer is done with its SFTP session: keep it for the next, for a while. */
  returnSftp(sftp: SFTPWrapper): void;
  /** Closes the longest-idle SFTP session, freeing its slot once the server confirms. */
  closeIdleSftp(): void;
  /** A keepalive now, so that heardAgoMs says whether the server still answers. */
  probe(): void;
  /** No new sessions; closes once the running ones end. */
  close(): void;
  /** Ends it now, whatever runs on it. */
  destroy(): void;
}
