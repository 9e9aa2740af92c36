#!/usr/bin/env bash
# bench/net.sh: the single-node VPC's figures, beside plain veth.
#
#   1. DNS: queries/s of the node's DNS server, asked from inside a pod
#      (bench/dnsload in the pod's network namespace), 1 and 4 workers;
#   2. ping: RTT pod to pod (veth, router namespace, veth) and, as the
#      floor, between two namespaces joined by one plain veth pair;
#   3. iperf3: TCP throughput the same two ways, IPv4 and IPv6.
#
# iperf3 and ping run from the host's binaries inside the pods' network
# namespaces (nsenter): busybox has no iperf3, and the path measured is the
# network's, not the container runtime's.
#
#   DNS_N=50000 SECS=10 PINGS=200 bench/net.sh
#
# Needs root, iperf3 (scripts/setup.sh) and the busybox test image (built
# by the tests into /var/tmp/macro-test-cache: `go test -run TestInit ./e2e`).
set -euo pipefail
cd "$(dirname "$0")/.."

DNS_N=${DNS_N:-50000}
SECS=${SECS:-10}
PINGS=${PINGS:-200}

busybox=$(ls /var/tmp/macro-test-cache/busybox-*.tar 2>/dev/null | grep -v oci | head -1 || true)
[[ -n $busybox ]] || { echo "net.sh: no busybox test image; run: go test -run TestInit ./e2e" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "net.sh: iperf3 missing; run scripts/setup.sh" >&2; exit 1; }

bin=$(mktemp -d)
go build -o "$bin/macro" ./cmd/macro
go build -o "$bin/dnsload" ./bench/dnsload

# macro-e2e-*: testenv's sweep removes it (network too) if this dies.
dir=$(mktemp -d /tmp/macro-e2e-bench.XXXXXX)
base=$(mktemp -d /tmp/macro-e2e-benchveth.XXXXXX)
export DOCKER_HOST=unix://$dir/docker.sock
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  docker rm -f pa pb >/dev/null 2>&1
  pkill -TERM -f "$bin/macro server --data-dir $dir"
  sleep 2
  hs=$(cat "$dir/net/host.json" 2>/dev/null)
  link=$(sed -n 's/.*"link":"\([^"]*\)".*/\1/p' <<<"$hs")
  table=$(sed -n 's/.*"nftTable":"\([^"]*\)".*/\1/p' <<<"$hs")
  [[ -n $link ]] && ip link del "$link" 2>/dev/null
  [[ -n $table ]] && nft delete table inet "$table" 2>/dev/null
  for m in $(grep -o " $dir/[^ ]*\| $base/[^ ]*" /proc/self/mountinfo | sort -r); do umount -l "$m"; done
  rm -rf "$dir" "$base" "$bin"
}
trap cleanup EXIT

"$bin/macro" server --data-dir "$dir" --api-addr off >"$dir/bench-server.log" 2>&1 &
for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
docker load -i "$busybox" >/dev/null
docker run -d --name pa busybox sleep 3600 >/dev/null
docker run -d --name pb busybox sleep 3600 >/dev/null
nsA=$dir/net/ns/$(docker inspect -f '{{.Id}}' pa)
nsB=$dir/net/ns/$(docker inspect -f '{{.Id}}' pb)
b4=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' pb)
b6=$(docker inspect -f '{{.NetworkSettings.GlobalIPv6Address}}' pb)

# The floor: two namespaces and one veth pair.
touch "$base/x" "$base/y"
unshare --net="$base/x" true
unshare --net="$base/y" true
nsenter --net="$base/x" ip link add eth0 type veth peer name eth0 netns "$base/y"
nsenter --net="$base/x" sh -c 'ip link set lo up; ip link set eth0 up; ip addr add 198.18.255.1/30 dev eth0; ip addr add fd00:be::1/64 dev eth0 nodad'
nsenter --net="$base/y" sh -c 'ip link set lo up; ip link set eth0 up; ip addr add 198.18.255.2/30 dev eth0; ip addr add fd00:be::2/64 dev eth0 nodad'

echo "# bench/net.sh $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## DNS (node's server, from pod pa, name pb, A)"
for c in 1 4; do nsenter --net="$nsA" "$bin/dnsload" -name pb -n "$DNS_N" -c "$c"; done

pingsum() { nsenter --net="$1" busybox ping -q -c "$PINGS" -i 0.01 "$2" | tail -1; }
echo "## ping RTT min/avg/max, $PINGS pings"
echo "pod to pod v4:    $(pingsum "$nsA" "$b4")"
echo "pod to pod v6:    $(pingsum "$nsA" "$b6")"
echo "plain veth v4:    $(pingsum "$base/x" 198.18.255.2)"
echo "plain veth v6:    $(pingsum "$base/x" fd00:be::2)"

iperf() { # server-netns client-netns address
  nsenter --net="$1" iperf3 -s -1 -D -I "$base/iperf.pid" >/dev/null
  sleep 0.3
  nsenter --net="$2" iperf3 -c "$3" -t "$SECS" -J | sed -n 's/.*"bits_per_second":[[:space:]]*\([0-9.e+]*\).*/\1/p' | tail -1 |
    awk '{printf "%.2f Gbit/s", $1/1e9}'
}
echo "## iperf3 TCP, ${SECS}s, receiver's figure"
echo "pod to pod v4:    $(iperf "$nsB" "$nsA" "$b4")"
echo "pod to pod v6:    $(iperf "$nsB" "$nsA" "$b6")"
echo "plain veth v4:    $(iperf "$base/y" "$base/x" 198.18.255.2)"
echo "plain veth v6:    $(iperf "$base/y" "$base/x" fd00:be::2)"

# What wiring a pod costs its start: docker run -d wall time, with the VPC
# and with --network none (loopback only), alternating, median of RUNS each.
RUNS=${RUNS:-30}
echo "## docker run -d busybox sleep 600, wall ms, median of $RUNS (p90)"
vpc=(); none=()
for i in $(seq "$RUNS"); do
  t0=$(date +%s%N); docker run -d --name "v$i" busybox sleep 600 >/dev/null; t1=$(date +%s%N)
  docker run -d --network none --name "n$i" busybox sleep 600 >/dev/null; t2=$(date +%s%N)
  vpc+=($(( (t1-t0)/1000000 ))); none+=($(( (t2-t1)/1000000 )))
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%d (%d)", a[int((NR+1)/2)], a[int(NR*0.9+0.5)]}'; }
echo "VPC:              $(stats "${vpc[@]}")"
echo "--network none:   $(stats "${none[@]}")"
docker rm -f $(docker ps -aq) >/dev/null
