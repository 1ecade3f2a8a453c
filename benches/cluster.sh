#!/usr/bin/env bash
# Cluster mode (docs/cluster.md): delivery latency through the holder node versus a follower
# node, and Redis commands per event, on one machine.
#
#   benches/cluster.sh                     # 2 nodes, 500 clients each, 20 events/s, 10 s
#   STREAMS=2000 RATE=50 DURATION=20 benches/cluster.sh
#
# Starts its own redis-server (no persistence), bench_upstream, two sse-edge nodes (release
# build) and one loadgen per node, all on loopback; every process is recorded by pid and
# killed on exit. Prints one loadgen JSON line per node and the Redis command counts.
set -euo pipefail
cd "$(dirname "$0")/.."
STREAMS=${STREAMS:-500}
RATE=${RATE:-20}
SIZE=${SIZE:-100}
DURATION=${DURATION:-10}
RUN=$(mktemp -d /tmp/sse-edge-cluster-bench.XXXXXX)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

cargo build --release --bin sse-edge --bench loadgen --bench bench_upstream -q
bin() { find target/release/deps -maxdepth 1 -type f -executable -name "$1-*" | head -1; }
LOADGEN=$(bin loadgen)
UPSTREAM=$(bin bench_upstream)

redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no >"$RUN/redis.log" 2>&1 &
PIDS+=($!)
"$UPSTREAM" --listen 127.0.0.1:8101 --rate "$RATE" --size "$SIZE" >"$RUN/upstream.log" 2>&1 &
PIDS+=($!)
sleep 0.5

node() { # name listen admin
  cat >"$RUN/$1.yaml" <<YAML
listen: $2
admin: { listen: $3 }
cluster: { redis: "redis://127.0.0.1:6390/0", lease: 2s }
limits: { per_client: 1000000 }
routes:
  - path: /s
    sse: { upstream: "http://127.0.0.1:8101/", share: true }
YAML
  target/release/sse-edge --config "$RUN/$1.yaml" 2>"$RUN/$1.log" &
  PIDS+=($!)
}
node holder 127.0.0.1:8111 127.0.0.1:9111
sleep 0.5
# One client on the holder first, so it takes the lease; then the follower starts.
"$LOADGEN" --target 127.0.0.1:8111 --streams 1 --duration $((DURATION + 10)) --warmup 0 \
  --label keepalive >/dev/null 2>&1 &
PIDS+=($!)
sleep 1
node follower 127.0.0.1:8112 127.0.0.1:9112
sleep 1
redis-cli -p 6390 CONFIG RESETSTAT >/dev/null
for target in holder:8111 follower:8112; do
  "$LOADGEN" --target "127.0.0.1:${target#*:}" --streams "$STREAMS" --duration "$DURATION" \
    --label "${target%%:*}" --rate "$RATE" --size "$SIZE" --shared true >"$RUN/${target%%:*}.json" &
  PIDS+=($!)
done
wait "${PIDS[@]: -2}"
cat "$RUN/holder.json" "$RUN/follower.json"
echo "leases held: holder $(curl -s 127.0.0.1:9111/metrics | grep '^sse_edge_cluster_leases_held' | cut -d' ' -f2)," \
  "follower $(curl -s 127.0.0.1:9112/metrics | grep '^sse_edge_cluster_leases_held' | cut -d' ' -f2)"
redis-cli -p 6390 INFO commandstats | grep -E 'cmdstat_(xadd|xread|evalsha|eval|ping|pexpire|xrange|xrevrange):'
