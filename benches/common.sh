# Helpers shared by the hand-run benchmark scripts (sourced from the repository root, not
# run): every process a script starts goes into PIDS and is killed by pid when it exits; the
# builds; the upstream and the proxy under test, pinned apart; a wait for a listening port.

PIDS=()

# Kills what the script started (by pid) and reaps it.
kill_started() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

# The executable of bench target $1, built if needed.
bench_exe() {
  cargo bench --no-run --bench "$1" --message-format=json 2>/dev/null |
    jq -r --arg n "$1" 'select(.executable != null and .target.name == $n) | .executable' | tail -1
}

# Waits up to 30 s (a proxy under valgrind starts slowly) for HOST:PORT $1 to accept a
# connection.
wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timeout waiting for $1" >&2
  return 1
}

# Builds the proxy and the bench targets: sets BIN (unless given), LOADGEN and UPSTREAM.
build_bench() {
  cargo build --release --quiet
  BIN=${BIN:-$PWD/target/release/sse-edge}
  LOADGEN=$(bench_exe loadgen)
  UPSTREAM=$(bench_exe bench_upstream)
}

# Starts the bench upstream on CPU 0, sending $1 events/s of 100 bytes on every stream.
start_upstream() {
  taskset -c 0 "$UPSTREAM" --listen 127.0.0.1:18001 --rate "$1" --size 100 2>/dev/null &
  PIDS+=($!)
  sleep 0.5
}

# Starts proxy $1 (sse-edge or nginx, with the configs in benches/) on CPU 1, run by the
# command in the remaining arguments if any (valgrind), its output in $RUN; sets PROXY and
# ADDR, and returns once it listens.
start_proxy() {
  local target=$1
  shift
  case $target in
    sse-edge)
      RUST_LOG=warn taskset -c 1 "$@" "$BIN" --config benches/sse-edge.bench.yaml \
        >"$RUN/proxy.log" 2>&1 &
      ADDR=127.0.0.1:18080
      ;;
    nginx)
      mkdir -p "$RUN/nginx"
      taskset -c 1 "$@" nginx -e "$RUN/nginx/error.log" -p "$RUN/nginx/" \
        -c "$PWD/benches/nginx.conf" -g 'daemon off; master_process off;' >"$RUN/proxy.log" 2>&1 &
      ADDR=127.0.0.1:18081
      ;;
    *) echo "TARGET is sse-edge or nginx" >&2; exit 2 ;;
  esac
  PROXY=$!
  PIDS+=("$PROXY")
  wait_port "$ADDR"
}
