#!/usr/bin/env bash
# bench/volfs.sh: an nfs/gfs volume mounted across nodes. A server and
# three agents on their own network namespaces (internal/testenv hosts):
# the end-to-end test TestRemoteVolumeMounts (e2e/volfs_test.go), which
# with MACRO_VOLFS_BENCH set runs fio (buffered, psync) and a small-file
# loop in the volume's directory on its primary node and through the FUSE
# mount another node made for its pod (node -> server -> the primary's
# tunnel); the volume has three copies, so each write through FUSE is also
# sent to the two replicas before it is acknowledged. Sequential MB/s are the file's size over the whole fio run
# (fetch at open and write-back at close included). Needs root and fio.
# The small files are also stat'ed from a third node's mount, cold and
# after a listing of their directory.
# Knobs: ROUNDS=1, MACRO_VOLFS_BENCH_MB=256.
ROUNDS=${ROUNDS:-1}
source "$(dirname "$0")/rounds.sh"
command -v fio >/dev/null || { echo "volfs.sh: fio missing; run scripts/setup.sh" >&2; exit 1; }
rounds volfs '^TestRemoteVolumeMounts$' MACRO_VOLFS_BENCH
echo "# bench/volfs.sh $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg) MB=${MACRO_VOLFS_BENCH_MB:-256}"
echo "| path | seq write 1M | seq read 1M | rand read 4k | rand write 4k | create 4 KiB files | stat | stat, other node | ls + stat, other node |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
awk -F'|' '{ printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; print "" }' "$report"
