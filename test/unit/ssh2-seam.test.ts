// The ssh2 seam (daemon/ssh/ssh2/): every patch's capability does what the
// daemon relies on, against ssh2 as installed; each check fails against
// ssh2 without its patch (a check that cannot fail checks nothing); the
// padding block serves each random byte once; and no module outside the
// seam loads ssh2 or names a private member of it.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CAPABILITY_NAMES, checkSsh2Capabilities } from '../../daemon/ssh/ssh2/capabilities';

const ROOT = path.join(__dirname, '..', '..', '..');
const PATCHES = path.join(ROOT, 'daemon', 'ssh', 'ssh2', 'patches');
const INSTALLED = path.dirname(require.resolve('ssh2/package.json'));
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sshmux-seam-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** The patch file of a capability (one per capability, by name). */
function patchOf(name: string): string {
  const file = fs.readdirSync(PATCHES).find((f) => f.endsWith(`+${name}.patch`));
  assert.ok(file, `no patch file for ${name}`);
  return path.join(PATCHES, file);
}

/**
 * A copy of the installed ssh2 without the patch of `name` (git apply -R),
 * beside links to the other installed packages so that it loads. Where a
 * later patch changes the same lines, it goes too: the copy then has the
 * patches before this one only.
 */
function ssh2Without(name: string): string {
  const copy = (label: string): string => {
    const modules = path.join(scratch, label, 'node_modules');
    fs.mkdirSync(modules, { recursive: true });
    fs.cpSync(INSTALLED, path.join(modules, 'ssh2'), { recursive: true });
    for (const entry of fs.readdirSync(path.dirname(INSTALLED))) {
      if (entry !== 'ssh2') fs.symlinkSync(path.join(path.dirname(INSTALLED), entry), path.join(modules, entry));
    }
    return path.dirname(modules);
  };
  const unapply = (dir: string, patch: string): void => {
    execFileSync('git', ['apply', '-R', patch], { cwd: dir, stdio: 'pipe' });
  };
  const patch = patchOf(name);
  const alone = copy(`${name}-alone`);
  try {
    unapply(alone, patch);
    return path.join(alone, 'node_modules', 'ssh2');
  } catch {
    const prefix = copy(`${name}-prefix`);
    const all = fs.readdirSync(PATCHES).sort().map((f) => path.join(PATCHES, f));
    for (const p of all.slice(all.indexOf(patch)).reverse()) unapply(prefix, p);
    return path.join(prefix, 'node_modules', 'ssh2');
  }
}

for (const name of CAPABILITY_NAMES) {
  test(`capability ${name}: does what the daemon relies on`, async () => {
    assert.deepEqual((await checkSsh2Capabilities({ only: name })).map((f) => f.message), []);
  });
}

test('every capability check fails on ssh2 without its patch, naming the capability and the patch', async () => {
  for (const name of CAPABILITY_NAMES) {
    const failures = await checkSsh2Capabilities({ only: name, ssh2Dir: ssh2Without(name), timeoutMs: 300 });
    assert.equal(failures.length, 1, `${name}: the check passed without its patch`);
    assert.match(failures[0].message, new RegExp(`"${name}" \\(daemon/ssh/ssh2/patches/\\*\\+\\d{3}\\+${name}\\.patch\\): .+ reinstall with npm ci`));
  }
});

test('every patch has a capability check, and opens with what it changes and why', () => {
  for (const file of fs.readdirSync(PATCHES)) {
    const m = /^ssh2\+[\d.]+\+(\d{3})\+([a-z0-9-]+)\.patch$/.exec(file);
    assert.ok(m, `${file}: not named ssh2+VERSION+NNN+capability.patch`);
    const text = fs.readFileSync(path.join(PATCHES, file), 'utf8');
    assert.match(text, /^[^\n]+\n\n[\s\S]+?\ndiff --git /, `${file}: no explanation before the diff`);
    // 001-009 change how ssh2 builds: the build itself (and the daemon's binding check) is their test.
    if (Number(m[1]) >= 10) assert.ok(CAPABILITY_NAMES.includes(m[2]), `${file}: no capability check named ${m[2]}`);
  }
});

test('the padding block: each random byte is served once, and the bytes are uniform', () => {
  const cipher = require('ssh2/lib/protocol/crypto.js') as { fillPadding(buf: Buffer, offset: number, len: number): void; paddingBlockFills(): number };
  const before = cipher.paddingBlockFills();
  const counts = new Array<number>(256).fill(0);
  let served = 0;
  const buf = Buffer.alloc(300);
  for (let i = 0; i < 20_000; i++) {
    const len = 4 + (i % 252);
    cipher.fillPadding(buf, 7, len);
    for (let j = 7; j < 7 + len; j++) counts[buf[j]]++;
    served += len;
  }
  // Served once: a block of 4096 bytes covers at most 4096 served bytes.
  assert.ok((cipher.paddingBlockFills() - before) * 4096 >= served, 'more padding served than drawn: bytes served twice');
  const expected = served / 256;
  const chi2 = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
  // 255 degrees of freedom: above 350 is p < 0.0001.
  assert.ok(chi2 < 350, `padding bytes not uniform (chi-square ${chi2.toFixed(0)})`);
});

test('no module outside the seam loads ssh2 or names a private member of it', () => {
  const offenders: string[] = [];
  const privateName = /\._(protocol|chanMgr|callbacks|sock|handlers|packetRW|chanInfo|spare|heldCloseReplies)\b/;
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (p !== path.join(ROOT, 'daemon', 'ssh', 'ssh2')) walk(p);
      } else if (p.endsWith('.ts')) {
        const text = fs.readFileSync(p, 'utf8');
        if (/from 'ssh2[/']|require\('ssh2[/']/.test(text) || privateName.test(text)) offenders.push(path.relative(ROOT, p));
      }
    }
  };
  for (const dir of ['daemon', 'cli', 'client-sdk', 'proto']) walk(path.join(ROOT, dir));
  assert.deepEqual(offenders, []);
});
