#!/usr/bin/env bash
# Ingest into a running server against ingest into a local store, on the same
# images, side by side: `hamdb ingest --db` and `hamdb ingest --url` (encoding
# on the client, the server storing) alternate ROUNDS times on fresh stores,
# and the medians of their images/s are compared, and of their CPU time per
# image (client, and server), which a noisy machine disturbs less. Then the
# search latency of the server with and without such an ingest beside it: wrk
# searches (k=10, codes of stored items) on collection "f" (the 60k train
# images) for DURATION s alone, then again while `nice -n 19 hamdb ingest
# --url --threads 1` ingests the same images into a second collection "g",
# and a control: the same ingest into another server (both at nice 19) while
# the first answers only searches. Each search run beside an ingest starts
# once that ingest has stored its first batch, and the items it stores
# during the run are counted: a row whose ingest stored nothing measured no
# ingest.
#   bash scripts/bench-ingest-url.sh
#   ROUNDS=3 DURATION=20 CONNS=4 bash scripts/bench-ingest-url.sh
# Needs a built `hamdb` (BUILD_DIR, default build), the demo's encoder and
# images (scripts/demo.sh: demo-data/fashion-llc16.hdbe, demo-data/fashion-mnist),
# wrk and python3-numpy (/usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
HAMDB=${HAMDB:-$BUILD_DIR/tools/hamdb}
MODEL=${MODEL:-demo-data/fashion-llc16.hdbe}
IMAGES=${IMAGES:-demo-data/fashion-mnist/train}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-20}
CONNS=${CONNS:-4}
BESIDE_BATCH=${BESIDE_BATCH:-512}   # --batch of the ingest beside the searches
PORT=${PORT:-18081}
WORK=${WORK:-$(mktemp -d /tmp/hamdb-bench-ingest-url.XXXXXX)}
URL="http://127.0.0.1:$PORT"
mkdir -p "$WORK"
source scripts/bench_lib.sh
bench_tools
[ -f "$MODEL" ] && [ -d "$IMAGES" ] || { echo "run scripts/demo.sh first (needs $MODEL and $IMAGES)"; exit 1; }
unset HAMDB_DB HAMDB_URL

SERVER=""
OTHER=""
start_server() {
  mkdir -p "$WORK/models"
  "$HAMDB" serve --db "$WORK/srv" --port "$PORT" --models-dir "$WORK/models" 2> "$WORK/serve.log" &
  SERVER=$!
  wait_ready "$URL" "$WORK/serve.log"
}
stop_server() {
  [ -n "$SERVER" ] && { kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
  SERVER=""
  [ -n "$OTHER" ] && { kill -TERM "$OTHER" 2>/dev/null || true; wait "$OTHER" 2>/dev/null || true; }
  OTHER=""
}
trap stop_server EXIT
# Items in collection $2 of the server at $1 (empty when it does not exist yet).
items_of() { curl -s "$1/collections/$2" | sed -n 's/.*"items":\([0-9]*\).*/\1/p'; }
# Waits (up to 2 minutes) until collection $2 at $1 holds items, so that the
# searches beside an ingest start once the ingest is storing: a client at
# nice 19 can take a while to load its encoder on a busy machine.
wait_storing() {
  for _ in $(seq 1 1200); do
    [ "$(items_of "$1" "$2")" -gt 0 ] 2>/dev/null && return 0
    sleep 0.1
  done
  echo "the ingest into $2 stored nothing in 2 minutes"; exit 1
}
rate() { sed -n 's/.*(\([0-9]*\) images\/s ingested).*/\1/p' "$1"; }
ingested() { sed -n 's/.*files: \([0-9]*\) ingested.*/\1/p' "$1"; }
# CPU seconds (user + system) the process $1 has used so far.
TICKS=$(getconf CLK_TCK)
cpu_of_pid() { awk -v t="$TICKS" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }

echo "== ingest: $(find "$IMAGES" -type f | wc -l) images of $IMAGES, $ROUNDS rounds (local, then through the server)"
: > "$WORK/rates.txt"
# Besides images/s, the CPU time each way (bash's `time`: user + system of
# the client; the server's from /proc), which a noisy machine disturbs less.
TIMEFORMAT='%U %S'
for r in $(seq 1 "$ROUNDS"); do
  rm -rf "$WORK/local"
  { time "$HAMDB" ingest --db "$WORK/local" -c f -m "$MODEL" --images "$IMAGES" > "$WORK/local-$r.txt" 2>/dev/null; } \
    2> "$WORK/local-cpu-$r.txt"
  rm -rf "$WORK/srv" "$WORK/models"
  start_server
  S0=$(cpu_of_pid "$SERVER")
  { time "$HAMDB" ingest --url "$URL" -c f -m "$MODEL" --images "$IMAGES" > "$WORK/url-$r.txt" 2>/dev/null; } \
    2> "$WORK/url-cpu-$r.txt"
  S1=$(cpu_of_pid "$SERVER")
  [ "$r" = "$ROUNDS" ] || stop_server
  echo "round $r: local $(rate "$WORK/local-$r.txt") images/s, --url $(rate "$WORK/url-$r.txt") images/s"
  echo "$(rate "$WORK/local-$r.txt") $(rate "$WORK/url-$r.txt") $(ingested "$WORK/local-$r.txt")" \
       "$(ingested "$WORK/url-$r.txt") $(cat "$WORK/local-cpu-$r.txt") $(cat "$WORK/url-cpu-$r.txt") $S0 $S1" \
    >> "$WORK/rates.txt"
  grep -h "^time" "$WORK/local-$r.txt" "$WORK/url-$r.txt" | sed 's/^/  /'
done

# Query codes: the codes of 1000 stored items, through the API.
/usr/bin/python3 - "$URL" "$WORK/search.lua" <<'PY'
import json, sys, urllib.request
url, out = sys.argv[1], sys.argv[2]
codes = set()
for q in range(0, 65536, 64):
    body = json.dumps({"code": "%04x" % q, "k": 4}).encode()
    req = urllib.request.Request(url + "/collections/f/search", body, {"Content-Type": "application/json"})
    for r in json.load(urllib.request.urlopen(req))["results"]:
        codes.add(json.load(urllib.request.urlopen(f"{url}/collections/f/items/{r['id']}"))["code"])
    if len(codes) >= 1000:
        break
sys.path.insert(0, "scripts")
import wrk_report
wrk_report.write_search_lua(sorted(codes), out, "f")
PY

echo "== search k=10 on f (60k items): wrk -t1 -c$CONNS -d${DURATION}s, alone"
wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/search.lua" "$URL" > "$WORK/search-only.txt"
echo "== the same beside: nice -n 19 hamdb ingest --url $URL -c g -m $MODEL --images $IMAGES --threads 1 --batch $BESIDE_BATCH"
nice -n 19 "$HAMDB" ingest --url "$URL" -c g -m "$MODEL" --images "$IMAGES" --threads 1 --batch "$BESIDE_BATCH" \
  > "$WORK/ingest-beside.txt" 2>/dev/null &
INGEST=$!
wait_storing "$URL" g
G0=$(items_of "$URL" g)
wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/search.lua" "$URL" > "$WORK/search-ingest.txt"
G=$(( $(items_of "$URL" g) - G0 ))
kill -INT "$INGEST" 2>/dev/null || true
wait "$INGEST" 2>/dev/null || true

# The control: the same ingest into a second server, client and server both
# at nice 19, while the first server answers only searches. What the
# searches lose here is the machine's, not the first server's write path.
echo "== control: the same ingest into a second server (nice 19) on port $((PORT + 1)), searches on the first"
rm -rf "$WORK/other" "$WORK/other-models"
mkdir -p "$WORK/other-models"
nice -n 19 "$HAMDB" serve --db "$WORK/other" --port $((PORT + 1)) --models-dir "$WORK/other-models" \
  2> "$WORK/other.log" &
OTHER=$!
wait_ready "http://127.0.0.1:$((PORT + 1))" "$WORK/other.log"
nice -n 19 "$HAMDB" ingest --url "http://127.0.0.1:$((PORT + 1))" -c g -m "$MODEL" --images "$IMAGES" --threads 1 \
  --batch "$BESIDE_BATCH" > "$WORK/ingest-elsewhere.txt" 2>/dev/null &
INGEST=$!
wait_storing "http://127.0.0.1:$((PORT + 1))" g
E0=$(items_of "http://127.0.0.1:$((PORT + 1))" g)
wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/search.lua" "$URL" > "$WORK/search-elsewhere.txt"
E=$(( $(items_of "http://127.0.0.1:$((PORT + 1))" g) - E0 ))
kill -INT "$INGEST" 2>/dev/null || true
wait "$INGEST" 2>/dev/null || true
kill -TERM "$OTHER" 2>/dev/null || true
wait "$OTHER" 2>/dev/null || true
OTHER=""

/usr/bin/python3 - "$WORK" "$G" "$BESIDE_BATCH" "$PWD/scripts" "$E" "$DURATION" <<'PY'
import statistics, sys
work, g, batch, scripts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
e, duration = int(sys.argv[5]), float(sys.argv[6])
rates = [tuple(map(float, l.split())) for l in open(f"{work}/rates.txt") if l.strip()]
loc = statistics.median(r[0] for r in rates)
url = statistics.median(r[1] for r in rates)
print("| ingest | images/s (median of %d) |" % len(rates))
print("|---|---:|")
print(f"| local store (`--db`) | {loc:,.0f} |")
print(f"| running server (`--url`) | {url:,.0f} |")
print(f"--url / local: {url / loc:.2f}")
# CPU per stored image: the local client, and the --url client plus the server.
cpu_loc = statistics.median((r[4] + r[5]) / r[2] * 1e6 for r in rates)
cpu_cli = statistics.median((r[6] + r[7]) / r[3] * 1e6 for r in rates)
cpu_srv = statistics.median((r[9] - r[8]) / r[3] * 1e6 for r in rates)
print(f"CPU per image (medians): local {cpu_loc:.0f} us; --url {cpu_cli + cpu_srv:.0f} us "
      f"(client {cpu_cli:.0f}, server {cpu_srv:.0f}); local / --url: {cpu_loc / (cpu_cli + cpu_srv):.2f}")
sys.path.insert(0, scripts)
import wrk_report
def parse(name):
    return wrk_report.parse(f"{work}/{name}")
so, si, se = parse("search-only.txt"), parse("search-ingest.txt"), parse("search-elsewhere.txt")
print()
print("| load | search req/s | p50 ms | p99 ms |")
print("|---|---:|---:|---:|")
print(f"| searches only | {so[0]:,.0f} | {so[1]:.2f} | {so[2]:.2f} |")
print(f"| searches + ingest --url (nice 19, 1 thread, batch {batch}; {g:,} items stored meanwhile, {g / duration:,.0f}/s) "
      f"| {si[0]:,.0f} | {si[1]:.2f} | {si[2]:.2f} |")
print(f"| searches + the same ingest into another server (both nice 19; {e:,} items stored meanwhile) "
      f"| {se[0]:,.0f} | {se[1]:.2f} | {se[2]:.2f} |")
for stored, what in ((g, "ingest"), (e, "control")):
    if stored == 0:
        print(f"warning: the {what} stored nothing while the searches ran, so its row measures no ingest")
print(f"p99 with ingest / alone: {si[2] / so[2]:.2f}; throughput ratio {si[0] / so[0]:.2f}; "
      f"p99 with the ingest elsewhere / alone: {se[2] / so[2]:.2f}"
      + (f"; non-2xx: {so[3]} / {si[3]}" if so[3] or si[3] else ""))
PY
