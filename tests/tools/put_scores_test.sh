#!/usr/bin/env bash
# hamdb put --scores and hamdb search --tie-break end to end: a scores file of
# the wrong length, dtype or with a NaN stores nothing and says why; a good
# one orders ties by score, and the scores survive the store's reopen.
# usage: put_scores_test.sh HAMDB_BINARY
set -euo pipefail
H="$1"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
fail() { echo "FAIL: $*" >&2; exit 1; }

# 40 codes, the second 20 repeating the first 20; .npy files written with the
# standard library only.
python3 - <<'PY'
import random, struct

def npy(path, dtype, shape, payload):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (dtype, shape)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload)

rng = random.Random(3)
codes = [bytes(rng.randrange(256) for _ in range(8)) for _ in range(20)]
npy("codes.npy", "|u1", "(40, 8)", b"".join(codes + codes))
scores = [rng.random() for _ in range(40)]
npy("scores.npy", "<f4", "(40,)", struct.pack("<40f", *scores))
npy("short.npy", "<f4", "(39,)", struct.pack("<39f", *scores[:39]))
npy("ints.npy", "<i8", "(40,)", struct.pack("<40q", *range(40)))
npy("nan.npy", "<f8", "(40,)", struct.pack("<40d", *(scores[:5] + [float("nan")] + scores[6:])))
# Item 0 and its twin 20: which one has the higher score.
print("twin_first", 20 if scores[20] > scores[0] else 0, file=open("expect.txt", "w"))
PY

"$H" collection create --db db c --bits 64 >/dev/null
for bad in short ints nan; do
  if "$H" put --db db -c c codes.npy --scores "$bad.npy" 2>err.txt; then
    fail "put with $bad.npy succeeded"
  fi
  grep -q "nothing was written" err.txt || fail "$bad.npy: unclear error: $(cat err.txt)"
  echo "$bad.npy: $(cat err.txt)"
  [ "$("$H" count --db db -c c)" -eq 0 ] || fail "$bad.npy stored items"
done

"$H" put --db db -c c codes.npy --scores scores.npy >/dev/null
first_by_score=$("$H" search --db db -c c --id 0 -k 2 --tie-break score --json 2>/dev/null |
                 python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["id"])')
first_by_id=$("$H" search --db db -c c --id 0 -k 2 --tie-break id --json 2>/dev/null |
              python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["id"])')
want=$(awk '{print $2}' expect.txt)
[ "$first_by_score" = "$want" ] || fail "tie_break score put $first_by_score first, expected $want"
[ "$first_by_id" = "0" ] || fail "tie_break id put $first_by_id first, expected 0"
"$H" get --db db -c c 5 | grep -q '"score"' || fail "item 5 has no stored score"
echo "put --scores: ties ordered by score ($first_by_score first) and by id ($first_by_id first)"
