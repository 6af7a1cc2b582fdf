// ssh2's packet padding from a block of random bytes (daemon/ssh/ssh2-padding.ts):
// in effect in the daemon, off when ssh2 was loaded first, and the bytes
// are random and never served twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { startWorld } from '../helpers/world';

const PADDING_MODULE = path.join(__dirname, '../../daemon/ssh/ssh2-padding.js');

function inFreshNode(script: string): string {
  return execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }).trim();
}

test('the daemon loads ssh2 with pooled padding; loaded after ssh2, the module says it is not in effect', async () => {
  assert.equal(inFreshNode(`console.log(require(${JSON.stringify(PADDING_MODULE)}).ssh2PaddingPooled())`), 'true');
  assert.equal(inFreshNode(`require('ssh2'); console.log(require(${JSON.stringify(PADDING_MODULE)}).ssh2PaddingPooled())`), 'false');
  const { daemon, mux } = await startWorld();
  assert.equal((await mux.exec('t', 'true')).code, 0);
  assert.doesNotMatch(daemon.logs(), /loaded before daemon\/ssh\/ssh2-padding/);
});

test('padding bytes: every byte value appears, no 8-byte padding repeats across 20,000 packets, a block is never served twice', () => {
  // Padding of NullCipher packets (what every cipher's allocPacket does): 20,000 paddings of 8 bytes
  // cross 39 refills of the 4 KiB block.
  const out = inFreshNode(`
    require(${JSON.stringify(PADDING_MODULE)});
    const { NullCipher } = require('ssh2/lib/protocol/crypto.js');
    const cipher = new NullCipher(0, () => {});
    const seen = new Set(); const counts = new Array(256).fill(0); let repeats = 0;
    for (let i = 0; i < 20000; i++) {
      const packet = cipher.allocPacket(11); // 4 + 1 + 11 = 16 bytes, padded by 8
      const padding = packet.subarray(packet.length - packet[4]);
      if (padding.length !== 8) throw new Error('padding of ' + padding.length);
      const key = padding.toString('hex');
      if (seen.has(key)) repeats++;
      seen.add(key);
      for (const b of padding) counts[b]++;
    }
    console.log(JSON.stringify({ repeats, missing: counts.filter((c) => c === 0).length, min: Math.min(...counts), max: Math.max(...counts) }));
  `);
  const r = JSON.parse(out) as { repeats: number; missing: number; min: number; max: number };
  assert.equal(r.repeats, 0, 'a padding repeated: bytes were served twice');
  assert.equal(r.missing, 0);
  // 160,000 bytes, 625 expected per value (standard deviation 25): a uniform source stays inside these bounds.
  assert.ok(r.min > 500 && r.max < 750, `byte counts ${r.min}..${r.max}`);
});
