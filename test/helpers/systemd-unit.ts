// Reading systemd unit files as systemd does, and running systemd-analyze
// verify on them, for the tests of the units in packaging/systemd (in the
// checkout: test/unit/systemd-units.test.ts; installed by the Debian
// package: test/system/deb-package.test.ts).
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const ANALYZE = '/usr/bin/systemd-analyze';

export function executable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export type Unit = Map<string, Array<[string, string]>>;

/** A unit file as systemd reads it: sections of key=value assignments, in order (comments and continuations handled). */
export function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Array<[string, string]> | undefined;
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = pending + raw.trim();
    pending = '';
    if (line.endsWith('\\')) {
      pending = line.slice(0, -1) + ' ';
      continue;
    }
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = [];
      unit.set(header[1], section);
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(section && eq > 0, `not a unit-file line: ${line}`);
    section.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return unit;
}

/** Every assignment of `key` in `section`, in order (an empty one resets list settings in systemd). */
export function all(unit: Unit, section: string, key: string): string[] {
  return (unit.get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);
}

/** The value systemd ends up with for a single-valued key: the last assignment. */
export function one(unit: Unit, section: string, key: string): string | undefined {
  return all(unit, section, key).at(-1);
}

/** A list setting as systemd accumulates it: an empty assignment clears what came before. */
export function list(unit: Unit, section: string, key: string): string[] {
  let items: string[] = [];
  for (const v of all(unit, section, key)) items = v === '' ? [] : [...items, ...v.split(/\s+/)];
  return items;
}

/** ExecStart split into argv (our units use no quoting), with `--flag value` pairs looked up by flag. */
export function command(line: string | undefined): { argv: string[]; opt: (flag: string) => string | undefined } {
  assert.ok(line, 'ExecStart missing');
  const argv = line.split(/\s+/);
  return {
    argv,
    opt: (flag) => {
      const i = argv.indexOf(flag);
      return i < 0 ? undefined : argv[i + 1];
    },
  };
}

/** A systemd tool, with plain, uncoloured messages without source locations, in English. */
export function runSystemd(file: string, args: string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  const r = spawnSync(file, args, {
    encoding: 'utf8',
    timeout: 10_000,
    env: { ...process.env, SYSTEMD_LOG_COLOR: '0', SYSTEMD_LOG_LOCATION: '0', SYSTEMD_LOG_TIME: '0', SYSTEMD_PAGER: 'cat', LC_ALL: 'C', ...env },
  });
  assert.ifError(r.error);
  return r;
}

/**
 * Messages from systemd-analyze that are about one of our units. A line
 * attributed to another unit ("/lib/systemd/system/foo.service:12: ..." or
 * "foo.service: ...") is left out: verify also loads the units ours
 * reference (network.target, sockets.target, ...) and complains about
 * whatever the host ships. That isn't ours to fix, so it is only reported
 * as a diagnostic. Every other line counts, attributed or not.
 */
function ourProblems(output: string, note: (s: string) => void): string[] {
  const problems: string[] = [];
  for (const line of output.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const m = /^([^\s:]+\.(?:service|socket|target|slice|mount|automount|swap|path|timer|scope|device))(?::\d+)?:\s/.exec(line);
    if (m && !path.basename(m[1]).startsWith('sshmuxd.')) note(`ignored, about another unit: ${line}`);
    else problems.push(line);
  }
  return problems;
}

/** systemd-analyze [--user] verify on unit files: nothing to say about ours, and exit 0. */
export function assertVerified(files: string[], opts: { user?: boolean; man?: boolean; env?: NodeJS.ProcessEnv; note: (s: string) => void }): void {
  // --man=yes: the man pages Documentation= names must be installed.
  const args = ['verify', `--man=${opts.man ? 'yes' : 'no'}`];
  // systemd >= 250: let only our own units decide the exit status.
  if (runSystemd(ANALYZE, ['--help']).stdout.includes('--recursive-errors')) args.push('--recursive-errors=no');
  const r = runSystemd(ANALYZE, [...(opts.user ? ['--user'] : []), ...args, ...files], opts.env);
  const problems = ourProblems(`${r.stdout}\n${r.stderr}`, opts.note);
  assert.deepEqual(problems, [], `systemd-analyze verify complained:\n${problems.join('\n')}`);
  assert.equal(r.status, 0, `systemd-analyze verify exited ${r.status}:\n${r.stdout}${r.stderr}`);
}
