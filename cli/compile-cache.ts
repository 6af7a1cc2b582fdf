// Node's on-disk cache of compiled modules (module.enableCompileCache, Node
// 22.1 and later; on older Node this does nothing), for the sshmux command,
// which a script may start once per command: the modules it loads are
// compiled once, not at every start. cli/sshmux.ts imports this first, as
// the cache covers only the modules loaded after it.
//
// The directory is the user's own (0700): V8 runs cached code as it runs
// the source, so a cache that another user could write would let them run
// code as this one. Any failure leaves the command as it was, uncached.
import * as fs from 'node:fs';
import * as mod from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';

type EnableCompileCache = (dir?: string) => unknown;

const enable = (mod as unknown as { enableCompileCache?: EnableCompileCache }).enableCompileCache;
if (enable) {
  try {
    const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
    const dir = path.join(base, 'sshmux', 'compile-cache');
    if (!fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    enable(dir);
  } catch {
    // A home without a writable cache: start uncached.
  }
}
