// A long link on loopback: a TCP relay that holds every chunk for a set time
// in each direction (half the round trip each way), optionally at a capped
// rate, and that can freeze (a partition: nothing moves either way, nothing
// is closed, no RST) and thaw. These machines have no netem, so tests and
// benches reach sshd through this instead, for properties (round trips
// counted, bytes whole, detection bounds) and for figures.
//
// Each direction has ONE queue and ONE timer: a chunk's due time is when it
// arrived plus the delay (and, with a rate cap, its turn on the wire), due
// times never decrease, and the timer delivers what is due in queue order.
// A timer per chunk would reorder chunks under load and corrupt the stream.
//
// What a partition does to TCP is modelled as TCP would see it: bytes sent
// into a frozen link are not lost but held (as TCP retransmits them), and
// arrive after the thaw; the relay stops reading while frozen, so a sender
// fills its socket buffers and blocks, as it would against a full window. A
// connection opened while frozen is accepted (the kernel answers the SYN;
// Node cannot refuse to accept) but carries nothing, not even a banner,
// until the thaw. Ends travel in order behind the data: a half-close (FIN)
// as end(), an abort (RST) as destroy().
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import { after } from 'node:test';

export interface LongLinkOptions {
  /** Where the relay connects to (sshd). */
  target: { host: string; port: number };
  /** Round-trip time the link adds, ms; each direction holds chunks for half of it. */
  rttMs: number;
  /** Each direction's rate, bytes per second (undefined: as fast as loopback). */
  rateBytesPerSec?: number;
  /**
   * Bytes a direction holds (in its queue and not yet taken by the
   * receiving socket) before it stops reading from the sender: the link's
   * buffer, which keeps the relay's memory bounded (default 64 MiB).
   */
  maxQueuedBytes?: number;
}

/** Which way a chunk went: up is towards the target (client to sshd), down back. */
export type Direction = 'up' | 'down';

export interface LinkCounters {
  /** TCP connections the relay accepted (attempts to reach the target through it). */
  connections: number;
  /** Of those, the ones accepted while frozen. */
  connectionsWhileFrozen: number;
  /** Bytes delivered each way. */
  bytes: Record<Direction, number>;
  /** Chunks delivered each way. */
  chunks: Record<Direction, number>;
  /**
   * Flights: runs of chunks delivered in one direction without a chunk in the
   * other between them, over every connection, in delivery order. A request
   * and its answer are two flights; N sequential round trips are 2N.
   */
  flights: Record<Direction, number>;
}

export interface LongLink {
  readonly host: string;
  readonly port: number;
  readonly rttMs: number;
  /** Stops forwarding both ways on every connection, new ones included; nothing is closed. */
  freeze(): void;
  /** Forwards again: what was held goes out at once, in order. */
  thaw(): void;
  readonly frozen: boolean;
  /** Counters since start (or the last resetCounters()). */
  counters(): LinkCounters;
  resetCounters(): void;
  /** Connections open through the relay now. */
  openConnections(): number;
  /** Closes the listener and destroys every connection. */
  close(): Promise<void>;
}

type Item = { due: number; data: Buffer } | { due: number; end: 'fin' | 'rst' };

const DEFAULT_MAX_QUEUED = 64 << 20;

const links = new Set<LongLink>();
// Under the test runner, links close when the file ends (benches close their own).
if (process.env.NODE_TEST_CONTEXT) {
  after(async () => {
    for (const link of [...links]) await link.close();
  });
}

export async function startLongLink(opts: LongLinkOptions): Promise<LongLink> {
  const oneWayMs = opts.rttMs / 2;
  const maxQueued = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED;
  let frozen = false;
  const pairs = new Set<Pair>();
  let counters = emptyCounters();
  let lastDirection: Direction | undefined;

  const delivered = (dir: Direction, bytes: number): void => {
    counters.bytes[dir] += bytes;
    counters.chunks[dir]++;
    if (lastDirection !== dir) counters.flights[dir]++;
    lastDirection = dir;
  };

  /** One direction of one connection: the queue, the timer, the wire's rate. */
  class Pipe {
    private readonly queue: Item[] = [];
    private queuedBytes = 0;
    private timer: NodeJS.Timeout | undefined;
    private lastDue = 0;
    /** With a rate cap: when the wire is free for the next chunk. */
    private wireFreeAt = 0;
    private paused = false;
    private done = false;

    constructor(readonly dir: Direction, private readonly from: net.Socket, private to: net.Socket | undefined) {}

    /** The receiving socket, once connected (upstream connects after accept, or after a thaw). */
    attach(to: net.Socket): void {
      this.to = to;
      to.on('drain', () => this.resumeIfRoom());
      this.schedule();
    }

    push(data: Buffer): void {
      this.enqueue({ due: this.dueFor(data.length), data });
      this.queuedBytes += data.length;
      if (this.queuedBytes + (this.to?.writableLength ?? 0) > maxQueued) this.pause();
    }

    pushEnd(kind: 'fin' | 'rst'): void {
      this.enqueue({ due: this.dueFor(0), end: kind });
    }

    /** Stops the timer (freeze, close); the queue is kept. */
    stop(): void {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.from.pause();
    }

    /** After a thaw: read again (unless full) and deliver what is due. */
    start(): void {
      if (!this.paused) this.from.resume();
      this.schedule();
    }

    private dueFor(bytes: number): number {
      const now = performance.now();
      let sent = now;
      if (opts.rateBytesPerSec) {
        this.wireFreeAt = Math.max(this.wireFreeAt, now) + (bytes * 1000) / opts.rateBytesPerSec;
        sent = this.wireFreeAt;
      }
      // Never before an earlier chunk: one queue, in order.
      this.lastDue = Math.max(this.lastDue, sent + oneWayMs);
      return this.lastDue;
    }

    private enqueue(item: Item): void {
      this.queue.push(item);
      if (this.queue.length === 1) this.schedule();
    }

    private schedule(): void {
      if (frozen || this.timer || !this.to || this.queue.length === 0) return;
      // Node's timers run on a whole-millisecond clock: rounded up, and checked again when they fire.
      const wait = Math.max(0, Math.ceil(this.queue[0].due - performance.now()));
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.deliverDue();
      }, wait);
    }

    private deliverDue(): void {
      if (frozen || !this.to) return;
      const now = performance.now();
      while (this.queue.length && this.queue[0].due <= now) {
        const item = this.queue.shift()!;
        if ('data' in item) {
          this.queuedBytes -= item.data.length;
          delivered(this.dir, item.data.length);
          if (!this.to.destroyed) this.to.write(item.data);
        } else {
          this.done = true;
          if (item.end === 'fin') this.to.end();
          else this.to.resetAndDestroy();
        }
      }
      this.resumeIfRoom();
      this.schedule();
    }

    private pause(): void {
      this.paused = true;
      this.from.pause();
    }

    private resumeIfRoom(): void {
      if (!this.paused || this.done) return;
      if (this.queuedBytes + (this.to?.writableLength ?? 0) > maxQueued / 2) return;
      this.paused = false;
      if (!frozen) this.from.resume();
    }
  }

  /** One relayed connection: the accepted socket, the one to the target, a pipe each way. */
  class Pair {
    readonly up: Pipe;
    private upstream: net.Socket | undefined;
    private downPipe: Pipe | undefined;

    constructor(private readonly client: net.Socket) {
      client.setNoDelay(true);
      client.on('error', () => {
        // 'close' follows; an abort travels as an RST item.
      });
      this.up = new Pipe('up', client, undefined);
      client.on('data', (d: Buffer) => this.up.push(d));
      client.on('end', () => this.up.pushEnd('fin'));
      client.on('close', (hadError) => {
        if (hadError || !client.readableEnded) this.up.pushEnd('rst');
      });
      if (frozen) client.pause();
      else this.connectUpstream();
    }

    /** Connects to the target (at accept, or at the thaw for a connection accepted while frozen). */
    connectUpstream(): void {
      if (this.upstream) return;
      const upstream = net.connect({ host: opts.target.host, port: opts.target.port, noDelay: true, allowHalfOpen: true });
      this.upstream = upstream;
      upstream.on('error', () => {
        // 'close' follows.
      });
      const down = new Pipe('down', upstream, this.client);
      this.downPipe = down;
      down.attach(this.client);
      upstream.on('data', (d: Buffer) => down.push(d));
      upstream.on('end', () => down.pushEnd('fin'));
      upstream.on('close', (hadError) => {
        if (hadError || !upstream.readableEnded) down.pushEnd('rst');
        if (this.client.destroyed) pairs.delete(this);
      });
      this.client.on('close', () => {
        if (upstream.destroyed) pairs.delete(this);
      });
      upstream.once('connect', () => this.up.attach(upstream));
      this.up.start();
    }

    freeze(): void {
      this.up.stop();
      this.downPipe?.stop();
    }

    thaw(): void {
      if (!this.upstream) return this.connectUpstream();
      this.up.start();
      this.downPipe?.start();
    }

    destroy(): void {
      this.freeze();
      this.client.destroy();
      this.upstream?.destroy();
    }
  }

  // Half-open both ways: a FIN from one end is passed on, not answered with one.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    counters.connections++;
    if (frozen) counters.connectionsWhileFrozen++;
    pairs.add(new Pair(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;

  const link: LongLink = {
    host: '127.0.0.1',
    port,
    rttMs: opts.rttMs,
    freeze() {
      if (frozen) return;
      frozen = true;
      for (const p of pairs) p.freeze();
    },
    thaw() {
      if (!frozen) return;
      frozen = false;
      for (const p of pairs) p.thaw();
    },
    get frozen() {
      return frozen;
    },
    counters: () => structuredClone(counters),
    resetCounters() {
      counters = emptyCounters();
      lastDirection = undefined;
    },
    openConnections: () => pairs.size,
    async close() {
      links.delete(link);
      for (const p of pairs) p.destroy();
      pairs.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  links.add(link);
  return link;
}

function emptyCounters(): LinkCounters {
  return {
    connections: 0,
    connectionsWhileFrozen: 0,
    bytes: { up: 0, down: 0 },
    chunks: { up: 0, down: 0 },
    flights: { up: 0, down: 0 },
  };
}

/**
 * An address whose TCP opens get no answer at all, as behind a partition:
 * a listener (python3, a system dependency already) whose accept queue is
 * full and never emptied, so the kernel drops every SYN and the opener
 * retransmits until it gives up. The relay cannot do this: Node accepts
 * every connection it can.
 */
export async function startBlackhole(): Promise<{ port: number; close(): void }> {
  const script = [
    'import socket, sys',
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)",
    // One connection fills a backlog of 0; nothing is ever accepted.
    "fill = socket.create_connection(('127.0.0.1', s.getsockname()[1]))",
    'print(s.getsockname()[1], flush=True)',
    'sys.stdin.read()',
  ].join('\n');
  const child = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
  });
  const close = (): void => {
    child.kill();
  };
  process.once('exit', close);
  return { port, close };
}
