// One side of the bench's CPU section, in a process of its own that does
// nothing else: a program using the sshmux SDK ("sdk"), or a bare ssh2
// client on one connection with TCP_NODELAY ("ssh2", the floor). The bench
// forks it, asks it over the IPC channel for a batch of execs or a stream,
// and reads its CPU time from the kernel around each batch (bench/cpu.ts),
// as it reads the daemon's: no side shares a process, a heap or a garbage
// collector with another, or with the bench.
//
// Messages in: { op: 'exec', n } | { op: 'stream', bytes } | { op: 'quit' }.
// Out: { ready } once connected; per request { ok: true, times } (the wall
// time of each exec, ms) or { ok: true, ms } (the stream's), or { ok: false, error }.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { Client, type ClientChannel } from 'ssh2';
import { SshMux } from '../client-sdk';

export type WorkerKind = 'sdk' | 'ssh2';

/** How to reach the host: the daemon's socket and alias (sdk), or the sshd itself (ssh2). */
export interface WorkerConfig {
  socket: string;
  alias: string;
  port: number;
  user: string;
  keyPath: string;
}

export type WorkerRequest = { op: 'exec'; n: number } | { op: 'stream'; bytes: number } | { op: 'quit' };
export type WorkerReply = { ready: true } | { ok: true; times?: number[]; ms?: number } | { ok: false; error: string };

interface Side {
  /** One `true`, as a program that runs commands does it. */
  exec(): Promise<void>;
  /** `head -c BYTES /dev/zero`, every byte counted. */
  stream(bytes: number): Promise<void>;
  close(): void;
}

async function sdkSide(c: WorkerConfig): Promise<Side> {
  const mux = await SshMux.connect({ socket: c.socket });
  return {
    async exec() {
      const r = await mux.exec(c.alias, 'true');
      if (r.code !== 0) throw new Error(`exec: exit ${r.code ?? r.signal}`);
    },
    async stream(bytes) {
      let got = 0;
      const proc = mux.spawn(c.alias, `head -c ${bytes} /dev/zero`, { stdin: false });
      proc.stdout.on('data', (d: Buffer) => (got += d.length));
      proc.stderr.resume();
      const r = await proc.closed;
      if (r.code !== 0 || got !== bytes) throw new Error(`stream: exit ${r.code ?? r.signal}, ${got} of ${bytes} bytes`);
    },
    close: () => mux.close(),
  };
}

async function ssh2Side(c: WorkerConfig): Promise<Side> {
  const sock = net.connect(c.port, '127.0.0.1');
  sock.setNoDelay(true);
  const client = new Client();
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve);
    client.on('error', reject);
    client.connect({ sock, username: c.user, privateKey: fs.readFileSync(c.keyPath), readyTimeout: 30_000, hostVerifier: () => true });
  });
  /** As the SDK's exec() and `ssh -n` run it: the command's stdin gets EOF. */
  const run = (command: string, sink: (n: number) => void): Promise<number | null> => new Promise((resolve, reject) => {
    client.exec(command, (err: Error | undefined, channel: ClientChannel) => {
      if (err) return reject(err);
      channel.end();
      let code: number | null = null;
      channel.on('data', (d: Buffer) => sink(d.length));
      channel.stderr.resume();
      channel.once('exit', (c: number | null) => (code = c));
      channel.once('close', () => resolve(code));
    });
  });
  return {
    async exec() {
      const code = await run('true', () => {});
      if (code !== 0) throw new Error(`exec: exit ${code}`);
    },
    async stream(bytes) {
      let got = 0;
      const code = await run(`head -c ${bytes} /dev/zero`, (n) => (got += n));
      if (code !== 0 || got !== bytes) throw new Error(`stream: exit ${code}, ${got} of ${bytes} bytes`);
    },
    close: () => client.end(),
  };
}

async function handle(side: Side, req: WorkerRequest): Promise<WorkerReply> {
  if (req.op === 'exec') {
    const times: number[] = [];
    for (let i = 0; i < req.n; i++) {
      const start = performance.now();
      await side.exec();
      times.push(performance.now() - start);
    }
    return { ok: true, times };
  }
  if (req.op === 'stream') {
    const start = performance.now();
    await side.stream(req.bytes);
    return { ok: true, ms: performance.now() - start };
  }
  side.close();
  process.exit(0);
}

async function main(): Promise<void> {
  const kind = process.argv[2] as WorkerKind;
  const config = JSON.parse(process.argv[3]) as WorkerConfig;
  const send = (m: WorkerReply): void => {
    process.send!(m);
  };
  const side = await (kind === 'sdk' ? sdkSide(config) : ssh2Side(config));
  // One exec before anything is measured: the connection is up (and, through
  // the daemon, the host's pool), as in a program that has run a command.
  await side.exec();
  process.on('message', (req: WorkerRequest) => {
    handle(side, req).then(send, (err: Error) => send({ ok: false, error: err.message }));
  });
  // The bench going away (or killed) ends this side too.
  process.on('disconnect', () => process.exit(0));
  send({ ready: true });
}

main().catch((err: Error) => {
  process.send?.({ ok: false, error: `cannot start: ${err.message}` });
  process.exit(1);
});
