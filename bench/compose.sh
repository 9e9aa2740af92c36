#!/usr/bin/env bash
# bench/compose.sh: `docker compose up -d --wait` of a 10-service project
# until every service is healthy, beside the same 10 containers started one
# by one with `docker run -d` and then waited for until all are healthy.
# Builds macro, the busybox test image (bench/macrobench) and the compose
# v2 plugin as the tests do, starts a private `macro server` in a temporary
# directory, and removes everything on exit.
#
#   ROUNDS=5 bench/compose.sh        (needs root)
#
# Each service is busybox `sleep` with a healthcheck (`true`, every 1s,
# start interval 1s): the time to healthy includes the first probe.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SERVICES=10
GO=${GO:-go}
[ "$(id -u)" = 0 ] || { echo "bench/compose.sh: needs root" >&2; exit 1; }

dir=$(mktemp -d /tmp/macro-bench-compose.XXXXXX)
server=
cleanup() {
	if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
		DOCKER_HOST=unix://$dir/data/docker.sock timeout 60 docker rm -f $(DOCKER_HOST=unix://$dir/data/docker.sock docker ps -aq) >/dev/null 2>&1 || true
		kill "$server"; wait "$server" 2>/dev/null || true
	fi
	grep " $dir/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

$GO build -o "$dir/macro" ./cmd/macro
$GO build -o "$dir/macrobench" ./bench/macrobench
BUSYBOX=$("$dir/macrobench" busybox -dir "${MACRO_TEST_CACHE:-/var/tmp/macro-test-cache}")
# The compose plugin, built once by the tests' helper (testenv.ComposeV2).
PLUGIN=$(ls -d "${MACRO_TEST_CACHE:-/var/tmp/macro-test-cache}"/bin/docker-compose-v*/docker-compose 2>/dev/null | tail -1)
if [ -z "$PLUGIN" ]; then
	$GO test -count=1 -run 'TestCompose$/v2' ./e2e >/dev/null
	PLUGIN=$(ls -d "${MACRO_TEST_CACHE:-/var/tmp/macro-test-cache}"/bin/docker-compose-v*/docker-compose | tail -1)
fi
export DOCKER_CONFIG=$dir/docker-config
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -s "$PLUGIN" "$DOCKER_CONFIG/cli-plugins/docker-compose"
export DOCKER_HOST=unix://$dir/data/docker.sock COMPOSE_MENU=false COMPOSE_ANSI=never

"$dir/macro" server --data-dir "$dir/data" --api-addr off >"$dir/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
docker load -i "$BUSYBOX" >/dev/null

mkdir -p "$dir/proj"
{
	echo "services:"
	for i in $(seq $SERVICES); do
		cat <<EOS
  s$i:
    image: busybox
    command: ["sleep", "100000"]
    init: true
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
      start_interval: 1s
      start_period: 5s
EOS
	done
} >"$dir/proj/compose.yaml"

now() { date +%s.%N; }
ms() { echo "($2 - $1) * 1000" | bc -l | xargs printf '%.0f'; }

healthy_all() { # NAME...: wait until every container is healthy
	local n
	while :; do
		n=0
		for c in "$@"; do
			[ "$(docker inspect -f '{{.State.Health.Status}}' "$c")" = healthy ] && n=$((n + 1))
		done
		[ "$n" = "$#" ] && return
		sleep 0.05
	done
}

echo "rounds: $ROUNDS, services: $SERVICES, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
compose_ms=() run_ms=()
for r in $(seq "$ROUNDS"); do
	t0=$(now)
	(cd "$dir/proj" && docker compose -p bench up -d --wait --quiet-pull >/dev/null 2>&1)
	t1=$(now)
	compose_ms+=("$(ms "$t0" "$t1")")
	(cd "$dir/proj" && docker compose -p bench down -t 0 >/dev/null 2>&1)

	t0=$(now)
	names=()
	for i in $(seq $SERVICES); do
		docker run -d --name "run-s$i" --init --health-cmd true --health-interval 1s \
			--health-start-interval 1s --health-start-period 5s busybox sleep 100000 >/dev/null
		names+=("run-s$i")
	done
	healthy_all "${names[@]}"
	t1=$(now)
	run_ms+=("$(ms "$t0" "$t1")")
	docker rm -f "${names[@]}" >/dev/null
	echo "round $r: compose up -d --wait ${compose_ms[-1]} ms, docker run x$SERVICES + healthy ${run_ms[-1]} ms"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median: compose up -d --wait $(median "${compose_ms[@]}") ms; docker run one by one $(median "${run_ms[@]}") ms"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
