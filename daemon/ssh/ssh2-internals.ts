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
// - whether an SFTP session's channel is still open (outgoing.state).
import { Client } from 'ssh2';

interface ProtocolInternals {
  ping(): void;
  signal(channelId: number, name: string): void;
}
interface ClientInternals {
  _callbacks: Array<() => void>;
  _protocol: ProtocolInternals;
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

/** Throws, naming what is missing, when the installed ssh2 lacks an internal used above. */
export function checkSsh2Internals(): void {
  const missing: string[] = [];
  // Set to an array by connect(); the constructor declares it.
  if (!Object.prototype.hasOwnProperty.call(new Client(), '_callbacks')) missing.push('Client._callbacks');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Protocol = require('ssh2/lib/protocol/Protocol.js') as { prototype?: Partial<ProtocolInternals> };
  if (typeof Protocol.prototype?.ping !== 'function') missing.push('Protocol.prototype.ping');
  if (typeof Protocol.prototype?.signal !== 'function') missing.push('Protocol.prototype.signal');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Channel } = require('ssh2/lib/Channel.js') as { Channel: new (client: unknown, info: unknown) => Partial<ChannelInternals> };
  const probe = new Channel({}, { type: 'session', incoming: {}, outgoing: { id: 0, state: 'open' } });
  if (probe.outgoing?.state !== 'open') missing.push('Channel.outgoing');
  if (missing.length) {
    const version = (require('ssh2/package.json') as { version: string }).version;
    throw new Error(`ssh2 ${version} lacks internals sshmuxd relies on (${missing.join(', ')}); install the version package.json pins`);
  }
}
