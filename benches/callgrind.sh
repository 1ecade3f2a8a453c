#!/usr/bin/env bash
# User-space instructions per delivery, counted by callgrind: a figure that repeats on a busy
# machine (CPU time per delivery, as benches/compare.sh measures it, varies by 10-30 % from
# run to run here). The kernel's share (the sends and receives themselves) is not counted.
#
#   benches/callgrind.sh                                   # sse-edge, passthrough
#   WORKLOAD=fanout STREAMS=500 RATE=1 benches/callgrind.sh
#   TARGET=nginx benches/callgrind.sh                      # nginx, passthrough (benches/nginx.conf)
#   BIN=/tmp/old/sse-edge benches/callgrind.sh             # another build, e.g. an older commit
#   CALLGRIND_OPTS="--cache-sim=yes --LL=1048576,16,64" benches/callgrind.sh  # also cache misses
#   CODE_LINES=1 benches/callgrind.sh                      # also the code a delivery runs through
#   COLD_LINES=1 benches/callgrind.sh                      # also the memory lines it fetches cold
#   COLD_PAGES=1 STREAMS=1000 RATE=1 benches/callgrind.sh  # also the pages it touches cold
#
# The proxy runs under valgrind on CPU 1, the upstream and load generator on CPU 0. After
# WARMUP seconds the counters are zeroed, WINDOW seconds later dumped; deliveries are the
# sends counted in the dump (about STREAMS x RATE x WINDOW, reported as "expected"). Loads are small because valgrind
# slows the proxy some 50 times. Every process started is killed by pid at the end.
set -euo pipefail

cd "$(dirname "$0")/.."
TARGET=${TARGET:-sse-edge}
WORKLOAD=${WORKLOAD:-passthrough}
STREAMS=${STREAMS:-200}
RATE=${RATE:-2}
WARMUP=${WARMUP:-12}
WINDOW=${WINDOW:-10}
RUN=$(mktemp -d /tmp/sse-edge-callgrind.XXXXXX)

# shellcheck source=benches/common.sh
. benches/common.sh
trap kill_started EXIT

build_bench
case $WORKLOAD in
  passthrough) SHARED=false; EDGE_PATH=/s ;;
  fanout) SHARED=true; EDGE_PATH=/f ;;
  *) echo "WORKLOAD is passthrough or fanout" >&2; exit 2 ;;
esac
if [ "$TARGET" = nginx ] && [ "$WORKLOAD" != passthrough ]; then
  echo "nginx has no shared mode" >&2
  exit 2
fi

start_upstream "$RATE"
# shellcheck disable=SC2086 # CALLGRIND_OPTS holds several options
[ "${CODE_LINES:-0}" = 1 ] && CALLGRIND_OPTS="${CALLGRIND_OPTS:-} --dump-instr=yes"
# With COLD_LINES=1: a cache model whose last level (64 KiB) holds what every delivery
# shares (the runtime, the allocator, the route's metrics) but not the STREAMS streams' own
# state, so that its misses count the lines of memory a delivery fetches cold — as it does
# on the real machine, where the kernel's receive and send evict them between deliveries.
[ "${COLD_LINES:-0}" = 1 ] &&
  CALLGRIND_OPTS="${CALLGRIND_OPTS:-} --cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=65536,16,64"
# With COLD_PAGES=1 instead: a last level of 1 536 "lines" of 4 KiB, a second-level TLB's
# reach (6 MiB), so that its misses count the pages a delivery touches that no recent one
# did — a page walk each, dear in a virtual machine. (Use STREAMS=1000 RATE=1: 200 streams'
# pages fit.)
[ "${COLD_PAGES:-0}" = 1 ] &&
  CALLGRIND_OPTS="${CALLGRIND_OPTS:-} --cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=6291456,12,4096"
start_proxy "$TARGET" valgrind --tool=callgrind ${CALLGRIND_OPTS:-} --callgrind-out-file="$RUN/cg.%p"

taskset -c 0 "$LOADGEN" --target "$ADDR" --path "$EDGE_PATH" --streams "$STREAMS" --rate "$RATE" \
  --size 100 --shared "$SHARED" --duration $((WARMUP + WINDOW + 10)) --warmup 2 --threads 1 \
  --label callgrind >"$RUN/loadgen.json" 2>"$RUN/loadgen.log" &
PIDS+=($!)
sleep "$WARMUP"
callgrind_control -z "$PROXY" >/dev/null
sleep "$WINDOW"
callgrind_control -d "$PROXY" >/dev/null
sleep 1

DUMP=$(ls "$RUN"/cg.*.1 | head -1)
INSTRUCTIONS=$(callgrind_annotate "$DUMP" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
# Deliveries are counted, not computed: the calls to libc's send functions in the window
# (one per event per client at these rates; the window can hold a tick more or less).
DELIVERIES=$(awk '
  /^c?fn=/ {
    split($0, kv, "="); id = $1; sub(/^c?fn=/, "", id)
    if (match(kv[2], /^\([0-9]+\) /)) { id = substr(kv[2], 1, RLENGTH - 1); names[id] = substr(kv[2], RLENGTH + 1) }
    else id = kv[2]
    if ($0 ~ /^cfn=/) callee = names[id]
    next
  }
  /^calls=/ { if (callee ~ /^(__libc_)?(send|sendto|sendmsg|writev)$/) { split($0, c, "[= ]"); n += c[2] } }
  END { print n + 0 }' "$DUMP")
EXPECTED=$((STREAMS * RATE * WINDOW))
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# With CODE_LINES=1: the 64-byte lines of machine code that run at least 0.9 times per
# delivery — the code a delivery brings back into the instruction cache after the kernel's
# send and receive have pushed it out (self cost per instruction address; a `calls=` line's
# next line is the call's inclusive cost and is skipped).
CODE=""
if [ "${CODE_LINES:-0}" = 1 ]; then
  CODE=$(python3 - "$DUMP" "$DELIVERIES" <<'PY'
import collections, sys
path, deliveries = sys.argv[1], int(sys.argv[2])
per_line, addr, skip = collections.Counter(), 0, False
for text in open(path):
    if text.startswith("calls="):
        skip = True
        continue
    if not text or text[0] not in "0123456789+-*":
        continue
    fields = text.split()
    position = fields[0]
    if position.startswith(("+", "-")):
        step = int(position[1:], 0)
        addr += step if position[0] == "+" else -step
    elif position != "*":
        addr = int(position, 0)
    if skip:
        skip = False
    elif len(fields) >= 3:
        per_line[addr >> 6] += int(fields[2])
print(sum(1 for cost in per_line.values() if cost >= 0.9 * deliveries))
PY
)
  CODE=",\"code_lines_per_delivery\":$CODE"
fi
if [ "${COLD_LINES:-0}" = 1 ] || [ "${COLD_PAGES:-0}" = 1 ]; then
  COLD=$(callgrind_annotate --show=DLmr,DLmw "$DUMP" | awk -v d="$DELIVERIES" '
    /PROGRAM TOTALS/ { gsub(",", "", $1); gsub(",", "", $3); printf "%.2f", ($1 + $3) / d }')
  UNIT=lines
  [ "${COLD_PAGES:-0}" = 1 ] && UNIT=pages
  CODE="$CODE,\"cold_${UNIT}_per_delivery\":$COLD"
fi
echo "{\"target\":\"$TARGET\",\"workload\":\"$WORKLOAD\",\"streams\":$STREAMS,\"rate\":$RATE,\"window_s\":$WINDOW,\"instructions\":$INSTRUCTIONS,\"deliveries\":$DELIVERIES,\"expected\":$EXPECTED,\"instructions_per_delivery\":$((INSTRUCTIONS / DELIVERIES))$CODE,\"commit\":\"$COMMIT\",\"profile\":\"$DUMP\"}"
