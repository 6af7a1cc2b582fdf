// The typed surface of patch 050 (patches/ssh2+1.17.0+050+channel-window.patch):
// a channel's receive window, set per channel. ssh2 grants every channel a
// fixed 2 MiB and more only once half is used; how big a window a link
// needs, and when to grow it, is decided in daemon/ssh/link-window.ts.
import type { ClientChannel, ServerChannel, SFTPWrapper } from 'ssh2';

/** What patch 050 adds to lib/Channel.js. */
interface ChannelModule {
  MAX_WINDOW: number;
  setReceiveWindow?: (channel: unknown, size: number, grantAt: number) => void;
}

/** A channel sshmux receives on: a session, a forwarding channel, an SFTP session, a front-door channel. */
export type ReceivingChannel = ClientChannel | ServerChannel | SFTPWrapper;

interface ChannelState {
  incoming: { window: number };
  _windowSize?: number;
  _grantAt?: number;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const channelModule = require('ssh2/lib/Channel.js') as ChannelModule;

/** ssh2's window, which every channel opens with: 2 MiB. */
export const BASE_WINDOW: number = channelModule.MAX_WINDOW;

/** Whether the installed ssh2 carries patch 050. */
export function receiveWindowsSettable(): boolean {
  return typeof channelModule.setReceiveWindow === 'function';
}

/**
 * Sets how much the other side may send on `channel` ahead of what has been
 * read (`size`), and how low the window it has left may run before more is
 * granted (`grantAt`). A larger size is granted at once unless the reader is
 * behind; a smaller one takes effect as the window is used up. Without the
 * patch (receiveWindowsSettable() false) it does nothing.
 */
export function setReceiveWindow(channel: ReceivingChannel, size: number, grantAt: number): void {
  channelModule.setReceiveWindow?.(channel, size, grantAt);
}

/** The window size `channel` grants (BASE_WINDOW unless set). */
export function receiveWindowSize(channel: ReceivingChannel): number {
  return (channel as unknown as ChannelState)._windowSize ?? BASE_WINDOW;
}

/** How much the other side may still send on `channel` now. */
export function receiveWindowLeft(channel: ReceivingChannel): number {
  return (channel as unknown as ChannelState).incoming.window;
}
