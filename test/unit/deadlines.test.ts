// The daemon's deadlines (daemon/deadlines.ts), on real time in tens of
// ms: none fires early, each fires once and in the order it falls due,
// however they share a duration; a cancelled one never fires; none keeps
// the process alive. And the turn's end (daemon/turn-end.ts): what a turn
// holds runs once, in order, after the turn.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { deadline } from '../../daemon/deadlines';
import { atTurnEnd } from '../../daemon/turn-end';
import { waitFor } from '../helpers/daemon';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `done()`, at most 5 s: a loaded machine runs timers late, never early. */
async function until(done: () => boolean): Promise<void> {
  assert.ok(await waitFor(done, 5000, 5), 'not within 5 s');
}

test('deadlines fire once each, never early, in the order they fall due, across durations and starts', async () => {
  const t0 = performance.now();
  const fired: Array<{ name: string; at: number; due: number }> = [];
  const arm = (name: string, ms: number): void => {
    const due = performance.now() + ms;
    deadline(() => fired.push({ name, at: performance.now(), due }), ms);
  };
  arm('a30', 30);
  arm('b60', 60);
  arm('c15', 15);
  await sleep(10);
  arm('d30', 30); // the same duration from a later start: due after a30
  arm('e15', 15);
  await until(() => fired.length === 5);
  assert.deepEqual(fired.map((f) => f.name), ['c15', 'e15', 'a30', 'd30', 'b60']);
  for (const f of fired) assert.ok(f.at >= f.due - 1, `${f.name} fired ${(f.due - f.at).toFixed(1)} ms early`);
  assert.ok(performance.now() - t0 < 1000);
});

test('a cancelled deadline never fires, also when it heads its list; cancelling twice or after it fired does nothing', async () => {
  // Deadlines of one duration fall due in the order they were armed: once a later one has fired,
  // an earlier one's time has surely passed.
  const fired: string[] = [];
  const first = deadline(() => fired.push('first'), 20);
  const second = deadline(() => fired.push('second'), 20);
  const third = deadline(() => fired.push('third'), 20);
  deadline(() => fired.push('after'), 20);
  first.cancel();
  first.cancel();
  third.cancel();
  await until(() => fired.includes('after'));
  assert.deepEqual(fired, ['second', 'after']);
  second.cancel();
  // Armed and cancelled thousands of times, as warm execs do: none of them fires.
  for (let i = 0; i < 10_000; i++) deadline(() => fired.push('churn'), 25).cancel();
  const last = deadline(() => fired.push('last'), 25);
  await until(() => fired.includes('last'));
  assert.deepEqual(fired, ['second', 'after', 'last']);
  last.cancel();
});

test('a deadline beyond what a Node timer takes waits, instead of firing at once as setTimeout would', async () => {
  let fired = false;
  const far = deadline(() => (fired = true), 2 ** 31 + 1000);
  await sleep(30);
  assert.equal(fired, false);
  far.cancel();
});

test('pending deadlines keep no process alive', () => {
  const module = path.join(__dirname, '..', '..', 'daemon', 'deadlines.js');
  const started = Date.now();
  const out = execFileSync(process.execPath, ['-e', `require(${JSON.stringify(module)}).deadline(() => console.log('fired'), 10_000); console.log('armed')`],
    { encoding: 'utf8', timeout: 5000 });
  assert.equal(out.trim(), 'armed');
  assert.ok(Date.now() - started < 4000, 'the process waited for its deadline');
});

test('what a turn holds runs once, in order, after the turn; what it holds meanwhile, on the next', async () => {
  const ran: string[] = [];
  atTurnEnd(() => {
    ran.push('a');
    atTurnEnd(() => ran.push('c'));
  });
  atTurnEnd(() => ran.push('b'));
  assert.deepEqual(ran, []);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(ran, ['a', 'b']);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(ran, ['a', 'b', 'c']);
});
