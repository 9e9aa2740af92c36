#!/usr/bin/env bash
# bench/access.sh: a volume's files without a pod. Starts a private `macro
# server` with its API port (WebDAV at /dav/) and --s3-addr, makes a volume
# and a key, and times rclone copying a tree up and back down over WebDAV
# and over S3, beside a plain `cp -r` of the same tree on this machine's disk
# (the floor). The tree: one file of MB megabytes (multipart over S3) and
# SMALL files of 4 KiB. Everything runs over loopback; the report goes to
# stdout and to bench/out/access-<date>.txt.
#
# Needs root (macro server) and rclone. Knobs: MB=200 SMALL=500 REPS=3.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
GO=${GO:-go}
MB=${MB:-200}
SMALL=${SMALL:-500}
REPS=${REPS:-3}

if [ "$(id -u)" != 0 ]; then
	echo "bench/access.sh: needs root (macro server)" >&2
	exit 1
fi
command -v rclone >/dev/null || { echo "bench/access.sh: needs rclone (scripts/setup.sh)" >&2; exit 1; }

log() { echo "access-bench: $*" >&2; }

DIR=$(mktemp -d /tmp/macro-accessbench.XXXXXX)
SERVER=
finish() {
	local rc=$?
	trap - EXIT INT TERM
	log "cleaning up $DIR"
	if [ -n "$SERVER" ]; then
		kill -TERM "$SERVER" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$SERVER" 2>/dev/null || true
	fi
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

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

log "building bin/macro"
$GO build -o bin/macro ./cmd/macro
API=127.0.0.1:$(freeport)
S3=127.0.0.1:$(freeport)
mkdir -p "$DIR/data"
bin/macro server --data-dir "$DIR/data" --api-addr "$API" --s3-addr "$S3" \
	--ingress-http off --ingress-https off --vpc=false >"$DIR/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 300); do
	[ -s "$DIR/data/first-token" ] && [ -S "$DIR/data/docker.sock" ] && break
	kill -0 "$SERVER" 2>/dev/null || { cat "$DIR/server.log" >&2; exit 1; }
	sleep 0.1
done
TOKEN=$(cat "$DIR/data/first-token")
CA=$DIR/data/ca/ca.pem
DOCKER_HOST=unix://$DIR/data/docker.sock docker volume create bench >/dev/null
KEY=$(curl -sS --cacert "$CA" -H "Authorization: Bearer $TOKEN" -d '{"volume":"bench"}' "https://$API/apis/macro/v1/volumekeys")
KEY_ID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$KEY")
SECRET=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["secret"])' "$KEY")

log "making the tree: ${MB} MB and $SMALL files of 4 KiB"
mkdir -p "$DIR/src/small"
head -c "$((MB * 1000 * 1000))" /dev/urandom >"$DIR/src/big.bin"
for i in $(seq "$SMALL"); do head -c 4096 /dev/urandom >"$DIR/src/small/$i"; done
sync

# rc ARGS...: rclone with the cluster CA and the two remotes.
rc() {
	env -u AWS_CA_BUNDLE SSL_CERT_FILE="$CA" \
		RCLONE_CONFIG_DAV_TYPE=webdav RCLONE_CONFIG_DAV_URL="https://$API/dav/bench" RCLONE_CONFIG_DAV_VENDOR=other \
		RCLONE_CONFIG_DAV_BEARER_TOKEN="$TOKEN" \
		RCLONE_CONFIG_S3_TYPE=s3 RCLONE_CONFIG_S3_PROVIDER=Other RCLONE_CONFIG_S3_ENDPOINT="https://$S3" \
		RCLONE_CONFIG_S3_ACCESS_KEY_ID="$KEY_ID" RCLONE_CONFIG_S3_SECRET_ACCESS_KEY="$SECRET" RCLONE_CONFIG_S3_REGION=us-east-1 \
		rclone --config /dev/null "$@"
}

# timed CMD...: wall seconds of CMD.
timed() {
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc
}

OUT=bench/out/access-$(date -u +%Y%m%d-%H%M%S).txt
mkdir -p bench/out
{
	echo "bench/access.sh MB=$MB SMALL=$SMALL REPS=$REPS at $(git rev-parse --short HEAD), $(nproc) CPUs, rclone $(rclone version | head -1 | cut -d' ' -f2)"
	printf '%-22s %s\n' "what" "seconds per run"
	row() { printf '%-22s %s\n' "$1" "$2"; }
	up_dav= down_dav= up_s3= down_s3= big_dav= big_s3= cpt=
	for r in $(seq "$REPS"); do
		cpt+=" $(timed sh -c "cp -r '$DIR/src' '$DIR/cp$r' && sync")"
		up_dav+=" $(timed rc copy "$DIR/src" "dav:r$r")"
		down_dav+=" $(timed rc copy "dav:r$r" "$DIR/backdav$r")"
		big_dav+=" $(timed rc copyto "dav:r$r/big.bin" "$DIR/bigdav$r")"
		up_s3+=" $(timed rc copy "$DIR/src" "s3:bench/s$r")"
		down_s3+=" $(timed rc copy "s3:bench/s$r" "$DIR/backs3$r")"
		big_s3+=" $(timed rc copyto "s3:bench/s$r/big.bin" "$DIR/bigs3$r")"
		cmp "$DIR/src/big.bin" "$DIR/backdav$r/big.bin"
		cmp "$DIR/src/big.bin" "$DIR/backs3$r/big.bin"
		rm -rf "$DIR/cp$r" "$DIR/backdav$r" "$DIR/backs3$r" "$DIR/bigdav$r" "$DIR/bigs3$r"
		rm -rf "$DIR/data/volumes"/*/*/*/"r$r" "$DIR/data/volumes"/*/*/*/"s$r" 2>/dev/null || true
	done
	row "cp -r (the floor)" "$cpt"
	row "WebDAV up (tree)" "$up_dav"
	row "WebDAV down (tree)" "$down_dav"
	row "WebDAV down (big)" "$big_dav"
	row "S3 up (tree)" "$up_s3"
	row "S3 down (tree)" "$down_s3"
	row "S3 down (big)" "$big_s3"
	echo "load avg: $(cut -d' ' -f1-3 /proc/loadavg) (after the run)"
} | tee "$OUT"
log "report in $OUT"
