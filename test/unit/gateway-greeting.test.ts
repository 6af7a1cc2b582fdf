// The line the ssh_config block's ProxyCommand helper writes before ssh's
// own identification, naming the destination to the front door: what one
// end writes the other reads back, and anything else is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { greetingLine, parseGreeting } from '../../daemon/gateway/greeting';

test('what the helper writes, the door reads back', () => {
  for (const [user, host, port] of [['deploy', 'web1', '22'], ['a@corp', 'db.example.com', '2222'], ['u', '2001:db8::1', '65535']]) {
    const made = greetingLine(user, host, port);
    assert.ok('line' in made, JSON.stringify(made));
    assert.match(made.line, /\r\n$/);
    assert.deepEqual(parseGreeting(made.line), { destination: `${user}@${host}`, port });
  }
});

test('the helper refuses what would not make one line of three words', () => {
  assert.match((greetingLine('a b', 'web', '22') as { error: string }).error, /invalid user "a b"/);
  assert.match((greetingLine('u', 'web\nSSH-2.0-x', '22') as { error: string }).error, /invalid host/);
  assert.match((greetingLine('u', '', '22') as { error: string }).error, /invalid host ""/);
  for (const port of ['0', '65536', 'ssh', '']) assert.match((greetingLine('u', 'web', port) as { error: string }).error, /invalid port/);
});

test('no greeting is no destination; any other line is an error naming it', () => {
  assert.equal(parseGreeting(undefined), undefined);
  assert.equal(parseGreeting(''), undefined);
  for (const bad of ['hello\r\n', 'sshmux-destination web 22\r\n', 'sshmux-destination u@web 99999\r\n', 'sshmux-destination u@web 22\r\nmore\r\n']) {
    const parsed = parseGreeting(bad);
    assert.ok(parsed instanceof Error, bad);
    assert.match(parsed.message, /not "sshmux-destination USER@HOST PORT"/);
  }
});
