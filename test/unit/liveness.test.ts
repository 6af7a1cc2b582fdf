// The pool's keepalive (daemon/ssh/liveness.ts) with an injected clock:
// a silent link is given up once its silence reaches ServerAliveInterval x
// ServerAliveCountMax, never later and never earlier; keepalives go out
// while it is silent and not while bytes arrive; a link that answers lives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinkWatch } from '../../daemon/ssh/liveness';

/** Timers on a clock the test moves. */
function fakeTimers(): { now: () => number; setTimer: (fn: () => void, ms: number) => unknown; clearTimer: (t: unknown) => void; advance(ms: number): void } {
  let t = 0;
  let seq = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  return {
    now: () => t,
    setTimer: (fn, ms) => {
      timers.set(++seq, { at: t + ms, fn });
      return seq;
    },
    clearTimer: (id) => timers.delete(id as number),
    advance(ms) {
      const until = t + ms;
      for (;;) {
        const next = [...timers.entries()].filter(([, v]) => v.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
        if (!next) break;
        timers.delete(next[0]);
        t = next[1].at;
        next[1].fn();
      }
      t = until;
    },
  };
}

function watch(intervalMs: number, countMax: number, clock: ReturnType<typeof fakeTimers>): { w: LinkWatch; pings: number[]; deadAt: () => number | undefined; silent: () => number | undefined } {
  const pings: number[] = [];
  let deadAt: number | undefined;
  let silent: number | undefined;
  const w = new LinkWatch({ intervalMs, countMax, ping: () => pings.push(clock.now()), dead: (ms) => {
    deadAt = clock.now();
    silent = ms;
  }, now: clock.now, setTimer: clock.setTimer, clearTimer: clock.clearTimer });
  return { w, pings, deadAt: () => deadAt, silent: () => silent };
}

for (const [interval, count] of [[2000, 2], [15_000, 3], [1000, 1], [500, 6]] as const) {
  test(`ServerAliveInterval ${interval / 1000} s x ServerAliveCountMax ${count}: a link silent from any moment is given up exactly ${interval * count / 1000} s after its last byte`, () => {
    for (const phase of [0, 1, 137, interval / 2, interval - 1]) {
      const clock = fakeTimers();
      const { w, pings, deadAt, silent } = watch(interval, count, clock);
      // Bytes arrive every 100 ms for a while, then nothing: the link froze at `frozeAt`.
      for (let t = 0; t < 3 * interval + phase; t += 100) {
        clock.advance(Math.min(100, 3 * interval + phase - t));
        w.heard();
      }
      const frozeAt = clock.now();
      assert.equal(pings.length, 0, 'keepalives went out while bytes arrived');
      clock.advance(interval * count * 3);
      assert.equal(deadAt(), frozeAt + interval * count, `phase ${phase}`);
      assert.equal(silent(), interval * count);
      // One keepalive per interval of silence, the last half an interval before the deadline.
      assert.deepEqual(pings.map((p) => p - frozeAt), Array.from({ length: count }, (_, i) => Math.min(i + 1, count - 0.5) * interval));
    }
  });
}

test('an idle link whose server answers each keepalive lives on: one keepalive per interval of silence', () => {
  const clock = fakeTimers();
  const pings: number[] = [];
  let dead = false;
  let pending = false;
  const w = new LinkWatch({
    intervalMs: 1000, countMax: 3,
    ping: () => {
      pings.push(clock.now());
      pending = true;
    },
    dead: () => (dead = true),
    now: clock.now, setTimer: clock.setTimer, clearTimer: clock.clearTimer,
  });
  for (let t = 0; t < 60_000; t += 50) {
    clock.advance(50);
    // The answer comes back 200 ms after the request (a long link).
    if (pending && clock.now() - pings[pings.length - 1] >= 200) {
      pending = false;
      w.heard();
    }
  }
  assert.equal(dead, false);
  // Each answer (200 ms after its request) starts the next interval.
  assert.ok(pings.length >= 48 && pings.length <= 50, `${pings.length} keepalives in 60 s`);
});

test('stopped: no keepalive, no verdict', () => {
  const clock = fakeTimers();
  const { w, pings, deadAt } = watch(1000, 3, clock);
  w.stop();
  clock.advance(10_000);
  assert.deepEqual([pings.length, deadAt()], [0, undefined]);
});
