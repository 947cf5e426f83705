#!/usr/bin/env bash
# Where a store's time goes, per request: the app's and redis-server's CPU
# (from /proc), the app's context switches, and the Redis commands run
# (INFO commandstats), under wrk with mix.lua. Build first (run.sh does).
#
#   benches/sessions-e2e/profile.sh redis|cairn-redis always|everysec [SECONDS]
set -u
cd "$(dirname "$0")"
STORE=$1; FSYNC=$2; SECS=${3:-5}
BIN=${CARGO_TARGET_DIR:-target}/release/sessions-e2e
W=$(mktemp -d)
RPORT=${REDIS_PORT:-6493}
redis-server --port $RPORT --bind 127.0.0.1 --dir $W --save '' --appendonly yes --appendfsync $FSYNC --daemonize no > $W/redis.log 2>&1 &
RP=$!
for _ in $(seq 50); do redis-cli -p $RPORT ping >/dev/null 2>&1 && break; sleep 0.1; done
REDIS_PORT=$RPORT $BIN $STORE 3919 $W/d > $W/app.log 2>&1 &
AP=$!
sleep 1
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
ctx() { s=0; for t in /proc/$1/task/*; do s=$((s + $(awk '/ctxt_switches/ {x+=$2} END {print x}' $t/status))); done; echo $s; }
a0=$(cpu $AP); r0=$(cpu $RP); c0=$(ctx $AP)
redis-cli -p $RPORT config resetstat >/dev/null
out=$(wrk -t8 -c8 -d${SECS}s -s mix.lua http://127.0.0.1:3919)
a1=$(cpu $AP); r1=$(cpu $RP); c1=$(ctx $AP)
reqs=$(echo "$out" | awk '/requests in/ {print $1}')
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
tck=$(getconf CLK_TCK)
echo "$STORE $FSYNC: $rps req/s, $reqs reqs; app CPU $(( (a1-a0)*1000000/tck/reqs )) us/req, redis CPU $(( (r1-r0)*1000000/tck/reqs )) us/req, threads $(ls /proc/$AP/task | wc -l), app context switches/req $(echo "scale=2; ($c1-$c0)/$reqs" | bc)"
redis-cli -p $RPORT info commandstats | grep -v "^#" | awk -F'[:,=]' -v n=$reqs 'NF>3 {printf "  %s calls/req %.2f usec_per_call %s\n", $1, $3/n, $7}'
kill $AP; kill $RP; wait 2>/dev/null; rm -rf $W
