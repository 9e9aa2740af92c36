#!/usr/bin/env bash
# bench/mesh.sh: the VPC mesh between two nodes, beside raw wireguard-go
# and plain veth between the same two hosts.
#
# Two hosts are network namespaces (processes enter them with nsenter --net
# only: `ip netns exec` would remount /sys without the cgroup hierarchy) joined by one veth pair (the LAN,
# 198.18.0.0/24). Host 1 runs `macro server` (its own node, zone default),
# host 2 `macro agent` (zone z2); pod pa runs on host 1, pb on host 2, and
# their traffic crosses both routers and the WireGuard mesh. Beside it:
#
#   - raw wireguard-go: bench/wgraw, the same wireguard-go module, one TUN
#     device per host with one peer, nothing else (no router namespace,
#     veths or nftables);
#   - plain veth: the hosts' LAN itself, unencrypted.
#
# ping RTT (PINGS pings, 10 ms apart) and iperf3 TCP throughput (SECS
# seconds, one stream, receiver's figure), IPv6 and IPv4 (the mesh
# carries pods' IPv6 in WireGuard, their IPv4 in a VXLAN carrier per tenant
# inside it). iperf3 and ping are the host's
# binaries run in the pods' network namespaces (nsenter).
#
#   SECS=10 PINGS=200 ROUNDS=3 bench/mesh.sh
#
# Needs root, iperf3 (scripts/setup.sh) and the busybox test image (built
# by the tests into /var/tmp/macro-test-cache: `go test -run TestInit ./e2e`).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-10}
PINGS=${PINGS:-200}
ROUNDS=${ROUNDS:-3}

busybox=$(ls /var/tmp/macro-test-cache/busybox-*.tar 2>/dev/null | grep -v oci | head -1 || true)
[[ -n $busybox ]] || { echo "mesh.sh: no busybox test image; run: go test -run TestInit ./e2e" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "mesh.sh: iperf3 missing; run scripts/setup.sh" >&2; exit 1; }

bin=$(mktemp -d)
go build -o "$bin/macro" ./cmd/macro
go build -o "$bin/wgraw" ./bench/wgraw

# macro-e2e-*: testenv's sweep removes what is left if this dies.
d1=$(mktemp -d /tmp/macro-e2e-mesh1.XXXXXX)
d2=$(mktemp -d /tmp/macro-e2e-mesh2.XXXXXX)
h1=mb$$h1 h2=mb$$h2
export DOCKER_HOST=unix://$d1/docker.sock
pids=()
cleanup() {
  set +e
  docker rm -f pa pb >/dev/null 2>&1
  # The nodes stop the containers after the API removed them: wait for
  # their shims before stopping the nodes.
  for _ in $(seq 150); do pgrep -f " ($d1|$d2)/pods/" >/dev/null || break; sleep 0.2; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  sleep 2
  # The nodes' mesh devices outlive them, as their pods do: end them.
  for d in "$d1" "$d2"; do
    [[ -f $d/net/mesh-dev/pid ]] && kill "$(cat "$d/net/mesh-dev/pid")" 2>/dev/null
    rm -f "/var/run/wireguard/mx$(printf %s "$d/net" | sha256sum | cut -c1-8).sock"
  done
  sleep 0.5
  for m in $(grep -o " $d1/[^ ]*\| $d2/[^ ]*" /proc/self/mountinfo | sort -r); do umount -l "$m"; done
  ip netns del "$h1" 2>/dev/null
  ip netns del "$h2" 2>/dev/null
  rm -rf "$d1" "$d2" "$bin"
}
trap cleanup EXIT

ip netns add "$h1"
ip netns add "$h2"
ip link add eth0 netns "$h1" type veth peer name eth0 netns "$h2"
for i in 1 2; do
  h=mb$$h$i
  ip -n "$h" link set lo up
  ip -n "$h" addr add 198.18.0.$i/24 dev eth0
  ip -n "$h" addr add fd00:18::$i/64 dev eth0 nodad
  ip -n "$h" link set eth0 up
done

nsenter --net=/run/netns/"$h1" -- "$bin/macro" server --data-dir "$d1" --api-addr 198.18.0.1:7443 \
  --ingress-http off --ingress-https off >"$d1/bench-server.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
token=$("$bin/macro" admin --data-dir "$d1" join-token node 2>"$d1/jt.err")
hash=$(grep -o 'sha256:[0-9a-f]*' "$d1/jt.err" | head -1)
nsenter --net=/run/netns/"$h2" -- "$bin/macro" agent --data-dir "$d2" --server https://198.18.0.1:7443 --token "$token" \
  --ca-hash "$hash" --node-name b2 --label zone=z2 >"$d2/bench-agent.log" 2>&1 &
pids+=($!)

docker load -i "$busybox" >/dev/null
docker run -d --name pa -l kr.zone=default busybox sleep 3600 >/dev/null
docker run -d --name pb -l kr.zone=z2 busybox sleep 3600 >/dev/null
for _ in $(seq 300); do
  [[ $(docker inspect -f '{{.State.Running}} {{.NetworkSettings.GlobalIPv6Address}}' pb 2>/dev/null) == "true "?* ]] && break
  sleep 0.2
done
nsA=$d1/net/ns/$(docker inspect -f '{{.Id}}' pa)
nsB=$d2/net/ns/$(docker inspect -f '{{.Id}}' pb)
b6=$(docker inspect -f '{{.NetworkSettings.GlobalIPv6Address}}' pb)
for _ in $(seq 60); do nsenter --net="$nsA" busybox ping -c 1 -W 1 "$b6" >/dev/null 2>&1 && break; done
nsenter --net="$nsA" busybox ping -c 1 -W 1 "$b6" >/dev/null || { echo "mesh.sh: pa does not reach pb through the mesh" >&2; tail "$d1/bench-server.log" "$d2/bench-agent.log" >&2; exit 1; }
b4=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' pb)
for _ in $(seq 60); do nsenter --net="$nsA" busybox ping -c 1 -W 1 "$b4" >/dev/null 2>&1 && break; done
nsenter --net="$nsA" busybox ping -c 1 -W 1 "$b4" >/dev/null || { echo "mesh.sh: pa does not reach pb's IPv4 $b4 through the mesh" >&2; tail "$d1/bench-server.log" "$d2/bench-agent.log" >&2; exit 1; }

k1=$("$bin/wgraw" -genkey) k2=$("$bin/wgraw" -genkey)
nsenter --net=/run/netns/"$h1" -- "$bin/wgraw" -key "$k1" -peer "$("$bin/wgraw" -pub -key "$k2")" -port 51900 -endpoint 198.18.0.2:51900 \
  -addr 192.168.77.1/24 -addr6 fd00:77::1/64 &
pids+=($!)
nsenter --net=/run/netns/"$h2" -- "$bin/wgraw" -key "$k2" -peer "$("$bin/wgraw" -pub -key "$k1")" -port 51900 -endpoint 198.18.0.1:51900 \
  -addr 192.168.77.2/24 -addr6 fd00:77::2/64 &
pids+=($!)
for _ in $(seq 50); do nsenter --net=/run/netns/"$h1" -- busybox ping -c 1 -W 1 fd00:77::2 >/dev/null 2>&1 && break; sleep 0.1; done

echo "# bench/mesh.sh $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)"
pingsum() { nsenter --net="$1" busybox ping -q -c "$PINGS" -i 0.01 "$2" | tail -1; }
echo "## ping RTT min/avg/max, $PINGS pings"
echo "mesh pod to pod v6:  $(pingsum "$nsA" "$b6")"
echo "mesh pod to pod v4:  $(pingsum "$nsA" "$b4")"
echo "raw wireguard-go v6: $(pingsum /run/netns/"$h1" fd00:77::2)"
echo "raw wireguard-go v4: $(pingsum /run/netns/"$h1" 192.168.77.2)"
echo "plain veth v6:       $(pingsum /run/netns/"$h1" fd00:18::2)"
echo "plain veth v4:       $(pingsum /run/netns/"$h1" 198.18.0.2)"

iperf() { # server-netns client-netns address
  nsenter --net="$1" iperf3 -s -1 -D -I "$d1/iperf.pid" >/dev/null
  sleep 0.3
  nsenter --net="$2" iperf3 -c "$3" -t "$SECS" -J | sed -n 's/.*"bits_per_second":[[:space:]]*\([0-9.e+]*\).*/\1/p' | tail -1 |
    awk '{printf "%.2f", $1/1e9}'
}
echo "## iperf3 TCP, ${SECS}s, one stream, receiver's figure; mesh and raw alternate, ROUNDS=$ROUNDS, median"
mesh=() mesh4=() raw=()
for _ in $(seq "$ROUNDS"); do
  mesh+=("$(iperf "$nsB" "$nsA" "$b6")")
  mesh4+=("$(iperf "$nsB" "$nsA" "$b4")")
  raw+=("$(iperf /run/netns/"$h2" /run/netns/"$h1" fd00:77::2)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.2f Gbit/s", a[int((NR+1)/2)]}'; }
echo "mesh pod to pod v6:  $(median "${mesh[@]}")  (rounds: ${mesh[*]})"
echo "mesh pod to pod v4:  $(median "${mesh4[@]}")  (rounds: ${mesh4[*]})"
echo "raw wireguard-go v6: $(median "${raw[@]}")  (rounds: ${raw[*]})"
echo "raw wireguard-go v4: $(iperf /run/netns/"$h2" /run/netns/"$h1" 192.168.77.2) Gbit/s"
echo "plain veth v6:       $(iperf /run/netns/"$h2" /run/netns/"$h1" fd00:18::2) Gbit/s"
echo "plain veth v4:       $(iperf /run/netns/"$h2" /run/netns/"$h1" 198.18.0.2) Gbit/s"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
