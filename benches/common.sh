# Helpers shared by the hand-run benchmark scripts (sourced, not run): every process a script
# starts goes into PIDS and is killed by pid when it exits; a bench target's executable; a
# wait for a listening port.

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

# Waits up to 10 s for HOST:PORT $1 to accept a connection.
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timeout waiting for $1" >&2
  return 1
}
