// npm run bench:hop: the floor under any daemon that sits between a program
// and its SSH connections — what one request and reply over a Unix socket
// cost a Node process that does nothing else with them (an echo server in a
// child), in CPU per round trip on each side. The hot path's per-exec cost
// over a bare ssh2 client is read against this. Prints a table and JSON, and
// writes the JSON to bench/results/hop-<date and time>.json.
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { cpuSeconds } from './proc-cpu';
import { loadAverage, measuredOn, writeResult } from './results';
import { round } from './stats';
import { table } from './table';

const ROUND_TRIPS = 20_000;
const REPETITIONS = 5;

function serve(socketPath: string): void {
  net.createServer((s) => s.on('data', (d: Buffer) => s.write(d))).listen(socketPath, () => process.send?.('ready'));
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-hop-'));
  const socketPath = path.join(dir, 'echo.sock');
  const child = fork(__filename, ['serve', socketPath]);
  try {
    await new Promise<void>((resolve) => child.once('message', () => resolve()));
    const s = net.connect(socketPath);
    await new Promise((r) => s.once('connect', r));
    // 20 bytes: about a frame's size for a short exec's request.
    const once = (): Promise<void> => new Promise((resolve) => {
      s.once('data', () => resolve());
      s.write(Buffer.alloc(20));
    });
    for (let i = 0; i < 5000; i++) await once();
    const rows: Array<{ server_us: number; client_us: number }> = [];
    const loadStart = loadAverage();
    for (let k = 0; k < REPETITIONS; k++) {
      const server0 = cpuSeconds(child.pid!);
      const client0 = process.cpuUsage();
      for (let i = 0; i < ROUND_TRIPS; i++) await once();
      const c = process.cpuUsage(client0);
      rows.push({
        server_us: round((cpuSeconds(child.pid!) - server0) / ROUND_TRIPS * 1e6, 1),
        client_us: round((c.user + c.system) / ROUND_TRIPS, 1),
      });
    }
    s.destroy();
    const result = { ...measuredOn(loadStart), round_trips: ROUND_TRIPS, rows };
    console.log(`CPU per request and reply over a Unix socket (Node echo server), Node ${process.version}: ${REPETITIONS} repetitions of ${ROUND_TRIPS}`);
    console.log(table(['repetition', 'server µs', 'client µs'], rows.map((r, k) => [String(k + 1), String(r.server_us), String(r.client_us)])));
    console.log(`\nwrote ${writeResult(result, { prefix: 'hop-' })}`);
    console.log(JSON.stringify(result));
  } finally {
    child.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'serve') serve(process.argv[3]);
else main().catch((err) => {
  console.error(`bench:hop failed: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
