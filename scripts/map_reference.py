#!/usr/bin/python3
"""Independent NumPy reference for `hamdb bench map` (corrected and
HashNet-formula MAP@k, ties ordered by (distance, database index)).

usage: scripts/map_reference.py QUERY_CODES DB_CODES QUERY_LABELS DB_LABELS [K]
Codes: .npy packed uint8 (LSB-first) or float +-1; labels: 1-D ints.
Slow (O(nq * ndb) in NumPy): meant for checking on small sets.
"""
import sys
import numpy as np


def bits_of(a):
    a = np.load(a)
    if a.dtype == np.uint8:
        return np.unpackbits(a, axis=1, bitorder="little").astype(bool)
    return a > 0


def main():
    q, db = bits_of(sys.argv[1]), bits_of(sys.argv[2])
    ql, dbl = np.load(sys.argv[3]), np.load(sys.argv[4])
    k = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    q, db = q[:, : db.shape[1]], db[:, : q.shape[1]]
    corrected, hashnet = [], []
    idx = np.arange(len(dbl))
    for i in range(len(ql)):
        d = (q[i][None, :] != db).sum(1)
        order = np.lexsort((idx, d))[:k]
        rel = (dbl[order] == ql[i]).astype(float)
        prec = np.cumsum(rel) / np.arange(1, len(rel) + 1)
        s = (prec * rel).sum()
        r = (dbl == ql[i]).sum()
        corrected.append(s / min(r, k) if rel.sum() else 0.0)
        hashnet.append(s / rel.sum() if rel.sum() else 0.0)
    print("MAP@%d corrected %.4f  HashNet formula %.4f  (%d queries)"
          % (k, np.mean(corrected), np.mean(hashnet), len(ql)))


if __name__ == "__main__":
    main()
