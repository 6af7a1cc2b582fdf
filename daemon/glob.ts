// The one glob matcher, for every pattern sshmux reads as ssh does: Host
// patterns in the limits file, known_hosts names, Include paths and
// SendEnv removals in ssh_config. `*` is any run of characters and `?` one
// (OpenSSH's match_pattern); glob(3) adds `[...]` and `[!...]` classes,
// which only Include and SendEnv take: in known_hosts a bracket is literal,
// as in `[host]:2222`.
export interface GlobOptions {
  /** `[...]` and `[!...]` are character classes (glob(3)), not literal brackets. */
  classes?: boolean;
  ignoreCase?: boolean;
}

export function globRegExp(pattern: string, opts: GlobOptions = {}): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    const close = opts.classes && ch === '[' ? pattern.indexOf(']', i + 2) : -1;
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else if (close > 0) {
      const body = pattern.slice(i + 1, close).replace(/\\/g, '\\\\');
      re += body.startsWith('!') ? `[^${body.slice(1)}]` : `[${body}]`;
      i = close;
    } else re += ch.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, opts.ignoreCase ? 'i' : '');
}

/** Whether `text` matches `pattern`; a pattern without wildcards is compared as it is, without building a RegExp. */
export function globMatch(pattern: string, text: string, opts: GlobOptions = {}): boolean {
  if (!(opts.classes ? /[*?[]/ : /[*?]/).test(pattern)) return opts.ignoreCase ? pattern.toLowerCase() === text.toLowerCase() : pattern === text;
  return globRegExp(pattern, opts).test(text);
}
