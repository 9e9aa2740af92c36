#!/usr/bin/env bash
# bench/delta.sh: the delta-sync engine (package delta) beside rsync on the
# same data, on this machine: DELTA_SIZE bytes of random content in
# DELTA_FILES files; a first full copy; then RUNS times: DELTA_PLACES runs
# of random bytes overwrite 1% of the data at random places, and both
# bring their copy up to date. The engine runs its HTTP transport on a
# loopback port (sender and receiver in one deltabench process, so its CPU
# time covers both sides); rsync runs over a pipe (client and server as
# two processes, `-e` a shell that execs the server), its CPU time from
# bash's `time` over both. Bytes: the engine's TCP payload both ways
# (HTTP headers included), rsync's "Total bytes sent" + "received".
# The source has a state directory (its index, as a volume's source has):
# a compact manifest then names runs of the groups the receiver holds
# from the source's previous version. The engine runs twice per change: with syncfs before its switch (its
# default: the new tree is on disk before it replaces the old one) and
# without (-nosync: rsync does not sync either). Both copies are compared
# with the source after every run.
#
# DELTA_FS=btrfs runs it all (data, copies, states, rsync too) in a
# btrfs filesystem of its own (a loop image), as a volume's data is (the
# node's pool): there the source reads only the ranges of a changed file
# whose extents changed (delta/extents.go). Before each timed run, all
# that is dirty is written back (sync): data at rest, as a volume's mostly
# is, and neither tool pays for the other's writeback (a copy rsync has
# just written, 1 GiB, would otherwise be flushed by the engine's first
# sync of the filesystem).
#
# Knobs: DELTA_SIZE=1073741824 DELTA_FILES=8 DELTA_PLACES=1024 RUNS=3
# DELTA_FS= (the filesystem of /tmp) or btrfs.
# The report goes to stdout and bench/out/delta-<date>.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
SIZE=${DELTA_SIZE:-1073741824}
FILES=${DELTA_FILES:-8}
PLACES=${DELTA_PLACES:-1024}
RUNS=${RUNS:-3}
FS=${DELTA_FS:-}
GO=${GO:-go}

command -v rsync >/dev/null || { echo "bench/delta.sh: needs rsync (scripts/setup.sh installs it)" >&2; exit 1; }
for d in /tmp/macro-bench-delta.*; do
	[ -d "$d" ] || continue
	mountpoint -q "$d/fs" && umount "$d/fs"
	rm -rf "$d"
done
work=$(mktemp -d /tmp/macro-bench-delta.XXXXXX)
trap 'mountpoint -q "$work/fs" && umount "$work/fs"; rm -rf "$work"' EXIT
fsdesc="$(df -T /tmp | awk 'NR == 2 {print $2}') (/tmp)"
if [ "$FS" = btrfs ]; then
	command -v mkfs.btrfs >/dev/null || { echo "bench/delta.sh: DELTA_FS=btrfs needs mkfs.btrfs (scripts/setup.sh installs it)" >&2; exit 1; }
	truncate -s $((SIZE * 5 + (1 << 30))) "$work/fs.img"
	mkfs.btrfs -q -f "$work/fs.img" >/dev/null 2>&1
	mkdir "$work/fs"
	mount -o loop "$work/fs.img" "$work/fs"
	fsdesc="btrfs (a loop image)"
fi
mkdir -p bench/out
out=bench/out/delta-$(date -u +%Y%m%dT%H%M%SZ).txt
exec > >(tee "$out")

log() { echo "bench/delta: $*" >&2; }

data=$work
[ "$FS" = btrfs ] && data=$work/fs

$GO build -o "$work/deltabench" ./bench/deltabench
db=$work/deltabench
printf '#!/bin/sh\nshift\nexec "$@"\n' >"$work/rsh"
chmod +x "$work/rsh"

# rsync_run DST: one rsync pull of src into DST; prints "bytes seconds cpu".
rsync_run() {
	local stats t0 t1 TIMEFORMAT
	TIMEFORMAT='%U %S'
	sync
	t0=$(date +%s.%N)
	{ time rsync -a --stats --no-whole-file -e "$work/rsh" "localhost:$data/src/" "$1/" >"$work/rsync.out"; } 2>"$work/rsync.time"
	t1=$(date +%s.%N)
	stats=$(awk -F: '/Total bytes sent|Total bytes received/ {gsub(/[ ,]/, "", $2); s += $2} END {print s}' "$work/rsync.out")
	echo "$stats $(echo "$t1 - $t0" | bc) $(awk '{print $1 + $2}' "$work/rsync.time")"
}

# engine_run DST STATE [FLAGS]: prints "bytes seconds cpu". The source
# keeps its index in a state directory of its own per receiver, as a
# volume's source does (agent, api).
engine_run() {
	local dst=$1 state=$2
	shift 2
	sync
	"$db" local -src "$data/src" -srcstate "$state.src" -dst "$dst" -state "$state" "$@" |
		sed -E 's/.*wire_bytes=([0-9]+) seconds=([0-9.]+) cpu_seconds=([0-9.]+).*/\1 \2 \3/'
}

same() {
	diff -r -q "$data/src" "$1" >/dev/null || { echo "bench/delta.sh: $1 differs from the source" >&2; exit 1; }
}

echo "# bench/delta.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# on $fsdesc; $SIZE bytes in $FILES files; changes: 1% in $PLACES runs at random places; rsync $(rsync --version | head -1 | awk '{print $3}')"
log "making the data"
"$db" gen -dir "$data/src" -size "$SIZE" -files "$FILES" -seed 1

printf '%-28s %14s %9s %9s\n' "what" "bytes" "wall s" "cpu s"
row() { printf '%-28s %14d %9.2f %9.2f\n' "$1" $2 $3 $4; }

log "first copies"
row "rsync, full copy" $(rsync_run "$data/rs")
row "engine, full copy" $(engine_run "$data/eng" "$data/eng.state")
same "$data/rs"; same "$data/eng"
cp -a "$data/eng" "$data/engns"; cp -a "$data/eng.state" "$data/engns.state"; cp -a "$data/eng.state.src" "$data/engns.state.src"

for i in $(seq 1 "$RUNS"); do
	log "run $i: $("$db" mutate -dir "$data/src" -fraction 0.01 -places "$PLACES" -seed $((100 + i)))"
	row "rsync, 1% changed" $(rsync_run "$data/rs")
	row "engine, 1% changed" $(engine_run "$data/eng" "$data/eng.state")
	row "engine -nosync, 1% changed" $(engine_run "$data/engns" "$data/engns.state" -nosync)
	same "$data/rs"; same "$data/eng"; same "$data/engns"
done

# A receiver without its index (cold): it chunks its old files first.
log "cold receiver: $("$db" mutate -dir "$data/src" -fraction 0.01 -places "$PLACES" -seed 200)"
rm -f "$data/eng.state/index"
row "rsync, 1% changed" $(rsync_run "$data/rs")
row "engine cold, 1% changed" $(engine_run "$data/eng" "$data/eng.state")
same "$data/rs"; same "$data/eng"
log "report in $out"
