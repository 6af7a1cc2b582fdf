// Errors as a contract (fastify's habit): every Code in proto/sshmux.proto
// has a row in the README's "## Errors" table and every row names real
// codes; every error class says its name; a message is said in one place.
// Fast: reads files, starts nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SshMuxError, type SshMuxErrorCode } from '../../client-sdk';
import { ConfigError } from '../../daemon/ssh/ssh-config';
import { DaemonConfigError } from '../../daemon/config';
import { MuxError } from '../../daemon/errors';
import { ListenError } from '../../daemon/rpc/server';
import { UsageError } from '../../cli/ssh-args';
import { Code, FrameError } from '../../proto';

const ROOT = path.join(__dirname, '..', '..', '..');
const PROTO = fs.readFileSync(path.join(ROOT, 'proto', 'sshmux.proto'), 'utf8');
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** The names in `enum Code { ... }` of the .proto text, in order. */
function protoCodes(proto: string): string[] {
  const body = /^enum Code \{([^}]*)\}/m.exec(proto);
  assert.ok(body, 'proto/sshmux.proto has no `enum Code { ... }`');
  const names: string[] = [];
  for (const line of body[1].split('\n')) {
    const m = /^\s*([A-Z][A-Z0-9_]*)\s*=\s*\d+\s*;/.exec(line.replace(/\/\/.*/, ''));
    if (m) names.push(m[1]);
  }
  return names;
}

interface TableRow {
  line: number;
  codes: string[];
  cells: string[];
}

/** The rows of the first table under "## Errors" (up to the next "## "), header and separator left out. */
function errorTable(readme: string): TableRow[] {
  const lines = readme.split('\n');
  const start = lines.findIndex((l) => /^## Errors\s*$/.test(l));
  assert.ok(start >= 0, 'README.md has no "## Errors" section');
  const rows: TableRow[] = [];
  let inTable = false;
  for (let i = start + 1; i < lines.length && !/^## /.test(lines[i]); i++) {
    const l = lines[i].trim();
    if (!l.startsWith('|')) {
      if (inTable) break;
      continue;
    }
    const cells = l.replace(/^\||\|$/g, '').split(/(?<!\\)\|/).map((c) => c.trim());
    if (!inTable) {
      assert.deepEqual(cells.map((c) => c.toLowerCase()), ['code', 'meaning', 'what to do'], `README.md:${i + 1}: the error table's header`);
      inTable = true;
      i++; // the |---| separator
      continue;
    }
    rows.push({ line: i + 1, cells, codes: [...cells[0].matchAll(/`([^`]*)`/g)].map((m) => m[1]) });
  }
  return rows;
}

/** What is wrong between the enum and the table; empty when they agree. */
function tableProblems(proto: string, readme: string): string[] {
  const codes = protoCodes(proto).filter((c) => c !== 'CODE_UNSPECIFIED');
  const rows = errorTable(readme);
  const problems: string[] = [];
  const documented = new Map<string, number>();
  for (const row of rows) {
    if (row.codes.length === 0) problems.push(`README.md:${row.line}: a row of the error table names no code`);
    for (const code of row.codes) {
      if (!codes.includes(code)) problems.push(`README.md:${row.line}: \`${code}\` is not a Code in proto/sshmux.proto`);
      if (documented.has(code)) problems.push(`README.md:${row.line}: \`${code}\` has a row already (line ${documented.get(code)})`);
      documented.set(code, row.line);
    }
    if (row.cells.length !== 3 || !row.cells[1] || !row.cells[2]) {
      problems.push(`README.md:${row.line}: a row needs a code, a meaning and what to do ("—" when nothing)`);
    }
  }
  for (const code of codes) {
    if (!documented.has(code)) problems.push(`Code ${code} (proto/sshmux.proto) has no row in the README's error table`);
  }
  return problems;
}

test('every Code has a row in the README error table, and every row names a Code', () => {
  assert.deepEqual(tableProblems(PROTO, README), []);
});

test('the generated enum is the .proto one (the build regenerated it)', () => {
  const generated = Object.keys(Code).filter((k) => Number.isNaN(Number(k)));
  assert.deepEqual(generated, protoCodes(PROTO));
});

test('the table check fails when a code lacks a row, a row lacks a code, or names one twice', () => {
  const throttledRow = README.split('\n').find((l) => l.startsWith('| `THROTTLED` |'));
  assert.ok(throttledRow);
  assert.match(tableProblems(PROTO, README.replace(`${throttledRow}\n`, '')).join('\n'), /Code THROTTLED .* has no row/);

  const withNewCode = PROTO.replace('  INTERNAL = 50;', '  INTERNAL = 50;\n  BRAND_NEW = 51;   // a comment');
  assert.deepEqual(tableProblems(withNewCode, README), ["Code BRAND_NEW (proto/sshmux.proto) has no row in the README's error table"]);

  const noCode = README.replace(throttledRow, '| closed before the banner | it was dropped | wait |');
  assert.match(tableProblems(PROTO, noCode).join('\n'), /names no code/);

  const unknown = README.replace('| `THROTTLED` |', '| `THROTTLED`, `THROTTLING` |');
  assert.match(tableProblems(PROTO, unknown).join('\n'), /`THROTTLING` is not a Code/);

  const twice = README.replace('| `QUEUE_FULL` |', '| `QUEUE_FULL`, `THROTTLED` |');
  assert.match(tableProblems(PROTO, twice).join('\n'), /`THROTTLED` has a row already/);
});

test('SshMuxError.code is a Code name', () => {
  assert.equal(SshMuxError.fromWire({ code: Code.THROTTLED, message: 'm' }).code, 'THROTTLED');
  // A newer daemon's code this SDK does not know keeps its number.
  assert.equal(SshMuxError.fromWire({ code: 999, message: 'm' }).code, 'CODE_999');
  const known: SshMuxErrorCode = 'HOST_KEY_MISMATCH';
  // @ts-expect-error a misspelt code does not compile
  const misspelt: SshMuxErrorCode = 'HOST_KEY_MISMATCHED';
  assert.notEqual(known, misspelt);
});

test('every error class sets name, so a log line or stack says what it is', () => {
  const made: Error[] = [
    new MuxError(Code.INTERNAL, 'm'), new SshMuxError('INTERNAL', 'm'), new ConfigError('m'), new DaemonConfigError('m'),
    new ListenError('m'), new UsageError('m'), new FrameError('m'),
  ];
  for (const err of made) assert.equal(err.name, err.constructor.name);
  assert.match(String(new MuxError(Code.INTERNAL, 'boom')), /^MuxError: boom$/);

  // And any class added later: each `class X extends ...Error` in the sources says name = 'X'.
  const unnamed: string[] = [];
  for (const file of sources()) {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
    for (const m of text.matchAll(/class (\w+) extends \w*Error\b[^{]*\{/g)) {
      const body = text.slice(m.index + m[0].length, text.indexOf('\n}', m.index));
      if (!new RegExp(`\\bname = '${m[1]}'`).test(body)) unnamed.push(`${file}: class ${m[1]}`);
    }
  }
  assert.deepEqual(unnamed, [], 'give each error class `override readonly name = \'ClassName\'`');
});

test('no message is written out twice: a repeated one comes from one function (daemon/errors.ts)', () => {
  const seen = new Map<string, string[]>();
  for (const file of sources()) {
    for (const { text, line } of stringLiterals(fs.readFileSync(path.join(ROOT, file), 'utf8'))) {
      // A message: a few words of fixed text (interpolations are ${}).
      const words = text.replace(/\$\{\}/g, ' ').trim().split(/\s+/);
      if (words.length < 3 || text.replace(/\$\{\}/g, '').length < 16) continue;
      seen.set(text, [...(seen.get(text) ?? []), `${file}:${line}`]);
    }
  }
  const repeated = [...seen].filter(([, at]) => at.length > 1).map(([text, at]) => `${JSON.stringify(text)} at ${at.join(', ')}`);
  assert.deepEqual(repeated, []);
});

test('the literal scanner finds messages across quotes, templates, regexes and comments', () => {
  const src = [
    "const a = 'one two three four'; // 'not this one at all'",
    'const b = `conn ${id} lost while ${`nested ${x}`} opening`; /* "nor this one here" */',
    "const r = /it's [\"'] a regex/; const c = \"after the regex\"; return /don't/.test(c) / 2;",
  ].join('\n');
  assert.deepEqual(stringLiterals(src), [
    { text: 'one two three four', line: 1 },
    { text: 'conn ${} lost while ${} opening', line: 2 },
    { text: 'nested ${}', line: 2 },
    { text: 'after the regex', line: 3 },
  ]);
});

/** The shipped TypeScript sources (daemon, SDK, CLI, wire format). */
function sources(): string[] {
  // A set: git lists a file with merge conflicts once per side.
  const files = execFileSync('git', ['ls-files', 'daemon', 'client-sdk', 'cli', 'proto'], { cwd: ROOT, encoding: 'utf8' }).split('\n');
  return [...new Set(files)].filter((f) => f.endsWith('.ts') && fs.existsSync(path.join(ROOT, f)));
}

/**
 * Every string literal in TypeScript source, a template's interpolations
 * written `${}` (and the templates inside them listed too). A small scanner:
 * enough to skip comments and regex literals, not a parser.
 */
function stringLiterals(src: string): Array<{ text: string; line: number }> {
  const out: Array<{ text: string; line: number }> = [];
  let i = 0;
  const lineStarts = [0, ...[...src.matchAll(/\n/g)].map((m) => m.index + 1)];
  const lineAt = (at: number): number => lineStarts.findLastIndex((s) => s <= at) + 1;

  const quoted = (quote: string): void => {
    const start = i++;
    let text = '';
    while (i < src.length && src[i] !== quote && src[i] !== '\n') {
      if (src[i] === '\\') i++;
      text += src[i++];
    }
    i++;
    out.push({ text, line: lineAt(start) });
  };
  const template = (): void => {
    const start = i++;
    const slot = out.length;
    out.push({ text: '', line: lineAt(start) });
    let text = '';
    while (i < src.length && src[i] !== '`') {
      if (src[i] === '\\') {
        text += src[i + 1];
        i += 2;
      } else if (src[i] === '$' && src[i + 1] === '{') {
        i += 2;
        code('}');
        i++;
        text += '${}';
      } else {
        text += src[i++];
      }
    }
    i++;
    out[slot].text = text;
  };
  const regex = (): void => {
    let inClass = false;
    for (i++; i < src.length && src[i] !== '\n'; i++) {
      if (src[i] === '\\') i++;
      else if (src[i] === '[') inClass = true;
      else if (src[i] === ']') inClass = false;
      else if (src[i] === '/' && !inClass) break;
    }
    i++;
  };
  /** Scans code until `until` at depth 0 (or the end). */
  const code = (until?: string): void => {
    let depth = 0;
    let last = '';
    while (i < src.length) {
      const c = src[i];
      if (c === until && depth === 0) return;
      if (c === '/' && src[i + 1] === '/') {
        while (i < src.length && src[i] !== '\n') i++;
      } else if (c === '/' && src[i + 1] === '*') {
        i = src.indexOf('*/', i + 2) + 2;
        if (i < 2) i = src.length;
      } else if (c === '\'' || c === '"') {
        quoted(c);
        last = 'x';
      } else if (c === '`') {
        template();
        last = 'x';
      } else if (c === '/' && (last === '' || /[(,=:[!&|?{};+\-*%<>~^]/.test(last))) {
        regex();
        last = 'x';
      } else if (/[A-Za-z_$]/.test(c)) {
        const word = /^[\w$]+/.exec(src.slice(i, i + 40))![0];
        i += word.length;
        // After these a slash starts a regex, not a division.
        last = /^(return|typeof|case|do|else|in|of|new|delete|void|throw|instanceof|yield|await)$/.test(word) ? '(' : 'x';
      } else {
        if (c === '{' || c === '(' || c === '[') depth++;
        if (c === '}' || c === ')' || c === ']') depth--;
        if (!/\s/.test(c)) last = /[\w$.)\]]/.test(c) ? 'x' : c;
        i++;
      }
    }
  };
  code();
  return out;
}
