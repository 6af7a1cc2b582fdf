// A real redis-server for the fleet tests and bench: on a free loopback
// port, in a throwaway directory, persisting nothing (--save '',
// --appendonly no), optionally with a password or TLS only. It can be
// killed and started again on the same port (Redis lost mid-run, then back),
// or stopped with SIGSTOP (a Redis that accepts and never answers).
import { after } from 'node:test';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { freePort, tempDir } from './sshd';

const REDIS_SERVER = '/usr/bin/redis-server';

export interface RedisOptions {
  password?: string;
  /** Serve TLS only (rediss://), with a throwaway CA whose certificate is `caPath`. */
  tls?: boolean;
  /** This port (from freePort()) instead of a fresh one: a daemon was told about it before Redis was there. */
  port?: number;
}

export interface RedisServer {
  readonly port: number;
  /** redis:// or rediss:// with the password, as a daemon config takes it. */
  readonly url: string;
  /** The CA certificate a TLS client must trust (tls only). */
  readonly caPath?: string;
  readonly dir: string;
  pid(): number;
  /** SIGKILL: gone at once, as a crash or an OOM kill takes it. */
  kill(): Promise<void>;
  /** Starts it again on the same port (after kill). */
  restart(): Promise<void>;
  /** SIGSTOP / SIGCONT: connections stay open, nothing answers. */
  freeze(): void;
  thaw(): void;
  /** One redis-cli command against it; its stdout. */
  cli(...args: string[]): string;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
const startedServers: RedisServer[] = [];
// As in helpers/daemon.ts: the file's servers stop when it ends, under the test runner only.
if (process.env.NODE_TEST_CONTEXT) {
  after(async () => {
    for (const r of startedServers.splice(0)) await r.stop();
  });
}
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startRedis(opts: RedisOptions = {}): Promise<RedisServer> {
  if (!fs.existsSync(REDIS_SERVER)) {
    throw new Error(`${REDIS_SERVER} not found: install it (apt-get install redis-server), or run .ci/run, which does`);
  }
  const dir = tempDir();
  const tls = opts.tls ? makeCertificates(dir) : undefined;
  let port = opts.port ?? await freePort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const launch = async (): Promise<void> => {
    const args = ['--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no',
      '--logfile', path.join(dir, 'redis.log'), '--protected-mode', 'no'];
    if (opts.password) args.push('--requirepass', opts.password);
    if (tls) args.push('--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--tls-auth-clients', 'no');
    else args.push('--port', String(port));
    const c = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
    child = c;
    running.add(c);
    exited = new Promise((resolve) => c.once('exit', () => {
      running.delete(c);
      resolve();
    }));
    const until = Date.now() + 5000;
    while (!(await listening(port))) {
      if (c.exitCode !== null || Date.now() > until) {
        c.kill('SIGKILL');
        throw new Error(`redis-server did not start on port ${port}: ${readLog(dir)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  for (let attempt = 0; ; attempt++) {
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt >= 3 || opts.port || !/Address already in use/.test(readLog(dir))) throw err;
      port = await freePort();
    }
  }

  const auth = opts.password ? `:${encodeURIComponent(opts.password)}@` : '';
  const url = `${tls ? 'rediss' : 'redis'}://${auth}127.0.0.1:${port}/0`;
  const kill = async (): Promise<void> => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
    await exited;
  };
  const server: RedisServer = {
    port,
    url,
    caPath: tls?.ca,
    dir,
    pid: () => child?.pid ?? 0,
    kill,
    restart: launch,
    freeze: () => child?.kill('SIGSTOP'),
    thaw: () => child?.kill('SIGCONT'),
    cli: (...args) => execFileSync('redis-cli', [
      ...(tls ? ['--tls', '--cacert', tls.ca] : []), '-h', '127.0.0.1', '-p', String(port),
      ...(opts.password ? ['--no-auth-warning', '-a', opts.password] : []), ...args,
    ]).toString(),
    stop: kill,
  };
  startedServers.push(server);
  return server;
}

function readLog(dir: string): string {
  try {
    return fs.readFileSync(path.join(dir, 'redis.log'), 'utf8').slice(-2000);
  } catch {
    return '';
  }
}

/** A throwaway CA and a server certificate for 127.0.0.1 signed by it. */
function makeCertificates(dir: string): { ca: string; cert: string; key: string } {
  const f = (name: string): string => path.join(dir, name);
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { stdio: 'pipe' });
  };
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=sshmux test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=127.0.0.1',
    '-keyout', f('redis.key'), '-out', f('redis.csr'));
  fs.writeFileSync(f('san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', f('redis.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1',
    '-extfile', f('san.ext'), '-out', f('redis.pem'));
  // redis-server may run as another user than the tests when they are root; the key is throwaway.
  fs.chmodSync(f('redis.key'), 0o644);
  return { ca: f('ca.pem'), cert: f('redis.pem'), key: f('redis.key') };
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
