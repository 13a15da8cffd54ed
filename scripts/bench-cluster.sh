#!/usr/bin/env bash
# The cost of the cluster's fan-out, on one machine: the same N clustered
# 64-bit codes (MIH, k=10 searches) served by one single node, and by a
# cluster of 3 nodes (3 shards, 1 copy each) on loopback, searched through
# one node with wrk: one connection (latency), then CONNS connections
# (throughput). All processes share this machine's cores, so this measures
# what a fan-out costs, not what more machines gain (docs/cluster.md).
#   bash scripts/bench-cluster.sh
#   N=1000000 CONNS=16 DURATION=20 bash scripts/bench-cluster.sh
# Needs a built `hamdb`, etcd, wrk, curl and python3-numpy (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
HAMDB=${HAMDB:-$PWD/build/tools/hamdb}
N=${N:-200000}
CONNS=${CONNS:-8}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
for tool in etcd wrk curl; do
  command -v $tool >/dev/null || { echo "$tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
[ -x "$HAMDB" ] || { echo "no hamdb at $HAMDB (build it first)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/hamdb-bench-cluster.XXXXXX)
PIDS=()
cleanup() {
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; done  # etcd last
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
source scripts/bench_lib.sh

"$HAMDB" generate --n "$N" --bits 64 --kind clustered --centres 1000 --flip 0.05 --seed 1 --out "$WORK/codes.npy" >/dev/null
/usr/bin/python3 -c "import sys; sys.path.insert(0, 'scripts'); import wrk_report; wrk_report.search_lua(*sys.argv[1:])" \
  "$WORK/codes.npy" "$WORK/search.lua" bench

ETCD_PORT=$(free_port); ETCD_PEER=$(free_port); ETCD=http://127.0.0.1:$ETCD_PORT
etcd --data-dir "$WORK/etcd" --listen-client-urls $ETCD --advertise-client-urls $ETCD \
  --listen-peer-urls http://127.0.0.1:$ETCD_PEER --initial-advertise-peer-urls http://127.0.0.1:$ETCD_PEER \
  --initial-cluster default=http://127.0.0.1:$ETCD_PEER >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf $ETCD/health >/dev/null && break; sleep 0.1; done

declare -A PORT
for n in n1 n2 n3 single; do PORT[$n]=$(free_port); done
"$HAMDB" collection create bench --bits 64 --index MIH --db "$WORK/single" >/dev/null
"$HAMDB" put -c bench "$WORK/codes.npy" --db "$WORK/single" >/dev/null
"$HAMDB" serve --db "$WORK/single" --port "${PORT[single]}" --threads "$THREADS" >"$WORK/single.log" 2>&1 &
PIDS+=($!)
for n in n1 n2 n3; do
  "$HAMDB" serve --db "$WORK/$n" --port "${PORT[$n]}" --threads "$THREADS" --cluster $ETCD --node-id $n \
    --advertise "http://127.0.0.1:${PORT[$n]}" >"$WORK/$n.log" 2>&1 &
  PIDS+=($!)
done
for n in n1 n2 n3 single; do wait_ready "http://127.0.0.1:${PORT[$n]}" "$WORK/$n.log"; done
N1=http://127.0.0.1:${PORT[n1]}
sleep 2  # every node has read the member list
curl -sf -X POST "$N1/collections" -H 'Content-Type: application/json' \
  -d '{"name": "bench", "bits": 64, "index": "MIH", "shards": 3, "replication_factor": 1}' >/dev/null
/usr/bin/python3 - "$WORK/codes.npy" "$N1" <<'PY'
import json, sys, urllib.request
import numpy as np
codes = np.load(sys.argv[1])
for start in range(0, len(codes), 10000):
    items = [{"id": start + i, "code": bytes(c).hex()} for i, c in enumerate(codes[start:start + 10000])]
    req = urllib.request.Request(sys.argv[2] + "/collections/bench/items", data=json.dumps({"items": items}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=300).read()
PY
echo "items: single $(curl -s "http://127.0.0.1:${PORT[single]}/collections/bench" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["items"])')," \
     "cluster $(curl -s "$N1/collections/bench" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["items"])')"

for target in single n1; do
  for c in 1 "$CONNS"; do
    wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$WORK/search.lua" "http://127.0.0.1:${PORT[$target]}" \
      >"$WORK/wrk-$target-$c.txt"
  done
done
/usr/bin/python3 - "$WORK" "$CONNS" "$N" <<'PY'
import sys
sys.path.insert(0, "scripts")
import wrk_report
work, conns, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
print(f"\n{n:,} clustered 64-bit codes, MIH, k=10; one machine")
print("| served by | connections | req/s | p50 ms | p99 ms | errors |")
print("|---|---:|---:|---:|---:|---:|")
rows = {}
for target, label in (("single", "single node"), ("n1", "3-node cluster, 3 shards, via n1")):
    for c in ("1", conns):
        rps, p50, p99, err = wrk_report.parse(f"{work}/wrk-{target}-{c}.txt")
        rows[(target, c)] = (rps, p50)
        print(f"| {label} | {c} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {err} |")
for c in ("1", conns):
    (r1, l1), (r3, l3) = rows[("single", c)], rows[("n1", c)]
    print(f"{c} connection(s): cluster/single req/s {r3 / r1:.2f}x, p50 {l3 / l1:.2f}x")
PY
