#!/usr/bin/env bash
# Durable insert throughput of concurrent inserters, with no searches: wrk
# connections post BATCH random 64-bit codes per request, each as soon as its
# last one is answered, into a copy of a store of N clustered codes in a MIH
# collection (the store of bench-http.sh, made here when WORK has none).
#   bash scripts/bench-inserters.sh
#   WORK=/tmp/bhttp BATCHES="100 1" INSERTERS="1 8" ROUNDS=3 DURATION=10 bash scripts/bench-inserters.sh
# Each round runs every batch size with every inserter count, each on a fresh
# copy of the store and a fresh server, so that the runs being compared
# alternate on a noisy machine. A row per run: items/s, batch latency p50 and
# p99, the server's CPU (from /proc) in cores and per item, write requests
# per group commit, and from the server's metrics the share of the run the
# commit path was busy, split into the fsync, the rest of the store batch
# and the index update. Then, per batch size, the median items/s of each
# inserter count and its ratio to the first count's.
# Needs a built `hamdb` (BUILD_DIR, default build), wrk and python3-numpy.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
HAMDB=${HAMDB:-$BUILD_DIR/tools/hamdb}
N=${N:-1000000}
BATCHES=${BATCHES:-100 1}
INSERTERS=${INSERTERS:-1 8}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
PORT=${PORT:-18081}
WORK=${WORK:-$(mktemp -d /tmp/hamdb-bench-inserters.XXXXXX)}
mkdir -p "$WORK"

source scripts/bench_store.sh
bench_store

SERVER=""
trap '[ -n "$SERVER" ] && { kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; }' EXIT
RUNS="$WORK/inserter-runs.txt"
: > "$RUNS"
for r in $(seq 1 "$ROUNDS"); do
  for batch in $BATCHES; do
    /usr/bin/python3 -c "import sys; sys.path.insert(0, 'scripts'); import wrk_report; wrk_report.insert_lua(sys.argv[1], 'bench', int(sys.argv[2]), 0)" \
      "$WORK/insert-$batch.lua" "$batch"
    for c in $INSERTERS; do
      rm -rf "$WORK/db-inserters"
      cp -r "$WORK/db" "$WORK/db-inserters"
      "$HAMDB" serve --db "$WORK/db-inserters" --port "$PORT" --no-snapshots ${SERVE_ARGS:-} \
        > "$WORK/inserters-serve.log" 2>&1 &
      SERVER=$!
      for _ in $(seq 1 600); do
        curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
        sleep 0.2
      done
      curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$WORK/inserters-serve.log"; exit 1; }
      ticks0=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
      curl -s "http://127.0.0.1:$PORT/metrics" > "$WORK/metrics-before.txt"
      wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$WORK/insert-$batch.lua" "http://127.0.0.1:$PORT" \
        > "$WORK/inserters-wrk.txt"
      ticks1=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
      curl -s "http://127.0.0.1:$PORT/metrics" > "$WORK/metrics-after.txt"
      kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true
      SERVER=""
      /usr/bin/python3 - "$WORK" "$PWD/scripts" "$r" "$batch" "$c" "$DURATION" \
        "$(( ticks1 - ticks0 ))" "$(getconf CLK_TCK)" >> "$RUNS" <<'PY'
import sys
work, scripts = sys.argv[1], sys.argv[2]
r, batch, c, duration, ticks, hz = (int(float(x)) for x in sys.argv[3:9])
sys.path.insert(0, scripts)
import wrk_report
rps, p50, p99, errors = wrk_report.parse(f"{work}/inserters-wrk.txt")
before, after = f"{work}/metrics-before.txt", f"{work}/metrics-after.txt"
items = (wrk_report.metric(after, "hamdb_write_items_total", "bench") -
         wrk_report.metric(before, "hamdb_write_items_total", "bench")) / duration
cpu = ticks / hz / duration
print(r, batch, c, items, p50, p99, cpu, cpu / items * 1e6 if items else 0, errors,
      *wrk_report.commit_stages(before, after, duration, "bench"))
PY
    done
  done
done

/usr/bin/python3 - "$RUNS" "$BATCHES" "$INSERTERS" <<'PY'
import statistics, sys
runs = [line.split() for line in open(sys.argv[1])]
batches, inserters = sys.argv[2].split(), sys.argv[3].split()
print("| batch | inserters | round | items/s | batch p50 ms | p99 ms | server CPU, cores | server CPU us/item "
      "| requests per group | commit path busy | of it: fsync | rest of store batch | index |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for b in batches:
    for c in inserters:
        for x in runs:
            if x[1] != b or x[2] != c:
                continue
            items, p50, p99, cpu, per_item = map(float, x[3:8])
            print(f"| {b} | {c} | {x[0]} | {items:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.2f} | {per_item:.1f} | "
                  + " | ".join(x[9:]) + " |" + (f" non-2xx: {x[8]}" if x[8] != "0" else ""))
print()
for b in batches:
    med = {c: statistics.median(float(x[3]) for x in runs if x[1] == b and x[2] == c) for c in inserters}
    base = med[inserters[0]]
    print(f"batch {b}: median items/s " + ", ".join(
        f"{c} inserter(s) {med[c]:,.0f} ({med[c] / base:.2f}x)" for c in inserters))
PY
echo "work dir: $WORK (delete when done)"
