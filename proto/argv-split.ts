// OpenSSH's argv_split (misc.c): how ssh splits an ssh_config value or an
// -o line into words. One implementation for the sshmux command (-o) and the
// daemon (ssh_config), which report an open quote each in its own words (a
// usage error, a config error). No imports: the sshmux command loads it on
// every start.

/** The words of `s` (whitespace separates, quotes anywhere in a word group, backslash escapes); undefined when a quote is left open. */
export function argvSplit(s: string): string[] | undefined {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quote = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '\\' && i + 1 < s.length && (quote === '' || s[i + 1] === quote || s[i + 1] === '\\')) {
      cur += s[++i];
      inWord = true;
    } else if (quote) {
      if (ch === quote) quote = '';
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (quote) return undefined;
  if (inWord) out.push(cur);
  return out;
}
