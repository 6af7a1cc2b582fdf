#!/usr/bin/env node
// sshmux [options] destination [command [argument ...]]: OpenSSH's ssh
// command line, with every session riding sshmuxd's pooled connections, so
// git, rsync, scp, sftp, pdsh, pssh, restic, borg and Ansible can call it in
// place of ssh. The usual path (a command, a shell, a subsystem) loads only
// what one call needs (session.ts, without the SDK or protobufjs), because
// a script may start thousands of these; -L, -W and -N use the SDK.
import './compile-cache'; // first: it caches the modules loaded after it
import * as fs from 'node:fs';
import { defaultSocketPath, mayAutostart } from '../proto/socket-path';
import { enumValue } from '../proto/wire';
import { signalReady, takeReadyFd, runInBackground } from './background';
import { Diagnostics } from './diagnostics';
import { EXIT_FAILURE, runSession, windowSize } from './session';
import { statusAfterSignal, untilSignalled } from './signals';
import { exitFlushed, input, output } from './stdio';
import { parseCommandLine, ptyDecision, USAGE, UsageError, type Invocation } from './ssh-args';
import type { LocalForward, SshMux } from '../client-sdk';

async function main(argv: string[]): Promise<number> {
  let inv: Invocation;
  try {
    inv = parseCommandLine(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    output(2).write(`${err.message ? `${err.message}${err.lineEnd}` : ''}${err.usage ? `${USAGE}\n` : ''}`);
    return EXIT_FAILURE;
  }
  // In the background child of -f: the pipe to say "started" on.
  const readyFd = takeReadyFd();
  const diag = new Diagnostics(inv);
  for (const warning of inv.warnings) diag.warn(warning.text, warning.lineEnd);
  for (const what of inv.ignored) diag.info(`ignoring ${what}`);
  const socketPath = defaultSocketPath();
  switch (inv.action) {
    case 'version': return version();
    case 'query': return query(inv.query!);
    case 'print-config': return printConfig(inv, socketPath, diag);
    case 'control': return (require('./control') as typeof import('./control')).control(inv, socketPath, diag);
  }
  if (inv.fork && readyFd === undefined) return runInBackground(__filename, argv);
  const ready = (): void => {
    if (readyFd !== undefined) signalReady(readyFd);
  };
  if (inv.sessionType === 'none' || inv.localForwards.length) return forward(inv, diag, ready);
  return session(inv, socketPath, diag, ready);
}

/** A command, a login shell or a subsystem, on this process's stdio. */
async function session(inv: Invocation, socketPath: string, diag: Diagnostics, ready: () => void): Promise<number> {
  const stdinIsTty = (): boolean => (require('node:tty') as typeof import('node:tty')).isatty(0);
  const { pty, warn } = ptyDecision(inv, stdinIsTty);
  if (warn) diag.warn('Pseudo-terminal will not be allocated because stdin is not a terminal.');
  const kind = inv.sessionType === 'subsystem' ? 'SUBSYSTEM' : inv.command ? 'EXEC' : 'SHELL';
  const restoreTerminal = pty && stdinIsTty() ? rawMode() : () => {};
  try {
    return await runSession({
      socketPath,
      diag,
      request: {
        host: inv.destination,
        options: inv.options,
        kind: enumValue('SessionRequest.Kind', kind),
        command: inv.command,
        env: inv.env,
        stdin: !inv.stdinNull && !stdinIsDevNull(),
        pty: pty ? { term: process.env.TERM || 'vt100', ...windowSize() } : undefined,
      },
      onStarted: ready,
      autostart: () => (mayAutostart() ? (require('./autostart') as typeof import('./autostart')).startDefaultDaemon() : Promise.resolve(undefined)),
    });
  } finally {
    restoreTerminal();
  }
}

/**
 * -L, -W and -N: forwarding through the SDK. Until the forwards are up a
 * signal ends the process by its default action, as it ends ssh while it
 * connects; after, it ends them with ssh's status (signals.ts).
 */
async function forward(inv: Invocation, diag: Diagnostics, ready: () => void): Promise<number> {
  const { connectOrStart } = require('./autostart') as typeof import('./autostart');
  const mux = await connectOrStart('sshmux');
  try {
    const runsSession = inv.sessionType !== 'none';
    if (!inv.forward && !inv.localForwards.length) return await standBy(mux, inv, diag, ready);
    const forwards = await forwardPorts(mux, inv, diag);
    ready();
    if (inv.forward) return await forwardStdio(mux, inv, inv.forward, diag);
    // Forward until told to stop, as ssh -N does.
    const sig = await untilSignalled();
    await Promise.all(forwards.map((f) => f.close()));
    return statusAfterSignal(sig, runsSession, diag);
  } finally {
    mux.close();
  }
}

/**
 * -N with nothing to forward: the daemon checks that the destination can be
 * reached (sshmuxctl check: a pooled connection, opened if none is ready), as
 * ssh's connecting would, then it stands by until signalled,
 * as ssh sits connected, whatever stdin is (supervisors start it with stdin
 * at /dev/null); with -f, in the background. The one exception is a master
 * being started (ssh -MNf): the daemon is the master, and a process left
 * standing by would outlive the `-O exit` meant to end it.
 */
async function standBy(mux: SshMux, inv: Invocation, diag: Diagnostics, ready: () => void): Promise<number> {
  try {
    const r = await mux.control('check', inv.destination, inv.options);
    diag.info(r.message);
  } catch (err) {
    diag.error((err as Error).message);
    return EXIT_FAILURE;
  }
  if (inv.fork && inv.master) return 0;
  const signalled = untilSignalled();
  ready();
  return statusAfterSignal(await signalled, false, diag);
}

/** -W: stdin and stdout become a TCP stream opened by the destination (OpenSSH's ProxyCommand uses this). */
function forwardStdio(mux: SshMux, inv: Invocation, to: { host: string; port: number }, diag: Diagnostics): Promise<number> {
  return new Promise((resolve) => {
    const stream = mux.openTcp(inv.destination, to.host, to.port, { options: inv.options });
    input().pipe(stream);
    // The stream closes once the far side has closed and every byte was read, so every byte was handed to stdout.
    stream.pipe(output(1), { end: false });
    stream.once('error', (err) => {
      diag.error(err.message);
      resolve(EXIT_FAILURE);
    });
    const closed = new Promise<void>((resolved) => stream.once('close', resolved));
    void closed.then(() => resolve(0));
    untilSignalled(closed).then((sig) => {
      stream.destroy();
      resolve(statusAfterSignal(sig, false, diag));
    });
  });
}

/** -L: each listener is in this process; every accepted connection rides the destination's pooled connection. */
async function forwardPorts(mux: SshMux, inv: Invocation, diag: Diagnostics): Promise<LocalForward[]> {
  const forwards: LocalForward[] = [];
  try {
    for (const spec of inv.localForwards) {
      const f = await mux.forwardLocal(inv.destination, {
        localHost: spec.bindAddress, localPort: spec.port, remoteHost: spec.host, remotePort: spec.hostPort, options: inv.options,
      });
      f.onError = (err) => diag.error(`forward ${spec.port} -> ${spec.host}:${spec.hostPort}: ${err.message}`);
      diag.info(`listening on ${f.address}:${f.port} for ${spec.host}:${spec.hostPort}`);
      forwards.push(f);
    }
  } catch (err) {
    await Promise.all(forwards.map((f) => f.close()));
    throw err;
  }
  return forwards;
}

/** -G: the daemon resolves the destination; printed as ssh -G prints it. */
async function printConfig(inv: Invocation, socketPath: string, diag: Diagnostics): Promise<number> {
  const { configLines, resolveRequest } = require('./print-config') as typeof import('./print-config');
  const { askDaemon } = require('./daemon-call') as typeof import('./daemon-call');
  try {
    const autostart = (): Promise<string | undefined> =>
      (mayAutostart() ? (require('./autostart') as typeof import('./autostart')).startDefaultDaemon() : Promise.resolve(undefined));
    const { answer } = await askDaemon(socketPath, resolveRequest(inv), autostart);
    output(1).write(`${configLines(inv, answer.controlResult?.resolved ?? {}).join('\n')}\n`);
    return 0;
  } catch (err) {
    diag.error((err as Error).message);
    return EXIT_FAILURE;
  }
}

/** -V: on stderr, as ssh prints its version. */
function version(): number {
  const { version: v } = require('../../package.json') as { version: string };
  output(2).write(`sshmux ${v}, standing in for OpenSSH's ssh (its command line, as of OpenSSH 9); sessions ride sshmuxd's pooled connections\n`);
  return 0;
}

function query(what: string): number {
  const { queryLines } = require('./query') as typeof import('./query');
  try {
    output(1).write(`${queryLines(what).join('\n')}\n`);
    return 0;
  } catch (err) {
    output(2).write(`${(err as Error).message}\r\n`);
    return EXIT_FAILURE;
  }
}

/**
 * Whether stdin is /dev/null, as it is under cron and many orchestrators:
 * reading it yields only EOF, which `stdin: false` gives the remote without
 * creating a stdin stream (2 ms of start-up).
 */
function stdinIsDevNull(): boolean {
  try {
    const st = fs.fstatSync(0);
    return st.isCharacterDevice() && st.rdev === fs.statSync('/dev/null').rdev;
  } catch {
    return false;
  }
}

/** Puts the local terminal in raw mode; the returned function restores it, on every exit path. */
function rawMode(): () => void {
  input().setRawMode(true);
  let restored = false;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    // Once the exit has closed stdin, Node itself restores the terminal as the process ends.
    if (!process.stdin.destroyed) process.stdin.setRawMode(false);
  };
  process.once('exit', restore);
  return restore;
}

main(process.argv.slice(2)).then(exitFlushed, (err: Error) => {
  output(2).write(`sshmux: ${err.name === 'SshMuxError' ? err.message : err.stack}\r\n`);
  return exitFlushed(EXIT_FAILURE);
});
