#!/usr/bin/env bash
# Listing benchmark (run by hand; not part of the test suite).
#
# For each engine (SQLite, then PostgreSQL): starts a private redis-server and
# a release `dcs-backup serve`, adopts the redis, seeds ~1,000,000 backup
# records over 1,000 instances (the adopted one holding 10,000), then measures
# with wrk on loopback, in the same run and with the same wrk settings:
#   GET /health
#   GET /v2/{project}/instances/{id}/backups?limit=10             (signed)
#   GET /v2/{project}/instances/{id}/backups?limit=10&offset=9000 (signed)
# and prints req/s, p50, p99 and the ratio to /health.
# Goal (issue): list throughput >= 0.5 x health throughput, both pages, both engines.
#
# Usage: bench/list-bench.sh [sqlite] [postgres]        (default: both)
# Environment:
#   WRK_THREADS=1 WRK_CONNS=16   wrk -t / -c (the machine has 2 cores, shared
#                                with the server; see bench/README.md)
#   DURATION=8                   seconds per measurement (after a 3 s warm-up)
#   ROUNDS=3                     health, list, deep measured in turn this often
#   WARMUP=3
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres
#   CLONES=999 CLONE_BACKUPS=990 BACKUPS=10000
#   DCS_BACKUP_LOG=info          server log filter (default as in production)
#   NO_BUILD=1                   skip `cargo build`
#   KEEP=1                       keep the temp directory (and the PostgreSQL database)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

WRK_THREADS=${WRK_THREADS:-1}
WRK_CONNS=${WRK_CONNS:-16}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-3}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BACKUPS=${BACKUPS:-10000}
CLONES=${CLONES:-999}
CLONE_BACKUPS=${CLONE_BACKUPS:-990}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
export DCS_BACKUP_LOG=${DCS_BACKUP_LOG:-info}
BIN="$CARGO_TARGET_DIR/release/dcs-backup"

engines=("$@")
[ ${#engines[@]} -gt 0 ] || engines=(sqlite postgres)

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- tools (idempotent) -------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v redis-server >/dev/null || need+=(redis-server)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
command -v psql >/dev/null || need+=(postgresql-client)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

if [ -z "${NO_BUILD:-}" ]; then
  log "cargo build --release --bins (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  cargo build --release --bins --quiet
fi
[ -x "$BIN" ] || die "no binary at $BIN"

# --- cleanup ------------------------------------------------------------------
work=$(mktemp -d /tmp/dcs-list-bench.XXXXXX)
pids=()
pg_db=""
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  if [ -n "$pg_db" ] && [ -z "${KEEP:-}" ]; then
    psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
    pg_db=""
  fi
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else log "kept $work${pg_db:+ and database $pg_db}"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on loopback (never 6379).
free_port() {
  python3 - <<'EOF'
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if p != 6379: print(p); break
EOF
}

# Headers of a signed request as curl arguments / wrk arguments.
sign() { # METHOD URL [BODY]
  DCS_AK=$ak DCS_SK=$sk "$BIN" dev sign --method "$1" --url "$2" --body "${3:-}"
}
header_args() { # METHOD URL [BODY] -> prints -H lines NUL-separated
  local line
  while IFS= read -r line; do printf -- '-H\0%s\0' "$line"; done < <(sign "$@")
}

# Converts wrk's "1.23ms" / "850.00us" / "1.02s" to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "%s", v }'
}

# run_wrk NAME URL [signed]  -> appends "NAME rps p50 p99 errors" to $results
run_wrk() {
  local name=$1 url=$2 signed=${3:-} args=() out rps p50 p99 bad
  if [ -n "$signed" ]; then
    mapfile -d '' args < <(header_args GET "$url")
  fi
  wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARMUP}s" "${args[@]}" "$url" >/dev/null
  out=$(wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${DURATION}s" --latency "${args[@]}" "$url")
  printf '%s\n' "$out" > "$work/wrk-$engine-$name.txt"
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  bad=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
  bad=${bad:-0}
  errs=$(awk '/Socket errors:/' <<<"$out")
  [ "$bad" = 0 ] || log "WARNING: $name: $bad non-2xx responses"
  [ -z "$errs" ] || log "WARNING: $name: $errs"
  log "$name: $rps req/s, p50 ${p50} ms, p99 ${p99} ms"
  echo "$name $rps $p50 $p99 $bad" >> "$results"
}

bench_engine() {
  engine=$1
  local dir="$work/$engine" rport port url t0 t1 body resp
  mkdir -p "$dir/redis" "$dir/data"
  results="$dir/results"; : > "$results"

  # redis
  rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --dir "$dir/redis" --save '' \
    --appendonly no --daemonize no --loglevel warning > "$dir/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

  # catalog
  if [ "$engine" = postgres ]; then
    pg_db="dcs_list_bench_$$"
    psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $pg_db" >/dev/null
    url="${PG_ADMIN_URL%/*}/$pg_db"
  else
    url="sqlite://$dir/data/catalog.db"
  fi

  # server
  port=$(free_port)
  base="http://127.0.0.1:$port"
  "$BIN" serve --data-dir "$dir/data" --database-url "$url" --listen "127.0.0.1:$port" \
    > "$dir/serve.log" 2>&1 &
  server_pid=$!
  pids+=($server_pid)
  for _ in $(seq 1 100); do curl -fs "$base/health" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs "$base/health" >/dev/null || { cat "$dir/serve.log" >&2; die "server did not start"; }
  project=$(jq -r .project_id "$dir/data/credentials.json")
  ak=$(jq -r .ak "$dir/data/credentials.json")
  sk=$(jq -r .sk "$dir/data/credentials.json")

  # adopt the redis
  body=$(jq -cn --arg port "$rport" '{name: "bench", private_ip: "127.0.0.1", port: ($port | tonumber)}')
  local create="$base/v2/$project/instances"
  local hargs=(); mapfile -d '' hargs < <(header_args POST "$create" "$body")
  resp=$(curl -fsS -X POST "${hargs[@]}" --data-binary "$body" "$create")
  instance=$(jq -r '.instances[0].instance_id' <<<"$resp")
  [ -n "$instance" ] && [ "$instance" != null ] || die "adoption failed: $resp"
  log "$engine: adopted redis :$rport as instance $instance (project $project)"

  # seed
  log "$engine: seeding $BACKUPS + $CLONES x $CLONE_BACKUPS backup records"
  t0=$(date +%s.%N)
  "$BIN" dev seed --database-url "$url" --data-dir "$dir/data" --instance-id "$instance" \
    --backups "$BACKUPS" --clones "$CLONES" --clone-backups "$CLONE_BACKUPS" > "$dir/seed.json" 2> "$dir/seed.log" \
    || { cat "$dir/seed.log" >&2; die "seed failed"; }
  t1=$(date +%s.%N)
  seed_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
  if [ "$engine" = postgres ]; then
    psql -q "$url" -c "ANALYZE" >/dev/null
    rows=$(psql -tA "$url" -c "SELECT COUNT(*) FROM backups")
    insts=$(psql -tA "$url" -c "SELECT COUNT(*) FROM instances")
  else
    rows=$(sqlite3 "$dir/data/catalog.db" "SELECT COUNT(*) FROM backups")
    insts=$(sqlite3 "$dir/data/catalog.db" "SELECT COUNT(*) FROM instances")
  fi
  log "$engine: seeded in ${seed_s} s: $rows backup records, $insts instances"

  # check the listings
  list="$base/v2/$project/instances/$instance/backups?limit=10"
  deep="$list&offset=9000"
  mapfile -d '' hargs < <(header_args GET "$list")
  resp=$(curl -fsS "${hargs[@]}" "$list")
  [ "$(jq .total_num <<<"$resp")" = "$BACKUPS" ] || die "first page: total_num is not $BACKUPS: ${resp:0:300}"
  [ "$(jq '.backup_record_response | length' <<<"$resp")" = 10 ] || die "first page does not hold 10 records"
  mapfile -d '' hargs < <(header_args GET "$deep")
  resp=$(curl -fsS "${hargs[@]}" "$deep")
  [ "$(jq .total_num <<<"$resp")" = "$BACKUPS" ] || die "offset=9000: total_num is not $BACKUPS"
  [ "$(jq '.backup_record_response | length' <<<"$resp")" = 10 ] || die "offset=9000 does not hold 10 records"
  log "$engine: listings check out (total_num $BACKUPS, 10 records at offset 9000, $(wc -c <<<"$resp") bytes)"

  # measure: the three in turn, ROUNDS times, so that a slow spell of the
  # machine falls on all of them alike; medians are reported
  local round
  for round in $(seq 1 "$ROUNDS"); do
    run_wrk health "$base/health"
    run_wrk list "$list" signed
    run_wrk list-deep "$deep" signed
  done
  rss_kb=$(ps -o rss= -p "$server_pid" | tr -d ' ')

  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true

  {
    printf '\n%s: %s backup records over %s instances, seeded in %s s; server RSS at end %s MiB\n' \
      "$engine" "$rows" "$insts" "$seed_s" "$((rss_kb / 1024))"
    printf 'wrk -t%s -c%s -d%ss --latency (after %ss warm-up), %s rounds of health, list, deep; medians\n' \
      "$WRK_THREADS" "$WRK_CONNS" "$DURATION" "$WARMUP" "$ROUNDS"
    local name med h=""
    for name in health list list-deep; do
      # the round with the median req/s
      med=$(awk -v n="$name" '$1 == n' "$results" | sort -k2 -g | awk '{a[NR] = $0} END {print a[int((NR + 1) / 2)]}')
      [ -n "$h" ] || h=$(awk '{print $2}' <<<"$med")
      awk -v h="$h" -v runs="$(awk -v n="$name" '$1 == n {printf "%.0f ", $2}' "$results")" '
         { printf "  %-26s %10.0f req/s   p50 %8.3f ms   p99 %8.3f ms   %5.2fx health%s   (rounds: %s)\n",
             ($1 == "health" ? "GET /health" : $1 == "list" ? "GET backups?limit=10" : "GET ...&offset=9000"),
             $2, $3, $4, $2 / h, ($5 > 0 ? "   (" $5 " non-2xx!)" : ""), runs }' <<<"$med"
    done
  } >> "$work/summary"
}

for e in "${engines[@]}"; do
  case $e in sqlite|postgres) bench_engine "$e" ;; *) die "unknown engine $e" ;; esac
  # next engine: fresh processes and database
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
  if [ -n "$pg_db" ] && [ -z "${KEEP:-}" ]; then
    psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null; pg_db=""
  fi
done

printf '\n# dcs-backup list benchmark, %s, %s, %s cores, commit %s\n' \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$(uname -m)" "$(nproc)" "$(git rev-parse --short HEAD)"
cat "$work/summary"
