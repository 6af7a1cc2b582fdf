// The Agent's host checks, in process: resolve() answers what pool() would
// (the host, its jump hosts, the errors) and creates nothing, so the doors
// that check a host name before they take a request for it (the SSH front
// door, jobs) leave no pool or endpoint behind for a name nobody uses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { Code } from '../../proto';
import { defaultDaemonConfig } from '../../daemon/config';
import type { MuxError } from '../../daemon/errors';
import { Agent } from '../../daemon/pool/agent';
import { SshConfigResolver } from '../../daemon/ssh/ssh-config';

function agent(t: { after(fn: () => void): void }): Agent {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-agent-'));
  const configFile = path.join(dir, 'ssh_config');
  fs.writeFileSync(configFile, [
    'Host web', '  HostName 10.0.0.5', '  ProxyJump bastion',
    'Host bastion', '  HostName 10.0.0.1',
    'Host loop1', '  ProxyJump loop2',
    'Host loop2', '  ProxyJump loop1',
    'Host cmd', '  ProxyCommand nc %h %p',
    '',
  ].join('\n'));
  const resolver = new SshConfigResolver({ configFile, home: dir, systemConfig: path.join(dir, 'none'), localUser: 'me', env: {} });
  resolver.load();
  const a = new Agent(resolver, defaultDaemonConfig(), pino({ level: 'silent' }));
  t.after(() => {
    a.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return a;
}

function badRequest(pattern: RegExp) {
  return (err: MuxError): boolean => err.code === Code.BAD_REQUEST && pattern.test(err.message);
}

test('Agent.resolve: the host as pool() would have it, through its jump host, and no pool or endpoint made for it', (t) => {
  const a = agent(t);
  const host = a.resolve('deploy@web', {});
  assert.deepEqual([host.user, host.hostname, host.proxyJump.map((j) => j.host)], ['deploy', '10.0.0.5', ['bastion']]);
  assert.deepEqual(a.status(), [], 'resolving made a pool');
  assert.deepEqual(a.breakers(), [], 'resolving made an endpoint');
  a.pool('deploy@web', {});
  assert.deepEqual(a.status().map((h) => h.name).sort(), ['bastion', 'web'], 'pool() makes the pool and its jump host\'s');
});

test('Agent.resolve: what pool() refuses it refuses, and a refused name leaves nothing behind', (t) => {
  const a = agent(t);
  assert.throws(() => a.resolve('loop1', {}), badRequest(/ProxyJump chain deeper than 8/));
  assert.throws(() => a.resolve('cmd', {}), badRequest(/uses ProxyCommand/));
  assert.throws(() => a.resolve('-oProxyCommand=x', {}), badRequest(/invalid host name/));
  assert.throws(() => a.resolve('web', { ProxyCommand: 'x' }), badRequest(/cannot be set by a client/));
  assert.throws(() => a.pool('loop1', {}), badRequest(/ProxyJump chain deeper than 8/));
  assert.deepEqual(a.status(), [], 'a refused name left a pool behind');
  assert.deepEqual(a.breakers(), [], 'a refused name left an endpoint behind');
});
