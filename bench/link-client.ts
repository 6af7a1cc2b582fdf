// One in-process client for bench/link.ts, in a process of its own: the
// sshmux SDK, or a bare ssh2 client on one connection of its own (the
// reference without a daemon). A process each, so that neither shares a
// core's event loop with the bench's relay or with the other, and its CPU
// is its own. Reads its task as JSON in argv[2], prints the result as JSON.
//
// Tasks: `latency` (warm execs of `true`, each timed), `download` (the
// stdout of `head -c BYTES /dev/zero`), `upload` (BYTES of stdin into
// `wc -c`), `get`/`put` (a file, SDK only).
import * as fs from 'node:fs';
import * as net from 'node:net';
import { Client, type ClientChannel } from 'ssh2';
import { SshMux } from '../client-sdk';
import { timed } from './stats';

export interface ClientTask {
  system: 'sdk' | 'ssh2';
  task: 'latency' | 'download' | 'upload' | 'get' | 'put';
  /** SDK: the daemon's socket and the host alias. */
  socket?: string;
  alias?: string;
  /** ssh2: where and as whom. */
  host?: string;
  port?: number;
  user?: string;
  keyPath?: string;
  runs?: number;
  bytes?: number;
  /** get/put: the remote and the local file. */
  remote?: string;
  local?: string;
}

export interface ClientResult {
  /** latency: each exec's time, ms. */
  times?: number[];
  /** download/upload/get/put: the transfer's time, s. */
  seconds?: number;
  /** This process's CPU over the measured part, s. */
  cpuSeconds?: number;
}

const CHUNK = Buffer.alloc(1 << 20);

async function main(): Promise<void> {
  const task = JSON.parse(process.argv[2]) as ClientTask;
  const result = task.system === 'sdk' ? await sdk(task) : await bare(task);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

async function sdk(t: ClientTask): Promise<ClientResult> {
  const mux = await SshMux.connect({ socket: t.socket });
  const host = t.alias!;
  const check = (r: { code: number | null; stdout: Buffer }, what: string): void => {
    if (r.code !== 0) throw new Error(`${what}: exit ${r.code}`);
  };
  for (let i = 0; i < 3; i++) check(await mux.exec(host, 'true'), 'warm-up');
  return measured(async () => {
    switch (t.task) {
      case 'latency':
        return { times: await timed(t.runs!, async () => check(await mux.exec(host, 'true'), 'true')) };
      case 'download': {
        const proc = mux.spawn(host, `head -c ${t.bytes} /dev/zero`, { stdin: false });
        let got = 0;
        proc.stdout.on('data', (d: Buffer) => (got += d.length));
        proc.stderr.resume();
        const r = await proc.closed;
        if (r.code !== 0 || got !== t.bytes) throw new Error(`download: exit ${r.code}, ${got} of ${t.bytes} bytes`);
        return {};
      }
      case 'upload': {
        const proc = mux.spawn(host, 'wc -c');
        let out = '';
        proc.stdout.on('data', (d: Buffer) => (out += d));
        proc.stderr.resume();
        await writeZeros(proc.stdin, t.bytes!);
        proc.stdin.end();
        const r = await proc.closed;
        if (r.code !== 0 || Number(out.trim()) !== t.bytes) throw new Error(`upload: exit ${r.code}, wc said ${out.trim()}`);
        return {};
      }
      case 'get':
        await mux.download(host, t.remote!, t.local!);
        return {};
      case 'put':
        await mux.upload(host, t.local!, t.remote!);
        return {};
    }
  });
}

async function bare(t: ClientTask): Promise<ClientResult> {
  const client = await new Promise<Client>((resolve, reject) => {
    const c = new Client();
    const sock = net.connect(t.port!, t.host!);
    sock.setNoDelay(true);
    c.once('ready', () => resolve(c)).once('error', reject).connect({
      sock, username: t.user!, privateKey: fs.readFileSync(t.keyPath!), readyTimeout: 60_000,
      hostVerifier: () => true, // a bench against its own throwaway sshd
    });
  });
  const exec = (command: string, stdin?: number): Promise<{ code: number | null; out: string; bytes: number }> =>
    new Promise((resolve, reject) => {
      client.exec(command, (err, channel: ClientChannel) => {
        if (err) return reject(err);
        let code: number | null = null;
        let out = '';
        let bytes = 0;
        channel.on('data', (d: Buffer) => {
          bytes += d.length;
          if (out.length < 100) out += d;
        });
        channel.stderr.resume();
        channel.once('exit', (c: number | null) => (code = c));
        channel.once('close', () => resolve({ code, out, bytes }));
        if (stdin === undefined) channel.end();
        else writeZeros(channel, stdin).then(() => channel.end(), reject);
      });
    });
  for (let i = 0; i < 3; i++) await exec('true');
  const r = await measured(async () => {
    switch (t.task) {
      case 'latency':
        return { times: await timed(t.runs!, async () => {
          if ((await exec('true')).code !== 0) throw new Error('true failed');
        }) };
      case 'download': {
        const r = await exec(`head -c ${t.bytes} /dev/zero`);
        if (r.code !== 0 || r.bytes !== t.bytes) throw new Error(`download: exit ${r.code}, ${r.bytes} of ${t.bytes} bytes`);
        return {};
      }
      case 'upload': {
        const r = await exec('wc -c', t.bytes);
        if (r.code !== 0 || Number(r.out.trim()) !== t.bytes) throw new Error(`upload: exit ${r.code}, wc said ${r.out.trim()}`);
        return {};
      }
      default:
        throw new Error(`bare ssh2 has no ${t.task} here`);
    }
  });
  client.end();
  return r;
}

async function measured(run: () => Promise<ClientResult>): Promise<ClientResult> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await run();
  const cpu = process.cpuUsage(cpu0);
  return { ...r, seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/** Writes `bytes` zero bytes, honouring backpressure. */
async function writeZeros(stream: NodeJS.WritableStream, bytes: number): Promise<void> {
  for (let left = bytes; left > 0; left -= CHUNK.length) {
    const piece = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
    if (!stream.write(piece)) await new Promise((r) => stream.once('drain', r));
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
