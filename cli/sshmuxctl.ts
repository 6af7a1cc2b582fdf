#!/usr/bin/env node
// sshmuxctl: inspect and steer a running sshmuxd.
import { parseArgs } from 'node:util';
import { SshMux, SshMuxError, type ControlAction, type Status } from '../client-sdk';

const USAGE = `usage: sshmuxctl [--socket PATH] [--json] COMMAND

  status [--json]   hosts, their connections, sessions in use and queues
  check HOST        one fresh handshake to HOST, like ssh -O check: prints the
                    time it took, or the classified error (exit 1)
  drain HOST        HOST's connections take no new sessions and close once
                    their sessions end; new requests open fresh connections
  reload            re-read ssh_config and the daemon config (as SIGHUP);
                    unchanged hosts keep their connections
  stop              finish running sessions (the grace period) and exit`;

const HOST_COMMANDS = new Set(['check', 'drain']);

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      options: { socket: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
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
  const wantsHost = HOST_COMMANDS.has(command);
  const known = command === 'status' || command === 'reload' || command === 'stop' || wantsHost;
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
      process.stdout.write(values.json ? `${JSON.stringify(toJson(status), null, 2)}\n` : table(status));
      return 0;
    }
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

/** Plain JSON with every field present (protobuf leaves zero values out). */
function toJson(s: Status): unknown {
  return {
    pid: s.pid ?? 0,
    version: s.version ?? '',
    uptimeS: Math.round((s.uptimeS ?? 0) * 10) / 10,
    clients: s.clients ?? 0,
    hosts: (s.hosts ?? []).map((h) => ({
      name: h.name ?? '',
      destination: h.destination ?? '',
      state: h.state || 'ok',
      queued: h.queued ?? 0,
      requests: Number(h.requests ?? 0),
      maxSessions: h.maxSessions ?? 0,
      maxConnections: h.maxConnections ?? 0,
      handshakes: {
        ok: Number(h.handshakes?.ok ?? 0),
        failed: Number(h.handshakes?.failed ?? 0),
        byCode: Object.fromEntries(Object.entries(h.handshakes?.byCode ?? {}).map(([k, v]) => [k, Number(v)])),
      },
      lastError: h.lastError ?? '',
      connections: (h.connections ?? []).map((c) => ({
        id: c.id ?? '', state: c.state ?? '', sessions: c.sessions ?? 0, maxSessions: c.maxSessions ?? 0,
        ageS: Math.round(c.ageS ?? 0),
      })),
    })),
  };
}

function table(s: Status): string {
  const lines = [`sshmuxd ${s.version} pid ${s.pid}, up ${Math.round(s.uptimeS ?? 0)} s, ${s.clients ?? 0} clients`];
  const hosts = s.hosts ?? [];
  if (hosts.length === 0) return `${lines[0]}\nno hosts yet\n`;
  const rows = [['HOST', 'DESTINATION', 'STATE', 'CONNS', 'SESSIONS', 'QUEUED', 'HANDSHAKES OK/FAILED', 'LAST ERROR']];
  for (const h of hosts) {
    const conns = h.connections ?? [];
    const used = conns.reduce((n, c) => n + (c.sessions ?? 0), 0);
    const cap = conns.reduce((n, c) => n + (c.maxSessions ?? 0), 0);
    rows.push([h.name ?? '', h.destination ?? '', h.state || 'ok', `${conns.length}/${h.maxConnections ?? 0}`, `${used}/${cap}`,
      String(h.queued ?? 0), `${Number(h.handshakes?.ok ?? 0)}/${Number(h.handshakes?.failed ?? 0)}`, (h.lastError ?? '').slice(0, 60)]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) lines.push(r.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd());
  return `${lines.join('\n')}\n`;
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`sshmuxctl: ${err instanceof SshMuxError ? `${err.message} (${err.code})` : (err as Error).stack}\n`);
  process.exit(1);
});
