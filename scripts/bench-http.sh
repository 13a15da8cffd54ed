#!/usr/bin/env bash
# Load benchmark of the HTTP service on loopback with wrk: 1M clustered 64-bit
# codes in a MIH collection, POST /collections/bench/search with k=10 (query
# codes drawn from the data with a few bits flipped), then GET /healthz.
#   bash scripts/bench-http.sh
#   N=1000000 THREADS=2 CONNS=32 DURATION=20 WRK_THREADS=1 bash scripts/bench-http.sh
#   MIXED=1 INSERTERS=1 BATCH=100 bash scripts/bench-http.sh   # plus a search run beside inserters
#   MIXED=1 INSERT_RATE=2250 bash scripts/bench-http.sh         # inserters paced to about 2,250 items/s
# MIXED=1 runs the search load beside INSERTERS wrk connections posting
# BATCH random codes per request, ROUNDS times (default 3), with a phase of
# searches alone before and after each: alone, mixed, alone, mixed, ...,
# alone. Each mixed phase is compared with the mean of the two phases around
# it, which met the collection just before and just after the items it
# added, and the machine at about the same time. It prints a row per phase
# (collection size, search req/s, p50, p99; insert items/s, batch p50, p99)
# and the medians of the rounds' ratios, then the group commits of each
# mixed phase from the server's metrics: requests per group, and the share
# of the phase the commit path was busy (commits run one at a time), split
# into the fsync, the rest of the store batch and the index. Inserters
# post as fast as they are answered, or, with INSERT_RATE (items/s, all
# inserters together), wait BATCH * INSERTERS / INSERT_RATE seconds after
# each answer, so the rate reached is a little below INSERT_RATE. The
# collection is copied from a pristine store before the runs, so that two
# binaries (HAMDB=...) can be compared on the same data.
# SERVE_ARGS adds options to `hamdb serve` (for example "--write-threads 4").
# Needs a built `hamdb` (BUILD_DIR, default build), wrk and python3-numpy (Debian packages;
# /usr/bin/python3 is used so that a pyenv python without numpy is not picked up).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
HAMDB=${HAMDB:-$BUILD_DIR/tools/hamdb}
N=${N:-1000000}
THREADS=${THREADS:-2}       # server threads
CONNS=${CONNS:-32}          # wrk connections
WRK_THREADS=${WRK_THREADS:-1}
DURATION=${DURATION:-20}
PORT=${PORT:-18080}
WORK=${WORK:-$(mktemp -d /tmp/hamdb-bench-http.XXXXXX)}
mkdir -p "$WORK"
DB=$WORK/db
MIXED=${MIXED:-0}
INSERTERS=${INSERTERS:-1}
BATCH=${BATCH:-100}
INSERT_RATE=${INSERT_RATE:-0}
ROUNDS=${ROUNDS:-3}

source scripts/bench_lib.sh
bench_store

# The inserts of a run must not leak into the next one: serve a copy.
if [ "$MIXED" = 1 ]; then
  rm -rf "$WORK/db-run"
  cp -r "$DB" "$WORK/db-run"
  DB=$WORK/db-run
fi

# 1000 query codes: stored codes with 2 random bits flipped, as hex.
/usr/bin/python3 -c "import sys; sys.path.insert(0, 'scripts'); import wrk_report; wrk_report.search_lua(*sys.argv[1:])" \
  "$WORK/codes.npy" "$WORK/search.lua" bench

"$HAMDB" serve --db "$DB" --port "$PORT" --threads "$THREADS" ${SERVE_ARGS:-} 2> "$WORK/serve.log" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
wait_ready "http://127.0.0.1:$PORT" "$WORK/serve.log"
grep -E "index .* built" "$WORK/serve.log" || true
echo "== sample response"
curl -s -X POST -H 'Content-Type: application/json' \
  -d "{\"code\":\"$(sed -n 5p "$WORK/search.lua" | tr -d '",')\",\"k\":10}" \
  "http://127.0.0.1:$PORT/collections/bench/search"; echo

search_load() {  # search_load OUT: the search load for DURATION seconds
  wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/search.lua" "http://127.0.0.1:$PORT" > "$1"
}
echo "== search k=10: server threads $THREADS, wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s"
search_load "$WORK/search-only-1.txt"
cat "$WORK/search-only-1.txt"

if [ "$MIXED" = 1 ]; then
  /usr/bin/python3 -c "import sys; sys.path.insert(0, 'scripts'); import wrk_report; wrk_report.insert_lua(*sys.argv[1:3], int(sys.argv[3]), sys.argv[4])" \
    "$WORK/insert.lua" bench "$BATCH" "$( [ "$INSERT_RATE" -gt 0 ] && echo "$BATCH * $INSERTERS * 1000 / $INSERT_RATE" || echo 0 )"
  echo "== $ROUNDS rounds: searches alone, then beside $INSERTERS inserter(s) of $BATCH-item batches" \
    "$( [ "$INSERT_RATE" -gt 0 ] && echo "paced to $INSERT_RATE items/s" || echo "posting as fast as answered" )"
  snapshot() { curl -s "http://127.0.0.1:$PORT/metrics" > "$WORK/metrics-$1.txt"; }
  snapshot 1
  for r in $(seq 1 "$ROUNDS"); do
    [ "$r" = 1 ] || search_load "$WORK/search-only-$r.txt"
    wrk -t1 -c"$INSERTERS" -d"${DURATION}s" --latency -s "$WORK/insert.lua" "http://127.0.0.1:$PORT" \
      > "$WORK/insert-$r.txt" &
    INSERT_WRK=$!
    search_load "$WORK/search-mixed-$r.txt"
    wait $INSERT_WRK
    snapshot $((r + 1))
  done
  search_load "$WORK/search-only-$((ROUNDS + 1)).txt"
  cat "$WORK/insert-$ROUNDS.txt"
  /usr/bin/python3 - "$WORK" "$BATCH" "$INSERTERS" "$ROUNDS" "$PWD/scripts" "$DURATION" <<'PY'
import statistics, sys
work, batch, inserters, rounds, scripts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
duration = float(sys.argv[6])
sys.path.insert(0, scripts)
import wrk_report
print("| phase | load | items at start | search req/s | search p50 ms | search p99 ms | insert items/s | batch p50 ms | batch p99 ms |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
def read(name, r):
    return wrk_report.parse(f"{work}/{name}-{r}.txt")
def metric(r, name):
    return wrk_report.metric(f"{work}/metrics-{r}.txt", name, "bench")
def size(r):
    return int(metric(r, "hamdb_collection_items"))
alone = [read("search-only", r) for r in range(1, rounds + 2)]
ratios, p99s, items, errors = [], [], [], sum(a[3] for a in alone)
for r in range(1, rounds + 2):
    so = alone[r - 1]
    print(f"| {2 * r - 1} | searches only | {size(r):,} | {so[0]:,.0f} | {so[1]:.2f} | {so[2]:.2f} | | | |")
    if r > rounds:
        break
    sm, ins = read("search-mixed", r), read("insert", r)
    print(f"| {2 * r} | searches + {inserters} inserter(s), {batch}-item batches | {size(r):,} | {sm[0]:,.0f} | "
          f"{sm[1]:.2f} | {sm[2]:.2f} | {ins[0] * batch:,.0f} | {ins[1]:.2f} | {ins[2]:.2f} |")
    around = (alone[r - 1], alone[r])
    ratios.append(sm[0] / statistics.mean(a[0] for a in around))
    p99s.append(sm[2] / statistics.mean(a[2] for a in around))
    items.append(ins[0] * batch)
    errors += sm[3] + ins[3]
print(f"mixed / searches alone around it, throughput: {', '.join(f'{x:.2f}' for x in ratios)}; "
      f"median {statistics.median(ratios):.2f}")
print(f"search p99, mixed / alone around it: {', '.join(f'{x:.2f}' for x in p99s)}; "
      f"median {statistics.median(p99s):.2f}")
print(f"inserted items/s, median {statistics.median(items):,.0f}" + (f"; non-2xx responses: {errors}" if errors else ""))
print()
print("| phase | write requests per group | commit path busy | of it: fsync | rest of the store batch | index |")
print("|---:|---:|---:|---:|---:|---:|")
for r in range(1, rounds + 1):
    cells = wrk_report.commit_stages(f"{work}/metrics-{r}.txt", f"{work}/metrics-{r + 1}.txt", duration, "bench")
    print(f"| {2 * r} | " + " | ".join(cells) + " |")
PY
fi
echo "== GET /healthz"
wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/healthz"
echo "== server metrics (search route)"
curl -s "http://127.0.0.1:$PORT/metrics" > "$WORK/metrics.txt"
grep -E '^hamdb_http_requests_total.*search|^hamdb_collection_items|^hamdb_index_memory|^hamdb_write_' \
  "$WORK/metrics.txt" || true
# Mean time inside the server per search request (parse, search, JSON), from the histogram.
awk '/^hamdb_http_request_duration_seconds_sum.*search"/ {s=$2} /^hamdb_http_request_duration_seconds_count.*search"/ {c=$2}
     END {if (c > 0) printf "server-side mean per search request: %.1f us over %d requests\n", s / c * 1e6, c}' "$WORK/metrics.txt"
echo "work dir: $WORK (delete when done)"
