#!/usr/bin/python3
"""Plots MAP@k against code length per method from `hamdb bench map --dataset ... --out-json F`.

Usage: /usr/bin/python3 scripts/plot_map.py RESULT.json OUT.png [--formula corrected|hashnet]
           [--pr-png PR.png --pr-bits 16,32,64]

One line per method: the mean over seeds, error bars = sample std (none for one
seed). Failed runs are left out and counted in the legend. With --pr-png, a
second figure has one panel per bit length in --pr-bits: each Hamming
method's precision-recall curve over radius 0, 1, 2, ... (the mean over seeds
of the per-radius precision and recall that the benchmark wrote). Needs numpy and
matplotlib (python3-numpy, python3-matplotlib).
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


# One colour per method in both figures.
COLORS = {"llc": "C4", "hashnet": "C3", "greedyhash": "C2", "dsnc": "C0", "float": "C1"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json")
    ap.add_argument("png")
    ap.add_argument("--formula", choices=["corrected", "hashnet"], default="corrected")
    ap.add_argument("--pr-png", help="also write precision-recall curves here")
    ap.add_argument("--pr-bits", default="16,32,64", help="bit lengths of the PR panels")
    args = ap.parse_args()
    with open(args.json) as f:
        data = json.load(f)
    runs = data.get("runs", [])
    if not runs:
        sys.exit("no runs in %s (was it written by `hamdb bench map --dataset`?)" % args.json)
    key = "map_corrected" if args.formula == "corrected" else "map_hashnet_formula"

    by_method = {}
    failed = {}
    for r in runs:
        m = r["method"]
        if "error" in r:
            failed[m] = failed.get(m, 0) + 1
            continue
        by_method.setdefault(m, {}).setdefault(r["bits"], []).append(r["metrics"][key])

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    all_bits = set()
    for m in sorted(by_method):
        bits = sorted(by_method[m])
        all_bits.update(bits)
        vals = [np.asarray(by_method[m][b], dtype=float) for b in bits]
        mean = [v.mean() for v in vals]
        std = [v.std(ddof=1) if v.size > 1 else 0.0 for v in vals]
        label = m + (" (real-valued, cosine)" if m == "float" else "")
        if failed.get(m):
            label += " [%d failed runs]" % failed[m]
        ax.errorbar(bits, mean, yerr=std, marker="o", capsize=3, label=label, color=COLORS.get(m))
    at = data.get("map_at", 1000)
    ax.set_xlabel("bits")
    ax.set_ylabel("MAP@%d (%s)" % (at, "corrected" if args.formula == "corrected" else "HashNet formula"))
    ax.set_xticks(sorted(all_bits))
    budget = data.get("budget", {})
    bb = data.get("backbone", {})
    ax.set_title(
        "%s: %s queries x %s db, CNN w%s d%s, %s epochs"
        % (data.get("dataset", "?"), data.get("num_queries", "?"), data.get("database_size", "?"),
           bb.get("cnn_width", "?"), bb.get("feature_dim", "?"), budget.get("epochs", "?")),
        fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    print("wrote", args.png)
    if args.pr_png:
        plot_pr(runs, [int(b) for b in args.pr_bits.split(",")], args.pr_png)


def plot_pr(runs, bit_list, png):
    curves = {}  # (bits, method) -> list of per-seed [(recall, precision), ...]
    for r in runs:
        pc = r.get("metrics", {}).get("pr_curve")
        if "error" in r or not pc or r["bits"] not in bit_list:
            continue
        curves.setdefault((r["bits"], r["method"]), []).append(
            [(p["recall"], p["precision"]) for p in sorted(pc, key=lambda p: p["radius"])])
    if not curves:
        sys.exit("no PR curves for bits %s" % bit_list)
    bit_list = [b for b in bit_list if any(k[0] == b for k in curves)]
    fig, axes = plt.subplots(1, len(bit_list), figsize=(4.2 * len(bit_list), 4.0), squeeze=False)
    for ax, bits in zip(axes[0], bit_list):
        for (b, m), seeds in sorted(curves.items()):
            if b != bits:
                continue
            n = min(len(c) for c in seeds)
            arr = np.asarray([c[:n] for c in seeds], dtype=float).mean(axis=0)
            ax.plot(arr[:, 0], arr[:, 1], marker=".", label=m, color=COLORS.get(m))
        ax.set_title("%d bits: radius 0, 1, 2, ..." % bits, fontsize=9)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print("wrote", png)


if __name__ == "__main__":
    main()
