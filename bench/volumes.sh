#!/usr/bin/env bash
# bench/volumes.sh: fio inside a pod on lv2 and nfs volumes, beside a pod on
# a local volume and fio on the host's own filesystem (the data dir's).
#
#   1. sequential write and read, 1 MiB blocks: MB/s;
#   2. random read and write, 4 KiB blocks, queue depth 16: IOPS.
#
# All direct I/O (O_DIRECT, libaio), so the page cache does not answer for
# the disk. The pod's fio is Debian's (scripts/setup.sh installs it), put
# into an image of its own with the libraries ldd names and busybox.
#
#   SIZE=512M SECS=10 bench/volumes.sh
#
# Needs root, fio, btrfs-progs and e2fsprogs (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${SIZE:-512M}
SECS=${SECS:-10}
command -v fio >/dev/null || { echo "volumes.sh: fio missing; run scripts/setup.sh" >&2; exit 1; }
command -v mkfs.btrfs >/dev/null || { echo "volumes.sh: btrfs-progs missing; run scripts/setup.sh" >&2; exit 1; }

bin=$(mktemp -d)
go build -o "$bin/macro" ./cmd/macro

# macro-e2e-*: testenv's sweep removes it (mounts too) if this dies.
dir=$(mktemp -d /tmp/macro-e2e-benchvol.XXXXXX)
export DOCKER_HOST=unix://$dir/docker.sock
server=
cleanup() {
  set +e
  docker rm -f fio-bench >/dev/null 2>&1
  docker volume rm bench-lv2 bench-nfs bench-local >/dev/null 2>&1
  [[ -n $server ]] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null
  for m in $(grep -o " $dir/[^ ]*" /proc/self/mountinfo | sort -r); do umount -l "$m"; done
  rm -rf "$dir" "$bin"
}
trap cleanup EXIT

# The fio image: fio, its libraries, busybox as /bin/sh.
root=$bin/rootfs
mkdir -p "$root/bin" "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
for f in /usr/bin/fio $(ldd /usr/bin/fio | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$f")"
  cp -L "$f" "$root$f"
done
img=$bin/img
mkdir -p "$img"
tar -C "$root" -cf "$img/layer.tar" .
diff=$(sha256sum "$img/layer.tar" | cut -d' ' -f1)
mkdir "$img/$diff" && mv "$img/layer.tar" "$img/$diff/layer.tar"
printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/usr/bin/fio"],"Env":["PATH=/usr/bin:/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff" >"$img/config.json"
cfg=$(sha256sum "$img/config.json" | cut -d' ' -f1)
mv "$img/config.json" "$img/$cfg.json"
printf '[{"Config":"%s.json","RepoTags":["fio:bench"],"Layers":["%s/layer.tar"]}]' "$cfg" "$diff" >"$img/manifest.json"
tar -C "$img" -cf "$bin/fio.tar" .

"$bin/macro" server --data-dir "$dir" --api-addr off >"$dir/bench-server.log" 2>&1 &
server=$!
for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
docker load -i "$bin/fio.tar" >/dev/null
docker volume create --driver lv2 -o size=2G bench-lv2 >/dev/null
docker volume create --driver nfs -o snapshot=off bench-nfs >/dev/null
docker volume create bench-local >/dev/null

jobs=(
  "seq-write  --rw=write     --bs=1M --iodepth=4"
  "seq-read   --rw=read      --bs=1M --iodepth=4"
  "rand-read  --rw=randread  --bs=4k --iodepth=16"
  "rand-write --rw=randwrite --bs=4k --iodepth=16"
)
common="--ioengine=libaio --direct=1 --size=$SIZE --runtime=$SECS --time_based --output-format=json --filename=/data/fio.dat"
# figure: the MB/s and IOPS of fio's JSON.
figure() {
  python3 -c 'import json,sys
j=json.load(sys.stdin)["jobs"][0]
r=j["read"] if j["read"]["io_bytes"] else j["write"]
print("%8.1f MB/s %9.0f IOPS" % (r["bw_bytes"]/1e6, r["iops"]))'
}
run_pod() { # volume job-args...
  local vol=$1; shift
  docker run --rm -v "$vol:/data" fio:bench --name=b "$@" $common | figure
}
run_host() { # job-args...
  mkdir -p "$dir/hostfs"
  fio --name=b "$@" ${common//\/data/$dir/hostfs} | figure
}

echo "# bench/volumes.sh $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# SIZE=$SIZE SECS=$SECS, O_DIRECT libaio; host fs: $(df -T "$dir" | awk 'NR==2{print $2}')"
printf '%-11s %-28s %-28s %-28s %-28s\n' job "host fs (no pod)" "pod, local volume" "pod, lv2 (ext4 on loop)" "pod, nfs (btrfs on loop)"
for j in "${jobs[@]}"; do
  read -r name args <<<"$j"
  # shellcheck disable=SC2086
  h=$(run_host $args); l=$(run_pod bench-local $args); v=$(run_pod bench-lv2 $args); n=$(run_pod bench-nfs $args)
  printf '%-11s %-28s %-28s %-28s %-28s\n' "$name" "$h" "$l" "$v" "$n"
done
