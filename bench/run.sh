#!/usr/bin/env bash
# bench/run.sh: the whole-system benchmarks of macro on this machine
# (`make bench`). Builds bin/macro and bench/macrobench, starts a private
# `macro server` in a temporary directory, loads the busybox test image and
# measures:
#   1. idle footprint of the server with no container (RSS, CPU over IDLE);
#   2. `docker run -d` latency through the API (create+start), N runs;
#   3. the same through the real docker CLI (wall time), CLI_N runs;
#   4. the floor: raw runc on the bundle macro generated, N runs;
#   5. a timeline of where one start's time goes (ftrace), TRACE_N runs;
#   6. idle footprint with FILL running containers;
#   7. a wake's added latency through the ingress (WAKE_N wakes), and
#      auto-suspend's energy proxy: ENERGY_N idle web pods for ENERGY_IDLE,
#      running and then with kr.suspend, CPU seconds from cgroups.
#   8. then bench/push.sh: kra push of a 200 MB image beside skopeo copy,
#      on a server of its own (PUSH=0 skips it);
#   9. then bench/ingress.sh: the ingress proxy beside Caddy (INGRESS=0 skips it);
#  10. then bench/compose.sh: compose up -d of 10 services beside docker run (COMPOSE=0 skips it);
#  11. then bench/net.sh: DNS, ping and iperf3 in the VPC beside plain veth (NET=0 skips it);
#      then bench/mesh.sh: iperf3 and ping pod to pod across two nodes beside raw
#      wireguard-go and plain veth (MESH=0 skips it);
#  12. then bench/sched.sh: the pure placement rate of the scheduler, up to a
#      million pods onto 5,000 nodes (SCHED=0 skips it);
#  13. then bench/failover.sh: leader kill to first write, 3 servers (FAILOVER=0 skips it);
#  14. then bench/volumes.sh: fio in a pod on lv2, nfs and local volumes beside the host (VOLUMES=0 skips it);
#      then bench/volfs.sh: fio on a gfs volume mounted from another node through FUSE (VOLFS=0 skips it);
#  15. then bench/delta.sh: the delta-sync engine beside rsync, 1 GiB with 1% changed (DELTA=0 skips it);
#  16. then bench/nodefail.sh: node kill to its pods running elsewhere (NODEFAIL=0 skips it);
#  17. then bench/c1m.sh: a million pods onto 5,000 simulated nodes through the control plane (PLACE=0 skips it).
#  18. then bench/members5.sh: five etcd members, two removed while writing (MEMBERS5=0 skips it).
#  19. then bench/imageindex.sh: what the cluster's image index costs a single server (IMAGEINDEX=0 skips it).
# Everything it started is stopped and removed on exit, failure and Ctrl-C
# included; directories a killed earlier run left behind are removed first.
# The report goes to stdout and to bench/out/run-<date>.txt.
#
# Needs root (runc, mounts, cgroups, tracefs). Knobs (environment):
#   N=200 CLI_N=100 TRACE_N=50 FILL=100 IDLE=60s SETTLE=15s
#   ENERGY_N=20 ENERGY_IDLE=10m (ENERGY_N=0 skips it) WAKE_N=30
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
N=${N:-200}
CLI_N=${CLI_N:-100}
TRACE_N=${TRACE_N:-50}
FILL=${FILL:-100}
IDLE=${IDLE:-60s}
SETTLE=${SETTLE:-15s}
ENERGY_N=${ENERGY_N:-20}
WAKE_N=${WAKE_N:-30}
ENERGY_IDLE=${ENERGY_IDLE:-10m}
GO=${GO:-go}
PREFIX=/tmp/macro-bench.
CGROOT=/sys/fs/cgroup
TRACEFS=/sys/kernel/tracing

if [ "$(id -u)" != 0 ]; then
	echo "bench/run.sh: needs root (runc, mounts, cgroups)" >&2
	exit 1
fi

log() { echo "bench: $*" >&2; }

# proc_start PID: the start time of PID in clock ticks since boot (field 22
# of /proc/PID/stat), which tells a process from a later one with its pid.
proc_start() {
	local stat rest
	read -r stat <"/proc/$1/stat" 2>/dev/null || return 1
	rest=${stat##*) }
	# shellcheck disable=SC2086
	set -- $rest
	echo "${20}"
}

# cleanup_dir DIR: stop and remove everything a run left under DIR. Safe to
# call more than once, and on a directory of a run that was killed.
cleanup_dir() {
	local dir=$1 pid p cmd root id target h cg mp
	[ -d "$dir" ] || return 0
	# 1. Containers through the API, while the server still answers.
	if [ -S "$dir/data/docker.sock" ] && [ -f "$dir/server.pid" ] &&
		kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
		local ids
		ids=$(DOCKER_HOST="unix://$dir/data/docker.sock" timeout 20 docker ps -aq --no-trunc 2>/dev/null || true)
		if [ -n "$ids" ]; then
			# shellcheck disable=SC2086
			DOCKER_HOST="unix://$dir/data/docker.sock" timeout 120 docker rm -f $ids >/dev/null 2>&1 || true
		fi
	fi
	# 2. The server, then every process naming the directory (shims,
	# runc, a macrobench still measuring).
	if [ -f "$dir/server.pid" ]; then
		pid=$(cat "$dir/server.pid")
		if [ "$(proc_start "$pid" 2>/dev/null)" = "$(cat "$dir/server.start" 2>/dev/null)" ]; then
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[ "$pid" = $$ ] && continue
		cmd=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
		case "$cmd" in *"$dir/"* | *"$dir "*) kill -KILL "$pid" 2>/dev/null || true ;; esac
	done
	# 3. Socket directories the sandbox runtime keeps outside the data dir
	# for state directories whose path is too long for a unix socket.
	for l in "$dir"/data/runtime/*/root/containers/*; do
		[ -L "$l" ] || continue
		target=$(readlink "$l")
		h=$(printf %s "$target" | sha256sum | cut -c1-16)
		rm -rf "/run/macro-sock/$h"
	done
	# 4. runc containers: macro's and the floor's.
	for root in "$dir"/data/runtime/*/root/runc "$dir/work/runc-root"; do
		[ -d "$root" ] || continue
		for id in $(runc --root "$root" list -q 2>/dev/null) $(ls "$root"); do
			runc --root "$root" kill "$id" KILL >/dev/null 2>&1 || true
			runc --root "$root" delete --force "$id" >/dev/null 2>&1 || true
		done
	done
	# 5. cgroups: macro's pods are /macro/<pod id>, the floor's runs live
	# under /<cgroup parent>; kill what is left in them, then remove them
	# innermost first.
	local cgs=()
	for id in $(ls "$dir/data/pods" 2>/dev/null); do
		for cg in "$CGROOT"/*/macro/"$id" "$CGROOT/macro/$id"; do [ -d "$cg" ] && cgs+=("$cg"); done
	done
	if [ -f "$dir/cgroup-parent" ]; then
		for cg in "$CGROOT"/*/"$(cat "$dir/cgroup-parent")"; do [ -d "$cg" ] && cgs+=("$cg"); done
	fi
	if [ ${#cgs[@]} -gt 0 ]; then
		for cg in "${cgs[@]}"; do
			[ -f "$cg/freezer.state" ] && { echo THAWED >"$cg/freezer.state"; } 2>/dev/null
			for pid in $(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null); do
				kill -KILL "$pid" 2>/dev/null || true
			done
		done
		sleep 0.2
		for cg in "${cgs[@]}"; do
			find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
		done
	fi
	# 6. The node network's share of the host: one veth and one nftables
	# table, named in net/host.json (the rest is in namespaces under DIR).
	if [ -f "$dir/data/net/host.json" ]; then
		local link table
		link=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("link",""))' "$dir/data/net/host.json" 2>/dev/null || true)
		table=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("nftTable",""))' "$dir/data/net/host.json" 2>/dev/null || true)
		[ -n "$link" ] && ip link del "$link" 2>/dev/null || true
		[ -n "$table" ] && nft delete table inet "$table" 2>/dev/null || true
	fi
	# 7. Mounts under the directory, innermost (last mounted) first.
	for _ in 1 2 3; do
		mp=$(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | tac)
		[ -z "$mp" ] && break
		for m in $mp; do umount -l "$m" 2>/dev/null || true; done
	done
	rm -rf "$dir"
}

# A run killed before its trap ran leaves its directory (and maybe an
# ftrace instance of macrobench): remove those whose owner is gone.
for d in "$PREFIX"*; do
	[ -d "$d" ] || continue
	read -r opid ostart <"$d/owner" 2>/dev/null || { opid=0; ostart=; }
	if [ "$opid" != 0 ] && [ "$(proc_start "$opid" 2>/dev/null)" = "$ostart" ]; then
		continue
	fi
	log "removing $d, left behind by a run that is gone"
	cleanup_dir "$d"
done
for inst in "$TRACEFS"/instances/macrobench-*; do
	[ -d "$inst" ] || continue
	kill -0 "${inst##*-}" 2>/dev/null && continue
	echo 0 >"$inst/tracing_on" 2>/dev/null || true
	echo 0 >"$inst/events/enable" 2>/dev/null || true
	rmdir "$inst" 2>/dev/null || true
done

DIR=$(mktemp -d "${PREFIX}XXXXXX")
echo "$$ $(proc_start $$)" >"$DIR/owner"
finish() {
	local rc=$?
	trap - EXIT INT TERM
	log "cleaning up $DIR"
	cleanup_dir "$DIR"
	exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building bin/macro and macrobench"
$GO build -o bin/macro ./cmd/macro
$GO build -o "$DIR/macrobench" ./bench/macrobench
MB=$DIR/macrobench
CGPARENT=macro-bench-${DIR##*.}
echo "$CGPARENT" >"$DIR/cgroup-parent"
mkdir -p bench/out "$DIR/work"
OUT=bench/out/run-$(date -u +%Y%m%dT%H%M%SZ).txt

BUSYBOX=$("$MB" busybox -dir "${MACRO_TEST_CACHE:-/var/tmp/macro-test-cache}")

log "starting macro server in $DIR/data"
# Its own session: a Ctrl-C meant for this script must not stop it before
# the cleanup has removed its containers through the API.
INGRESS_ADDR=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
setsid "$REPO/bin/macro" server --data-dir "$DIR/data" --api-addr off --ingress-http "$INGRESS_ADDR" --ingress-https off --domain bench.test >"$DIR/server.log" 2>&1 &
SERVER=$!
echo "$SERVER" >"$DIR/server.pid"
proc_start "$SERVER" >"$DIR/server.start"
SOCK=$DIR/data/docker.sock
export DOCKER_HOST=unix://$SOCK
for i in $(seq 300); do
	docker version >/dev/null 2>&1 && break
	kill -0 "$SERVER" 2>/dev/null || { cat "$DIR/server.log" >&2; exit 1; }
	[ "$i" = 300 ] && { log "server did not answer in 30s"; cat "$DIR/server.log" >&2; exit 1; }
	sleep 0.1
done
docker load -i "$BUSYBOX" >/dev/null

{
	echo "# macro benchmarks, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "command:  N=$N CLI_N=$CLI_N TRACE_N=$TRACE_N FILL=$FILL IDLE=$IDLE SETTLE=$SETTLE ENERGY_N=$ENERGY_N ENERGY_IDLE=$ENERGY_IDLE WAKE_N=$WAKE_N bench/run.sh"
	echo "commit:   $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench' 2>/dev/null || echo ' (with uncommitted changes outside bench/)')"
	echo "machine:  $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(free -m | awk '/^Mem:/ { print $2 }') MiB, kernel $(uname -r)"
	echo "          cgroup $(stat -fc %T $CGROOT | sed 's/tmpfs/v1 (hybrid)/; s/cgroup2fs/v2/'), data dir on $(df -T "$DIR" | awk 'NR==2 { print $2 }')"
	echo "tools:    $(go version | cut -d' ' -f3), $(runc --version | head -1), docker CLI $(docker version --format '{{.Client.Version}}')"
	echo "load avg: $(cut -d' ' -f1-3 /proc/loadavg) (before the run)"

	log "idle footprint, no container"
	"$MB" footprint -socket "$SOCK" -pid "$SERVER" -fill 0 -settle "$SETTLE" -idle "$IDLE"
	log "docker run -d through the API, $N runs"
	"$MB" latency -socket "$SOCK" -pid "$SERVER" -n "$N"
	log "docker run -d through the docker CLI, $CLI_N runs"
	"$MB" cli -socket "$SOCK" -n "$CLI_N"
	log "raw runc on macro's bundle, $N runs"
	"$MB" runc -socket "$SOCK" -data-dir "$DIR/data" -work "$DIR/work" -n "$N" -cgroup-parent "/$CGPARENT"
	log "timeline, $TRACE_N runs"
	"$MB" timeline -socket "$SOCK" -pid "$SERVER" -n "$TRACE_N"
	log "idle footprint, $FILL containers"
	"$MB" footprint -socket "$SOCK" -pid "$SERVER" -fill "$FILL" -settle "$SETTLE" -idle "$IDLE"
	log "wake latency through the ingress, $WAKE_N wakes"
	"$MB" wake -socket "$SOCK" -ingress "$INGRESS_ADDR" -domain bench.test -n "$WAKE_N"
	if [ "$ENERGY_N" != 0 ]; then
		log "auto-suspend energy proxy, $ENERGY_N pods, $ENERGY_IDLE per round"
		"$MB" energy -socket "$SOCK" -pid "$SERVER" -n "$ENERGY_N" -idle "$ENERGY_IDLE"
	fi
	echo
	echo "load avg: $(cut -d' ' -f1-3 /proc/loadavg) (after the run)"
} | tee "$OUT"
log "report in $OUT"

# step VAR SCRIPT WHAT: runs bench/SCRIPT unless VAR=0.
step() {
	if [ "${!1:-1}" = 1 ]; then
		log "$3 (bench/$2)"
		"bench/$2"
	fi
}
step PUSH push.sh "kra push beside skopeo copy"
step ACCESS access.sh "rclone over WebDAV and S3 beside cp"
step INGRESS ingress.sh "the ingress beside Caddy"
step COMPOSE compose.sh "docker compose up beside docker run"
step NET net.sh "the VPC beside plain veth"
step MESH mesh.sh "the VPC mesh between two nodes beside raw wireguard-go"
step SCHED sched.sh "the scheduler's placement rate"
step FAILOVER failover.sh "leader kill to first write in a cluster of three servers"
step VOLUMES volumes.sh "fio in a pod on lv2 and nfs volumes beside the host"
step VOLFS volfs.sh "fio on a gfs volume mounted from another node (FUSE) beside its own node"
step DELTA delta.sh "the delta-sync engine beside rsync"
step NODEFAIL nodefail.sh "node kill to its pods running elsewhere"
step PLACE c1m.sh "a million pods onto 5,000 simulated nodes through the control plane"
step MEMBERS5 members5.sh "five etcd members, two removed while writing"
step IMAGEINDEX imageindex.sh "what the image index costs a single server"
