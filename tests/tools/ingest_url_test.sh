#!/usr/bin/env bash
# hamdb ingest --url end to end on real images: a fresh server receives the
# encoder and the collection from the client; kill -9 of the client, and of
# the server, in the middle of a run lose nothing, and a re-run (without -m:
# the collection's encoder is fetched from the server) finishes the job
# without duplicating an item; bad files are reported and skipped; codes of
# another encoder are refused (409) with nothing stored.
# usage: ingest_url_test.sh HAMDB_BINARY
set -euo pipefail
H="$1"
W=$(mktemp -d)
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill -9 "$SERVER" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
cd "$W"
fail() { echo "FAIL: $*" >&2; [ -f serve.log ] && tail -5 serve.log >&2; exit 1; }
unset HAMDB_DB HAMDB_URL HAMDB_API_KEY
export HAMDB_CACHE_DIR="$W/cache"

"$H" export-dataset fashion-mnist --out imgs --split train --limit 400 >/dev/null
for seed in 1 2; do
  "$H" train --dataset fashion-mnist --limit 400 --bits 16 --epochs1 1 --epochs2 1 --seed $seed \
       --threads 1 --no-eval --out m$seed.hdbe >/dev/null 2>&1
done
good=$(find imgs/train -name '*.png' | wc -l)
[ "$good" -eq 400 ] || fail "expected 400 exported images, got $good"
d=imgs/train/$(ls imgs/train | head -1)
: > "$d/zero.png"
printf 'this is not an image' > "$d/garbage.png"
echo notes > "$d/notes.txt"

# A --models-dir that cannot be a directory stops the start with a clear
# error, before any store is made; a missing one is made (below).
: > notadir
if "$H" serve --db db-refused --port 0 --models-dir notadir/models > refused.log 2>&1; then
  fail "serve started with a --models-dir under a file"
fi
grep -q "models-dir 'notadir/models' is not a directory" refused.log || fail "unclear error: $(cat refused.log)"
[ ! -e db-refused ] || fail "a refused start left a store behind"

start_server() {
  # Emptied here, not only by the server's redirection: that runs in the
  # background child, and the loop below must neither miss the file nor read
  # the URL of the previous server.
  : > serve.log
  "$H" serve --db db --port 0 --models-dir models --threads 2 > serve.log 2>&1 &
  SERVER=$!
  URL=""
  for _ in $(seq 1 200); do
    URL=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' serve.log | tail -1)
    if [ -n "$URL" ] && curl -sf "$URL/readyz" >/dev/null; then return 0; fi
    kill -0 "$SERVER" 2>/dev/null || fail "the server did not start"
    sleep 0.1
  done
  fail "the server did not get ready"
}
count() { curl -sf "$URL/collections/fashion" | sed -n 's/.*"items":\([0-9]*\).*/\1/p'; }

# 1. A fresh server: the client uploads m1, creates the collection, and is
#    killed (SIGKILL) after 2 stored batches of 50.
start_server
[ -d models ] || fail "the server did not make its missing --models-dir"
set +e
"$H" ingest --url "$URL" -c fashion -m m1.hdbe --images imgs/train --batch 50 \
     --kill-after-batches 2 >/dev/null 2>err1.txt
rc=$?
set -e
[ "$rc" -eq 137 ] || fail "expected the client to be killed (137), got $rc: $(cat err1.txt)"
grep -q "uploaded encoder 'm1.hdbe'" err1.txt || fail "no upload: $(cat err1.txt)"
[ -f models/m1.hdbe ] || fail "the artifact is not in --models-dir"
n1=$(count)
[ "$n1" -ge 90 ] && [ "$n1" -lt "$good" ] || fail "after killing the client: $n1 items"
echo "after kill -9 of the client: $n1 items"

# 2. Resume without -m (the encoder comes from the server); the server is
#    killed (SIGKILL) while it runs.
"$H" ingest --url "$URL" -c fashion --images imgs/train --batch 10 --threads 1 \
     >out2.txt 2>err2.txt &
CLIENT=$!
for _ in $(seq 1 300); do
  n=$(count || echo 0)
  [ "${n:-0}" -gt $((n1 + 30)) ] && break
  sleep 0.05
done
kill -9 "$SERVER"
wait "$SERVER" 2>/dev/null || true
SERVER=""
set +e
wait "$CLIENT"
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "the client did not notice the server was killed"
grep -q "fetched encoder" err2.txt || fail "the encoder was not fetched: $(cat err2.txt)"
grep -q "re-run the same command" err2.txt || fail "no resume hint: $(tail -3 err2.txt)"

# 3. Restart the server; the re-run finishes, counting what is there.
start_server
n2=$(count)
echo "after kill -9 of the server: $n2 items"
[ "$n2" -gt "$n1" ] && [ "$n2" -lt "$good" ] || fail "after killing the server: $n2 items"
set +e
"$H" ingest --url "$URL" -c fashion --images imgs/train --batch 50 >out3.txt 2>err3.txt
rc=$?
set -e
cat out3.txt
[ "$rc" -eq 3 ] || fail "expected exit 3 (some files failed), got $rc: $(cat err3.txt)"
grep -q "$n2 already present" out3.txt || fail "the re-run did not find the $n2 stored items"
grep -q "2 unsupported, 1 failed" out3.txt || fail "bad files not counted: $(cat out3.txt)"
for f in zero.png garbage.png notes.txt; do grep -q "$f" err3.txt || fail "$f not reported"; done
[ "$(count)" -eq "$good" ] || fail "after the re-run: $(count) items, expected $good"

# 4. The items are those a local ingest makes.
"$H" ingest --db local -c fashion -m m1.hdbe --images imgs/train --quiet-failures >/dev/null 2>&1 || true
id=$(curl -sf -X POST "$URL/collections/fashion/search" -H 'Content-Type: application/json' \
       -d '{"code": "0000", "k": 1}' | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
remote=$(curl -sf "$URL/collections/fashion/items/$id")
local_item=$("$H" get --db local -c fashion "$id")
# Floats are compared to a relative 1e-5: an encoder's floats depend in
# their last bits on the batch an image was encoded in (encoder/encoder.h).
same_item() {
  python3 - "$1" "$2" <<'PY'
import json, math, sys
def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-5)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b
sys.exit(0 if same(*(json.loads(s) for s in sys.argv[1:3])) else 1)
PY
}
same_item "$remote" "$local_item" || fail "item $id differs: $remote vs $local_item"

# 5. Another encoder: the client refuses before sending; the server refuses
#    codes that name it (409), and nothing is stored.
set +e
"$H" ingest --url "$URL" -c fashion -m m2.hdbe --images imgs/train >out5.txt 2>err5.txt
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "an ingest with another encoder succeeded"
grep -q "holds codes of encoder" err5.txt || fail "no clear error: $(cat err5.txt)"
sum2=$(curl -sf -X PUT --data-binary @m2.hdbe "$URL/admin/models/m2.hdbe" | sed -n 's/.*"encoder_checksum":"\([^"]*\)".*/\1/p')
[ -n "$sum2" ] || fail "upload of m2 failed"
code=$(curl -s -o r409.json -w '%{http_code}' -X POST "$URL/collections/fashion/items" \
         -H 'Content-Type: application/json' \
         -d "{\"encoder_checksum\": \"$sum2\", \"items\": [{\"id\": 5, \"code\": \"0000\"}]}")
cat r409.json; echo
[ "$code" = 409 ] || fail "expected 409, got $code"
grep -q "$sum2" r409.json || fail "the 409 does not name the sent encoder"
grep -q "$(curl -sf "$URL/collections/fashion" | sed -n 's/.*"encoder_checksum":"\([^"]*\)".*/\1/p')" r409.json ||
  fail "the 409 does not name the collection's encoder"
[ "$(count)" -eq "$good" ] || fail "the refused write changed the count"
# 6. Items ingested through the server keep their thumbnails: the image file
#    itself (a 28x28 PNG), byte for byte.
for _ in 1 2 3; do
  item=$(curl -sf "$URL/collections/fashion/sample")
  id=$(echo "$item" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
  path=$(echo "$item" | sed -n 's/.*"path":"\([^"]*\)".*/\1/p')
  curl -sf -o thumb.png "$URL/collections/fashion/items/$id/thumbnail" || fail "item $id has no thumbnail"
  cmp -s thumb.png "imgs/train/$path" || fail "the thumbnail of item $id is not its file imgs/train/$path"
done
echo "PASS: $good items through the server, no duplicates after two kills, 3 bad files reported, other encoder refused, thumbnails kept"
