// What the front door needs from ssh2's Server that its public API does not
// offer, in one place, checked at start-up so that an ssh2 upgrade that
// moves them fails loudly instead of silently sending blank errors: a
// channel-open failure with a description (reject() always sends an empty
// one, and the description is what asyncssh's ChannelOpenError and OpenSSH's
// "open failed" show), a user-authentication banner in the middle of
// authentication (the only text a client shows before it is logged in), the
// close reply for a session closed before it started (ssh2 sends none and
// keeps the channel number), and the socket under a connection.
import type { Socket } from 'node:net';
import type { Connection, RejectConnection, ServerChannel, Session } from 'ssh2';

// Private modules: their shape is ssh2's to change, hence the check below.
const protocolUtils = require('ssh2/lib/protocol/utils.js') as { sendPacket(proto: unknown, packet: Buffer): void };
const ProtocolClass = require('ssh2/lib/protocol/Protocol.js') as { prototype: Record<string, unknown> };

const USERAUTH_BANNER = 53;

interface PacketWriter {
  allocStart: number;
  alloc(size: number): Buffer;
  finalize(packet: Buffer): Buffer;
}

interface Protocol {
  channelOpenFail(recipient: number, reason: number, description: string): void;
  channelClose(recipient: number): void;
  _packetRW: { write: PacketWriter };
}

interface Internals {
  _protocol: Protocol;
  _chanMgr: { remove(id: number): void };
  _sock: Socket;
}

interface SessionInternals {
  _channel: unknown;
  _chanInfo: { incoming: { id: number; state: string }; outgoing: { id: number; state: string } };
}

/** Throws if this ssh2 no longer has what the functions below reach into. */
export function checkServerInternals(): void {
  const missing: string[] = [];
  if (typeof protocolUtils.sendPacket !== 'function') missing.push('protocol/utils sendPacket');
  for (const m of ['channelOpenFail', 'channelClose']) if (typeof ProtocolClass.prototype[m] !== 'function') missing.push(`Protocol.${m}`);
  if (missing.length) {
    throw new Error(`the installed ssh2 lacks ${missing.join(', ')}, which the SSH front door uses; install the ssh2 version in package-lock.json`);
  }
}

function internals(conn: Connection): Internals {
  return conn as unknown as Internals;
}

/** The socket a connection runs on (ssh2 creates the connection from it and does not say which). */
export function socketOf(conn: Connection): Socket {
  return internals(conn)._sock;
}

/**
 * Rejects a channel open with `description`. reject() sends the failure
 * synchronously through channelOpenFail, so the description is swapped in
 * for that one call.
 */
export function rejectWithMessage(conn: Connection, reject: RejectConnection, reason: number, description: string): void {
  const proto = internals(conn)._protocol;
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
  const proto = internals(conn)._protocol;
  const message = text.endsWith('\r\n') ? text : `${text}\r\n`;
  const len = Buffer.byteLength(message);
  const writer = proto._packetRW.write;
  const p = writer.allocStart;
  const packet = writer.alloc(1 + 4 + len + 4);
  packet[p] = USERAUTH_BANNER;
  packet.writeUInt32BE(len, p + 1);
  packet.write(message, p + 5, len, 'utf8');
  packet.writeUInt32BE(0, p + 5 + len); // empty language tag
  protocolUtils.sendPacket(proto, writer.finalize(packet));
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
  const { _protocol: proto, _chanMgr: channels } = internals(conn);
  proto.channelClose(s._chanInfo.outgoing.id);
  channels.remove(s._chanInfo.incoming.id);
}

/**
 * Calls `closed` once the client has closed a non-session channel (or its
 * connection died). ssh2 emits 'close' only after the readable side ended,
 * which never happens while we hold the channel paused for lack of stdin
 * credit; but it ends the channel's stderr writer as soon as the close
 * arrives, and the front door never writes stderr on such a channel.
 */
export function whenClientCloses(channel: ServerChannel, closed: () => void): void {
  let done = false;
  const once = (): void => {
    if (done) return;
    done = true;
    closed();
  };
  channel.once('close', once);
  channel.stderr.once('finish', once);
}
