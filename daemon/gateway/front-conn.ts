// One client connection to the SSH front door. The SSH user name names the
// destination (alias or user@alias), unless the connection opened with the
// greeting of `sshmuxctl ssh-config`'s ProxyCommand (greeting.ts), which
// names it with ssh's port; authentication is by public key only,
// against the authorized keys; each channel the client opens runs as a call
// through session-bridge. What the door does not carry (remote forwarding,
// agent and X11 forwarding, Unix-socket forwarding) is refused as sshd
// refuses what it does not allow, and logged with the reason.
import { rejectChannel, type AuthContext, type ClientInfo, type Connection, type RejectConnection, type ServerChannel, type Session, type TcpipRequestInfo } from '../ssh/ssh2';
import { codeName } from '../../proto';
import { MuxError } from '../errors';
import { fingerprint } from '../ssh/known-hosts';
import type { Logger } from '../log';
import { parseGreeting } from './greeting';
import type { AuthorizedKeys } from './keys';
import { BridgedChannel, destinationProblem, whenReachable, type BridgeContext, type PtyRequest } from './session-bridge';
import { LinkRtt } from '../ssh/link-window';

/** RFC 4254 section 5.1 reason codes. */
const OPEN_PROHIBITED = 1;
const OPEN_CONNECT_FAILED = 2;
const OPEN_RESOURCE_SHORTAGE = 4;
/** As sshd's MaxAuthTries. */
const MAX_AUTH_TRIES = 6;

export type AuthFailure = 'key_not_authorized' | 'bad_signature' | 'method_refused' | 'sha1_signature' | 'destination' | 'too_many_tries';

export interface FrontContext {
  bridge: BridgeContext;
  keys(): AuthorizedKeys;
  /** Channels one connection may hold open at once: maxCallsPerClient. */
  maxChannels(): number;
  accepting(): boolean;
  authFailed(reason: AuthFailure): void;
  log: Logger;
}

export class FrontConn {
  alive = true;
  /** Channels open or opening: what the status page counts as this client's sessions. */
  channels = 0;
  private destination = '';
  /** The destination's ssh -o style options: the port a greeting names. */
  private options: Record<string, string> = {};
  /**
   * What the greeting named. Such a client is OpenSSH behind a ControlMaster,
   * which shows the user neither an open failure's text nor the banner of a
   * refusal after it has logged in; so its sessions open at once and report
   * a failure as a failed ssh does: a line on stderr and exit status 255.
   */
  private readonly greeted: { destination: string; port: string } | undefined;
  private readonly calls = new Set<BridgedChannel>();
  private readonly checks = new Set<() => void>();
  /** The client's link: its round trip, timed on each session's first request, sizes the windows it sends in. */
  private readonly link = new LinkRtt();
  private failures = 0;
  /** The daemon is exiting: end the connection once its last channel has closed. */
  private closing = false;
  /** The destination was refused: the connection is ending, later attempts are not counted. */
  private refused = false;
  private readonly log: Logger;
  /** The socket under the connection, for a close that the client does not answer. */
  private readonly socket: ClientInfo['socket'];

  constructor(private readonly conn: Connection, info: ClientInfo, private readonly ctx: FrontContext, onGone: (c: FrontConn) => void) {
    this.log = ctx.log.child({ gatewayClient: info.ip ? `${info.ip}:${info.port}` : 'unix' });
    this.socket = info.socket;
    const greeting = parseGreeting(info.header.greeting);
    if (greeting instanceof Error) {
      this.log.warn({ err: greeting.message }, 'gateway: connection refused');
      this.refused = true;
      conn.end();
    }
    this.greeted = greeting instanceof Error ? undefined : greeting;
    conn.on('authentication', (auth) => this.authenticate(auth));
    conn.once('ready', () => this.log.debug({ destination: this.destination }, 'gateway: client authenticated'));
    conn.on('session', (accept, reject) => this.openSession(accept, reject));
    conn.on('tcpip', (accept, reject, req) => this.openTcp(accept, reject, req));
    conn.on('openssh.streamlocal', (_accept, reject) => this.refuse(reject, OPEN_PROHIBITED,
      'forwarding to Unix sockets is refused by the sshmux gateway; forward to a TCP port'));
    conn.on('request', (_accept, reject, name) => {
      // tcpip-forward (-R) and streamlocal-forward: a listener on a pooled connection
      // every client shares would outlive this client and route others' traffic.
      this.log.info({ request: name }, 'gateway: remote forwarding refused (pooled connections are shared)');
      reject?.();
    });
    conn.on('error', (err: Error) => this.log.debug({ err: err.message }, 'gateway: client connection error'));
    conn.once('close', () => {
      this.alive = false;
      for (const cancel of this.checks) cancel();
      for (const call of this.calls) call.gone();
      onGone(this);
    });
  }

  /** The grace period is over: the remaining commands get TERM, then KILL. */
  shutdown(): void {
    for (const call of this.calls) call.shutdown();
  }

  /**
   * The daemon is exiting: once every channel has said how it ended (within
   * `ms`), the connection closes, so the client reads its last output and
   * exit status rather than a dropped connection.
   */
  close(ms: number): Promise<void> {
    if (!this.alive) return Promise.resolve();
    this.closing = true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.socket.destroy(), ms);
      timer.unref();
      this.conn.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      if (this.channels === 0) this.conn.end();
    });
  }

  // ---- authentication -------------------------------------------------------

  private authenticate(auth: AuthContext): void {
    if (this.refused) return auth.reject([]);
    if (auth.method !== 'publickey') {
      // 'none' is every client's first question, not an attempt.
      if (auth.method !== 'none') this.failed(auth, 'method_refused', {}, `${auth.method} authentication is refused: public keys only`);
      return auth.reject(['publickey']);
    }
    const fp = fingerprint(auth.key.data);
    if (signsWithSha1(auth)) {
      // As OpenSSH since 8.8 (PubkeyAcceptedAlgorithms): RSA keys sign with rsa-sha2-256/512 instead.
      this.failed(auth, 'sha1_signature', { fingerprint: fp }, `${auth.key.algo} signatures (SHA-1) are refused: ` +
        'use a client that signs with rsa-sha2-256 or rsa-sha2-512 (OpenSSH 7.2 and later; JSch 0.1.5x does not), or an ECDSA or ed25519 key');
      return auth.reject(['publickey']);
    }
    const listed = this.ctx.keys().find(auth.key.data);
    if (!listed) {
      this.failed(auth, 'key_not_authorized', { fingerprint: fp }, 'key not in the gateway\'s authorized keys');
      return auth.reject(['publickey']);
    }
    // Without a signature the client only asks whether the key would do.
    if (!auth.signature) return auth.accept();
    if (listed.key.verify(auth.blob!, auth.signature, auth.hashAlgo) !== true) {
      this.failed(auth, 'bad_signature', { fingerprint: fp }, 'signature does not verify');
      return auth.reject(['publickey']);
    }
    const destination = this.greeted?.destination ?? auth.username;
    const options: Record<string, string> = this.greeted ? { port: this.greeted.port } : {};
    const problem = destinationProblem(this.ctx.bridge.agent, destination, options);
    if (problem) {
      // Checked only for an authorized key, so strangers cannot probe the daemon's hosts.
      this.failed(auth, 'destination', { fingerprint: fp }, problem.message);
      const named = this.greeted ? `the destination ${destination} port ${this.greeted.port}` : 'the user name names the destination host';
      auth.banner(`sshmux: ${named}: ${codeName(problem.code)}: ${problem.message}`);
      this.refused = true;
      auth.reject([]);
      this.conn.end();
      return;
    }
    this.destination = destination;
    this.options = options;
    this.log.debug({ fingerprint: fp, listedAt: listed.where, destination, ...options }, 'gateway: key accepted');
    auth.accept();
  }

  private failed(auth: AuthContext, reason: AuthFailure, fields: Record<string, string>, why: string): void {
    this.ctx.authFailed(reason);
    this.log.warn({ user: auth.username, method: auth.method, reason, ...fields, why }, 'gateway: authentication refused');
    if (++this.failures >= MAX_AUTH_TRIES) {
      this.ctx.authFailed('too_many_tries');
      this.log.warn({ user: auth.username, tries: this.failures }, 'gateway: too many authentication failures; disconnecting');
      setImmediate(() => this.conn.end());
    }
  }

  // ---- channels ---------------------------------------------------------------

  /** Counts a channel in, or refuses it when the daemon stops or the client holds too many. */
  private admit(reject: RejectConnection): (() => void) | undefined {
    if (!this.ctx.accepting()) {
      const stopping = MuxError.shuttingDown();
      this.refuse(reject, OPEN_CONNECT_FAILED, `${stopping.codeName}: ${stopping.message}`);
      return undefined;
    }
    if (this.channels >= this.ctx.maxChannels()) {
      this.refuse(reject, OPEN_RESOURCE_SHORTAGE, `this connection already has ${this.channels} channels open (maxCallsPerClient); ` +
        'use another connection or wait');
      return undefined;
    }
    this.channels++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.channels === 0 && this.closing) this.conn.end();
    };
  }

  /**
   * Runs `then` once the destination has a ready connection; a failed handshake
   * or deadline is the channel's open failure, with the sshmux code and message.
   */
  private whenReachable(reject: RejectConnection, release: () => void, then: () => void): void {
    const check = whenReachable(this.ctx.bridge.agent, this.destination, this.options);
    this.checks.add(check.cancel);
    check.ready.then(() => {
      this.checks.delete(check.cancel);
      if (this.alive) then();
    }, (err: MuxError) => {
      this.checks.delete(check.cancel);
      release();
      this.refuse(reject, OPEN_CONNECT_FAILED, `${codeName(err.code)}: ${err.message}`);
    });
  }

  private refuse(reject: RejectConnection, reason: number, message: string): void {
    if (!this.alive) return;
    this.log.debug({ reason: message }, 'gateway: channel refused');
    rejectChannel(reject, reason, message);
  }

  private openSession(accept: () => Session, reject: RejectConnection): void {
    const release = this.admit(reject);
    if (!release) return;
    if (this.greeted) this.runSession(accept(), release);
    else this.whenReachable(reject, release, () => this.runSession(accept(), release));
  }

  /** A session's requests: env and pty are kept for the exec, shell or subsystem that starts the call. */
  private runSession(session: Session, release: () => void): void {
    const env: Record<string, string> = {};
    let pty: PtyRequest | undefined;
    let call: BridgedChannel | undefined;
    // The client's first request on the session answers our open confirmation: a round trip of its link.
    const confirmedAt = performance.now();
    let timed = false;
    const timeRoundTrip = (): void => {
      if (!timed) this.link.sample(performance.now() - confirmedAt);
      timed = true;
    };
    for (const request of ['env', 'pty', 'exec', 'shell', 'subsystem'] as const) session.once(request, timeRoundTrip);
    const start = (kind: 'exec' | 'shell' | 'subsystem', command: string, accept: () => ServerChannel, reject?: () => void): void => {
      if (call || !this.alive) return reject?.();
      call = new BridgedChannel(this.ctx.bridge, this.destination, { kind, command, env, pty }, { link: this.link }, this.options);
      call.start(accept());
      this.calls.add(call);
    };
    session.on('env', (accept, reject, info) => {
      if (call) return reject?.();
      env[info.key] = info.val;
      accept?.();
    });
    session.on('pty', (accept, reject, info) => {
      if (call) return reject?.();
      pty = { term: info.term, cols: info.cols, rows: info.rows, width: info.width, height: info.height };
      accept?.();
    });
    session.on('window-change', (accept, _reject, info) => {
      if (call) call.resize(info.cols, info.rows, info.width, info.height);
      else if (pty) Object.assign(pty, { cols: info.cols, rows: info.rows, width: info.width, height: info.height });
      accept?.();
    });
    session.on('signal', (accept, _reject, info) => {
      call?.signal(info.name);
      accept?.();
    });
    session.on('x11', (_accept, reject) => {
      this.log.info('gateway: X11 forwarding refused (it would need a listener on the shared pooled connection)');
      reject?.();
    });
    session.on('auth-agent', (_accept, reject) => {
      this.log.info('gateway: agent forwarding refused (the pooled connections are shared by every client)');
      reject?.();
    });
    session.on('exec', (accept, reject, info) => start('exec', info.command, accept, reject));
    session.on('shell', (accept, reject) => start('shell', '', accept, reject));
    session.on('subsystem', (accept, reject, info) => start('subsystem', info.name, accept, reject));
    session.once('close', () => {
      release();
      if (!call) return; // ssh2 answers the close of a session that never started
      call.gone();
      this.calls.delete(call);
    });
  }

  /** direct-tcpip (ssh -L, -W, paramiko's open_channel): a TCP stream through the destination's pooled connection. */
  private openTcp(accept: () => ServerChannel, reject: RejectConnection, req: TcpipRequestInfo): void {
    const release = this.admit(reject);
    if (!release) return;
    this.whenReachable(reject, release, () => {
      const call: BridgedChannel = new BridgedChannel(this.ctx.bridge, this.destination, { kind: 'tcpip', host: req.destIP, port: req.destPort }, {
        link: this.link,
        accept: () => {
          const channel = accept();
          whenClientCloses(channel, () => {
            release();
            call.gone();
            this.calls.delete(call);
          });
          return channel;
        },
        refuse: (err) => {
          release();
          this.calls.delete(call);
          this.refuse(reject, OPEN_CONNECT_FAILED, `${codeName(err.code)}: ${err.message}`);
        },
      }, this.options);
      this.calls.add(call);
      call.start();
    });
  }
}

/**
 * Whether the client would sign with SHA-1: RSA under the name `ssh-rsa`
 * (ssh2 gives RSA under rsa-sha2-256/512 the hash name; under ssh-rsa none),
 * or DSA, which knows only SHA-1.
 */
function signsWithSha1(auth: AuthContext & { method: 'publickey' }): boolean {
  return (auth.key.algo === 'ssh-rsa' && !auth.hashAlgo) || auth.key.algo === 'ssh-dss';
}

/**
 * Calls `closed` once the client has closed a non-session channel (or its
 * connection died). ssh2 emits 'close' only after the readable side ended,
 * which never happens while we hold the channel paused for lack of stdin
 * credit; but it ends the channel's stderr writer as soon as the close
 * arrives, and the front door never writes stderr on such a channel.
 */
function whenClientCloses(channel: ServerChannel, closed: () => void): void {
  let done = false;
  const once = (): void => {
    if (done) return;
    done = true;
    closed();
  };
  channel.once('close', once);
  channel.stderr.once('finish', once);
}
