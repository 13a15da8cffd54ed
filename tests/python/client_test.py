"""The Python client (tools/python/hamdb) against a live `hamdb serve`: collections, code inserts in every
accepted form, searches and batches checked against a brute-force numpy answer, image inserts and
searches through a small trained encoder, and errors as exceptions with the server's codes.

usage: /usr/bin/python3 client_test.py HAMDB_BINARY
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "python"))
import hamdb  # noqa: E402
from test_data import brute_force, images_and_encoder  # noqa: E402

HAMDB = None


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="hamdb-py-")
        images_and_encoder(HAMDB, cls.work, 60, "models/m.hdbe")
        cls.log = open(os.path.join(cls.work, "serve.log"), "w+")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HAMDB_")}
        cls.server = subprocess.Popen([HAMDB, "serve", "--db", "db", "--port", "0", "--models-dir", "models",
                                       "--threads", "2"], cwd=cls.work, stdout=cls.log, stderr=cls.log, env=env)
        url = None
        for _ in range(300):
            cls.log.seek(0)
            m = re.search(r"listening on (http://\S+)", cls.log.read())
            if m:
                url = m.group(1)
                try:
                    urllib.request.urlopen(url + "/readyz", timeout=2)
                    break
                except OSError:
                    pass
            if cls.server.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        cls.db = hamdb.Client(url, api_key="")

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait(timeout=30)
        cls.log.close()
        shutil.rmtree(cls.work, ignore_errors=True)

    def test_codes_in_every_form_and_searches_equal_brute_force(self):
        db, bits = self.db, 40  # 5 bytes: padding-free, but not a multiple of 64
        db.create_collection("codes", bits=bits, index="MIH")
        self.assertIn("codes", [c["name"] for c in db.collections()])
        self.assertEqual(db.describe("codes")["bits"], bits)
        rng = np.random.default_rng(7)
        centres = rng.integers(0, 256, (8, 5), dtype=np.uint8)
        packed = centres[rng.integers(0, 8, 600)] ^ (rng.random((600, 5)) < 0.08).astype(np.uint8)
        ids = db.insert_codes("codes", packed[:400], batch=150)  # assigned ids, 3 requests
        self.assertEqual(ids.dtype, np.uint64)
        self.assertEqual(len(set(ids.tolist())), 400)
        # The same codes as bool rows and as +1/-1 rows, with ids of our own.
        bools = np.unpackbits(packed[400:500], axis=1, bitorder="little").astype(bool)
        signs = np.where(np.unpackbits(packed[500:], axis=1, bitorder="little") > 0, 1.0, -1.0)
        own = np.arange(10**12, 10**12 + 200, dtype=np.uint64)
        self.assertEqual(db.insert_codes("codes", bools, ids=own[:100]).tolist(), own[:100].tolist())
        self.assertEqual(db.insert_codes("codes", signs, ids=own[100:]).tolist(), own[100:].tolist())
        all_ids = np.concatenate([ids, own])
        self.assertEqual(db.get("codes", int(own[0]))["code"], bytes(packed[400]).hex())

        queries = packed[rng.integers(0, 600, 25)] ^ (rng.random((25, 5)) < 0.05).astype(np.uint8)
        for q in queries[:10]:
            got = db.search("codes", q, k=17)
            want_ids, want_d = brute_force(packed, all_ids, q, 17)
            np.testing.assert_array_equal(got.ids, want_ids)
            np.testing.assert_array_equal(got.distances, want_d)
            self.assertTrue(got.exact)
        batch = db.search_batch("codes", queries, k=5, batch=10)  # 3 requests
        self.assertEqual(len(batch), 25)
        for q, got in zip(queries, batch):
            want_ids, want_d = brute_force(packed, all_ids, q, 5)
            np.testing.assert_array_equal(got.ids, want_ids)
            np.testing.assert_array_equal(got.distances, want_d)
        # A radius search, from a hex string.
        within = db.search("codes", bytes(queries[0]).hex(), radius=3, k=None)
        d = np.unpackbits(packed ^ queries[0], axis=1).sum(axis=1)
        self.assertEqual(sorted(within.ids.tolist()), sorted(all_ids[d <= 3].tolist()))

        self.assertEqual(db.delete("codes", [int(own[0]), int(own[1]), 12345]), 2)
        self.assertEqual(db.describe("codes")["items"], 598)
        db.drop_collection("codes")
        self.assertNotIn("codes", [c["name"] for c in db.collections()])

    def test_errors_are_exceptions_with_the_servers_codes(self):
        db = self.db
        with self.assertRaises(hamdb.HamdbError) as e:
            db.describe("missing")
        self.assertEqual((e.exception.status, e.exception.code), (404, "not_found"))
        db.create_collection("small", bits=16)
        with self.assertRaises(hamdb.HamdbError) as e:
            db.create_collection("small", bits=16)
        self.assertEqual((e.exception.status, e.exception.code), (409, "conflict"))
        with self.assertRaises(hamdb.HamdbError) as e:
            db.search("small", "abcdef", k=3)  # 24 bits for a 16-bit collection
        self.assertEqual((e.exception.status, e.exception.code), (422, "invalid_code"))
        with self.assertRaises(hamdb.HamdbError) as e:
            db.search("small", "abcd", k=0)
        self.assertEqual(e.exception.code, "invalid_argument")
        with self.assertRaises(ValueError):  # packed rows of the wrong width never reach the server
            db.insert_codes("small", np.zeros((2, 3), dtype=np.uint8))
        with self.assertRaises(hamdb.HamdbError) as e:  # no encoder: images are refused
            db.search_image("small", b"\x89PNG not really", k=1)
        self.assertEqual(e.exception.status, 422)
        self.assertEqual(db.describe("small")["items"], 0)
        db.drop_collection("small")

    def test_images_in_and_search_by_image(self):
        db = self.db
        db.create_collection("fashion", encoder="m.hdbe")
        self.assertEqual(db.bits("fashion"), 16)
        root = os.path.join(self.work, "imgs", "test")
        paths = sorted(os.path.join(root, c, f) for c in os.listdir(root) for f in os.listdir(os.path.join(root, c)))
        ids = db.insert_images("fashion", paths, batch=25)
        self.assertEqual(len(ids), len(paths))
        self.assertEqual(len(db.last_images), len(paths))
        got = db.search_image("fashion", paths[0], k=5, tie_break="id")
        self.assertIsNotNone(got.query)
        self.assertIn(got.query["decoding"], ("ED", "MHD"))
        self.assertEqual(got.query["code"], db.last_images[0]["code"])
        # The same search by the query's code gives the same list; the image itself is at distance 0.
        by_code = db.search("fashion", got.query["code"], k=5, tie_break="id")
        np.testing.assert_array_equal(got.ids, by_code.ids)
        self.assertEqual(int(got.distances[0]), 0)
        self.assertIn(int(ids[0]), db.search("fashion", got.query["code"], radius=0, k=None).ids.tolist())
        # A filter keeps only matching items, by image and by code alike.
        meta_class = db.get("fashion", int(ids[0]))["metadata"]["class"]
        only = {"field": "metadata.class", "eq": meta_class}
        filtered = db.search_image("fashion", paths[0], k=10, filter=only, with_metadata=True)
        self.assertTrue(len(filtered) > 0)
        self.assertTrue(all(r["class"] == meta_class for r in (m["metadata"] for m in filtered.raw["results"])))
        none = db.search("fashion", got.query["code"], k=10, filter={"ids": []})
        self.assertEqual(len(none), 0)
        with self.assertRaises(hamdb.HamdbError) as e:
            db.search("fashion", got.query["code"], filter={"field": "metadata.class", "near": 1})
        self.assertEqual(e.exception.code, "invalid_filter")
        # Image items keep their file as a thumbnail (small PNGs); a random item is a stored one.
        with open(paths[0], "rb") as f:
            self.assertEqual(db.thumbnail("fashion", int(ids[0])), f.read())
        self.assertIn(db.sample("fashion")["id"], ids.tolist())
        with self.assertRaises(hamdb.HamdbError) as e:
            db.thumbnail("fashion", 123456789)
        self.assertEqual(e.exception.code, "not_found")
        db.drop_collection("fashion")


if __name__ == "__main__":
    HAMDB = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
