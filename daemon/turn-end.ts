// Work held until the event loop has handled this turn's I/O: the writes a
// turn produced, to sshd (coalesce-writes.ts) and to clients
// (rpc/frame-writer.ts), each sent as one. One setImmediate runs them all:
// a warm exec writes to sshd and to its client in the same turn, and each
// Immediate costs an object and a pass of Node's immediate queue.

let waiting: Array<() => void> = [];

function runAll(): void {
  const batch = waiting;
  waiting = [];
  let i = 0;
  try {
    for (; i < batch.length; i++) batch[i]();
  } finally {
    // One that threw must not cost the others their turn: they run on the next.
    for (let j = i + 1; j < batch.length; j++) atTurnEnd(batch[j]);
  }
}

/** Runs `fn` once this turn's I/O callbacks are done (in the event loop's check phase). */
export function atTurnEnd(fn: () => void): void {
  if (waiting.push(fn) === 1) setImmediate(runAll);
}
