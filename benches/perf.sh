#!/usr/bin/env bash
# Where a passthrough delivery's CPU time goes, sampled on the real machine: user space
# against the kernel, and the hottest user-space functions. callgrind (benches/callgrind.sh)
# counts instructions, which repeat exactly but say nothing of the time an instruction waits
# for memory; at 1 000 streams most of the user-space time is the first touch of each
# stream's state after a wake-up, and only a sampled profile shows that.
#
#   benches/perf.sh                        # sse-edge, 1 000 unshared streams × 10 ev/s
#   TARGET=nginx benches/perf.sh           # nginx, the same load (benches/nginx.conf)
#   STREAMS=100 WINDOW=30 benches/perf.sh  # fewer streams, a longer window for the samples
#   BIN=/tmp/old/sse-edge benches/perf.sh  # another build
#
# The proxy runs on CPU 1, the upstream and load generator on CPU 0. After WARMUP seconds
# `perf record -e cpu-clock` (a software clock: no hardware counters needed) samples the
# proxy for WINDOW seconds at FREQ Hz. Deliveries are STREAMS × RATE × WINDOW. Prints one
# JSON line, then the top user-space symbols; keeps the profile for `perf report -i`. Every
# process started is killed by pid at the end.
set -euo pipefail

cd "$(dirname "$0")/.."
TARGET=${TARGET:-sse-edge}
STREAMS=${STREAMS:-1000}
RATE=${RATE:-10}
WARMUP=${WARMUP:-5}
WINDOW=${WINDOW:-10}
FREQ=${FREQ:-4999}
RUN=$(mktemp -d /tmp/sse-edge-perf.XXXXXX)

# shellcheck source=benches/common.sh
. benches/common.sh
trap kill_started EXIT

build_bench
start_upstream "$RATE"
start_proxy "$TARGET"

taskset -c 0 "$LOADGEN" --target "$ADDR" --path /s --streams "$STREAMS" --rate "$RATE" --size 100 \
  --shared false --duration $((WARMUP + WINDOW + 5)) --warmup 2 --threads 1 --label perf \
  >"$RUN/loadgen.json" 2>"$RUN/loadgen.log" &
PIDS+=($!)
sleep "$WARMUP"
perf record -F "$FREQ" -e cpu-clock -g -p "$PROXY" -o "$RUN/perf.data" -- sleep "$WINDOW" \
  >/dev/null 2>&1

# Sample periods are nanoseconds of CPU time: the total, and its share per DSO.
perf report -i "$RUN/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null >"$RUN/dso.txt"
TOTAL_NS=$(awk '/Event count/ { print $NF }' "$RUN/dso.txt")
KERNEL_PCT=$(awk '/\[kernel/ { gsub("%", "", $1); print $1 }' "$RUN/dso.txt")
DELIVERIES=$((STREAMS * RATE * WINDOW))
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
jq -cn --arg target "$TARGET" --arg commit "$COMMIT" --arg profile "$RUN/perf.data" \
  --argjson streams "$STREAMS" --argjson rate "$RATE" --argjson window "$WINDOW" \
  --argjson total "$TOTAL_NS" --argjson kernel "${KERNEL_PCT:-0}" --argjson deliveries "$DELIVERIES" '{
    target: $target, workload: "passthrough", streams: $streams, rate: $rate, window_s: $window,
    cpu_us_per_delivery: ($total / $deliveries / 1000 * 100 | round / 100),
    kernel_us_per_delivery: ($total * $kernel / 100 / $deliveries / 1000 * 100 | round / 100),
    user_us_per_delivery: ($total * (100 - $kernel) / 100 / $deliveries / 1000 * 100 | round / 100),
    commit: $commit, profile: $profile }'
perf report -i "$RUN/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null |
  grep -v '^#' | grep -v '^$' | grep -v '\[k\]' | head -15
