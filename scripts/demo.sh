#!/usr/bin/env bash
# The main job, end to end on a fresh Debian machine: install, build, create
# a collection, ingest codes, query them.
#   bash scripts/demo.sh
# Environment: DEMO_DIR (default ./demo-data), DEMO_N (default 1000000).
# (The image pipeline, encoder and HTTP server join this script as they land.)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target hamdb -j "$(nproc)"
HAMDB=build/tools/hamdb

DEMO_DIR=${DEMO_DIR:-demo-data}
DEMO_N=${DEMO_N:-1000000}
export HAMDB_DB="$DEMO_DIR/db"
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"

echo "== 1. create a collection of 64-bit codes with a multi-index-hashing index"
$HAMDB collection create demo --bits 64 --index MIH

echo "== 2. generate $DEMO_N clustered codes (1000 centres, 5% bit noise, like an LLC encoder)"
$HAMDB generate --n "$DEMO_N" --bits 64 --kind clustered --centres 1000 --flip 0.05 \
  --out "$DEMO_DIR/codes.npy"

echo "== 3. ingest them (durable batches, WAL fsync per batch)"
time $HAMDB put -c demo "$DEMO_DIR/codes.npy"
$HAMDB collection list

echo "== 4. query: the 10 nearest neighbours of item 42, then everything within radius 2"
$HAMDB search -c demo --id 42 -k 10
$HAMDB search -c demo --id 42 --radius 2
