// scripts/system-deps.sh: the one list of system packages that `npm test`,
// `npm run demo`, `npm run package:deb` and .ci/run need. Run in its report-only mode (--check)
// with PATH pointed at a directory that lacks a program, as on a fresh
// machine: it names the package and the exact apt-get line, and exits 1.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..', '..');
const SCRIPT = path.join(ROOT, 'scripts', 'system-deps.sh');
const dirs: string[] = [];

after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/**
 * This PATH with `hidden` taken out: a directory that holds one of them is
 * replaced by a directory of links to everything else in it.
 */
function pathWithout(...hidden: string[]): string {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const from of (process.env.PATH ?? '').split(':')) {
    let real: string;
    let names: string[];
    try {
      real = fs.realpathSync(from);
      names = fs.readdirSync(real);
    } catch {
      continue;
    }
    if (seen.has(real)) continue;
    seen.add(real);
    if (!names.some((n) => hidden.includes(n))) {
      out.push(real);
      continue;
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-path-'));
    dirs.push(dir);
    for (const name of names) if (!hidden.includes(name)) fs.symlinkSync(path.join(real, name), path.join(dir, name));
    out.push(dir);
  }
  return out.join(':');
}

function check(scope: string, PATH = process.env.PATH): { status: number | null; stdout: string; stderr: string } {
  return spawnSync('/bin/bash', [SCRIPT, '--check', scope], { env: { ...process.env, PATH }, encoding: 'utf8' });
}

test('nothing missing: silent, exit 0', () => {
  for (const scope of ['demo', 'package', 'test']) {
    const r = check(scope);
    assert.deepEqual([r.status, r.stdout, r.stderr], [0, '', ''], `${scope}: ${r.stderr}`);
  }
});

test('a missing program: the package, what is missing, and the exact apt-get line; exit 1', () => {
  const r = check('test', pathWithout('pdsh', 'parallel-ssh'));
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, [
    'sshmux: the tests need system packages that are not installed:',
    '  pdsh (no pdsh)',
    '  pssh (no parallel-ssh)',
    'Install them as root, then run this again:',
    '  apt-get update && apt-get install -y --no-install-recommends pdsh pssh',
    '',
  ].join('\n'));
});

test('the demo needs only its own: ssh missing names openssh-client once; pdsh missing is no concern of the demo', () => {
  const r = check('demo', pathWithout('ssh', 'ssh-keygen', 'pdsh'));
  assert.equal(r.status, 1);
  assert.equal(r.stderr, [
    'sshmux: the demo needs system packages that are not installed:',
    '  openssh-client (no ssh, ssh-keygen)',
    'Install them as root, then run this again:',
    '  apt-get update && apt-get install -y --no-install-recommends openssh-client',
    '',
  ].join('\n'));
});

test('no apt-get: says so instead of printing a line that cannot work', () => {
  const r = check('test', pathWithout('git', 'apt-get'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^ {2}git \(no git\)$/m);
  assert.match(r.stderr, /^This machine has no apt-get: install your system's packages for them\.$/m);
});

test('bad usage: exit 2 with the usage line', () => {
  const r = spawnSync('/bin/bash', [SCRIPT, 'everything'], { encoding: 'utf8' });
  assert.deepEqual([r.status, r.stderr], [2, 'usage: scripts/system-deps.sh [--check] demo|package|test\n']);
});

test('`npm run demo` on a machine without ssh stops with the apt-get line, not a stack trace', () => {
  // No apt-get on this PATH either: even as root the script can only report, never install.
  const r = spawnSync('npm', ['run', '--silent', 'demo'], { cwd: ROOT, env: { ...process.env, PATH: pathWithout('ssh', 'ssh-keygen', 'apt-get') }, encoding: 'utf8', timeout: 60_000 });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /^sshmux: the demo needs system packages that are not installed:\n {2}openssh-client \(no ssh, ssh-keygen\)$/m);
  assert.doesNotMatch(r.stdout + r.stderr, /^\s+at /m, 'a stack trace');
  assert.doesNotMatch(r.stdout, /Starting a throwaway sshd/, 'the demo ran anyway');
});

test('one list: npm test, npm run demo and .ci/run all call the script first', () => {
  const scripts = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts;
  assert.match(scripts.test, /^bash scripts\/system-deps\.sh test && /);
  assert.match(scripts.demo, /^bash scripts\/system-deps\.sh demo && /);
  assert.match(scripts['package:deb'], /^bash scripts\/system-deps\.sh package && /);
  assert.match(fs.readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8'), /^scripts\/system-deps\.sh test$/m);
});
