#!/usr/bin/env bash
# Installs the Debian packages that macro and its tests need, and nothing
# when they are all there (then it prints nothing). Safe to run any number of
# times; `make run`, `make test` and .ci/run call it. Needs root (or sudo)
# only when something is missing.
#
#   runc, runsc (gVisor)     OCI runtimes of the sandbox and gvisor runtimes
#   tini                     PID 1 of pods started with --init (tini-static)
#   busybox-static           the busybox test image (internal/testimages)
#   docker-registry, skopeo  a registry and a second OCI client for tests
#   docker-compose           compose v1 (1.29.2) for e2e/compose_test.go
#   docker.io                dockerd 20.10, the reference of the differential tests
#                            (e2e/reference, testenv.StartDockerd); never used by
#                            macro. It installs /usr/bin/docker, which does not
#                            replace /usr/local/bin/docker (first in PATH); no
#                            dockerd or containerd starts on install (policy-rc.d)
#   debootstrap              rootfs test images (scripts/build-redis-image.sh)
#   iproute2, nftables       pod networking; network namespaces in tests
#   iperf3                   bench/net.sh: pod-to-pod throughput
#   rsync                    bench/delta.sh: the peer of the delta-sync engine
#   procps, psmisc, e2fsprogs, util-linux, kmod
#                            ps/pkill, fuser, mkfs/loop images, mount/nsenter
#   btrfs-progs, xfsprogs    volume/: the btrfs pool of nfs and gfs volumes; mkfs.xfs
#   fio                      bench/volumes.sh: MB/s and IOPS on lv2 and nfs volumes
#   make, curl, ca-certificates, git
#                            the build itself, and curl for API tests
#   rclone                   a real WebDAV and S3 client for the volume access tests
#   wrk, caddy               bench/ingress.sh: the load generator, and the peer proxy
set -euo pipefail

packages=(
  runc runsc tini
  busybox-static
  docker-registry skopeo
  docker.io docker-compose
  debootstrap
  iproute2 nftables iperf3
  rsync
  procps psmisc e2fsprogs util-linux kmod
  btrfs-progs xfsprogs fio
  make curl ca-certificates git
  rclone
  wrk caddy
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "setup: need root to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # No daemon may start from a package's postinst (docker-registry would
  # otherwise listen on :5000, docker.io would start dockerd and containerd
  # and rewrite iptables): tests start their own.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
  fi
  log=$(mktemp)
  if ! { "${sudo[@]}" apt-get update -qq &&
         "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "setup: apt-get failed" >&2
    exit 1
  fi
  rm -f "$log"
fi

# The docker CLI is not a Debian package here: every machine of the project
# has it at /usr/local/bin/docker. Say so when it is missing, but go on: only
# the end-to-end tests need it.
if [[ ! -x /usr/local/bin/docker ]]; then
  echo "setup: warning: /usr/local/bin/docker (the docker CLI) is missing; end-to-end tests will fail" >&2
fi
