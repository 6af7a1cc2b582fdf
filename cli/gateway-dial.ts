// ssh's ProxyCommand in the ssh_config block that `sshmuxctl ssh-config`
// prints: connects to sshmuxd's SSH front door, writes the line naming the
// destination (ssh's %r, %n and %p: daemon/gateway/greeting.ts), hands the
// connected socket to ssh and exits (ProxyUseFdpass). ssh then speaks SSH to
// the door on that socket itself: no process relays its bytes, and when ssh
// goes the socket closes with it, so the door ends its remote commands.
//
// ssh waits for the socket on its end of a Unix socket pair (our stdin and
// stdout), reading one byte with the descriptor attached. Node sends a
// descriptor only on its IPC channel, which it opens on the descriptor
// NODE_CHANNEL_FD names; the ProxyCommand line sets NODE_CHANNEL_FD=1, so
// process.send() writes a message with the socket attached to ssh, which
// takes the descriptor and the message's first byte and closes its end.
//
// Usage (ssh runs it): NODE_CHANNEL_FD=1 node gateway-dial.js ADDRESS USER HOST PORT
// ADDRESS is the door's host:port or Unix socket path. Run once per
// ControlMaster, so Node's start-up is paid once per destination.
import * as net from 'node:net';
import { greetingLine } from '../daemon/gateway/greeting';

/** ssh's exit status for its own failures; ssh reports "proxy dialer did not pass back a connection" after our line. */
const EXIT_FAILURE = 255;
const CONNECT_TIMEOUT_MS = 10_000;

function fail(message: string): never {
  process.stderr.write(`sshmux: ${message}\n`);
  process.exit(EXIT_FAILURE);
}

function main(argv: string[]): void {
  const [address, user, host, port] = argv;
  if (argv.length !== 4) fail('usage: NODE_CHANNEL_FD=1 node gateway-dial.js ADDRESS USER HOST PORT (as ssh\'s ProxyCommand, with ProxyUseFdpass yes)');
  if (!process.send) {
    fail('gateway-dial hands ssh a socket, so it must run as ssh\'s ProxyCommand with ProxyUseFdpass yes and NODE_CHANNEL_FD=1, ' +
      'as `sshmuxctl ssh-config` writes it');
  }
  const greeting = greetingLine(user, host, port);
  if ('error' in greeting) fail(`cannot name the destination to sshmuxd's front door: ${greeting.error}`);
  const socket = address.startsWith('/') ? net.connect(address) : net.connect(splitAddress(address));
  const timer = setTimeout(() => fail(`sshmuxd's SSH front door at ${address} did not answer within ${CONNECT_TIMEOUT_MS / 1000} s`), CONNECT_TIMEOUT_MS);
  socket.on('error', (err: NodeJS.ErrnoException) => {
    fail(`cannot reach sshmuxd's SSH front door at ${address} (${err.code ?? err.message}): ` +
      `start sshmuxd with --gateway ${address}, or run sshmuxctl ssh-config again if the door moved`);
  });
  socket.once('connect', () => {
    socket.write(greeting.line, () => {
      clearTimeout(timer);
      process.send!('sshmux-gateway-socket', socket, (err: Error | null) => {
        if (err) fail(`cannot hand the front door's socket to ssh: ${err.message}`);
        process.exit(0);
      });
    });
  });
}

/** "127.0.0.1:2222" or "[::1]:2222". */
function splitAddress(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(address);
  if (!m) fail(`bad front door address ${JSON.stringify(address)}: expected HOST:PORT or a Unix socket path`);
  // A door listening on every address is reached on loopback.
  const host = m[1] === '0.0.0.0' ? '127.0.0.1' : m[1] === '::' ? '::1' : m[1];
  return { host, port: Number(m[2]) };
}

main(process.argv.slice(2));
