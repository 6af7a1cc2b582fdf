#!/usr/bin/env node
// Build: generate the protobuf code and the schema descriptor from
// proto/sshmux.proto (the one source of the wire format), then compile
// TypeScript into dist/.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const bin = (name) => path.join(root, 'node_modules', '.bin', name);
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });

const proto = path.join(root, 'proto', 'sshmux.proto');
const genDir = path.join(root, 'proto', 'gen');
const genJs = path.join(genDir, 'sshmux.js');
const genDts = path.join(genDir, 'sshmux.d.ts');
// The schema as data, for proto/wire.ts (the sshmux command's codec without protobufjs).
const genSchema = path.join(genDir, 'schema.json');

fs.mkdirSync(genDir, { recursive: true });
const stale = [genJs, genDts, genSchema].some((f) => !fs.existsSync(f) || fs.statSync(f).mtimeMs < fs.statSync(proto).mtimeMs);
if (stale) {
  // --no-verify/--no-convert/--no-delimited: the daemon and SDK only encode and
  // decode; leaving the rest out keeps the module small and quick to load.
  run(bin('pbjs'), ['-t', 'static-module', '-w', 'commonjs', '--no-verify', '--no-convert', '--no-delimited',
    '--no-beautify', '--force-number', '-o', genJs, proto]);
  run(bin('pbts'), ['-o', genDts, genJs]);
  run(bin('pbjs'), ['-t', 'json', '-o', genSchema, proto]);
  // Minified: the sshmux command parses it on every start.
  fs.writeFileSync(genSchema, JSON.stringify(JSON.parse(fs.readFileSync(genSchema, 'utf8'))));
}
// From scratch: a test file deleted from the sources must not stay behind in dist/ and run.
fs.rmSync(path.join(root, 'dist'), { recursive: true, force: true });
run(bin('tsc'), ['-p', 'tsconfig.json']);
fs.mkdirSync(path.join(root, 'dist', 'proto', 'gen'), { recursive: true });
for (const f of [genJs, genSchema]) fs.copyFileSync(f, path.join(root, 'dist', 'proto', 'gen', path.basename(f)));
for (const f of ['daemon/main.js', 'cli/sshmux.js', 'cli/sshmuxctl.js']) {
  const p = path.join(root, 'dist', f);
  if (fs.existsSync(p)) fs.chmodSync(p, 0o755);
}
