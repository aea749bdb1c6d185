#!/usr/bin/env bash
# Test-restore benchmark (run by hand; not part of the test suite).
#
# Starts a private redis-server (free port, own --dir, --save '',
# rdbcompression no so the RDB is as big as the data), fills it with
# DEBUG POPULATE (default 10,000,000 keys of 100 bytes: an RDB of ~1.2 GB),
# backs it up through the service, then, REPEAT times each, alternating:
#   (a) the same server binary started on a copy of the backup's RDB file,
#       timed from spawn until it answers PING (loading:0);
#   (b) POST …/backups/{id}/verifications {"sample": 1000} into a scratch
#       sandbox started from the same binary, timed from the POST until the
#       record is passed (verify pass, sandbox start, load, counts, sample,
#       sandbox stop; DEBUG DIGEST is not taken over 1,000,000 keys), polled
#       every 100 ms; its own
#       load_seconds is reported beside it.
# Goal (issue 17): (b)/(a) <= 1.3.
#
# Usage: bench/verify-bench.sh
# Environment:
#   KEYS=10000000 VALUE=100   DEBUG POPULATE size
#   REPEAT=3                  runs of each (median reported)
#   SERVER=$(which redis-server)
#   NO_BUILD=1                skip `cargo build --release`
#   DCS_BACKUP_BIN=path       benchmark this binary (implies NO_BUILD)
#   BENCH_DIR=/work           where temp files go (room for three RDB copies)
#   KEEP=1                    keep the temp directory
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-10000000}
VALUE=${VALUE:-100}
REPEAT=${REPEAT:-3}
SERVER=${SERVER:-$(command -v redis-server)}
export DCS_BACKUP_LOG=${DCS_BACKUP_LOG:-info}
BIN=${DCS_BACKUP_BIN:-"${CARGO_TARGET_DIR:-target}/release/dcs-backup"}

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
for t in redis-cli curl jq python3; do command -v $t >/dev/null || die "$t missing"; done
[ -x "$SERVER" ] || die "no redis-server"
if [ -z "${NO_BUILD:-}" ] && [ -z "${DCS_BACKUP_BIN:-}" ]; then
  log "cargo build --release --bins"
  cargo build --release --bins --quiet
fi
[ -x "$BIN" ] || die "no binary at $BIN"

base_dir=${BENCH_DIR:-/work}
work=$(mktemp -d "$base_dir/dcs-verify-bench.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else log "kept $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# --- source ---------------------------------------------------------------------
src_port=$(free_port)
mkdir -p "$work/src"
"$SERVER" --port "$src_port" --bind 127.0.0.1 --dir "$work/src" --save '' --appendonly no \
  --rdbcompression no --enable-debug-command yes --repl-diskless-sync yes \
  --repl-diskless-sync-delay 0 > "$work/src/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do [ "$(redis-cli -p "$src_port" ping 2>/dev/null)" = PONG ] && break; sleep 0.05; done
log "DEBUG POPULATE $KEYS key $VALUE"
redis-cli -p "$src_port" debug populate "$KEYS" key "$VALUE" >/dev/null
src_digest=$(redis-cli -p "$src_port" debug digest | tr -d '\r')

# --- service --------------------------------------------------------------------
port=$(free_port)
base="http://127.0.0.1:$port"
svc="$work/svc"
mkdir -p "$svc"
"$BIN" serve --data-dir "$svc" --listen "127.0.0.1:$port" \
  --sandbox-server "bench=$SERVER" --sandbox-max-memory $((16 << 30)) > "$svc/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do curl -fs "$base/health" >/dev/null 2>&1 && break; sleep 0.05; done
curl -fs "$base/health" >/dev/null || { tail -20 "$svc/serve.log" >&2; die "server did not start"; }
project=$(jq -r .project_id "$svc/credentials.json")
ak=$(jq -r .ak "$svc/credentials.json")
sk=$(jq -r .sk "$svc/credentials.json")
api() {
  local m=$1 url=$2 body=${3:-} h=() line
  while IFS= read -r line; do h+=(-H "$line"); done \
    < <(DCS_AK=$ak DCS_SK=$sk "$BIN" dev sign --method "$m" --url "$url" --body "$body")
  if [ -n "$body" ]; then
    curl -fsS -X "$m" "${h[@]}" -H 'Content-Type: application/json' --data-binary "$body" "$url"
  else
    curl -fsS -X "$m" "${h[@]}" "$url"
  fi
}
inst=$(api POST "$base/v2/$project/instances" \
  "$(jq -cn --arg p "$src_port" '{name: "bench-src", private_ip: "127.0.0.1", port: ($p | tonumber)}')" \
  | jq -r '.instances[0].instance_id')
backup=$(api POST "$base/v2/$project/instances/$inst/backups" '{"remark":"bench"}' | jq -r .backup_id)
log "backup $backup"
while :; do
  st=$(api GET "$base/v2/$project/instances/$inst/backups?limit=10" \
    | jq -r --arg b "$backup" '.backup_record_response[] | select(.backup_id == $b) | .status')
  [ "$st" = succeed ] && break
  [ "$st" = failed ] && die "backup failed"
  sleep 0.5
done
rdb=$(find "$svc/backups" -name '*.rdb' | head -1)
size=$(stat -c %s "$rdb")
log "RDB $(awk -v s="$size" 'BEGIN {printf "%.2f GB", s / 1e9}') at $rdb"
redis-cli -p "$src_port" shutdown nosave >/dev/null 2>&1 || true

# --- (a) the server loading the file at start-up ----------------------------------
startup_load() {
  local dir="$work/startup" p t0 t1 pid
  rm -rf "$dir"; mkdir -p "$dir"
  cp "$rdb" "$dir/dump.rdb"
  cat "$dir/dump.rdb" > /dev/null # in the page cache, as the service's copy is
  p=$(free_port)
  t0=$(now)
  "$SERVER" --port "$p" --bind 127.0.0.1 --dir "$dir" --dbfilename dump.rdb --save '' \
    --appendonly no --enable-debug-command yes > "$dir/redis.log" 2>&1 &
  pid=$!
  until [ "$(redis-cli -p "$p" ping 2>/dev/null)" = PONG ]; do
    kill -0 "$pid" 2>/dev/null || die "start-up load died"
    sleep 0.01
  done
  t1=$(now)
  [ "$(redis-cli -p "$p" debug digest | tr -d '\r')" = "$src_digest" ] || die "start-up digest differs"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  secs "$t0" "$t1"
}

# --- (b) a test restore into a scratch sandbox ------------------------------------
test_restore() {
  local t0 t1 id rec st
  t0=$(now)
  id=$(api POST "$base/v2/$project/instances/$inst/backups/$backup/verifications" '{"sample":1000}' \
    | jq -r .verification_id)
  while :; do
    rec=$(api GET "$base/v2/$project/instances/$inst/backups/$backup/verifications?limit=1" \
      | jq -c --arg v "$id" '.verifications[] | select(.verification_id == $v)')
    st=$(jq -r .status <<<"$rec")
    case $st in passed) break ;; failed|skipped) die "test restore $st: $rec" ;; esac
    sleep 0.1
  done
  t1=$(now)
  [ "$(jq -r .mismatches <<<"$rec")" = 0 ] || die "mismatches: $rec"
  printf '%s %s %s\n' "$(secs "$t0" "$t1")" "$(jq -r .load_seconds <<<"$rec")" "$(jq -r .keys_checked <<<"$rec")"
}

a=(); b=(); l=()
for i in $(seq 1 "$REPEAT"); do
  if [ $((i % 2)) -eq 1 ]; then
    x=$(startup_load); read -r y z k < <(test_restore)
  else
    read -r y z k < <(test_restore); x=$(startup_load)
  fi
  log "run $i: start-up load $x s; test restore $y s (load $z s, $k keys compared)"
  a+=("$x"); b+=("$y"); l+=("$z")
done
ma=$(printf '%s\n' "${a[@]}" | median)
mb=$(printf '%s\n' "${b[@]}" | median)
ml=$(printf '%s\n' "${l[@]}" | median)
printf 'keys %s, RDB %s bytes, server %s\n' "$KEYS" "$size" "$("$SERVER" --version | cut -d' ' -f3)"
printf 'start-up load (median of %s): %s s\n' "$REPEAT" "$ma"
printf 'test restore  (median of %s): %s s (of which load %s s)\n' "$REPEAT" "$mb" "$ml"
awk -v a="$ma" -v b="$mb" 'BEGIN {printf "ratio test restore / start-up load: %.2f (goal <= 1.3)\n", b / a}'
