// CPU load and slow readers for data-path tests: a race that loses bytes
// shows on a busy machine with a reader slower than the writer, rarely on a
// quiet one with a fast reader.
import { spawn, type ChildProcess } from 'node:child_process';
import * as os from 'node:os';

const burners = new Set<ChildProcess>();
process.once('exit', () => {
  for (const b of burners) b.kill('SIGKILL');
});

/** Runs fn with a busy loop on every core; the loops end with it, whatever happens. */
export async function underCpuLoad<T>(fn: () => Promise<T>): Promise<T> {
  const mine = Array.from({ length: os.availableParallelism() }, () => {
    const b = spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' });
    burners.add(b);
    return b;
  });
  try {
    return await fn();
  } finally {
    for (const b of mine) {
      b.kill('SIGKILL');
      burners.delete(b);
    }
  }
}

/**
 * A reader process that waits `delayS` before its first read, then reads
 * `chunk` bytes at a time with `pauseS` between reads, and prints
 * "<bytes> <sha256>" once its stdin ends. Pass its `stdin` as another
 * process's stdout or stderr, as a shell pipe would.
 */
export function slowReader(delayS = 1, chunk = 65536, pauseS = 0.002): { stdin: NodeJS.WritableStream; result: Promise<{ bytes: number; sha256: string }> } {
  const script = [
    'import sys, time, hashlib',
    `time.sleep(${delayS})`,
    'h = hashlib.sha256(); n = 0; f = sys.stdin.buffer',
    'while True:',
    `    b = f.read1(${chunk})`,
    '    if not b: break',
    '    h.update(b); n += len(b)',
    `    time.sleep(${pauseS})`,
    'print(n, h.hexdigest())',
  ].join('\n');
  const child = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  const result = new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
    child.once('close', (code) => {
      const m = /^(\d+) ([0-9a-f]{64})$/.exec(out.trim());
      if (code !== 0 || !m) reject(new Error(`slow reader exited ${code}: ${out}`));
      else resolve({ bytes: Number(m[1]), sha256: m[2] });
    });
  });
  return { stdin: child.stdin, result };
}
