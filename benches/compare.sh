#!/usr/bin/env bash
# Runs the sse-edge benchmark workloads against direct-to-upstream, sse-edge, nginx,
# (fan-out only) nginx+nchan and Pushpin (fan-out, idle, passthrough), and writes
# benches/results/RESULTS.md, benches/results/results.jsonl and benches/results/chart.svg.
#
#   benches/compare.sh                      # every workload, default sizes
#   WORKLOADS="passthrough fanout" benches/compare.sh
#   IDLE_STREAMS="10000 50000" FANOUT_RATES="5 10 20 40" DURATION=10 benches/compare.sh
#   WORKLOADS="poll websocket" APPEND=1 benches/compare.sh     # sse-edge only (no nginx equivalent)
#   WORKLOADS="h2idle h2passthrough" APPEND=1 benches/compare.sh   # HTTP/2 over TLS (needs openssl)
#
# Every process it starts is recorded by pid and killed on exit; nothing else is touched.
# The proxy under test is pinned to CPU $PROXY_CPU, the load generator and upstream to
# $LOAD_CPU (when the machine has at least two CPUs).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=benches/common.sh
. benches/common.sh
OUT=$ROOT/benches/results
RUN=$(mktemp -d /tmp/sse-edge-bench.XXXXXX)
mkdir -p "$OUT" "$RUN/tmp"

WORKLOADS=${WORKLOADS:-"idle passthrough fanout poll websocket"}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
IDLE_STREAMS=${IDLE_STREAMS:-"10000 19000 50000 100000"}
IDLE_UNSHARED_STREAMS=${IDLE_UNSHARED_STREAMS:-10000}
PASS_STREAMS=${PASS_STREAMS:-1000}
PASS_RATE=${PASS_RATE:-10}
# passthrough: ROUNDS runs of every target, the order reversed every other round (A B, B A,
# A B, ...), so that a machine growing busier or quieter during the run favours neither;
# each row carries its round.
ROUNDS=${ROUNDS:-1}
FANOUT_STREAMS=${FANOUT_STREAMS:-10000}
FANOUT_RATES=${FANOUT_RATES:-"1 5 10 20 40 80"}
FANOUT_P99_LIMIT_US=${FANOUT_P99_LIMIT_US:-50000}
EVENT_SIZE=${EVENT_SIZE:-100}
TARGETS=${TARGETS:-"direct sse-edge nginx nchan$(command -v pushpin >/dev/null && echo ' pushpin' || true)"}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
# poll: RESOURCESxCLIENTS pairs; the upstream document changes POLL_CHANGES times per second
# and sse-edge polls every resource once a second (benches/sse-edge.bench.yaml, /p/{id}).
POLL_RUNS=${POLL_RUNS:-"100x10000 1000x1000"}
POLL_CHANGES=${POLL_CHANGES:-1}
# change: T = when the document changed (latency includes the wait for the next poll, row
# label "poll"); response: every response is a new document stamped when sent (the proxy's
# own poll → client latency, one delivery per poll, row label "poll-response").
POLL_STAMPS=${POLL_STAMPS:-"change response"}
# websocket: one upstream socket (/w) fanned out to WS_STREAMS clients, at each of WS_RATES msg/s.
WS_STREAMS=${WS_STREAMS:-10000}
WS_RATES=${WS_RATES:-"1 5"}
STATS_ADDR=127.0.0.1:18002
# h2idle / h2passthrough: SSE over HTTP/2 with TLS (sse-edge on 18443, nginx-h2.conf on 18444),
# H2_STREAMS_PER_CONN streams per client connection. h2passthrough runs direct (plain
# HTTP/1.1 to the upstream: the baseline) and each proxy over every H2_PASS_TRANSPORTS
# (h2 = HTTP/2+TLS, h1tls = HTTP/1.1+TLS, to tell TLS cost from HTTP/2 cost).
H2_IDLE_STREAMS=${H2_IDLE_STREAMS:-10000}
H2_PASS_STREAMS=${H2_PASS_STREAMS:-"100 1000"}
H2_PASS_TRANSPORTS=${H2_PASS_TRANSPORTS:-"h2 h1tls"}
H2_STREAMS_PER_CONN=${H2_STREAMS_PER_CONN:-100}
# pushpin: client connects per second and retries of a refused request (see pushpin_load_args).
PUSHPIN_CONNECT_RATE=${PUSHPIN_CONNECT_RATE:-200}
PUSHPIN_RETRY_REFUSED=${PUSHPIN_RETRY_REFUSED:-5}

if [ "$(nproc)" -ge 2 ]; then
  PROXY_CPU=${PROXY_CPU:-1}
  LOAD_CPU=${LOAD_CPU:-0}
  PIN_PROXY="taskset -c $PROXY_CPU"
  PIN_LOAD="taskset -c $LOAD_CPU"
else
  PIN_PROXY=""
  PIN_LOAD=""
fi

ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Without CAP_SYS_RESOURCE the hard limit cannot be raised: every process (proxy and load
# generator alike) then holds at most that many sockets, so larger idle runs are skipped.
FD_LIMIT=$(ulimit -n)
fits() { # streams fds-per-stream
  if [ "$FD_LIMIT" != unlimited ] && [ $(($1 * $2 + 500)) -gt "$FD_LIMIT" ]; then
    log "skipping $1 streams: needs $(($1 * $2 + 500)) descriptors, RLIMIT_NOFILE is $FD_LIMIT"
    echo "{\"label\":\"skipped\",\"status\":\"$1 streams need RLIMIT_NOFILE > $(($1 * $2 + 500)), have $FD_LIMIT\"}" >>"$OUT/results.jsonl"
    return 1
  fi
}

cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in "${PIDS[@]}"; do
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$RUN"
}
trap cleanup EXIT

log() { echo "[compare $(date +%T)] $*" >&2; }

# ------------------------------------------------------------------ build
# REPORT_ONLY=1 rebuilds RESULTS.md and chart.svg from results.jsonl without running anything.
if [ "${REPORT_ONLY:-0}" = 1 ]; then
  WORKLOADS=""
  APPEND=1
fi
log "building release binary and bench targets"
build_bench
# Rows carry the commit they measured (with "+" when the tree had local changes outside
# benches/results, which every run rewrites); with BIN= another build, COMMIT= names its own.
if [ -z "${COMMIT:-}" ]; then
  COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  git diff --quiet HEAD -- . ':!benches/results' 2>/dev/null || COMMIT="$COMMIT+"
fi

# ------------------------------------------------------------------ process helpers

stop() { # pid
  kill "$1" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}

start_upstream() { # rate [extra bench_upstream args]
  local rate=$1
  shift
  $PIN_LOAD "$UPSTREAM" --listen 127.0.0.1:18001 --rate "$rate" --size "$EVENT_SIZE" "$@" \
    2>>"$RUN/upstream.log" &
  UP_PID=$!
  PIDS+=("$UP_PID")
  wait_port 127.0.0.1:18001
}

# Starts nginx in the foreground with benches/NAME.conf; sets TARGET_ADDR and TARGET_PID.
start_nginx() { # name addr
  $PIN_PROXY nginx -e "$RUN/$1-error.log" -p "$RUN/" -c "$ROOT/benches/$1.conf" -g 'daemon off; master_process off;' \
    >"$RUN/$1.log" 2>&1 &
  TARGET_PID=$!
  PIDS+=("$TARGET_PID")
  TARGET_ADDR=$2
  wait_port "$TARGET_ADDR"
}

# Starts the target; sets TARGET_ADDR and TARGET_PID (empty for direct), and
# TARGET_CHILDREN (pushpin: the processes its runner started).
start_target() { # name
  TARGET_CHILDREN=""
  case $1 in
    direct)
      TARGET_ADDR=127.0.0.1:18001
      TARGET_PID=""
      ;;
    sse-edge)
      RUST_LOG=warn $PIN_PROXY "$BIN" --config "$ROOT/benches/sse-edge.bench.yaml" \
        >"$RUN/sse-edge.log" 2>&1 &
      TARGET_PID=$!
      PIDS+=("$TARGET_PID")
      TARGET_ADDR=127.0.0.1:18080
      wait_port "$TARGET_ADDR"
      ;;
    nginx) start_nginx nginx 127.0.0.1:18081 ;;
    nchan) start_nginx nchan 127.0.0.1:18082 ;;
    pushpin) start_pushpin ;;
    *)
      log "unknown target $1"
      return 1
      ;;
  esac
  sleep 0.5
}

# Pushpin (benches/pushpin/): its runner starts condure (client connections), zurl (backend
# requests), pushpin-proxy and pushpin-handler (GRIP, subscriptions, publish API on :5561),
# all pinned with it to $PROXY_CPU. Run from a copy of the config in $RUN/pushpin, so its
# ipc sockets, pid files and logs (rundir=run, logdir=log) stay in the temp dir.
start_pushpin() {
  mkdir -p "$RUN/pushpin"
  cp "$ROOT/benches/pushpin/pushpin.conf" "$ROOT/benches/pushpin/routes" "$RUN/pushpin/"
  (cd "$RUN/pushpin" && exec $PIN_PROXY pushpin --config "$RUN/pushpin/pushpin.conf") \
    >"$RUN/pushpin.log" 2>&1 &
  TARGET_PID=$!
  PIDS+=("$TARGET_PID")
  TARGET_ADDR=127.0.0.1:18083
  wait_port "$TARGET_ADDR"
  wait_port 127.0.0.1:5561
  local pid
  for pid in $(pgrep -P "$TARGET_PID"); do
    TARGET_CHILDREN+="$pid:$(cat "/proc/$pid/comm" 2>/dev/null) "
    PIDS+=("$pid")
  done
  log "pushpin $TARGET_PID started: ${TARGET_CHILDREN}"
}

# Pushpin is several processes: sum the runner and everything under it. Its zurl link and
# accept RPC refuse bursts of new requests (502 "Error while proxying to origin", 500
# "Accept service unavailable"), so clients connect at PUSHPIN_CONNECT_RATE per second and
# a refused client tries again (counted in errors.refused_retried).
pushpin_load_args() {
  echo --proxy-tree --connect-rate "$PUSHPIN_CONNECT_RATE" --retry-refused "$PUSHPIN_RETRY_REFUSED"
}

# Stops the target and whatever it started (a child is only signalled while its pid still
# names the same program).
stop_target() {
  [ -n "$TARGET_PID" ] || return 0
  stop "$TARGET_PID"
  local c
  for c in $TARGET_CHILDREN; do
    [ "$(cat "/proc/${c%%:*}/comm" 2>/dev/null)" = "${c#*:}" ] && stop "${c%%:*}"
  done
  return 0
}

path_for() { # target shared
  case $2 in
    poll) echo '/p/{i}'; return ;;
    websocket) echo /w; return ;;
  esac
  case $1 in
    direct) echo /stream ;;
    sse-edge) if [ "$2" = true ]; then echo /f; else echo /s; fi ;;
    nginx) echo /s ;;
    nchan) echo /sub ;;
    pushpin) echo /stream ;;
  esac
}

# run_load label target streams rate shared|poll|websocket [extra loadgen args]
run_load() {
  local label=$1 target=$2 streams=$3 rate=$4 shared=$5
  shift 5
  local pidarg=() flag=$shared
  [ -n "$TARGET_PID" ] && pidarg=(--proxy-pid "$TARGET_PID")
  [ "$target" = pushpin ] && pidarg+=($(pushpin_load_args))
  # poll and websocket streams are shared by construction; $shared then names the workload.
  [ "$flag" = true ] || [ "$flag" = false ] || flag=true
  log "$label: $target, $streams streams, $rate ev/s, shared=$shared"
  $PIN_LOAD "$LOADGEN" --target "$TARGET_ADDR" --path "$(path_for "$target" "$shared")" \
    --streams "$streams" --rate "$rate" --size "$EVENT_SIZE" --shared "$flag" \
    --duration "$DURATION" --warmup "$WARMUP" --threads "$LOADGEN_THREADS" \
    --label "$label" "${pidarg[@]}" "$@" 2>>"$RUN/loadgen.log" |
    jq -c --arg t "$target" --arg c "$COMMIT" --arg r "${ROUND:-}" --arg rounds "$ROUNDS" \
      '. + {target: $t, commit: $c} + (if $r == "" or $rounds == "1" then {} else {round: ($r | tonumber)} end)' |
    tee -a "$OUT/results.jsonl"
}

# one_run label target streams rate shared
one_run() {
  if [ "$2" = nchan ]; then
    # nchan is a broker: the upstream publishes to it instead of being pulled from.
    start_target "$2"
    start_upstream "$4" --publish http://127.0.0.1:18082/pub --publish-format nchan
  elif [ "$2" = pushpin ] && [ "$5" = true ]; then
    # Pushpin shared = GRIP: the upstream answers each proxied request with Grip-Hold
    # (Pushpin keeps the client, subscribed to channel "bench") and publishes every event
    # once to Pushpin's publish API. Unshared, Pushpin proxies the upstream's plain stream.
    start_target "$2"
    start_upstream "$4" --grip --publish http://127.0.0.1:5561/publish/ --publish-format pushpin
  else
    start_upstream "$4"
    start_target "$2"
  fi
  run_load "$@" || true
  stop_target
  stop "$UP_PID"
  sleep 1
}

# ------------------------------------------------------------------ HTTP/2 over TLS
# The certificate is made per run in $RUN (self-signed for localhost and 127.0.0.1, ECDSA
# P-256, 2 days; nothing secret is committed). sse-edge gets benches/sse-edge.bench.yaml with
# its `listen:` line turned into a list that adds a TLS listener on 127.0.0.1:18443; nginx
# gets benches/nginx-h2.conf copied next to the certificate (it names cert.pem / key.pem
# relative to its own directory).
tls_setup() {
  [ -s "$RUN/cert.pem" ] && return 0
  cat >"$RUN/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
x509_extensions = ext
prompt = no
[dn]
CN = localhost
[ext]
subjectAltName = DNS:localhost, IP:127.0.0.1
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
EOF
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -config "$RUN/openssl.cnf" -keyout "$RUN/key.pem" -out "$RUN/cert.pem" 2>>"$RUN/openssl.log"
  awk -v cert="$RUN/cert.pem" -v key="$RUN/key.pem" '
    /^listen: / { print "listen:"; print "  - " $2
                  print "  - addr: 127.0.0.1:18443"
                  print "    tls: { cert: " cert ", key: " key " }"; next }
    { print }' "$ROOT/benches/sse-edge.bench.yaml" >"$RUN/sse-edge.tls.yaml"
  cp "$ROOT/benches/nginx-h2.conf" "$RUN/nginx-h2.conf"
}

# Starts sse-edge or nginx with its TLS listener; sets TARGET_ADDR and TARGET_PID.
start_tls_target() { # sse-edge|nginx
  tls_setup
  case $1 in
    sse-edge)
      RUST_LOG=warn $PIN_PROXY "$BIN" --config "$RUN/sse-edge.tls.yaml" >"$RUN/sse-edge.log" 2>&1 &
      TARGET_ADDR=127.0.0.1:18443
      ;;
    nginx)
      $PIN_PROXY nginx -e "$RUN/nginx-error.log" -p "$RUN/" -c "$RUN/nginx-h2.conf" -g 'daemon off; master_process off;' \
        >"$RUN/nginx.log" 2>&1 &
      TARGET_ADDR=127.0.0.1:18444
      ;;
    *)
      log "no TLS listener for target $1"
      return 1
      ;;
  esac
  TARGET_PID=$!
  PIDS+=("$TARGET_PID")
  wait_port "$TARGET_ADDR"
  sleep 0.5
}

# h2_run label target streams rate shared h1|h1tls|h2 [bench_upstream args]
# h1 is the plain HTTP/1.1 path of start_target (the direct baseline).
h2_run() {
  local label=$1 target=$2 streams=$3 rate=$4 shared=$5 transport=$6
  shift 6
  local tls=()
  start_upstream "$rate" "$@"
  case $transport in
    h1) start_target "$target" ;;
    h1tls)
      start_tls_target "$target"
      tls=(--tls --ca "$RUN/cert.pem")
      ;;
    h2)
      start_tls_target "$target"
      tls=(--tls --ca "$RUN/cert.pem" --h2 --streams-per-conn "$H2_STREAMS_PER_CONN")
      ;;
  esac
  run_load "$label" "$target" "$streams" "$rate" "$shared" "${tls[@]}" || true
  [ -n "$TARGET_PID" ] && stop "$TARGET_PID"
  stop "$UP_PID"
  sleep 1
}

# ------------------------------------------------------------------ workloads
# APPEND=1 keeps the rows of earlier runs (the report is rebuilt from all of them).
if [ "${APPEND:-0}" != 1 ]; then
  : >"$OUT/results.jsonl.new"
  mv "$OUT/results.jsonl.new" "$OUT/results.jsonl"
fi

for w in $WORKLOADS; do
  case $w in
    idle)
      for t in $TARGETS; do
        [ "$t" = direct ] || [ "$t" = nchan ] && continue
        # Pushpin proxies each non-GRIP stream through zurl, whose packaged template caps
        # open requests at 2000 (max_open_requests): unshared idle at 10k cannot run.
        [ "$t" = pushpin ] && continue
        for n in $IDLE_UNSHARED_STREAMS; do
          one_run "idle-unshared" "$t" "$n" 0 false
        done
      done
      if [[ " $TARGETS " == *" sse-edge "* ]]; then
        for n in $IDLE_STREAMS; do
          fits "$n" 1 || continue
          one_run "idle-shared" sse-edge "$n" 0 true
        done
      fi
      # Pushpin: clients held by GRIP (Grip-Hold: stream), heartbeat 5 s (Grip-Keep-Alive).
      if [[ " $TARGETS " == *" pushpin "* ]]; then
        for n in $IDLE_STREAMS; do
          fits "$n" 1 || continue
          one_run "idle-shared" pushpin "$n" 0 true
        done
      fi
      ;;
    passthrough)
      order=$TARGETS
      for ROUND in $(seq 1 "$ROUNDS"); do
        for t in $order; do
          [ "$t" = nchan ] && continue
          one_run "passthrough" "$t" "$PASS_STREAMS" "$PASS_RATE" false
        done
        order=$(echo "$order" | tr ' ' '\n' | tac | tr '\n' ' ')
      done
      ROUND=
      ;;
    fanout)
      for t in direct sse-edge nchan pushpin; do
        [[ " $TARGETS " == *" $t "* ]] || continue
        for r in $FANOUT_RATES; do
          one_run "fanout" "$t" "$FANOUT_STREAMS" "$r" true
          p99=$(tail -1 "$OUT/results.jsonl" | jq -r '.p99_us // 999999999')
          if [ "$p99" -gt "$FANOUT_P99_LIMIT_US" ]; then
            log "fanout $t: p99 ${p99}us passed ${FANOUT_P99_LIMIT_US}us at $r ev/s; stopping"
            break
          fi
        done
      done
      ;;
    poll)
      # sse-edge only: nginx has no poll-to-SSE equivalent.
      [[ " $TARGETS " == *" sse-edge "* ]] || continue
      for stamp in $POLL_STAMPS; do
        label=poll
        [ "$stamp" = change ] || label=poll-$stamp
        for run in $POLL_RUNS; do
          res=${run%x*} n=${run#*x}
          fits "$n" 1 || continue
          start_upstream "$POLL_CHANGES" --mode poll --poll-stamp "$stamp" --stats "$STATS_ADDR"
          start_target sse-edge
          run_load "$label" sse-edge "$n" "$POLL_CHANGES" poll \
            --workload poll --resources "$res" --upstream-stats "$STATS_ADDR" || true
          stop "$TARGET_PID"
          stop "$UP_PID"
          sleep 1
        done
      done
      ;;
    websocket)
      [[ " $TARGETS " == *" sse-edge "* ]] || continue
      fits "$WS_STREAMS" 1 || continue
      for r in $WS_RATES; do
        start_upstream "$r" --mode websocket --stats "$STATS_ADDR"
        start_target sse-edge
        run_load "websocket" sse-edge "$WS_STREAMS" "$r" websocket \
          --workload websocket --upstream-stats "$STATS_ADDR" || true
        stop "$TARGET_PID"
        stop "$UP_PID"
        sleep 1
      done
      ;;
    h2idle)
      # Idle streams over HTTP/2+TLS: the client holds streams/H2_STREAMS_PER_CONN sockets,
      # but an unshared stream still costs the proxy one upstream socket. --hello: nginx 1.22
      # sends no HEADERS frame over h2+TLS before the first body byte (h2c and HTTP/1.1 do),
      # so the upstream opens every response with one comment, for every target alike.
      for n in $H2_IDLE_STREAMS; do
        if [[ " $TARGETS " == *" sse-edge "* ]]; then
          h2_run h2-idle-shared sse-edge "$n" 0 true h2 --hello
        fi
        fits "$n" 1 || continue
        for t in sse-edge nginx; do
          [[ " $TARGETS " == *" $t "* ]] || continue
          h2_run h2-idle-unshared "$t" "$n" 0 false h2 --hello
        done
      done
      ;;
    h2passthrough)
      for n in $H2_PASS_STREAMS; do
        if [[ " $TARGETS " == *" direct "* ]]; then
          h2_run h1-passthrough direct "$n" "$PASS_RATE" false h1
        fi
        for t in sse-edge nginx; do
          [[ " $TARGETS " == *" $t "* ]] || continue
          for tr in $H2_PASS_TRANSPORTS; do
            h2_run "$tr-passthrough" "$t" "$n" "$PASS_RATE" false "$tr"
          done
        done
      done
      ;;
    *) log "unknown workload $w" ;;
  esac
done

# ------------------------------------------------------------------ report
MACHINE="$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
python3 - "$OUT" "$MACHINE" <<'PY'
import json, sys, html
out, machine = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(f"{out}/results.jsonl") if l.strip()]
def g(r, *path):
    for p in path:
        r = r.get(p) if isinstance(r, dict) else None
    return "–" if r is None else r
md = ["# sse-edge benchmark results", "", f"Machine: {machine}.", "",
      "Latency is upstream timestamp → client receipt (µs). RSS/stream is the proxy's RSS growth",
      "over its idle baseline divided by open streams. CPU is proxy utime+stime in the window.", "",
      "| workload | target | streams | ev/s | deliveries/s | p50 µs | p99 µs | p999 µs | errors | proxy RSS KiB/stream | proxy CPU % | CPU µs/delivery | load avg |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    if "status" in r:
        md.append(f"| {r['label']} | – | – | – | {r['status']} | | | | | | | | |")
        continue
    md.append("| " + " | ".join(str(x) for x in [
        r["label"], r.get("target", "?"), r["connected"], r["rate"], r["deliveries_per_s"],
        g(r, "p50_us"), g(r, "p99_us"), g(r, "p999_us"), g(r, "errors", "in_window"),
        g(r, "proxy", "rss_per_stream_kib"), g(r, "proxy", "cpu_util"),
        g(r, "proxy", "cpu_us_per_delivery"), r["loadavg_start"]]) + " |")
src = [r for r in rows if "status" not in r and r.get("workload") in ("poll", "websocket")]
if src:
    md += ["", "## Poll and WebSocket sources (sse-edge only)", "",
           "poll: each resource's document changes `ev/s` times per second and sse-edge polls it once a",
           "second (±10 % jitter); latency is change → client receipt, so it includes the wait for the",
           "next poll. poll-response: every poll answer is a new document stamped when it is sent, so",
           "latency is the proxy's own poll answer → client receipt (max ≈ time to the last client).",
           "websocket: one upstream socket sends `ev/s` messages, fanned out to every client.", "",
           "| label | resources | streams | ev/s | upstream requests/s | upstream sockets (total / open) | deliveries/s | p50 µs | p99 µs | max µs | errors | proxy CPU (cores) | CPU µs/delivery | load avg |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in src:
        up = r.get("upstream") or {}
        md.append("| " + " | ".join(str(x) for x in [
            r["label"], r.get("resources", "–") if r["workload"] == "poll" else "–",
            r["connected"], r["rate"],
            up.get("poll_requests_per_s", "–") if r["workload"] == "poll" else "–",
            f'{up.get("ws_connections_total", "–")} / {up.get("ws_open", "–")}' if r["workload"] == "websocket" else "–",
            r["deliveries_per_s"], g(r, "p50_us"), g(r, "p99_us"), g(r, "max_us"),
            g(r, "errors", "in_window"), g(r, "proxy", "cpu_util"),
            g(r, "proxy", "cpu_us_per_delivery"), r["loadavg_start"]]) + " |")
H2_LABELS = ("h2-idle-shared", "h2-idle-unshared", "h1-passthrough", "h2-passthrough", "h1tls-passthrough")
h2 = [r for r in rows if "status" not in r and r["label"] in H2_LABELS]
if h2:
    md += ["", "## HTTP/2 over TLS", "",
           "Clients speak HTTP/2 over TLS (ALPN h2, 100 streams per connection) or HTTP/1.1 over TLS",
           "(h1tls, one connection per stream) to sse-edge (:18443) and nginx (nginx-h2.conf, :18444); the",
           "direct baseline is plain HTTP/1.1 to the upstream. Added p50/p99 = the row's minus the",
           "closest earlier direct row with the same streams (same run).", "",
           "| label | target | transport | streams | connections | ev/s | deliveries/s | p50 µs | p99 µs | added p50 µs | added p99 µs | errors | proxy RSS KiB/stream | proxy CPU % | CPU µs/delivery | load avg |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    direct = {}
    for r in h2:
        if r.get("target") == "direct":
            direct[r["streams"]] = r
        base = direct.get(r["streams"]) if r["label"].endswith("passthrough") and r.get("target") != "direct" else None
        added = lambda k: (r[k] - base[k]) if base and r.get(k) is not None and base.get(k) is not None else "–"
        md.append("| " + " | ".join(str(x) for x in [
            r["label"], r.get("target", "?"), r.get("transport", "–"), r["connected"],
            r.get("connections", "–"), r["rate"], r["deliveries_per_s"], g(r, "p50_us"), g(r, "p99_us"),
            added("p50_us"), added("p99_us"), g(r, "errors", "in_window"),
            g(r, "proxy", "rss_per_stream_kib"), g(r, "proxy", "cpu_util"),
            g(r, "proxy", "cpu_us_per_delivery"), r["loadavg_start"]]) + " |")
open(f"{out}/RESULTS.md", "w").write("\n".join(md) + "\n")

# Bar charts: p99 latency per run, and idle RSS per stream.
bars = [(f"{r['label']} {r.get('target','')} {r['connected']}×{r['rate']:g}", r["p99_us"] / 1000)
        for r in rows if "status" not in r and r.get("p99_us")]
rss = [(f"{r['label']} {r.get('target','')} {r['connected']}", r["proxy"]["rss_per_stream_kib"])
       for r in rows if "status" not in r and r["label"].startswith(("idle", "h2-idle"))
       and r["proxy"].get("rss_per_stream_kib") is not None]
def chart(title, unit, data, y0):
    if not data:
        return "", y0
    w, bh, lw = 760, 18, 300
    top = max(v for _, v in data) or 1
    s = [f'<text x="10" y="{y0+16}" font-weight="bold">{html.escape(title)}</text>']
    for i, (name, v) in enumerate(data):
        y = y0 + 28 + i * (bh + 6)
        bw = max(1, (w - lw - 90) * v / top)
        s.append(f'<text x="10" y="{y+13}" font-size="12">{html.escape(name)}</text>')
        s.append(f'<rect x="{lw}" y="{y}" width="{bw:.1f}" height="{bh}" fill="#3b7dd8"/>')
        s.append(f'<text x="{lw+bw+5:.1f}" y="{y+13}" font-size="12">{v:.2f} {unit}</text>')
    return "\n".join(s), y0 + 40 + len(data) * (bh + 6)
a, y = chart("p99 delivery latency", "ms", bars, 0)
b, y = chart("idle proxy RSS per stream", "KiB", rss, y + 10)
cpu = [(f"{r['label']} {r.get('target','')} {r['connected']}×{r['rate']:g}", r["proxy"]["cpu_us_per_delivery"])
       for r in rows if "status" not in r and r["label"] == "fanout"
       and r["proxy"].get("cpu_us_per_delivery") is not None]
c, y = chart("fan-out proxy CPU per delivery", "µs", cpu, y + 10)
b = b + "\n" + c
svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="800" height="{y+30}" font-family="sans-serif">\n'
       f'<rect width="100%" height="100%" fill="white"/>\n{a}\n{b}\n'
       f'<text x="10" y="{y+20}" font-size="11" fill="#555">{html.escape(machine)}</text>\n</svg>\n')
open(f"{out}/chart.svg", "w").write(svg)
PY
log "wrote $OUT/RESULTS.md, $OUT/results.jsonl, $OUT/chart.svg"
