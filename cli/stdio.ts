// The sshmux command's stdin, stdout and stderr: created only when first used
// (each costs start-up time that a silent `sshmux host true` need not pay);
// output flushed before the process exits.
//
// The command ends by letting the event loop empty, not by process.exit():
// on Node 22 to 26, process.exit() can deadlock (nodejs/node#54918, open):
// its exit handler shuts the V8 platform down and joins its worker threads
// without disposing of the isolate, while a concurrent Maglev compile job on
// one of them waits for a garbage collection only the main thread would run.
// Seen here once in a bench run: all output written, the process asleep for
// ever. A natural exit disposes of the isolate first, which releases such a
// job.

/** If something still holds the event loop this long after the end, exit the old way. */
const EXIT_FALLBACK_MS = 2000;

const used = new Set<NodeJS.WriteStream>();
let stdinUsed = false;

/** process.stdin, remembered so that the exit can close it. */
export function input(): NodeJS.ReadStream {
  stdinUsed = true;
  return process.stdin;
}

/** process.stdout (1) or process.stderr (2), remembered for flushing. */
export function output(fd: 1 | 2): NodeJS.WriteStream {
  const stream = fd === 1 ? process.stdout : process.stderr;
  used.add(stream);
  return stream;
}

/** Exits with `code` once everything written to stdout and stderr has reached the OS (or their reader has gone). */
export async function exitFlushed(code: number): Promise<never> {
  await Promise.all([...used].map(flushed));
  // A terminal or pipe still being read would keep the process alive: ssh does not wait for stdin's EOF either.
  if (stdinUsed) process.stdin.destroy();
  return exitWhenIdle(code);
}

/** Ends the process with `code` once its event loop is empty (see above), or after EXIT_FALLBACK_MS through process.exit(). */
export function exitWhenIdle(code: number): Promise<never> {
  process.exitCode = code;
  setTimeout(() => process.exit(code), EXIT_FALLBACK_MS).unref();
  return new Promise<never>(() => {});
}

function flushed(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.writableLength === 0 || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once('error', () => resolve());
    stream.write('', () => resolve());
  });
}
