// ssh2's default algorithm lists, for `sshmux -Q`: loaded on their own, so
// that the sshmux command does not load the rest of ssh2 to print them.
/* eslint-disable @typescript-eslint/no-require-imports */

export interface Ssh2Algorithms {
  DEFAULT_KEX: string[];
  DEFAULT_SERVER_HOST_KEY: string[];
  DEFAULT_CIPHER: string[];
  DEFAULT_MAC: string[];
  DEFAULT_COMPRESSION: string[];
}

export function ssh2Algorithms(): Ssh2Algorithms {
  return require('ssh2/lib/protocol/constants.js') as Ssh2Algorithms;
}
