#!/usr/bin/env bash
# The main job, end to end on a fresh Debian machine, on the embedded default
# (RocksDB in a local directory, the Fashion-MNIST images):
#   1. install the dependencies and build `hamdb`;
#   2. train the default 16-bit LLC encoder on Fashion-MNIST (or reuse it);
#   3. export the dataset as PNG files;
#   4. start the HTTP server;
#   5. ingest the 60k training images into the running server (encoded here,
#      stored there; the collection and its encoder are sent on first use);
#   6. query it by image with a test-set PNG through curl, and print the answer;
#   7. print the address of the web page (open it while KEEP_SERVING=1 keeps
#      the server running).
#
#   bash scripts/demo.sh
#
# Environment: DEMO_DIR (default ./demo-data), PORT (default 8080),
# KEEP_SERVING=1 to leave the server running at the end.
# Re-running reuses the trained encoder, the exported images and the ingested
# collection (ingest is idempotent: it only adds what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)

echo "== 1. dependencies and build"
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target hamdb -j "$(nproc)"
HAMDB=$PWD/build/tools/hamdb

DEMO_DIR=${DEMO_DIR:-demo-data}
PORT=${PORT:-8080}
MODEL="$DEMO_DIR/fashion-llc16.hdbe"
IMAGES="$DEMO_DIR/fashion-mnist"
mkdir -p "$DEMO_DIR"

echo "== 2. the encoder: LLC, 16 bits, trained on the Fashion-MNIST training set"
if [ -f "$MODEL" ]; then
  echo "reusing $MODEL"
else
  "$HAMDB" train --dataset fashion-mnist --bits 16 --out "$MODEL"
fi

echo "== 3. export the images as PNG files"
if [ ! -d "$IMAGES/test" ] || [ ! -d "$IMAGES/train" ]; then
  "$HAMDB" export-dataset fashion-mnist --out "$IMAGES" --split both
fi

echo "== 4. start the server on 127.0.0.1:$PORT"
mkdir -p "$DEMO_DIR/models"
"$HAMDB" serve --db "$DEMO_DIR/db" --port "$PORT" --models-dir "$DEMO_DIR/models" >"$DEMO_DIR/serve.log" 2>&1 &
SERVER=$!
if [ "${KEEP_SERVING:-0}" != 1 ]; then
  trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
fi
for _ in $(seq 1 300); do
  if curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; then break; fi
  if ! kill -0 $SERVER 2>/dev/null; then cat "$DEMO_DIR/serve.log"; exit 1; fi
  sleep 0.2
done
curl -sf "http://127.0.0.1:$PORT/readyz"; echo

echo "== 5. ingest the 60k training images into the running server"
"$HAMDB" ingest --url "http://127.0.0.1:$PORT" -c fashion -m "$MODEL" --images "$IMAGES/train" --labels folder

SNEAKERS=("$IMAGES"/test/sneaker/*.png)
QUERY=${SNEAKERS[0]}
echo "== 6. query by image: the 5 nearest neighbours of $QUERY (a test-set sneaker)"
echo "\$ curl -s -X POST -H 'Content-Type: image/png' --data-binary @$QUERY \\"
echo "    'http://127.0.0.1:$PORT/collections/fashion/search?k=5&with_metadata=true'"
curl -sf -X POST -H 'Content-Type: image/png' --data-binary @"$QUERY" \
  "http://127.0.0.1:$PORT/collections/fashion/search?k=5&with_metadata=true" |
  python3 -m json.tool
echo "== the same query with the hamdb client"
"$HAMDB" query --url "http://127.0.0.1:$PORT" -c fashion --image "$QUERY" -k 5

echo "== 7. the web page: http://127.0.0.1:$PORT/"
echo "== done in $(( $(date +%s) - START )) s"
if [ "${KEEP_SERVING:-0}" = 1 ]; then
  echo "the server keeps running (pid $SERVER): open http://127.0.0.1:$PORT/ in a browser; stop it with: kill $SERVER"
else
  echo "run with KEEP_SERVING=1 to keep the server running and browse the page"
  echo "to serve again: $HAMDB serve --db $DEMO_DIR/db --port $PORT --models-dir $DEMO_DIR/models"
fi
