#!/usr/bin/env node
// Runs after npm has installed the dependencies (npm ci, npm install).
// 1. Applies sshmux's changes to ssh2, the patch files in
//    daemon/ssh/ssh2/patches/, with patch-package: a patch that no longer
//    applies (another ssh2 version) fails the install and names the patch.
// 2. Makes sure ssh2's C++ crypto binding is built for this Node. ssh2's own
//    install script built it before step 1, from unpatched sources, which do
//    not compile on Node 26; without the binding ssh2 falls back to
//    JavaScript ciphers at several times the CPU per byte, so a missing
//    binding fails the install too, saying what to install, unless
//    SSHMUX_ALLOW_JS_CRYPTO=1 says that is wanted.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const patchDir = 'daemon/ssh/ssh2/patches';

function fail(lines) {
  process.stderr.write(`\n${'='.repeat(78)}\nsshmux: ${lines.join('\n        ')}\n${'='.repeat(78)}\n\n`);
  process.exit(1);
}

function applyPatches() {
  let bin;
  try {
    bin = path.join(path.dirname(require.resolve('patch-package/package.json', { paths: [root] })), 'index.js');
  } catch {
    fail([
      'patch-package is not installed, so ssh2 cannot be patched and sshmuxd would refuse to start.',
      'Install with the dev dependencies (npm ci), or install the Debian package (npm run package:deb).',
    ]);
  }
  const r = spawnSync(process.execPath, [bin, '--patch-dir', patchDir, '--error-on-fail', '--exclude', 'package\\.json$|/build/'], {
    cwd: root, stdio: 'inherit',
  });
  if (r.status !== 0) {
    fail([
      `a patch in ${patchDir} did not apply to the installed ssh2 (see above).`,
      'sshmux pins ssh2 to the version its patches are made for: reinstall with npm ci,',
      'or, when moving to another ssh2, remake the patch (daemon/ssh/ssh2/README.md).',
    ]);
  }
}

function bindingBuilt() {
  const probe = "process.exit(require('ssh2/lib/protocol/crypto.js').bindingAvailable === true ? 0 : 1)";
  return spawnSync(process.execPath, ['-e', probe], { cwd: root, stdio: 'ignore' }).status === 0;
}

function buildBinding() {
  // ssh2's own build step (node-gyp, which npm puts on PATH for install scripts); CI_CHECK_FAIL makes it say when it fails.
  const ssh2 = path.dirname(require.resolve('ssh2/package.json', { paths: [root] }));
  spawnSync(process.execPath, ['install.js'], { cwd: ssh2, stdio: 'inherit', env: { ...process.env, CI_CHECK_FAIL: 'ssh2' } });
}

applyPatches();
if (!bindingBuilt()) {
  buildBinding();
  if (!bindingBuilt()) {
    if (process.env.SSHMUX_ALLOW_JS_CRYPTO === '1') {
      process.stderr.write('sshmux: ssh2\'s crypto binding did not build; running on its JavaScript ciphers (SSHMUX_ALLOW_JS_CRYPTO=1)\n');
    } else {
      fail([
        `ssh2's C++ crypto binding did not build for Node ${process.version} (see the node-gyp output above).`,
        'Without it every byte costs several times the CPU. Install a compiler and Python',
        '(apt-get install g++ make python3) and run npm ci again. A Node other than the one',
        'whose headers npm builds against (npm config get nodedir) needs npm_config_nodedir set',
        'to its install directory (the one holding include/node). Or set SSHMUX_ALLOW_JS_CRYPTO=1',
        'to install anyway with ssh2\'s JavaScript ciphers (sshmuxd then warns at every start).',
      ]);
    }
  }
}
