# Sourced by the HTTP load benchmarks. bench_store: checks for wrk and
# $HAMDB, and makes their store in $WORK/db unless it is there: $N clustered
# 64-bit codes (1000 centres, 5% of bits flipped, seed 1) in a MIH
# collection named bench.
bench_store() {
  command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
  [ -x "$HAMDB" ] || { echo "no hamdb binary at $HAMDB (build it first)"; exit 1; }
  [ -d "$WORK/db" ] && return 0
  "$HAMDB" generate --n "$N" --bits 64 --kind clustered --centres 1000 --flip 0.05 --seed 1 \
    --out "$WORK/codes.npy"
  "$HAMDB" collection create bench --bits 64 --index MIH --db "$WORK/db"
  "$HAMDB" put -c bench "$WORK/codes.npy" --db "$WORK/db"
}
