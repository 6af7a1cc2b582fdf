// What a finished call leaves on the SDK's side (client-sdk/remote-process.ts):
// its stdin, a Writable the program may hold long after, refers to nothing
// of the call once it has ended, so a program holding it keeps only the
// stream (docs/hot-path.md, "What the young collector kept"); and a write
// after the end is taken and dropped, as before.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeFrame, v1, type IFrame } from '../../proto';
import { RemoteProcess } from '../../client-sdk/remote-process';
import { collectGarbage } from '../helpers/collect-garbage';

/** A frame as the SDK reads it off the socket. */
function frame(f: IFrame): v1.Frame {
  return v1.Frame.decode(encodeFrame(f).subarray(4));
}

/** A call that ran to exit 0, as the daemon's frames tell it; only its stdin and a weak reference are kept. */
async function finishedCall(): Promise<{ stdin: RemoteProcess['stdin']; call: WeakRef<RemoteProcess> }> {
  const proc = new RemoteProcess();
  proc.stdout.resume();
  proc.stderr.resume();
  proc.onFrame(frame({ stream: 1, data: { fd: 1, data: Buffer.from('ok\n') } }));
  proc.onFrame(frame({ stream: 1, eof: {} }));
  proc.onFrame(frame({ stream: 1, exit: { code: 0 } }));
  assert.deepEqual(await proc.closed, { code: 0, signal: null });
  return { stdin: proc.stdin, call: new WeakRef(proc) };
}

test('a finished call leaves nothing of itself on its stdin: with stdin still held, the call is collected, and a late write is dropped', async () => {
  const held = [await finishedCall(), await finishedCall()];
  await collectGarbage();
  assert.deepEqual(held.map((h) => h.call.deref() === undefined), [true, true], 'a finished call is still reachable from its stdin');
  await new Promise<void>((resolve, reject) => held[0].stdin.write('late', (err) => (err ? reject(err) : resolve())));
  await new Promise<void>((resolve) => held[1].stdin.end(resolve));
});
