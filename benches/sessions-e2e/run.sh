#!/usr/bin/env bash
# End-to-end session benchmark: the app in src/main.rs on each store, under
# wrk with the session mix in mix.lua. Prints a markdown table.
#
#   benches/sessions-e2e/run.sh [SECONDS] [CONNECTIONS] [REPS]
#   ONLY=<store> benches/sessions-e2e/run.sh ...   # one store (see src/main.rs), e.g. memory
#   ONLY=cairn-serve benches/sessions-e2e/run.sh ... # the Redis store on cairn serve
#   ONLY=redis-pair benches/sessions-e2e/run.sh ...  # the Redis store and the cairn
#       store (RESP backend) on the same redis-server, always then everysec
#
# Needs wrk and redis-server (installed if missing, with apt-get). The
# `cairn serve` rows run the same Redis-store app (tower-sessions-redis-store,
# fred) against `cairn serve` (the release CLI when it has `serve`, else
# cairn-server's `serve` example), built from the workspace.
set -euo pipefail
cd "$(dirname "$0")"
SECS=${1:-10}
CONNS=${2:-8}
REPS=${3:-1}
PORT=3917
REDIS_PORT=6390
CAIRN_SERVE_PORT=6391
for tool in wrk redis-server; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    apt-get install -y "$tool" >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y "$tool" >/dev/null)
  fi
done
cargo build --release --quiet
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/sessions-e2e
# cairn serve, from the workspace (its own target directory).
WS_TARGET=${CARGO_TARGET_DIR:-$(cd ../.. && pwd)/target}
(cd ../.. && cargo build --release --quiet -p cairn-server --example serve && cargo build --release --quiet -p cairn-cli)
if "$WS_TARGET/release/cairn" serve --help >/dev/null 2>&1; then
  CAIRN_SERVE=("$WS_TARGET/release/cairn" serve)
  cairn_serve_args() { echo "$1 --port $2 --sync $3"; }
else
  CAIRN_SERVE=("$WS_TARGET/release/examples/serve")
  cairn_serve_args() { echo "$1 $2 $3"; }
fi
WORK=$(mktemp -d)
SERVER_PID=
CAIRN_SERVE_PID=
trap '[ -n "$SERVER_PID" ] && kill $SERVER_PID 2>/dev/null; [ -n "$CAIRN_SERVE_PID" ] && kill $CAIRN_SERVE_PID 2>/dev/null; redis-cli -p $REDIS_PORT shutdown nosave >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

start_redis() { # $1: appendfsync
  redis-cli -p $REDIS_PORT shutdown nosave >/dev/null 2>&1 || true
  sleep 0.3
  rm -rf "$WORK/redis" && mkdir -p "$WORK/redis"
  redis-server --port $REDIS_PORT --dir "$WORK/redis" --appendonly yes --appendfsync "$1" \
    --save '' --daemonize yes --logfile "$WORK/redis/log" >/dev/null
  for _ in $(seq 50); do redis-cli -p $REDIS_PORT ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis did not start" >&2; exit 1
}

start_cairn_serve() { # $1: always|everysec
  stop_cairn_serve
  rm -rf "$WORK/cairn-serve" && mkdir -p "$WORK/cairn-serve"
  # shellcheck disable=SC2046
  "${CAIRN_SERVE[@]}" $(cairn_serve_args "$WORK/cairn-serve/data" $CAIRN_SERVE_PORT "$1") \
    2>"$WORK/cairn-serve.log" &
  CAIRN_SERVE_PID=$!
  for _ in $(seq 100); do redis-cli -p $CAIRN_SERVE_PORT ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "cairn serve did not start:" >&2; cat "$WORK/cairn-serve.log" >&2; exit 1
}

stop_cairn_serve() {
  if [ -n "$CAIRN_SERVE_PID" ]; then
    kill "$CAIRN_SERVE_PID" 2>/dev/null || true
    wait "$CAIRN_SERVE_PID" 2>/dev/null || true
    CAIRN_SERVE_PID=
  fi
}

run_one() { # $1 label, $2 store arg, $3 the Redis port for the `redis` store
  local dir="$WORK/data-$1"
  rm -rf "$dir" && mkdir -p "$dir"
  REDIS_PORT=${3:-$REDIS_PORT} $BIN "$2" $PORT "$dir" > "$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 200); do grep -q listening "$WORK/server.log" 2>/dev/null && break; sleep 0.05; done
  if ! grep -q listening "$WORK/server.log"; then
    echo "the $2 server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1
  fi
  local out
  out=$(wrk -t"$CONNS" -c"$CONNS" -d"${SECS}s" --latency -s mix.lua "http://127.0.0.1:$PORT" 2>&1)
  if ! kill $SERVER_PID 2>/dev/null; then
    echo "the $2 server exited during the run:" >&2; cat "$WORK/server.log" >&2
  fi
  wait $SERVER_PID 2>/dev/null || true
  SERVER_PID=
  local rps p50 p99 errs sock
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  errs=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  sock=$(echo "$out" | awk '/Socket errors/ {print $3 $4 $5 $6 $7 $8 $9 $10}')
  echo "| $1 | $rps | $p50 | $p99 | ${errs:-0} | ${sock:-none} |"
}

echo "wrk -t$CONNS -c$CONNS -d${SECS}s, session mix of mix.lua, $(nproc) cores, $(date -u +%F)"
echo
echo "| store (durability) | requests/s | p50 | p99 | non-2xx | socket errors |"
echo "|---|---:|---:|---:|---:|---|"
ONLY=${ONLY:-}
for rep in $(seq "$REPS"); do
  if [ "$ONLY" = cairn-serve ]; then
    start_cairn_serve always
    run_one "cairn serve --sync always (Redis store, fred)" redis $CAIRN_SERVE_PORT
    start_cairn_serve everysec
    run_one "cairn serve --sync everysec (Redis store, fred)" redis $CAIRN_SERVE_PORT
    stop_cairn_serve
    continue
  fi
  if [ "$ONLY" = redis-pair ]; then
    for fsync in always everysec; do
      start_redis $fsync
      run_one "Redis, appendfsync $fsync (tower-sessions-redis-store, fred)" redis
      run_one "Redis, appendfsync $fsync (cairn store, RESP backend)" cairn-redis
    done
    continue
  fi
  if [ -n "$ONLY" ]; then run_one "$ONLY" "$ONLY"; continue; fi
  run_one "in memory (MemoryStore, not durable)" memory
  run_one "cairn, SyncPolicy::Always" cairn-always
  start_redis always
  run_one "Redis, appendfsync always" redis
  run_one "cairn store on that Redis (RESP backend)" cairn-redis
  start_cairn_serve always
  run_one "cairn serve --sync always (Redis store, fred)" redis $CAIRN_SERVE_PORT
  stop_cairn_serve
  run_one "SQLite WAL, synchronous=FULL" sqlite-full
  run_one "cairn, SyncPolicy::EveryMillis(1000)" cairn-everysec
  start_redis everysec
  run_one "Redis, appendfsync everysec" redis
  run_one "cairn store on that Redis (RESP backend)" cairn-redis
  start_cairn_serve everysec
  run_one "cairn serve --sync everysec (Redis store, fred)" redis $CAIRN_SERVE_PORT
  stop_cairn_serve
  run_one "SQLite WAL, synchronous=NORMAL" sqlite-normal
done
