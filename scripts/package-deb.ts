// npm run package:deb: the Debian package, build/sshmux_VERSION_ARCH.deb,
// made with dpkg-deb from this checkout's dist/ (the npm script builds it
// first). It carries its own Node (the one packaging/nodes marks "deb", from
// the npm registry through scripts/node-runtime.sh), so the distribution's
// Node does not matter: everything sshmux runs lives in /usr/lib/sshmux, with
// the production node_modules installed by `npm ci` with that Node (so ssh2 is
// patched and its crypto binding built for it, as in a checkout), then pruned
// of the dev dependencies. /usr/bin/sshmuxd, sshmux and sshmuxctl are links to
// the scripts, whose #! lines name that Node. Nothing is fetched but from
// the npm registry (npm's cache first).
// Needs dpkg-deb, dpkg-shlibdeps (dpkg-dev), strip (binutils), and what
// ssh2's binding builds with (g++, make, python3): scripts/system-deps.sh.
// SSHMUX_DEB_COMPRESSION=fast: gzip -1 instead of xz (for the package test).
// test/system/deb-package.test.ts builds, lints, installs, runs and purges it.
import { execFileSync, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

/** Where the package keeps what sshmux runs. */
export const PREFIX = '/usr/lib/sshmux';
/** The Node the package carries. */
export const NODE = `${PREFIX}/bin/node`;
/** The commands in /usr/bin: links to these scripts under PREFIX. */
export const COMMANDS: Readonly<Record<string, string>> = {
  sshmuxd: 'dist/daemon/main.js',
  sshmux: 'dist/cli/sshmux.js',
  sshmuxctl: 'dist/cli/sshmuxctl.js',
};
/** Files of this repository and where the package installs them. */
export const FILES: ReadonlyArray<readonly [string, string]> = [
  ['packaging/systemd/sshmuxd.service', '/usr/lib/systemd/system/sshmuxd.service'],
  ['packaging/systemd/sshmuxd.socket', '/usr/lib/systemd/system/sshmuxd.socket'],
  ['packaging/systemd/user/sshmuxd.service', '/usr/lib/systemd/user/sshmuxd.service'],
  ['packaging/systemd/user/sshmuxd.socket', '/usr/lib/systemd/user/sshmuxd.socket'],
  // The socket unit's ExecStartPre and the postinst name the snippets sshmux.conf.
  ['packaging/systemd/sshmux.sysusers.conf', '/usr/lib/sysusers.d/sshmux.conf'],
  ['packaging/systemd/sshmux.tmpfiles.conf', '/usr/lib/tmpfiles.d/sshmux.conf'],
  ['packaging/debian/ssh_config', '/etc/sshmux/ssh_config'],
  ['packaging/debian/config.json', '/etc/sshmux/config.json'],
  ['packaging/debian/lintian-overrides', '/usr/share/lintian/overrides/sshmux'],
];
/** The defaults an administrator edits: dpkg keeps their edits across upgrades. */
export const CONFFILES = ['/etc/sshmux/ssh_config', '/etc/sshmux/config.json'];
/** Documentation under /usr/share/doc/sshmux, gzipped as Debian wants. */
const DOCS: ReadonlyArray<readonly [string, string]> = [['README.md', 'README.md.gz'], ['docs/systemd.md', 'systemd.md.gz']];
/** ssh2's binding, which the package must hold, built for NODE. */
export const BINDING = `${PREFIX}/node_modules/ssh2/lib/protocol/crypto/build/Release/sshcrypto.node`;

const MAINTAINER = 'sshmux maintainers <maintainers@users.noreply.b-seed-7ad06dff.example>';

/** Man pages made from each command's usage text, so they cannot drift from it. */
const MAN_PAGES: ReadonlyArray<{ command: string; section: number; summary: string; usage: string[]; description: string }> = [
  {
    command: 'sshmuxd', section: 8, usage: ['--help'],
    summary: 'local SSH connection-multiplexing daemon',
    description: 'sshmuxd owns the only SSH connections to each host and schedules every local program\'s commands onto them, ' +
      'within the server\'s MaxSessions and without tripping its MaxStartups. Programs reach it through its Unix socket: ' +
      'the SDK (npm package sshmux), sshmux(1) and sshmuxctl(1). The package runs it as the sshmux user with ' +
      'sshmuxd.service (or sshmuxd.socket); its keys and known_hosts live in /var/lib/sshmux/.ssh and its settings in /etc/sshmux.',
  },
  {
    command: 'sshmux', section: 1, usage: [],
    summary: 'ssh through sshmuxd\'s pooled connections',
    description: 'sshmux takes OpenSSH\'s ssh command line, so that git, rsync, scp, sftp, pdsh, pssh, restic, borg and Ansible ' +
      'can call it in place of ssh; every session rides sshmuxd\'s pooled connections. Set SSHMUX_SOCKET=/run/sshmux/sshmuxd.sock ' +
      'to use the system daemon when $XDG_RUNTIME_DIR is set.',
  },
  {
    command: 'sshmuxctl', section: 1, usage: ['--help'],
    summary: 'inspect and steer a running sshmuxd',
    description: 'sshmuxctl shows the daemon\'s hosts, connections, sessions and queues (status, which also names the Node it ' +
      'runs on and whether ssh2\'s crypto binding is in use), checks and drains hosts, reloads or stops the daemon, and runs ' +
      'long jobs.',
  },
];

const ROOT = path.join(__dirname, '..', '..');
const OUT = path.join(ROOT, 'build');

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  return execFileSync(cmd, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
}

function fail(message: string): never {
  process.stderr.write(`sshmux: ${message}\n`);
  process.exit(1);
}

function write(file: string, text: string | Buffer, mode = 0o644): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text, { mode });
  fs.chmodSync(file, mode);
}

/** gzip -9n: no name or time in the header, so the same input gives the same bytes. */
function gzip(text: string | Buffer): Buffer {
  return zlib.gzipSync(text, { level: 9 });
}

/**
 * The production node_modules, installed for the carried Node: `npm ci` as
 * in a checkout (postinstall patches ssh2 and builds its binding against
 * that Node's headers), then pruned of the dev and optional dependencies
 * (ssh2's optional cpu-features is never built: package.json allowScripts).
 * Kept in build/ and done again only when its inputs change.
 */
function productionModules(nodeDir: string, nodeVersion: string): string {
  const inputs = ['package.json', 'package-lock.json', 'client-sdk/package.json', 'scripts/postinstall.js',
    ...fs.readdirSync(path.join(ROOT, 'daemon/ssh/ssh2/patches')).sort().map((f) => `daemon/ssh/ssh2/patches/${f}`)];
  // ssh2's binding is compiled with Debian's hardening flags (node-gyp reads them from the environment).
  const buildflags = { env: { ...process.env, DEB_BUILD_MAINT_OPTIONS: 'hardening=+all' } };
  const flags = Object.fromEntries(['CPPFLAGS', 'CFLAGS', 'CXXFLAGS', 'LDFLAGS'].map((f) => [f, run('dpkg-buildflags', ['--get', f], buildflags).trim()]));
  const hash = crypto.createHash('sha256').update(nodeVersion).update(JSON.stringify(flags));
  for (const f of inputs) hash.update(f).update(fs.readFileSync(path.join(ROOT, f)));
  const stamp = hash.digest('hex');
  const dir = path.join(OUT, 'deb-modules');
  const stampFile = path.join(dir, '.inputs');
  if (fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8') === stamp) return path.join(dir, 'node_modules');

  fs.rmSync(dir, { recursive: true, force: true });
  for (const f of inputs) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(dir, f));
  }
  const env = { ...process.env, ...flags, PATH: `${nodeDir}/bin:${process.env.PATH}`, npm_config_nodedir: nodeDir };
  process.stderr.write(`sshmux: npm ci with Node ${nodeVersion} for the package's node_modules\n`);
  execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: dir, env, stdio: ['ignore', 2, 2] });
  execFileSync('npm', ['prune', '--omit=dev', '--omit=optional', '--no-audit', '--no-fund'], { cwd: dir, env, stdio: ['ignore', 2, 2] });
  // The SDK workspace's link (to client-sdk/, absent here): the daemon has its own copy in dist/client-sdk.
  fs.rmSync(path.join(dir, 'node_modules', 'sshmux'), { force: true });
  fs.writeFileSync(stampFile, stamp);
  return path.join(dir, 'node_modules');
}

/** The .js and .json files under dist/DIR (no declarations: nothing compiles against the package). */
function copyDist(from: string, to: string): void {
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const src = path.join(from, entry.name);
    if (entry.isDirectory()) copyDist(src, path.join(to, entry.name));
    else if (/\.(js|json)$/.test(entry.name)) {
      fs.mkdirSync(to, { recursive: true });
      fs.copyFileSync(src, path.join(to, entry.name));
    }
  }
}

/** A first line naming the package's Node (no command needs a node flag). */
export function shebang(): string {
  return `#!${NODE}`;
}

function roff(text: string): string {
  return text.replace(/\\/g, '\\e').replace(/-/g, '\\-').replace(/^([.'])/gm, '\\&$1');
}

function manPage(page: (typeof MAN_PAGES)[number], version: string, date: string): string {
  const r = spawnSync(process.execPath, [path.join(ROOT, COMMANDS[page.command]), ...page.usage], { encoding: 'utf8', timeout: 10_000 });
  const usage = (r.stdout || r.stderr).trimEnd();
  if (!usage.startsWith('usage:')) fail(`${page.command} ${page.usage.join(' ')} printed no usage: ${r.stdout}${r.stderr}`);
  const others = MAN_PAGES.filter((p) => p !== page).map((p) => `.BR ${p.command} (${p.section}),`);
  return [
    `.TH ${page.command.toUpperCase()} ${page.section} "${date}" "sshmux ${version}"`,
    '.SH NAME',
    `${page.command} \\- ${roff(page.summary)}`,
    '.SH SYNOPSIS',
    '.nf',
    roff(usage),
    '.fi',
    '.SH DESCRIPTION',
    roff(page.description),
    '.PP',
    'The manual: /usr/share/doc/sshmux/README.md.gz; running the daemon under systemd: /usr/share/doc/sshmux/systemd.md.gz.',
    '.SH SEE ALSO',
    ...others,
    '.BR ssh (1),',
    '.BR ssh_config (5)',
    '',
  ].join('\n');
}

interface PackageJson { name: string; license?: string; licenses?: Array<{ type?: string }>; author?: string | { name?: string } }

/** The npm packages under node_modules, scoped ones included: [relative dir, package.json]. */
function modules(dir: string, rel = ''): Array<[string, PackageJson]> {
  const found: Array<[string, PackageJson]> = [];
  for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    const sub = path.join(rel, entry.name);
    if (entry.name.startsWith('@')) {
      found.push(...modules(dir, sub));
      continue;
    }
    const pkg = path.join(dir, sub, 'package.json');
    if (fs.existsSync(pkg)) found.push([sub, JSON.parse(fs.readFileSync(pkg, 'utf8'))]);
    if (fs.existsSync(path.join(dir, sub, 'node_modules'))) found.push(...modules(dir, path.join(sub, 'node_modules')));
  }
  return found;
}

const LICENSE_FILE = /^(licen[cs]e|copying)(\.md|\.txt)?$/i;

/** The license files in a package's directory (not in its own node_modules), relative to it. */
function licenseFiles(dir: string, rel = '.'): string[] {
  const found: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    if (e.isDirectory() && e.name !== 'node_modules') found.push(...licenseFiles(dir, path.join(rel, e.name)));
    else if (e.isFile() && LICENSE_FILE.test(e.name)) found.push(path.join(rel, e.name));
  }
  return found.sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
}

/**
 * What npm packages ship for their own development, never loaded at run
 * time: their tool configuration (dotfiles), tests, documentation (pino's
 * index.html loads scripts from CDNs) and the license files, which the
 * copyright file holds instead. Then the directories this leaves empty.
 */
function trimModules(dir: string): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.name.startsWith('.') || (e.isDirectory() && ['test', 'tests', '__tests__'].includes(e.name)) ||
      (e.isFile() && (LICENSE_FILE.test(e.name) || /\.(md|markdown|html)$/i.test(e.name)))) {
      fs.rmSync(p, { recursive: true, force: true });
    } else if (e.isDirectory()) {
      trimModules(p);
      if (fs.readdirSync(p).length === 0) fs.rmdirSync(p);
    }
  }
}

/** A paragraph in lines of at most 72 characters. */
function wrap(text: string): string {
  return text.replace(/(.{1,72})(\s+|$)/g, '$1\n').trimEnd();
}

/** A license text as the body of a copyright-format field: each line indented, empty lines as " .". */
function fieldText(text: string): string {
  return text.replace(/\r/g, '').trim().split('\n').map((l) => (l.trim() === '' ? ' .' : ` ${l.replace(/\s+$/, '')}`)).join('\n');
}

/**
 * debian/copyright: sshmux's own part (packaging/debian/copyright), then the
 * Node binary's and each npm package's, with the license text each ships.
 * The license files themselves are then left out of node_modules.
 */
function copyright(nodeDir: string, nodeModules: string): string {
  const parts = [fs.readFileSync(path.join(ROOT, 'packaging/debian/copyright'), 'utf8').trimEnd()];
  parts.push([
    `Files: ${NODE.slice(1)}`,
    'Copyright: Node.js contributors, Joyent, Inc. and other Node contributors, and the authors of the software Node.js bundles (below)',
    'License: Node.js',
    fieldText(fs.readFileSync(path.join(nodeDir, 'LICENSE'), 'utf8')),
  ].join('\n'));
  for (const [rel, pkg] of modules(nodeModules).sort(([a], [b]) => a.localeCompare(b))) {
    const files = licenseFiles(path.join(nodeModules, rel));
    if (!files.some((f) => path.dirname(f) === '.')) fail(`${rel} ships no license file: add its license text to packaging/debian/copyright by hand`);
    const license = pkg.license ?? pkg.licenses?.map((l) => l.type).join(' or ') ?? fail(`${rel}'s package.json names no license`);
    const author = typeof pkg.author === 'string' ? pkg.author : pkg.author?.name;
    // One paragraph per license file: the package's own, then any for a part of it (protobufjs/google/), which wins for its files.
    for (const file of files) {
      const text = fs.readFileSync(path.join(nodeModules, rel, file), 'utf8');
      const notices = text.split('\n').map((l) => l.trim()).filter((l) => /^copyright\b.*\d{4}/i.test(l));
      const sub = path.dirname(file) === '.' ? '' : `${path.dirname(file)}/`;
      const name = sub ? (/Apache License[\s\S]*Version 2\.0/.test(text) ? 'Apache-2.0' : /Redistribution and use in source and binary forms/.test(text) ? 'BSD-3-Clause' : license) : license;
      parts.push([
        `Files: ${PREFIX.slice(1)}/node_modules/${rel}/${sub}*`,
        `Copyright: ${notices.length ? notices.map((n) => n.replace(/^copyright\s*(\(c\)|©)?\s*/i, '')).join('\n           ') : author ?? `the authors of ${pkg.name}`}`,
        `License: ${name}`,
        // Debian has the Apache License in common-licenses, and wants it named rather than copied.
        name === 'Apache-2.0' && /Apache License[\s\S]*Version 2\.0/.test(text)
          ? ' On Debian systems, the full text of the Apache License 2.0 is in\n /usr/share/common-licenses/Apache-2.0.'
          : fieldText(text),
      ].join('\n'));
    }
  }
  parts.push(['License: Expat', fieldText(EXPAT)].join('\n'));
  return `${parts.join('\n\n')}\n`;
}

const EXPAT = `Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.`;

/** Shared libraries the binaries need, as Depends (dpkg-shlibdeps wants a debian/control to run beside). */
function sharedLibraryDepends(binaries: string[]): string {
  const dir = fs.mkdtempSync(path.join(OUT, 'shlibdeps-'));
  try {
    write(path.join(dir, 'debian', 'control'), 'Source: sshmux\n\nPackage: sshmux\nArchitecture: any\n');
    // Quiet: the binding's symbols are Node's own, which no library provides.
    const out = execFileSync('dpkg-shlibdeps', ['-O', '--warnings=0', ...binaries.map((b) => `-e${b}`)], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const m = /^shlibs:Depends=(.*)$/m.exec(out);
    if (!m) fail(`dpkg-shlibdeps printed no Depends: ${out}`);
    return m[1];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function duKiB(dir: string): number {
  let bytes = 0;
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else bytes += Math.ceil(fs.lstatSync(p).size / 1024) * 1024;
    }
  };
  walk(dir);
  return Math.ceil(bytes / 1024);
}

function main(): void {
  for (const f of Object.values(COMMANDS)) {
    if (!fs.existsSync(path.join(ROOT, f))) fail(`${f} is missing: run npm run build first (npm run package:deb does)`);
  }
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string; description: string; license: string };
  const arch = run('dpkg', ['--print-architecture']).trim();
  const nodeVersion = run('scripts/node-runtime.sh', ['--role', 'deb']).trim();
  if (!/^\d+\.\d+\.\d+$/.test(nodeVersion)) fail(`packaging/nodes must mark exactly one version "deb", not: ${nodeVersion}`);
  const nodeDir = run('scripts/node-runtime.sh', [nodeVersion]).trim();
  const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? spawnSync('git', ['log', '-1', '--format=%ct'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim()) ||
    Math.floor(Date.now() / 1000);
  const date = new Date(epoch * 1000);
  const nodeModules = productionModules(nodeDir, nodeVersion);

  const stage = path.join(OUT, 'deb');
  fs.rmSync(stage, { recursive: true, force: true });
  const at = (abs: string): string => path.join(stage, abs);

  // The runtime, and the modules without their license files (in the copyright file instead) and ssh2's build leftovers.
  write(at(NODE), fs.readFileSync(path.join(nodeDir, 'bin', 'node')), 0o755);
  execFileSync('strip', ['--remove-section=.comment', '--remove-section=.note', at(NODE)]);
  fs.cpSync(nodeModules, at(`${PREFIX}/node_modules`), { recursive: true, verbatimSymlinks: true });
  const copyrightText = copyright(nodeDir, at(`${PREFIX}/node_modules`));
  trimModules(at(`${PREFIX}/node_modules`));
  const buildDir = path.dirname(path.dirname(at(BINDING)));
  if (!fs.existsSync(at(BINDING))) fail(`ssh2's crypto binding was not built for Node ${nodeVersion} (${BINDING})`);
  const binding = fs.readFileSync(at(BINDING));
  fs.rmSync(buildDir, { recursive: true });
  write(at(BINDING), binding, 0o644);
  execFileSync('strip', ['--remove-section=.comment', '--remove-section=.note', '--strip-unneeded', at(BINDING)]);

  for (const d of ['daemon', 'cli', 'client-sdk', 'proto']) copyDist(path.join(ROOT, 'dist', d), at(`${PREFIX}/dist/${d}`));
  write(at(`${PREFIX}/package.json`), `${JSON.stringify({ name: 'sshmuxd', version: pkg.version, description: pkg.description, license: pkg.license, private: true }, null, 2)}\n`);
  for (const [command, script] of Object.entries(COMMANDS)) {
    const file = at(`${PREFIX}/${script}`);
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    if (!lines[0].startsWith('#!')) fail(`${script} has no #! line`);
    lines[0] = shebang();
    write(file, lines.join('\n'), 0o755);
    fs.mkdirSync(at('/usr/bin'), { recursive: true });
    fs.symlinkSync(path.relative('/usr/bin', `${PREFIX}/${script}`), at(`/usr/bin/${command}`));
  }

  for (const [from, to] of FILES) write(at(to), fs.readFileSync(path.join(ROOT, from)));
  const doc = '/usr/share/doc/sshmux';
  for (const [from, to] of DOCS) write(at(`${doc}/${to}`), gzip(fs.readFileSync(path.join(ROOT, from))));
  write(at(`${doc}/copyright`), copyrightText);
  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
  write(at(`${doc}/changelog.gz`), gzip(`sshmux (${pkg.version}) unstable; urgency=medium\n\n` +
    `  * Built${commit ? ` from git commit ${commit}` : ''}; the changes are in the repository's history.\n\n` +
    ` -- ${MAINTAINER}  ${date.toUTCString().replace('GMT', '+0000')}\n`));
  for (const page of MAN_PAGES) {
    write(at(`/usr/share/man/man${page.section}/${page.command}.${page.section}.gz`), gzip(manPage(page, pkg.version, date.toISOString().slice(0, 10))));
  }

  // adduser: the postinst's way to make the user where systemd-sysusers is not installed.
  const depends = [sharedLibraryDepends([at(NODE), at(BINDING)]), 'adduser'].join(', ');
  const control = [
    'Package: sshmux',
    `Version: ${pkg.version}`,
    `Architecture: ${arch}`,
    `Maintainer: ${MAINTAINER}`,
    `Installed-Size: ${duKiB(stage)}`,
    `Depends: ${depends}`,
    'Recommends: systemd',
    'Section: net',
    'Priority: optional',
    'Description: local SSH connection-multiplexing daemon',
    fieldText(wrap(`sshmuxd owns the only SSH connections to each host and schedules every local program's commands onto them, ` +
      `within the server's MaxSessions and without tripping its MaxStartups: orchestrators that fan out hundreds of SSH ` +
      `commands at the same hosts stop being dropped. Programs reach it through sshmux (ssh's command line), sshmuxctl, ` +
      `the SDK, WebSocket or an SSH front door.`) + `\n\n${wrap(`This package carries its own Node.js ${nodeVersion} runtime in ${PREFIX}.`)}`),
  ].join('\n');
  write(at('/DEBIAN/control'), `${control}\n`);
  write(at('/DEBIAN/conffiles'), `${CONFFILES.join('\n')}\n`);
  for (const script of ['postinst', 'prerm', 'postrm']) write(at(`/DEBIAN/${script}`), fs.readFileSync(path.join(ROOT, 'packaging/debian', script)), 0o755);
  const sums: string[] = [];
  const sum = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory() && p !== at('/DEBIAN')) sum(p);
      else if (e.isFile() && !CONFFILES.includes(`/${path.relative(stage, p)}`)) {
        sums.push(`${crypto.createHash('md5').update(fs.readFileSync(p)).digest('hex')}  ${path.relative(stage, p)}`);
      }
    }
  };
  sum(stage);
  write(at('/DEBIAN/md5sums'), `${sums.join('\n')}\n`);

  const deb = path.join(OUT, `sshmux_${pkg.version}_${arch}.deb`);
  // xz, as Debian's archive has it, is most of the build's minute (the Node binary); the package test,
  // building its own, asks for gzip -1 (the same files, three times the size, a few seconds).
  const compression = process.env.SSHMUX_DEB_COMPRESSION === 'fast' ? ['-Zgzip', '-z1'] : ['-Zxz'];
  execFileSync('dpkg-deb', ['--root-owner-group', ...compression, '--build', stage, deb], {
    stdio: ['ignore', 2, 2], env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) },
  });
  const mib = (fs.statSync(deb).size / 2 ** 20).toFixed(1);
  process.stdout.write(`${deb}\n`);
  process.stderr.write(`sshmux: ${path.relative(process.cwd(), deb)}: ${mib} MiB, ${sums.length} files, ${(duKiB(stage) / 1024).toFixed(0)} MiB installed, Node ${nodeVersion}\n`);
}

if (require.main === module) main();
