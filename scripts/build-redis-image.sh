#!/usr/bin/env bash
# Builds the redis:test image for end-to-end tests, without Docker and
# without pulling anything: a Debian minbase root filesystem (debootstrap,
# from the mirror apt uses on this machine) with redis-server installed,
# packed as a `docker save` archive by internal/testimages/mkimage.
#
#   scripts/build-redis-image.sh      (or: make images)
#
# Output: $MACRO_TEST_CACHE/redis-test-v1.tar (default cache
# /var/tmp/macro-test-cache), tagged redis:test; Cmd redis-server
# --protected-mode no, user redis, port 6379/tcp. The script prints the path.
# It is idempotent: when the archive exists it only prints the path; builds
# from several processes at once are serialized by a lock, and the archive
# appears by atomic rename. A cold build downloads about 40 MB of packages
# and takes a few minutes.
#
# Tests get the path with testimages.Redis(t), which skips the test when the
# archive was not built (the default test run does not build it), and load
# it with `docker load -i PATH`. The file name is testimages.RedisArchive:
# change both together (bump v1 when the image's content changes).
#
# Environment: MACRO_TEST_CACHE (cache dir), MIRROR (Debian mirror URL,
# default: the one in apt's sources for this release), SUITE (default: this
# machine's release codename). Needs root (debootstrap, chroot).
set -euo pipefail
cd "$(dirname "$0")/.."

name=redis-test-v1.tar
cache=${MACRO_TEST_CACHE:-/var/tmp/macro-test-cache}
out=$cache/$name
mkdir -p "$cache"
if [[ -f $out ]]; then
  echo "$out"
  exit 0
fi

exec 9>"$cache/.$name.lock"
flock 9
if [[ -f $out ]]; then
  echo "$out"
  exit 0
fi
((EUID == 0)) || { echo "build-redis-image: needs root (debootstrap)" >&2; exit 1; }
command -v debootstrap >/dev/null || scripts/setup.sh

start=$SECONDS
work=$(mktemp -d "$cache/redis-build.XXXXXX")
rootfs=$work/rootfs

# Unmount whatever debootstrap or apt left mounted in the rootfs, innermost
# first, then remove the work directory.
cleanup() {
  local mp
  awk -v root="$rootfs" '{ if ($5 == root || index($5, root "/") == 1) print $5 }' /proc/self/mountinfo |
    sort -r | while read -r mp; do umount -l "$mp" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck disable=SC1091
. /etc/os-release
suite=${SUITE:-$VERSION_CODENAME}

# The mirror apt uses for $suite: deb822 (URIs:/Suites:) or one-line sources.
find_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk -v suite="$suite" '
      /^[ \t]*$/ { if (uri != "" && ok) { print uri; exit } uri=""; ok=0; next }
      tolower($1) == "uris:"   { uri=$2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) ok=1 }
      END { if (uri != "" && ok) print uri }' "$f" | head -n1
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    awk -v suite="$suite" '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i+1) == suite) { print $i; exit } }' "$f"
  done
}
mirror=${MIRROR:-$(find_mirror | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}

log=$work/build.log
run() {
  if ! "$@" >>"$log" 2>&1; then
    tail -n 50 "$log" >&2
    echo "build-redis-image: failed: $*" >&2
    exit 1
  fi
}

echo "build-redis-image: debootstrap $suite from $mirror" >&2
run debootstrap --variant=minbase --arch=amd64 "$suite" "$rootfs" "$mirror"

# Install redis-server inside; no service may start in the chroot.
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 755 "$rootfs/usr/sbin/policy-rc.d"
mount -t proc proc "$rootfs/proc"
run chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server
run chroot "$rootfs" apt-get clean
umount -l "$rootfs/proc"
rm -f "$rootfs/usr/sbin/policy-rc.d"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
  "$rootfs"/etc/hostname "$rootfs"/etc/resolv.conf
# Device nodes are not allowed in images: the runtime provides /dev.
find "$rootfs/dev" -mindepth 1 -delete

tar --numeric-owner --sort=name --xattrs -C "$rootfs" -cf "$work/layer.tar" .
run go run ./internal/testimages/mkimage -layer "$work/layer.tar" -tag redis:test \
  -config '{"Cmd":["redis-server","--protected-mode","no"],"ExposedPorts":{"6379/tcp":{}},"User":"redis","WorkingDir":"/var/lib/redis"}' \
  -created-by "debootstrap --variant=minbase $suite; apt-get install redis-server" -o "$work/$name"
sync "$work/$name"
mv "$work/$name" "$out"
echo "build-redis-image: built $out in $((SECONDS - start))s ($(du -h "$out" | cut -f1))" >&2
echo "$out"
