#!/usr/bin/env bash
# The system packages that `npm run demo`, `npm test` and `npm run package:deb`
# need, in the one list that they and .ci/run share, so that the README's
# commands work on a fresh Debian or Ubuntu machine. As root it installs what is missing with
# apt-get (as CI does); otherwise it prints the apt-get line to run and exits
# 1, without a stack trace. Silent when nothing is missing: it costs
# `npm test` a few milliseconds of `command -v`.
#
# Usage: scripts/system-deps.sh [--check] demo|package|test
#   demo     what the demo needs (sshd and ssh)
#   package  what building the Debian package needs (and ssh2's binding, for npm ci)
#   test     what the tests and benchmarks need (all of the above)
#   --check  only report: never install, even as root
set -euo pipefail

usage="usage: scripts/system-deps.sh [--check] demo|package|test"
check_only=0
scope=
for arg in "$@"; do
  case "$arg" in
    --check) check_only=1 ;;
    demo|package|test) scope=$arg ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
[ -n "$scope" ] || { echo "$usage" >&2; exit 2; }

# scope  package  what shows it is there: an absolute path, or a program
# looked up on PATH (and in /usr/sbin and /sbin, where root's tools live).
DEPS=(
  # The throwaway sshd and the ssh it is compared with.
  "demo openssh-server /usr/sbin/sshd"
  "demo openssh-client ssh"
  "demo openssh-client ssh-keygen"
  # Run as root, the tests log in as a throwaway /bin/sh user.
  "demo passwd useradd"
  "demo passwd usermod"
  "test openssh-client scp"
  "test openssh-client sftp"
  # Real clients run through the sshmux wrapper.
  "test rsync rsync"
  "test git git"
  "test pdsh pdsh"
  "test pssh parallel-ssh"
  "test restic restic"
  "test borgbackup borg"
  "test curl curl"
  # Programs that keep ssh running: autossh restarts it, sshfs mounts over its sftp session.
  "test autossh autossh"
  "test sshfs sshfs"
  "test fuse3 fusermount3"
  # Clients of the SSH front door: JSch (Java), Go's x/crypto/ssh, each built per test run.
  "test libjsch-java /usr/share/java/jsch.jar"
  "test default-jdk-headless javac"
  "test golang-go go"
  "test golang-golang-x-crypto-dev /usr/share/gocode/src/golang.org/x/crypto/ssh"
  # A pty for the wrapper's -t tests; helpers (datagram sockets, slow readers).
  "test bsdutils script"
  "test python3 python3"
  # Python SSH libraries against the daemon, with Debian's /usr/bin/python3.
  "test python3-paramiko /usr/lib/python3/dist-packages/paramiko"
  "test python3-asyncssh /usr/lib/python3/dist-packages/asyncssh"
  # Ansible's ssh connection plugin through the ssh_config block (sshmuxctl ssh-config), and its bench.
  "test ansible-core ansible-playbook"
  # sd_notify goes through systemd-notify; the unit tests run systemd-analyze.
  "test systemd systemd-notify"
  "test systemd systemd-analyze"
  # The status page, rendered in headless Chromium.
  "test chromium chromium"
  # The network-loss test's namespaces and veth link.
  "test iproute2 ip"
  # ssh2's C++ crypto binding, which npm ci builds (node-gyp); the Debian package: its
  # Depends (dpkg-shlibdeps), its binaries stripped, and (the package test) lintian.
  "package g++ g++"
  "package make make"
  "package python3 python3"
  "package dpkg-dev dpkg-shlibdeps"
  "package binutils strip"
  "test lintian lintian"
  # The package test reads the installed man pages (and systemd-analyze verify --man=yes).
  "test man-db man"
  # The daemon fleet's shared state; redis-cli to look into it; openssl for its TLS test's certificates.
  "test redis-server redis-server"
  "test redis-tools redis-cli"
  "test openssl openssl"
)

# Sets `missing` (packages, each once, in list order) and `lacks` (package -> what was not found).
scan() {
  missing=()
  declare -gA lacks=()
  local entry want package what
  for entry in "${DEPS[@]}"; do
    read -r want package what <<<"$entry"
    [ "$scope" = test ] || [ "$want" = "$scope" ] || continue
    if [[ "$what" == /* ]]; then
      [ -e "$what" ] && continue
    else
      PATH="$PATH:/usr/sbin:/sbin" command -v "$what" >/dev/null && continue
    fi
    [ -n "${lacks[$package]:-}" ] || missing+=("$package")
    lacks[$package]="${lacks[$package]:+${lacks[$package]}, }$what"
  done
}

report() {
  local who="the tests need" package
  [ "$scope" = demo ] && who="the demo needs"
  [ "$scope" = package ] && who="building the Debian package needs"
  echo "sshmux: $who system packages that are not installed:" >&2
  for package in "${missing[@]}"; do echo "  $package (no ${lacks[$package]})" >&2; done
  if command -v apt-get >/dev/null; then
    echo "Install them as root, then run this again:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  else
    echo "This machine has no apt-get: install your system's packages for them." >&2
  fi
}

scan
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$check_only" = 1 ] || [ "$EUID" -ne 0 ] || ! command -v apt-get >/dev/null; then
  report
  exit 1
fi
echo "sshmux: installing ${missing[*]} (apt-get) ..." >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
scan
[ ${#missing[@]} -eq 0 ] && exit 0
report
exit 1
