#!/usr/bin/env bash
# The modules' operations on the three steps of the ladder, in one run:
# embedded (SyncPolicy::Always and EveryMillis(1000)), `cairn serve --sync
# always|everysec`, one redis-server (appendonly yes, appendfsync
# always|everysec) and a 3-master Redis Cluster (appendfsync everysec).
# Starts every server on a free loopback port, stops them by pid on exit,
# builds in release and prints markdown tables (see src/main.rs).
#
#   benches/ladder/run.sh                   # about 4 minutes
#   LADDER_SECS=0.5 benches/ladder/run.sh   # a quicker, noisier run
#   LADDER_THREADS=1 benches/ladder/run.sh  # one thread count only
set -euo pipefail
cd "$(dirname "$0")"
command -v redis-server >/dev/null || { apt-get install -y redis-server >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y redis-server >/dev/null); }
cargo build --release --quiet
(cd ../.. && cargo build --release --quiet -p cairn-cli)
TARGET=${CARGO_TARGET_DIR:-$(cd ../.. && pwd)/target}
BENCH=${CARGO_TARGET_DIR:-$(pwd)/target}/release/ladder-bench
CAIRN=$TARGET/release/cairn
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# A free loopback port whose cluster bus port (port + 10000) is free too.
free_port() {
  python3 - <<'PY'
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if p > 55535: continue
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 10000)); b.close(); print(p); break
    except OSError:
        b.close()
PY
}

wait_ping() { # $1 port
  for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "the server on port $1 did not start" >&2; exit 1
}

start_redis() { # $1 port, $2 appendfsync, $3... extra arguments
  local port=$1 fsync=$2; shift 2
  mkdir -p "$WORK/redis-$port"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis-$port" --save '' \
    --appendonly yes --appendfsync "$fsync" --daemonize no "$@" \
    >"$WORK/redis-$port/log" 2>&1 &
  PIDS+=($!)
  wait_ping "$port"
}

start_cairn_serve() { # $1 port, $2 sync
  "$CAIRN" serve "$WORK/cairn-$1" --port "$1" --sync "$2" 2>"$WORK/cairn-$1.log" &
  PIDS+=($!)
  wait_ping "$1"
}

R_ALWAYS=$(free_port); start_redis "$R_ALWAYS" always
R_EVERYSEC=$(free_port); start_redis "$R_EVERYSEC" everysec
C_ALWAYS=$(free_port); start_cairn_serve "$C_ALWAYS" always
C_EVERYSEC=$(free_port); start_cairn_serve "$C_EVERYSEC" everysec
NODES=()
for _ in 1 2 3; do
  p=$(free_port)
  start_redis "$p" everysec --cluster-enabled yes --cluster-config-file "$WORK/nodes-$p.conf" --cluster-node-timeout 5000
  NODES+=("$p")
done
redis-cli --cluster create "${NODES[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$WORK/cluster-create.log" 2>&1 \
  || { cat "$WORK/cluster-create.log" >&2; exit 1; }
for _ in $(seq 100); do
  ok=1
  for p in "${NODES[@]}"; do redis-cli -p "$p" cluster info | grep -q cluster_state:ok || ok=0; done
  [ $ok = 1 ] && break
  sleep 0.2
done
[ $ok = 1 ] || { echo "the cluster did not reach cluster_state:ok" >&2; exit 1; }
SEEDS=$(printf 'redis://127.0.0.1:%s,' "${NODES[@]}"); SEEDS=${SEEDS%,}

echo "cairn $(cd ../.. && git rev-parse --short HEAD), redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2), $(nproc) cores, $(date -u '+%F %H:%M') UTC"
echo
"$BENCH" \
  "embedded Always=embedded:always" \
  "cairn serve always=resp:redis://127.0.0.1:$C_ALWAYS" \
  "Redis always=resp:redis://127.0.0.1:$R_ALWAYS" \
  "embedded EveryMillis(1000)=embedded:everysec" \
  "cairn serve everysec=resp:redis://127.0.0.1:$C_EVERYSEC" \
  "Redis everysec=resp:redis://127.0.0.1:$R_EVERYSEC" \
  "Redis Cluster, 3 masters, everysec=cluster:$SEEDS"
