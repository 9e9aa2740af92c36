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
source "$(dirname "$0")/rounds.sh"
rounds failover '^TestClusterFailover$' MACRO_FAILOVER_REPORT
echo "leader kill to ... ($(date -u +%FT%TZ), $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg))"
stats 1 write
stats 2 control
