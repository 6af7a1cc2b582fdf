// Preloaded (node --require) into a command under test: appends a line to the
// file named by SSHMUX_EXIT_PROBE whenever process.exit() is called, so that a
// test can tell a process that ended on its own from one that was ended.
import * as fs from 'node:fs';

const file = process.env.SSHMUX_EXIT_PROBE;
if (file) {
  const exit = process.exit.bind(process);
  process.exit = ((code?: number) => {
    fs.appendFileSync(file, `process.exit(${code ?? ''})\n`);
    return exit(code);
  }) as typeof process.exit;
}
