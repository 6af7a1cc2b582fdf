// A pooled connection's TCP socket, read into one block of memory that every
// read uses again (net's `onread`), instead of a new Buffer per read.
//
// Streaming 1 GiB used to allocate 1 GiB of short-lived Buffers here (and
// half as much again where ssh2 gathered packets split across reads). They
// died young, but V8 counts such memory against its limit for a full
// collection, and started one every few tens of MB: a third of the daemon's
// CPU, which no flag on Node 22 and later took away (docs/hot-path.md).
//
// The bytes go to ssh2's readBorrowed() (patch 017), which copies what it
// keeps and lends channel data to a reader that copies it at once (the
// client's FrameWriter); so nothing refers to the block once a read has
// been handled, and one block serves every connection: reads are handled
// one at a time, each before the next lands. Until the client is ready the
// bytes are copied into the socket's stream as before, for ssh2's own
// reading and the dialer's banner watch.
import * as net from 'node:net';
import type { Client } from './ssh2';

/**
 * Emitted by the socket (with the byte count) for each read lent to ssh2:
 * such bytes never pass through the stream, so 'data' does not fire for
 * them, and what watches the link for silence listens for this too.
 */
export const LENT_READ = 'sshmux-lent-read';

/** The most one read takes: a few SSH packets of 32 KiB. */
export const READ_BUFFER_SIZE = 64 * 1024;
const readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);

export interface BorrowingSocket {
  socket: net.Socket;
  /** From now on, reads go to `client` as borrowed bytes (once the stream holds nothing still unread). */
  lendTo(client: Client): void;
}

export function connectBorrowing(opts: { host: string; port: number }): BorrowingSocket {
  let client: Client | undefined;
  const socket: net.Socket = net.connect({
    host: opts.host,
    port: opts.port,
    onread: {
      buffer: readBuffer,
      callback: (n: number, buf: Uint8Array): boolean => {
        const bytes = Buffer.from(buf.buffer, buf.byteOffset, n);
        if (client && socket.readableLength === 0) {
          client.readBorrowed(bytes);
          socket.emit(LENT_READ, n);
          return true;
        }
        // Returning false stops reading until the stream is read again.
        return socket.push(Buffer.from(bytes));
      },
    },
  });
  return { socket, lendTo: (c) => (client = c) };
}
