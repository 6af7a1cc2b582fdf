// The SDK as the npm package an application installs (client-sdk/, package
// name sshmux): packed with `npm pack`, unpacked into an empty project with
// only the dependencies its package.json declares beside it, then used as an
// application would: `require('sshmux')` and `import ... from 'sshmux'`
// against a real daemon, and type-checked through the declarations it ships.
// A file the package needs but does not hold (a ../proto import that the
// build did not bring in) or a dependency it uses but does not declare
// fails here, where inside this repository it would resolve.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../helpers/sshd';
import { startWorld, type World } from '../helpers/world';

const ROOT = path.join(__dirname, '..', '..', '..');
const SDK = path.join(ROOT, 'client-sdk');

/** npm as `npm test` runs it, else the one on PATH. */
function npm(args: string[], cwd: string): string {
  const [cmd, pre] = process.env.npm_execpath ? [process.execPath, [process.env.npm_execpath]] : ['npm', []];
  return execFileSync(cmd, [...pre, ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
}

let app: string;
let packed: { files: Array<{ path: string }>; name: string; version: string };
let world: World;

before(async () => {
  const out = tempDir();
  // npm test has built it (prepack would build again, under the feet of the running suite).
  [packed] = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', out], SDK));
  app = tempDir();
  const pkgDir = path.join(app, 'node_modules', 'sshmux');
  fs.mkdirSync(pkgDir, { recursive: true });
  execFileSync('tar', ['-xzf', path.join(out, `${packed.name}-${packed.version}.tgz`), '-C', pkgDir, '--strip-components=1']);
  // Only what the package declares, from this repository's install; @types/node as a TypeScript application has it.
  const declared = Object.keys((JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as { dependencies?: object }).dependencies ?? {});
  for (const dep of [...declared, '@types/node']) {
    fs.mkdirSync(path.dirname(path.join(app, 'node_modules', dep)), { recursive: true });
    fs.symlinkSync(path.join(ROOT, 'node_modules', dep), path.join(app, 'node_modules', dep));
  }
  world = await startWorld();
});

test('the package: its code, its proto/ code and its types, and protobufjs as its only dependency', () => {
  assert.equal(packed.name, 'sshmux');
  const files = packed.files.map((f) => f.path).sort();
  const outside = files.filter((f) => !/^dist\/(client-sdk|proto)\/|^package\.json$|^README\.md$/.test(f));
  assert.deepEqual(outside, [], 'files outside the SDK\'s own');
  for (const f of ['dist/client-sdk/index.js', 'dist/client-sdk/index.d.ts', 'dist/proto/gen/sshmux.js', 'dist/proto/gen/sshmux.d.ts', 'dist/proto/gen/schema.json']) {
    assert.ok(files.includes(f), `${f} is not in the package`);
  }
  const pkg = JSON.parse(fs.readFileSync(path.join(app, 'node_modules', 'sshmux', 'package.json'), 'utf8'));
  assert.deepEqual(Object.keys(pkg.dependencies), ['protobufjs']);
  // The daemon's own dependencies are not the SDK's.
  for (const f of files.filter((f) => f.endsWith('.js'))) {
    const text = fs.readFileSync(path.join(app, 'node_modules', 'sshmux', f), 'utf8');
    const required = [...text.matchAll(/require\("([^".][^"]*)"\)/g)].map((m) => m[1]);
    const foreign = required.filter((r) => !r.startsWith('node:') && !r.startsWith('protobufjs') && !['fs', 'net', 'path', 'os', 'events', 'stream'].includes(r));
    assert.deepEqual(foreign, [], `${f} requires what the package does not declare`);
  }
});

/** Runs a script of the application's (in its directory) that talks to the daemon; its stdout as JSON. */
function runApp(file: string, source: string): unknown {
  fs.writeFileSync(path.join(app, file), source);
  const r = spawnSync(process.execPath, [file], { cwd: app, encoding: 'utf8', timeout: 30_000, env: { ...process.env, SSHMUX_SOCKET: world.daemon.socket } });
  assert.equal(r.status, 0, `${file}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

test('require(\'sshmux\') in an application: connect, exec, and a typed error', () => {
  const out = runApp('app.cjs', `
    const { SshMux, SshMuxError } = require('sshmux');
    (async () => {
      const mux = await SshMux.connect();
      const r = await mux.exec('t', 'echo from-cjs; exit 3');
      const err = await mux.exec('t', 'sleep 5', { timeoutMs: 300 }).catch((e) => e);
      console.log(JSON.stringify({ code: r.code, stdout: r.stdout.toString(), typed: err instanceof SshMuxError, errCode: err.code }));
      mux.close();
    })().catch((e) => { console.error(e); process.exit(1); });
  `);
  assert.deepEqual(out, { code: 3, stdout: 'from-cjs\n', typed: true, errCode: 'DEADLINE_EXCEEDED' });
});

test('import { SshMux } from \'sshmux\' in an ES module application', () => {
  const out = runApp('app.mjs', `
    import { SshMux } from 'sshmux';
    const mux = await SshMux.connect();
    const r = await mux.exec('t', 'echo from-esm');
    console.log(JSON.stringify({ code: r.code, stdout: r.stdout.toString() }));
    mux.close();
  `);
  assert.deepEqual(out, { code: 0, stdout: 'from-esm\n' });
});

test('a TypeScript application type-checks against the declarations the package ships (nodenext and commonjs)', () => {
  fs.writeFileSync(path.join(app, 'app.ts'), `
    import { SshMux, SshMuxError, type ExecResult, type SshMuxErrorCode } from 'sshmux';
    export async function run(): Promise<number> {
      const mux: SshMux = await SshMux.connect({ socket: '/run/sshmux/sshmuxd.sock' });
      const r: ExecResult = await mux.exec('t', 'true');
      const code: SshMuxErrorCode = 'DNS';
      // @ts-expect-error: the declarations are real, so a field that does not exist is an error (with any, this line would be unused)
      r.noSuchField;
      return (r.code ?? 128) + (new SshMuxError(code, 'x') instanceof Error ? 0 : 1);
    }
  `);
  for (const module of ['nodenext', 'commonjs']) {
    const config = { compilerOptions: { module, strict: true, noEmit: true, types: ['node'], skipLibCheck: false }, files: ['app.ts'] };
    fs.writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify(config));
    const r = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `module ${module}: ${r.stdout}${r.stderr}`);
  }
});
