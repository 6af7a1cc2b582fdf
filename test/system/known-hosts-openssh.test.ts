// known_hosts decided as OpenSSH decides it: for each case, OpenSSH's own
// ssh and sshmux (a real daemon, through the SDK) connect to the same real
// sshd with the same ssh_config and known_hosts files, and must agree on
// whether the host is accepted. Host certificates are made here with
// ssh-keygen -s; four sshds share one host key and differ in the host
// certificate they present (none, valid, for another name, expired).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SshMux, SshMuxError } from '../../client-sdk';
import { startDaemon } from '../helpers/daemon';
import { startSshd, tempDir, type Sshd } from '../helpers/sshd';
import { keyAt, makeKey, signKey, type Key } from '../helpers/certs';

interface Case {
  name: string;
  sshd: 'plain' | 'cert' | 'foreign' | 'expired';
  /** known_hosts text; several entries: several UserKnownHostsFiles. %H is [127.0.0.1]:port, %K the host key, %C the CA, %R another key. */
  files: string[];
  /** A GlobalKnownHostsFile's text. */
  global?: string;
  extra?: string[];
}

const CASES: Case[] = [
  { name: 'plain line under [host]:port', sshd: 'plain', files: ['%H %K'] },
  { name: 'plain line under the bare name (non-22 port)', sshd: 'plain', files: ['127.0.0.1 %K'] },
  { name: 'a line for another port only', sshd: 'plain', files: ['[127.0.0.1]:1 %K'] },
  { name: 'HostKeyAlias [127.0.0.1]:41239, filed under it', sshd: 'plain', files: ['[127.0.0.1]:41239 %K'], extra: ['HostKeyAlias [127.0.0.1]:41239'] },
  { name: 'HostKeyAlias, key filed only under [host]:port', sshd: 'plain', files: ['%H %K'], extra: ['HostKeyAlias myalias'] },
  { name: 'HostKeyAlias written in capitals, filed lowercase', sshd: 'plain', files: ['myalias %K'], extra: ['HostKeyAlias MyAlias'] },
  { name: 'hashed name (ssh-keygen -H)', sshd: 'plain', files: ['%H %K'], extra: ['#hash'] },
  { name: 'wildcard pattern', sshd: 'plain', files: ['[127.0.0.?]:* %K'] },
  { name: 'negated pattern', sshd: 'plain', files: ['[127.0.0.*]:*,!%H %K'] },
  { name: 'a different key for the host', sshd: 'plain', files: ['%H %R'] },
  { name: 'a key of another type for the host', sshd: 'plain', files: ['%H %S'] },
  { name: '@revoked key', sshd: 'plain', files: ['%H %K\n@revoked * %K'] },
  { name: '@cert-authority with a matching pattern', sshd: 'cert', files: ['@cert-authority [127.0.0.1]:* %C'] },
  { name: '@cert-authority with a pattern that does not match', sshd: 'cert', files: ['@cert-authority *.example.com %C'] },
  { name: '@cert-authority without a pattern match, plain key known', sshd: 'cert', files: ['@cert-authority *.example.com %C\n%H %K'] },
  { name: '@cert-authority and HostKeyAlias among the principals', sshd: 'cert', files: ['@cert-authority web1 %C'], extra: ['HostKeyAlias web1'] },
  { name: '@revoked CA', sshd: 'cert', files: ['@cert-authority * %C\n@revoked * %C'] },
  { name: '@revoked CA, plain key known', sshd: 'cert', files: ['@cert-authority * %C\n@revoked * %C\n%H %K'] },
  { name: 'host certificate for another name', sshd: 'foreign', files: ['@cert-authority * %C'] },
  { name: 'host certificate for another name, plain key known', sshd: 'foreign', files: ['@cert-authority * %C\n%H %K'] },
  { name: 'expired host certificate', sshd: 'expired', files: ['@cert-authority * %C'] },
  { name: 'expired host certificate, plain key known', sshd: 'expired', files: ['@cert-authority * %C\n%H %K'] },
  { name: 'two user files, the key in the second', sshd: 'plain', files: ['%H %R2', '%H %K'] },
  { name: 'two user files: the first has another key', sshd: 'plain', files: ['%H %R', '%H %K'] },
  { name: 'the key in GlobalKnownHostsFile only', sshd: 'plain', files: [''], global: '%H %K' },
  { name: 'the CA in GlobalKnownHostsFile only', sshd: 'cert', files: [''], global: '@cert-authority * %C' },
];

const dir = tempDir();
let ca: Key;
let hostKey: Key;
let other: Key;
let other2: Key;
let rsaKey: Key;
const sshds = {} as Record<Case['sshd'], Sshd>;
let mux: SshMux;
let sshConfig: string;

before(async () => {
  ca = makeKey(dir, 'ca');
  hostKey = makeKey(dir, 'host_ed25519');
  other = makeKey(dir, 'other');
  other2 = makeKey(dir, 'other2');
  rsaKey = makeKey(dir, 'rsa', 'rsa', 2048);
  const certs = {
    cert: signKey(ca, hostKey, { host: true, principals: ['127.0.0.1', 'web1'], out: path.join(dir, 'valid-cert.pub') }),
    foreign: signKey(ca, hostKey, { host: true, principals: ['db.example.com'], out: path.join(dir, 'foreign-cert.pub') }),
    expired: signKey(ca, hostKey, { host: true, principals: ['127.0.0.1', 'web1'], validity: '20200101:20200102', out: path.join(dir, 'expired-cert.pub') }),
  };
  const hostPair = { privatePath: hostKey.privatePath, publicLine: hostKey.line };
  sshds.plain = await startSshd({ hostKey: hostPair });
  for (const k of ['cert', 'foreign', 'expired'] as const) {
    // sshd finds the certificate by HostCertificate; it must sit beside nothing else it would pick up.
    sshds[k] = await startSshd({ hostKey: hostPair, hostCertificate: certs[k].path });
  }
  const clientKey = sshds.plain.clientKeyPath;
  const blocks: string[] = [];
  CASES.forEach((c, i) => {
    const s = sshds[c.sshd];
    const sub = (t: string): string => t.replace(/%H/g, `[127.0.0.1]:${s.port}`).replace(/%K/g, hostKey.line)
      .replace(/%C/g, ca.line).replace(/%R2/g, other2.line).replace(/%R/g, other.line).replace(/%S/g, rsaKey.line);
    const userFiles = c.files.map((text, j) => {
      const f = path.join(dir, `case${i}_known_hosts${j}`);
      fs.writeFileSync(f, text ? `${sub(text)}\n` : '');
      if (c.extra?.includes('#hash')) execFileSync('ssh-keygen', ['-q', '-H', '-f', f]);
      return f;
    });
    const globalFile = path.join(dir, `case${i}_global`);
    fs.writeFileSync(globalFile, c.global ? `${sub(c.global)}\n` : '');
    blocks.push([
      `Host case${i}`,
      '  HostName 127.0.0.1',
      `  Port ${s.port}`,
      `  User ${s.user.name}`,
      `  IdentityFile ${clientKey}`,
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${userFiles.join(' ')}`,
      `  GlobalKnownHostsFile ${globalFile}`,
      '  StrictHostKeyChecking yes',
      '  UpdateHostKeys no',
      '  CheckHostIP no',
      '  BatchMode yes',
      ...(c.extra ?? []).filter((l) => !l.startsWith('#')).map((l) => `  ${l}`),
    ].join('\n'));
  });
  sshConfig = path.join(dir, 'ssh_config');
  fs.writeFileSync(sshConfig, `${blocks.join('\n\n')}\n`);
  const daemon = await startDaemon({ dir, sshConfigPath: sshConfig });
  mux = await SshMux.connect({ socket: daemon.socket });
});

/** What OpenSSH's ssh decides: it ran the command, or it refused the host key. */
function opensshDecision(alias: string): 'accepted' | string {
  const r = spawnSync('ssh', ['-F', sshConfig, alias, 'true'], { encoding: 'utf8', timeout: 15_000 });
  if (r.status === 0) return 'accepted';
  assert.match(r.stderr, /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|REVOKED/, `ssh failed otherwise for ${alias}: ${r.stderr}`);
  return 'refused';
}

async function sshmuxDecision(alias: string): Promise<{ decision: string; detail: string }> {
  try {
    await mux.exec(alias, 'true');
    return { decision: 'accepted', detail: '' };
  } catch (err) {
    const e = err as SshMuxError;
    assert.match(e.code, /^HOST_KEY_/, `sshmux failed otherwise: ${e.code}: ${e.message}`);
    return { decision: 'refused', detail: `${e.code}: ${e.message}` };
  }
}

test('sshmux accepts and refuses host keys exactly where OpenSSH\'s ssh does', async () => {
  const rows: string[] = [];
  const disagreements: string[] = [];
  for (const [i, c] of CASES.entries()) {
    const ssh = opensshDecision(`case${i}`);
    const ours = await sshmuxDecision(`case${i}`);
    rows.push(`${c.name}: ssh ${ssh}, sshmux ${ours.decision}${ours.detail ? ` (${ours.detail.slice(0, 120)})` : ''}`);
    if (ssh !== ours.decision) disagreements.push(`${c.name}: ssh ${ssh}, sshmux ${ours.decision} ${ours.detail}`);
  }
  console.log(rows.join('\n'));
  assert.deepEqual(disagreements, []);
  // The known_hosts files were only read: nothing was added under StrictHostKeyChecking yes.
  assert.ok(keyAt(hostKey.privatePath).line === hostKey.line);
});
