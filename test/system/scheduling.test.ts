// The heart of it: fan-out against sshd's real MaxSessions and MaxStartups.
// The daemons, sshds and clients stop when the file ends (helpers/world.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWorld } from '../helpers/world';


test('300 concurrent execs: all correct, at most 8 logins, no MaxStartups drop', async () => {
  const { sshd, daemon, mux } = await startWorld({ sshd: { maxSessions: 10, maxStartups: '10:30:100' } });
  const results = await Promise.all(Array.from({ length: 300 }, (_, i) =>
    mux.exec('t', `sleep 0.2; echo ${i}`).then((r) => ({ i, out: r.stdout.toString(), code: r.code }),
      (e) => ({ i, out: `${e.code}: ${e.message}`, code: -1 }))));
  const wrong = results.filter((r) => r.code !== 0 || r.out !== `${r.i}\n`);
  assert.deepEqual(wrong, [], 'some execs failed or returned another call\'s output');
  assert.ok(sshd.logins() <= 8, `sshd logged ${sshd.logins()} logins`);
  assert.equal(sshd.drops(), 0, 'sshd dropped connections past MaxStartups');
  const status = await mux.status();
  const host = status.hosts!.find((h) => h.name === 't')!;
  assert.ok(host.connections!.length <= 8);
  assert.ok(host.connections!.every((c) => (c.sessions ?? 0) <= 10));
});

test('sshd at MaxSessions 3 while the daemon assumes 10: 60 concurrent execs all succeed', async () => {
  const { daemon, mux } = await startWorld({ alias: 'low', sshd: { maxSessions: 3 }, config: { maxSessions: 10 } });
  const results = await Promise.all(Array.from({ length: 60 }, (_, i) =>
    mux.exec('low', `sleep 0.1; echo ${i}`).then((r) => r.stdout.toString() === `${i}\n` && r.code === 0,
      (e) => `${e.code}: ${e.message}`)));
  assert.deepEqual(results.filter((r) => r !== true), []);
  const host = (await mux.status()).hosts!.find((h) => h.name === 'low')!;
  assert.equal(host.maxSessions, 3, 'the pool did not learn the server\'s lower MaxSessions');
  assert.ok(daemon.logs().includes('MaxSessions is lower than assumed'));
});

test('a closed slot is reused without a round trip each time; at the limit it waits for one, and sshd never refuses', async () => {
  // sshd logs every global request at DEBUG1: the keepalives whose replies prove it freed closed sessions.
  const { sshd, daemon, mux } = await startWorld({ sshd: { maxSessions: 10, logLevel: 'DEBUG1' }, config: { maxSessions: 10, maxConnections: 1 } });
  const keepalives = (): number => sshd.log().split('\n').filter((l) => /global_request: rtype keepalive@openssh\.com/.test(l)).length;
  // Sequential: a round trip once the closed slots, the running one and the spare reach 10, i.e. one per 8 sessions.
  for (let i = 0; i < 45; i++) assert.equal((await mux.exec('t', 'true')).code, 0);
  const sequential = keepalives();
  assert.ok(sequential >= 4 && sequential <= 7, `${sequential} keepalive round trips for 45 sequential execs (one each before)`);
  // At the limit: 20 callers doing execs back to back on the one connection, so that requests always wait and a
  // slot the server closes is wanted at once: reused before sshd has freed it, the open would be refused.
  const outputs = await Promise.all(Array.from({ length: 20 }, async (_, caller) => {
    let out = '';
    for (let i = 0; i < 10; i++) out += (await mux.exec('t', `echo ${caller}.${i}`)).stdout.toString();
    return out;
  }));
  assert.deepEqual(outputs, Array.from({ length: 20 }, (_, c) => Array.from({ length: 10 }, (_, i) => `${c}.${i}\n`).join('')));
  assert.ok(!daemon.logs().includes('MaxSessions is lower than assumed'), 'sshd refused a session: a slot was reused too early');
  const host = (await mux.status()).hosts!.find((h) => h.name === 't')!;
  assert.equal(host.maxSessions, 10);
  assert.equal(host.connections!.length, 1);
});

test('slots waiting for their round trip count as capacity: a few callers churning through many execs need one connection', async () => {
  const { sshd, daemon, mux } = await startWorld({ sshd: { maxSessions: 10 } });
  // 4 at a time, far below 10 sessions: but the closed slots between them reach the limit every few execs,
  // and a request that waits for their round trip must not open a second connection.
  await Promise.all(Array.from({ length: 4 }, async () => {
    for (let i = 0; i < 40; i++) assert.equal((await mux.exec('t', 'true')).code, 0);
  }));
  assert.equal(sshd.logins(), 1, `${sshd.logins()} logins for 4 callers`);
});
