#!/usr/bin/env bash
# Connections accepted per second by sse-edge on one core, without authentication, with JWT
# checking (HS256 and ES256) and with forward auth answered from its cache. Every route is a
# shared sse stream of one idle bench_upstream, so the figure is the cost of accepting a
# stream: TCP accept, request parse, authentication, admission, SSE head.
#
#   flock /tmp/sse-edge-bench.lock benches/auth.sh          # DURATION=10 CONCURRENCY=64 RUNS=2
#
# Rows go to stdout and to benches/results/auth.jsonl. Every process it starts is killed (by
# pid) on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$(mktemp -d /tmp/sse-edge-auth-bench.XXXXXX)
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-64}
RUNS=${RUNS:-2}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
# shellcheck source=benches/common.sh
. benches/common.sh
cleanup() {
  kill_started
  rm -rf "$RUN"
}
trap cleanup EXIT
log() { echo "[auth-bench $(date +%T)] $*" >&2; }

log "building"
cargo build --release --quiet
BENCH=$(bench_exe auth_connect)
UPSTREAM=$(bench_exe bench_upstream)
COMMIT=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- . ':!benches/results' || COMMIT="$COMMIT+"

"$BENCH" keys "$RUN"
cat >"$RUN/sse-edge.yaml" <<YAML
listen: 127.0.0.1:18080
admin: { listen: 127.0.0.1:19090 }
limits: { max_connections: 1000000, per_client: 1000000 }
auth:
  hs: { jwt: { secret: "file:$RUN/secret", algorithms: [HS256] } }
  es: { jwt: { keys: "$RUN/jwks.json", algorithms: [ES256] } }
  legacy: { forward: { url: "http://127.0.0.1:18003/check", forward_headers: [Cookie], identity_header: X-User-Id, cache: 5m } }
routes:
  - { path: /open, sse: { upstream: "http://127.0.0.1:18001/stream" } }
  - { path: /jwt, auth: hs, sse: { upstream: "http://127.0.0.1:18001/stream" } }
  - { path: /jwt-es256, auth: es, sse: { upstream: "http://127.0.0.1:18001/stream" } }
  - { path: /forward, auth: legacy, sse: { upstream: "http://127.0.0.1:18001/stream" } }
YAML

taskset -c "$LOAD_CPU" "$UPSTREAM" --listen 127.0.0.1:18001 --rate 0 2>>"$RUN/upstream.log" &
PIDS+=($!)
taskset -c "$LOAD_CPU" "$BENCH" serve-auth 127.0.0.1:18003 &
PIDS+=($!)
RUST_LOG=error taskset -c "$PROXY_CPU" "$ROOT/target/release/sse-edge" --config "$RUN/sse-edge.yaml" &
PROXY=$!
PIDS+=("$PROXY")
wait_port 127.0.0.1:18001
wait_port 127.0.0.1:18003
wait_port 127.0.0.1:18080

mkdir -p benches/results
for run in $(seq 1 "$RUNS"); do
  for spec in "open|/open|" "jwt-hs256|/jwt|--token hs256:$RUN" "jwt-es256|/jwt-es256|--token es256:$RUN" \
              "forward-cached|/forward|--cookie sid=bench"; do
    IFS='|' read -r label path extra <<<"$spec"
    # shellcheck disable=SC2086
    row=$(taskset -c "$LOAD_CPU" "$BENCH" run --target 127.0.0.1:18080 --path "$path" $extra \
      --concurrency "$CONCURRENCY" --duration "$DURATION" --proxy-pid "$PROXY" --label "$label")
    row=$(jq -c --arg c "$COMMIT" --arg r "$run" --arg l "$(cut -d' ' -f1 /proc/loadavg)" \
      '. + {commit: $c, run: ($r|tonumber), loadavg: $l}' <<<"$row")
    echo "$row" | tee -a benches/results/auth.jsonl
    sleep 2
  done
done
log "forward-auth checks answered (the rest were cache hits): $(curl -s 127.0.0.1:18003/count)"
