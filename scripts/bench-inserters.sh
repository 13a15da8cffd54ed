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
# p99, the server's CPU (from /proc) in cores and per item, wrk's CPU per
# item, the share of the machine's cores busy and its CPU per item (server,
# wrk and kernel), write requests per group commit, and from the server's
# metrics the share of the run the commit path was busy, split into the
# fsync, the rest of the store batch and the index update. Then, per batch
# size, the median items/s of each inserter count and its ratio to the first
# count's, and each count's CPU ceiling: the items/s all cores would give at
# its median machine CPU per item. A ratio target above the ceiling's ratio
# cannot be met on this machine at that cost per item.
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

source scripts/bench_lib.sh
bench_store

# CPU ticks, read without starting a process: MACHINE=(busy total) over
# all cores (/proc/stat; busy leaves out idle, iowait and steal), and CLIENT,
# the CPU of this shell's finished children, which between two reads around
# the wrk run is wrk's own.
cpu_ticks() {
  local label user nice system idle iowait irq softirq steal rest
  read -r label user nice system idle iowait irq softirq steal rest < /proc/stat
  MACHINE=($(( user + nice + system + irq + softirq ))
           $(( user + nice + system + idle + iowait + irq + softirq + steal )))
  local -a st
  read -r -a st < "/proc/$$/stat"
  CLIENT=$(( st[15] + st[16] ))
}

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
      wait_ready "http://127.0.0.1:$PORT" "$WORK/inserters-serve.log"
      ticks0=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
      curl -s "http://127.0.0.1:$PORT/metrics" > "$WORK/metrics-before.txt"
      cpu_ticks; machine0=("${MACHINE[@]}"); client0=$CLIENT
      wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$WORK/insert-$batch.lua" "http://127.0.0.1:$PORT" \
        > "$WORK/inserters-wrk.txt"
      cpu_ticks; machine1=("${MACHINE[@]}"); client1=$CLIENT
      ticks1=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
      curl -s "http://127.0.0.1:$PORT/metrics" > "$WORK/metrics-after.txt"
      kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true
      SERVER=""
      /usr/bin/python3 - "$WORK" "$PWD/scripts" "$r" "$batch" "$c" "$DURATION" \
        "$(( ticks1 - ticks0 ))" "$(getconf CLK_TCK)" "$(( client1 - client0 ))" \
        "$(( machine1[0] - machine0[0] ))" "$(( machine1[1] - machine0[1] ))" >> "$RUNS" <<'PY'
import sys
work, scripts = sys.argv[1], sys.argv[2]
r, batch, c, duration, ticks, hz, client, busy, total = (int(float(x)) for x in sys.argv[3:12])
sys.path.insert(0, scripts)
import wrk_report
rps, p50, p99, errors = wrk_report.parse(f"{work}/inserters-wrk.txt")
before, after = f"{work}/metrics-before.txt", f"{work}/metrics-after.txt"
items = (wrk_report.metric(after, "hamdb_write_items_total", "bench") -
         wrk_report.metric(before, "hamdb_write_items_total", "bench")) / duration
cpu = ticks / hz / duration
client_cpu = client / hz / duration
busy_share = busy / total if total else 0
machine_cpu = busy / hz / duration
def per_item(cores):
    return cores / items * 1e6 if items else 0
print(r, batch, c, items, p50, p99, cpu, per_item(cpu), errors, per_item(client_cpu),
      f"{busy_share:.3f}", per_item(machine_cpu),
      *wrk_report.commit_stages(before, after, duration, "bench"))
PY
    done
  done
done

/usr/bin/python3 - "$RUNS" "$BATCHES" "$INSERTERS" "$(getconf _NPROCESSORS_ONLN)" <<'PY'
import statistics, sys
runs = [line.split() for line in open(sys.argv[1])]
batches, inserters, ncpu = sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4])
print("| batch | inserters | round | items/s | batch p50 ms | p99 ms | server CPU, cores | server CPU us/item "
      "| wrk CPU us/item | machine busy | machine CPU us/item "
      "| requests per group | commit path busy | of it: fsync | rest of store batch | index |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for b in batches:
    for c in inserters:
        for x in runs:
            if x[1] != b or x[2] != c:
                continue
            items, p50, p99, cpu, per_item = map(float, x[3:8])
            client, busy, machine = map(float, x[9:12])
            print(f"| {b} | {c} | {x[0]} | {items:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.2f} | {per_item:.1f} | "
                  f"{client:.1f} | {busy:.0%} | {machine:.1f} | "
                  + " | ".join(x[12:]) + " |" + (f" non-2xx: {x[8]}" if x[8] != "0" else ""))
print()
# The CPU ceiling of a run: the items/s that all the machine's cores would
# give at the machine CPU per item the run measured (server, wrk and kernel
# together), whatever the commit path allowed.
for b in batches:
    def median(c, field):
        return statistics.median(float(x[field]) for x in runs if x[1] == b and x[2] == c)
    med = {c: median(c, 3) for c in inserters}
    base = med[inserters[0]]
    print(f"batch {b}: median items/s " + ", ".join(
        f"{c} inserter(s) {med[c]:,.0f} ({med[c] / base:.2f}x)" for c in inserters))
    ceiling = {c: ncpu * 1e6 / median(c, 11) for c in inserters}
    print(f"batch {b}: CPU ceiling on {ncpu} cores, at each count's median machine CPU per item: " + ", ".join(
        f"{c} inserter(s) {ceiling[c]:,.0f} items/s ({ceiling[c] / base:.2f}x, reached {med[c] / ceiling[c]:.0%})"
        for c in inserters))
PY
echo "work dir: $WORK (delete when done)"
