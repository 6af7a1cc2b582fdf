// A full garbage collection on demand, for tests that check what a finished
// call leaves reachable: with the objects suspected of holding on to it kept
// alive, a call still reachable from them survives this, one not reachable
// is gone (a WeakRef to it derefs to undefined).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// The flag must be set before the context that exposes gc is made.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Collects everything unreachable, after this turn (a WeakRef made in this turn keeps its target until it ends). */
export async function collectGarbage(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  gc();
}
