#!/usr/bin/env bash
# bench/members5.sh: a cluster of five embedded etcd members, and two
# live members removed without downtime. The end-to-end test
# TestClusterFiveMembers (e2e/members5_test.go), ROUNDS times: five
# servers, each its own process on its own network namespace, the 2nd to
# 5th joining with a server join token (a learner promoted once caught
# up); then clients write a volume every 20 ms through s1..s3 each while
# `macro admin members rm` removes s5 and s4 (both alive: each stops
# itself). Reported: the time from the first server's start to five voting
# members, the time to remove the two, and the longest gap between two
# acknowledged writes during the removals (no write may fail). Needs root.
# Knobs: ROUNDS=3.
ROUNDS=${ROUNDS:-3}
source "$(dirname "$0")/rounds.sh"
rounds members5 '^TestClusterFiveMembers$' MACRO_MEMBERS5_REPORT
echo "five members, two removed while writing ($(date -u +%FT%TZ), $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg))"
stats 1 5-voting
stats 2 removal
stats 3 write-gap
