#!/usr/bin/env bash
# hamdb ingest end to end on real images: corrupt and unsupported files are
# reported and skipped, a kill -9 mid-run loses nothing and a re-run finishes
# the job without duplicating an item.
# usage: ingest_resume_test.sh HAMDB_BINARY
set -euo pipefail
H="$1"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$H" export-dataset fashion-mnist --out imgs --split train --limit 400 >/dev/null
"$H" train --dataset fashion-mnist --limit 400 --bits 16 --epochs1 1 --epochs2 1 \
     --threads 1 --no-eval --out m.hdbe >/dev/null 2>&1
good=$(find imgs/train -name '*.png' | wc -l)
[ "$good" -eq 400 ] || fail "expected 400 exported images, got $good"

# Seed bad files: zero bytes, garbage with a .png name, truncated PNG, text.
d=imgs/train/$(ls imgs/train | head -1)
: > "$d/zero.png"
printf 'this is not an image' > "$d/garbage.png"
head -c 200 "$(find imgs/train -name '*.png' -size +300c | head -1)" > "$d/truncated.png"
echo notes > "$d/notes.txt"

# First run: killed (SIGKILL) after 3 stored batches of 50.
set +e
"$H" ingest --db db -c fashion -m m.hdbe --images imgs/train --batch 50 \
     --kill-after-batches 3 >/dev/null 2>&1
rc=$?
set -e
[ "$rc" -eq 137 ] || fail "expected the first run to be killed (137), got $rc"
n=$("$H" count --db db -c fashion)
[ "$n" -gt 0 ] && [ "$n" -lt "$good" ] || fail "after the kill: $n items (expected 0 < n < $good)"
echo "after kill -9: $n items"

# Re-run: finishes, skips what is there, reports the bad files.
set +e
"$H" ingest --db db -c fashion -m m.hdbe --images imgs/train --batch 50 >out.txt 2>err.txt
rc=$?
set -e
cat out.txt
[ "$rc" -eq 3 ] || fail "expected exit 3 (some files failed), got $rc"
grep -q "already present" out.txt || fail "no summary"
grep -q "$n already present" out.txt || fail "the re-run did not find the $n stored items"
grep -q "2 unsupported, 2 failed" out.txt || fail "bad files not counted: $(cat out.txt)"
for f in zero.png garbage.png truncated.png notes.txt; do
  grep -q "$f" err.txt || fail "$f not reported"
done
n=$("$H" count --db db -c fashion)
[ "$n" -eq "$good" ] || fail "after the re-run: $n items, expected $good"

# A third run changes nothing.
"$H" ingest --db db -c fashion -m m.hdbe --images imgs/train --quiet-failures >out3.txt 2>&1 || true
grep -q "0 ingested, $good already present" out3.txt || fail "third run: $(cat out3.txt)"
n=$("$H" count --db db -c fashion)
[ "$n" -eq "$good" ] || fail "after a third run: $n items"
echo "PASS: $good items, no duplicates, 4 bad files reported"
