// ssh2 pads every SSH packet with bytes from crypto.randomFillSync, one call
// into OpenSSL per packet (and its fork check, a getpid(2)): in a profile of
// the daemon under sequential execs, 8-9 % of its JavaScript's CPU, for four
// packets per exec. Here ssh2's cipher module is loaded with a randomFillSync
// that serves padding from a 4 KiB block the real one fills: the same
// generator's bytes, each used once, one call into OpenSSL per few hundred
// packets (OpenSSH's arc4random_buf buffers its bytes the same way). Nothing
// else sees it: crypto.randomFillSync is swapped only while that one module
// loads, and that module uses it for padding only. It takes effect only if
// it runs before anything loads ssh2, so daemon/main.ts imports it first;
// ssh2PaddingPooled() tells whether it did.
/* eslint-disable @typescript-eslint/no-require-imports */
import type { randomFillSync as RandomFillSync } from 'node:crypto';

const BLOCK_BYTES = 4096;
/** Larger requests (none from ssh2's ciphers: padding is at most 255 bytes) go to OpenSSL directly. */
const MAX_SERVED = 255;

const crypto = require('node:crypto') as { randomFillSync: typeof RandomFillSync };
const realFill = crypto.randomFillSync;
let block = Buffer.alloc(0);
let used = 0;
let served = 0;

function fillFromBlock<T extends NodeJS.ArrayBufferView>(buf: T, offset?: number, size?: number): T {
  if (!Buffer.isBuffer(buf) || typeof offset !== 'number' || typeof size !== 'number'
    || size > MAX_SERVED || offset < 0 || size < 0 || offset + size > buf.length) {
    return realFill(buf, offset, size);
  }
  if (used + size > block.length) {
    block = realFill(Buffer.allocUnsafe(BLOCK_BYTES));
    used = 0;
  }
  block.copy(buf, offset, used, used + size);
  used += size;
  served++;
  return buf;
}

const cipherModule = require.resolve('ssh2/lib/protocol/crypto.js');
if (!(cipherModule in require.cache)) {
  crypto.randomFillSync = fillFromBlock as typeof RandomFillSync;
  try {
    require(cipherModule);
  } finally {
    crypto.randomFillSync = realFill;
  }
}

/** Whether ssh2's ciphers take their padding from the block (false: ssh2 was loaded before this module). */
export function ssh2PaddingPooled(): boolean {
  const { NullCipher } = require(cipherModule) as { NullCipher: new (seqno: number, onWrite: () => void) => { allocPacket(len: number): Buffer } };
  const before = served;
  new NullCipher(0, () => {}).allocPacket(1);
  return served > before;
}
