#!/usr/bin/env bash
# cairn follow into a local redis-server, beside what the server takes:
#   1. the limit: redis-benchmark's pipelined SET of 100-byte values;
#   2. a bulk load of the same number of keys (cairn export --format resp
#      | redis-cli --pipe);
#   3. follow --once catching up on N changes (N puts of 100-byte values);
#   4. follow's lag while a writer puts 10,000 changes/s for SECS seconds.
# Usage: benches/follow/run.sh [N] [SECS]   (defaults 500000 and 20)
# Needs redis-server, redis-cli and redis-benchmark (Debian: redis-server,
# redis-tools). Everything runs on 127.0.0.1 and is stopped by pid.
set -euo pipefail
N=${1:-500000}
SECS=${2:-20}
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p cairn-cli --bin cairn --example follow_load
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
  --dir "$WORK" > "$WORK/redis.log" 2>&1 &
RPID=$!
FPID=
cleanup() { [ -n "$FPID" ] && kill "$FPID" 2>/dev/null; kill "$RPID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
echo "machine: $(nproc) cores; redis-server $(redis-server --version | awk '{print $3}')"

echo "== 1. limit: redis-benchmark SET, 100-byte values, pipeline 64, 1 client"
redis-benchmark -p "$PORT" -t set -n "$N" -d 100 -r 100000 -P 64 -c 1 -q | tr '\r' '\n' | grep -v '^$' | tail -1
redis-cli -p "$PORT" flushall >/dev/null

echo "== 2. bulk load: cairn export --format resp | redis-cli --pipe ($N puts over 100,000 keys logged)"
"$BIN/examples/follow_load" "$WORK/s" fill "$N" >/dev/null
start=$(date +%s.%N)
"$BIN/cairn" export "$WORK/s" --format resp 2>/dev/null | redis-cli -p "$PORT" --pipe >/dev/null
end=$(date +%s.%N)
echo "100000 keys in $(echo "$end - $start" | bc) s"
redis-cli -p "$PORT" flushall >/dev/null

echo "== 3. cairn follow --once: the snapshot, then $N changes"
rm -rf "$WORK/s"
"$BIN/examples/follow_load" "$WORK/s" fill 1 >/dev/null
"$BIN/cairn" follow "$WORK/s" --to "redis://127.0.0.1:$PORT" --once 2>/dev/null
"$BIN/examples/follow_load" "$WORK/s" fill "$N" >/dev/null
start=$(date +%s.%N)
"$BIN/cairn" follow "$WORK/s" --to "redis://127.0.0.1:$PORT" --once 2>/dev/null
end=$(date +%s.%N)
t=$(echo "$end - $start" | bc)
echo "$N changes in $t s: $(echo "$N / $t" | bc) changes/s"

echo "== 4. lag under a steady 10,000 puts/s for $SECS s (a line per second)"
"$BIN/cairn" follow "$WORK/s" --to "redis://127.0.0.1:$PORT" --lag-every 1s 2> "$WORK/lag.log" &
FPID=$!
"$BIN/examples/follow_load" "$WORK/s" 10000 "$SECS" >/dev/null
sleep 2
kill -TERM "$FPID"; wait "$FPID" || true; FPID=
grep -i "behind" "$WORK/lag.log" | sed -n '2,$p' | awk '{print}' | tail -n "$((SECS + 2))"
