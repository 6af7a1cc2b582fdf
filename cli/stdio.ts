// The sshmux command's stdout and stderr: created only when first used (each
// costs start-up time that a silent `sshmux host true` need not pay), and
// flushed before the process exits, because process.exit() drops writes
// still queued for a pipe.

const used = new Set<NodeJS.WriteStream>();

/** process.stdout (1) or process.stderr (2), remembered for flushing. */
export function output(fd: 1 | 2): NodeJS.WriteStream {
  const stream = fd === 1 ? process.stdout : process.stderr;
  used.add(stream);
  return stream;
}

/** Exits once everything written to stdout and stderr has reached the OS (or their reader has gone). */
export async function exitFlushed(code: number): Promise<never> {
  await Promise.all([...used].map(flushed));
  process.exit(code);
}

function flushed(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.writableLength === 0 || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once('error', () => resolve());
    stream.write('', () => resolve());
  });
}
