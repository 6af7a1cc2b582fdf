// Faults a real sshd can be made to show: frozen listeners (the banner
// stall), frozen connections (a half-dead link), a server killed and
// restarted under load, MaxStartups pressure from another program. Every
// request ends promptly with a result or a typed error; the pool heals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as net from 'node:net';
import { SshMux, SshMuxError } from '../../client-sdk';
import { cleanupAll, remoteProcesses, startSshd, tempDir, writeClientConfig, type Sshd } from '../helpers/sshd';
import { startDaemon, waitFor } from '../helpers/daemon';
import { startWorld } from '../helpers/world';


async function setup(sshd: Sshd, extra: string[] = [], config?: Record<string, unknown>) {
  const { daemon, mux } = await startWorld({ sshd, extra, config });
  return { daemon, mux };
}

function descendants(pid: number): number[] {
  const fs = require('node:fs') as typeof import('node:fs');
  const all = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map((p) => {
    try {
      return { pid: Number(p), ppid: Number(/^PPid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'))![1]) };
    } catch {
      return { pid: Number(p), ppid: -1 };
    }
  });
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const c of all) if (c.ppid === p) {
      out.push(c.pid);
      walk(c.pid);
    }
  };
  walk(pid);
  return out;
}

test('banner stall (listener frozen): HANDSHAKE_TIMEOUT within ConnectTimeout plus a margin; after SIGCONT the next succeeds', async () => {
  const sshd = await startSshd();
  const { mux } = await setup(sshd, ['ConnectTimeout 2']);
  sshd.signalListener('SIGSTOP');
  try {
    const started = Date.now();
    await assert.rejects(mux.exec('t', 'true'), (e: SshMuxError) => {
      assert.equal(e.code, 'HANDSHAKE_TIMEOUT');
      assert.match(e.message, /banner/);
      return true;
    });
    const took = Date.now() - started;
    assert.ok(took < 2000 + 1500, `took ${took} ms`);
    const status = (await mux.status()).hosts![0];
    assert.ok(Number(status.handshakes!.failed) <= 2, `${status.handshakes!.failed} handshakes piled up`);
  } finally {
    sshd.signalListener('SIGCONT');
  }
  const r = await mux.exec('t', 'echo back');
  assert.equal(r.stdout.toString(), 'back\n');
  mux.close();
});

test('a frozen connection (its sshd SIGSTOPped), ServerAliveInterval 1: 20 new execs all succeed within 20 s', async () => {
  const sshd = await startSshd();
  const { mux } = await setup(sshd, ['ServerAliveInterval 1', 'ServerAliveCountMax 2']);
  assert.equal((await mux.exec('t', 'true')).code, 0);
  const frozen = descendants(sshd.pid);
  assert.ok(frozen.length > 0);
  for (const pid of frozen) process.kill(pid, 'SIGSTOP');
  try {
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) =>
      mux.exec('t', `echo ${i}`, { timeoutMs: 20_000 }).then((r) => r.stdout.toString() === `${i}\n`, (e: SshMuxError) => `${e.code}: ${e.message}`)));
    assert.deepEqual(results.filter((r) => r !== true), []);
    assert.ok(Date.now() - started < 20_000);
  } finally {
    for (const pid of frozen) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  mux.close();
});

test('sshd killed under load and back 3 s later: every request ends within 60 s, then 100 new execs succeed', async () => {
  const sshd = await startSshd();
  const { mux } = await setup(sshd);
  const inflight = Array.from({ length: 100 }, () =>
    mux.exec('t', 'sleep 2; echo done').then((r) => (r.code === 0 ? 'ok' : `exit ${r.code}`), (e: SshMuxError) => e.code));
  await new Promise((r) => setTimeout(r, 500));
  const started = Date.now();
  await sshd.stop();
  const restart = new Promise<Sshd>((resolve, reject) => setTimeout(() => startSshd({ port: sshd.port }).then(resolve, reject), 3000));
  const outcomes = await Promise.all(inflight);
  assert.ok(Date.now() - started < 60_000);
  const typed = new Set(['ok', 'CONNECTION_LOST', 'REFUSED', 'DEADLINE_EXCEEDED']);
  assert.deepEqual(outcomes.filter((o) => !typed.has(o)), [], 'an outcome that is neither ok nor a typed error');
  assert.ok(outcomes.includes('CONNECTION_LOST'), 'the commands that were running did not report CONNECTION_LOST');
  const back = await restart;
  const again = await Promise.all(Array.from({ length: 100 }, (_, i) =>
    mux.exec('t', `echo ${i}`, { timeoutMs: 30_000 }).then((r) => r.stdout.toString() === `${i}\n`, (e: SshMuxError) => `${e.code}: ${e.message}`)));
  assert.deepEqual(again.filter((r) => r !== true), []);
  assert.ok(back.logins() <= 8);
  mux.close();
});

test('MaxStartups pressure from another program: 30 unauthenticated connections held 6 s, 50 execs meanwhile all succeed once it lets go', async () => {
  const sshd = await startSshd({ maxStartups: '10:30:100' });
  const { mux } = await setup(sshd);
  const hogs = await Promise.all(Array.from({ length: 30 }, () => new Promise<net.Socket>((resolve) => {
    const s = net.connect(sshd.port, '127.0.0.1', () => resolve(s));
    s.on('error', () => {});
  })));
  const release = setTimeout(() => hogs.forEach((s) => s.destroy()), 6000);
  const started = Date.now();
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) =>
    mux.exec('t', `echo ${i}`, { timeoutMs: 40_000 }).then((r) => r.stdout.toString() === `${i}\n`, (e: SshMuxError) => `${e.code}: ${e.message}`)));
  clearTimeout(release);
  hogs.forEach((s) => s.destroy());
  assert.deepEqual(results.filter((r) => r !== true), []);
  assert.ok(Date.now() - started < 40_000);
  const host = (await mux.status()).hosts![0];
  // THROTTLED handshakes happened, were backed off from, and the requests waited instead of failing.
  assert.ok(Number(host.handshakes!.failed) < 40, `${host.handshakes!.failed} failed handshakes: a retry storm`);
  mux.close();
});

test('SIGTERM: running work finishes within the grace period, the rest is cancelled on the remote side, exit 0', async () => {
  const sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const daemon = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, args: ['--grace', '1'] });
  const mux = await SshMux.connect({ socket: daemon.socket });
  const marker = `sleep 91${Math.floor(Math.random() * 1e5)}`;
  const short = mux.exec('t', 'sleep 0.5; echo finished');
  const long = mux.spawn('t', `exec ${marker}`, { stdin: false });
  await new Promise((r) => long.once('started', r));
  assert.ok(await waitFor(() => remoteProcesses(marker).length === 1, 5000));
  const stopped = daemon.stop();
  assert.equal((await short).stdout.toString(), 'finished\n');
  await assert.rejects(long.exited, (e: SshMuxError) => e.code === 'SHUTTING_DOWN' && /TERM/.test(e.message));
  assert.equal(await stopped, 0);
  assert.ok(await waitFor(() => remoteProcesses(marker).length === 0, 3000), 'the remote command outlived the daemon');
  mux.close();
});

test('circuit breaker: a host that keeps failing (and never answered) is marked down, requests fail fast with the cause and the next probe, a sub-second probe heals it', async () => {
  const sshd = await startSshd();
  const { mux } = await setup(sshd, [], { breakerThreshold: 3, breakerCooldownMs: 1500, connectionAttempts: 1 });
  const port = sshd.port;
  await sshd.stop();
  for (let i = 0; i < 3; i++) {
    await assert.rejects(mux.exec('t', 'true'), (e: SshMuxError) => e.code === 'REFUSED');
  }
  const started = Date.now();
  await assert.rejects(mux.exec('t', 'true'), (e: SshMuxError) => {
    assert.equal(e.code, 'HOST_UNAVAILABLE');
    assert.match(e.message, /marked down after 3 failed handshakes in a row \(last: REFUSED/);
    return true;
  });
  assert.ok(Date.now() - started < 200, 'a request to a host marked down did not fail fast');
  const host = (await mux.status()).hosts![0];
  assert.equal(host.state, 'down');
  assert.equal(host.breaker, 'open');
  assert.ok(host.nextProbeInS! > 0 && host.nextProbeInS! <= 0.6, `the first probe is ${host.nextProbeInS} s away, not sub-second`);
  assert.equal(Number(host.handshakes!.failed), 3, 'handshakes were attempted while the host was down');
  await startSshd({ port });
  await new Promise((r) => setTimeout(r, 1600));
  const r = await mux.exec('t', 'echo healed');
  assert.equal(r.stdout.toString(), 'healed\n');
  const healed = (await mux.status()).hosts![0];
  assert.equal(healed.state, 'ok');
  assert.equal(healed.breaker, 'closed');
  assert.deepEqual(healed.breakerTransitions!.map((t) => t.to), ['open', 'half-open', 'closed'], 'more than one probe, or a transition missing');
  assert.match(healed.breakerTransitions![0].reason!, /^3 failed handshakes in a row \(last: REFUSED/);
  mux.close();
});

test('network loss between daemon and sshd (netns and veth): running calls end CONNECTION_LOST, new ones a typed error within their deadline, all heal when the link returns', async (t) => {
  const tag = String(process.pid % 10000);
  const ns = `sshmux${tag}`;
  const [hostSide, nsSide] = [`smx${tag}a`, `smx${tag}b`];
  const net3 = `10.231.${10 + (process.pid % 200)}`;
  const ip = (...args: string[]): void => {
    execFileSync('ip', args, { stdio: 'pipe' });
  };
  try {
    ip('netns', 'add', ns);
  } catch (err) {
    t.skip(`network namespaces are not available here: ${(err as Error).message}`);
    return;
  }
  try {
    ip('link', 'add', hostSide, 'type', 'veth', 'peer', 'name', nsSide);
    ip('link', 'set', nsSide, 'netns', ns);
    ip('addr', 'add', `${net3}.1/30`, 'dev', hostSide);
    ip('link', 'set', hostSide, 'up');
    ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${net3}.2/30`, 'dev', nsSide);
    ip('netns', 'exec', ns, 'ip', 'link', 'set', nsSide, 'up');
    const sshd = await startSshd({ netns: ns, address: `${net3}.2` });
    const { mux } = await setup(sshd, ['ServerAliveInterval 1', 'ServerAliveCountMax 2', 'ConnectTimeout 2']);
    assert.equal((await mux.exec('t', 'echo up')).stdout.toString(), 'up\n');
    const running = mux.spawn('t', 'sleep 30; echo never', { stdin: false });
    await new Promise((r) => running.once('started', r));

    ip('netns', 'exec', ns, 'ip', 'link', 'set', nsSide, 'down'); // packets now vanish: no RST, no FIN
    const lostAt = Date.now();
    await assert.rejects(running.exited, (e: SshMuxError) => e.code === 'CONNECTION_LOST');
    assert.ok(Date.now() - lostAt < 8000, `the dead link took ${Date.now() - lostAt} ms to notice`);
    const during = await mux.exec('t', 'true', { timeoutMs: 4000 }).then(() => 'ok', (e: SshMuxError) => e.code);
    assert.ok(['CONNECT_TIMEOUT', 'HANDSHAKE_TIMEOUT', 'DEADLINE_EXCEEDED'].includes(during), `while the link was down: ${during}`);

    ip('netns', 'exec', ns, 'ip', 'link', 'set', nsSide, 'up');
    // Right after the link returns the kernel may still answer EHOSTUNREACH
    // (a stale neighbour entry), and a request can fail after its attempts;
    // the pool itself must heal within seconds.
    let healed = '';
    const until = Date.now() + 30_000;
    while (healed !== 'healed\n' && Date.now() < until) {
      healed = await mux.exec('t', 'echo healed', { timeoutMs: 10_000 }).then((r) => r.stdout.toString(), (e: SshMuxError) => e.code);
      if (healed !== 'healed\n') await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(healed, 'healed\n', 'the pool did not heal within 30 s of the link returning');
    mux.close();
  } finally {
    await cleanupAll();
    try {
      ip('netns', 'del', ns); // takes the veth pair with it
    } catch {
      // already gone
    }
  }
});

test('the daemon killed under 40 calls in flight on one SshMux: each fails DAEMON_UNAVAILABLE, the program is warned of nothing, and a new daemon serves it', async () => {
  const sshd = await startSshd({ maxSessions: 10 });
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const first = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  const mux = await SshMux.connect({ socket: first.socket });
  const warnings: string[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(`${w.name}: ${w.message}`);
  };
  process.on('warning', onWarning);
  try {
    // Short enough to end by itself: a SIGKILLed daemon leaves its remote
    // commands running (sshd does not signal a session without a pty).
    const calls = Array.from({ length: 40 }, () => mux.exec('t', 'sleep 9.25'));
    assert.ok(await waitFor(() => remoteProcesses('sleep 9.25').length >= 10, 10_000), 'the calls did not start');
    process.kill(first.pid, 'SIGKILL');
    const outcomes = await Promise.allSettled(calls);
    const codes = outcomes.map((o) => (o.status === 'rejected' ? (o.reason as SshMuxError).code : 'resolved'));
    assert.deepEqual([...new Set(codes)], ['DAEMON_UNAVAILABLE']);
    // Node reports a listener leak on the next tick; give it a few.
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(warnings, []);
    const second = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, socket: first.socket });
    assert.equal((await mux.exec('t', 'echo again')).stdout.toString(), 'again\n');
    assert.deepEqual(warnings, []);
    mux.close();
    await second.stop();
  } finally {
    process.off('warning', onWarning);
    await cleanupAll();
  }
});

test('daemon restart: an SshMux made before it reconnects for new calls', async () => {
  const sshd = await startSshd();
  const dir = tempDir();
  const client = writeClientConfig(dir, [{ alias: 't', sshd }]);
  const first = await startDaemon({ dir, sshConfigPath: client.sshConfigPath });
  const mux = await SshMux.connect({ socket: first.socket });
  assert.equal((await mux.exec('t', 'echo one')).stdout.toString(), 'one\n');
  assert.equal(await first.stop(), 0);
  await assert.rejects(mux.exec('t', 'true'), (e: SshMuxError) => e.code === 'DAEMON_UNAVAILABLE');
  const second = await startDaemon({ dir, sshConfigPath: client.sshConfigPath, socket: first.socket });
  assert.equal((await mux.exec('t', 'echo two')).stdout.toString(), 'two\n');
  mux.close();
});
