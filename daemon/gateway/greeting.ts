// The line the front door's ProxyCommand helper (cli/gateway-dial.ts) writes
// before OpenSSH's own identification string, naming the destination: the
// one thing ssh cannot put in the SSH user name from ssh_config (OpenSSH
// before 10 expands no tokens in `User`), while ProxyCommand has them all
// (%r, %n, %p). A connection that starts with this line uses it as its
// destination instead of the user name; any other line ends the connection.
// Both ends import this file, so the format lives in one place.

/** What the line starts with. */
const PREFIX = 'sshmux-destination ';

/** Lines a client may send before its identification: this one. */
export const GREETING_LINES = 1;

export interface GreetedDestination {
  /** user@host, as the SSH user name names a destination: the host as typed (ssh's %n), the user as ssh resolved it (%r). */
  destination: string;
  /** The port ssh resolved (%p): the daemon connects there, as ssh would have. */
  port: string;
}

/** The line for ssh's %r, %n and %p, or why they cannot make one. */
export function greetingLine(user: string, host: string, port: string): { line: string } | { error: string } {
  const bad = [['user', user], ['host', host]].find(([, v]) => !v || /[\s\x00-\x1f\x7f]/.test(v));
  if (bad) return { error: `invalid ${bad[0]} ${JSON.stringify(bad[1])}: expected a word without spaces` };
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) return { error: `invalid port ${JSON.stringify(port)}` };
  return { line: `${PREFIX}${user}@${host} ${port}\r\n` };
}

/**
 * The destination a connection's greeting names; undefined without a
 * greeting; an Error for one that is not ours (the connection is ended).
 */
export function parseGreeting(greeting: string | undefined): GreetedDestination | Error | undefined {
  if (!greeting) return undefined;
  const m = /^sshmux-destination (\S+@\S+) (\d{1,5})\r?\n$/.exec(greeting);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    return new Error(`a line before the SSH identification that is not "${PREFIX}USER@HOST PORT": ${JSON.stringify(greeting.slice(0, 120))}`);
  }
  return { destination: m[1], port: m[2] };
}
