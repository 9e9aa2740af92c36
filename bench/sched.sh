#!/usr/bin/env bash
# bench/sched.sh: the pure placement rate of sched.Place, no store, no
# network, no agents (the issue's end-to-end million goes through the
# store and is measured separately).
#
#   1. 1,000 pods onto 100 nodes, in one round (BenchmarkPlace1k);
#   2. 100,000 pods onto 1,000 nodes (BenchmarkPlace100k);
#   3. 1,000,000 pods onto 5,000 nodes (BenchmarkPlaceC1M), the issue's
#      benchmark; anchor: Nomad's C1M, ~3,750 placements/s;
#   4. one round of the control loop at that scale: 1,000 new pods beside
#      the ~970,000 the first 999,000 put on nodes (BenchmarkPlaceRound).
#
# The workload is sched's deterministic one (bench_test.go: compose
# services of ten replicas, kr.res.mem, kr.zone, CPU requests, arm64 and
# gvisor pods, three zones, one node in a hundred not ready, about four
# fifths of memory and CPU asked for). Each rate is given by the clock and
# by the CPU time the process used: the machine is shared, and the clock
# counts the time other programs had the cores.
#
#   COUNT=3 C1M=1 bench/sched.sh      (C1M=0 skips 3 and 4: they need ~3 GiB)
#
# Needs Go only; no root. Prints a table; raw output in bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-3}
C1M=${C1M:-1}
GO=${GO:-go}

mkdir -p bench/out
out=bench/out/sched-$(date -u +%Y%m%dT%H%M%SZ).txt
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
"$GO" test -c -o "$bin/sched.test" ./sched/

{
  echo "# bench/sched.sh at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- sched || echo ' (sched modified)'), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "# $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  (cd sched && "$bin/sched.test" -test.run '^$' -test.bench 'Place(1k|100k)$' -test.benchtime 3x -test.count "$COUNT")
  if [ "$C1M" = 1 ]; then
    (cd sched && "$bin/sched.test" -test.run '^$' -test.bench 'PlaceC1M$' -test.benchtime 1x -test.count "$COUNT" -c1m)
    (cd sched && "$bin/sched.test" -test.run '^$' -test.bench 'PlaceRound$' -test.benchtime 5x -test.count "$COUNT" -c1m)
  fi
  echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out.raw"

# The table: per benchmark, the median of the runs.
awk '
  /^Benchmark/ {
    name = $1; sub(/-[0-9]+$/, "", name)
    for (i = 2; i < NF; i++) {
      if ($(i+1) == "placements/s") wall[name] = wall[name] " " $i
      if ($(i+1) == "placements/cpu-s") cpu[name] = cpu[name] " " $i
      if ($(i+1) == "ns/op") op[name] = op[name] " " $i
      if ($(i+1) == "unschedulable") un[name] = $i
    }
    if (!(name in seen)) { seen[name] = 1; order[++n] = name }
  }
  function median(list,   a, k, i, j, t) {
    k = split(list, a, " ")
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((k + 1) / 2)]
  }
  END {
    printf "%-20s %14s %18s %22s %14s\n", "benchmark", "s/round", "placements/s", "placements/cpu-s", "unschedulable"
    for (i = 1; i <= n; i++) {
      b = order[i]
      printf "%-20s %14.3f %18.0f %22.0f %14s\n", b, median(op[b]) / 1e9, median(wall[b]), median(cpu[b]), (b in un) ? un[b] : "-"
    }
  }' "$out.raw" | tee "$out"
