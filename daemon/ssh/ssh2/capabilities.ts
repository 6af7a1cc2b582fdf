// What each ssh2 patch does, checked by doing it: a patched ssh2 client
// against a patched ssh2 server, in this process, over loopback. The daemon
// runs every check at start and refuses to start when one fails, naming the
// capability and its patch (an install whose patches did not apply, or an
// ssh2 that behaves otherwise, fails there and not later on a host). The
// unit tier runs them too, and runs them against ssh2 without the patches,
// where each must fail: a check that cannot fail checks nothing.
//
// The checks name ssh2's private members only where a behaviour has no
// public trace (a freed channel number); that is allowed here, in the seam.
/* eslint-disable @typescript-eslint/no-require-imports */
import * as net from 'node:net';
import * as path from 'node:path';
import type {
  AuthContext, Client as ClientType, ClientChannel, ClientInfo, ConnectConfig, Connection, ExecOptions, ServerChannel, ServerConfig, Session,
} from 'ssh2';
import type * as Ssh2 from 'ssh2';
import { makeCertificateFixture, runCertificateCheck, type CertificateCheckResult } from './certificates';

/** ssh2 as loaded from one directory: the installed (patched) one, or a pristine copy in the tests. */
interface Ssh2Module {
  Client: typeof Ssh2.Client;
  Server: typeof Ssh2.Server;
  utils: typeof Ssh2.utils;
  paddingBlockFills?: () => number;
  setReceiveWindow?: (channel: unknown, size: number, grantAt: number) => void;
}

export class Ssh2CapabilityError extends Error {
  override name = 'Ssh2CapabilityError';
  constructor(readonly capability: string, readonly patch: string, problem: string) {
    super(`ssh2 lacks the capability "${capability}" (daemon/ssh/ssh2/patches/*+${patch}+${capability}.patch): ${problem}. ` +
      'The patches are applied at install: reinstall with npm ci, or see daemon/ssh/ssh2/README.md');
  }
}

/** A connection made by the kit, with what each side's ssh2 logged of the packets it read and wrote (ssh2's `debug` option). */
interface Pair {
  client: ClientType;
  /** The server's debug lines: 'Inbound: CHANNEL_CLOSE (r:0)', ... */
  serverLog: string[];
  clientLog: string[];
}

interface Kit {
  /**
   * Connects a client to a server whose connections `onConnection` handles,
   * and waits for the client to be ready. `authenticate` decides each
   * authentication request (default: accept); `onClient` sees the client
   * before it connects; `extra.server` adds to the server's config, and
   * `extra.greeting` is written on the client's socket before ssh2 speaks.
   */
  connect(onConnection: (conn: Connection, info: ClientInfo) => void, config?: Partial<ConnectConfig> | ((port: number) => Partial<ConnectConfig>),
    authenticate?: (ctx: AuthContext) => void, onClient?: (c: ClientType) => void, hostKeys?: string[],
    extra?: { server?: Partial<ServerConfig>; greeting?: string }): Promise<Pair>;
  /** Resolves when `until` is true, checking on every turn of the event loop; rejects with `what` after the deadline. */
  waitFor(what: string, until: () => boolean): Promise<void>;
  /** Rejects with `what` if `p` has not settled by the deadline. */
  within<T>(what: string, p: Promise<T>): Promise<T>;
  /** The deadline of every wait, in ms. */
  timeoutMs: number;
  /** client.exec(), its answer awaited within the deadline. */
  exec(client: ClientType, command: string, opts?: ExecOptions): Promise<ClientChannel>;
  ssh2: Ssh2Module;
}

interface Capability {
  name: string;
  /** The patch's sequence number. */
  patch: string;
  check(kit: Kit): Promise<void>;
}

/** Accepts `none` authentication and every session; `exec` runs nothing: the server-side stream is handed to `onExec`. */
function execServer(onExec: (stream: ServerChannel, command: string, session: Session) => void, onSession?: (session: Session) => void) {
  return (conn: Connection): void => {
    conn.on('session', (accept) => {
      const session = accept();
      onSession?.(session);
      session.on('exec', (acceptExec, _reject, info) => onExec(acceptExec(), info.command, session));
    });
  };
}

/** The checks. Each runs on a connection of its own. */
const CAPABILITIES: Capability[] = [
  {
    name: 'connection-socket', patch: '033',
    async check(kit) {
      let socket: unknown;
      let port = -1;
      const { client } = await kit.connect((_conn, info) => {
        socket = info.socket;
        port = info.port;
      });
      client.end();
      if (!(socket instanceof net.Socket) || socket.remotePort !== port) throw new Error('the connection event\'s info has no socket');
    },
  },
  {
    name: 'round-trip', patch: '010',
    async check(kit) {
      const { client } = await kit.connect(() => {});
      if (typeof client.ping !== 'function') throw new Error('Client has no ping()');
      await kit.within('the keepalive\'s reply never called back', new Promise<void>((resolve) => client.ping(resolve)));
    },
  },
  {
    name: 'exec-eof', patch: '013',
    async check(kit) {
      const { client, serverLog } = await kit.connect(execServer((stream) => stream.resume()));
      await kit.exec(client, 'true', { closeStdin: true });
      await kit.waitFor('no EOF reached the server for an exec with closeStdin', () => serverLog.some((l) => l.startsWith('Inbound: CHANNEL_EOF')));
    },
  },
  {
    name: 'signal-after-eof', patch: '011',
    async check(kit) {
      const { client, serverLog } = await kit.connect(execServer((stream) => stream.resume()));
      const ch = await kit.exec(client, 'sleep 9', { closeStdin: true });
      await kit.waitFor('no EOF reached the server', () => serverLog.some((l) => l.startsWith('Inbound: CHANNEL_EOF')));
      ch.signal('TERM');
      await kit.waitFor('a signal sent after our EOF never reached the server', () => serverLog.some((l) => /^Inbound: CHANNEL_REQUEST \(r:\d+, signal: TERM\)/.test(l)));
    },
  },
  {
    name: 'quiet-destroy', patch: '012',
    async check(kit) {
      // The server's EOF comes well before its exit status and close, as from a loaded sshd.
      let server: ServerChannel | undefined;
      const { client, serverLog } = await kit.connect(execServer((stream) => {
        server = stream;
        stream.resume();
        stream.write('out');
        stream.eof(); // end() would close the channel too
      }));
      let lateEnds = 0;
      // Watched from exec's callback, before the server's EOF (sent at once) is read: later, on a
      // loaded machine, ssh2 may already have ended the channel on it, and our own end() would
      // count as late.
      const ch = await kit.within('the exec whose EOF came at once was never answered', new Promise<ClientChannel>((resolve, reject) => {
        client.exec('true', { closeStdin: true }, (err, channel) => {
          if (err) return reject(err);
          const end = channel.end;
          channel.end = function (this: ClientChannel, ...args: unknown[]) {
            if (this.writableFinished) lateEnds++;
            return (end as (...a: unknown[]) => ClientChannel).apply(this, args);
          } as ClientChannel['end'];
          channel.end();
          channel.resume();
          resolve(channel);
        });
      }));
      await kit.within('the server\'s EOF never ended the channel\'s output', new Promise((resolve) => (ch.readableEnded ? resolve(undefined) : ch.once('end', resolve))));
      // Node destroys the channel on a later turn.
      await new Promise((resolve) => setTimeout(resolve, 20));
      if (lateEnds > 0) throw new Error('destroy() ends a channel whose writable side had already finished');
      if (countLines(serverLog, CLOSE_READ) > 0) throw new Error('destroy() closes a channel both sides have ended, a write of its own');
      const serverSideClosed = new Promise((resolve) => server!.once('close', resolve));
      server!.exit(0);
      server!.close();
      await kit.within('the channel never closed', new Promise((resolve) => ch.once('close', resolve)));
      // Our CLOSE is then the reply to the server's, sent once.
      await kit.within('our CLOSE never reached the server', serverSideClosed);
      if (countLines(serverLog, CLOSE_READ) !== 1) throw new Error('our CLOSE reached the server more than once');
    },
  },
  {
    name: 'held-close', patch: '014',
    async check(kit) {
      const HOLD_MS = 50;
      const { client, serverLog } = await kit.connect(execServer(endAtOnce), { closeReplyHoldMs: HOLD_MS });
      const closes = (): number => countLines(serverLog, CLOSE_READ);
      const opens = (): number => countLines(serverLog, OPEN_READ);
      const notHeld = 'the close reply was sent at once, not held';
      const run = async (): Promise<number> => {
        const ch = await kit.exec(client, 'true', { closeStdin: true });
        ch.resume();
        return kit.within('the server\'s close never arrived', new Promise<number>((resolve) => ch.once('close', () => resolve(Date.now()))));
      };
      // Nothing follows the first session: its close reply goes alone, once the hold is over.
      const closedAt = await run();
      await kit.waitFor('the held close reply was never sent', () => closes() === 1);
      if (Date.now() - closedAt < HOLD_MS / 2) throw new Error(notHeld);
      // The second's waits for the next open, and goes before it.
      await run();
      if (closes() !== 1) throw new Error(notHeld);
      await kit.exec(client, 'true', { closeStdin: true });
      const seen = serverLog.filter((l) => /^Inbound: CHANNEL_(OPEN \(|CLOSE)/.test(l)).map((l) => l.split(' ')[1]);
      if (opens() !== 3 || seen.slice(-2).join(' ') !== 'CHANNEL_CLOSE CHANNEL_OPEN') {
        throw new Error(`the held close reply did not go just before the next open (the server read: ${seen.join(', ')})`);
      }
    },
  },
  {
    name: 'spare-session', patch: '015',
    async check(kit) {
      let refuse = false;
      let closeUnused = false;
      const { client, serverLog } = await kit.connect((conn) => {
        conn.on('session', (accept, reject) => {
          if (refuse) return reject();
          const session = accept();
          session.on('exec', (acceptExec) => endAtOnce(acceptExec()));
          // A server that closes an unused session: sshd does not, but the spare must survive one.
          if (closeUnused) closeSessionFromServer(conn, session);
        });
      });
      if (typeof client.openSpareSession !== 'function') throw new Error('Client has no openSpareSession()');
      const count = (prefix: string): number => countLines(serverLog, prefix);
      const lost: Array<{ reason: unknown; wasReady: boolean }> = [];
      const onLost = (err: Error & { reason?: unknown }, wasReady: boolean): void => {
        lost.push({ reason: err.reason, wasReady });
      };
      let ready = false;
      client.openSpareSession(() => (ready = true), onLost);
      await kit.waitFor('the spare session was never confirmed', () => ready && client.spareSession === 'ready');
      const ch = kit.exec(client, 'true', { closeStdin: true });
      if (client.spareSession !== 'none') throw new Error('an exec did not take the ready spare');
      (await ch).resume();
      if (count(OPEN_READ) !== 1) throw new Error('an exec opened a channel of its own instead of taking the spare');
      refuse = true;
      client.openSpareSession(() => {}, onLost);
      await kit.waitFor('a refused spare was never reported', () => lost.length === 1);
      if (lost[0].wasReady || lost[0].reason === undefined) throw new Error('a refused spare was not reported with its reason');
      refuse = false;
      closeUnused = true;
      const closesBefore = count(CLOSE_READ);
      client.openSpareSession(() => {}, onLost);
      await kit.waitFor('a spare the server closed was never reported', () => lost.length === 2);
      if (client.spareSession !== 'none') throw new Error('a spare the server closed is still held');
      await kit.waitFor('a spare the server closed was not answered with our close', () => count(CLOSE_READ) > closesBefore);
    },
  },
  {
    name: 'padding-block', patch: '016',
    async check(kit) {
      const fills = kit.ssh2.paddingBlockFills;
      if (typeof fills !== 'function') throw new Error('ssh2\'s cipher module has no padding block');
      const { client } = await kit.connect(() => {});
      const before = fills();
      const PINGS = 200;
      for (let i = 0; i < PINGS; i++) await new Promise<void>((resolve) => client.ping(resolve));
      // Both sides pad every packet (a request and a reply each way), at most 255 bytes each, from blocks of 4 KiB.
      const drawn = fills() - before;
      if (drawn > Math.ceil((4 * PINGS * 255) / 4096)) throw new Error(`${drawn} padding blocks drawn for ${4 * PINGS} packets`);
    },
  },
  {
    name: 'borrowed-reads', patch: '017',
    async check(kit) {
      const SIZE = 384 * 1024;
      // The reads land in one buffer, once the client is ready in sizes that
      // cut packets, lengths and MACs at every place (ssh2 itself stalls on
      // a handshake read a few bytes at a time); after each read is handled
      // the buffer is scribbled over, so anything kept of it without a copy shows.
      const backing = Buffer.alloc(70_000);
      const sizes = [1, 3, 17, 100, 1000, 4093, 16384 + 13, 35_000, 65_536];
      let nextSize = 0;
      let client!: ClientType;
      let borrowing = false;
      let socket!: net.Socket;
      const readInto = (): Buffer => (borrowing ? backing.subarray(0, sizes[nextSize++ % sizes.length]) : backing.subarray(0, 65_536));
      let rekeyed = false;
      let execs = 0;
      const { client: c } = await kit.connect((conn) => {
        conn.on('session', (accept) => {
          accept().on('exec', (acceptExec) => {
            const stream = acceptExec();
            stream.resume();
            // Mid-stream (of the first), a rekey: its packets arrive under borrowed reads too.
            writePattern(stream, SIZE, execs++ > 0 ? () => {} : () => conn.rekey(() => (rekeyed = true)));
          });
        });
      }, (port) => ({
        sock: socket = net.connect({
          port, host: '127.0.0.1',
          onread: {
            buffer: readInto,
            callback: (n: number, buf: Uint8Array): boolean => {
              const bytes = Buffer.from(buf.buffer, buf.byteOffset, n);
              if (!borrowing) return socket.push(Buffer.from(bytes));
              client.readBorrowed(bytes);
              backing.fill(0xee);
              return true;
            },
          },
        }),
      }));
      client = c;
      if (typeof client.readBorrowed !== 'function') throw new Error('Client has no readBorrowed()');
      borrowing = true;
      // Lent: copied at once by its listener, paused now and then so some is
      // kept (keepData). Set up in exec's callback, before any of its data is read.
      const kept = new WeakSet<Buffer>();
      let lentAsIs = 0;
      let keptSeen = 0;
      const got = { out: [] as Buffer[], err: [] as Buffer[] };
      const lent = await kit.within('the exec was never answered', new Promise<ClientChannel>((resolve, reject) => {
        client.exec('pattern', { closeStdin: true }, (err, ch) => {
          if (err) return reject(err);
          ch.lendData = true;
          ch.keepData = (data) => {
            const copy = Buffer.from(data);
            kept.add(copy);
            return copy;
          };
          const take = (into: Buffer[]) => (d: Buffer): void => {
            if (kept.has(d)) keptSeen++;
            else lentAsIs++;
            into.push(Buffer.from(d));
            if (into.length % 5 === 0) {
              ch.pause();
              setImmediate(() => ch.resume());
            }
          };
          ch.on('data', take(got.out));
          ch.stderr.on('data', take(got.err));
          resolve(ch);
        });
      }));
      const closed = [new Promise((resolve) => lent.once('close', resolve))];
      // Not lent: it keeps what it gets, which must be copies.
      const held = await kit.exec(client, 'pattern', { closeStdin: true });
      closed.push(new Promise((resolve) => held.once('close', resolve)));
      const heldGot = { out: [] as Buffer[], err: [] as Buffer[] };
      held.on('data', (d: Buffer) => heldGot.out.push(d));
      held.stderr.on('data', (d: Buffer) => heldGot.err.push(d));
      await kit.within('the streams never ended', Promise.all(closed));
      const expected = pattern(SIZE);
      for (const [what, chunks] of [['lent stdout', got.out], ['lent stderr', got.err], ['kept stdout', heldGot.out], ['kept stderr', heldGot.err]] as const) {
        if (!Buffer.concat(chunks).equals(expected)) throw new Error(`the ${what} arrived altered: a view of reused memory was kept`);
      }
      if (!rekeyed) throw new Error('the rekey under borrowed reads did not complete');
      if (lentAsIs === 0 || keptSeen === 0) throw new Error(`channel data was lent ${lentAsIs} times and kept through keepData ${keptSeen} times: expected both`);
    },
  },
  {
    name: 'channel-window', patch: '050',
    async check(kit) {
      const setWindow = kit.ssh2.setReceiveWindow;
      if (typeof setWindow !== 'function') throw new Error('lib/Channel.js has no setReceiveWindow()');
      const MiB = 1 << 20;
      let server: ServerChannel | undefined;
      const { client } = await kit.connect(execServer((stream) => (server = stream)));
      const ch = await kit.exec(client, 'flood', { closeStdin: true });
      await kit.waitFor('the exec never reached the server', () => server !== undefined);
      // What the server may send: a private member, allowed here in the seam.
      const serverWindow = (): number => (server as unknown as { outgoing: { window: number } }).outgoing.window;
      ch.pause(); // a reader that reads nothing
      setWindow(ch, 6 * MiB, 4.5 * MiB);
      await kit.waitFor('the server was not granted the 6 MiB window set', () => serverWindow() === 6 * MiB);
      const chunk = Buffer.alloc(256 << 10);
      for (let i = 0; i < 64 && server!.write(chunk); i++);
      await kit.waitFor('the server could not send the window set', () => ch.readableLength >= 6 * MiB && serverWindow() === 0);
      // ssh2 grants while its read buffer (2 MiB) has room, then no more: a reader that reads nothing holds at most both.
      await new Promise((resolve) => setTimeout(resolve, 50));
      if (ch.readableLength > 8 * MiB) throw new Error(`a reader that reads nothing holds ${ch.readableLength} bytes for a window of 6 MiB`);
    },
  },
  {
    name: 'open-failure-description', patch: '030',
    async check(kit) {
      const { client } = await kit.connect((conn) => {
        conn.on('session', (_accept, reject) => (reject as (r: number, d: string) => void)(2, 'sshmux check: refused'));
      });
      const err = await kit.exec(client, 'true').then(() => undefined, (e: Error & { reason?: unknown }) => e);
      if (!err || !/sshmux check: refused/.test(err.message) || err.reason !== 2) {
        throw new Error(`a refused channel reached the client as ${err ? `"${err.message}" (reason ${String(err.reason)})` : 'success'}, without the description`);
      }
    },
  },
  {
    name: 'auth-banner', patch: '031',
    async check(kit) {
      let banner = '';
      await kit.connect(() => {}, {}, (ctx) => {
        ctx.banner('sshmux check: banner');
        ctx.accept();
      }, (c) => c.on('banner', (text: string) => (banner = text)));
      if (banner !== 'sshmux check: banner\r\n') throw new Error('no banner reached the client during authentication');
    },
  },
  {
    name: 'unstarted-session-close', patch: '032',
    async check(kit) {
      const { client, clientLog } = await kit.connect((conn) => {
        conn.on('session', (accept) => {
          // The pty request is refused, so the client closes the session before any command.
          accept().on('pty', (_accept, reject) => reject?.());
        });
      });
      const refused = await kit.exec(client, 'true', { pty: true }).then(() => false, () => true);
      if (!refused) throw new Error('the pty request was not refused');
      await kit.waitFor('the server never answered the close of a session that had not started',
        () => clientLog.some((l) => l.startsWith(CLOSE_READ)));
    },
  },
  {
    name: 'client-greeting', patch: '035',
    async check(kit) {
      // A line before the client's identification, as the front door's ProxyCommand helper writes.
      const sent = 'sshmux check: greeting\r\n';
      let greeting: string | undefined;
      const { client } = await kit.connect((_conn, info) => {
        greeting = info.header.greeting;
      }, {}, undefined, undefined, undefined, { server: { clientGreetingLines: 1 }, greeting: sent });
      client.end();
      if (greeting !== sent) throw new Error(`the server saw the client's greeting as ${JSON.stringify(greeting)}`);
    },
  },
  {
    name: 'host-certificates', patch: '040',
    async check(kit) {
      const r = await certificateLogin(kit);
      if (r.hostKeyAlgorithm !== CERT) throw new Error(`a host certificate reached the verifier as ${r.hostKeyAlgorithm || 'nothing'}`);
    },
  },
  {
    name: 'user-certificates', patch: '041',
    async check(kit) {
      const r = await certificateLogin(kit);
      if (r.offeredAlgorithm !== CERT || !r.signatureValid) {
        throw new Error(`a user certificate was offered as ${r.offeredAlgorithm}${r.signatureValid ? '' : ', its signature not made by its key'}`);
      }
    },
  },
  {
    name: 'rsa-sha2-server', patch: '034',
    async check(kit) {
      // One RSA key serves as the host's and the client's: generating one costs ~100 ms.
      const rsaKey = kit.ssh2.utils.generateKeyPairSync('rsa', { bits: 2048 }).private;
      const hostKeys = [rsaKey];
      // A client that knows only SHA-1 ssh-rsa host keys finds none it can use.
      const sha1Only = await kit.connect(() => {}, { algorithms: { serverHostKey: ['ssh-rsa'] } }, undefined, undefined, hostKeys)
        .then(() => true, () => false);
      if (sha1Only) throw new Error('the RSA host key is offered as SHA-1 ssh-rsa, which the server was not given');
      // An RSA client key: what server-sig-algs offers, and how a key query is answered.
      let sigAlgs: string[] = [];
      let pkOk = '';
      const queried: string[] = [];
      await kit.connect(() => {}, { privateKey: rsaKey }, (ctx) => {
        if (ctx.method === 'publickey' && !ctx.signature) queried.push(`rsa-sha2-${ctx.hashAlgo === 'sha512' ? '512' : '256'}`);
        if (ctx.method === 'none') ctx.reject(['publickey']);
        else ctx.accept();
      }, (c) => c.once('handshake', () => {
        // What the client reads of the server's answers has no public trace: seen at its handlers.
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        const handlers = (c as unknown as { _protocol: { _handlers: Record<string, (...a: any[]) => void> } })._protocol._handlers;
        const extInfo = handlers.EXT_INFO;
        handlers.EXT_INFO = (p: unknown, exts: Array<{ name: string; algs: string[] }>) => {
          sigAlgs = exts.find((e) => e.name === 'server-sig-algs')?.algs ?? [];
          extInfo(p, exts);
        };
        const ok = handlers.USERAUTH_PK_OK;
        handlers.USERAUTH_PK_OK = (p: unknown, keyAlgo: string, ...rest: unknown[]) => {
          pkOk = keyAlgo;
          ok(p, keyAlgo, ...rest);
        };
      }), hostKeys);
      if (!sigAlgs.includes('rsa-sha2-512') || !sigAlgs.includes('rsa-sha2-256') || sigAlgs.includes('ssh-rsa')) {
        throw new Error(`server-sig-algs offers ${sigAlgs.join(',')}: not both SHA-2 RSA signatures, or SHA-1 too`);
      }
      if (queried.length !== 1 || pkOk !== queried[0]) throw new Error(`a ${queried[0] ?? 'key'} query was answered as ${pkOk || 'nothing'}`);
    },
  },
];

/** One certificate login for the two certificate checks, made on first use. */
const certificateLogins = new WeakMap<Ssh2Module, Promise<CertificateCheckResult>>();
function certificateLogin(kit: Kit): Promise<CertificateCheckResult> {
  let login = certificateLogins.get(kit.ssh2);
  if (!login) {
    login = runCertificateCheck(makeCertificateFixture(), kit.timeoutMs, kit.ssh2);
    certificateLogins.set(kit.ssh2, login);
  }
  return login;
}

const CERT = 'ssh-ed25519-cert-v01@openssh.com';

/** The bytes the borrowed-reads check streams: a position-dependent pattern. */
function pattern(size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) out[i] = (i * 7 + (i >> 11)) & 0xff;
  return out;
}

/** Writes pattern(size) to stdout and stderr in chunks of changing size, calls `midway` half-way, then exits 0. */
function writePattern(stream: ServerChannel, size: number, midway: () => void): void {
  const bytes = pattern(size);
  const chunks = [1, 1000, 32_768, 5000, 70_000, 33];
  let at = 0;
  let k = 0;
  let half = false;
  const more = (): void => {
    while (at < size) {
      const n = Math.min(chunks[k++ % chunks.length], size - at);
      const piece = bytes.subarray(at, at + n);
      at += n;
      stream.stderr.write(piece);
      if (!half && at >= size / 2) {
        half = true;
        midway();
      }
      if (!stream.write(piece)) return void stream.once('drain', more);
    }
    stream.exit(0);
    stream.end();
  };
  more();
}

/** ssh2's debug lines for a channel open and a close read from the peer. */
const OPEN_READ = 'Inbound: CHANNEL_OPEN (';
const CLOSE_READ = 'Inbound: CHANNEL_CLOSE';

function countLines(log: string[], prefix: string): number {
  return log.filter((l) => l.startsWith(prefix)).length;
}

/** The server side of an exec that ends at once: no output, status 0, closed. */
function endAtOnce(stream: ServerChannel): void {
  stream.resume();
  stream.exit(0);
  stream.end();
}

/** Closes a server-side session that has no command yet, as a faulty server might (checks and tests only). */
export function closeSessionFromServer(conn: Connection, session: Session): void {
  const outgoing = (session as unknown as { _chanInfo: { outgoing: { id: number } } })._chanInfo.outgoing;
  (conn as unknown as { _protocol: { channelClose(id: number): void } })._protocol.channelClose(outgoing.id);
}

/**
 * Runs the checks against ssh2 as installed (or from `ssh2Dir`), each on a
 * connection of its own and all at once (the padding one last, alone: it
 * counts what every connection draws), and returns one error per failed
 * capability. `timeoutMs` bounds each wait inside a check.
 */
export async function checkSsh2Capabilities(opts: { ssh2Dir?: string; timeoutMs?: number; only?: string } = {}): Promise<Ssh2CapabilityError[]> {
  const dir = opts.ssh2Dir ?? path.dirname(require.resolve('ssh2/package.json'));
  const ssh2 = loadSsh2(dir);
  const timeoutMs = opts.timeoutMs ?? 5000;
  const hostKey = ssh2.utils.generateKeyPairSync('ecdsa', { bits: 256 }).private;
  const run = async (cap: Capability): Promise<Ssh2CapabilityError | undefined> => {
    const closers: Array<() => void> = [];
    try {
      await cap.check(makeKit(ssh2, hostKey, timeoutMs, closers));
      return undefined;
    } catch (err) {
      return new Ssh2CapabilityError(cap.name, cap.patch, (err as Error).message);
    } finally {
      for (const close of closers) close();
    }
  };
  const chosen = CAPABILITIES.filter((c) => !opts.only || c.name === opts.only);
  const alone = chosen.filter((c) => c.name === 'padding-block');
  const failures = await Promise.all(chosen.filter((c) => !alone.includes(c)).map(run));
  for (const cap of alone) failures.push(await run(cap));
  return failures.filter((f): f is Ssh2CapabilityError => f !== undefined);
}

/** As checkSsh2Capabilities(), throwing the first failure (its message naming every other that failed). */
export async function verifySsh2Capabilities(opts: { timeoutMs?: number } = {}): Promise<void> {
  const [first, ...rest] = await checkSsh2Capabilities(opts);
  if (!first) return;
  if (rest.length) first.message += ` (also failed: ${rest.map((f) => f.capability).join(', ')})`;
  throw first;
}

/** The capabilities' names, in the order they are listed. */
export const CAPABILITY_NAMES = CAPABILITIES.map((c) => c.name);

function loadSsh2(dir: string): Ssh2Module {
  const lib = require(path.join(dir, 'lib', 'index.js')) as Ssh2Module;
  const cipher = require(path.join(dir, 'lib', 'protocol', 'crypto.js')) as { paddingBlockFills?: () => number };
  const channel = require(path.join(dir, 'lib', 'Channel.js')) as { setReceiveWindow?: Ssh2Module['setReceiveWindow'] };
  return { Client: lib.Client, Server: lib.Server, utils: lib.utils, paddingBlockFills: cipher.paddingBlockFills, setReceiveWindow: channel.setReceiveWindow };
}

function makeKit(ssh2: Ssh2Module, hostKey: string, timeoutMs: number, closers: Array<() => void>): Kit {
  const within = <T>(what: string, p: Promise<T>): Promise<T> => new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} (waited ${timeoutMs} ms)`)), timeoutMs);
    p.then((v) => {
      clearTimeout(timer);
      resolve(v);
    }, (e: unknown) => {
      clearTimeout(timer);
      reject(e as Error);
    });
  });
  const kit = {
    ssh2,
    timeoutMs,
    within,
    exec: (client: ClientType, command: string, opts: ExecOptions = {}): Promise<ClientChannel> => within(`the exec of "${command}" was never answered`,
      new Promise((resolve, reject) => client.exec(command, opts, (err, ch) => (err ? reject(err) : resolve(ch))))),
    waitFor(what: string, until: () => boolean): Promise<void> {
      let gaveUp = false;
      return within(what, new Promise<void>((resolve) => {
        const poll = (): void => {
          if (until()) resolve();
          else if (!gaveUp) setImmediate(poll);
        };
        poll();
      })).finally(() => (gaveUp = true));
    },
    connect(onConnection: (conn: Connection, info: ClientInfo) => void, config: Partial<ConnectConfig> | ((port: number) => Partial<ConnectConfig>) = {},
      authenticate: (ctx: AuthContext) => void = (ctx) => ctx.accept(), onClient?: (c: ClientType) => void,
      hostKeys: string[] = [hostKey], extra: { server?: Partial<ServerConfig>; greeting?: string } = {}): Promise<Pair> {
      const serverLog: string[] = [];
      const clientLog: string[] = [];
      // The server prefixes each line with a tag of the connection ('[123.456] ').
      const server = new ssh2.Server({ ...extra.server, hostKeys, algorithms: { serverHostKey: ['ecdsa-sha2-nistp256', 'rsa-sha2-512', 'rsa-sha2-256'] }, debug: (line: string) => serverLog.push(line.replace(/^\[[^\]]*\] /, '')) }, (conn, info) => {
        conn.on('error', () => {});
        conn.on('authentication', (ctx) => {
          try {
            authenticate(ctx);
          } catch {
            ctx.reject();
          }
        });
        onConnection(conn, info);
      });
      const client = new ssh2.Client();
      client.on('error', () => {});
      closers.push(() => {
        client.end();
        server.close();
      });
      onClient?.(client);
      return within('the in-process SSH connection never became ready', new Promise<Pair>((resolve, reject) => {
        server.listen(0, '127.0.0.1', () => {
          const { port } = server.address() as net.AddressInfo;
          client.once('ready', () => resolve({ client, serverLog, clientLog }));
          client.once('error', reject);
          const connect = (sock?: net.Socket): void => {
            client.connect({
              host: '127.0.0.1', port, username: 'sshmux-check', hostVerifier: () => true, debug: (line: string) => clientLog.push(line), sock,
              ...(typeof config === 'function' ? config(port) : config),
            });
          };
          if (extra.greeting === undefined) return connect();
          const sock = net.connect(port, '127.0.0.1', () => sock.write(extra.greeting!, () => connect(sock)));
          sock.on('error', reject);
        });
      }));
    },
  };
  return kit as Kit;
}
