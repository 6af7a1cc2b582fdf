#!/usr/bin/env node
// sshmux [options] destination [command [argument ...]]: ssh's command line,
// with every session riding sshmuxd's pooled connections, so git, rsync,
// scp, sftp and Ansible can call it in place of ssh.
import { SshMuxError, type LocalForward, type RemoteProcess, type SshMux } from '../client-sdk';
import { connectOrStart } from './autostart';
import { parseCommandLine, USAGE, UsageError, type Invocation } from './ssh-args';

/** ssh's own status for "ssh or the connection failed". */
const EXIT_FAILURE = 255;
const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

async function main(): Promise<number> {
  let inv: Invocation;
  try {
    inv = parseCommandLine(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`sshmux: ${err.message}\n${USAGE}\n`);
    return EXIT_FAILURE;
  }
  if (inv.noCommand && !inv.forward && !inv.localForwards.length) {
    process.stderr.write('sshmux: -N without -L or -W has nothing to do\n');
    return EXIT_FAILURE;
  }
  if (inv.verbose) for (const what of inv.ignored) process.stderr.write(`sshmux: ignoring ${what}\n`);

  const mux = await connectOrStart('sshmux');
  if (inv.forward) return forwardStdio(mux, inv, inv.forward);
  const forwards = await forwardPorts(mux, inv);
  if (inv.noCommand) {
    // -N: forward until told to stop, as ssh does.
    await new Promise<void>((resolve) => {
      for (const sig of FORWARDED_SIGNALS) process.once(sig, () => resolve());
    });
    await Promise.all(forwards.map((f) => f.close()));
    return 0;
  }
  const pty = wantsPty(inv);
  const proc = start(mux, inv, pty);
  // As ssh prints them: a changed host key accepted under StrictHostKeyChecking no, a key newly added.
  if (!inv.quiet) proc.on('warning', (w: string) => process.stderr.write(`Warning: ${w}\n`));
  if (inv.verbose) {
    proc.once('started', (s) => process.stderr.write(
      `sshmux: session on ${s.connection} after ${s.waitedMs} ms${s.newConnection ? ' (new connection)' : ''}\n`));
  }

  const restoreTerminal = pty && process.stdin.isTTY ? rawMode() : () => {};
  try {
    if (inv.stdin) process.stdin.pipe(proc.stdin);
    proc.stdout.pipe(process.stdout);
    proc.stderr.pipe(process.stderr);
    // The wrapper ends when the remote process does; signals go to it.
    for (const sig of FORWARDED_SIGNALS) process.on(sig, () => proc.kill(sig));
    if (pty) process.on('SIGWINCH', () => proc.resize(process.stdout.columns || 80, process.stdout.rows || 24));
    // `closed`, not `exited`: the exit status can arrive while up to a window
    // of output still waits in proc.stdout; exiting then would drop it.
    const result = await proc.closed;
    if (result.signal) {
      // OpenSSH exits 255 without a word when the remote dies by a signal.
      if (inv.verbose) process.stderr.write(`sshmux: remote command killed by signal ${result.signal}\n`);
      return EXIT_FAILURE;
    }
    return result.code ?? EXIT_FAILURE;
  } finally {
    restoreTerminal();
  }
}

/** -W: stdin and stdout become a TCP stream opened by the destination (OpenSSH's ProxyCommand uses this). */
function forwardStdio(mux: SshMux, inv: Invocation, to: { host: string; port: number }): Promise<number> {
  return new Promise((resolve) => {
    const stream = mux.openTcp(inv.destination, to.host, to.port, { options: inv.options });
    process.stdin.pipe(stream);
    // The stream closes once the far side has closed and every byte was read, so every byte was handed to stdout.
    stream.pipe(process.stdout, { end: false });
    stream.once('error', (err) => {
      if (!inv.quiet) process.stderr.write(`sshmux: ${err.message}\n`);
      resolve(EXIT_FAILURE);
    });
    stream.once('close', () => resolve(0));
  });
}

/** -L: each listener is in this process; every accepted connection rides the destination's pooled connection. */
async function forwardPorts(mux: SshMux, inv: Invocation): Promise<LocalForward[]> {
  const forwards: LocalForward[] = [];
  try {
    for (const spec of inv.localForwards) {
      const f = await mux.forwardLocal(inv.destination, {
        localHost: spec.bindAddress, localPort: spec.port, remoteHost: spec.host, remotePort: spec.hostPort, options: inv.options,
      });
      f.onError = (err) => {
        if (!inv.quiet) process.stderr.write(`sshmux: forward ${spec.port} -> ${spec.host}:${spec.hostPort}: ${err.message}\n`);
      };
      if (inv.verbose) process.stderr.write(`sshmux: listening on ${f.address}:${f.port} for ${spec.host}:${spec.hostPort}\n`);
      forwards.push(f);
    }
  } catch (err) {
    await Promise.all(forwards.map((f) => f.close()));
    throw err;
  }
  return forwards;
}

function start(mux: SshMux, inv: Invocation, pty: boolean): RemoteProcess {
  const opts = {
    stdin: inv.stdin,
    options: inv.options,
    env: Object.keys(inv.env).length ? inv.env : undefined,
    pty: pty ? { term: process.env.TERM || 'vt100', cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 } : undefined,
  };
  if (inv.subsystem) return mux.subsystem(inv.destination, inv.command, opts);
  if (!inv.command) return mux.shell(inv.destination, opts);
  return mux.spawn(inv.destination, inv.command, opts);
}

/** ssh's rule: -t asks for a pty when stdin is a terminal, -tt always; no command means a pty for a terminal. */
function wantsPty(inv: Invocation): boolean {
  switch (inv.tty) {
    case 'force': return true;
    case 'no': return false;
    case 'auto': return !inv.command && !!process.stdin.isTTY;
    case 'yes':
      if (process.stdin.isTTY) return true;
      if (!inv.quiet) process.stderr.write('Pseudo-terminal will not be allocated because stdin is not a terminal.\n');
      return false;
  }
}

/** Puts the local terminal in raw mode; the returned function restores it, on every exit path. */
function rawMode(): () => void {
  process.stdin.setRawMode(true);
  let restored = false;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    process.stdin.setRawMode(false);
  };
  process.once('exit', restore);
  return restore;
}

/** Resolves once everything written to `stream` so far has reached the OS (or the reader has gone). */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.writableLength === 0 || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once('error', () => resolve());
    stream.write('', () => resolve());
  });
}

/** process.exit() drops writes still queued for a pipe: flush stdout and stderr first. */
async function exitFlushed(code: number): Promise<never> {
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit(code);
}

main().then(exitFlushed, (err) => {
  const msg = err instanceof SshMuxError ? err.message : (err as Error).stack;
  process.stderr.write(`sshmux: ${msg}\n`);
  return exitFlushed(EXIT_FAILURE);
});
