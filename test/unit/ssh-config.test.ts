// Host resolution from OpenSSH client config, as ssh resolves it, without
// ever running what a config could make it run. Every fixture lives in a
// temp dir used as $HOME, with a temp file as the system config, so the
// machine's own ssh config never takes part.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, parseJumpSpec, SshConfigResolver } from '../../daemon/ssh/ssh-config';
import { doorIdentity, sshConfigBlock } from '../../cli/ssh-config-block';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-sshconfig-'));
  dirs.push(dir);
  return dir;
}

interface Fixture { env?: NodeJS.ProcessEnv; files?: Record<string, string>; system?: string; localUser?: string }

/** A resolver over `text` as ~/.ssh/config; `files` are written relative to the temp home. */
function resolver(text: string | undefined, opts: Fixture = {}) {
  const home = tempDir();
  fs.mkdirSync(path.join(home, '.ssh'));
  if (text !== undefined) fs.writeFileSync(path.join(home, '.ssh', 'config'), text);
  for (const [name, body] of Object.entries(opts.files ?? {})) {
    fs.mkdirSync(path.dirname(path.join(home, name)), { recursive: true });
    fs.writeFileSync(path.join(home, name), body);
  }
  const systemConfig = path.join(home, 'system_ssh_config');
  fs.writeFileSync(systemConfig, opts.system ?? '');
  const r = new SshConfigResolver({ home, systemConfig, localUser: opts.localUser ?? 'me', env: opts.env ?? {} });
  r.load();
  return { r, home, systemConfig };
}

function isConfigError(pattern: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
    assert.match(e.message, pattern);
    return true;
  };
}

test('HostName, Port, User, IdentityFile; the first value wins; user config before system config', () => {
  const { r, home, systemConfig } = resolver(
    'Host web\n  HostName 10.0.0.5\n  Port 2222\n  User deploy\n  IdentityFile ~/.ssh/deploy_key\n  IdentityFile /abs/second\n\n' +
    'Host web *.example\n  HostName ignored\n  Port 1\n\nHost *\n  Port 22\n  User nobody\n',
    { system: 'Host *\n  User system\n  ConnectTimeout 7\n  HostName sys.example\n' });
  const h = r.resolve('web');
  assert.equal(h.alias, 'web');
  assert.equal(h.hostname, '10.0.0.5');
  assert.equal(h.port, 2222);
  assert.equal(h.user, 'deploy');
  // IdentityFile accumulates rather than first-wins, in file order.
  assert.deepEqual(h.identityFiles, [path.join(home, '.ssh', 'deploy_key'), '/abs/second']);
  assert.equal(h.connectTimeoutMs, 7000, 'the system config was not read after the user config');
  const other = r.resolve('other');
  assert.equal(other.hostname, 'sys.example');
  assert.equal(other.user, 'nobody');
  assert.equal(other.port, 22);
  assert.deepEqual(r.files, [path.join(home, '.ssh', 'config'), systemConfig]);
});

test('defaults: what ssh would use, but StrictHostKeyChecking yes and our keepalive', () => {
  const { r, home } = resolver(undefined); // no ~/.ssh/config at all is fine
  const h = r.resolve('x');
  const ssh = (n: string): string => path.join(home, '.ssh', n);
  assert.equal(h.hostname, 'x');
  assert.equal(h.port, 22);
  assert.equal(h.user, 'me');
  assert.equal(h.strictHostKeyChecking, 'yes');
  assert.equal(h.connectTimeoutMs, 15_000);
  assert.equal(h.serverAliveIntervalMs, 15_000);
  assert.equal(h.serverAliveCountMax, 3);
  assert.deepEqual(h.identityFiles,
    ['id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk', 'id_xmss', 'id_dsa'].map(ssh));
  assert.equal(h.identitiesOnly, false);
  assert.deepEqual(h.userKnownHostsFiles, [ssh('known_hosts'), ssh('known_hosts2')]);
  assert.deepEqual(h.globalKnownHostsFiles, ['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2']);
  assert.equal(h.identityAgent, undefined);
  assert.equal(h.hostKeyAlias, undefined);
  assert.deepEqual(h.proxyJump, []);
  assert.equal(h.proxyCommand, undefined);
  assert.equal(h.batchMode, false);
  assert.deepEqual(h.sendEnv, []);
  assert.deepEqual(h.setEnv, {});
  assert.deepEqual(r.files, [path.join(home, 'system_ssh_config')]);
});

test('wildcards, comma lists and negated patterns select blocks as in ssh', () => {
  const { r } = resolver('Host *.prod !db.prod\n  User ops\nHost a,b\n  User ab\nHost x?z\n  User xz\nHost *\n  User dev\n');
  assert.equal(r.resolve('web.prod').user, 'ops');
  assert.equal(r.resolve('db.prod').user, 'dev', 'a negated pattern must veto the block');
  assert.equal(r.resolve('b').user, 'ab');
  assert.equal(r.resolve('xyz').user, 'xz');
  assert.equal(r.resolve('prod').user, 'dev');
});

test('keywords are case-insensitive, and Match host sees a lower-case hostname keyword', () => {
  const { r } = resolver('host t\n  hostname real.example\n  PORT 2022\n  user bob\n  IDENTITYFILE /k\nMatch host real.example\n  ServerAliveCountMax 9\n');
  const h = r.resolve('t');
  assert.equal(h.hostname, 'real.example');
  assert.equal(h.port, 2022);
  assert.equal(h.user, 'bob');
  assert.deepEqual(h.identityFiles, ['/k']);
  assert.equal(h.serverAliveCountMax, 9);
  assert.equal(r.resolve('other').serverAliveCountMax, 3);
});

test('Match user, originalhost and all', () => {
  const { r } = resolver('Match originalhost o* user alice\n  Port 1111\nMatch all\n  BatchMode yes\n');
  assert.equal(r.resolve('one', { User: 'alice' }).port, 1111, 'a User override is the user Match sees');
  assert.equal(r.resolve('one', { User: 'bob' }).port, 22);
  assert.equal(r.resolve('two', { User: 'alice' }).port, 22);
  assert.equal(r.resolve('two').batchMode, true);
});

test('Include: globs in lexical order, paths relative to ~/.ssh, ~, inside a Host block', () => {
  const { r, home } = resolver(
    'Include conf.d/*.conf ~/extra/x?.cfg\nHost inner\n  Include inner.conf\n  User after-include\nHost *\n  ServerAliveCountMax 5\n', {
      files: {
        '.ssh/conf.d/b.conf': 'Host b\n  Port 1002\nHost ab\n  Port 2002\n',
        '.ssh/conf.d/a.conf': 'Host ab\n  Port 1001\n',
        '.ssh/conf.d/.hidden.conf': 'Host h\n  Port 9\n',
        '.ssh/conf.d/ignored.txt': 'Host b\n  Port 9\n',
        'extra/x1.cfg': 'Host ex\n  Port 1004\n',
        '.ssh/inner.conf': 'Port 1003\nHost inner-sub\n  Port 1005\n',
      },
    });
  assert.equal(r.resolve('ab').port, 1001, 'a.conf must come before b.conf');
  assert.equal(r.resolve('b').port, 1002);
  assert.equal(r.resolve('h').port, 22, 'a * glob matched a dotfile');
  assert.equal(r.resolve('ex').port, 1004);
  assert.equal(r.resolve('inner').port, 1003);
  assert.equal(r.resolve('inner-sub').port, 1005);
  assert.equal(r.resolve('other').port, 22, 'an Include inside a Host block applied to other hosts');
  // After the included file, the rest of the including block is that block's again.
  assert.equal(r.resolve('inner').user, 'after-include');
  assert.equal(r.resolve('inner-sub').user, 'me');
  assert.equal(r.resolve('other').serverAliveCountMax, 5);
  const ssh = (n: string): string => path.join(home, '.ssh', n);
  assert.deepEqual(r.files, [
    ssh('config'), ssh('conf.d/a.conf'), ssh('conf.d/b.conf'), path.join(home, 'extra/x1.cfg'), ssh('inner.conf'),
    path.join(home, 'system_ssh_config'),
  ]);
});

test('Include in the system config is relative to its directory; a missing include is skipped', () => {
  const sys = tempDir();
  fs.writeFileSync(path.join(sys, 'sys.d.conf'), 'Host s\n  Port 3001\n');
  const home = tempDir();
  const systemConfig = path.join(sys, 'ssh_config');
  fs.writeFileSync(systemConfig, 'Include sys.d.conf nothere.conf\n');
  const r = new SshConfigResolver({ home, systemConfig, localUser: 'me', env: {} });
  r.load();
  assert.equal(r.resolve('s').port, 3001);
});

test('Include loops and too-deep nesting are ConfigErrors', () => {
  assert.throws(() => resolver('Include loop.conf\n', { files: { '.ssh/loop.conf': 'Include loop.conf\n' } }),
    isConfigError(/Include nested deeper than 16/));
  const chain: Record<string, string> = {};
  // As ssh: ~/.ssh/config is depth 0, so c0..c15 (depth 1..16) may nest and c16 may not.
  for (let i = 0; i < 15; i++) chain[`.ssh/c${i}`] = `Include c${i + 1}\n`;
  chain['.ssh/c15'] = 'Port 1515\n';
  assert.equal(resolver('Include c0\n', { files: chain }).r.resolve('x').port, 1515, 'depth 16 is allowed');
  chain['.ssh/c15'] = 'Include c16\n';
  chain['.ssh/c16'] = 'Port 1616\n';
  assert.throws(() => resolver('Include c0\n', { files: chain }), isConfigError(/c16/));
});

test('Match exec never runs and never matches, also in included files', () => {
  const marker = path.join(tempDir(), 'ran');
  const { r } = resolver(`Match exec "touch ${marker}"\n  Port 4444\nMatch host web exec "touch ${marker}"\n  User x\nInclude inc\n`, {
    files: { '.ssh/inc': `Match exec "touch ${marker}; true"\n  BatchMode yes\n` },
  });
  const h = r.resolve('web');
  assert.equal(fs.existsSync(marker), false, 'Match exec ran a command');
  assert.equal(h.port, 22);
  assert.equal(h.user, 'me');
  assert.equal(h.batchMode, false);
});

test('CanonicalizeHostName/CanonicalDomains do no lookups', () => {
  // (The package only canonicalises with two or more domains.) A fake nslookup
  // that would succeed: if anything runs it, the marker appears
  // and the package would rewrite the host to web.example.com.
  const bin = tempDir();
  const marker = path.join(bin, 'looked-up');
  fs.writeFileSync(path.join(bin, 'nslookup'), `#!/bin/sh\ntouch ${marker}\nexit 0\n`, { mode: 0o755 });
  const { r } = resolver('Host web\n  CanonicalizeHostName yes\n  CanonicalDomains example.com example.org\nHost web.example.com\n  Port 5555\n');
  const savedPath = process.env.PATH;
  process.env.PATH = `${bin}:${savedPath}`;
  try {
    const started = Date.now();
    const h = r.resolve('web');
    assert.ok(Date.now() - started < 500, 'resolve was slow');
    assert.equal(fs.existsSync(marker), false, 'nslookup ran');
    assert.equal(h.hostname, 'web');
    assert.equal(h.port, 22);
  } finally {
    process.env.PATH = savedPath;
  }
});

test('tokens expand as in ssh', () => {
  const { r, home } = resolver(
    'Host t\n  HostName %h.internal\n  Port 2200\n  User bob\n  IdentityFile ~/.ssh/%r@%h:%p-%n-%u-%%\n  IdentityFile %d/id_%i_%l\n' +
    '  UserKnownHostsFile %d/kh_%C ${KH}/k2\n  IdentityAgent ~/agent-%n\n', { env: { KH: '/env/kh' } });
  const h = r.resolve('t');
  const local = os.hostname().split('.')[0];
  assert.equal(h.hostname, 't.internal');
  assert.deepEqual(h.identityFiles, [
    path.join(home, '.ssh', 'bob@t.internal:2200-t-me-%'),
    path.join(home, `id_${process.getuid?.() ?? 0}_${local}`),
  ]);
  const c = createHash('sha1').update(`${local}t.internal2200bob`).digest('hex');
  assert.deepEqual(h.userKnownHostsFiles, [path.join(home, `kh_${c}`), '/env/kh/k2']);
  assert.equal(h.identityAgent, path.join(home, 'agent-t'));
  // The port in %p is the final one, overrides included.
  assert.equal(r.resolve('t', { Port: '2300' }).identityFiles[0], path.join(home, '.ssh', 'bob@t.internal:2300-t-me-%'));
  const bad = resolver('Host t\n  IdentityFile ~/.ssh/%Z\n').r;
  assert.throws(() => bad.resolve('t'), isConfigError(/IdentityFile.*%Z/));
  const unset = resolver('Host t\n  IdentityFile ${NOPE}/k\n').r;
  assert.throws(() => unset.resolve('t'), isConfigError(/NOPE/));
});

test('client overrides win over the files, keys in any case', () => {
  const { r } = resolver('Host t\n  Port 2200\n  User bob\n  StrictHostKeyChecking accept-new\n  IdentityFile /file-key\n  UserKnownHostsFile /kh\n');
  const h = r.resolve('t', {
    port: '2300', USER: 'al', StrictHostKeyChecking: 'no', connecttimeout: '3', IdentityFile: '/x', UserKnownHostsFile: '/a /b',
    HostName: 'h.example',
  });
  assert.equal(h.port, 2300);
  assert.equal(h.user, 'al');
  assert.equal(h.hostname, 'h.example');
  assert.equal(h.strictHostKeyChecking, 'no');
  assert.equal(h.connectTimeoutMs, 3000);
  assert.deepEqual(h.identityFiles, ['/x', '/file-key'], 'ssh -o IdentityFile goes first, the files still add theirs');
  assert.deepEqual(h.userKnownHostsFiles, ['/a', '/b']);
  // Overrides are per call: the next call sees the files again.
  const plain = r.resolve('t');
  assert.equal(plain.port, 2200);
  assert.equal(plain.strictHostKeyChecking, 'accept-new');
});

test('bad values in files and overrides are ConfigErrors naming the key', () => {
  const { r } = resolver('Host t\n  Port 2200\n');
  assert.throws(() => r.resolve('t', { Port: 'abc' }), isConfigError(/Port "abc"/));
  assert.throws(() => r.resolve('t', { port: '70000' }), isConfigError(/Port "70000"/));
  assert.throws(() => r.resolve('t', { Port: '0' }), isConfigError(/Port/));
  assert.throws(() => r.resolve('t', { ConnectTimeout: '-1' }), isConfigError(/ConnectTimeout/));
  assert.throws(() => r.resolve('t', { ServerAliveInterval: 'soon' }), isConfigError(/ServerAliveInterval/));
  assert.throws(() => r.resolve('t', { ServerAliveCountMax: '1.5' }), isConfigError(/ServerAliveCountMax/));
  assert.throws(() => r.resolve('t', { StrictHostKeyChecking: 'maybe' }), isConfigError(/StrictHostKeyChecking "maybe"/));
  assert.throws(() => r.resolve('t', { BatchMode: 'sure' }), isConfigError(/BatchMode/));
  assert.throws(() => r.resolve('t', { IdentitiesOnly: '1' }), isConfigError(/IdentitiesOnly/));
  const badFile = resolver('Host t\n  Port twenty\n').r;
  assert.throws(() => badFile.resolve('t'), isConfigError(/Port "twenty"/));
  assert.equal(badFile.resolve('t', { Port: '22' }).port, 22, 'an override replaces a bad file value');
});

test('times accept ssh time formats; zero keepalive is off; zero ConnectTimeout is the default', () => {
  const { r } = resolver('Host t\n  ConnectTimeout 1m\n  ServerAliveInterval 0\n  ServerAliveCountMax 0\nHost u\n  ConnectTimeout 0\n  ServerAliveInterval 1m30s\n');
  const t = r.resolve('t');
  assert.equal(t.connectTimeoutMs, 60_000);
  assert.equal(t.serverAliveIntervalMs, 0);
  assert.equal(t.serverAliveCountMax, 0);
  const u = r.resolve('u');
  assert.equal(u.connectTimeoutMs, 15_000);
  assert.equal(u.serverAliveIntervalMs, 90_000);
});

test('StrictHostKeyChecking: yes by default, ask is yes, accept-new, off is no', () => {
  const { r } = resolver('Host ask\n  StrictHostKeyChecking ask\nHost new\n  StrictHostKeyChecking accept-new\nHost off\n  StrictHostKeyChecking off\nHost y\n  StrictHostKeyChecking YES\n');
  assert.equal(r.resolve('x').strictHostKeyChecking, 'yes');
  assert.equal(r.resolve('ask').strictHostKeyChecking, 'yes');
  assert.equal(r.resolve('new').strictHostKeyChecking, 'accept-new');
  assert.equal(r.resolve('off').strictHostKeyChecking, 'no');
  assert.equal(r.resolve('y').strictHostKeyChecking, 'yes');
});

test('known_hosts files: several, or none', () => {
  const { r, home } = resolver('Host a\n  UserKnownHostsFile /x/one ~/two\n  GlobalKnownHostsFile /g1 /g2\nHost b\n  UserKnownHostsFile none\n  GlobalKnownHostsFile none\n');
  assert.deepEqual(r.resolve('a').userKnownHostsFiles, ['/x/one', path.join(home, 'two')]);
  assert.deepEqual(r.resolve('a').globalKnownHostsFiles, ['/g1', '/g2']);
  assert.deepEqual(r.resolve('b').userKnownHostsFiles, []);
  assert.deepEqual(r.resolve('b').globalKnownHostsFiles, []);
});

test('IdentityAgent: SSH_AUTH_SOCK by default, none, SSH_AUTH_SOCK, a path, $VAR and ${VAR}', () => {
  const env = { SSH_AUTH_SOCK: '/run/agent.sock', OTHER: '/run/other' };
  const text = 'Host none\n  IdentityAgent none\nHost sock\n  IdentityAgent SSH_AUTH_SOCK\nHost path\n  IdentityAgent /tmp/a.sock\n' +
    'Host var\n  IdentityAgent $OTHER\nHost braces\n  IdentityAgent ${OTHER}/s.sock\nHost unset\n  IdentityAgent $UNSET\n';
  const { r } = resolver(text, { env });
  assert.equal(r.resolve('x').identityAgent, '/run/agent.sock');
  assert.equal(r.resolve('none').identityAgent, undefined);
  assert.equal(r.resolve('sock').identityAgent, '/run/agent.sock');
  assert.equal(r.resolve('path').identityAgent, '/tmp/a.sock');
  assert.equal(r.resolve('var').identityAgent, '/run/other');
  assert.equal(r.resolve('braces').identityAgent, '/run/other/s.sock');
  assert.equal(r.resolve('unset').identityAgent, undefined);
  assert.equal(resolver(text).r.resolve('sock').identityAgent, undefined, 'SSH_AUTH_SOCK unset means no agent');
});

test('ProxyJump hops parse; ProxyCommand is captured raw and never run', () => {
  const marker = path.join(tempDir(), 'ran');
  const { r } = resolver(
    `Host j\n  ProxyJump alice@bastion:2222, [fe80::1]:22,ssh://bob@edge,[::1],carol@h@st\nHost n\n  ProxyJump none\n` +
    `Host p\n  ProxyCommand sh -c "touch ${marker}" %h:%p\n`);
  assert.deepEqual(r.resolve('j').proxyJump, [
    { user: 'alice', host: 'bastion', port: 2222 },
    { host: 'fe80::1', port: 22 },
    { user: 'bob', host: 'edge' },
    { host: '::1' },
    { user: 'carol@h', host: 'st' },
  ]);
  assert.deepEqual(r.resolve('n').proxyJump, []);
  assert.deepEqual(r.resolve('x', { ProxyJump: 'j1,j2:2' }).proxyJump, [{ host: 'j1' }, { host: 'j2', port: 2 }]);
  assert.equal(r.resolve('p').proxyCommand, `sh -c "touch ${marker}" %h:%p`);
  assert.equal(r.resolve('p', { ProxyCommand: 'none' }).proxyCommand, undefined);
  assert.equal(fs.existsSync(marker), false);
  assert.deepEqual(parseJumpSpec('ssh://u@[2001:db8::2]:2200/'), { user: 'u', host: '2001:db8::2', port: 2200 });
  assert.throws(() => parseJumpSpec('host:notaport'), isConfigError(/notaport/));
  assert.throws(() => parseJumpSpec('@host'), ConfigError);
  assert.throws(() => parseJumpSpec(''), ConfigError);
  assert.throws(() => parseJumpSpec('h:70000'), ConfigError);
  assert.throws(() => resolver('Host j\n  ProxyJump a,,b\n').r.resolve('j'), ConfigError);
});

test('SendEnv accumulates across lines, -PATTERN removes; SetEnv first line wins', () => {
  const { r } = resolver('Host t\n  SendEnv LANG LC_*\n  SetEnv A=1 B="two words" A=3\nHost *\n  SendEnv GIT_* -LC_*\n  SetEnv C=4\n');
  const h = r.resolve('t');
  assert.deepEqual(h.sendEnv, ['LANG', 'GIT_*']);
  assert.deepEqual(h.setEnv, { A: '1', B: 'two words' });
  assert.deepEqual(r.resolve('o').setEnv, { C: '4' });
  assert.throws(() => resolver('SetEnv novalue\n').r.resolve('t'), isConfigError(/SetEnv/));
});

test('-F: only that file, relative Include from ~/.ssh; a missing one is an error naming it', () => {
  const { home, systemConfig } = resolver('Host t\n  Port 1\n', { files: { '.ssh/inc.conf': 'Host t\n  User inc\n' } });
  fs.writeFileSync(systemConfig, 'Host *\n  BatchMode yes\n');
  const cfg = path.join(home, 'explicit');
  fs.writeFileSync(cfg, 'Include inc.conf\nHost t\n  Port 2\n');
  const r = new SshConfigResolver({ configFile: cfg, home, systemConfig, localUser: 'me', env: {} });
  r.load();
  const h = r.resolve('t');
  assert.equal(h.port, 2);
  assert.equal(h.user, 'inc');
  assert.equal(h.batchMode, false, 'the system config was read despite -F');
  assert.deepEqual(r.files, [cfg, path.join(home, '.ssh', 'inc.conf')]);
  const missing = path.join(home, 'nope');
  assert.throws(() => new SshConfigResolver({ configFile: missing, home }).load(), isConfigError(new RegExp(missing)));
});

test('a syntax error names the file', () => {
  assert.throws(() => resolver('Host t\n  Include bad.conf\n', { files: { '.ssh/bad.conf': 'IdentityFile "unterminated\n' } }),
    isConfigError(/bad\.conf/));
});

test('resolve does not re-read the files: only load() does', () => {
  const { r, home } = resolver('Host a*\n  Port 2022\n'.repeat(50));
  // With the file gone, every resolve still answers from what load() read (how fast is the bench's business, not a test's).
  fs.rmSync(path.join(home, '.ssh', 'config'));
  for (let i = 0; i < 2000; i++) assert.equal(r.resolve(`a${i}`).port, 2022);
  r.load();
  assert.equal(r.resolve('a').port, 22, 'load() reads the files again');
});

let hasSsh = true;
try {
  execFileSync('ssh', ['-V'], { stdio: 'ignore' });
} catch {
  hasSsh = false;
}

test('the real ssh agrees on what matters (ssh -G)', { skip: !hasSsh && 'no ssh binary' }, () => {
  const { home } = resolver(undefined, { files: { '.ssh/conf.d/one.conf': 'Host web\n  Port 2022\n' } });
  const cfg = path.join(home, 'cfg');
  // ssh finds ~ from the password database, not $HOME, so the Include is absolute here.
  fs.writeFileSync(cfg, `Include ${home}/.ssh/conf.d/*.conf\nHost web\n  HostName %h.Example.COM\n  Port 9\n  User deploy\n` +
    `Host *.prod !db.prod\n  User prod\nHost *\n  User fallback\n  ConnectTimeout 9\n`);
  const r = new SshConfigResolver({ configFile: cfg, home, env: {} });
  r.load();
  for (const alias of ['web', 'api.prod', 'db.prod']) {
    const ours = r.resolve(alias);
    const g = execFileSync('ssh', ['-G', '-F', cfg, alias], { env: { ...process.env, HOME: home }, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    const field = (k: string): string => new RegExp(`^${k} (.*)$`, 'm').exec(g)![1];
    assert.equal(ours.hostname, field('hostname'), alias);
    assert.equal(String(ours.port), field('port'), alias);
    assert.equal(ours.user, field('user'), alias);
    assert.equal(String(ours.connectTimeoutMs / 1000), field('connecttimeout'), alias);
  }
});

test('the block sshmuxctl ssh-config prints: ssh applies it, sshmuxd skips it, Included or pasted', { skip: !hasSsh && 'no ssh binary' }, () => {
  const home = tempDir();
  fs.mkdirSync(path.join(home, '.ssh'));
  const block = sshConfigBlock({
    address: '127.0.0.1:2222', knownHosts: '[127.0.0.1]:2222 ssh-ed25519 AAAA', knownHostsFile: '/state/gateway_known_hosts',
    identity: '/state/gateway_client_ed25519_key', hosts: ['web', 'db*'], node: '/usr/bin/node', dialer: '/opt/sshmux/dist/cli/gateway-dial.js',
    now: new Date(0),
  });
  const hosts = 'Host web\n  HostName 10.0.0.5\n  Port 2200\n  UserKnownHostsFile ~/.ssh/web_hosts\n  ProxyJump bastion\n' +
    'Host *\n  User deploy\n';
  fs.writeFileSync(path.join(home, '.ssh', 'sshmux.conf'), block);
  const included = path.join(home, 'included');
  const pasted = path.join(home, 'pasted');
  fs.writeFileSync(included, `Include ${home}/.ssh/sshmux.conf\n${hosts}`);
  fs.writeFileSync(pasted, `${block}${hosts}`);
  for (const cfg of [included, pasted]) {
    const r = new SshConfigResolver({ configFile: cfg, home, env: {} });
    r.load();
    const web = r.resolve('web');
    assert.equal(web.proxyCommand, undefined, cfg);
    assert.equal(web.hostKeyAlias, undefined, cfg);
    assert.deepEqual(web.userKnownHostsFiles, [path.join(home, '.ssh', 'web_hosts')], cfg);
    assert.deepEqual(web.proxyJump, [{ host: 'bastion' }], cfg);
    assert.deepEqual([web.hostname, web.port, web.user], ['10.0.0.5', 2200, 'deploy'], cfg);
    // ssh itself takes the block first, and what follows a pasted one still applies to every host.
    const g = execFileSync('ssh', ['-G', '-F', cfg, 'web'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    assert.match(g, /^proxycommand \/usr\/bin\/env NODE_CHANNEL_FD=1 \/usr\/bin\/node \/opt\/sshmux\/dist\/cli\/gateway-dial\.js 127\.0\.0\.1:2222 '%r' '%n' '%p'$/m, cfg);
    assert.doesNotMatch(g, /^proxyjump/m, cfg);
    assert.match(g, /^hostkeyalias \[127\.0\.0\.1\]:2222$/m, cfg);
    assert.match(g, /^controlpath .*\/\.ssh\/sshmux-[0-9a-f]{40}$/m, cfg);
    assert.doesNotMatch(execFileSync('ssh', ['-G', '-F', cfg, 'other'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString(), /^proxycommand/m, cfg);
    assert.match(execFileSync('ssh', ['-G', '-F', cfg, 'other'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString(), /^user deploy$/m, cfg);
  }
});

test('the key the block names for the door: one given, ~/ left for ssh, the generated one if readable, else why not', () => {
  const dir = tempDir();
  const key = path.join(dir, 'id');
  fs.writeFileSync(key, 'k', { mode: 0o600 });
  assert.deepEqual(doorIdentity(key, '/state/client', ''), { identity: key });
  assert.deepEqual(doorIdentity('~/.ssh/id_ed25519', '', '/etc/sshmux/keys'), { identity: '~/.ssh/id_ed25519' });
  assert.deepEqual(doorIdentity(undefined, key, ''), { identity: key });
  assert.match((doorIdentity(path.join(dir, 'missing'), '', '') as { error: string }).error, /cannot read the key .*missing given with --identity/);
  assert.match((doorIdentity(undefined, path.join(dir, 'not-mine'), '') as { error: string }).error, /readable by sshmuxd's user only.*--identity FILE/);
  assert.match((doorIdentity(undefined, '', '/etc/sshmux/keys') as { error: string }).error, /keys listed in \/etc\/sshmux\/keys: name yours with --identity FILE/);
});

test('resolutions are kept per alias and overrides until the files are read again', () => {
  const { r, home } = resolver('Host web\n  HostName 10.0.0.5\n  Port 2222\n');
  const first = r.resolve('web');
  assert.equal(r.resolve('web'), first, 'the same alias and overrides resolved twice');
  assert.ok(Object.isFrozen(first), 'a shared resolution must not be changed by one caller');
  // Overrides are part of the key, so one client's options never reach another's resolution.
  const withPort = r.resolve('web', { Port: '2200' });
  assert.equal(withPort.port, 2200);
  assert.equal(r.resolve('web').port, 2222);
  assert.equal(r.resolve('web', { User: 'a' }).user, 'a');
  assert.equal(r.resolve('web', { User: 'b' }).user, 'b');
  // A changed file is seen once it is loaded again (a reload makes a new resolver; -F files are reloaded on change).
  fs.writeFileSync(path.join(home, '.ssh', 'config'), 'Host web\n  HostName 10.0.0.6\n');
  assert.equal(r.resolve('web').hostname, '10.0.0.5');
  r.load();
  assert.equal(r.resolve('web').hostname, '10.0.0.6');
  assert.equal(r.resolve('web').port, 22);
});
