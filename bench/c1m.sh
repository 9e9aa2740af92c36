#!/usr/bin/env bash
# bench/c1m.sh: Nomad's C1M on this machine, end to end through the control
# plane: PODS pods (default a million) onto NODES simulated nodes (default
# 5,000) through the embedded etcd store, the State that follows it, the
# leader's controller (the pure scheduler, batched placement commits) and
# the node API's per-node streams. The nodes are simulated in-process
# (bench/c1m): leases with heartbeats, a stream each, every pod reported
# running; no container runs. Needs ~6 GiB of memory for a million. Knobs:
# PODS NODES ZONES WRITERS.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
mkdir -p bench/out
out=bench/out/c1m-$(date -u +%Y%m%dT%H%M%SZ).txt
$GO build -o bench/c1m/c1m ./bench/c1m
echo "bench/c1m.sh at $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out"
bench/c1m/c1m -pods "${PODS:-1000000}" -nodes "${NODES:-5000}" -zones "${ZONES:-5}" \
	-writers "${WRITERS:-32}" 2>&1 | tee -a "$out"
rm -f bench/c1m/c1m
