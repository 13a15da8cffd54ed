#!/usr/bin/env bash
# A cluster on one machine: etcd and three `hamdb serve --cluster` nodes on
# loopback, a collection of 3 shards with 2 copies each, 20k codes ingested
# through one node, the same query asked of every node, then one node killed
# (kill -9): the query again, more inserts after failover, and the node
# restarted until it has caught up and rejoined (docs/cluster.md).
#
#   bash scripts/cluster-demo.sh
#
# Needs a built `hamdb` (build/tools/hamdb, or HAMDB=...) and etcd, curl and
# jq (scripts/install-deps.sh installs them). Everything runs in a temporary
# directory that is removed at the end (KEEP=1 keeps it and its logs).
set -euo pipefail
cd "$(dirname "$0")/.."
HAMDB=${HAMDB:-$PWD/build/tools/hamdb}
[ -x "$HAMDB" ] || { echo "no hamdb at $HAMDB: build it first (cmake --build build --target hamdb)" >&2; exit 1; }
for tool in etcd curl jq; do
  command -v $tool >/dev/null || { echo "$tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/hamdb-cluster-demo.XXXXXX)
PIDS=()
cleanup() {
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; done  # etcd last
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 200); do curl -sf "$1/readyz" >/dev/null && return 0; sleep 0.1; done; echo "$1 did not start" >&2; return 1; }

ETCD_PORT=$(free_port); ETCD_PEER=$(free_port)
ETCD=http://127.0.0.1:$ETCD_PORT
echo "== etcd at $ETCD"
etcd --data-dir "$WORK/etcd" --listen-client-urls $ETCD --advertise-client-urls $ETCD \
  --listen-peer-urls http://127.0.0.1:$ETCD_PEER --initial-advertise-peer-urls http://127.0.0.1:$ETCD_PEER \
  --initial-cluster default=http://127.0.0.1:$ETCD_PEER >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf $ETCD/health >/dev/null && break; sleep 0.1; done

declare -A PORT PID
start_node() {
  local n=$1
  "$HAMDB" serve --db "$WORK/$n" --port "${PORT[$n]}" --threads 2 --cluster $ETCD --node-id "$n" \
    --advertise "http://127.0.0.1:${PORT[$n]}" --cluster-lease-ttl 2 >>"$WORK/$n.log" 2>&1 &
  PID[$n]=$!
  PIDS+=($!)
}
for n in n1 n2 n3; do PORT[$n]=$(free_port); start_node $n; done
for n in n1 n2 n3; do wait_ready "http://127.0.0.1:${PORT[$n]}"; done
url() { echo "http://127.0.0.1:${PORT[$1]}"; }
sleep 1  # each node reads the member list every third of its lease TTL
echo "== nodes: $(curl -s "$(url n1)/cluster" | jq -c '[.nodes[] | .node_id + " " + .advertise]')"

echo "== create 'photos': 64-bit codes, MIH, 3 shards, 2 copies of each"
curl -s -X POST "$(url n1)/collections" -H 'Content-Type: application/json' \
  -d '{"name": "photos", "bits": 64, "index": "MIH", "shards": 3, "replication_factor": 2}' |
  jq -c '{name, shards, replication_factor, shard_map: [.shard_map[] | {shard, primary, in_sync}]}'

echo "== ingest 20000 codes (clustered around 200 centres) through n1, in batches of 1000"
/usr/bin/python3 - "$WORK" <<'PY'
import json, random, sys
rng = random.Random(1)
centres = [rng.getrandbits(64) for _ in range(200)]
for b in range(20):
    items = []
    for i in range(1000):
        c = centres[rng.randrange(200)]
        for _ in range(3):
            c ^= 1 << rng.randrange(64)
        items.append({"id": b * 1000 + i + 1, "code": "%016x" % c, "label": (b * 1000 + i) % 10})
    json.dump({"items": items}, open("%s/batch%02d.json" % (sys.argv[1], b), "w"))
json.dump({"code": "%016x" % centres[0], "k": 5}, open(sys.argv[1] + "/query.json", "w"))
PY
T0=$(date +%s.%N)
for f in "$WORK"/batch*.json; do
  curl -sf -X POST "$(url n1)/collections/photos/items" -H 'Content-Type: application/json' --data-binary @"$f" >/dev/null
done
echo "ingested in $(printf %.2f "$(echo "$(date +%s.%N) - $T0" | bc)") s; items: $(curl -s "$(url n2)/collections/photos" | jq .items)"

query() { curl -s -X POST "$(url "$1")/collections/photos/search" -H 'Content-Type: application/json' --data-binary @"$WORK/query.json"; }
echo "== the same query on every node (5 nearest to a centre)"
for n in n1 n2 n3; do echo "$n: $(query $n | jq -c '{results: [.results[] | [.id, .distance]], exact, partial: (.partial // false)}')"; done

VICTIM=$(curl -s "$(url n1)/collections/photos" | jq -r '[.shard_map[].primary | select(. != "n1")][0]')
echo "== kill -9 node $VICTIM (a primary)"
{ kill -9 "${PID[$VICTIM]}" && wait "${PID[$VICTIM]}"; } 2>/dev/null || true
for n in n1 n2 n3; do
  [ "$n" = "$VICTIM" ] && continue
  echo "$n: $(query $n | jq -c '{results: [.results[] | [.id, .distance]], exact, partial: (.partial // false)}')"
done
echo "== insert 100 more through n1 (waits for the failover, a few seconds)"
T0=$(date +%s.%N)
/usr/bin/python3 -c 'import json; print(json.dumps({"items": [{"id": 100000 + i, "code": "%016x" % (i * 2654435761)} for i in range(100)]}))' |
  curl -s -X POST "$(url n1)/collections/photos/items" -H 'Content-Type: application/json' --data-binary @- | jq -c '{count}'
echo "acknowledged $(printf %.2f "$(echo "$(date +%s.%N) - $T0" | bc)") s after the kill"
curl -s "$(url n1)/collections/photos" | jq -c '{items, shard_map: [.shard_map[] | {shard, epoch, primary, in_sync}]}'

echo "== restart $VICTIM: it catches up from the primaries and rejoins their in-sync sets"
sleep 3  # its old registration expires with its lease
start_node "$VICTIM"
wait_ready "$(url "$VICTIM")"
for _ in $(seq 100); do
  OUT=$(curl -s "$(url n1)/collections/photos" | jq -c --arg v "$VICTIM" \
    '[.shard_map[] | select(.replicas | index($v)) | (.in_sync | index($v)) != null] | all')
  [ "$OUT" = true ] && break
  sleep 0.3
done
curl -s "$(url n1)/collections/photos" | jq -c '{items, shard_map: [.shard_map[] | {shard, epoch, primary, in_sync}]}'
echo "$VICTIM: $(query "$VICTIM" | jq -c '{results: [.results[] | [.id, .distance]], exact, partial: (.partial // false)}')"

echo "== kill -9 every node but n1: shards with no live in-sync copy are named, never dropped silently"
for n in n2 n3; do { kill -9 "${PID[$n]}" && wait "${PID[$n]}"; } 2>/dev/null || true; done
sleep 1
query n1 | jq -c '{results: [.results[] | [.id, .distance]], exact, partial, missing_shards}'
