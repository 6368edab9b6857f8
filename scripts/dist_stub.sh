#!/bin/sh
# lightmon, one file: this POSIX shell stub plus a gzip'd tar archive of the Deno
# runtime, the bundled program and the BPF object. The first run extracts the archive
# into a cache directory named by its hash; later runs exec straight from there.
set -eu
# Only the system's tools: a PATH from the caller's environment could name anything.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
hash=@@HASH@@
skip=@@SKIP@@
uid=$(id -u)
if [ -n "${LIGHTMON_CACHE:-}" ]; then
  base=$LIGHTMON_CACHE
elif [ "$uid" = 0 ]; then
  base=/var/cache/lightmon
else
  base=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/lightmon-$uid
fi
# The cache holds code we execute: it must be ours alone. A sticky directory others
# may write (/tmp, a memory emptyDir: 1777) gets a private 0700 subdirectory of ours
# instead: created here, never a symlink, never someone else's. One that is not
# sticky (a disk emptyDir is 0777) is refused below: anyone could rename ours away.
writable_by_others() {
  [ $((0$(stat -c '%a' "$1") & 022)) -ne 0 ]
}
private() {
  [ -d "$1" ] || return 0
  set -- "$1" "$(stat -c '%u %a' "$1")"
  owner=${2% *}
  mode=${2#* }
  if [ -L "$1" ] || [ "$owner" != "$uid" ] || [ $((0$mode & 022)) -ne 0 ]; then
    echo "lightmon: cache directory $1 is writable by others or not owned by uid $uid; remove it or set LIGHTMON_CACHE to a private directory" >&2
    exit 2
  fi
}
if [ -d "$base" ] && [ ! -L "$base" ] && writable_by_others "$base"; then
  base=$base/lightmon-$uid
  mkdir -m 700 "$base" 2>/dev/null || true
  [ -d "$base" ] && [ ! -L "$base" ] || {
    echo "lightmon: cannot make a private cache directory $base; set LIGHTMON_CACHE to a private directory" >&2
    exit 2
  }
fi
# What runs is what was checked only if nobody else can replace a directory on the way
# to it: each, from / down, must be root's or ours and writable by no one else, unless
# sticky (there nobody can replace what is ours). Checked before extracting, and after.
no_one_else() {
  p=$(cd -P -- "$1" && pwd -P) # builtins only: an image may have no readlink
  # One stat for the whole chain (a process each costs ~1 ms of start-up): its lines
  # are "owner mode", numbers only, one per directory from $p up, in that order.
  named=$1
  set -- "$p"
  q=$p
  while [ "$q" != / ]; do
    q=${q%/*}
    q=${q:-/}
    set -- "$@" "$q"
  done
  st=$(stat -c '%u %a' -- "$@") || {
    echo "lightmon: cannot check cache directory $named; set LIGHTMON_CACHE to a private directory" >&2
    exit 2
  }
  q=$p
  while read -r o m; do
    if { [ "$o" != 0 ] && [ "$o" != "$uid" ]; } || { [ $((0$m & 022)) -ne 0 ] && [ $((0$m & 01000)) -eq 0 ]; }; then
      echo "lightmon: cache directory $named could be replaced by another user ($q: owner $o, mode $m); set LIGHTMON_CACHE to a private directory" >&2
      exit 2
    fi
    q=${q%/*}
    q=${q:-/}
  done <<CHAIN
$st
CHAIN
}
private "$base"
[ -d "$base" ] && no_one_else "$base"
dir=$base/$hash
if [ ! -x "$dir/bin/deno" ]; then
  mkdir -p "$base"
  chmod 700 "$base"
  tmp=$(mktemp -d "$base/.extract.XXXXXX")
  if ! tail -c +"$skip" "$0" | tar -xzf - -C "$tmp"; then
    rm -rf "$tmp"
    echo "lightmon: cannot extract into $base (disk full?); set LIGHTMON_CACHE to another directory" >&2
    exit 2
  fi
  chmod 700 "$tmp"
  # Atomic: of two first runs at once, one rename wins and the other cleans up.
  if mv -T "$tmp" "$dir" 2>/dev/null; then
    # A new version: keep it and the one extracted before it (a service upgraded in place
    # may still run from that), remove older ones (~100 MB each) and extractions that
    # died over an hour ago. Only names of ours, in a directory that is ours alone.
    prev=$(ls -1t "$base" | grep -x '[0-9a-f]\{16\}' | grep -vx "$hash" | head -n 1) || true
    for name in $(ls -1 "$base" | grep -x '[0-9a-f]\{16\}'); do
      [ "$name" = "$hash" ] || [ "$name" = "$prev" ] || rm -rf -- "${base:?}/$name"
    done
    find "$base" -mindepth 1 -maxdepth 1 -name '.extract.*' -mmin +60 -exec rm -rf -- {} + 2>/dev/null || true
  else
    rm -rf "$tmp"
  fi
fi
private "$dir"
no_one_else "$dir"
export DENO_DIR="$dir/deno-cache" DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1
exec "$dir/bin/deno" run --quiet --no-prompt --no-config --allow-all --v8-flags=--max-semi-space-size=2,--single-threaded,--heap-growing-percent=50,--no-incremental-marking \
  "$dir/app/src/main.js" "$@"
