// sshmux -Q: ssh -Q lists the algorithms the ssh program supports. sshmux's
// sessions ride connections the daemon negotiates with the ssh2 library's
// default algorithm lists, so those are what it lists (with OpenSSH's query
// names); OpenSSH's own lists would describe a program that is not making
// the connection.
import { UsageError } from './ssh-args';
import { ssh2Algorithms, type Ssh2Algorithms } from '../daemon/ssh/ssh2/algorithms';

/** ssh's query names (ssh.c), the case-insensitive config-keyword aliases lower-cased. */
const QUERIES: Record<string, (a: Ssh2Algorithms) => string[]> = {
  cipher: (a) => a.DEFAULT_CIPHER,
  ciphers: (a) => a.DEFAULT_CIPHER,
  'cipher-auth': (a) => a.DEFAULT_CIPHER.filter((c) => /gcm|poly1305/.test(c)),
  mac: (a) => a.DEFAULT_MAC,
  macs: (a) => a.DEFAULT_MAC,
  kex: (a) => a.DEFAULT_KEX,
  kexalgorithms: (a) => a.DEFAULT_KEX,
  key: (a) => a.DEFAULT_SERVER_HOST_KEY,
  'key-plain': (a) => a.DEFAULT_SERVER_HOST_KEY,
  // The certificate types the daemon offers and accepts (ssh2 patches 040/041).
  'key-cert': () => ['ssh-ed25519-cert-v01@openssh.com', 'ecdsa-sha2-nistp256-cert-v01@openssh.com', 'ecdsa-sha2-nistp384-cert-v01@openssh.com',
    'ecdsa-sha2-nistp521-cert-v01@openssh.com', 'ssh-rsa-cert-v01@openssh.com'],
  'key-sig': (a) => a.DEFAULT_SERVER_HOST_KEY,
  sig: (a) => a.DEFAULT_SERVER_HOST_KEY,
  pubkeyacceptedkeytypes: (a) => a.DEFAULT_SERVER_HOST_KEY,
  pubkeyacceptedalgorithms: (a) => a.DEFAULT_SERVER_HOST_KEY,
  hostkeyalgorithms: (a) => a.DEFAULT_SERVER_HOST_KEY,
  hostbasedkeytypes: (a) => a.DEFAULT_SERVER_HOST_KEY,
  hostbasedacceptedkeytypes: (a) => a.DEFAULT_SERVER_HOST_KEY,
  hostbasedacceptedalgorithms: (a) => a.DEFAULT_SERVER_HOST_KEY,
  'protocol-version': () => ['2'],
  compression: (a) => a.DEFAULT_COMPRESSION,
  help: () => ['cipher', 'cipher-auth', 'compression', 'kex', 'key', 'key-cert', 'key-plain', 'key-sig', 'mac', 'protocol-version', 'sig'],
};
/** The names ssh compares case-sensitively. */
const EXACT = new Set(['cipher', 'cipher-auth', 'mac', 'kex', 'key', 'key-cert', 'key-plain', 'key-sig', 'sig', 'protocol-version', 'compression', 'help']);

/** The lines to print for `-Q what`; throws UsageError for a query ssh does not know. */
export function queryLines(what: string): string[] {
  const key = EXACT.has(what) ? what : EXACT.has(what.toLowerCase()) ? '' : what.toLowerCase();
  const list = QUERIES[key];
  if (!list) throw new UsageError(`Unsupported query "${what}"`);
  return list(ssh2Algorithms());
}
