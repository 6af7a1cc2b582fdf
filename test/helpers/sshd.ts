// Real OpenSSH sshd processes for the tests: one per test (or per need),
// on 127.0.0.1, with throwaway keys and the MaxSessions/MaxStartups the
// test asks for. Logins are as an account whose shell is /bin/sh (created
// when running as root), so no rc files slow every command down.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const SSHD = '/usr/sbin/sshd';
const TEST_USER = 'sshmuxtest';

export interface TestUser { name: string; home: string; uid: number; gid: number }

export interface SshdOptions {
  maxSessions?: number;
  maxStartups?: string;
  loginGraceTime?: number;
  /** Lines appended to sshd_config. */
  extraConfig?: string[];
  /** sshd's LogLevel (default VERBOSE; DEBUG1 logs every global request, e.g. keepalives). */
  logLevel?: string;
  port?: number;
  hostKey?: KeyPair;
  /** Listen on this address instead of 127.0.0.1 (with netns: an address inside it). */
  address?: string;
  /** Run inside this network namespace (ip netns). */
  netns?: string;
  /** authorized_keys lines (default: the shared client key); [] leaves logins to certificates. */
  authorizedKeys?: string[];
  /** TrustedUserCAKeys: public key lines of CAs whose user certificates log in. */
  trustedUserCaKeys?: string[];
  /** HostCertificate: a host certificate for hostKey (or the shared host key). */
  hostCertificate?: string;
  /** RevokedKeys: public key lines (keys, certificates' keys or CAs) refused. */
  revokedKeys?: string[];
}

export interface KeyPair { privatePath: string; publicLine: string }

export interface Sshd {
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  readonly dir: string;
  readonly logPath: string;
  readonly hostKey: KeyPair;
  readonly user: TestUser;
  readonly clientKeyPath: string;
  log(): string;
  /** Successful logins ("Accepted publickey for") so far. */
  logins(): number;
  /** Connections that tried to log in and failed (each one a PerSourcePenalties authfail on OpenSSH >= 9.8). */
  failedLogins(): number;
  /** Connections sshd dropped past MaxStartups so far. */
  drops(): number;
  /** Stops the listener; with killSessions (the default) its session processes too. */
  stop(opts?: { killSessions?: boolean }): Promise<void>;
  /** Signals the listener only (SIGSTOP makes it accept TCP and never answer: the banner stall). */
  signalListener(signal: NodeJS.Signals): void;
  /** Per-connection sshd processes (children of the listener). */
  sessionPids(): number[];
  /** Everything below the listener, deepest first, marking which are sshd processes. */
  connectionPids(): Array<{ pid: number; sshd: boolean }>;
}

const started = new Set<{ child: ChildProcess; dir: string; stop: () => Promise<void> }>();
const tempDirs: string[] = [];
let shared: { dir: string; hostKey: KeyPair; clientKey: KeyPair } | undefined;
let user: TestUser | undefined;

// A test file that ends (or crashes) must not leave sshds behind.
process.once('exit', () => {
  for (const s of started) s.child.kill('SIGKILL');
});

export function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-test-'));
  // sshd reads authorized_keys as the login user, who must reach into here.
  fs.chmodSync(dir, 0o755);
  tempDirs.push(dir);
  return dir;
}

/** The login account: sshmuxtest (created, shell /bin/sh) when root, else whoever runs the tests. */
export function testUser(): TestUser {
  if (user) return user;
  if (process.getuid!() === 0) {
    try {
      execFileSync('id', ['-u', TEST_USER], { stdio: 'ignore' });
    } catch {
      execFileSync('useradd', ['-m', '-s', '/bin/sh', TEST_USER]);
    }
    const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${TEST_USER}:`))!;
    const f = line.split(':');
    if (f[6] !== '/bin/sh') execFileSync('usermod', ['-s', '/bin/sh', TEST_USER]);
    // useradd leaves the password "!" (locked), and sshd without PAM refuses
    // locked accounts even for key logins; "*" means no password, not locked.
    execFileSync('usermod', ['-p', '*', TEST_USER]);
    user = { name: TEST_USER, uid: Number(f[2]), gid: Number(f[3]), home: f[5] };
  } else {
    const info = os.userInfo();
    user = { name: info.username, uid: info.uid, gid: info.gid, home: info.homedir };
  }
  return user;
}

function keygen(dir: string, name: string): KeyPair {
  const privatePath = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', privatePath]);
  return { privatePath, publicLine: fs.readFileSync(`${privatePath}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ') };
}

function sharedKeys(): NonNullable<typeof shared> {
  if (!shared) {
    const dir = tempDir();
    shared = { dir, hostKey: keygen(dir, 'host_ed25519'), clientKey: keygen(dir, 'client_ed25519') };
  }
  return shared;
}

/** A TCP port on 127.0.0.1 that nothing listened on a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once the port answers with an SSH banner. */
function bannerReady(address: string, port: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  const once = (): Promise<boolean> => new Promise((resolve) => {
    const s = net.connect(port, address);
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('data', (d) => done(d.toString('latin1').startsWith('SSH-')));
    s.once('error', () => done(false));
  });
  return (async () => {
    while (Date.now() < until) {
      if (await once()) return true;
      await new Promise((r) => setTimeout(r, 25));
    }
    return false;
  })();
}

export async function startSshd(opts: SshdOptions = {}): Promise<Sshd> {
  if (!fs.existsSync(SSHD)) {
    throw new Error(`${SSHD} not found: install OpenSSH's server (apt-get install openssh-server), or run .ci/run, which does`);
  }
  const keys = sharedKeys();
  const account = testUser();
  const hostKey = opts.hostKey ?? keys.hostKey;
  const dir = tempDir();
  const logPath = path.join(dir, 'sshd.log');
  const authorized = opts.authorizedKeys ?? [keys.clientKey.publicLine];
  fs.writeFileSync(path.join(dir, 'authorized_keys'), authorized.map((l) => `${l}\n`).join(''), { mode: 0o644 });
  const certificateConfig: string[] = [];
  if (opts.trustedUserCaKeys) {
    fs.writeFileSync(path.join(dir, 'user_ca_keys'), opts.trustedUserCaKeys.map((l) => `${l}\n`).join(''), { mode: 0o644 });
    certificateConfig.push(`TrustedUserCAKeys ${path.join(dir, 'user_ca_keys')}`);
  }
  if (opts.revokedKeys) {
    fs.writeFileSync(path.join(dir, 'revoked_keys'), opts.revokedKeys.map((l) => `${l}\n`).join(''), { mode: 0o644 });
    certificateConfig.push(`RevokedKeys ${path.join(dir, 'revoked_keys')}`);
  }
  if (opts.hostCertificate) certificateConfig.push(`HostCertificate ${opts.hostCertificate}`);
  fs.mkdirSync('/run/sshd', { recursive: true }); // privilege separation directory
  const version = sshdVersion();

  for (let attempt = 0; ; attempt++) {
    const port = opts.port ?? (opts.netns ? 2222 : await freePort());
    const address = opts.address ?? '127.0.0.1';
    const config = [
      `ListenAddress ${address}:${port}`,
      `HostKey ${hostKey.privatePath}`,
      'PidFile none',
      'UsePAM no',
      'UseDNS no',
      'StrictModes no',
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      `MaxSessions ${opts.maxSessions ?? 10}`,
      `MaxStartups ${opts.maxStartups ?? '10:30:100'}`,
      `LoginGraceTime ${opts.loginGraceTime ?? 30}`,
      `LogLevel ${opts.logLevel ?? 'VERBOSE'}`,
      'Subsystem sftp internal-sftp',
      'AcceptEnv SSHMUX_*',
      'PermitRootLogin no',
      'AllowTcpForwarding yes',
      'PrintMotd no',
      // 9.8+ penalises sources that fail auth; tests fail auth on purpose.
      ...(version >= 9.8 ? ['PerSourcePenalties no'] : []),
      ...certificateConfig,
      ...(opts.extraConfig ?? []),
    ];
    const configPath = path.join(dir, 'sshd_config');
    fs.writeFileSync(configPath, `${config.join('\n')}\n`);
    execFileSync(SSHD, ['-t', '-f', configPath], { stdio: 'pipe' });
    fs.writeFileSync(logPath, '');
    const argv = [SSHD, '-D', '-f', configPath, '-E', logPath];
    // `ip netns exec` execs sshd in place: the pid is sshd's.
    const child = opts.netns ? spawn('ip', ['netns', 'exec', opts.netns, ...argv], { stdio: 'ignore' }) : spawn(argv[0], argv.slice(1), { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    if (!(await bannerReady(address, port, 5000))) {
      child.kill('SIGKILL');
      await exited;
      const log = fs.readFileSync(logPath, 'utf8');
      if (attempt < 3 && /Address already in use/.test(log) && !opts.port) continue;
      throw new Error(`sshd did not start on port ${port}: ${log}`);
    }

    const pid = child.pid!;
    const sessionPids = (): number[] => descendants(pid);
    const stop = async (stopOpts: { killSessions?: boolean } = {}): Promise<void> => {
      const sessions = stopOpts.killSessions === false ? [] : descendantsDeep(pid);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGCONT'); // a stopped listener cannot act on SIGTERM
        child.kill('SIGTERM');
      }
      // The connections' sshd processes first, as a crash or OOM kill takes
      // them: clients see connections die, not commands killed by a signal.
      const sshds = new Set(sessions.filter((p) => commandLine(p).startsWith('sshd')));
      for (const p of sshds) killQuietly(p, 'SIGKILL');
      for (const p of sessions) if (!sshds.has(p)) killQuietly(p, 'SIGKILL');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    };
    const record = { child, dir, stop: () => stop() };
    started.add(record);
    const log = (): string => fs.readFileSync(logPath, 'utf8');
    return {
      host: address,
      port,
      pid,
      dir,
      logPath,
      hostKey,
      user: account,
      clientKeyPath: keys.clientKey.privatePath,
      log,
      logins: () => count(log(), /Accepted publickey for /g),
      failedLogins: () => count(log(), /(Connection closed|Disconnected) (by|from) authenticating user /g),
      drops: () => count(log(), /drop connection #\d+ .* past MaxStartups/g),
      stop: async (o) => {
        started.delete(record);
        await stop(o);
      },
      signalListener: (signal) => {
        child.kill(signal);
      },
      sessionPids,
      connectionPids: () => descendantsDeep(pid).map((p) => ({ pid: p, sshd: commandLine(p).startsWith('sshd') })),
    };
  }
}

let versionCache: number | undefined;
function sshdVersion(): number {
  if (versionCache === undefined) {
    // "sshd -V" is 9.5+; older ones print the version in their usage text.
    let text = '';
    try {
      text = execFileSync(SSHD, ['-V'], { stdio: 'pipe' }).toString();
    } catch (err) {
      text = String((err as { stderr?: Buffer }).stderr ?? '');
    }
    const m = /OpenSSH_(\d+)\.(\d+)/.exec(text);
    versionCache = m ? Number(m[1]) + Number(m[2]) / 10 : 0;
  }
  return versionCache;
}

function commandLine(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

function count(text: string, re: RegExp): number {
  return text.match(re)?.length ?? 0;
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

interface ProcInfo { pid: number; ppid: number; uid: number; cmdline: string }

function processes(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = fs.readFileSync(`/proc/${name}/status`, 'utf8');
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)![1]);
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
      const cmdline = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      out.push({ pid: Number(name), ppid, uid, cmdline });
    } catch {
      // exited while we looked
    }
  }
  return out;
}

function descendants(root: number): number[] {
  return processes().filter((p) => p.ppid === root).map((p) => p.pid);
}

/** Every process below root, deepest first, so killing in order leaves no orphans behind. */
function descendantsDeep(root: number): number[] {
  const all = processes();
  const result: number[] = [];
  const walk = (pid: number): void => {
    for (const p of all) {
      if (p.ppid === pid) {
        walk(p.pid);
        result.push(p.pid);
      }
    }
  };
  walk(root);
  return result;
}

/**
 * Processes started through any of the test sshds whose command line
 * contains needle. Descent from sshd is what makes it remote: the test's
 * own processes may carry the same text in their arguments.
 */
export function remoteProcesses(needle: string): ProcInfo[] {
  const all = processes();
  const byPid = new Map(all.map((p) => [p.pid, p]));
  const roots = new Set([...started].map((s) => s.child.pid));
  const underSshd = (p: ProcInfo): boolean => {
    for (let q: ProcInfo | undefined = byPid.get(p.ppid), hops = 0; q && hops < 64; q = byPid.get(q.ppid), hops++) {
      if (roots.has(q.pid)) return true;
    }
    return false;
  };
  return all.filter((p) => p.cmdline.includes(needle) && !p.cmdline.startsWith('sshd') && underSshd(p));
}

export interface ClientHost {
  alias: string;
  sshd: Sshd;
  /** More ssh_config lines for this Host block. */
  extra?: string[];
  /** Whether known_hosts lists the sshd's host key (default true). */
  knownHost?: boolean;
}

export interface ClientConfig { dir: string; sshConfigPath: string; knownHostsPath: string; identityPath: string }

/** An ssh_config and known_hosts for the daemon that reach the given sshds. */
export function writeClientConfig(dir: string, hosts: ClientHost[]): ClientConfig {
  const sshConfigPath = path.join(dir, 'ssh_config');
  const knownHostsPath = path.join(dir, 'known_hosts');
  const identityPath = sharedKeys().clientKey.privatePath;
  const blocks = hosts.map((h) => [
    `Host ${h.alias}`,
    `  HostName ${h.sshd.host}`,
    `  Port ${h.sshd.port}`,
    `  User ${h.sshd.user.name}`,
    `  IdentityFile ${identityPath}`,
    '  IdentitiesOnly yes',
    `  UserKnownHostsFile ${knownHostsPath}`,
    '  GlobalKnownHostsFile /dev/null',
    '  StrictHostKeyChecking yes',
    ...(h.extra ?? []).map((l) => `  ${l}`),
  ].join('\n'));
  fs.writeFileSync(sshConfigPath, `${blocks.join('\n\n')}\n`);
  const known = hosts.filter((h) => h.knownHost !== false).map((h) => `[${h.sshd.host}]:${h.sshd.port} ${h.sshd.hostKey.publicLine}\n`);
  fs.writeFileSync(knownHostsPath, known.join(''), { mode: 0o600 });
  return { dir, sshConfigPath, knownHostsPath, identityPath };
}

/** Stops every sshd still running and removes the temp dirs. */
export async function cleanupAll(): Promise<void> {
  for (const s of [...started]) {
    started.delete(s);
    await s.stop();
  }
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  shared = undefined;
}
