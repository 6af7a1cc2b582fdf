// What a finished exec leaves on its SSH channel (daemon/call/channel-call.ts,
// daemon/ssh/connection.ts), in process, against ssh2's Server
// (helpers/session-server.ts) through a real HostPool and Connection.
//
// A channel can outlive its call in V8's old space until the next full
// collection; whatever the channel still refers to lives as long, and the
// young collector copies and promotes it (docs/hot-path.md, "What the young
// collector kept"). So once a call has ended, its channel refers to nothing
// of the call: the listeners it added are gone, keepData too, and the
// connection's listener is one function for every session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import type { Agent } from '../../daemon/pool/agent';
import type { ClientChannel } from '../../daemon/ssh/ssh2';
import { ChannelCall } from '../../daemon/call/channel-call';
import { STDIN_WINDOW, type CallOutcome, type CallSink, type OutputFd } from '../../daemon/call/call';
import { collectGarbage } from '../helpers/collect-garbage';
import { startSessionServer } from '../helpers/session-server';
import { realPool } from '../helpers/session-pool';

const WAIT_MS = 5000;

/** A door that keeps what the call sent it. */
class RecordingSink implements CallSink {
  readonly alive = true;
  readonly copiesData = true;
  output = '';
  eofs = 0;
  outcome: CallOutcome | undefined;
  private ended: () => void = () => {};
  readonly done = new Promise<void>((resolve, reject) => {
    this.ended = resolve;
    setTimeout(() => reject(new Error(`no end within ${WAIT_MS} ms`)), WAIT_MS).unref();
  });

  started(): void {}
  data(_fd: OutputFd, chunk: Buffer): void {
    this.output += chunk.toString();
  }
  stdinWritten(): void {}
  eof(): void {
    this.eofs++;
  }
  end(outcome: CallOutcome): void {
    this.outcome = outcome;
    this.ended();
  }
  protocolError(message: string): void {
    throw new Error(message);
  }
}

test('a finished exec leaves nothing of itself on its channel: with the channels still held, the calls are collected', async (t) => {
  const s = await startSessionServer({ maxSessions: 10 });
  t.after(() => s.close());
  const pool = realPool(t, s, { maxConnections: 1 });
  const log = pino({ level: 'silent' });

  // Each session's channel, as the pool hands it to the call.
  const channels: ClientChannel[] = [];
  const request = pool.request.bind(pool);
  pool.request = (spec, handler, waitMs) => request(spec, {
    onOpen: (session) => {
      channels.push(session.channel!);
      handler.onOpen(session);
    },
    onError: (err) => handler.onError(err),
  }, waitMs);
  // The call asks the agent for its pool by name; this one has one pool.
  const agent = { pool: () => pool } as unknown as Agent;
  const metrics = { countRequest: () => {}, observeExec: () => {} };

  /** Runs `true` as a ChannelCall to its end; only a weak reference to the call is kept. */
  const runExec = async (): Promise<WeakRef<ChannelCall>> => {
    const sink = new RecordingSink();
    const call = new ChannelCall(sink, { kind: 'exec', host: 'inproc', command: 'true', stdin: false },
      { agent, log, metrics, outputWindow: 1 << 20, stdinCredit: STDIN_WINDOW });
    call.start();
    await sink.done;
    assert.deepEqual(sink.outcome, { exit: { code: 0, signal: null } });
    assert.equal(sink.output, 'ok\n');
    assert.equal(sink.eofs, 1);
    return new WeakRef(call);
  };
  const calls = [await runExec(), await runExec(), await runExec()];

  assert.equal(channels.length, 3);
  for (const [i, channel] of channels.entries()) assert.equal(channel.keepData, undefined, `channel ${i} still has the call's keepData`);
  // Held here, the channels stay; the calls must not stay with them.
  await collectGarbage();
  assert.deepEqual(calls.map((c) => c.deref() === undefined), [true, true, true], 'a channel still refers to a finished call');
});
