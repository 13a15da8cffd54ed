#!/usr/bin/env python3
"""Query-by-image quality through the HTTP path: precision@k of the labels.

Sends N test images (an equal share from every class folder, the first files
in name order) to POST /collections/{name}/search as raw PNG bodies and counts
how many of the k neighbours carry the query's class (the item's
metadata.label_name, i.e. its class folder at ingest). Standard library only.

usage: scripts/query_precision.py TEST_DIR [--url URL] [--collection C] [--n 1000] [--k 10]
"""
import argparse
import json
import os
import sys
import time
import urllib.request


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("test_dir")
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--collection", default="fashion")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args()
    classes = sorted(d for d in os.listdir(a.test_dir) if os.path.isdir(os.path.join(a.test_dir, d)))
    per = max(1, a.n // len(classes))
    queries = []
    for c in classes:
        files = sorted(os.listdir(os.path.join(a.test_dir, c)))[:per]
        queries += [(c, os.path.join(a.test_dir, c, f)) for f in files]
    url = "%s/collections/%s/search?k=%d&with_metadata=true" % (a.url, a.collection, a.k)
    hits = total = exact_pred = ood = 0
    lat = []
    for c, path in queries:
        body = open(path, "rb").read()
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "image/png"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req) as r:
            ans = json.load(r)
        lat.append(time.perf_counter() - t0)
        got = [n.get("metadata", {}).get("label_name") for n in ans["results"]]
        hits += sum(1 for g in got if g == c)
        total += a.k
        q = ans.get("query", {})
        exact_pred += q.get("class_name") == c
        ood += bool(q.get("ood"))
    lat.sort()
    print("%d queries (%d per class), k=%d: precision@%d %.4f; predicted class accuracy %.4f; "
          "OOD-flagged %d; client round trip p50 %.2f ms"
          % (len(queries), per, a.k, a.k, hits / total, exact_pred / len(queries), ood,
             1000 * lat[len(lat) // 2]))


if __name__ == "__main__":
    sys.exit(main())
