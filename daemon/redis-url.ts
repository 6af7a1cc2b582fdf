// The fleet's Redis URL: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], or
// rediss:// for TLS. Parsed here once, so that the rest of the daemon only
// ever sees the parts, and shows the URL with its password hidden. Error
// messages never repeat the URL: it may carry the password.

export interface RedisAddress {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls: boolean;
  /** The URL as logs, status and metrics show it: the password replaced by ***. */
  display: string;
}

export function parseRedisUrl(value: unknown): RedisAddress {
  if (typeof value !== 'string' || value === '') throw new Error('must be a URL: redis://HOST:PORT[/DB] or rediss://HOST:PORT[/DB]');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error('is not a valid URL (expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new Error(`must start with redis:// or rediss:// (TLS), not ${url.protocol}//`);
  }
  if (!url.hostname) throw new Error('names no host');
  if (url.search || url.hash) throw new Error('takes no ?query or #fragment: put the database number in the path (/DB)');
  const port = url.port ? Number(url.port) : 6379;
  const path = url.pathname.replace(/^\//, '');
  if (path !== '' && !/^\d{1,5}$/.test(path)) throw new Error('path must be a database number (/0, /1, ...)');
  const db = path === '' ? 0 : Number(path);
  const username = url.username ? decodeURIComponent(url.username) : undefined;
  const password = url.password ? decodeURIComponent(url.password) : undefined;
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1'); // IPv6 literals come bracketed
  const credentials = username || password ? `${username ?? ''}${password ? ':***' : ''}@` : '';
  return {
    host, port, db, username, password, tls: url.protocol === 'rediss:',
    display: `${url.protocol}//${credentials}${url.hostname}:${port}/${db}`,
  };
}

/** `text` with every occurrence of the password replaced: for error messages that come from the client library. */
export function scrub(text: string, address: RedisAddress): string {
  const secrets = [address.password, address.password && encodeURIComponent(address.password)].filter((s): s is string => !!s && s.length > 0);
  let out = text;
  for (const secret of secrets) out = out.split(secret).join('***');
  return out;
}
