#!/usr/bin/env bash
# bench/push.sh: `kra push` of a ~200 MB multi-layer image to a private
# macro server's API port, beside `skopeo copy` to the same endpoint
# (bench/run.sh runs it last; it also runs alone). The image is built here:
# the busybox test layer and four layers of incompressible bytes (80, 60, 40
# and 20 MB of AES-CTR keystream, reproducible from their seeds), as a
# `docker save` archive (plain tar layers, as docker 20.10 writes them).
#
# Each round starts a fresh server with two tenants (kra pushes as one,
# skopeo as the other, so neither finds the other's blobs) and measures,
# wall time and
# bytes the server's port received (an nftables counter on its input,
# TLS and HTTP included):
#   kra push, first time                 kra push again (kra's layer cache)
#   kra push again, no cache (as CI)     kra push after one 40 MB layer changed
#   skopeo copy, first time              skopeo copy again
#   skopeo copy after the layer changed
# kra's own figure of blob bytes sent is printed beside the counter.
#
# Needs root (the server, nftables), skopeo, nft, ss (scripts/setup.sh) and
# openssl (ca-certificates depends on it). Knobs: REPS=3.
# Everything it started is stopped and removed on exit, Ctrl-C included.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
REPS=${REPS:-3}
GO=${GO:-go}

if [ "$(id -u)" != 0 ]; then
	echo "bench/push.sh: needs root (macro server, nftables)" >&2
	exit 1
fi
for tool in skopeo nft openssl ss; do
	command -v "$tool" >/dev/null || { echo "bench/push.sh: $tool is not installed (scripts/setup.sh)" >&2; exit 1; }
done

log() { echo "push-bench: $*" >&2; }

DIR=$(mktemp -d /tmp/macro-pushbench.XXXXXX)
NFT_TABLE=macro_pushbench_$$
finish() {
	local rc=$?
	trap - EXIT INT TERM
	log "cleaning up $DIR"
	# The rounds run in the report's subshell: their server is found by
	# its data dir, as is anything else still naming $DIR.
	local p pid cmd
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[ "$pid" = $$ ] && continue
		cmd=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
		case "$cmd" in *"$REPO/bin/macro server --data-dir $DIR/"*) kill -TERM "$pid" 2>/dev/null || true ;; esac
	done
	sleep 1
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[ "$pid" = $$ ] && continue
		cmd=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
		case "$cmd" in *"$DIR/"*) kill -KILL "$pid" 2>/dev/null || true ;; esac
	done
	nft delete table inet "$NFT_TABLE" 2>/dev/null || true
	for _ in 1 2 3; do
		mp=$(awk -v d="$DIR" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | tac)
		[ -z "$mp" ] && break
		for m in $mp; do umount -l "$m" 2>/dev/null || true; done
	done
	rm -rf "$DIR"
	exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building bin/macro, bin/kra and macrobench"
$GO build -o bin/macro ./cmd/macro
$GO build -o bin/kra ./cmd/kra
$GO build -o "$DIR/macrobench" ./bench/macrobench
BUSYBOX=$("$DIR/macrobench" busybox -dir "${MACRO_TEST_CACHE:-/var/tmp/macro-test-cache}")

# --- the image ---

# keystream SEED MB: MB megabytes of AES-CTR keystream of SEED.
keystream() {
	# openssl ends on head's SIGPIPE: not a failure here.
	(
		set +o pipefail
		openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$1" -in /dev/zero 2>/dev/null | head -c "$(($2 * 1000 * 1000))"
	)
}

# mklayer NAME SEED MB: a layer holding /data/NAME.bin; prints its diffID.
mklayer() {
	local src=$DIR/src/$1
	mkdir -p "$src/data" "$DIR/img/$1"
	keystream "$2" "$3" >"$src/data/$1.bin"
	tar --sort=name --mtime=@946684800 --owner=0 --group=0 --numeric-owner -C "$src" -cf "$DIR/img/$1/layer.tar" data
	rm -rf "$src"
	echo "sha256:$(sha256sum "$DIR/img/$1/layer.tar" | cut -d' ' -f1)"
}

# mkarchive OUT TAG LAYER...: a docker save archive of busybox and LAYERs
# (directories of $DIR/img).
mkarchive() {
	local out=$1 tag=$2 ids=() layers=() l cfg sum
	shift 2
	for l in busybox "$@"; do
		ids+=("\"sha256:$(sha256sum "$DIR/img/$l/layer.tar" | cut -d' ' -f1)\"")
		layers+=("\"$l/layer.tar\"")
	done
	cfg=$(printf '{"architecture":"amd64","os":"linux","created":"2000-01-01T00:00:00Z","config":{"Cmd":["sh"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$(IFS=,; echo "${ids[*]}")")
	sum=$(printf %s "$cfg" | sha256sum | cut -d' ' -f1)
	printf %s "$cfg" >"$DIR/img/$sum.json"
	printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":[%s]}]' "$sum" "$tag" "$(IFS=,; echo "${layers[*]}")" >"$DIR/img/manifest.json"
	tar -C "$DIR/img" -cf "$out" manifest.json "$sum.json" busybox "$@"
	rm -f "$DIR/img/manifest.json" "$DIR/img/$sum.json"
}

log "building the image"
mkdir -p "$DIR/img/busybox"
members=$(tar -tf "$BUSYBOX")
tar -xOf "$BUSYBOX" "$(echo "$members" | grep 'layer.tar$')" >"$DIR/img/busybox/layer.tar"
mklayer l80 seed-80 80 >/dev/null
mklayer l60 seed-60 60 >/dev/null
mklayer l40 seed-40 40 >/dev/null
mklayer l20 seed-20 20 >/dev/null
mkarchive "$DIR/v1.tar" big:latest l80 l60 l40 l20
# v2: the 40 MB layer changed.
mv "$DIR/img/l40" "$DIR/img/l40-v1"
mklayer l40 seed-40-v2 40 >/dev/null
mkarchive "$DIR/v2.tar" big:latest l80 l60 l40 l20
rm -rf "$DIR/img"
IMG_MB=$(( $(stat -c %s "$DIR/v1.tar") / 1000000 ))

# --- the server ---

# A port nothing listens on (ss, of iproute2).
while :; do
	PORT=$((20000 + RANDOM % 40000))
	ss -Hltn "sport = :$PORT" | grep -q . || break
done
ADDR=127.0.0.1:$PORT

# start_server N: a fresh server (data dir $DIR/data-N) on the API port:
# every round starts from an empty store, layers not extracted yet.
start_server() {
	DATA=$DIR/data-$1
	log "starting macro server in $DATA, API port $ADDR"
	setsid "$REPO/bin/macro" server --data-dir "$DATA" --api-addr "$ADDR" >"$DIR/server-$1.log" 2>&1 &
	SERVER=$!
	for i in $(seq 300); do
		[ -f "$DATA/ca/ca.pem" ] && curl -fsS --cacert "$DATA/ca/ca.pem" "https://$ADDR/apis/macro/v1/ca" >/dev/null 2>&1 && break
		kill -0 "$SERVER" 2>/dev/null || { cat "$DIR/server-$1.log" >&2; exit 1; }
		[ "$i" = 300 ] && { log "server did not answer in 30s"; cat "$DIR/server-$1.log" >&2; exit 1; }
		sleep 0.1
	done
	mkdir -p "$DIR/certs-$1"
	cp "$DATA/ca/ca.pem" "$DIR/certs-$1/ca.crt"
	CERTS=$DIR/certs-$1
}

stop_server() {
	kill -TERM "$SERVER" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$SERVER" 2>/dev/null || true
	SERVER=
	rm -rf "$DATA"
}

nft add table inet "$NFT_TABLE"
nft add chain inet "$NFT_TABLE" input '{ type filter hook input priority 0; policy accept; }'
nft add rule inet "$NFT_TABLE" input tcp dport "$PORT" counter
# rx: bytes the API port has received so far.
rx() { nft list chain inet "$NFT_TABLE" input | awk '/counter/ { for (i = 1; i < NF; i++) if ($i == "bytes") print $(i + 1) }'; }

tenant() {
	"$REPO/bin/macro" admin tenant create "$1" --data-dir "$DATA" >/dev/null 2>&1
	"$REPO/bin/macro" admin token create --tenant "$1" --data-dir "$DATA" 2>/dev/null | grep -o 'kr_[0-9a-f_]*' | tail -1
}

# measure LABEL CMD...: runs CMD, prints a row: wall s, MB received, and
# kra's own "sent" figure when CMD is kra.
measure() {
	local label=$1 t0 t1 r0 r1 out sent
	shift
	r0=$(rx)
	t0=$(date +%s.%N)
	out=$("$@" 2>&1) || { echo "$out" >&2; log "$label failed"; exit 1; }
	t1=$(date +%s.%N)
	r1=$(rx)
	sent=$(echo "$out" | sed -n 's/.*; \(.*\) sent in .*/\1/p' | tail -1)
	awk -v l="$label" -v t="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" -v r="$(( (r1 - r0) ))" -v s="${sent:--}" \
		'BEGIN { printf "| %-44s | %7.2f | %8.1f | %10s |\n", l, t, r / 1000000, s }'
}

mkdir -p bench/out
OUT=bench/out/push-$(date -u +%Y%m%dT%H%M%SZ).txt
{
	echo "# kra push benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "command:  REPS=$REPS bench/push.sh"
	echo "commit:   $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench' 2>/dev/null || echo ' (with uncommitted changes outside bench/)')"
	echo "machine:  $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), data dir on $(df -T "$DIR" | awk 'NR==2 { print $2 }')"
	echo "tools:    $(go version | cut -d' ' -f3), $(skopeo --version)"
	echo "image:    ${IMG_MB} MB docker save archive: busybox + 80, 60, 40, 20 MB incompressible layers; v2 changes the 40 MB one"
	echo "load avg: $(cut -d' ' -f1-3 /proc/loadavg) (before the run)"
	for rep in $(seq "$REPS"); do
		echo
		echo "round $rep"
		echo "| step                                         | wall s  | MB recv  | kra: sent  |"
		echo "|----------------------------------------------|---------|----------|------------|"
		start_server "$rep" >&2
		ta=$(tenant kra)
		tb=$(tenant skopeo)
		home=$DIR/home-$rep
		kra() { HOME=$1 KR_HOST=https://$ADDR KR_CA=$CERTS/ca.crt KR_ACCESS_TOKEN=$ta TMPDIR=$DIR "$REPO/bin/kra" push --progress plain --archive "$2" big:latest; }
		sk() { skopeo copy --quiet --dest-cert-dir "$CERTS" --dest-creds "bench:$tb" "docker-archive:$1" "docker://$ADDR/big:latest"; }
		measure "kra push v1, first time" kra "$home" "$DIR/v1.tar"
		measure "kra push v1 again" kra "$home" "$DIR/v1.tar"
		measure "kra push v1 again, no kra cache (as CI)" kra "$home-fresh" "$DIR/v1.tar"
		measure "kra push v2 (one 40 MB layer changed)" kra "$home" "$DIR/v2.tar"
		measure "skopeo copy v1, first time" sk "$DIR/v1.tar"
		measure "skopeo copy v1 again" sk "$DIR/v1.tar"
		measure "skopeo copy v2 (one 40 MB layer changed)" sk "$DIR/v2.tar"
		stop_server >&2
	done
	echo
	echo "load avg: $(cut -d' ' -f1-3 /proc/loadavg) (after the run)"
} | tee "$OUT"
log "report in $OUT"
