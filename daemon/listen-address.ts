// host:port addresses for the daemon's network listeners (--http, --gateway):
// loopback only unless the config allows remote addresses explicitly, so a
// listener is never reachable from the network by accident.

export interface TcpAddress { host: string; port: number }

/**
 * Parses `value` given for `option` (e.g. "--http"); `allowKey` names the
 * config key that allows a non-loopback host.
 */
export function parseListenAddress(option: string, value: string, allowRemote: boolean, allowKey: string, example: string): TcpAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(value);
  if (!m || Number(m[3]) > 65535) throw new Error(`${option} "${value}": expected host:port, e.g. ${example}`);
  const host = m[1] ?? m[2];
  if (!allowRemote && !isLoopback(host)) {
    throw new Error(`${option} ${value} is not a loopback address; it would be reachable from the network. ` +
      `Set "${allowKey}": true in the daemon config if that is intended`);
  }
  return { host, port: Number(m[3]) };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
