#!/usr/bin/env bash
# bench/failover.sh: leader kill to first successful write, in a cluster of
# three macro servers, each its own process on its own network namespace
# (internal/testenv hosts on a LAN bridge). It runs the end-to-end test
# TestClusterFailover ROUNDS times (e2e/cluster_test.go): clients write
# volumes through the Docker API of random servers, the server that leads
# the control loop (the raft leader too: the first server) is killed with
# SIGKILL, and the test records
#   - write: from the kill to the first acknowledged write on a survivor
#     (volume create through its Docker API socket; each try gives up
#     after 1 s, as a write caught by the leader's death waits for etcd's
#     request timeout);
#   - control: from the kill to `macro admin members ls` showing another
#     server leading the control loop (leader session TTL --leader-ttl 3s).
# Needs root. Knobs: ROUNDS=5.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
GO=${GO:-go}
if [ "$(id -u)" != 0 ]; then
	echo "bench/failover.sh: needs root (network namespaces)" >&2
	exit 1
fi
work=$(mktemp -d /tmp/macro-failover.XXXXXX)
trap 'rm -rf "$work"' EXIT
$GO test -c -o "$work/e2e.test" ./e2e/
report=$work/report
for i in $(seq "$ROUNDS"); do
	echo "failover: round $i of $ROUNDS" >&2
	(cd e2e && MACRO_FAILOVER_REPORT=$report "$work/e2e.test" -test.run '^TestClusterFailover$' -test.count 1 >"$work/round-$i.log" 2>&1) ||
		{ echo "failover: round $i failed:" >&2; tail -50 "$work/round-$i.log" >&2; exit 1; }
done
stats() { # column name
	sort -n -k"$1" "$report" | awk -v c="$1" -v name="$2" '{v[NR]=$c} END {
		printf "%-8s n=%d  min %d ms  median %d ms  max %d ms\n", name, NR, v[1], v[int((NR+1)/2)], v[NR] }'
}
echo "leader kill to ... ($(date -u +%FT%TZ), $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg))"
stats 1 write
stats 2 control
