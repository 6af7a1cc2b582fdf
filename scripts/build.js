#!/usr/bin/env node
// Build: generate the protobuf code and the schema descriptor from
// proto/sshmux.proto (the one source of the wire format), then compile
// TypeScript into dist/, and the SDK package (client-sdk/, package name
// sshmux) on its own into client-sdk/dist with the proto/ code it uses.
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
  // pbts imports Long for 64-bit fields, which --force-number types as numbers: unused, the import would
  // make every TypeScript user of the SDK package resolve "long", a dependency of protobufjs, not of ours.
  const longImport = 'import Long = require("long");\n';
  const dts = fs.readFileSync(genDts, 'utf8');
  if (!/\bLong\b/.test(dts.replace(longImport, ''))) fs.writeFileSync(genDts, dts.replace(longImport, ''));
  run(bin('pbjs'), ['-t', 'json', '-o', genSchema, proto]);
  // Minified: the sshmux command parses it on every start.
  fs.writeFileSync(genSchema, JSON.stringify(JSON.parse(fs.readFileSync(genSchema, 'utf8'))));
}
// From scratch: a test file deleted from the sources must not stay behind in dist/ and run.
fs.rmSync(path.join(root, 'dist'), { recursive: true, force: true });
run(bin('tsc'), ['-p', 'tsconfig.json']);
fs.mkdirSync(path.join(root, 'dist', 'proto', 'gen'), { recursive: true });
for (const f of [genJs, genSchema]) fs.copyFileSync(f, path.join(root, 'dist', 'proto', 'gen', path.basename(f)));
// The SDK package ships its types, so the generated messages' declarations too.
const sdkDist = path.join(root, 'client-sdk', 'dist');
fs.rmSync(sdkDist, { recursive: true, force: true });
run(bin('tsc'), ['-p', path.join('client-sdk', 'tsconfig.json')]);
fs.mkdirSync(path.join(sdkDist, 'proto', 'gen'), { recursive: true });
for (const f of [genJs, genDts, genSchema]) fs.copyFileSync(f, path.join(sdkDist, 'proto', 'gen', path.basename(f)));
for (const f of ['daemon/main.js', 'cli/sshmux.js', 'cli/sshmuxctl.js']) {
  const p = path.join(root, 'dist', f);
  if (fs.existsSync(p)) fs.chmodSync(p, 0o755);
}
