# Sourced by the HTTP load benchmarks, which set HAMDB, and WORK and N for
# bench_store.

# Exits unless wrk and the hamdb binary at $HAMDB are there.
bench_tools() {
  command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
  [ -x "$HAMDB" ] || { echo "no hamdb binary at $HAMDB (build it first)"; exit 1; }
}

# Makes the benchmarks' store in $WORK/db unless it is there: $N clustered
# 64-bit codes (1000 centres, 5% of bits flipped, seed 1) in a MIH
# collection named bench.
bench_store() {
  bench_tools
  [ -d "$WORK/db" ] && return 0
  "$HAMDB" generate --n "$N" --bits 64 --kind clustered --centres 1000 --flip 0.05 --seed 1 \
    --out "$WORK/codes.npy"
  "$HAMDB" collection create bench --bits 64 --index MIH --db "$WORK/db"
  "$HAMDB" put -c bench "$WORK/codes.npy" --db "$WORK/db"
}

# Waits for the server at URL $1 to answer /readyz, up to $3 seconds
# (default 300: a large store loads its index first); exits with the
# server's log ($2) if it does not.
wait_ready() {
  local seconds=${3:-300}
  for _ in $(seq 1 $(( seconds * 5 ))); do
    curl -sf "$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "the server at $1 is not ready after $seconds s"; cat "$2"; exit 1
}
