// Host resolution from OpenSSH client config, as ssh resolves it, without
// ever running what a config could make it run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, parseJumpSpec, SshConfigResolver } from '../daemon/ssh-config';
import { tempDir } from './helpers/sshd';

function resolver(text: string, opts: { env?: NodeJS.ProcessEnv; files?: Record<string, string>; system?: string } = {}) {
  const home = tempDir();
  fs.mkdirSync(path.join(home, '.ssh'));
  fs.writeFileSync(path.join(home, '.ssh', 'config'), text);
  for (const [name, body] of Object.entries(opts.files ?? {})) {
    fs.mkdirSync(path.dirname(path.join(home, name)), { recursive: true });
    fs.writeFileSync(path.join(home, name), body);
  }
  const systemConfig = path.join(home, 'system_ssh_config');
  fs.writeFileSync(systemConfig, opts.system ?? '');
  const r = new SshConfigResolver({ home, systemConfig, localUser: 'me', env: opts.env ?? {} });
  r.load();
  return { r, home };
}

test('HostName, Port, User, IdentityFile; the first value wins; user config before system config', () => {
  const { r, home } = resolver('Host web\n  HostName 10.0.0.5\n  Port 2222\n  User deploy\n  IdentityFile ~/.ssh/deploy_key\n\nHost *\n  Port 22\n  User nobody\n',
    { system: 'Host *\n  User system\n  ConnectTimeout 7\n' });
  const h = r.resolve('web');
  assert.equal(h.hostname, '10.0.0.5');
  assert.equal(h.port, 2222);
  assert.equal(h.user, 'deploy');
  assert.deepEqual(h.identityFiles, [path.join(home, '.ssh', 'deploy_key')]);
  assert.equal(h.connectTimeoutMs, 7000);
  const other = r.resolve('other');
  assert.equal(other.hostname, 'other');
  assert.equal(other.user, 'nobody');
});

test('defaults: what ssh would use, but StrictHostKeyChecking yes', () => {
  const { r, home } = resolver('');
  const h = r.resolve('x');
  assert.equal(h.port, 22);
  assert.equal(h.user, 'me');
  assert.equal(h.strictHostKeyChecking, 'yes');
  assert.equal(h.connectTimeoutMs, 15_000);
  assert.equal(h.serverAliveIntervalMs, 15_000);
  assert.equal(h.serverAliveCountMax, 3);
  assert.equal(h.identityFiles[0], path.join(home, '.ssh', 'id_rsa'));
  assert.ok(h.identityFiles.includes(path.join(home, '.ssh', 'id_ed25519')));
  assert.deepEqual(h.userKnownHostsFiles, [path.join(home, '.ssh', 'known_hosts'), path.join(home, '.ssh', 'known_hosts2')]);
  assert.equal(h.identityAgent, undefined);
  assert.deepEqual(h.proxyJump, []);
});

test('wildcards and negated patterns select blocks as in ssh', () => {
  const { r } = resolver('Host *.prod !db.prod\n  User ops\nHost *\n  User dev\n');
  assert.equal(r.resolve('web.prod').user, 'ops');
  assert.equal(r.resolve('db.prod').user, 'dev');
});

test('Include: globs, paths relative to ~/.ssh, inside a Host block; loops are an error', () => {
  const { r, home } = resolver('Include conf.d/*.conf\nHost inner\n  Include inner.conf\n', {
    files: {
      '.ssh/conf.d/a.conf': 'Host a\n  Port 1001\n',
      '.ssh/conf.d/b.conf': 'Host b\n  Port 1002\n',
      '.ssh/conf.d/ignored.txt': 'Host a\n  Port 9\n',
      '.ssh/inner.conf': 'Port 1003\n',
    },
  });
  assert.equal(r.resolve('a').port, 1001);
  assert.equal(r.resolve('b').port, 1002);
  assert.equal(r.resolve('inner').port, 1003);
  assert.equal(r.resolve('other').port, 22, 'an Include inside a Host block applied to other hosts');
  assert.ok(r.files.includes(path.join(home, '.ssh', 'conf.d', 'a.conf')));
  assert.throws(() => resolver('Include loop.conf\n', { files: { '.ssh/loop.conf': 'Include loop.conf\n' } }),
    (e: Error) => e instanceof ConfigError && /Include nested deeper/.test(e.message));
});

test('Match exec never runs; CanonicalizeHostName does no lookups', () => {
  const marker = path.join(tempDir(), 'ran');
  const { r } = resolver(`Match exec "touch ${marker}"\n  Port 4444\nHost *\n  CanonicalizeHostName yes\n  CanonicalDomains example.com\n`);
  const started = Date.now();
  const h = r.resolve('web');
  assert.equal(fs.existsSync(marker), false, 'Match exec ran a command');
  assert.equal(h.port, 22);
  assert.equal(h.hostname, 'web');
  assert.ok(Date.now() - started < 500);
});

test('tokens expand as in ssh', () => {
  const { r, home } = resolver('Host t\n  HostName %h.internal\n  Port 2200\n  User bob\n  IdentityFile ~/.ssh/%r@%h:%p-%n-%u-%%\n  UserKnownHostsFile %d/kh_%C\n');
  const h = r.resolve('t');
  assert.equal(h.hostname, 't.internal');
  assert.deepEqual(h.identityFiles, [path.join(home, '.ssh', 'bob@t.internal:2200-t-me-%')]);
  const local = os.hostname().split('.')[0];
  const c = createHash('sha1').update(`${local}t.internal2200bob`).digest('hex');
  assert.deepEqual(h.userKnownHostsFiles, [path.join(home, `kh_${c}`)]);
  const bad = resolver('Host t\n  IdentityFile ~/.ssh/%Z\n').r;
  assert.throws(() => bad.resolve('t'), (e: Error) => e instanceof ConfigError && /%Z/.test(e.message));
});

test('client overrides win over the files, keys in any case; bad values name the key', () => {
  const { r } = resolver('Host t\n  Port 2200\n  User bob\n  StrictHostKeyChecking accept-new\n');
  const h = r.resolve('t', { port: '2300', USER: 'al', StrictHostKeyChecking: 'no', ConnectTimeout: '3' });
  assert.equal(h.port, 2300);
  assert.equal(h.user, 'al');
  assert.equal(h.strictHostKeyChecking, 'no');
  assert.equal(h.connectTimeoutMs, 3000);
  assert.equal(r.resolve('t').strictHostKeyChecking, 'accept-new');
  assert.throws(() => r.resolve('t', { Port: 'abc' }), (e: Error) => e instanceof ConfigError && /Port/.test(e.message));
  assert.throws(() => r.resolve('t', { Port: '70000' }), (e: Error) => e instanceof ConfigError && /Port/.test(e.message));
  const badFile = resolver('Host t\n  Port twenty\n').r;
  assert.throws(() => badFile.resolve('t'), (e: Error) => e instanceof ConfigError && /Port "twenty"/.test(e.message));
  assert.equal(resolver('Host t\n  StrictHostKeyChecking ask\n').r.resolve('t').strictHostKeyChecking, 'yes');
});

test('known_hosts files: several, or none', () => {
  const { r } = resolver('Host a\n  UserKnownHostsFile /x/one /x/two\n  GlobalKnownHostsFile none\nHost b\n  UserKnownHostsFile none\n');
  assert.deepEqual(r.resolve('a').userKnownHostsFiles, ['/x/one', '/x/two']);
  assert.deepEqual(r.resolve('a').globalKnownHostsFiles, []);
  assert.deepEqual(r.resolve('b').userKnownHostsFiles, []);
});

test('IdentityAgent: SSH_AUTH_SOCK by default, none, a path, an env name', () => {
  const env = { SSH_AUTH_SOCK: '/run/agent.sock', OTHER: '/run/other.sock' };
  const { r } = resolver('Host none\n  IdentityAgent none\nHost path\n  IdentityAgent /tmp/a.sock\nHost var\n  IdentityAgent $OTHER\n', { env });
  assert.equal(r.resolve('x').identityAgent, '/run/agent.sock');
  assert.equal(r.resolve('none').identityAgent, undefined);
  assert.equal(r.resolve('path').identityAgent, '/tmp/a.sock');
  assert.equal(r.resolve('var').identityAgent, '/run/other.sock');
});

test('ProxyJump hops parse; ProxyCommand is captured, never run', () => {
  const marker = path.join(tempDir(), 'ran');
  const { r } = resolver(`Host j\n  ProxyJump alice@bastion:2222,[fe80::1]:22,ssh://bob@edge\nHost p\n  ProxyCommand touch ${marker}\n`);
  assert.deepEqual(r.resolve('j').proxyJump, [
    { user: 'alice', host: 'bastion', port: 2222 }, { host: 'fe80::1', port: 22 }, { user: 'bob', host: 'edge' },
  ]);
  assert.equal(r.resolve('p').proxyCommand, `touch ${marker}`);
  assert.equal(fs.existsSync(marker), false);
  assert.throws(() => parseJumpSpec('host:notaport'), ConfigError);
});

test('a missing -F file is an error naming it', () => {
  const missing = path.join(tempDir(), 'nope');
  assert.throws(() => new SshConfigResolver({ configFile: missing }).load(), (e: Error) => e instanceof ConfigError && e.message.includes(missing));
});

test('the real ssh agrees on what matters (ssh -G)', () => {
  const { home } = resolver('');
  const cfg = path.join(home, 'cfg');
  fs.writeFileSync(cfg, 'Host web\n  HostName 10.1.1.1\n  Port 2022\n  User deploy\nHost *\n  User fallback\n');
  const r = new SshConfigResolver({ configFile: cfg, home, localUser: 'me', env: {} });
  r.load();
  const ours = r.resolve('web');
  const g = execFileSync('ssh', ['-G', '-F', cfg, 'web']).toString();
  const field = (k: string): string => new RegExp(`^${k} (.*)$`, 'm').exec(g)![1];
  assert.equal(ours.hostname, field('hostname'));
  assert.equal(String(ours.port), field('port'));
  assert.equal(ours.user, field('user'));
});
