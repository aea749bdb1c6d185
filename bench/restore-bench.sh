#!/usr/bin/env bash
# Restore benchmark (run by hand; not part of the test suite).
#
# One run, one RDB (>= 1 GB, made by a backup through the API of a redis
# filled like bench/backup-bench.sh does: DEBUG POPULATE, rdbcompression no):
#   (a) native load: a fresh redis-server started on that file as dump.rdb,
#       from exec until PING answers (also the log's "DB loaded from disk")
#   (b) POST /restores into a fresh, empty standalone redis-server with the
#       service in --restore-mode auto (the replication feed), POST -> record
#       `succeed` (the end seen in the service log as it is written, then
#       checked through the API)
#   (c) the same with --restore-mode slice (RESTORE pipelines)
#   (d) `redis-cli --pipe` of a file with the same RESTORE ... ABSTTL REPLACE
#       commands (bench/gen-restore-pipe.py, generation not timed) into a
#       fresh empty redis-server
#   cluster: a fresh 3-master cluster as target (slicing, the only path for
#       clusters); total time and, per shard, when its DBSIZE reached its
#       final count (sampled every 100 ms)
# Every target server uses the same flags as (a). The service is restarted
# before each restore so its VmHWM (peak RSS) belongs to that restore;
# each target is checked afterwards: DBSIZE = source, DEBUG DIGEST = source
# (standalone), role master.
# Goals (issue): (b) <= 1.25 x (a); (c) <= 1.0 x (d); service peak RSS <= 200 MB.
#
# Usage: bench/restore-bench.sh
# Environment:
#   KEYS=1000000 VALUE=1000     DEBUG POPULATE size (~1.0 GB RDB)
#   REPEAT=3                    rounds; each runs (a) (b) (c) (d) once, in an
#                               order rotated per round; reported: each
#                               round's (b)/(a) and (c)/(d) and their medians
#   CLUSTER_REPEAT=1            cluster restores (0 = skip)
#   CASES="a b c d"             which of the standalone cases to run
#   NO_BUILD=1                  skip `cargo build`
#   DCS_BACKUP_BIN=path         benchmark this binary (implies NO_BUILD)
#   BENCH_DIR=/work             where temp files go (needs ~4x the RDB size)
#   KEEP=1                      keep the temp directory
#   TIMEOUT=900                 seconds before a job counts as hung
#   PERF=1                      `perf record -g` of the service during the
#                               first (b) and (c) run, reports in the temp dir
#   DCS_BACKUP_LOG=info         server log filter
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

KEYS=${KEYS:-1000000}
VALUE=${VALUE:-1000}
REPEAT=${REPEAT:-3}
CLUSTER_REPEAT=${CLUSTER_REPEAT:-1}
CASES=" ${CASES:-a b c d} "
has() { [[ $CASES == *" $1 "* ]]; }
TIMEOUT=${TIMEOUT:-900}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
export DCS_BACKUP_LOG=${DCS_BACKUP_LOG:-info}
BIN=${DCS_BACKUP_BIN:-"$CARGO_TARGET_DIR/release/dcs-backup"}
PY="$root/.venv/bin/python"

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for t in redis-server redis-cli curl jq python3; do command -v $t >/dev/null || die "$t missing"; done
[ -x "$PY" ] && "$PY" -c 'import redis' 2>/dev/null || die "$PY with the redis package missing"

if [ -z "${NO_BUILD:-}" ] && [ -z "${DCS_BACKUP_BIN:-}" ]; then
  log "cargo build --release --bins (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  cargo build --release --bins --quiet
fi
[ -x "$BIN" ] || die "no binary at $BIN"

# --- processes and cleanup ----------------------------------------------------
base_dir=${BENCH_DIR:-/work}
mkdir -p "$base_dir"
work=$(mktemp -d "$base_dir/dcs-restore-bench.XXXXXX")
declare -A redis_pids=()   # port -> pid
server_pid=""
sampler_pid=""
shard_sampler_pid=""
perf_pid=""
cleanup() {
  local p
  for p in $perf_pid $sampler_pid $shard_sampler_pid $server_pid "${redis_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in $perf_pid $sampler_pid $shard_sampler_pid $server_pid "${redis_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else log "kept $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 - <<'EOF'
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    # the cluster bus defaults to port + 10000: keep both clear of 6379
    if p != 6379 and p + 10000 != 6379 and p < 55000: print(p); break
EOF
}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
max_of() { sort -g | tail -1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# --- redis servers ------------------------------------------------------------
# Same flags for every server: the source, (a), and every target.
REDIS_FLAGS=(--bind 127.0.0.1 --save '' --appendonly no --daemonize no --loglevel notice
  --enable-debug-command yes --rdbcompression no --repl-diskless-sync yes
  --repl-diskless-sync-delay 0)

# start_redis DIR PORT [extra flags...]: starts, does not wait (sets last_pid)
start_redis() {
  local dir=$1 port=$2; shift 2
  mkdir -p "$dir"
  redis-server --port "$port" --dir "$dir" "${REDIS_FLAGS[@]}" "$@" > "$dir/redis.log" 2>&1 &
  last_pid=$!
  redis_pids[$port]=$last_pid
}
# wait_ready PORT: until PING answers PONG (not -LOADING)
wait_ready() {
  local i
  for i in $(seq 1 100000); do
    [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
    kill -0 "${redis_pids[$1]}" 2>/dev/null || die "redis :$1 died"
    sleep 0.01
  done
  die "redis :$1 not ready"
}
stop_redis() {
  local port=$1 p=${redis_pids[$1]:-}
  [ -n "$p" ] || return 0
  kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
  unset "redis_pids[$port]"
}
# cpu_of PID: user + system CPU seconds of a process so far
# wait_of PID: seconds the process (main thread) spent runnable but not running
wait_of() { awk '{printf "%.3f", $2 / 1e9}' "/proc/$1/task/$1/schedstat"; }
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz}' "/proc/$1/stat"; }
dbsize() { redis-cli -p "$1" dbsize | tr -d '\r'; }
# target_stats PORT: how the target spent its time (reads, RESTORE cost)
target_stats() {
  { redis-cli -p "$1" info stats; redis-cli -p "$1" info commandstats; } | tr -d '\r' | awk -F'[:,=]' '
    /^total_reads_processed:/ {r = $2}
    /^total_net_input_bytes:/ {b = $2}
    /^cmdstat_restore:/ {for (i = 2; i < NF; i += 2) if ($i == "usec") u = $(i + 1)}
    END {printf "reads %d (%.1f KB each), RESTORE %.2f s", r, r ? b / r / 1024 : 0, u / 1e6}'
}
digest() { redis-cli -p "$1" debug digest | tr -d '\r'; }

# --- service ------------------------------------------------------------------
port=$(free_port)
base="http://127.0.0.1:$port"
svc_dir="$work/svc"
starts=0
# start_service MODE: (re)starts `dcs-backup serve --restore-mode MODE` on one data dir
start_service() {
  local mode=$1
  stop_service
  mkdir -p "$svc_dir"
  starts=$((starts + 1))
  svc_log="$svc_dir/serve.$starts.$mode.log"
  "$BIN" serve --data-dir "$svc_dir" --listen "127.0.0.1:$port" --restore-mode "$mode" \
    > "$svc_log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 200); do curl -fs "$base/health" >/dev/null 2>&1 && break; sleep 0.05; done
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
  local m=$1 url=$2 body=${3:-} h=() line
  while IFS= read -r line; do h+=(-H "$line"); done \
    < <(DCS_AK=$ak DCS_SK=$sk "$BIN" dev sign --method "$m" --url "$url" --body "$body")
  if [ -n "$body" ]; then
    curl -fsS -X "$m" "${h[@]}" -H 'Content-Type: application/json' --data-binary "$body" "$url"
  else
    curl -fsS -X "$m" "${h[@]}" "$url"
  fi
}

# adopt NAME PORT -> instance id on stdout
adopt() {
  local body resp id
  body=$(jq -cn --arg n "$1" --arg port "$2" '{name: $n, private_ip: "127.0.0.1", port: ($port | tonumber)}')
  resp=$(api POST "$base/v2/$project/instances" "$body")
  id=$(jq -r '.instances[0].instance_id' <<<"$resp")
  [ -n "$id" ] && [ "$id" != null ] || die "adoption of :$2 failed: $resp"
  echo "$id"
}

# RSS sampler: every 500 ms, VmRSS in kB, to $1 (a cross-check of VmHWM)
start_sampler() {
  local out=$1 pid=$server_pid
  ( while kill -0 "$pid" 2>/dev/null; do
      awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true
      sleep 0.5
    done ) > "$out" &
  sampler_pid=$!
}
stop_sampler() { kill "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=""; }

# restore_into INSTANCE TAG -> sets rs_s (POST -> succeed), hwm_kb, rss_kb, svc_cpu, rs_path
restore_into() {
  local inst=$1 tag=$2 list resp rec status t0 t1 id
  start_sampler "$work/rss-$tag.txt"
  if [ -n "${PERF:-}" ] && [ "${tag##*-}" = 1 ]; then
    perf record -F 499 -g -p "$server_pid" -o "$work/perf-$tag.data" > /dev/null 2>&1 &
    perf_pid=$!
    sleep 0.3
  fi
  list="$base/v2/$project/instances/$inst/restores"
  # The end is seen in the service log, by a tail that sleeps until the log
  # grows (inotify): polling the API every 100 ms (a `dev sign` process,
  # curl, jq) took CPU from the very Redis being measured.
  local seen=$work/seen-$tag.txt
  : > "$seen"
  ( timeout "$TIMEOUT" tail -n 0 -F "$svc_log" 2>/dev/null \
      | grep -m1 --line-buffered -E 'restore (succeeded|failed)|panicked at' > "$seen" ) &
  local waiter=$!
  sleep 0.2   # tail is watching
  t0=$(now)
  # A remark per run: the same signed POST twice in one second is a replay.
  resp=$(api POST "$list" "$(jq -cn --arg b "$backup_id" --arg r "bench $tag" '{backup_id: $b, remark: $r}')")
  id=$(jq -r .restore_id <<<"$resp")
  [ -n "$id" ] && [ "$id" != null ] || die "restore not started: $resp"
  wait "$waiter" || true
  t1=$(now)
  [ -s "$seen" ] || die "$tag: no end in the log after $TIMEOUT s (log $svc_log)"
  # the record is written just after the log line
  for _ in $(seq 1 50); do
    resp=$(api GET "$list?limit=1")
    rec=$(jq -c --arg id "$id" '.restore_record_response[]? | select(.restore_id == $id)' <<<"$resp")
    status=$(jq -r '.status // empty' <<<"$rec")
    [ "$status" = restoring ] || break
    sleep 0.1
  done
  [ "$status" = succeed ] || die "$tag: restore ended $status: $rec $(cat "$seen") (log $svc_log)"
  rs_s=$(secs "$t0" "$t1")
  hwm_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status")
  svc_cpu=$(awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz}' "/proc/$server_pid/stat")
  stop_sampler
  # per-thread CPU seconds and context switches of the service
  for t in /proc/"$server_pid"/task/*; do
    printf '%s %s %s %s\n' "$(cat "$t/comm")" \
      "$(awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz}' "$t/stat")" \
      "$(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status")" \
      "$(awk '/^nonvoluntary_ctxt_switches/ {print $2}' "$t/status")"
  done | sort -k2 -gr > "$work/threads-$tag.txt"
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; perf_pid=""; fi
  rss_kb=$(max_of < "$work/rss-$tag.txt")
  rs_path=$(grep -o 'restore path: [a-z ]*' "$svc_log" | head -1 | sed 's/restore path: //; s/ *$//')
}

# check_target PORT TAG: same keys (and digest for standalone) as the source, role master
check_target() {
  local p=$1 n d role
  n=$(dbsize "$p")
  [ "$n" = "$src_keys" ] || die "$2: target has $n keys, source $src_keys"
  d=$(digest "$p")
  [ "$d" = "$src_digest" ] || die "$2: target digest $d != source $src_digest"
  role=$(redis-cli -p "$p" info replication | awk -F: '/^role:/ {print $2}' | tr -d '\r')
  [ "$role" = master ] || die "$2: target role $role"
}

raw="$work/raw"; : > "$raw"   # case run seconds hwm_kb rss_kb cpu_s extra
record() { echo "$*" >> "$raw"; }

# --- source and backup --------------------------------------------------------
log "machine: $(nproc) cores, load $(loadavg)"
src_port=$(free_port)
start_redis "$work/src" "$src_port"; wait_ready "$src_port"
t0=$(now)
redis-cli -p "$src_port" debug populate "$KEYS" key "$VALUE" > /dev/null
log "populated $KEYS keys x $VALUE B in $(secs "$t0" "$(now)") s"
src_keys=$(dbsize "$src_port")
src_digest=$(digest "$src_port")

start_service auto
src_inst=$(adopt source "$src_port")
blist="$base/v2/$project/instances/$src_inst/backups"
t0=$(now)
backup_id=$(api POST "$blist" '{"remark":"restore bench","backup_format":"rdb"}' | jq -r .backup_id)
while :; do
  sleep 0.2
  st=$(api GET "$blist?limit=1" | jq -r --arg id "$backup_id" '.backup_record_response[] | select(.backup_id == $id) | .status')
  [ "$st" = succeed ] && break
  [ "$st" != failed ] || die "backup failed"
  [ "$(secs "$t0" "$(now)" | cut -d. -f1)" -lt "$TIMEOUT" ] || die "backup hung"
done
rdb=$(find "$svc_dir" -name '*.rdb' -path "*$backup_id*" | head -1)
[ -n "$rdb" ] || rdb=$(find "$svc_dir" -name '*.rdb' | head -1)
[ -f "$rdb" ] || die "no backup file under $svc_dir"
rdb_bytes=$(stat -c %s "$rdb")
log "backup $backup_id in $(secs "$t0" "$(now)") s: $rdb ($rdb_bytes bytes, $src_keys keys)"
[ "$rdb_bytes" -ge 1000000000 ] || log "WARNING: RDB below 1 GB; raise KEYS or VALUE"
stop_redis "$src_port"   # free its memory; keys and digest are noted

# --- (d)'s file, from an untimed warm-up load --------------------------------
# One untimed load first: on this VM the first processes to touch fresh
# memory after a while load up to 2x slower, and (a) is the physical limit.
# (d)'s file is made from that server, which then goes away so that no
# extra loaded server sits beside the timed cases.
p=$(free_port); d="$work/native-warmup"
mkdir -p "$d"; cp "$rdb" "$d/dump.rdb"
start_redis "$d" "$p" --dbfilename dump.rdb; wait_ready "$p"
log "warm-up load: $(grep -o 'DB loaded from disk: [0-9.]* seconds' "$d/redis.log" | awk '{print $5}') s (not counted)"
pipe_file="$work/restore.resp"
if has d; then
  t0=$(now)
  read -r gen_keys pipe_bytes < <("$PY" "$root/bench/gen-restore-pipe.py" "$p" "$pipe_file")
  log "generated $pipe_file: $gen_keys RESTORE commands, $pipe_bytes bytes in $(secs "$t0" "$(now)") s (not timed)"
  [ "$gen_keys" = "$src_keys" ] || die "generator wrote $gen_keys keys"
fi
stop_redis "$p"; rm -rf "$d"

# --- the cases ----------------------------------------------------------------
# (a) native load: exec -> PING answers PONG
run_a() {
  local i=$1 p d t0 t1 loaded n a_s
  p=$(free_port); d="$work/native-$i"
  mkdir -p "$d"; cp "$rdb" "$d/dump.rdb"; sync
  t0=$(now)
  start_redis "$d" "$p" --dbfilename dump.rdb
  wait_ready "$p"
  t1=$(now)
  loaded=$(grep -o 'DB loaded from disk: [0-9.]* seconds' "$d/redis.log" | awk '{print $5}')
  n=$(dbsize "$p"); [ "$n" = "$src_keys" ] || die "(a) loaded $n keys"
  a_s=$(secs "$t0" "$t1")
  log "(a) native load run $i: ${a_s} s to PONG (log: DB loaded in ${loaded} s), load $(loadavg)"
  record a "$i" "$a_s" 0 0 0 "$loaded"
  stop_redis "$p"; rm -rf "$d"
}

# (b) / (c): a restore through the API with --restore-mode MODE
run_api() {
  local c=$1 i=$2 mode p d inst tcpu0 twait0 tcpu twait
  case $c in b) mode=auto ;; c) mode=slice ;; esac
  p=$(free_port); d="$work/target-$c-$i"
  start_redis "$d" "$p"; wait_ready "$p"
  start_service "$mode"   # fresh process: VmHWM is this restore's
  inst=$(adopt "target-$c-$i" "$p")
  tcpu0=$(cpu_of "${redis_pids[$p]}"); twait0=$(wait_of "${redis_pids[$p]}")
  restore_into "$inst" "$c-$i"
  tcpu=$(awk -v a="$tcpu0" -v b="$(cpu_of "${redis_pids[$p]}")" 'BEGIN {printf "%.2f", b - a}')
  twait=$(awk -v a="$twait0" -v b="$(wait_of "${redis_pids[$p]}")" 'BEGIN {printf "%.2f", b - a}')
  check_target "$p" "($c) run $i"
  [ "$c" = b ] || log "($c) target: $(target_stats "$p")"   # a feed is no client traffic
  log "($c) $mode run $i: ${rs_s} s via ${rs_path}, VmHWM $((hwm_kb / 1024)) MiB, sampled max RSS $((rss_kb / 1024)) MiB, CPU s: service ${svc_cpu}, target redis ${tcpu} (waited for a CPU ${twait}); load $(loadavg)"
  record "$c" "$i" "$rs_s" "$hwm_kb" "$rss_kb" "$svc_cpu" "${rs_path// /_}" "$tcpu"
  cp "$svc_log" "$work/log-$c-$i.txt"
  stop_service
  stop_redis "$p"; rm -rf "$d"
}

# (d) redis-cli --pipe of the same RESTORE commands
run_d() {
  local i=$1 p d t0 t1 tcpu twait tcpu0 twait0 d_s cli_cpu
  p=$(free_port); d="$work/target-d-$i"
  start_redis "$d" "$p"; wait_ready "$p"
  cat "$pipe_file" > /dev/null   # page cache, as the service's store file is
  tcpu0=$(cpu_of "${redis_pids[$p]}"); twait0=$(wait_of "${redis_pids[$p]}")
  t0=$(now)
  { TIMEFORMAT='%U %S'; time redis-cli -p "$p" --pipe < "$pipe_file" > "$work/pipe.out" 2>&1; } 2> "$work/pipe.time"
  t1=$(now)
  tcpu=$(awk -v a="$tcpu0" -v b="$(cpu_of "${redis_pids[$p]}")" 'BEGIN {printf "%.2f", b - a}')
  twait=$(awk -v a="$twait0" -v b="$(wait_of "${redis_pids[$p]}")" 'BEGIN {printf "%.2f", b - a}')
  grep -q 'errors: 0' "$work/pipe.out" || { cat "$work/pipe.out" >&2; die "(d) errors"; }
  check_target "$p" "(d) run $i"
  log "(d) target: $(target_stats "$p")"
  d_s=$(secs "$t0" "$t1")
  cli_cpu=$(awk '{printf "%.2f", $1 + $2}' "$work/pipe.time")
  log "(d) redis-cli --pipe run $i: ${d_s} s, CPU s: redis-cli ${cli_cpu}, target redis ${tcpu} (waited for a CPU ${twait}); load $(loadavg)"
  record d "$i" "$d_s" 0 0 "$cli_cpu" - "$tcpu"
  stop_redis "$p"; rm -rf "$d"
}

# Rounds: every case once per round, the order rotated from round to round,
# so that the VM's drift (its speed moves by +-20 % over minutes here) falls
# on all cases alike; each round gives its own (b)/(a) and (c)/(d).
order=()
for c in a b c d; do has "$c" && order+=("$c"); done
for i in $(seq 1 "$REPEAT"); do
  n=${#order[@]}
  for k in $(seq 0 $((n - 1))); do
    c=${order[$(((k + i - 1) % n))]}
    case $c in
      a) run_a "$i" ;;
      b | c) run_api "$c" "$i" ;;
      d) run_d "$i" ;;
    esac
  done
done
rm -f "$pipe_file"

# --- cluster ------------------------------------------------------------------
for i in $(seq 1 "$CLUSTER_REPEAT"); do
  cports=()
  for s in 1 2 3; do
    p=$(free_port); bus=$(free_port)
    while [ "$bus" = "$p" ]; do bus=$(free_port); done
    start_redis "$work/cluster-$i-$s" "$p" --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-port "$bus"
    cports+=("$p")
  done
  for p in "${cports[@]}"; do wait_ready "$p"; done
  redis-cli --cluster create "${cports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
    > "$work/cluster-create.log" 2>&1 || { cat "$work/cluster-create.log" >&2; die "cluster create"; }
  for _ in $(seq 1 200); do
    ok=0
    for p in "${cports[@]}"; do
      redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' && ok=$((ok + 1))
    done
    [ "$ok" = 3 ] && break
    sleep 0.1
  done
  [ "$ok" = 3 ] || die "cluster not ok"
  start_service auto
  inst=$(adopt "cluster-$i" "${cports[0]}")
  # per-shard DBSIZE every 100 ms: "t port dbsize"
  ( while :; do
      tt=$(now)
      for p in "${cports[@]}"; do echo "$tt $p $(redis-cli -p "$p" dbsize 2>/dev/null | tr -d '\r')"; done
      sleep 0.1
    done ) > "$work/shards-$i.txt" &
  shard_sampler_pid=$!
  restore_start=$(now)
  restore_into "$inst" "cluster-$i"
  kill "$shard_sampler_pid"; wait "$shard_sampler_pid" 2>/dev/null || true; shard_sampler_pid=""
  total=0; shard_info=""
  for p in "${cports[@]}"; do
    n=$(dbsize "$p"); total=$((total + n))
    # first sample at the final count, relative to the POST
    at=$(awk -v p="$p" -v n="$n" -v t0="$restore_start" '$2 == p && $3 == n {printf "%.3f", $1 - t0; exit}' "$work/shards-$i.txt")
    [ -n "$at" ] || at=$rs_s
    shard_info+="$p:$n:$at "
  done
  [ "$total" = "$src_keys" ] || die "cluster has $total keys, source $src_keys"
  for p in "${cports[@]}"; do
    role=$(redis-cli -p "$p" info replication | awk -F: '/^role:/ {print $2}' | tr -d '\r')
    [ "$role" = master ] || die "cluster node :$p role $role"
  done
  log "cluster run $i: ${rs_s} s via ${rs_path}, shards (port:keys:s) $shard_info, VmHWM $((hwm_kb / 1024)) MiB, service CPU ${svc_cpu} s, load $(loadavg)"
  record cl "$i" "$rs_s" "$hwm_kb" "$rss_kb" "$svc_cpu" "$shard_info"
  cp "$svc_log" "$work/log-cluster-$i.txt"
  stop_service
  for p in "${cports[@]}"; do stop_redis "$p"; done
  rm -rf "$work"/cluster-"$i"-*
done

# --- report -------------------------------------------------------------------
sel() { awk -v c="$1" -v k="$2" '$1 == c {print $k}' "$raw"; }
mb=$(awk -v b="$rdb_bytes" 'BEGIN {printf "%.1f", b / 1e6}')
row() { # case label
  local c=$1 label=$2 s runs hwm
  [ -n "$(sel "$c" 3)" ] || return 0
  s=$(sel "$c" 3 | median)
  runs=$(sel "$c" 3 | tr '\n' ' ')
  hwm=$(sel "$c" 4 | max_of)
  printf '| %s | %s | %.3f | %.0f | %.1f | %s |\n' "$c" "$label" "$s" \
    "$(awk -v k="$src_keys" -v s="$s" 'BEGIN {print k / s}')" \
    "$(awk -v b="$rdb_bytes" -v s="$s" 'BEGIN {print b / 1e6 / s}')" \
    "$(if [ "$hwm" -gt 0 ] 2>/dev/null; then awk -v k="$hwm" 'BEGIN {printf "%.1f", k / 1024}'; else echo -; fi)"
  printf '  %s runs: %s\n' "$c" "$runs" >> "$work/notes"
}
{
  printf '\n# dcs-backup restore benchmark, %s, %s, %s cores, commit %s, redis %s\n' \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$(uname -m)" "$(nproc)" "$(git rev-parse --short HEAD)" \
    "$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
  printf 'RDB %s bytes (%s MB), %s keys x %s B; medians of %s runs; peak RSS = max VmHWM of a fresh service per restore; load at end %s\n' \
    "$rdb_bytes" "$mb" "$src_keys" "$VALUE" "$REPEAT" "$(loadavg)"
  printf '| case | what | s | keys/s | MB/s (RDB) | service peak RSS MiB |\n|---|---|---|---|---|---|\n'
  row a "native load at start-up (exec -> PONG)"
  row b "API restore, --restore-mode auto ($(sel b 7 | head -1 | tr _ ' '))"
  row c "API restore, --restore-mode slice"
  row d "redis-cli --pipe, same RESTORE commands (${pipe_bytes:-?} B file)"
  row cl "API restore into 3-master cluster (slicing)"
  # per-round ratios: the two cases of a ratio ran in the same round
  ratios() { awk -v x="$1" -v y="$2" '$1 == x {v[$2] = $3} $1 == y {w[$2] = $3} END {for (r in v) if (r in w && w[r] > 0) printf "%.3f\n", v[r] / w[r]}' "$raw"; }
  ba=$(ratios b a | median); cd=$(ratios c d | median)
  [ -z "$ba" ] || printf '\nper round (b)/(a): %s-> median %s (goal <= 1.25)\n' "$(ratios b a | tr '\n' ' ')" "$ba"
  [ -z "$cd" ] || printf 'per round (c)/(d): %s-> median %s (goal <= 1.0)\n' "$(ratios c d | tr '\n' ' ')" "$cd"
  a=$(sel a 3 | median); b=$(sel b 3 | median); c=$(sel c 3 | median); d=$(sel d 3 | median)
  a=${a:-0}; b=${b:-0}; c=${c:-0}; d=${d:-0}
  printf '\nmedian (b) / median (a) = %.3f; median (c) / median (d) = %.3f; max service VmHWM %.1f MiB (goal <= 200 MB)\n' \
    "$(awk -v x="$b" -v y="$a" 'BEGIN {print y ? x / y : 0}')" "$(awk -v x="$c" -v y="$d" 'BEGIN {print y ? x / y : 0}')" \
    "$(awk '$1 ~ /^(b|c|cl)$/ {print $4}' "$raw" | max_of | awk '{print $1 / 1024}')"
  printf '(a) "DB loaded from disk" per run (s): %s\n' "$(sel a 7 | tr '\n' ' ')"
  if [ -s "$work/notes" ]; then cat "$work/notes"; fi
  awk '$1 == "cl" {s = ""; for (i = 7; i <= NF; i++) s = s " " $i; printf "cluster run %s: %s s total; per shard port:keys:seconds-to-final-count%s\n", $2, $3, s}' "$raw"
  printf '\nraw: case run seconds vmhwm_kb sampled_rss_kb cpu_s(service|redis-cli) extra target_redis_cpu_s\n'
  cat "$raw"
} > "$work/report"
cat "$work/report"
if [ -n "${PERF:-}" ]; then
  for f in "$work"/perf-*.data; do
    [ -f "$f" ] || continue
    perf report -i "$f" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40 > "${f%.data}.txt" || true
    log "perf profile: ${f%.data}.txt"
  done
fi
