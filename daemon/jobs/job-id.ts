// Job ids: "HOST/KEY". The host is the alias the job was submitted to, so
// every later call can find it from the id alone, also after a daemon
// restart; characters outside a small safe set are percent-encoded, so an
// id is one plain word in any shell. The key names the job's directory on
// the host: 9 base-36 digits of submit time (sortable) and 8 random ones.
// Nothing from an id reaches a shell but the key, which is checked against
// its exact form first (and quoted anyway).
import { randomBytes } from 'node:crypto';
import { Code } from '../../proto';
import { MuxError } from '../errors';

export const KEY_LENGTH = 17;
const KEY = /^[0-9a-z]{17}$/;
const SAFE = /[A-Za-z0-9._@:+=,-]/;
const ENCODED_HOST = /^(?:[A-Za-z0-9._@:+=,-]|%[0-9A-F]{2})+$/;

export interface JobRef { host: string; key: string }

export function newKey(now = Date.now()): string {
  const time = now.toString(36).padStart(9, '0');
  const random = [...randomBytes(8)].map((b) => (b % 36).toString(36)).join('');
  return time + random;
}

export function isKey(s: string): boolean {
  return KEY.test(s);
}

export function formatId(ref: JobRef): string {
  return `${encodeHost(ref.host)}/${ref.key}`;
}

/** The host and key an id names; BAD_REQUEST, saying what an id looks like, for anything else. */
export function parseId(id: string): JobRef {
  const bad = (why: string): never => {
    throw new MuxError(Code.BAD_REQUEST, `${JSON.stringify(id.slice(0, 100))} is not a job id (${why}); ` +
      'a job id looks like web1/lq2x8k3m1a9f3k2ab, as job submit printed it');
  };
  if (id.length > 600) bad('too long');
  const slash = id.lastIndexOf('/');
  if (slash <= 0) bad('no HOST/ part');
  const key = id.slice(slash + 1);
  const encoded = id.slice(0, slash);
  if (!KEY.test(key)) bad(`the part after the last / must be ${KEY_LENGTH} characters 0-9 a-z`);
  if (!ENCODED_HOST.test(encoded)) bad('the host part has characters ids never contain');
  let host: string;
  try {
    host = decodeURIComponent(encoded);
  } catch {
    return bad('the host part is not valid percent-encoded UTF-8');
  }
  // One spelling per id: "%41" for "A" would name the same job twice.
  if (encodeHost(host) !== encoded) bad('the host part is not in the form submit prints');
  return { host, key };
}

function encodeHost(host: string): string {
  let out = '';
  for (const ch of host) {
    if (SAFE.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
