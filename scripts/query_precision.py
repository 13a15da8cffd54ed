#!/usr/bin/env python3
"""Query-by-image quality through the HTTP path, under each tie rule.

Sends N test images (an equal share from every class folder, the first files
in name order) to POST /collections/{name}/search as raw PNG bodies, once per
tie rule (tie_break=id and tie_break=score), and scores the neighbours by
their class (the item's metadata.label_name, i.e. its class folder at
ingest):
  P@k     the share of the first k neighbours of the query's class;
  MAP@m   mean average precision of the first m neighbours, corrected: each
          query's sum of precision at its relevant ranks is divided by
          min(R, m), R the number of items of its class in the collection
          (counted in --db-dir when given, else taken to be >= m).
Standard library only.

usage: scripts/query_precision.py TEST_DIR [--url URL] [--collection C] [--n 1000]
           [--k 10] [--map-at 100] [--tie-break id,score] [--db-dir TRAIN_DIR]
"""
import argparse
import json
import os
import sys
import time
import urllib.request


def average_precision(rel, denom):
    hits, s = 0, 0.0
    for i, r in enumerate(rel):
        if r:
            hits += 1
            s += hits / (i + 1)
    return s / denom if denom else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("test_dir")
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--collection", default="fashion")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--map-at", type=int, default=100)
    ap.add_argument("--tie-break", default="id,score")
    ap.add_argument("--db-dir", default="")
    a = ap.parse_args()
    classes = sorted(d for d in os.listdir(a.test_dir) if os.path.isdir(os.path.join(a.test_dir, d)))
    per = max(1, a.n // len(classes))
    queries = []
    for c in classes:
        files = sorted(os.listdir(os.path.join(a.test_dir, c)))[:per]
        queries += [(c, os.path.join(a.test_dir, c, f)) for f in files]
    relevant = {}
    if a.db_dir:
        for c in classes:
            d = os.path.join(a.db_dir, c)
            relevant[c] = len(os.listdir(d)) if os.path.isdir(d) else 0
    depth = max(a.k, a.map_at)
    for tie in a.tie_break.split(","):
        url = "%s/collections/%s/search?k=%d&with_metadata=true&tie_break=%s" % (
            a.url, a.collection, depth, tie)
        hits = exact_pred = ood = 0
        ap_sum = 0.0
        lat = []
        for c, path in queries:
            body = open(path, "rb").read()
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "image/png"})
            t0 = time.perf_counter()
            with urllib.request.urlopen(req) as r:
                ans = json.load(r)
            lat.append(time.perf_counter() - t0)
            if ans.get("tie_break") != tie:
                raise SystemExit("the server answered tie_break %r to a %r request" % (ans.get("tie_break"), tie))
            rel = [n.get("metadata", {}).get("label_name") == c for n in ans["results"]]
            hits += sum(rel[: a.k])
            ap_sum += average_precision(rel[: a.map_at], min(relevant.get(c, a.map_at), a.map_at))
            q = ans.get("query", {})
            exact_pred += q.get("class_name") == c
            ood += bool(q.get("ood"))
        lat.sort()
        print("tie_break %-5s: %d queries (%d per class): P@%d %.4f, MAP@%d %.4f; predicted class "
              "accuracy %.4f; OOD-flagged %d; client round trip p50 %.2f ms"
              % (tie, len(queries), per, a.k, hits / (a.k * len(queries)), a.map_at,
                 ap_sum / len(queries), exact_pred / len(queries), ood, 1000 * lat[len(lat) // 2]))


if __name__ == "__main__":
    sys.exit(main())
