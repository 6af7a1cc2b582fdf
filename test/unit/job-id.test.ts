// Job ids and the replies of job scripts, without sshd: ids round-trip any
// host alias, are always one word no shell interprets, and anything else is
// BAD_REQUEST; a reply the daemon cannot read is an error, never a guess.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Code } from '../../proto';
import { MuxError } from '../../daemon/errors';
import { formatId, isKey, newKey, parseId } from '../../daemon/jobs/job-id';
import { parseLog, parseReplies, ReplyError, shQuote } from '../../daemon/jobs/scripts';

const SHELL_SAFE_ID = /^[A-Za-z0-9._@:+=,%-]+\/[0-9a-z]{17}$/;

test('ids: any host round-trips, and every id is one shell-safe word with a sortable key', () => {
  fc.assert(fc.property(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 60 }), (host) => {
    const key = newKey();
    const id = formatId({ host, key });
    assert.match(id, SHELL_SAFE_ID);
    assert.deepEqual(parseId(id), { host, key });
  }), { numRuns: 2000 });
  assert.equal(formatId({ host: 'deploy@web1', key: '0mwtij0656of88rqy' }), 'deploy@web1/0mwtij0656of88rqy');
  assert.equal(formatId({ host: 'odd:[x]+é', key: '0mwtij0656of88rqy' }), 'odd:%5Bx%5D+%C3%A9/0mwtij0656of88rqy');
  assert.ok(newKey(1000) < newKey(2000) && isKey(newKey()));
});

test('ids: anything that is not exactly one is BAD_REQUEST, saying what an id looks like', () => {
  fc.assert(fc.property(fc.string({ maxLength: 80 }), (s) => {
    try {
      const ref = parseId(s);
      assert.equal(formatId(ref), s, 'only canonical ids parse');
    } catch (err) {
      assert.ok(err instanceof MuxError && err.code === Code.BAD_REQUEST, String(err));
      assert.match(err.message, /is not a job id .*web1\/lq2x8k3m1a9f3k2ab/);
    }
  }), { numRuns: 5000 });
  for (const bad of ['t/0mwtij0656of88rq', '%74/0mwtij0656of88rqy', 't%c3%a9/0mwtij0656of88rqy', 't%FF/0mwtij0656of88rqy', 't $x/0mwtij0656of88rqy']) {
    assert.throws(() => parseId(bad), (e: unknown) => e instanceof MuxError && e.code === Code.BAD_REQUEST, bad);
  }
});

test('shQuote: sh reads back exactly the bytes', () => {
  const { execFileSync } = require('node:child_process') as typeof import('node:child_process');
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 40 }).filter((s) => !s.includes('\0')), (s) => {
    assert.equal(execFileSync('sh', ['-c', `printf %s ${shQuote(s)}`]).toString(), s);
  }), { numRuns: 200 });
});

test('replies: parsed per operation; a detail blob is taken by its lengths; anything unexpected is a ReplyError', () => {
  const out = Buffer.from('0 job k1 exited 3 100 105 0 - -\n1 detail k2 5 2\nhe\nloé\n1 job k2 signaled KILL 100 101 1 10 0\n2 gone k3 other@box\n');
  const r = parseReplies(out, 3);
  assert.deepEqual(r[0], [{ type: 'job', key: 'k1', state: 'exited', exitCode: 3, signal: null, startedS: 100, endedS: 105, cancelled: false, stdoutSize: null, stderrSize: null }]);
  assert.deepEqual(r[1][0], { type: 'detail', key: 'k2', command: 'he\nlo', name: 'é' });
  assert.deepEqual([r[1][1].type, (r[1][1] as { signal: string }).signal], ['job', 'KILL']);
  assert.deepEqual(r[2], [{ type: 'gone', key: 'k3', owner: 'other@box' }]);
  for (const bad of ['0 job k1 weird 3 - - - 0 - -\n', '7 job k1 exited 0 - - 0 - -\n', 'hello\n', '0 job k1 exited 0', '0 detail k 99 0\nshort\n', '! date\n']) {
    assert.throws(() => parseReplies(Buffer.from(bad), 1), ReplyError, bad);
  }
  const log = parseLog(Buffer.concat([Buffer.from('0 log k running 9000\n'), Buffer.alloc(4096, 'a'), Buffer.from('bcdef')]), 4095, 3);
  assert.deepEqual([log.type, log.type === 'log' && log.data.toString()], ['log', 'abc']);
});
