#!/usr/bin/env bash
# Cluster mode (docs/cluster.md) on one machine: delivery latency through the holder node
# versus follower nodes, Redis commands and bytes per event, fan-out over NODES nodes, and
# the takeover time after kill -9 of the holder.
#
#   benches/cluster.sh                               # 2 nodes, 500 clients each, 20 ev/s, 10 s
#   NODES=3 STREAMS=5000 RATE=1 DURATION=20 benches/cluster.sh
#
# Starts its own redis-server (no persistence), bench_upstream, NODES sse-edge nodes (release
# build) and one loadgen per node, all on loopback; every process is recorded by pid and
# killed on exit. Prints one loadgen JSON line per node, the Redis command counts and bytes
# per event, and the takeover time.
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-2}
STREAMS=${STREAMS:-500}
RATE=${RATE:-20}
SIZE=${SIZE:-100}
DURATION=${DURATION:-10}
LEASE_MS=${LEASE_MS:-2000}
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

NODE_PIDS=()
node() { # number
  local listen="127.0.0.1:$((8110 + $1))" admin="127.0.0.1:$((9110 + $1))"
  cat >"$RUN/node$1.yaml" <<YAML
listen: $listen
admin: { listen: $admin }
cluster: { redis: "redis://127.0.0.1:6390/0", lease: ${LEASE_MS}ms }
limits: { per_client: 1000000 }
routes:
  - path: /s
    sse: { upstream: "http://127.0.0.1:8101/", share: true }
YAML
  target/release/sse-edge --config "$RUN/node$1.yaml" 2>"$RUN/node$1.log" &
  PIDS+=($!)
  NODE_PIDS[$1]=$!
}
metric() { # admin-port family
  curl -s "127.0.0.1:$1/metrics" | awk -v f="$2" '$1 ~ "^"f {sum += $2} END {print sum + 0}'
}

node 1
sleep 0.5
# One client on node 1 first, so it takes the lease; then the followers start. A second
# keep-alive client on node 2 holds its stream open through the takeover.
"$LOADGEN" --target 127.0.0.1:8111 --streams 1 --duration $((DURATION + 10)) --warmup 0 \
  --label keepalive >/dev/null 2>&1 &
PIDS+=($!)
sleep 1
for n in $(seq 2 "$NODES"); do node "$n"; done
sleep 1
"$LOADGEN" --target 127.0.0.1:8112 --streams 1 --duration $((DURATION + 30)) --warmup 0 \
  --label keepalive >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5
redis-cli -p 6390 CONFIG RESETSTAT >/dev/null
relayed_before=$(metric 9111 sse_edge_cluster_events_relayed_total)
net_before=$(redis-cli -p 6390 INFO stats | awk -F: '/total_net_input_bytes|total_net_output_bytes/ {s += $2} END {print s}')
LOADS=()
for n in $(seq 1 "$NODES"); do
  label=$([ "$n" = 1 ] && echo holder || echo "follower$n")
  "$LOADGEN" --target "127.0.0.1:$((8110 + n))" --streams "$STREAMS" --duration "$DURATION" \
    --label "$label" --rate "$RATE" --size "$SIZE" --shared true >"$RUN/node$n.json" &
  PIDS+=($!)
  LOADS+=($!)
done
wait "${LOADS[@]}"
for n in $(seq 1 "$NODES"); do cat "$RUN/node$n.json"; done
appended=$(( $(metric 9111 sse_edge_cluster_events_relayed_total) - relayed_before ))
net_after=$(redis-cli -p 6390 INFO stats | awk -F: '/total_net_input_bytes|total_net_output_bytes/ {s += $2} END {print s}')
echo "leases held:$(for n in $(seq 1 "$NODES"); do printf ' node%s %s' "$n" "$(metric $((9110 + n)) sse_edge_cluster_leases_held)"; done)"
redis-cli -p 6390 INFO commandstats | grep -E 'cmdstat_(xadd|xread|evalsha|eval|ping|pexpire|xrange|xrevrange):' || true
calls=$(redis-cli -p 6390 INFO commandstats | awk -F'[=,]' '/^cmdstat_/ {s += $2} END {print s}')
if [ "$appended" -gt 0 ]; then
  echo "events appended by the holder: $appended; Redis commands per event: $(echo "scale=2; $calls / $appended" | bc);" \
    "Redis bytes (in + out) per event: $(( (net_after - net_before) / appended ))"
fi

# Takeover: kill -9 the holder; node 2 (with a client) takes the lease within `lease`.
kill -9 "${NODE_PIDS[1]}"
killed=$(date +%s%N)
for _ in $(seq 1 400); do
  if [ "$(metric 9112 sse_edge_cluster_leases_held)" -ge 1 ]; then
    echo "takeover after kill -9: $(( ($(date +%s%N) - killed) / 1000000 )) ms (lease ${LEASE_MS} ms)"
    exit 0
  fi
  sleep 0.025
done
echo "no takeover within 10 s" >&2
exit 1
