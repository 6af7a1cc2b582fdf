#!/usr/bin/env node
// sshmuxctl: inspect and steer a running sshmuxd.
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { SshMux, SshMuxError, type ControlAction, type Status } from '../client-sdk';
import { checkJobArgs, JOB_USAGE, runJobCommand } from './job-command';
import { controlDir, dialerPath, doorIdentity, NEEDS_GATEWAY, sshConfigBlock } from './ssh-config-block';
import { exitWhenIdle } from './stdio';

const USAGE = `usage: sshmuxctl [--socket PATH] [--json] COMMAND

  status [--json]   hosts, their connections, sessions in use and queues, and
                    each host's circuit breaker: its state, the next probe and
                    its recent transitions
                    and with a fleet, per target the fleet's handshakes and
                    connections (from Redis) beside this daemon's own
  check HOST        HOST can be reached, through the pool: a ready pooled
                    connection, else a new one opened within the host's
                    handshake budget and circuit breaker (prints the
                    handshake's time); or the classified error (exit 1)
  drain HOST        HOST's connections take no new sessions and close once
                    their sessions end; new requests open fresh connections
  reload            re-read ssh_config and the daemon config (as SIGHUP);
                    unchanged hosts keep their connections
  stop              finish running sessions (the grace period) and exit
  gateway           the SSH front door (sshmuxd --gateway): its address, a
                    known_hosts line per host key (ed25519, ECDSA, RSA) and the
                    file holding them, the key to log in with, and its
                    connections and sessions now
  ssh-config [--identity FILE] [HOST...]
                    an ssh_config block to Include at the top of
                    ~/.ssh/config: then ssh, scp, sftp, rsync, git and
                    Ansible reach HOST (default: every host) on the pooled
                    connections, through a ControlMaster per destination
                    whose connection goes to the front door; --identity: the
                    key to log in to the door with (default: its generated
                    client key, if you can read it; '~/...' is left for ssh to
                    expand per user, for /etc/ssh/ssh_config.d/)
${JOB_USAGE}`;

const HOST_COMMANDS = new Set(['check', 'drain']);

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        socket: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
        // job ...
        name: { type: 'string' }, timeout: { type: 'string' }, stderr: { type: 'boolean' }, from: { type: 'string' },
        follow: { type: 'boolean' }, force: { type: 'boolean' },
        // ssh-config
        identity: { type: 'string' },
      },
      allowPositionals: true,
    });
  } catch (err) {
    process.stderr.write(`sshmuxctl: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const [command, ...rest] = positionals;
  const { socket, help: _help, ...flags } = values;
  if (command === 'job') {
    const why = checkJobArgs(rest, flags);
    if (why) {
      process.stderr.write(`sshmuxctl: ${why}\n${USAGE}\n`);
      return 2;
    }
    let mux: SshMux | undefined;
    try {
      mux = await SshMux.connect({ socket, clientName: 'sshmuxctl' });
      return await runJobCommand(mux, rest, flags);
    } catch (err) {
      // A wait that cannot tell exits 255: the job's own status may be anything else.
      if (rest[0] !== 'wait' || !(err instanceof SshMuxError)) throw err;
      process.stderr.write(`sshmuxctl: ${err.code}: ${err.message}\n`);
      return 255;
    } finally {
      mux?.close();
    }
  }
  if (command === 'ssh-config') {
    const mux = await SshMux.connect({ socket, clientName: 'sshmuxctl' });
    try {
      return sshConfig(await mux.status(), rest, values.identity);
    } finally {
      mux.close();
    }
  }
  const jobFlag = Object.keys(flags).find((f) => f !== 'json');
  if (jobFlag) {
    process.stderr.write(`sshmuxctl: --${jobFlag} is for ${jobFlag === 'identity' ? 'ssh-config' : 'job commands'}\n${USAGE}\n`);
    return 2;
  }
  const wantsHost = HOST_COMMANDS.has(command);
  const known = ['status', 'reload', 'stop', 'gateway'].includes(command) || wantsHost;
  if (!known || rest.length !== (wantsHost ? 1 : 0)) {
    const why = !command ? 'missing command' : !known ? `unknown command "${command}"`
      : wantsHost ? `${command} needs one HOST` : `${command} takes no arguments`;
    process.stderr.write(`sshmuxctl: ${why}\n${USAGE}\n`);
    return 2;
  }
  const mux = await SshMux.connect({ socket: values.socket, clientName: 'sshmuxctl' });
  try {
    if (command === 'status') {
      const status = await mux.status();
      process.stdout.write(values.json ? `${JSON.stringify(toJson(status), null, 2)}\n` : table(status) + fleetTable(status));
      return 0;
    }
    if (command === 'gateway') return gateway(await mux.status(), values.json ?? false);
    const host = rest[0] ?? '';
    try {
      const r = await mux.control(command as ControlAction, host);
      process.stdout.write(values.json ? `${JSON.stringify({ ok: true, ...r })}\n` : `${r.message}\n`);
      return 0;
    } catch (err) {
      if (!(err instanceof SshMuxError) || err.code === 'DAEMON_UNAVAILABLE') throw err;
      // A failed check is an answer, not a crash: say what failed, exit 1.
      process.stdout.write(values.json ? `${JSON.stringify({ ok: false, code: err.code, message: err.message })}\n`
        : `${command === 'check' ? `${host}: ` : ''}${err.code}: ${err.message}\n`);
      return 1;
    }
  } finally {
    mux.close();
  }
}

/** sshmuxctl gateway: what an SSH client needs to use the front door. */
function gateway(s: Status, json: boolean): number {
  const g = s.gateway;
  if (!g) {
    process.stderr.write('sshmuxctl: this sshmuxd has no gateway; start it with --gateway 127.0.0.1:PORT (or "gateway" in its config)\n');
    return 1;
  }
  const info = {
    address: g.address ?? '', knownHosts: g.knownHosts ?? '', knownHostsFile: g.knownHostsFile ?? '',
    authorizedKeys: g.authorizedKeys ?? '', clientKey: g.clientKey ?? '',
    connections: g.connections ?? 0, sessions: g.sessions ?? 0, authFailures: Number(g.authFailures ?? 0),
  };
  if (json) {
    process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
    return 0;
  }
  const keys = info.clientKey ? `log in with ${info.clientKey} (generated; readable by the daemon's user only)`
    : `keys listed in ${info.authorizedKeys}`;
  process.stdout.write([
    `address          ${info.address}`,
    // One row per host key, so that `awk '/^known_hosts / {print $2, $3, $4}'` gives the known_hosts lines.
    ...info.knownHosts.split('\n').map((line) => `known_hosts      ${line}`),
    `host keys file   ${info.knownHostsFile} (the same lines: a UserKnownHostsFile for clients here)`,
    `authentication   ${keys}`,
    `user name        the destination: alias or user@alias`,
    `now              ${info.connections} connections, ${info.sessions} sessions, ${info.authFailures} refused logins since start`,
    '',
  ].join('\n'));
  return 0;
}

/** sshmuxctl ssh-config: the block on stdout, or why this daemon cannot serve it (exit 1). */
function sshConfig(s: Status, hosts: string[], identityFlag: string | undefined): number {
  const g = s.gateway;
  const refuse = (why: string): number => {
    process.stderr.write(`sshmuxctl: ${why}\n`);
    return 1;
  };
  if (!g?.address) return refuse(`the ssh_config block ${NEEDS_GATEWAY}; this sshmuxd has no front door: restart it with one, then run sshmuxctl ssh-config again`);
  const id = doorIdentity(identityFlag, g.clientKey ?? '', g.authorizedKeys ?? '');
  if ('error' in id) return refuse(id.error);
  // The masters' sockets go there (~ is the passwd entry's home to ssh), and ssh refuses to start a master without it.
  const dotSsh = controlDir();
  if (!fs.existsSync(dotSsh)) {
    fs.mkdirSync(dotSsh, { mode: 0o700 });
    process.stderr.write(`sshmuxctl: made ${dotSsh} (mode 0700) for the ControlMaster sockets\n`);
  }
  process.stdout.write(sshConfigBlock({
    address: g.address, knownHosts: g.knownHosts ?? '', knownHostsFile: g.knownHostsFile ?? '', identity: id.identity, hosts,
    node: process.execPath, dialer: dialerPath(), now: new Date(),
  }));
  return 0;
}

/** Plain JSON with every field present (protobuf leaves zero values out). */
function toJson(s: Status): unknown {
  return {
    pid: s.pid ?? 0,
    version: s.version ?? '',
    uptimeS: Math.round((s.uptimeS ?? 0) * 10) / 10,
    nodeVersion: s.nodeVersion ?? '',
    ssh2CryptoBinding: s.ssh2CryptoBinding ?? false,
    clients: s.clients ?? 0,
    totals: {
      connections: s.totals?.connections ?? 0, sessions: s.totals?.sessions ?? 0,
      sessionCapacity: s.totals?.sessionCapacity ?? 0, queued: s.totals?.queued ?? 0,
    },
    hosts: (s.hosts ?? []).map((h) => ({
      name: h.name ?? '',
      destination: h.destination ?? '',
      state: h.state || 'ok',
      queued: h.queued ?? 0,
      sessions: h.sessions ?? 0,
      sessionCapacity: h.sessionCapacity ?? 0,
      requests: Number(h.requests ?? 0),
      maxSessions: h.maxSessions ?? 0,
      maxConnections: h.maxConnections ?? 0,
      handshakes: {
        ok: Number(h.handshakes?.ok ?? 0),
        failed: Number(h.handshakes?.failed ?? 0),
        byCode: Object.fromEntries(Object.entries(h.handshakes?.byCode ?? {}).map(([k, v]) => [k, Number(v)])),
      },
      lastError: h.lastError ?? '',
      breaker: {
        state: h.breaker || 'closed',
        nextProbeInS: round1(h.nextProbeInS ?? 0),
        downForS: round1(h.downForS ?? 0),
        transitions: Number(h.breakerTransitionCount ?? 0),
        recent: (h.breakerTransitions ?? []).map((t) => ({
          at: new Date(Number(t.atMs ?? 0)).toISOString(), from: t.from ?? '', to: t.to ?? '', reason: t.reason ?? '',
        })),
      },
      via: h.via ?? '',
      connections: (h.connections ?? []).map((c) => ({
        id: c.id ?? '', state: c.state ?? '', sessions: c.sessions ?? 0, maxSessions: c.maxSessions ?? 0,
        ageS: Math.round(c.ageS ?? 0), rttMs: round1(c.rttMs ?? 0), heardAgoS: round1(c.heardAgoS ?? 0),
      })),
    })),
    windows: { heldBytes: Number(s.windows?.heldBytes ?? 0), maxBytes: Number(s.windows?.maxBytes ?? 0), channelMaxBytes: Number(s.windows?.channelMaxBytes ?? 0) },
    jobs: (s.jobs ?? []).map((j) => ({ host: j.host ?? '', states: { ...j.states }, stale: j.stale ?? '' })),
    gateway: s.gateway ? { address: s.gateway.address ?? '', connections: s.gateway.connections ?? 0, sessions: s.gateway.sessions ?? 0,
      authFailures: Number(s.gateway.authFailures ?? 0) } : undefined,
    ...(s.fleet ? { fleet: fleetJson(s.fleet) } : {}),
  };
}

function fleetJson(f: NonNullable<Status['fleet']>): unknown {
  return {
    redis: f.redis ?? '',
    redisUp: f.redisUp ?? false,
    redisError: f.redisError ?? '',
    daemonId: f.daemonId ?? '',
    outages: Number(f.outages ?? 0),
    redisErrors: Number(f.redisErrors ?? 0),
    targets: (f.targets ?? []).map((t) => ({
      endpoint: t.endpoint ?? '',
      maxConcurrentHandshakes: t.maxConcurrentHandshakes ?? 0,
      maxConnections: t.maxConnections ?? 0,
      fleet: { handshakes: t.fleetHandshakes ?? 0, connections: t.fleetConnections ?? 0, daemons: t.daemons ?? 0 },
      daemon: { handshakes: t.handshakes ?? 0, connections: t.connections ?? 0, untracked: t.untracked ?? 0, share: t.share ?? 0 },
      handBacks: Number(t.handBacks ?? 0),
      updatedAgoS: Math.round((t.updatedAgoS ?? 0) * 10) / 10,
    })),
  };
}

/** The fleet's figures per target (from Redis) beside this daemon's: "fleet/ours". */
function fleetTable(s: Status): string {
  const f = s.fleet;
  if (!f) return '';
  const state = f.redisUp ? 'up: fleet limits apply' : `DOWN: local limits only (${f.redisError ?? ''})`;
  const lines = [`fleet: ${f.redis} ${state}; this daemon ${f.daemonId}, ${Number(f.outages ?? 0)} outages`];
  const rows = [['TARGET', 'DAEMONS', 'HANDSHAKES FLEET/OURS', 'CONNECTIONS FLEET/OURS', 'SHARE', 'UNTRACKED', 'HANDED BACK']];
  for (const t of f.targets ?? []) {
    rows.push([t.endpoint ?? '', String(t.daemons ?? 0),
      `${t.fleetHandshakes ?? 0}/${t.handshakes ?? 0} (max ${t.maxConcurrentHandshakes ?? 0})`,
      `${t.fleetConnections ?? 0}/${t.connections ?? 0} (max ${t.maxConnections ?? 0})`,
      String(t.share ?? 0), String(t.untracked ?? 0), String(Number(t.handBacks ?? 0))]);
  }
  if (rows.length > 1) {
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    for (const r of rows) lines.push(r.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd());
  }
  return `${lines.join('\n')}\n`;
}

function table(s: Status): string {
  const t = s.totals ?? {};
  const lines = [`sshmuxd ${s.version} pid ${s.pid}, up ${Math.round(s.uptimeS ?? 0)} s, ${s.clients ?? 0} clients; ` +
    `${t.connections ?? 0} connections, ${t.sessions ?? 0}/${t.sessionCapacity ?? 0} sessions, ${t.queued ?? 0} queued`,
    `Node ${s.nodeVersion}, ssh2 crypto: ${s.ssh2CryptoBinding ? 'its C++ binding' : 'JavaScript (its C++ binding is not built: more CPU per byte; npm ci builds it)'}`];
  const hosts = s.hosts ?? [];
  if (hosts.length === 0) return `${lines.join('\n')}\nno hosts yet\n`;
  const rows = [['HOST', 'DESTINATION', 'VIA', 'STATE', 'BREAKER', 'CONNS', 'RTT', 'SESSIONS', 'QUEUED', 'HANDSHAKES OK/FAILED', 'LAST ERROR']];
  for (const h of hosts) {
    rows.push([h.name ?? '', h.destination ?? '', h.via || '-', h.state || 'ok', breaker(h), `${(h.connections ?? []).length}/${h.maxConnections ?? 0}`,
      rtt(h), `${h.sessions ?? 0}/${h.sessionCapacity ?? 0}`, String(h.queued ?? 0),
      `${Number(h.handshakes?.ok ?? 0)}/${Number(h.handshakes?.failed ?? 0)}`, lastError(h)]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) lines.push(r.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd());
  // Transitions of breakers that are not closed, or changed in the last 10 minutes.
  const recent = Date.now() - 10 * 60_000;
  for (const h of hosts) {
    const shown = (h.breakerTransitions ?? []).filter((x) => h.breaker !== 'closed' || Number(x.atMs ?? 0) > recent);
    for (const x of shown) {
      lines.push(`${h.name}: ${new Date(Number(x.atMs ?? 0)).toISOString()} breaker ${x.from} -> ${x.to}: ${(x.reason ?? '').slice(0, 100)}`);
    }
  }
  for (const j of s.jobs ?? []) {
    const counts = Object.entries(j.states ?? {}).map(([state, n]) => `${n} ${state}`).join(', ');
    lines.push(`jobs on ${j.host}: ${counts}${j.stale ? ` (last known; ${j.stale.slice(0, 60)})` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The least round trip measured on the host's connections, "-" before any. */
function rtt(h: NonNullable<Status['hosts']>[number]): string {
  const measured = (h.connections ?? []).map((c) => c.rttMs ?? 0).filter((ms) => ms > 0);
  if (!measured.length) return '-';
  const least = Math.min(...measured);
  return `${least < 10 ? least.toFixed(1) : Math.round(least)} ms`;
}

/**
 * The last handshake error, cut to fit; through a jump host, from where it
 * names the hop that failed ("jump host X is up, but ..."), which is what
 * tells a partition behind the jump host from the jump host failing.
 */
function lastError(h: NonNullable<Status['hosts']>[number]): string {
  const text = h.lastError ?? '';
  const hop = text.indexOf('jump host ');
  return (hop > 0 ? `${text.slice(0, text.indexOf(':') + 1)} ${text.slice(hop)}` : text).slice(0, 120);
}

/** "closed", "open, probe in 1.2 s (down 8 s)", "half-open (down 8 s)"; with the number of transitions so far. */
function breaker(h: NonNullable<Status['hosts']>[number]): string {
  const state = h.breaker || 'closed';
  const count = Number(h.breakerTransitionCount ?? 0);
  const down = `down ${Math.round(h.downForS ?? 0)} s`;
  const next = round1(h.nextProbeInS ?? 0);
  const now = state === 'open' ? `open, probe ${next > 0 ? `in ${next} s` : 'due'} (${down})` : state === 'half-open' ? `half-open (${down})` : state;
  return count ? `${now}, ${count} transition${count === 1 ? '' : 's'}` : now;
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

main().then(exitWhenIdle, (err) => {
  process.stderr.write(`sshmuxctl: ${err instanceof SshMuxError ? `${err.message} (${err.code})` : (err as Error).stack}\n`);
  return exitWhenIdle(1);
});
