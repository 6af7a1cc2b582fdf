// Fast tests of the fleet's pure parts: the fair shares every daemon works
// out from the presence records, the Redis URL (its password never shown),
// and the "fleet" section of the daemon config.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { fairShares, type Wanter } from '../../daemon/fleet/share';
import { parseRedisUrl, scrub } from '../../daemon/redis-url';
import { DaemonConfigError, fleetLimitsFor, parseDaemonConfig } from '../../daemon/config';

const wanters = (demands: number[]): Wanter[] => demands.map((demand, i) => ({ id: `d${String(i).padStart(2, '0')}`, demand, since: 1000 + i }));

test('fair shares: 10 daemons wanting 8 each split a cap of 40 evenly', () => {
  const shares = fairShares(40, wanters(Array(10).fill(8)));
  assert.deepEqual([...shares.values()], Array(10).fill(4));
});

test('fair shares: 25 daemons and a cap of 40: everyone gets one, the 15 that wanted longest a second', () => {
  const shares = fairShares(40, wanters(Array(25).fill(8)));
  const values = [...shares.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, v]) => v);
  assert.deepEqual(values, [...Array(15).fill(2), ...Array(10).fill(1)]);
});

test('fair shares: what a small demand leaves goes to the others', () => {
  const shares = fairShares(10, wanters([1, 100, 3]));
  assert.deepEqual([shares.get('d00'), shares.get('d01'), shares.get('d02')], [1, 6, 3]);
});

test('fair shares: more wanters than the cap: the longest-waiting get one each, the rest none yet', () => {
  const shares = fairShares(3, wanters([5, 5, 5, 5, 5]));
  assert.deepEqual([...shares.values()].sort(), [0, 0, 1, 1, 1]);
  assert.equal(shares.get('d00'), 1);
  assert.equal(shares.get('d04'), 0);
});

test('fair shares, for any demands: within the cap, within each demand, all of the cap used when wanted, max-min fair', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 200 }), fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 40 }), (cap, demands) => {
    const w = wanters(demands);
    const shares = fairShares(cap, w);
    const total = [...shares.values()].reduce((a, b) => a + b, 0);
    assert.ok(total <= cap);
    assert.equal(total, Math.min(cap, demands.reduce((a, b) => a + b, 0)), 'work-conserving');
    for (const x of w) assert.ok(shares.get(x.id)! <= x.demand);
    // Nobody short of its demand gets less than anyone else's share minus one.
    const most = Math.max(0, ...shares.values());
    for (const x of w) if (shares.get(x.id)! < x.demand) assert.ok(shares.get(x.id)! >= most - 1);
  }), { numRuns: 500 });
});

test('Redis URL: parts, TLS, database; the password never in the display form', () => {
  const t = parseRedisUrl('rediss://fleet:s3cr%40t@redis.example:6380/2');
  assert.deepEqual({ host: t.host, port: t.port, db: t.db, username: t.username, password: t.password, tls: t.tls },
    { host: 'redis.example', port: 6380, db: 2, username: 'fleet', password: 's3cr@t', tls: true });
  assert.equal(t.display, 'rediss://fleet:***@redis.example:6380/2');
  assert.equal(parseRedisUrl('redis://:pw@10.0.0.1').display, 'redis://:***@10.0.0.1:6379/0');
  assert.equal(parseRedisUrl('redis://[::1]:7000').host, '::1');
  assert.equal(scrub('WRONGPASS for s3cr@t and s3cr%40t', t), 'WRONGPASS for *** and ***');
});

test('Redis URL: every refusal says what is wrong without repeating the URL', () => {
  for (const bad of ['http://:hunter2@h', 'redis://:hunter2@h/db', 'redis://:hunter2@h?x=1', 'redis://:hunter2@', 'not a url hunter2', '']) {
    assert.throws(() => parseRedisUrl(bad), (err: Error) => !err.message.includes('hunter2') && err.message.length > 10, bad);
  }
});

test('daemon config: "fleet" with defaults, per-host overrides, and errors that name the key but not the password', () => {
  const config = parseDaemonConfig({
    fleet: { redis: 'redis://:pw@127.0.0.1:6379', maxConnections: 30 },
    hosts: { 'gpu*': { maxSessions: 4, fleet: { maxConcurrentHandshakes: 3 } } },
  });
  assert.equal(config.fleet!.redis.port, 6379);
  assert.deepEqual(fleetLimitsFor(config, 'web1'), { maxConcurrentHandshakes: 8, maxConnections: 30 });
  assert.deepEqual(fleetLimitsFor(config, 'gpu7'), { maxConcurrentHandshakes: 3, maxConnections: 30 });
  const refused = (raw: unknown, re: RegExp): void => {
    assert.throws(() => parseDaemonConfig(raw), (err: Error) => err instanceof DaemonConfigError && re.test(err.message) && !err.message.includes('hunter2'));
  };
  refused({ fleet: { maxConnections: 3 } }, /fleet\.redis is missing/);
  refused({ fleet: { redis: 'redis://:hunter2@h:port' } }, /fleet\.redis/);
  refused({ fleet: { redis: 'redis://:hunter2@h', maxConections: 3 } }, /fleet: unknown key "maxConections"/);
  refused({ fleet: { redis: 'redis://:hunter2@h', maxConnections: 0 } }, /fleet\.maxConnections must be an integer >= 1/);
  refused({ hosts: { x: { fleet: { redis: 'redis://:hunter2@h' } } } }, /hosts\["x"\]\.fleet: unknown key "redis"/);
});
