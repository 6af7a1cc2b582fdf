// The client's window on the daemon<->client hop (proto/receive-window.ts),
// against a simulated daemon that sends within the credit it was given and
// says when it runs out (output_waits): the window grows while that happens
// and the reader keeps up, never past 16 MiB ahead (the daemon refuses
// more), not at all for a slow reader, and a stream never stalls for good.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_RECEIVE_WINDOW, RECEIVE_WINDOW, ReceiveWindow } from '../../proto/receive-window';

const CHUNK = 64 << 10;

/**
 * Steps of a stream: each step the daemon sends up to `burst` bytes within
 * its credit, a chunk at a time, saying so when its credit runs out first;
 * the reader takes up to `readPerChunk` after each chunk and `readPerStep`
 * at the end of the step; grants reach the daemon `lagSteps` steps after
 * they are sent. Returns the most the daemon was ever allowed ahead of what
 * the reader had taken, and what it sent.
 */
function simulate(w: ReceiveWindow, opts: { steps: number; burst: number; readPerChunk: number; readPerStep: number; lagSteps: number }): { aheadMax: number; sent: number } {
  let credit = RECEIVE_WINDOW;
  let sent = 0;
  let taken = 0;
  let aheadMax = 0;
  const inFlight: Array<{ at: number; bytes: number }> = [];
  const read = (upTo: number, step: number): void => {
    taken = Math.min(sent, taken + upTo);
    const owed = w.take(taken);
    if (owed > 0) inFlight.push({ at: step + opts.lagSteps, bytes: owed });
    aheadMax = Math.max(aheadMax, credit + inFlight.reduce((a, g) => a + g.bytes, 0) + sent - taken);
  };
  let waiting = false;
  for (let step = 0; step < opts.steps; step++) {
    while (inFlight.length && inFlight[0].at <= step) credit += inFlight.shift()!.bytes;
    for (let n = 0; n < opts.burst; n += CHUNK) {
      if (credit === 0) {
        // Said once per pause, as the daemon says it when it pauses.
        if (!waiting) w.daemonWaits();
        waiting = true;
        read(0, step);
        break;
      }
      waiting = false;
      const bytes = Math.min(CHUNK, credit);
      credit -= bytes;
      sent += bytes;
      w.arrive(bytes);
      read(opts.readPerChunk, step);
    }
    read(opts.readPerStep, step);
  }
  return { aheadMax, sent };
}

test('a reader that keeps up, fed in bursts a 1 MiB window cannot cover: the window grows to 16 MiB and no further', () => {
  const w = new ReceiveWindow();
  const { aheadMax } = simulate(w, { steps: 2000, burst: 8 << 20, readPerChunk: Infinity, readPerStep: Infinity, lagSteps: 2 });
  assert.equal(w.size, MAX_RECEIVE_WINDOW);
  assert.ok(aheadMax <= MAX_RECEIVE_WINDOW, `the daemon was allowed ${aheadMax} bytes ahead of the reader`);
});

test('a reader the daemon never has to wait for: the window stays 1 MiB', () => {
  const w = new ReceiveWindow();
  simulate(w, { steps: 2000, burst: 128 << 10, readPerChunk: Infinity, readPerStep: Infinity, lagSteps: 1 });
  assert.equal(w.size, RECEIVE_WINDOW);
});

test('a slow reader: the window never grows, and the daemon sends it about what it reads', () => {
  const w = new ReceiveWindow();
  // 64 KiB a step, against a daemon that could send 8 MiB.
  const { sent } = simulate(w, { steps: 2000, burst: 8 << 20, readPerChunk: 0, readPerStep: 64 << 10, lagSteps: 2 });
  assert.equal(w.size, RECEIVE_WINDOW);
  assert.ok(sent >= 2000 * (64 << 10) - RECEIVE_WINDOW && sent <= 2000 * (64 << 10) + RECEIVE_WINDOW, `the daemon sent ${sent} bytes to a reader that took ${2000 * (64 << 10)}`);
});
