#!/usr/bin/env bash
# Backup benchmark (run by hand; not part of the test suite).
#
# Starts a private redis-server 7.0 (free port, own --dir, --save '',
# --enable-debug-command yes, rdbcompression no, repl-diskless-sync-delay 0 so
# neither the service nor redis-cli pays the 5 s diskless delay), fills it with
# DEBUG POPULATE for each size, and in the same run, REPEAT times per size,
# alternating which goes first:
#   redis-cli -p P --rdb FILE               (same server, same disk, fsyncs)
#   POST /v2/{project}/instances/{id}/backups, poll GET .../backups every 100 ms
#     until the record is `succeed`          (wall time, POST -> succeed seen)
# The service is restarted before every backup so that its VmHWM (true peak
# RSS) belongs to that backup alone; RSS is also sampled every 50 ms.
# The backup file must equal the redis-cli file's size (±64 bytes).
# Then the same against moto (S3, in memory) for the first size only.
# Goals (issue): service/redis-cli <= 1.05 on the local store; peak RSS
# <= 64 MB and not growing with the dataset.
#
# Usage: bench/backup-bench.sh [fs] [s3]         (default: both)
# Environment:
#   SIZES="1000000:1000 2500000:1000"   KEYS:VALUE_BYTES per dataset (values
#                                       are incompressible for the RDB since
#                                       rdbcompression is off: ~1.0 / ~2.6 GB)
#   REPEAT=3                            runs per size and tool (median reported)
#   S3_SIZE=1                           which SIZES entry (1-based) for S3
#   DCS_BACKUP_LOG=info                 server log filter
#   NO_BUILD=1                          skip `cargo build`
#   KEEP=1                              keep the temp directory
#   BENCH_DIR=/work/tmp                 where temp files go (must have room for
#                                       two copies of the largest RDB); default
#                                       a fresh dir under /work (not tmpfs)
#   DCS_BACKUP_BIN=path                 benchmark this binary instead (implies NO_BUILD)
#   TIMEOUT=300                         seconds before a backup counts as hung
#   PERF=1                              record `perf record -g` of the service
#                                       during the first fs backup of each size
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

SIZES=${SIZES:-"1000000:1000 2500000:1000"}
REPEAT=${REPEAT:-3}
S3_SIZE=${S3_SIZE:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
export DCS_BACKUP_LOG=${DCS_BACKUP_LOG:-info}
BIN=${DCS_BACKUP_BIN:-"$CARGO_TARGET_DIR/release/dcs-backup"}
TIMEOUT=${TIMEOUT:-300}
MOTO="$root/.venv/bin/moto_server"

modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(fs s3)

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v redis-server >/dev/null || die "redis-server missing (apt-get install redis-server)"
for t in redis-cli curl jq python3; do command -v $t >/dev/null || die "$t missing"; done

if [ -z "${NO_BUILD:-}" ] && [ -z "${DCS_BACKUP_BIN:-}" ]; then
  log "cargo build --release --bins (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  cargo build --release --bins --quiet
fi
[ -x "$BIN" ] || die "no binary at $BIN"

# --- processes and cleanup ----------------------------------------------------
base_dir=${BENCH_DIR:-/work}
mkdir -p "$base_dir"
work=$(mktemp -d "$base_dir/dcs-backup-bench.XXXXXX")
pids=()
server_pid=""
sampler_pid=""
cleanup() {
  local p
  for p in $sampler_pid $server_pid "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in $sampler_pid $server_pid "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else log "kept $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 - <<'EOF'
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if p != 6379: print(p); break
EOF
}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
iso_ms() { # 2019-05-10T08:31:16.166Z -> epoch seconds with ms
  python3 -c 'import sys,datetime as d; print("%.3f" % d.datetime.strptime(sys.argv[1], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=d.timezone.utc).timestamp())' "$1"
}
median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
max_of() { sort -g | tail -1; }

# --- redis --------------------------------------------------------------------
rport=$(free_port)
mkdir -p "$work/redis"
redis-server --port "$rport" --bind 127.0.0.1 --dir "$work/redis" --save '' \
  --appendonly no --daemonize no --loglevel warning --enable-debug-command yes \
  --rdbcompression no --repl-diskless-sync yes --repl-diskless-sync-delay 0 \
  > "$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$rport" ping >/dev/null || die "redis did not start"
rcli() { redis-cli -p "$rport" "$@"; }

# --- service ------------------------------------------------------------------
# start_service MODE: (re)starts `dcs-backup serve` on $port with data in $work/svc-MODE.
starts=0
port=$(free_port)
base="http://127.0.0.1:$port"
start_service() {
  local mode=$1 args=()
  stop_service
  svc_dir="$work/svc-$mode"
  mkdir -p "$svc_dir"
  if [ "$mode" = s3 ]; then
    args=(--storage "s3://bench?endpoint=http://127.0.0.1:$s3port&region=us-east-1&path_style=true")
  fi
  starts=$((starts + 1))
  svc_log="$svc_dir/serve.$starts.log"
  AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
    "$BIN" serve --data-dir "$svc_dir" --listen "127.0.0.1:$port" "${args[@]}" \
    > "$svc_log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do curl -fs "$base/health" >/dev/null 2>&1 && break; sleep 0.05; done
  curl -fs "$base/health" >/dev/null || { tail -20 "$svc_log" >&2; die "server did not start"; }
  project=$(jq -r .project_id "$svc_dir/credentials.json")
  ak=$(jq -r .ak "$svc_dir/credentials.json")
  sk=$(jq -r .sk "$svc_dir/credentials.json")
}
stop_service() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}

# api METHOD URL [BODY] -> response body on stdout (fails on HTTP errors)
api() {
  local m=$1 url=$2 body=${3:-} h=()
  local line
  while IFS= read -r line; do h+=(-H "$line"); done \
    < <(DCS_AK=$ak DCS_SK=$sk "$BIN" dev sign --method "$m" --url "$url" --body "$body")
  if [ -n "$body" ]; then
    curl -fsS -X "$m" "${h[@]}" -H 'Content-Type: application/json' --data-binary "$body" "$url"
  else
    curl -fsS -X "$m" "${h[@]}" "$url"
  fi
}

adopt() {
  local body resp
  body=$(jq -cn --arg port "$rport" '{name: "bench", private_ip: "127.0.0.1", port: ($port | tonumber)}')
  resp=$(api POST "$base/v2/$project/instances" "$body")
  instance=$(jq -r '.instances[0].instance_id' <<<"$resp")
  [ -n "$instance" ] && [ "$instance" != null ] || die "adoption failed: $resp"
  log "adopted redis :$rport as instance $instance"
}

# --- one measurement each ------------------------------------------------------
# run_cli TAG -> sets cli_s, cli_size
run_cli() {
  local f="$work/cli-$1.rdb" t0 t1
  rm -f "$f"; sync
  t0=$(now)
  { TIMEFORMAT='%U %S'; time redis-cli -p "$rport" --rdb "$f" > "$work/cli.log" 2>&1 \
      || { cat "$work/cli.log" >&2; die "redis-cli --rdb failed"; }; } 2> "$work/cli.time"
  t1=$(now)
  cli_cpu=$(awk '{printf "%.2f", $1 + $2}' "$work/cli.time")
  cli_s=$(secs "$t0" "$t1")
  cli_size=$(stat -c %s "$f")
  rm -f "$f"
}

# RSS sampler: every 50 ms, VmRSS in kB, to $1
start_sampler() {
  local out=$1 pid=$server_pid
  ( while kill -0 "$pid" 2>/dev/null; do
      awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true
      sleep 0.05
    done ) > "$out" &
  sampler_pid=$!
}
stop_sampler() { kill "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=""; }

# run_service MODE TAG -> sets svc_s, exec_s, svc_size, hwm_kb, rss_kb, rss0_kb
run_service() {
  local mode=$1 tag=$2 list resp rec status t0 t1 id perf_pid=""
  start_service "$mode"
  sync
  rss0_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status")
  start_sampler "$work/rss-$mode-$tag.txt"
  if [ -n "${PERF:-}" ] && [ "$mode" = fs ] && [ "${tag##*-}" = 1 ]; then
    perf record -F 499 -g -p "$server_pid" -o "$work/perf-$tag.data" > /dev/null 2>&1 &
    perf_pid=$!
    sleep 0.3
  fi
  list="$base/v2/$project/instances/$instance/backups"
  t0=$(now)
  # A remark per run: the same signed POST twice in one second is a replay.
  resp=$(api POST "$list" "$(jq -cn --arg r "bench $tag" '{remark: $r, backup_format: "rdb"}')")
  id=$(jq -r .backup_id <<<"$resp")
  [ -n "$id" ] && [ "$id" != null ] || die "backup not started: $resp"
  fail=""
  while :; do
    sleep 0.1
    resp=$(api GET "$list?limit=1")
    rec=$(jq -c --arg id "$id" '.backup_record_response[] | select(.backup_id == $id)' <<<"$resp")
    status=$(jq -r .status <<<"$rec")
    case $status in
      succeed) t1=$(now); break ;;
      failed) fail="backup failed: $rec" ;;
    esac
    # a panicking job task leaves the record `backuping` until its lease ends
    if grep -q 'panicked at' "$svc_log"; then
      fail="service panicked: $(grep -m1 -A1 'panicked at' "$svc_log" | tr '\n' ' ' | sed 's/\x1b\[[0-9;]*m//g')"
    fi
    [ "$(secs "$t0" "$(now)" | cut -d. -f1)" -lt "$TIMEOUT" ] || fail="no succeed after $TIMEOUT s: $rec"
    if [ -n "$fail" ]; then
      stop_sampler
      [ -z "$perf_pid" ] || { kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; }
      stop_service
      log "FAILED ($mode $tag): $fail"
      return 1
    fi
  done
  svc_s=$(secs "$t0" "$t1")
  hwm_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status")
  # CPU seconds (user + system) of the whole service process, start-up included
  svc_cpu=$(awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz}' "/proc/$server_pid/stat")
  stop_sampler
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  rss_kb=$(max_of < "$work/rss-$mode-$tag.txt")
  exec_s=$(secs "$(iso_ms "$(jq -r .execution_at <<<"$rec")")" "$(iso_ms "$(jq -r .updated_at <<<"$rec")")")
  svc_size=$(jq -r .size <<<"$rec")
  # free the store (and moto's memory) for the next run
  api DELETE "$list/$id" > /dev/null || log "WARNING: could not delete backup $id"
  stop_service
}

# --- run ----------------------------------------------------------------------
summary="$work/summary"; : > "$summary"
raw="$work/raw"; : > "$raw"
s3port=""

bench_size() { # MODE KEYS VALUE_BYTES REPEAT
  local mode=$1 keys=$2 vsize=$3 reps=$4 i tag rdb_mb dbsize cli_first
  rdb_mb=""
  for i in $(seq 1 "$reps"); do
    tag="$keys-$i"
    # alternate the order so neither side always runs on a cooler page cache
    if [ $((i % 2)) -eq 1 ]; then cli_first=1; else cli_first=""; fi
    [ -z "$cli_first" ] || run_cli "$tag"
    if ! run_service "$mode" "$tag"; then
      echo "$mode $keys $vsize FAILED $fail" >> "$work/failures"
      return 0
    fi
    [ -n "$cli_first" ] || run_cli "$tag"
    local d=$((svc_size - cli_size)); d=${d#-}
    [ "$d" -le 64 ] || die "size mismatch: service $svc_size bytes, redis-cli $cli_size bytes"
    log "$mode $keys x $vsize B run $i: redis-cli ${cli_s} s, service ${svc_s} s (exec ${exec_s} s), ratio $(awk -v a="$svc_s" -v b="$cli_s" 'BEGIN {printf "%.3f", a / b}'), VmHWM $((hwm_kb / 1024)) MiB, sampled max RSS $((rss_kb / 1024)) MiB (idle $((rss0_kb / 1024)) MiB), RDB $cli_size B (service $svc_size B), CPU s: redis-cli $cli_cpu, service $svc_cpu"
    echo "$mode $keys $vsize $i $cli_size $svc_size $cli_s $svc_s $exec_s $hwm_kb $rss_kb $rss0_kb $cli_cpu $svc_cpu" >> "$raw"
  done
}

populate() { # KEYS VALUE_BYTES
  local t0 t1
  rcli flushall > /dev/null
  t0=$(now)
  rcli debug populate "$1" key "$2" > /dev/null
  t1=$(now)
  log "populated $1 keys x $2 B in $(secs "$t0" "$t1") s; used_memory $(rcli info memory | awk -F: '/^used_memory_human:/ {print $2}' | tr -d '\r')"
  # one untimed snapshot first: the first fork after a fill is slower for whoever goes first
  run_cli warmup
  log "warm-up snapshot: redis-cli ${cli_s} s, $cli_size B"
}

for mode in "${modes[@]}"; do
  case $mode in
    fs) ;;
    s3)
      [ -x "$MOTO" ] || die "no moto at $MOTO"
      s3port=$(free_port)
      "$MOTO" -H 127.0.0.1 -p "$s3port" > "$work/moto.log" 2>&1 &
      pids+=($!)
      for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$s3port/" >/dev/null 2>&1 && break; sleep 0.1; done
      curl -fsS -X PUT "http://127.0.0.1:$s3port/bench" > /dev/null || die "cannot create the bucket"
      ;;
    *) die "unknown mode $mode" ;;
  esac
  start_service "$mode"; adopt; stop_service
  n=0
  for s in $SIZES; do
    n=$((n + 1))
    if [ "$mode" = s3 ] && [ "$n" != "$S3_SIZE" ]; then continue; fi
    populate "${s%%:*}" "${s##*:}"
    bench_size "$mode" "${s%%:*}" "${s##*:}" "$REPEAT"
  done
done

# --- report -------------------------------------------------------------------
{
  printf '\n# dcs-backup backup benchmark, %s, %s, %s cores, commit %s, redis %s\n' \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$(uname -m)" "$(nproc)" "$(git rev-parse --short HEAD)" \
    "$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
  printf 'medians of %s runs; peak RSS = VmHWM of a service started fresh for each backup (max over runs)\n' "$REPEAT"
  printf '| store | keys x value | RDB MB | redis-cli s | service s | ratio | exec s | peak RSS MB (VmHWM) | sampled max RSS MB |\n'
  printf '|---|---|---|---|---|---|---|---|---|\n'
  awk '{print $1, $2, $3}' "$raw" | uniq | while read -r mode keys vsize; do
    sel() { awk -v m="$mode" -v k="$keys" -v c="$1" '$1 == m && $2 == k {print $c}' "$raw"; }
    cli=$(sel 7 | median); svc=$(sel 8 | median); ex=$(sel 9 | median)
    hwm=$(sel 10 | max_of); rss=$(sel 11 | max_of); size=$(sel 5 | median)
    ratios=$(awk -v m="$mode" -v k="$keys" '$1 == m && $2 == k {printf "%.3f ", $8 / $7}' "$raw")
    printf '| %s | %s x %s B | %.0f | %.2f | %.2f | %.3f | %.2f | %.1f | %.1f |\n' \
      "$mode" "$keys" "$vsize" "$(awk -v s="$size" 'BEGIN {print s / 1e6}')" "$cli" "$svc" \
      "$(awk -v a="$svc" -v b="$cli" 'BEGIN {print a / b}')" "$ex" \
      "$(awk -v k="$hwm" 'BEGIN {print k / 1024}')" "$(awk -v k="$rss" 'BEGIN {print k / 1024}')"
    printf '  (per-run ratios: %s)\n' "$ratios" >> "$work/notes"
  done
  printf '\nraw: mode keys value_bytes run cli_bytes svc_bytes cli_s svc_s exec_s vmhwm_kb sampled_rss_kb idle_rss_kb cli_cpu_s svc_cpu_s\n'
  cat "$raw"
} > "$work/report"
if [ -f "$work/failures" ]; then
  { printf '\nfailures (no figures for these):\n'; sed 's/^/  /' "$work/failures"; } >> "$work/report"
fi
cat "$work/report"
[ ! -f "$work/notes" ] || cat "$work/notes"
if [ -n "${PERF:-}" ]; then
  for f in "$work"/perf-*.data; do
    [ -f "$f" ] || continue
    perf report -i "$f" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40 > "${f%.data}.txt" || true
    log "perf profile: ${f%.data}.txt"
  done
fi
