"""What the tests that drive a live `hamdb` share: a small image set with a tiny trained encoder, and the
brute-force answer searches are checked against. Imported by tests/python/client_test.py and
tests/cluster/cluster_test.py."""

import os
import subprocess

import numpy as np


def images_and_encoder(hamdb, work, images, model):
    """Exports `images` Fashion-MNIST test PNGs to work/imgs/test/<class>/ and trains a 16-bit encoder on
    400 training images (one epoch per phase) into work/`model`."""
    run = lambda *args: subprocess.run([hamdb, *args], cwd=work, check=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("export-dataset", "fashion-mnist", "--out", "imgs", "--split", "test", "--limit", str(images))
    os.makedirs(os.path.dirname(os.path.join(work, model)), exist_ok=True)
    run("train", "--dataset", "fashion-mnist", "--limit", "400", "--bits", "16", "--epochs1", "1",
        "--epochs2", "1", "--seed", "1", "--threads", "1", "--no-eval", "--out", model)


def brute_force(db_codes, db_ids, query, k):
    """(ids, distances) of the k nearest packed codes, ordered by (distance, id)."""
    dist = np.unpackbits(db_codes ^ query, axis=1).sum(axis=1)
    order = np.lexsort((db_ids, dist))[:k]
    return db_ids[order], dist[order]
