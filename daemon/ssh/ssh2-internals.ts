// Every use of ssh2's private internals, in one place, checked at start-up.
// ssh2 is pinned to an exact version in package.json because of these; a
// version that moved them fails checkSsh2Internals() when the daemon starts,
// with a message naming what is missing, instead of misbehaving later.
//
// Why each is needed:
// - a keepalive round trip with a callback (Client._callbacks + _protocol.ping):
//   sshd frees a session only after a round trip following our close;
// - CHANNEL_REQUEST "signal" after our EOF (_client._protocol.signal): ssh2's
//   channel.signal() refuses once the channel is not writable, sshd does not;
// - whether an SFTP session's channel is still open (outgoing.state);
// - a command's EOF sent with its exec request, in the same write
//   (_protocol.exec, _protocol.channelEOF, _chanMgr): ssh2 hands out the
//   channel only once the server has answered, a write and a turn later;
// - our CHANNEL_CLOSE in reply to the server's, held for the connection's
//   next channel open or keepalive (_protocol._handlers.CHANNEL_CLOSE,
//   _protocol.channelClose, session, directTcpip, ping): ssh2 sends it at
//   once, a write of its own per session;
// - a session channel opened ahead of need and given to the next session
//   (_chanMgr, _handlers.CHANNEL_OPEN_CONFIRMATION, _protocol.session,
//   Channel's MAX_WINDOW and PACKET_SIZE): ssh2 opens a channel only when
//   asked for a session, a round trip before the command can start.
// And for the SSH front door, ssh2's Server (daemon/gateway/):
// - a channel-open failure with a description (Protocol.channelOpenFail):
//   reject() always sends an empty one, and the description is what
//   OpenSSH's "open failed" and asyncssh's ChannelOpenError show;
// - a user-authentication banner mid-authentication (_packetRW and
//   protocol/utils sendPacket): the only text a client shows before login;
// - the close reply for a session closed before it started (channelClose,
//   _chanMgr): ssh2 sends none and keeps the channel number;
// - the socket under a connection (_sock), to drop one that never logs in.
import type { Socket } from 'node:net';
import { Client, type ClientCallback, type Connection, type ExecOptions, type RejectConnection, type Session } from 'ssh2';

interface ProtocolInternals {
  _handlers: Record<string, ((...args: unknown[]) => void) | undefined>;
  ping(): void;
  channelClose(channelId: number): void;
  session(...args: unknown[]): void;
  directTcpip(...args: unknown[]): void;
  signal(channelId: number, name: string): void;
  exec(channelId: number, command: string, wantReply: boolean): void;
  channelEOF(channelId: number): void;
}
interface ChannelManagerInternals {
  _channels: Record<number, unknown>;
  add(value: unknown): number;
  get(id: number): unknown;
  update(id: number, value: unknown): void;
  remove(id: number): void;
}
interface ClientInternals {
  _callbacks: Array<() => void>;
  _protocol: ProtocolInternals;
  _chanMgr: ChannelManagerInternals;
}
interface OpenConfirmation {
  recipient: number;
  sender: number;
}
interface ChannelInternals {
  outgoing: { id: number; state: string };
  _client: { _protocol: ProtocolInternals };
}

/** Calls done once the server answers a keepalive request (ssh2 matches global replies to callbacks in order). */
export function roundTrip(client: Client, done: () => void): void {
  const c = client as unknown as ClientInternals;
  c._callbacks.push(done);
  c._protocol.ping();
}

/** Sends a signal request on a channel whatever its writable state; no-op once our side has closed it. */
export function signalChannel(channel: unknown, name: string): void {
  const c = channel as ChannelInternals;
  if (c.outgoing.state === 'open' || c.outgoing.state === 'eof') c._client._protocol.signal(c.outgoing.id, name);
}

/** Whether our side of a channel (a session or SFTP) is still open. */
export function channelOpen(channel: unknown): boolean {
  return (channel as ChannelInternals).outgoing.state === 'open';
}

/** Per connection and command line: how many execs in flight want their EOF sent with the request, and how many not. */
const eofPlans = new WeakMap<Client, Map<string, { withEof: number; without: number }>>();

/**
 * client.exec(), and with `closeStdin` the channel's EOF right behind the
 * exec request, in the same write, rather than on its own once the server
 * has answered (a command without stdin; saves a write per exec). ssh2
 * gives out the channel only with the answer, so the EOF is sent from
 * inside the request: the connection's Protocol.exec is wrapped, and knows
 * which exec it sends only by the command line. When execs of one command
 * line in flight differ in whether they want the EOF, none gets it early:
 * each then ends its stdin once it has its channel, as ssh2 does anyway.
 */
export function execClosingStdin(client: Client, command: string, opts: ExecOptions, closeStdin: boolean, cb: ClientCallback): void {
  const plans = eofPlansFor(client);
  let plan = plans.get(command);
  if (!plan) plans.set(command, (plan = { withEof: 0, without: 0 }));
  const p = plan;
  if (closeStdin) p.withEof++;
  else p.without++;
  let settled = false;
  const settle = (): void => {
    if (settled) return;
    settled = true;
    if (closeStdin) p.withEof--;
    else p.without--;
    if (p.withEof === 0 && p.without === 0 && plans.get(command) === p) plans.delete(command);
  };
  try {
    client.exec(command, opts, (err, channel) => {
      settle();
      cb(err, channel);
    });
  } catch (err) {
    settle();
    throw err;
  }
}

function eofPlansFor(client: Client): Map<string, { withEof: number; without: number }> {
  let plans = eofPlans.get(client);
  if (plans) return plans;
  const plansOfClient = new Map<string, { withEof: number; without: number }>();
  eofPlans.set(client, plansOfClient);
  const c = client as unknown as ClientInternals;
  const protocol = c._protocol;
  const sendExec = protocol.exec;
  protocol.exec = function (channelId: number, command: string, wantReply: boolean): void {
    sendExec.call(this, channelId, command, wantReply);
    const plan = plansOfClient.get(command);
    if (!plan || plan.withEof === 0 || plan.without > 0) return;
    const channels = c._chanMgr._channels;
    for (const localId in channels) {
      const ch = channels[localId] as Partial<ChannelInternals>;
      if (ch.outgoing?.id !== channelId) continue;
      if (ch.outgoing.state !== 'open') return;
      // As ssh2's own eof() does: its end() then sends nothing more.
      ch.outgoing.state = 'eof';
      this.channelEOF(channelId);
      return;
    }
  };
  return plansOfClient;
}

/**
 * Holds the CHANNEL_CLOSE ssh2 sends in reply to the server's, and sends it
 * with the connection's next channel open or keepalive request, in the same
 * write, or `delayMs` later if none comes: a session's last packet no longer
 * costs a write of its own. Closes we start are sent at once.
 *
 * sshd frees a session only once it has our close, so a held close keeps
 * the slot counted a little longer. The pool already counts a closed slot
 * as held until a keepalive round trip (Connection.reclaimIfFull), and that
 * keepalive sends what is held first, so its reply still proves sshd let
 * every closed slot go; a channel open sends them first too, so sshd sees
 * the closes before the open.
 */
export function holdCloseReplies(client: Client, delayMs: number): void {
  const protocol = (client as unknown as ClientInternals)._protocol;
  const onServerClose = protocol._handlers.CHANNEL_CLOSE;
  if (typeof onServerClose !== 'function') return;
  const sendClose = protocol.channelClose;
  const held: number[] = [];
  let replying = false;
  let timer: NodeJS.Timeout | undefined;
  const sendHeld = (): void => {
    const ids = held.splice(0);
    for (const id of ids) sendClose.call(protocol, id);
  };
  const sendHeldLater = (): void => {
    try {
      sendHeld();
    } catch {
      // The connection ended meanwhile: sshd has let the sessions go.
    }
  };
  protocol._handlers.CHANNEL_CLOSE = (...args: unknown[]): void => {
    replying = true;
    try {
      onServerClose(...args);
    } finally {
      replying = false;
    }
  };
  protocol.channelClose = function (channelId: number): void {
    if (!replying) {
      sendClose.call(this, channelId);
      return;
    }
    held.push(channelId);
    if (held.length > 1) return;
    if (timer) timer.refresh();
    else {
      timer = setTimeout(sendHeldLater, delayMs);
      timer.unref();
    }
  };
  for (const name of ['session', 'directTcpip', 'ping'] as const) {
    const send = protocol[name] as (...args: unknown[]) => void;
    protocol[name] = function (...args: unknown[]): void {
      if (held.length) sendHeld();
      send.apply(this, args);
    };
  }
}

/**
 * A session channel opened before anyone asks for one, on one connection,
 * so the next session there (exec, shell, subsystem or SFTP) skips the open
 * round trip: its requests go out at once, in the same write as the open
 * of the spare after it. ssh2 is left to build the channel as usual: the
 * spare's confirmation is kept, and replayed to the next channel open ssh2
 * makes inside claim(), under the spare's channel number.
 *
 * sshd counts a spare against MaxSessions like any session; the owner
 * counts it as held while it opens and as free once it is ready.
 */
export class SpareSession {
  state: 'none' | 'opening' | 'ready' | 'unavailable' = 'none';
  private localId = -1;
  private confirmation: [unknown, OpenConfirmation] | undefined;
  private claiming = false;
  private readonly channels: ChannelManagerInternals;
  private readonly protocol: ProtocolInternals;

  constructor(
    client: Client,
    /** The spare was refused or lost: `err.reason` 2 is sshd's MaxSessions. */
    private readonly onLost: (err: Error & { reason?: unknown }, wasReady: boolean) => void,
    private readonly onReady: () => void,
  ) {
    const c = client as unknown as ClientInternals;
    this.channels = c._chanMgr;
    this.protocol = c._protocol;
    const handlers = this.protocol._handlers;
    const confirm = handlers.CHANNEL_OPEN_CONFIRMATION;
    // Pinned ssh2 has it; without it (checkSsh2Internals says so at start) no spare opens.
    if (typeof confirm !== 'function') {
      this.state = 'unavailable';
      return;
    }
    handlers.CHANNEL_OPEN_CONFIRMATION = (proto: unknown, info: unknown): void => {
      const confirmation = info as OpenConfirmation;
      if (this.state !== 'opening' || confirmation.recipient !== this.localId) {
        confirm(proto, info);
        return;
      }
      this.confirmation = [proto, confirmation];
      this.state = 'ready';
      this.onReady();
    };
    const sendOpen = this.protocol.session;
    const spare = this;
    this.protocol.session = function (localId: unknown, ...rest: unknown[]): void {
      if (!spare.claiming || spare.state !== 'ready') {
        sendOpen.call(this, localId, ...rest);
        return;
      }
      // The channel ssh2 just reserved for this open is given the spare's number instead.
      spare.claiming = false;
      const opener = spare.channels.get(localId as number);
      spare.channels.remove(localId as number);
      spare.channels.update(spare.localId, opener);
      const [proto, confirmation] = spare.confirmation!;
      spare.reset();
      confirm(proto, confirmation);
    };
  }

  /** Sends the open; the caller checked the connection has a slot for it. */
  open(): void {
    if (this.state !== 'none') return;
    const lost = (err?: Error): void => {
      if (!err || this.localId !== id) return;
      const wasReady = this.state === 'ready';
      const sender = this.confirmation?.[1].sender;
      this.reset();
      // sshd closed a spare it had confirmed: it waits for our close as for any channel.
      if (wasReady && sender !== undefined) {
        try {
          this.protocol.channelClose(sender);
        } catch {
          // The connection is gone.
        }
      }
      this.onLost(err, wasReady);
    };
    const id = this.channels.add(Object.assign(lost, { type: 'session' }));
    if (id === -1) return;
    this.localId = id;
    this.state = 'opening';
    this.protocol.session(id, channelConstants().MAX_WINDOW, channelConstants().PACKET_SIZE);
  }

  /**
   * Calls `openSession` (client.exec, shell, subsys or sftp), and the channel
   * open it makes takes the ready spare instead of going to the server.
   */
  claim(openSession: () => void): void {
    this.claiming = true;
    try {
      openSession();
    } finally {
      this.claiming = false;
    }
  }

  private reset(): void {
    this.state = 'none';
    this.localId = -1;
    this.confirmation = undefined;
  }
}

let constants: { MAX_WINDOW: number; PACKET_SIZE: number } | undefined;
function channelConstants(): { MAX_WINDOW: number; PACKET_SIZE: number } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (constants ??= require('ssh2/lib/Channel.js') as { MAX_WINDOW: number; PACKET_SIZE: number });
}

// ---- ssh2's Server: the SSH front door ------------------------------------

const USERAUTH_BANNER = 53;

interface ServerProtocolInternals {
  channelOpenFail(recipient: number, reason: number, description: string): void;
  channelClose(recipient: number): void;
  _packetRW: { write: { allocStart: number; alloc(size: number): Buffer; finalize(packet: Buffer): Buffer } };
}
interface ServerConnectionInternals {
  _protocol: ServerProtocolInternals;
  _chanMgr: { remove(id: number): void };
  _sock: Socket;
}
interface SessionInternals {
  _channel: unknown;
  _chanInfo: { incoming: { id: number }; outgoing: { id: number; state: string } };
}

function serverInternals(conn: Connection): ServerConnectionInternals {
  return conn as unknown as ServerConnectionInternals;
}

/** The socket a front-door connection runs on (ssh2 creates the connection from it and does not say which). */
export function socketOf(conn: Connection): Socket | undefined {
  return serverInternals(conn)._sock;
}

/**
 * Rejects a channel open with `description`. reject() sends the failure
 * synchronously through channelOpenFail, so the description is swapped in
 * for that one call.
 */
export function rejectWithMessage(conn: Connection, reject: RejectConnection, reason: number, description: string): void {
  const proto = serverInternals(conn)._protocol;
  const original = proto.channelOpenFail;
  proto.channelOpenFail = (recipient: number) => original.call(proto, recipient, reason, description);
  try {
    reject();
  } finally {
    proto.channelOpenFail = original;
  }
}

/** SSH_MSG_USERAUTH_BANNER: text the client shows while it authenticates (RFC 4252 section 5.4). */
export function sendAuthBanner(conn: Connection, text: string): void {
  const proto = serverInternals(conn)._protocol;
  const message = text.endsWith('\r\n') ? text : `${text}\r\n`;
  const len = Buffer.byteLength(message);
  const writer = proto._packetRW.write;
  const p = writer.allocStart;
  const packet = writer.alloc(1 + 4 + len + 4);
  packet[p] = USERAUTH_BANNER;
  packet.writeUInt32BE(len, p + 1);
  packet.write(message, p + 5, len, 'utf8');
  packet.writeUInt32BE(0, p + 5 + len); // empty language tag
  protocolUtils().sendPacket(proto, writer.finalize(packet));
}

/**
 * Answers the client's close of a session that never started (no exec,
 * shell or subsystem): ssh2 emits 'close' on it but neither replies nor frees
 * the channel number, so a client that waits for the reply would wait forever.
 */
export function closeUnstartedSession(conn: Connection, session: Session): void {
  const s = session as unknown as SessionInternals;
  if (s._channel || s._chanInfo.outgoing.state === 'closed') return;
  s._chanInfo.outgoing.state = 'closed';
  const { _protocol: proto, _chanMgr: channels } = serverInternals(conn);
  proto.channelClose(s._chanInfo.outgoing.id);
  channels.remove(s._chanInfo.incoming.id);
}

function protocolUtils(): { sendPacket(proto: unknown, packet: Buffer): void } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('ssh2/lib/protocol/utils.js') as { sendPacket(proto: unknown, packet: Buffer): void };
}

/** Throws, naming what is missing, when the installed ssh2 lacks an internal used above. */
export function checkSsh2Internals(): void {
  const missing: string[] = [];
  // Set to an array by connect(); the constructor declares it.
  if (!Object.prototype.hasOwnProperty.call(new Client(), '_callbacks')) missing.push('Client._callbacks');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Protocol = require('ssh2/lib/protocol/Protocol.js') as { prototype?: Partial<ProtocolInternals> };
  if (typeof Protocol.prototype?.ping !== 'function') missing.push('Protocol.prototype.ping');
  if (typeof Protocol.prototype?.signal !== 'function') missing.push('Protocol.prototype.signal');
  if (typeof Protocol.prototype?.exec !== 'function') missing.push('Protocol.prototype.exec');
  if (typeof Protocol.prototype?.channelEOF !== 'function') missing.push('Protocol.prototype.channelEOF');
  for (const name of ['session', 'directTcpip'] as const) {
    if (typeof Protocol.prototype?.[name] !== 'function') missing.push(`Protocol.prototype.${name}`);
  }
  const handlers = { CHANNEL_CLOSE: () => {}, CHANNEL_OPEN_CONFIRMATION: () => {} };
  const ProtocolClass = Protocol as unknown as new (config: object) => Partial<ProtocolInternals>;
  if (new ProtocolClass({ onWrite() {}, onError() {}, onHeader() {}, onHandshakeComplete() {}, messageHandlers: handlers })._handlers !== handlers) missing.push('Protocol._handlers');
  // connect() sets Client._chanMgr to one of these.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { ChannelManager } = require('ssh2/lib/utils.js') as { ChannelManager?: new (client: unknown) => Partial<ClientInternals['_chanMgr']> };
  const channelManager = typeof ChannelManager === 'function' ? new ChannelManager({}) : undefined;
  if (typeof channelManager?._channels !== 'object') missing.push('ChannelManager._channels');
  for (const name of ['add', 'get', 'update', 'remove'] as const) {
    if (typeof channelManager?.[name] !== 'function') missing.push(`ChannelManager.${name}`);
  }
  if (typeof channelConstants().MAX_WINDOW !== 'number' || typeof channelConstants().PACKET_SIZE !== 'number') missing.push('Channel MAX_WINDOW, PACKET_SIZE');
  const serverProtocol = Protocol.prototype as Partial<ServerProtocolInternals> | undefined;
  if (typeof serverProtocol?.channelOpenFail !== 'function') missing.push('Protocol.prototype.channelOpenFail');
  if (typeof serverProtocol?.channelClose !== 'function') missing.push('Protocol.prototype.channelClose');
  if (typeof protocolUtils().sendPacket !== 'function') missing.push('protocol/utils sendPacket');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Channel } = require('ssh2/lib/Channel.js') as { Channel: new (client: unknown, info: unknown) => Partial<ChannelInternals> };
  const probe = new Channel({}, { type: 'session', incoming: {}, outgoing: { id: 0, state: 'open' } });
  if (probe.outgoing?.state !== 'open') missing.push('Channel.outgoing');
  if (missing.length) {
    const version = (require('ssh2/package.json') as { version: string }).version;
    throw new Error(`ssh2 ${version} lacks internals sshmuxd relies on (${missing.join(', ')}); install the version package.json pins`);
  }
}

/**
 * Whether ssh2 runs its ciphers through its optional C++ binding, built at
 * install when npm may run ssh2's install script (package.json allowScripts)
 * and a compiler is there. Without it, AES-GCM creates a Node Decipher per
 * packet and ChaCha20-Poly1305 runs in JavaScript: the same bytes, more CPU.
 */
export function ssh2NativeCrypto(): boolean {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('ssh2/lib/protocol/crypto.js') as { bindingAvailable?: boolean }).bindingAvailable === true;
}
