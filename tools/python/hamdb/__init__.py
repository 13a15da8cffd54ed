"""A Python client for the hamdb HTTP service (docs/api.md).

Standard library only; numpy, where present, is used for codes and results.

    import numpy as np
    import hamdb

    db = hamdb.Client("http://127.0.0.1:8080")          # api_key=... when keys are on
    db.create_collection("photos", bits=64)
    codes = np.random.default_rng(0).integers(0, 256, (1000, 8), dtype=np.uint8)
    ids = db.insert_codes("photos", codes)                # packed LSB-first rows
    hits = db.search("photos", codes[0], k=10)
    hits.ids, hits.distances                              # numpy arrays, in (distance, id) order

Codes may be given as
  - packed uint8 rows (LSB-first, as numpy.packbits(bits, bitorder="little")), one row per code;
  - bool rows of `bits` values (True = 1);
  - signed or float rows of `bits` values (+1 / -1; > 0 is a 1 bit);
  - hex strings, or bytes of the packed code.
A 1-D array, a single bytes value or a single string is one code.

Every error the server answers is raised as HamdbError, carrying the HTTP status, the server's error code
(for example "invalid_code", "not_found") and its message.
"""

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request

try:
    import numpy as np
except ImportError:  # the client still works on lists
    np = None

__all__ = ["Client", "HamdbError", "SearchResult", "pack_codes"]


class HamdbError(Exception):
    """An error answer of the server: status (HTTP), code (the server's error code), message."""

    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class SearchResult:
    """One query's answer: ids and distances (numpy arrays where numpy is present, else lists), in the
    server's order; scores where items have them (None otherwise); the raw JSON answer as `raw`, and
    for an image query its `query` (code, class, decoding, ood, confidence)."""

    def __init__(self, answer):
        results = answer.get("results", [])
        ids = [r["id"] for r in results]
        distances = [r["distance"] for r in results]
        if np is not None:
            self.ids = np.array(ids, dtype=np.uint64)
            self.distances = np.array(distances, dtype=np.int32)
        else:
            self.ids, self.distances = ids, distances
        self.scores = [r.get("score") for r in results] if any("score" in r for r in results) else None
        self.exact = answer.get("exact")
        self.query = answer.get("query")
        self.raw = answer

    def __len__(self):
        return len(self.raw.get("results", []))

    def __repr__(self):
        return f"SearchResult({len(self)} results, exact={self.exact})"


def _pack_row(row, bits):
    """One code (any accepted form) as hex of its packed bytes."""
    if isinstance(row, str):
        return row
    if isinstance(row, (bytes, bytearray)):
        return bytes(row).hex()
    if np is None:
        values = list(row)
        if len(values) == bits:
            out = bytearray((bits + 7) // 8)
            for i, v in enumerate(values):
                if v is True or (not isinstance(v, bool) and v > 0):
                    out[i // 8] |= 1 << (i % 8)
            return bytes(out).hex()
        return bytes(values).hex()
    return pack_codes(np.asarray(row)[None, :], bits)[0]


def pack_codes(codes, bits):
    """Codes (see the module's notes) as a list of hex strings of `bits`-bit packed codes."""
    if isinstance(codes, (str, bytes, bytearray)):
        return [_pack_row(codes, bits)]
    if np is None:
        return [_pack_row(c, bits) for c in codes]
    if len(codes) and isinstance(codes[0], (str, bytes, bytearray)):
        return [_pack_row(c, bits) for c in codes]
    a = np.asarray(codes)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"codes must be one code or a 2-D array of codes, got shape {a.shape}")
    nbytes = (bits + 7) // 8
    if a.dtype == np.bool_:
        if a.shape[1] != bits:
            raise ValueError(f"bool codes need {bits} columns (one per bit), got {a.shape[1]}")
        packed = np.packbits(a, axis=1, bitorder="little")
    elif a.dtype == np.uint8:
        if a.shape[1] != nbytes:
            raise ValueError(f"packed uint8 codes of {bits} bits need {nbytes} bytes per row, got {a.shape[1]}"
                             " (pass bool or +1/-1 rows for one value per bit)")
        packed = a
    elif np.issubdtype(a.dtype, np.signedinteger) or np.issubdtype(a.dtype, np.floating):
        if a.shape[1] != bits:
            raise ValueError(f"+1/-1 codes need {bits} columns (one per bit), got {a.shape[1]}")
        packed = np.packbits(a > 0, axis=1, bitorder="little")
    else:
        raise ValueError(f"codes of dtype {a.dtype} are not understood: use packed uint8, bool or +1/-1 rows")
    return [bytes(row).hex() for row in packed]


class Client:
    """The hamdb service at `url`. `api_key` (or $HAMDB_API_KEY) is sent as a Bearer token."""

    def __init__(self, url=None, api_key=None, timeout=120.0):
        self.url = (url or os.environ.get("HAMDB_URL") or "http://127.0.0.1:8080").rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("HAMDB_API_KEY")
        self.timeout = timeout
        self._bits = {}
        self.last_images = []  # what the encoder made of the images of the last insert_images

    # -- transport --------------------------------------------------------------------------------------

    def _call(self, method, path, body=None, content_type="application/json", raw=False):
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode() if content_type == "application/json" else body
            headers["Content-Type"] = content_type
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                text = answer.read()
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                error = json.loads(text)["error"]
                raise HamdbError(e.code, error.get("code"), error.get("message")) from None
            except (ValueError, KeyError, TypeError):
                raise HamdbError(e.code, "http_error", text.decode(errors="replace")[:500]) from None
        if raw:
            return text
        return json.loads(text) if text else None

    @staticmethod
    def _name(name):
        return urllib.parse.quote(name, safe="")

    def bits(self, name):
        """The code length of collection `name` (asked once, then remembered)."""
        if name not in self._bits:
            self._bits[name] = self.describe(name)["bits"]
        return self._bits[name]

    # -- collections ------------------------------------------------------------------------------------

    def collections(self):
        """The collections, as the server describes them."""
        return self._call("GET", "/collections")["collections"]

    def describe(self, name):
        return self._call("GET", "/collections/" + self._name(name))

    def create_collection(self, name, bits=None, index="MIH", encoder=None, tie_break=None, indexed_fields=None,
                          shards=None, replication_factor=None):
        """Creates a collection; `encoder` names a model file under the server's --models-dir,
        `indexed_fields` the fields filters answer from memory ("label", "metadata.<key>"). On a node of a
        cluster, `shards` and `replication_factor` (copies in all) shard and replicate it (docs/cluster.md)."""
        body = {"name": name, "index": index}
        if bits is not None:
            body["bits"] = int(bits)
        if encoder is not None:
            body["encoder"] = encoder
        if tie_break is not None:
            body["tie_break"] = tie_break
        if indexed_fields is not None:
            body["indexed_fields"] = list(indexed_fields)
        if shards is not None:
            body["shards"] = int(shards)
        if replication_factor is not None:
            body["replication_factor"] = int(replication_factor)
        answer = self._call("POST", "/collections", body)
        self._bits[name] = answer["bits"]
        return answer

    def drop_collection(self, name):
        self._bits.pop(name, None)
        return self._call("DELETE", "/collections/" + self._name(name))

    # -- items ------------------------------------------------------------------------------------------

    def insert_codes(self, name, codes, ids=None, labels=None, scores=None, metadata=None, batch=5000):
        """Inserts codes (replacing items whose id exists), `batch` per request, each request atomic.
        Returns the ids in input order (assigned by the server where `ids` is None)."""
        hexes = pack_codes(codes, self.bits(name))
        out = []
        for start in range(0, len(hexes), batch):
            items = []
            for i in range(start, min(start + batch, len(hexes))):
                item = {"code": hexes[i]}
                if ids is not None:
                    item["id"] = int(ids[i])
                if labels is not None:
                    item["label"] = int(labels[i])
                if scores is not None:
                    item["score"] = float(scores[i])
                if metadata is not None:
                    item["metadata"] = metadata[i]
                items.append(item)
            out.extend(self._call("POST", f"/collections/{self._name(name)}/items", {"items": items})["ids"])
        return np.array(out, dtype=np.uint64) if np is not None else out

    def insert_images(self, name, paths, ids=None, labels=None, batch=64):
        """Inserts image files (JPEG or PNG) into a collection with an encoder. Returns the ids, and each
        image's encoding (class, decoding, ood, confidence, code) as `client.last_images`."""
        out, images = [], []
        for start in range(0, len(paths), batch):
            items = []
            for i in range(start, min(start + batch, len(paths))):
                with open(paths[i], "rb") as f:
                    item = {"image": base64.b64encode(f.read()).decode(),
                            "metadata": {"path": os.fspath(paths[i])}}
                if ids is not None:
                    item["id"] = int(ids[i])
                if labels is not None:
                    item["label"] = int(labels[i])
                items.append(item)
            answer = self._call("POST", f"/collections/{self._name(name)}/items", {"items": items})
            out.extend(answer["ids"])
            images.extend(answer.get("images", []))
        self.last_images = images
        return np.array(out, dtype=np.uint64) if np is not None else out

    def get(self, name, item_id):
        return self._call("GET", f"/collections/{self._name(name)}/items/{int(item_id)}")

    def sample(self, name):
        """A stored item picked at random (as get() returns it)."""
        return self._call("GET", f"/collections/{self._name(name)}/sample")

    def thumbnail(self, name, item_id):
        """The item's thumbnail: PNG or JPEG bytes. HamdbError "not_found" when it has none."""
        return self._call("GET", f"/collections/{self._name(name)}/items/{int(item_id)}/thumbnail", raw=True)

    def delete(self, name, ids):
        """Deletes items; returns how many existed."""
        if isinstance(ids, int):
            ids = [ids]
        body = {"ids": [int(i) for i in ids]}
        return self._call("POST", f"/collections/{self._name(name)}/items/delete", body)["deleted"]

    # -- search -----------------------------------------------------------------------------------------

    @staticmethod
    def _params(k, radius, mode, nprobe, tie_break, with_metadata, filter=None):
        body = {}
        if radius is not None:
            body["radius"] = int(radius)
            if k is not None:
                body["k"] = int(k)
        else:
            body["k"] = int(k if k is not None else 10)
        for key, value in (("mode", mode), ("nprobe", nprobe), ("tie_break", tie_break)):
            if value is not None:
                body[key] = value
        if with_metadata:
            body["with_metadata"] = True
        if filter is not None:
            body["filter"] = filter  # a dict, e.g. {"field": "label", "eq": 8} (docs/api.md#filtered-search)
        return body

    def search(self, name, code, k=10, radius=None, mode=None, nprobe=None, tie_break=None,
               with_metadata=False, filter=None):
        """The k nearest items to one code (or every item within `radius`); `filter` keeps only the
        items that match it (a dict in the JSON filter language)."""
        body = self._params(k, radius, mode, nprobe, tie_break, with_metadata, filter)
        body["code"] = pack_codes(code, self.bits(name))[0]
        return SearchResult(self._call("POST", f"/collections/{self._name(name)}/search", body))

    def search_image(self, name, image, k=10, radius=None, mode=None, nprobe=None, tie_break=None,
                     with_metadata=False, filter=None):
        """Search by an image file path or its bytes; the result's `query` says what the encoder made of it."""
        if not isinstance(image, (bytes, bytearray)):
            with open(image, "rb") as f:
                image = f.read()
        body = self._params(k, radius, mode, nprobe, tie_break, with_metadata, filter)
        body["image"] = base64.b64encode(bytes(image)).decode()
        return SearchResult(self._call("POST", f"/collections/{self._name(name)}/search", body))

    def search_batch(self, name, codes, k=10, radius=None, mode=None, nprobe=None, tie_break=None,
                     batch=10000, filter=None):
        """Many codes with the same parameters, `batch` per request; one SearchResult per code."""
        hexes = pack_codes(codes, self.bits(name))
        out = []
        for start in range(0, len(hexes), batch):
            body = self._params(k, radius, mode, nprobe, tie_break, False, filter)
            body["codes"] = hexes[start:start + batch]
            answer = self._call("POST", f"/collections/{self._name(name)}/search/batch", body)
            out.extend(SearchResult(b) for b in answer["batches"])
        return out
