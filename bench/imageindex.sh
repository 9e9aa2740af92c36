#!/usr/bin/env bash
# bench/imageindex.sh: what the cluster's image index costs a single
# server (`macro server` alone, the default). Builds macro at BASE (before
# the index) and at the work tree, and for each, ROUNDS times, alternating:
# starts a private server, loads the busybox test image and times through
# the docker CLI 100 `docker images`, 100 `docker tag` + `docker rmi`
# pairs, 20 `docker run --rm busybox true` and 100 `docker image inspect`
# (the lookup a create makes). Prints the median of each, per command.
# Needs root and the busybox test image (the e2e tests build it).
# Knobs: BASE=dfadbf0 (the commit before the index) ROUNDS=3.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-dfadbf0}
ROUNDS=${ROUNDS:-3}
GO=${GO:-go}
if [ "$(id -u)" != 0 ]; then
	echo "bench/imageindex.sh: needs root" >&2
	exit 1
fi
ARCHIVE=$(ls "${MACRO_TEST_CACHE:-/var/tmp/macro-test-cache}"/busybox-*[0-9a-f].tar 2>/dev/null | head -1)
if [ -z "$ARCHIVE" ]; then
	echo "bench/imageindex.sh: no busybox test image; run an e2e test first (go test -run TestDockerCLI ./e2e/)" >&2
	exit 1
fi
REV=$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo +)
work=$(mktemp -d /tmp/macro-imageindex.XXXXXX)
pid=
stop_server() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		pid=
	fi
}
trap 'stop_server; rm -rf "$work"' EXIT
mkdir -p "$work/base"
git archive "$BASE" | tar -x -C "$work/base"
(cd "$work/base" && $GO build -o "$work/macro-base" ./cmd/macro)
$GO build -o "$work/macro-new" ./cmd/macro

ms() { local s; s=$(date +%s%N); "$@"; echo $((($(date +%s%N) - s) / 1000000)); }

one() { # BIN NAME: one round, a line "NAME images tagrmi run" in $work/report
	local bin=$1 name=$2 d
	d=$(mktemp -d "$work/run.XXXX")
	"$bin" server --data-dir "$d/data" --api-addr off --ingress-http off --ingress-https off --vpc=false >"$d/log" 2>&1 &
	pid=$!
	export DOCKER_HOST=unix://$d/data/docker.sock
	for _ in $(seq 150); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
	docker load -i "$ARCHIVE" >/dev/null
	a=$(ms bash -c 'for i in $(seq 100); do docker images -q >/dev/null; done')
	b=$(ms bash -c 'for i in $(seq 100); do docker tag busybox x:$i >/dev/null; docker rmi x:$i >/dev/null; done')
	c=$(ms bash -c 'for i in $(seq 20); do docker run --rm busybox true >/dev/null; done')
	e=$(ms bash -c 'for i in $(seq 100); do docker image inspect busybox >/dev/null; done')
	echo "$name $a $b $c $e" >>"$work/report"
	stop_server
	rm -rf "$d"
}
for i in $(seq "$ROUNDS"); do
	echo "imageindex: round $i of $ROUNDS" >&2
	one "$work/macro-base" base
	one "$work/macro-new" index
done
echo "a single server, before ($BASE) and with the image index ($REV), $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg); medians of $ROUNDS"
median() { # NAME COLUMN: the median of a column of NAME's lines
	grep "^$1 " "$work/report" | cut -d' ' -f"$2" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}
for name in base index; do
	echo "$name $(median $name 2) $(median $name 3) $(median $name 4) $(median $name 5)" |
		awk '{printf "%-6s docker images %.1f ms   tag+rmi %.1f ms   run --rm %.0f ms   image inspect %.1f ms\n", $1, $2/100, $3/100, $4/20, $5/100}'
done
