#!/usr/bin/env bash
# bench/ingress.sh: macro's ingress proxy beside Caddy's reverse_proxy, both
# in front of the same static backend on this machine, measured with wrk
# (Debian's). Plain HTTP/1.1 with keep-alive: the proxies' own cost.
# Part of `make bench`; the report goes to stdout and bench/out/.
#
# Knobs (environment): DURATION=10s CONNS=64 THREADS=2 ROUNDS=3 SIZE=1024
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-1024}
GO=${GO:-go}

for bin in wrk caddy; do
	if ! command -v $bin >/dev/null; then
		echo "bench/ingress.sh: $bin is missing (scripts/setup.sh installs it)" >&2
		exit 1
	fi
done

WORK=$(mktemp -d /tmp/macro-bench-ingress.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	# start runs in a command substitution, whose PIDS+= is lost: what it
	# started is found by its path under WORK.
	pkill -f "^$WORK/" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

$GO build -o "$WORK/macrobench" ./bench/macrobench

# start NAME CMD...: runs CMD in the background; its first line of output
# is the address it listens on.
start() {
	local name=$1
	shift
	"$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
	PIDS+=($!)
	for _ in $(seq 100); do
		[ -s "$WORK/$name.out" ] && break
		sleep 0.05
	done
	head -1 "$WORK/$name.out"
}

BACKEND=$(start backend "$WORK/macrobench" backend -size "$SIZE")
MACRO=$(start macro "$WORK/macrobench" ingress -backend "$BACKEND" -host bench.test)
CADDY_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/Caddyfile" <<EOF
{
	admin off
	auto_https off
}
http://bench.test:$CADDY_PORT {
	bind 127.0.0.1
	reverse_proxy $BACKEND
}
EOF
XDG_DATA_HOME=$WORK XDG_CONFIG_HOME=$WORK caddy run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
	curl -s -o /dev/null -H 'Host: bench.test' "http://127.0.0.1:$CADDY_PORT/" && break
	sleep 0.1
done
CADDY=127.0.0.1:$CADDY_PORT

for target in "$MACRO" "$CADDY"; do
	code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.test' "http://$target/")
	if [ "$code" != 200 ]; then
		echo "bench/ingress.sh: $target answered $code" >&2
		exit 1
	fi
done

# measure ADDR: one wrk run; prints "req/s p50 p99" (latencies in ms).
measure() {
	wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H 'Host: bench.test' "http://$1/" |
		awk '
			function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
			/^Requests\/sec:/ { rps = $2 }
			$1 == "50%" { p50 = ms($2) }
			$1 == "99%" { p99 = ms($2) }
			END { printf "%.0f %.2f %.2f\n", rps, p50, p99 }'
}

OUT=bench/out/ingress-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p bench/out
{
	echo "# bench/ingress.sh $(date -u +%FT%TZ): wrk -t$THREADS -c$CONNS -d$DURATION, $SIZE-byte page, plain HTTP/1.1"
	echo "# caddy $(caddy version | cut -d' ' -f1), macro ingress at $(git rev-parse --short HEAD)"
	printf '%-6s %-6s %10s %8s %8s\n' round proxy req/s p50_ms p99_ms
	for r in $(seq "$ROUNDS"); do
		# Alternate which goes first, so neither always gets a warmer machine.
		if [ $((r % 2)) = 1 ]; then order="macro caddy"; else order="caddy macro"; fi
		for who in $order; do
			if [ "$who" = macro ]; then addr=$MACRO; else addr=$CADDY; fi
			read -r rps p50 p99 < <(measure "$addr")
			printf '%-6s %-6s %10s %8s %8s\n' "$r" "$who" "$rps" "$p50" "$p99"
		done
	done
	echo "# direct to the backend, no proxy (the ceiling):"
	read -r rps p50 p99 < <(measure "$BACKEND")
	printf '%-6s %-6s %10s %8s %8s\n' - direct "$rps" "$p50" "$p99"
} | tee "$OUT"
