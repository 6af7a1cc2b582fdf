// The daemon's V8 flags (daemon/v8-flags.ts) are given wherever it starts:
// run as a program (its #! line), by `npm start`, by the tests' helper (and
// so the bench), by the sshmux command's autostart (the same constant), and
// in the Debian package by the #! line of /usr/bin/sshmuxd, which the units
// run (the installed one is run in deb-package.test.ts). Started without
// them, the daemon works and its log says what that costs.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DAEMON_V8_FLAGS } from '../../daemon/v8-flags';
import { NODE, shebang } from '../../scripts/package-deb';
import { startDaemon, waitFor } from '../helpers/daemon';
import { cleanupAll, tempDir } from '../helpers/sshd';

const ROOT = path.join(__dirname, '..', '..', '..');
const MAIN = path.join(ROOT, 'dist', 'daemon', 'main.js');
const HINT = 'started without these node flags';

after(cleanupAll);

test('the #! lines (the checkout\'s, the Debian package\'s) and npm start give the flags', () => {
  assert.equal(fs.readFileSync(MAIN, 'utf8').split('\n')[0], `#!/usr/bin/env -S node ${DAEMON_V8_FLAGS.join(' ')}`);
  assert.equal(shebang('sshmuxd'), `#!${NODE} ${DAEMON_V8_FLAGS.join(' ')}`);
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  assert.equal(pkg.scripts.start, `node ${DAEMON_V8_FLAGS.join(' ')} dist/daemon/main.js`);
});

/** Starts the daemon as `argv` and resolves with its log once it listens. */
async function logOf(argv: string[], dir: string, name: string): Promise<string> {
  const socket = path.join(dir, `${name}.sock`);
  const sshConfig = path.join(dir, 'ssh_config');
  const child = spawn(argv[0], [...argv.slice(1), '--socket', socket, '-F', sshConfig],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  let log = '';
  child.stdout.on('data', (d: Buffer) => (log += d));
  child.stderr.on('data', (d: Buffer) => (log += d));
  try {
    // The hint, if any, is logged before the socket listens.
    assert.ok(await waitFor(() => fs.existsSync(socket), 10_000), `${name}: the daemon did not listen: ${log}`);
    return log;
  } finally {
    child.kill('SIGKILL');
  }
}

test('run as a program or by the helper the daemon has its flags; started by plain node it serves and says what they are for', async () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'ssh_config'), '');
  assert.ok(!(await logOf([MAIN], dir, 'program')).includes(HINT), 'run through its #! line, the daemon lacked its flags');
  const plain = await logOf([process.execPath, MAIN], dir, 'plain');
  assert.ok(plain.includes(HINT) && plain.includes(DAEMON_V8_FLAGS[0]), `no hint naming the flags: ${plain}`);
  const helper = await startDaemon({ dir, sshConfigPath: path.join(dir, 'ssh_config'), socket: path.join(dir, 'helper.sock') });
  try {
    assert.ok(!helper.logs().includes(HINT), helper.logs());
  } finally {
    await helper.stop();
  }
});
