#!/usr/bin/python3
"""Search latency with and without filters, through HTTP, on a running server.

Takes 100 stored items at random (GET .../sample) as queries and runs each k=10
search unfiltered and under filters of different selectivity, printing the
median and p99 of the server's own took_ms per filter as a Markdown table.
The filters fit the demo collection (scripts/demo.sh: labels 0-9, metadata
path "<class>/<file>.png"); --collection and --url point elsewhere.

usage: filter_latency.py [--url http://127.0.0.1:8080] [--collection fashion]
"""
import argparse
import json
import statistics
import urllib.request


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--collection", default="fashion")
    a = ap.parse_args()
    base = f"{a.url}/collections/{a.collection}"

    def call(path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    queries = [call("/sample") for _ in range(100)]
    listed = [q["id"] for q in queries[:60]]
    cases = [("none", None),
             ("label eq 3 (10% of the demo)", {"field": "label", "eq": 3}),
             ("metadata.path prefix sneaker/0 (1%)", {"field": "metadata.path", "prefix": "sneaker/0"}),
             ("ids: 60 listed (0.1%)", {"ids": listed}),
             ("not ids: 60 listed (99.9%)", {"not": {"ids": listed}})]
    print("| filter | p50 ms | p99 ms |\n|---|---|---|")
    for name, f in cases:
        took = []
        for q in queries:
            body = {"code": q["code"], "k": 10}
            if f is not None:
                body["filter"] = f
            answer = call("/search", body)
            assert answer["exact"]
            took.append(answer["took_ms"])
        took.sort()
        print(f"| {name} | {statistics.median(took):.3f} | {took[int(0.99 * (len(took) - 1))]:.3f} |")


if __name__ == "__main__":
    main()
