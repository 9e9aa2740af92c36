# bench/rounds.sh, sourced by benchmarks that time an end-to-end test
# (failover.sh, nodefail.sh): the test binary is built once, the test runs
# ROUNDS times with the environment variable REPORT_VAR naming a file to
# which each round appends its figures (a line of numbers), and stats
# prints min, median and max of a column. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
GO=${GO:-go}

# rounds NAME TEST_RUN REPORT_VAR: sets $report to the figures' file.
rounds() {
	local name=$1 run=$2 var=$3
	if [ "$(id -u)" != 0 ]; then
		echo "bench/$name.sh: needs root (network namespaces)" >&2
		exit 1
	fi
	work=$(mktemp -d "/tmp/macro-$name.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	$GO test -c -o "$work/e2e.test" ./e2e/
	report=$work/report
	for i in $(seq "$ROUNDS"); do
		echo "$name: round $i of $ROUNDS" >&2
		(cd e2e && env "$var=$report" "$work/e2e.test" -test.run "$run" -test.count 1 >"$work/round-$i.log" 2>&1) ||
			{ echo "$name: round $i failed:" >&2; tail -50 "$work/round-$i.log" >&2; exit 1; }
	done
}

stats() { # column name
	sort -n -k"$1" "$report" | awk -v c="$1" -v name="$2" '{v[NR]=$c} END {
		printf "%-10s n=%d  min %d ms  median %d ms  max %d ms\n", name, NR, v[1], v[int((NR+1)/2)], v[NR] }'
}
