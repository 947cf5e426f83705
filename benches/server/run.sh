#!/usr/bin/env bash
# cairn serve next to Debian's redis-server, in one run on this machine:
# redis-benchmark throughput (durable and relaxed), memory with 1M sessions
# of ~1 KB, and the time until PING answers after a restart. Prints
# markdown tables; docs/benchmarks.md has the results and how to read them.
#
#   benches/server/run.sh                       # everything but the 10M restart
#   SECTIONS="throughput" benches/server/run.sh # some of: throughput memory restart restart10m
#
# Settings (environment):
#   N=100000       requests per redis-benchmark run with 50 clients
#   N1=5000        requests of the one-client SET run
#   KEYSPACE=100000  redis-benchmark -r: keys drawn from this many
#   KEYS=1000000   sessions of VALUE_BYTES=1000 for memory and restart
#   KEYS_SMALL=10000000  small keys for `restart10m`
#   DURABLE_DIR    where the throughput runs keep their data (default: a
#                  temporary directory under target/; it must be a real disk,
#                  since fsync is what is measured)
#   BIG_DIR        where the memory and restart runs keep their data
#                  (default: DURABLE_DIR; they need about 2.5 GB, 4 GB
#                  with restart10m)
#   CAIRN_SERVE    the command that starts cairn, given DIR PORT SYNC
#                  (default: `cairn serve DIR --port PORT --sync SYNC` when
#                  the release CLI has it, else the `serve` example)
#
# Needs redis-server, redis-cli and redis-benchmark (apt-get install
# redis-server redis-tools) and python3 (to make the load streams).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${N:-100000}
N1=${N1:-5000}
KEYSPACE=${KEYSPACE:-100000}
KEYS=${KEYS:-1000000}
VALUE_BYTES=${VALUE_BYTES:-1000}
KEYS_SMALL=${KEYS_SMALL:-10000000}
SECTIONS=${SECTIONS:-throughput memory restart}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

for tool in redis-server redis-cli redis-benchmark python3; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is not installed" >&2; exit 1; }
done

# ---- the servers ------------------------------------------------------------
cargo build --release --quiet -p cairn-server --example serve
cargo build --release --quiet -p cairn-cli 2>/dev/null || true
if [ -z "${CAIRN_SERVE:-}" ]; then
  if "$TARGET/release/cairn" serve --help >/dev/null 2>&1; then
    cairn_cmd() { exec "$TARGET/release/cairn" serve "$1" --port "$2" --sync "$3"; }
    CAIRN_DESC="cairn serve (release)"
  else
    cairn_cmd() { exec "$TARGET/release/examples/serve" "$1" "$2" "$3"; }
    CAIRN_DESC="cairn-server's serve example (release; the CLI has no serve yet)"
  fi
else
  cairn_cmd() { exec $CAIRN_SERVE "$1" "$2" "$3"; }
  CAIRN_DESC="$CAIRN_SERVE"
fi

mkdir -p "$TARGET"
MADE_DIR=
if [ -z "${DURABLE_DIR:-}" ]; then
  DURABLE_DIR=$(mktemp -d "$TARGET/server-bench.XXXXXX")
  MADE_DIR=$DURABLE_DIR
fi
BIG_DIR=${BIG_DIR:-$DURABLE_DIR}
mkdir -p "$DURABLE_DIR" "$BIG_DIR"
WORK=$(mktemp -d "$BIG_DIR/work.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  rm -rf "$DURABLE_DIR"/run.* "$BIG_DIR"/run.*
  [ -z "$MADE_DIR" ] || rm -rf "$MADE_DIR"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls PING until PONG; prints the seconds it took from $2 (date +%s.%N).
wait_ping() { # $1 port, $2 start time
  for _ in $(seq 60000); do
    if [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ]; then
      python3 -c "import time; print(f'{time.time() - $2:.2f}')"
      return
    fi
    sleep 0.005
  done
  echo "the server on port $1 did not answer PING" >&2
  exit 1
}

# start_redis DIR SYNC -> sets RPORT, RPID
start_redis() {
  mkdir -p "$1"
  RPORT=$(free_port)
  local t0; t0=$(date +%s.%N)
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly yes \
    --appendfsync "$2" --dir "$1" --daemonize no --logfile "$1/redis.log" &
  RPID=$!
  PIDS+=("$RPID")
  RSTART=$(wait_ping "$RPORT" "$t0")
}

# start_cairn DIR SYNC -> sets CPORT, CPID
start_cairn() {
  mkdir -p "$1"
  CPORT=$(free_port)
  local t0; t0=$(date +%s.%N)
  cairn_cmd "$1/data" "$CPORT" "$2" 2>>"$1/cairn.log" &
  CPID=$!
  PIDS+=("$CPID")
  CSTART=$(wait_ping "$CPORT" "$t0")
}

stop_pid() { # $1 pid: SIGTERM (both make their data durable and exit)
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local left=() pid
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do [ "$pid" = "$1" ] || left+=("$pid"); done
  PIDS=("${left[@]+"${left[@]}"}")
}

# bench PORT ARGS... -> "rps p50_ms" per test, one line each: "SET 51234.5 0.9"
bench() {
  local port=$1; shift
  redis-benchmark -h 127.0.0.1 -p "$port" -r "$KEYSPACE" --csv "$@" 2>"$WORK/bench.err" \
    | awk -F'"' 'NR>1 {print $2, $4, $10}' || true
  if grep -q "Error from server" "$WORK/bench.err"; then
    echo "redis-benchmark on port $port: error replies:" >&2
    sort "$WORK/bench.err" | uniq -c | head >&2
  fi
}

ratio() { python3 -c "print(f'{$2 / $1:.2f}×' if $1 > 0 else 'n/a')"; }

# pair_row LABEL ARGS...: the same redis-benchmark run against redis then cairn.
pair_row() {
  local label=$1; shift
  local r c
  r=$(bench "$RPORT" "$@")
  c=$(bench "$CPORT" "$@")
  while read -r test rrps rp50; do
    local crps cp50
    read -r _ crps cp50 < <(echo "$c" | awk -v t="$test" '$1==t') || true
    if [ -n "${crps:-}" ]; then
      echo "| $test | $label | ${rrps} | ${crps} | $(ratio "$rrps" "$crps") | ${rp50} / ${cp50} |"
    else
      echo "| $test | $label | ${rrps} | error reply | n/a | ${rp50} / |"
    fi
  done <<< "$r"
}

echo "# cairn serve next to redis-server, $(date -u '+%F %H:%M') UTC"
echo
echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM; $(uname -sr)"
echo "- $(redis-server --version | cut -d' ' -f1-3), $(redis-benchmark --version 2>/dev/null || echo redis-benchmark)"
echo "- cairn: $CAIRN_DESC, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "- durable runs on $(df -T "$DURABLE_DIR" | awk 'NR==2 {print $2 " (" $1 ")"}'); memory and restart on $(df -T "$BIG_DIR" | awk 'NR==2 {print $2 " (" $1 ")"}')"
echo "- redis-server --save '' --appendonly yes --appendfsync always|everysec; cairn --sync always|everysec"
echo

if [[ " $SECTIONS " == *" throughput "* ]]; then
  echo "## Throughput (requests/s; redis-benchmark -r $KEYSPACE, default 3-byte values)"
  echo
  echo "| test | redis-benchmark | redis-server | cairn | cairn / redis | p50 ms redis / cairn |"
  echo "|---|---|---:|---:|---:|---:|"
  RUN=$(mktemp -d "$DURABLE_DIR/run.XXXXXX")
  start_redis "$RUN/redis-always" always
  start_cairn "$RUN/cairn-always" always
  pair_row "always, -c 50 -n $N" -t set,incr -c 50 -n "$N"
  pair_row "always, -c 50 -n $N -P 16" -t set,incr -c 50 -n "$N" -P 16
  pair_row "always, -c 1 -n $N1" -t set -c 1 -n "$N1"
  stop_pid "$RPID"; stop_pid "$CPID"
  start_redis "$RUN/redis-everysec" everysec
  start_cairn "$RUN/cairn-everysec" everysec
  pair_row "everysec, -c 50 -n $N" -t set,get -c 50 -n "$N"
  pair_row "everysec, -c 50 -n $N -P 16" -t set,get -c 50 -n "$N" -P 16
  stop_pid "$RPID"; stop_pid "$CPID"
  rm -rf "$RUN"
  echo
fi

# A redis-cli --pipe stream of COUNT SETs: key PREFIX%0Nd, value of BYTES.
gen_sets() { # $1 count, $2 value bytes, $3 key prefix, $4 file
  python3 - "$1" "$2" "$3" > "$4" <<'EOF'
import random
import sys
count, size, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
out = sys.stdout.buffer
# Values that do not compress (Redis's AOF rewrite writes an RDB base
# with LZF): slices of a random pool, each starting with the key's number.
pool = random.Random(42).randbytes(1 << 20)
span = len(pool) - size
chunk = []
for i in range(count):
    key = prefix + b"%08d" % i
    off = (i * 7919) % span
    val = (b"%08d" % i + pool[off : off + size])[:size]
    chunk.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(val), val))
    if len(chunk) == 10000:
        out.write(b"".join(chunk)); chunk = []
out.write(b"".join(chunk))
EOF
}

load() { # $1 port, $2 file; prints the seconds the load took
  local t0 out; t0=$(date +%s.%N)
  out=$(redis-cli -p "$1" --pipe --pipe-timeout 600 < "$2")
  if ! echo "$out" | grep -q "errors: 0,"; then echo "load on $1: $out" >&2; exit 1; fi
  python3 -c "import time; print(f'{time.time() - $t0:.1f}')"
}

rss() { # $1 pid -> "VmRSS RssAnon RssFile+RssShmem" in MiB
  awk '/^VmRSS/ {t=$2} /^RssAnon/ {a=$2} /^Rss(File|Shmem)/ {f+=$2} END {printf "%.0f %.0f %.0f\n", t/1024, a/1024, f/1024}' "/proc/$1/status"
}

# The restart of a loaded pair: SIGTERM, start again, time to PONG.
restart_pair() { # $1 label, $2 redis dir, $3 cairn dir, $4 a key that must be there
  stop_pid "$RPID"
  start_redis "$2" everysec
  stop_pid "$CPID"
  start_cairn "$3" everysec
  local rv cv
  rv=$(redis-cli -p "$RPORT" get "$4" | wc -c); cv=$(redis-cli -p "$CPORT" get "$4" | wc -c)
  echo "| $1 | $RSTART s | $CSTART s | $(du -sh "$2" | cut -f1) / $(du -sh "$3" | cut -f1) | $(redis-cli -p "$RPORT" dbsize) / $(redis-cli -p "$CPORT" dbsize 2>&1 | head -c 40) | $((rv - 1)) / $((cv - 1)) |"
}

if [[ " $SECTIONS " == *" memory "* || " $SECTIONS " == *" restart "* ]]; then
  RUN=$(mktemp -d "$BIG_DIR/run.XXXXXX")
  gen_sets "$KEYS" "$VALUE_BYTES" "session:" "$WORK/sessions.resp"
  start_redis "$RUN/redis" everysec
  start_cairn "$RUN/cairn" everysec
  rload=$(load "$RPORT" "$WORK/sessions.resp")
  cload=$(load "$CPORT" "$WORK/sessions.resp")
  rm -f "$WORK/sessions.resp"
  sleep 2 # everysec: let the last second reach the disk
  read -r rt ra rf < <(rss "$RPID")
  read -r ct ca cf < <(rss "$CPID")
  echo "## Memory: $KEYS sessions of $VALUE_BYTES bytes (--sync everysec, loaded with redis-cli --pipe)"
  echo
  echo "| server | load s | RSS MiB | anonymous MiB | mapped files MiB | on disk |"
  echo "|---|---:|---:|---:|---:|---:|"
  echo "| redis-server | $rload | $rt | $ra | $rf | $(du -sh "$RUN/redis" | cut -f1) |"
  echo "| cairn | $cload | $ct | $ca | $cf | $(du -sh "$RUN/cairn" | cut -f1) |"
  echo "| cairn / redis | | $(ratio "$rt" "$ct") | $(ratio "$ra" "$ca") | | |"
  echo
  if [[ " $SECTIONS " == *" restart "* ]]; then
    echo "## Restart: seconds from start until PING answers PONG"
    echo
    echo "| data | redis-server | cairn | on disk redis / cairn | DBSIZE redis / cairn | a value's length redis / cairn |"
    echo "|---|---:|---:|---:|---:|---:|"
    restart_pair "$KEYS × $VALUE_BYTES B" "$RUN/redis" "$RUN/cairn" "session:$(printf %08d $((KEYS - 1)))"
  fi
  stop_pid "$RPID"; stop_pid "$CPID"
  rm -rf "$RUN"
fi

if [[ " $SECTIONS " == *" restart10m "* ]]; then
  RUN=$(mktemp -d "$BIG_DIR/run.XXXXXX")
  gen_sets "$KEYS_SMALL" 16 "k:" "$WORK/small.resp"
  start_redis "$RUN/redis" everysec
  start_cairn "$RUN/cairn" everysec
  rload=$(load "$RPORT" "$WORK/small.resp")
  cload=$(load "$CPORT" "$WORK/small.resp")
  rm -f "$WORK/small.resp"
  sleep 2
  read -r rt ra _ < <(rss "$RPID")
  read -r ct ca _ < <(rss "$CPID")
  echo
  echo "## Restart with $KEYS_SMALL keys of 16 bytes"
  echo
  echo "Load (redis-cli --pipe): redis-server $rload s, cairn $cload s. RSS MiB (anonymous): redis-server $rt ($ra), cairn $ct ($ca)."
  echo
  echo "| data | redis-server | cairn | on disk redis / cairn | DBSIZE redis / cairn | a value's length redis / cairn |"
  echo "|---|---:|---:|---:|---:|---:|"
  restart_pair "$KEYS_SMALL × 16 B" "$RUN/redis" "$RUN/cairn" "k:$(printf %08d $((KEYS_SMALL - 1)))"
  stop_pid "$RPID"; stop_pid "$CPID"
  rm -rf "$RUN"
fi
