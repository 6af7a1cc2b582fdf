// Redis is not a new way to fail: a fleet of real daemons keeps serving when
// its real redis-server is killed, frozen or absent at start, says so once,
// and applies the fleet limits again once Redis is back. And the Redis
// password (redis://:pw@, rediss:// with TLS) never shows: not in the logs,
// not in sshmuxctl status, /metrics, the status feed or the status page.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as http from 'node:http';
import * as path from 'node:path';
import * as fs from 'node:fs';
import WebSocket from 'ws';
import { SshMux } from '../../client-sdk';
import { freePort, startSshd, tempDir, writeClientConfig, type Sshd } from '../helpers/sshd';
import { startRedis } from '../helpers/redis';
import { fanOut, startFleet, stopFleet, type FleetMember } from '../helpers/fleet';
import { startDaemon, waitFor } from '../helpers/daemon';

const MAIN = path.join(__dirname, '..', '..', 'daemon', 'main.js');
const CTL = path.join(__dirname, '..', '..', 'cli', 'sshmuxctl.js');

// Daemons, Redis servers and sshd stop when the file ends (helpers/daemon.ts, redis.ts).

const warnings = (m: FleetMember, re: RegExp): number => m.daemon.logs().split('\n').filter((l) => /"level":40/.test(l) && re.test(l)).length;

async function redisUp(m: FleetMember): Promise<boolean> {
  return (await m.mux.status()).fleet?.redisUp === true;
}

test('Redis killed mid-run: no request fails, every daemon serves on, one warning each; once Redis is back the cap holds again', async () => {
  const cap = 6;
  const sshd = await startSshd({ maxSessions: 10, maxStartups: '10:30:100' });
  const redis = await startRedis();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  // Each daemon alone may hold 4 connections: 16 in all, over the fleet's 6, while Redis is away.
  const members = await startFleet({ n: 4, dir, sshConfigPath: client.sshConfigPath,
    config: { maxConnections: 4, fleet: { redis: redis.url, maxConcurrentHandshakes: 4, maxConnections: cap } } });

  // Redis dies while the first wave runs.
  const wave1 = fanOut(members, 't', 60, 'sleep 0.5; echo %i', 60_000);
  await new Promise((r) => setTimeout(r, 700));
  await redis.kill();
  const r1 = await wave1;
  assert.deepEqual(r1.failed, {}, 'requests failed when Redis died');
  for (const m of members) assert.equal(await redisUp(m), false);

  // Without Redis: everyone serves on local limits (and opens what it needs, up to its own 4).
  const r2 = await fanOut(members, 't', 60, 'sleep 0.5; echo %i', 60_000);
  assert.deepEqual(r2.failed, {}, 'requests failed while Redis was away');
  for (const m of members) {
    assert.equal(warnings(m, /fleet: lost Redis/), 1, m.daemon.logs());
    assert.equal(Number((await m.mux.status()).fleet!.outages), 1);
  }
  const duringOutage = sshd.sessionPids().length;

  // Back: every daemon uses it again, counts the connections it opened meanwhile, and hands back what the cap has no room for.
  await redis.restart();
  for (const m of members) assert.ok(await waitFor(() => redisUp(m), 10_000, 200), 'a daemon did not notice Redis back');
  const backWithin = await waitFor(() => sshd.sessionPids().length <= cap && Number(redis.cli('zcard', `semaphore:sshmux:fleet:127.0.0.1:${sshd.port}:connections`)) <= cap, 20_000, 200);
  assert.ok(backWithin, `${sshd.sessionPids().length} connections a while after Redis came back (cap ${cap}; ${duringOutage} during the outage)`);
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, sshd.sessionPids().length);
  }, 50);
  const r3 = await fanOut(members, 't', 60, 'sleep 0.5; echo %i', 60_000);
  clearInterval(sampler);
  assert.deepEqual(r3.failed, {});
  assert.ok(peak <= cap, `${peak} connections at once after Redis came back, for a cap of ${cap}`);
  for (const m of members) assert.match(m.daemon.logs(), /fleet: Redis answers again/);
});

test('Redis frozen (SIGSTOP): requests needing new connections are served within their deadlines, on local limits', async () => {
  const sshd = await startSshd();
  const redis = await startRedis();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const members = await startFleet({ n: 2, dir, sshConfigPath: client.sshConfigPath, config: { fleet: { redis: redis.url } } });
  redis.freeze();
  try {
    // No connection yet: every one of these needs the fleet's permits, and Redis never answers.
    const started = Date.now();
    const r = await fanOut(members, 't', 30, 'echo %i', 10_000);
    assert.deepEqual(r.failed, {});
    assert.ok(Date.now() - started < 10_000);
    for (const m of members) {
      assert.equal(await redisUp(m), false);
      assert.equal(warnings(m, /fleet: lost Redis/), 1, m.daemon.logs());
    }
  } finally {
    redis.thaw();
  }
  for (const m of members) assert.ok(await waitFor(() => redisUp(m), 10_000, 200), 'a daemon did not notice Redis thaw');
});

test('Redis unreachable at start: the daemon starts, warns once, serves; it joins the fleet when Redis appears', async () => {
  const sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const port = await freePort();
  const started = Date.now();
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, config: { fleet: { redis: `redis://127.0.0.1:${port}` } } });
  const member = { daemon, mux: await SshMux.connect({ socket: daemon.socket }) };
  assert.ok(Date.now() - started < 8_000, 'the daemon waited too long for Redis');
  const r = await member.mux.exec('t', 'echo served');
  assert.equal(r.stdout.toString(), 'served\n');
  await new Promise((resolve) => setTimeout(resolve, 2500)); // reconnect attempts go on meanwhile
  assert.equal(warnings(member, /fleet: Redis does not answer/), 1, daemon.logs());
  assert.equal(warnings(member, /fleet/), 1, daemon.logs());
  assert.equal(await redisUp(member), false);

  const redis = await startRedis({ port });
  assert.ok(await waitFor(() => redisUp(member), 10_000, 200), 'the daemon never joined the fleet');
  // The connection it opened alone is counted into the fleet.
  assert.ok(await waitFor(() => Number(redis.cli('zcard', `semaphore:sshmux:fleet:127.0.0.1:${sshd.port}:connections`)) === 1, 5_000, 200));
  assert.match(daemon.logs(), /fleet: Redis answers again/);
});

test('the Redis password never shows, over TLS or not: logs, sshmuxctl status, /metrics, the status feed and page, config errors', async () => {
  const password = 'pw-Zq81x-never-shown';
  const wrong = 'wrong-Kx77-never-shown';
  const sshd = await startSshd();
  const redis = await startRedis({ password, tls: true });
  assert.match(redis.url, /^rediss:\/\/:pw-Zq81x/);
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const env = { NODE_EXTRA_CA_CERTS: redis.caPath };
  const good = await startFleet({ n: 1, dir: path.join(dir, 'good'), sshConfigPath: client.sshConfigPath, env,
    args: ['--http', '127.0.0.1:0'], config: { fleet: { redis: redis.url } } });
  const bad = await startFleet({ n: 1, dir: path.join(dir, 'bad'), sshConfigPath: client.sshConfigPath, env,
    config: { fleet: { redis: redis.url.replace(encodeURIComponent(password), encodeURIComponent(wrong)) } } });
  const [g, b] = [good[0], bad[0]];
  assert.ok(await waitFor(() => redisUp(g), 5_000, 100), g.daemon.logs());
  await fanOut([g, b], 't', 10, 'echo %i');
  assert.ok(Number(redis.cli('zcard', `semaphore:sshmux:fleet:127.0.0.1:${sshd.port}:connections`)) >= 1, 'the TLS daemon did not use Redis');
  assert.equal(await redisUp(b), false);
  assert.equal(warnings(b, /fleet: Redis does not answer/), 1, b.daemon.logs());
  assert.match(b.daemon.logs(), /WRONGPASS|NOAUTH|invalid/i);

  // The fleet's figures are read from Redis every second.
  assert.ok(await waitFor(async () => ((await g.mux.status()).fleet?.targets?.[0]?.fleetConnections ?? 0) >= 1, 5_000, 100));
  const port = Number(/"http":"127\.0\.0\.1:(\d+)"/.exec(g.daemon.logs())![1]);
  const shown: Record<string, string> = {
    'good daemon log': g.daemon.logs(),
    'bad daemon log': b.daemon.logs(),
    'sshmuxctl status': ctl(g.daemon.socket, 'status') + ctl(b.daemon.socket, 'status'),
    'sshmuxctl status --json': ctl(g.daemon.socket, 'status', '--json') + ctl(b.daemon.socket, 'status', '--json'),
    '/metrics': await get(port, '/metrics'),
    '/status feed': await statusFeed(port),
    'status page': renderedPage(port),
  };
  assert.match(shown['status page'], /<tr data-target="127\.0\.0\.1:\d+">/);
  assert.match(shown['sshmuxctl status'], /fleet: rediss:\/\/:\*\*\*@127\.0\.0\.1:\d+\/0 up/);
  assert.match(shown['/metrics'], /sshmux_fleet_connections\{target="127\.0\.0\.1:\d+",scope="fleet"\} [1-9]/);
  assert.match(shown['/status feed'], /"fleetConnections":[1-9]/);
  for (const [where, text] of Object.entries(shown)) {
    assert.ok(text.length > 0, `${where} is empty`);
    assert.ok(!text.includes(password) && !text.includes(wrong), `the password shows in ${where}`);
  }

  // A config the daemon refuses: the message names the key, never the URL.
  const configPath = path.join(dir, 'bad-url.json');
  fs.writeFileSync(configPath, JSON.stringify({ fleet: { redis: `redis://:${password}@127.0.0.1:notaport` } }));
  const refused = spawnSync(process.execPath, [MAIN, '--socket', path.join(dir, 'x.sock'), '-F', client.sshConfigPath, '--config', configPath]);
  assert.equal(refused.status, 78);
  assert.match(refused.stderr.toString(), /fleet\.redis/);
  assert.ok(!refused.stderr.toString().includes(password) && !refused.stdout.toString().includes(password));
});

function ctl(socket: string, ...args: string[]): string {
  return execFileSync(process.execPath, [CTL, '--socket', socket, ...args]).toString();
}

function get(port: number, urlPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

function statusFeed(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/status`);
    ws.once('message', (data) => {
      ws.close();
      resolve(data.toString());
    });
    ws.once('error', reject);
  });
}

/**
 * The status page as headless Chromium renders it, once it shows the fleet.
 * Chromium's virtual time does not wait for WebSocket traffic, so a render
 * may come before the first snapshot: render again, a few times at most.
 */
function renderedPage(port: number): string {
  let dom = '';
  for (let i = 0; i < 5 && !/data-target=/.test(dom); i++) {
    dom = execFileSync('chromium', ['--headless', '--no-sandbox', '--disable-gpu', `--user-data-dir=${tempDir()}`, '--virtual-time-budget=3000',
      '--dump-dom', `http://127.0.0.1:${port}/`], { timeout: 60_000, stdio: ['ignore', 'pipe', 'ignore'] }).toString()
      .replace(/<script>[\s\S]*<\/script>/, '');
  }
  return dom;
}
