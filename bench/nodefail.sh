#!/usr/bin/env bash
# bench/nodefail.sh: node kill to its pods running elsewhere. A server and
# two agents, each its own process on its own network namespace
# (internal/testenv hosts): the end-to-end test TestRemoteNodes, subtest
# "a dead node's pods move" (e2e/nodes_test.go), ROUNDS times. A pod runs
# on one agent; that agent is killed (SIGKILL); the time is taken until
# `docker inspect` shows the pod running on the other agent, which runc
# confirms. The node TTL is 3 s (--node-ttl 3s); the issue's target is 5 s
# after the TTL. Needs root. Knobs: ROUNDS=5.
source "$(dirname "$0")/rounds.sh"
rounds nodefail '^TestRemoteNodes$/dead' MACRO_NODEFAIL_REPORT
echo "node kill to its pod running elsewhere ($(date -u +%FT%TZ), $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg))"
stats 1 total
stats 2 after-TTL
