#!/usr/bin/python3
"""MAP@1000 per method, bit length and tie rule from `hamdb bench map --out-csv` files.

Usage: /usr/bin/python3 scripts/map_rules.py RUNS.csv... [--png OUT.png]

Prints a markdown table: per (bits, method), the mean ± sample std over seeds
of corrected MAP@1000, P@10 and P@1000 under tie_break id and tie_break score
(and the LLC re-ranking rows, when present; method "llc-margin0" is LLC with
raw codes, snap margin 0), then, per bit length, whether
LLC under its best rule is at least every baseline under that baseline's best
rule, and at least the float baseline. With --png, a plot of MAP against bits:
solid lines tie_break id, dashed tie_break score (needs python3-matplotlib).
Only completed runs count; the seed count is shown.
"""
import argparse
import csv
import math
import sys
from collections import defaultdict

ORDER = ["llc", "llc-margin0", "hashnet", "greedyhash", "dsnc", "float"]
# How a method is shown; "llc-margin0" is LLC with raw codes (snap margin 0),
# kept for comparison with the product's LLC.
LABELS = {"llc": "**llc**", "llc-margin0": "llc, margin 0"}


def mean_std(v):
    if not v:
        return None, None
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s


def fmt(v):
    m, s = mean_std(v)
    if m is None:
        return "n/a"
    return "%.4f ± %.4f" % (m, s) if len(v) > 1 else "%.4f" % m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--png")
    a = ap.parse_args()
    # One row per (method, bits, seed, rule): a run found in several files
    # (a resumed protocol, a separate re-ranking run) counts once, the last.
    rows = {}
    for path in a.csv:
        with open(path) as f:
            for row in csv.DictReader(f):
                if not row.get("error"):
                    rows[(row["method"], int(row["bits"]), row["seed"], row["tie_break"])] = row
    # (method, bits, rule) -> metric -> list over seeds
    data = defaultdict(lambda: defaultdict(list))
    seeds = defaultdict(set)
    for (method, bits, seed, rule), row in sorted(rows.items()):
        for m in ("map_corrected", "p_at_10", "p_at_1000"):
            data[(method, bits, rule)][m].append(float(row[m]))
        seeds[(method, bits)].add(seed)
    bits_list = sorted({b for (_, b, _) in data})
    methods = [m for m in ORDER if any(k[0] == m for k in data)]
    rules = ["id", "score", "rerank"]
    print("| bits | method | seeds | MAP@1000 id | MAP@1000 score | P@10 id | P@10 score | P@1000 id | P@1000 score |")
    print("|---|---|---|---|---|---|---|---|---|")
    for b in bits_list:
        for m in methods:
            if (m, b) not in seeds:
                continue
            d = {r: data.get((m, b, r), {}) for r in rules}
            print("| %d | %s | %d | %s | %s | %s | %s | %s | %s |" % (
                b, LABELS.get(m, m), len(seeds[(m, b)]),
                fmt(d["id"].get("map_corrected", [])), fmt(d["score"].get("map_corrected", [])),
                fmt(d["id"].get("p_at_10", [])), fmt(d["score"].get("p_at_10", [])),
                fmt(d["id"].get("p_at_1000", [])), fmt(d["score"].get("p_at_1000", []))))
            if d["rerank"]:
                print("| %d | %s, re-ranked | %d | | %s | | %s | | %s |" % (
                    b, LABELS.get(m, m).strip("*"), len(d["rerank"]["map_corrected"]), fmt(d["rerank"]["map_corrected"]),
                    fmt(d["rerank"]["p_at_10"]), fmt(d["rerank"]["p_at_1000"])))
    print()
    print("| bits | LLC, best rule | best binary baseline, its best rule | LLC >= every baseline | float | LLC >= float |")
    print("|---|---|---|---|---|---|")

    def best(m, b):
        out = None
        for r in ("id", "score"):
            v = data.get((m, b, r), {}).get("map_corrected", [])
            mm, _ = mean_std(v)
            if mm is not None and (out is None or mm > out[0]):
                out = (mm, r)
        return out

    for b in bits_list:
        llc = best("llc", b)
        if llc is None:
            continue
        base = [(best(m, b), m) for m in ("hashnet", "greedyhash", "dsnc") if best(m, b)]
        top = max(base, key=lambda x: x[0][0]) if base else None
        fl = best("float", b)
        print("| %d | %.4f (%s) | %s | %s | %s | %s |" % (
            b, llc[0], llc[1],
            "%s %.4f (%s)" % (top[1], top[0][0], top[0][1]) if top else "n/a",
            ("yes" if all(llc[0] >= x[0][0] for x in base) else "no") if base else "n/a",
            "%.4f" % fl[0] if fl else "n/a",
            ("yes" if llc[0] >= fl[0] else "no") if fl else "n/a"))

    if a.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        colors = {"llc": "C4", "llc-margin0": "C7", "hashnet": "C3", "greedyhash": "C2", "dsnc": "C0", "float": "C1"}
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for m in methods:
            for r, style in (("id", "-"), ("score", "--")):
                xs, ys, es = [], [], []
                for b in bits_list:
                    v = data.get((m, b, r), {}).get("map_corrected", [])
                    if v:
                        mm, s = mean_std(v)
                        xs.append(b)
                        ys.append(mm)
                        es.append(s)
                if xs:
                    ax.errorbar(xs, ys, yerr=es, fmt=style + "o", color=colors.get(m), capsize=3, ms=4,
                                label="%s, %s" % (LABELS.get(m, m).strip("*"), "ties by id" if r == "id" else "ties by score")
                                if m != "float" else "float (cosine)")
        ax.set_xlabel("bits")
        ax.set_ylabel("MAP@1000 (corrected)")
        ax.set_title("Fashion-MNIST: 60k database, 10k queries")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(a.png, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
