// One pooled SSH connection and its session slots (undici's Client: one
// connection, bounded concurrency). A slot is taken when a session channel
// is requested and freed only when the server's CHANNEL_CLOSE arrives:
// sshd counts a session until then, so freeing on our own close pushes it
// past MaxSessions under churn. Even then sshd may still count it for a
// moment (see reclaimIfFull): a closed slot is reused only once a round
// trip proves sshd let it go, and that round trip is made only when the
// connection is at its limit. A connection in use keeps one session
// channel open ahead of need (the spare, when a slot is free for it), so a
// session starts without waiting for an open's round trip.
import type { Duplex } from 'node:stream';
import { Code } from '../../proto';
import { lostWhileOpening, MuxError } from '../errors';
import type { ResolvedHost } from './ssh-config';
import { dial, type HostKeyWarning, type Tunneler } from './dial';
import type { Client, ClientChannel, SFTPWrapper } from './ssh2';
import type { ConnectionOwner, ConnectionState, OpenResult, PooledConnection, SessionSpec } from './pooled-connection';
import { LinkRtt, rememberLink } from './link-window';
import { LinkWatch } from './liveness';
import { LENT_READ } from './read-buffer';
import { deadline, type Deadline } from '../deadlines';

/** An SFTP session nobody uses is closed after this long, freeing its slot. */
const SFTP_IDLE_MS = 15_000;

export class Connection implements PooledConnection {
  state: ConnectionState = 'connecting';
  /** Sessions opening or open: until the server closes the channel (closed slots and the spare are counted apart). */
  sessions = 0;
  /** Sessions ever opened here (0: the next one is the connection's first). */
  sessionsOpened = 0;
  readonly createdAt = Date.now();
  private client: Client | undefined;
  /** What the handshake had to say about the host key, for the sessions that ride this connection. */
  hostKeyWarning: HostKeyWarning | undefined;
  private socket: Duplex | undefined;
  /** Forwarding channels (to hosts behind this one): they hold the connection open but take no session slot. */
  tunnels = 0;
  private idleTimer: Deadline | undefined;
  /**
   * Slots whose channel the server closed, not reusable until a round trip
   * proves sshd freed them (reclaimIfFull); the ones in `reclaiming` are
   * covered by the round trip in flight.
   */
  private closedSlots = 0;
  private reclaiming = 0;
  /** SFTP sessions between transfers: each still holds its slot, and the next transfer reuses it. */
  private idleSftp: Array<{ sftp: SFTPWrapper; timer: NodeJS.Timeout }> = [];
  /** SFTP sessions whose channel has ended: not kept for the next transfer. */
  private readonly endedSftp = new WeakSet<SFTPWrapper>();
  /** A session channel is opened ahead of need (the spare); not once the server refused one below maxSessions. */
  private spareWanted = true;
  /** When the spare's open went out: its confirmation times a round trip. */
  private spareOpenedAt = 0;
  /** The link's round trip, timed on keepalives and opens: what channel windows are sized by. */
  readonly link = new LinkRtt();
  /** ServerAliveInterval x ServerAliveCountMax: gives the connection up when its link goes silent. */
  private watch: LinkWatch | undefined;
  /** Why the connection was given up, when it was (the link went silent): for the calls it carried. */
  lostReason: string | undefined;

  constructor(
    readonly id: string,
    private readonly host: ResolvedHost,
    /** Lowered when the server refuses a session below our assumption. */
    public maxSessions: number,
    private readonly idleTimeoutMs: number,
    private readonly owner: ConnectionOwner,
    /** The jump host's pool this connection goes through, if any. */
    private readonly via?: Tunneler,
  ) {}

  /** The host-key warnings a session opened here should pass on to its caller. */
  warningsFor(firstSession: boolean): string[] {
    const w = this.hostKeyWarning;
    return w && (w.everySession || firstSession) ? [w.message] : [];
  }

  /** Closed slots a round trip will give back (reclaimIfFull): capacity on its way. */
  get reclaimableSlots(): number {
    return this.state === 'ready' ? this.closedSlots + this.reclaiming : 0;
  }

  /** Slots a session can take now: unheld ones, and the spare once it is open. */
  get freeSlots(): number {
    if (this.state !== 'ready') return 0;
    return Math.max(0, this.maxSessions - this.held) + (this.client!.spareSession === 'ready' ? 1 : 0);
  }

  /** Slots sshd may count: sessions, closed slots not yet reclaimed, and the spare. */
  private get held(): number {
    return this.sessions + this.closedSlots + this.reclaiming + (this.client && this.client.spareSession !== 'none' ? 1 : 0);
  }

  connect(): void {
    dial(this.host, this.via).then(({ client, socket, hostKeyWarning }) => {
      if (this.state === 'closed') {
        client.end();
        return;
      }
      this.client = client;
      this.socket = socket;
      this.hostKeyWarning = hostKeyWarning;
      client.on('error', () => {
        // Reported through 'close'; an 'error' without a listener would crash the daemon.
      });
      client.once('close', () => this.closed(new MuxError(Code.CONNECTION_LOST,
        this.lostReason ?? `the connection ${this.id} to ${this.host.hostname}:${this.host.port} was lost`, 'running')));
      this.state = 'ready';
      this.watchLink(socket);
      this.timeRoundTrip();
      this.armIdleTimer();
      this.owner.onReady(this);
    }, (err: MuxError) => {
      if (this.state === 'closed') return;
      this.state = 'closed';
      this.owner.onHandshakeFailed(this, err);
    });
  }

  /** Opens a session channel in a free slot, the spare if it is open (ssh2 gives it to the next session); the caller checked freeSlots. */
  openSession(spec: SessionSpec, done: (result: OpenResult) => void): void {
    const client = this.client!;
    const onSpare = client.spareSession === 'ready';
    this.sessions++;
    this.sessionsOpened++;
    this.idleTimer?.cancel();
    if (!onSpare) this.reclaimIfFull();
    this.requestSession(client, spec, done);
    this.openSpare();
  }

  private requestSession(client: Client, spec: SessionSpec, done: (result: OpenResult) => void): void {
    const opened = (err: Error | undefined, channel: ClientChannel): void => {
      if (!err) {
        rememberLink(channel, this.link);
        // One listener for every session (emitted once per channel): a closure
        // made here would reach this request's objects (`done`, and through
        // it the call) for as long as the channel lives (ChannelCall.opened).
        channel.on('close', this.sessionClosed);
        done({ ok: true, channel });
        return;
      }
      done(this.openFailed(err));
    };
    try {
      switch (spec.kind) {
        case 'sftp':
          client.sftp((err, sftp) => {
            if (err) return done(this.openFailed(err));
            sftp.once('end', () => this.endedSftp.add(sftp));
            sftp.once('close', () => {
              this.endedSftp.add(sftp);
              this.forgetIdleSftp(sftp);
              this.sessionClosed();
            });
            sftp.on('error', () => {
              // Reported to the transfer through its request callbacks; 'close' frees the slot.
            });
            done({ ok: true, sftp });
          });
          break;
        case 'exec':
          client.exec(spec.command, { env: spec.env, pty: spec.pty ?? false, closeStdin: spec.closeStdin }, opened);
          break;
        case 'shell':
          client.shell(spec.pty ?? false, { env: spec.env }, opened);
          break;
        case 'subsystem':
          client.subsys(spec.command, opened);
          break;
      }
    } catch {
      // ssh2 throws synchronously when the socket is already gone: nothing
      // ran. This connection is finished even if ssh2 has not said so yet;
      // leaving it 'ready' would hand it the retried request again, forever.
      this.sessions--;
      this.destroy();
      done({ ok: false, retry: true, error: lostWhileOpening(this.id) });
    }
  }

  /** Opens the next spare when a slot is free for it: none while the connection is unused or full. */
  private openSpare(): void {
    const client = this.client!;
    if (this.state !== 'ready' || !this.spareWanted || client.spareSession !== 'none' || this.sessionsOpened === 0) return;
    if (this.held >= this.maxSessions) return;
    try {
      this.spareOpenedAt = performance.now();
      client.openSpareSession(this.spareReady, this.spareLost);
    } catch {
      // The socket is gone; 'close' ends the connection.
    }
  }

  /** The spare opened (made once: a spare opens for every session). */
  private readonly spareReady = (): void => {
    this.link.sample(performance.now() - this.spareOpenedAt);
    this.owner.onCapacity(this);
  };

  /**
   * The server refused the spare, or closed it: a refusal is sshd's
   * MaxSessions, lower than assumed; a closed spare's slot is a closed slot.
   */
  private readonly spareLost = (err: Error & { reason?: unknown }, wasReady: boolean): void => {
    if (this.state !== 'ready') return;
    if (wasReady) {
      this.closedSlots++;
      this.reclaimIfFull();
    } else if (refusedAsPastMaxSessions(err) && !this.learnLimit()) {
      this.spareWanted = false;
    }
    this.owner.onCapacity(this);
  };

  /**
   * Opens a direct-tcpip channel to host:port (a connection to a host behind
   * this jump host). sshd counts these apart from MaxSessions.
   */
  openTunnel(host: string, port: number, done: (err: MuxError | undefined, stream?: Duplex) => void): void {
    this.tunnels++;
    this.idleTimer?.cancel();
    const closed = (): void => {
      this.tunnels--;
      if (this.state === 'closing' && this.sessions === 0 && this.tunnels === 0) this.destroy();
      else this.armIdleTimer();
    };
    try {
      this.client!.forwardOut('127.0.0.1', 0, host, port, (err, channel) => {
        if (err) {
          closed();
          return done(tunnelRefused(this.host.alias, host, port, err));
        }
        rememberLink(channel, this.link);
        channel.once('close', closed);
        done(undefined, channel);
      });
    } catch (err) {
      closed();
      this.destroy();
      done(new MuxError(Code.CONNECTION_LOST, `connection ${this.id} lost while opening a tunnel: ${(err as Error).message}`, 'handshaking'));
    }
  }

  get idleSftpSessions(): number {
    return this.idleSftp.length;
  }

  /** A pooled SFTP session, if one waits here; it keeps the slot it already holds. */
  takeIdleSftp(): SFTPWrapper | undefined {
    const entry = this.idleSftp.pop();
    if (!entry) return undefined;
    clearTimeout(entry.timer);
    return entry.sftp;
  }

  /** A transfer is done with its SFTP session: keep it for the next transfer, for a while. */
  returnSftp(sftp: SFTPWrapper): void {
    if (this.state !== 'ready' || this.endedSftp.has(sftp)) {
      sftp.end();
      return;
    }
    const entry = { sftp, timer: setTimeout(() => this.closeIdleSftp(), SFTP_IDLE_MS) };
    entry.timer.unref();
    this.idleSftp.push(entry);
    this.owner.onCapacity(this);
  }

  /** Closes the longest-idle SFTP session; its slot frees once the server confirms. */
  closeIdleSftp(): void {
    const entry = this.idleSftp.shift();
    if (!entry) return;
    clearTimeout(entry.timer);
    entry.sftp.end();
  }

  private forgetIdleSftp(sftp: SFTPWrapper): void {
    const i = this.idleSftp.findIndex((e) => e.sftp === sftp);
    if (i < 0) return;
    clearTimeout(this.idleSftp[i].timer);
    this.idleSftp.splice(i, 1);
  }

  /** No new sessions; close once the running ones end. */
  close(): void {
    if (this.state !== 'ready') return;
    this.state = 'closing';
    while (this.idleSftp.length) this.closeIdleSftp();
    if (this.sessions === 0 && this.tunnels === 0) this.destroy();
  }

  /** Ends the connection now, whatever runs on it. */
  destroy(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.watch?.stop();
    this.idleTimer?.cancel();
    for (const entry of this.idleSftp) clearTimeout(entry.timer);
    this.idleSftp = [];
    this.client?.end();
    // end() waits for the server's answer; a frozen server must not keep the socket.
    const socket = this.socket;
    if (socket) setTimeout(() => socket.destroy(), 2000).unref();
  }

  private openFailed(err: Error & { reason?: number }): OpenResult {
    if (this.state === 'closed' || this.client === undefined) {
      // The connection died before the channel opened: nothing ran, try another.
      this.sessions--;
      return { ok: false, retry: true, error: lostWhileOpening(this.id) };
    }
    if (refusedAsPastMaxSessions(err)) {
      this.sessions--;
      if (this.learnLimit()) {
        return { ok: false, retry: true, error: new MuxError(Code.CHANNEL_OPEN_FAILED, err.message, 'opening') };
      }
      this.armIdleTimer();
      return { ok: false, retry: false, error: new MuxError(Code.CHANNEL_OPEN_FAILED,
        `${this.host.hostname} refused a session channel on a connection holding none (${err.message}); check sshd's MaxSessions and ForceCommand/Match rules`, 'opening') };
    }
    // The channel opened but a request on it (env, pty, exec) failed. ssh2
    // does not hand us the channel to wait for its close, so the slot stays
    // counted and the connection closes once its other sessions end.
    this.close();
    return { ok: false, retry: false, error: new MuxError(Code.CHANNEL_OPEN_FAILED,
      `${this.host.hostname} refused the session request: ${err.message}`, 'opening') };
  }

  /**
   * sshd refused a channel: its MaxSessions is lower than we assumed. This
   * connection's limit becomes what it holds now (closed slots and the spare
   * included: sshd may still count them); the pool learns it. False when it
   * holds nothing, so the refusal says nothing about the limit.
   */
  private learnLimit(): boolean {
    if (this.held === 0) return false;
    this.maxSessions = Math.min(this.maxSessions, this.held);
    this.reclaimIfFull();
    return true;
  }

  /**
   * The server closed a session's channel: the session is over, but its slot
   * is not reusable yet (reclaimIfFull). A closing connection with nothing
   * left closes now; closing needs no slot.
   */
  private readonly sessionClosed = (): void => {
    this.sessions--;
    this.closedSlots++;
    if (this.state === 'closing' && this.sessions === 0 && this.tunnels === 0) {
      this.destroy();
      return;
    }
    this.armIdleTimer();
    this.reclaimIfFull();
  };

  /**
   * sshd frees a session in its main loop after it sees our CHANNEL_CLOSE,
   * not while reading it: a CHANNEL_OPEN in the same read is refused as
   * past MaxSessions. So a closed slot is reused only after a round trip (a
   * keepalive request, whose reply sshd sends after processing our close);
   * one round trip covers every close before it. While the connection is
   * below its limit counting closed slots as held, sshd cannot refuse an
   * open even if it still counts them all, so the round trip is made only
   * once sessions and closed slots reach the limit: for sequential execs,
   * one round trip per maxSessions - 2 sessions (the running one and the
   * spare hold two) instead of one per session.
   */
  private reclaimIfFull(): void {
    if (this.reclaiming > 0 || this.closedSlots === 0 || this.state === 'closed') return;
    if (this.held < this.maxSessions) return;
    this.reclaiming = this.closedSlots;
    this.closedSlots = 0;
    const sentAt = performance.now();
    try {
      this.client!.ping(() => {
        this.link.sample(performance.now() - sentAt);
        this.reclaiming = 0;
        if (this.state === 'closed') return;
        this.reclaimIfFull();
        this.openSpare();
        this.owner.onCapacity(this);
      });
    } catch {
      // The socket is gone; 'close' ends the connection.
    }
  }

  /**
   * Keepalives while the link is silent, as ssh's ServerAliveInterval and
   * ServerAliveCountMax (0 counts as 1), and the connection given up once
   * the silence reaches their product: the socket goes at once, since a
   * silent link carries no goodbye either.
   */
  private watchLink(socket: Duplex): void {
    const { serverAliveIntervalMs: interval, serverAliveCountMax } = this.host;
    if (interval <= 0) return;
    const countMax = Math.max(1, serverAliveCountMax);
    this.watch = new LinkWatch({
      intervalMs: interval, countMax,
      ping: () => {
        this.timeRoundTrip();
        // Through a jump host: its own answer, by the deadline, tells which hop went silent.
        this.via?.probe();
      },
      dead: (silentMs) => {
        const where = `${this.host.hostname}:${this.host.port}${this.via ? ` through jump host ${this.via.name}` : ''}`;
        // Through a jump host that still answers, the hop behind it is what went silent.
        const carrier = this.via?.heardAgoMs();
        const hop = this.via && carrier !== undefined && carrier < silentMs
          ? `, while ${this.via.name} itself answered ${(carrier / 1000).toFixed(1)} s ago: the hop from ${this.via.name} to ${this.host.hostname} is cut`
          : '';
        this.lostReason = `the link to ${where} went silent: nothing arrived for ${(silentMs / 1000).toFixed(1)} s ` +
          `(ServerAliveInterval ${interval / 1000} s x ServerAliveCountMax ${countMax})${hop}; the connection ${this.id} was given up`;
        this.destroy();
        socket.destroy();
      },
    });
    const heard = (): void => this.watch?.heard();
    socket.on('data', heard);
    socket.on(LENT_READ, heard);
  }

  /** How long ago the server last sent anything, ms; undefined while not watched (not ready, or ServerAliveInterval 0). */
  get heardAgoMs(): number | undefined {
    return this.state === 'ready' ? this.watch?.silentMs : undefined;
  }

  /** A keepalive now, if ready: for a connection through this one that went silent (Tunneler.probe). */
  probe(): void {
    if (this.state === 'ready') this.timeRoundTrip();
  }

  /** One keepalive round trip, timed: the link's first measure, before any channel needs it. */
  private timeRoundTrip(): void {
    const sentAt = performance.now();
    try {
      this.client!.ping(() => this.link.sample(performance.now() - sentAt));
    } catch {
      // The socket is gone; 'close' ends the connection.
    }
  }

  private armIdleTimer(): void {
    if (this.state !== 'ready' || this.sessions > 0 || this.tunnels > 0 || this.idleTimeoutMs === 0) return;
    this.idleTimer?.cancel();
    this.idleTimer = deadline(() => this.destroy(), this.idleTimeoutMs);
  }

  private closed(err: MuxError): void {
    this.watch?.stop();
    // Given up on a silent link: not a clean close, whatever state it was left in.
    const wasClean = this.state === 'closed' && this.lostReason === undefined;
    this.state = 'closed';
    this.idleTimer?.cancel();
    this.owner.onClosed(this, wasClean ? undefined : err);
  }
}

/**
 * The jump host `jump` is up but could not open TCP to host:port for us:
 * refused (nothing listens there, as the jump host sees it), or another
 * failure of its connect (unreachable, timed out, forwarding not allowed).
 */
function tunnelRefused(jump: string, host: string, port: number, err: Error): MuxError {
  const why = err.message.replace(/^\(SSH\) Channel open failure: /, '');
  if (/refused/i.test(why)) {
    return new MuxError(Code.REFUSED, `jump host ${jump} is up, but its TCP connection to ${host}:${port} was refused (${why}): ` +
      `nothing listens on port ${port} of ${host} as ${jump} sees it, or a firewall between them rejects it`, 'handshaking');
  }
  return new MuxError(Code.CONNECT_TIMEOUT, `jump host ${jump} is up, but could not open a TCP connection to ${host}:${port} (${why}): ` +
    `check the route from ${jump} to ${host}, and that ${jump}'s sshd allows TCP forwarding`, 'handshaking');
}

/** A channel open refused as "administratively prohibited" (reason 2), sshd's answer past MaxSessions. */
function refusedAsPastMaxSessions(err: Error & { reason?: unknown }): boolean {
  return err.reason === 2 || /open failed/.test(err.message);
}
