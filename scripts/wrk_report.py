"""Helpers of the load benchmarks' scripts (they import it).

parse(path) -> (requests/s, p50 ms, p99 ms, non-2xx responses) of the output of `wrk --latency`
insert_lua(out_lua, collection, batch, pause_ms) writes a wrk script that posts `batch` random 64-bit codes per
    request, waiting pause_ms after each answer (0: none)
metric(path, name, collection) -> the value of a per-collection series in a saved /metrics text (0 when absent)
commit_stages(before, after, seconds, collection) -> the group commits between two saved /metrics texts, as
    markdown cells: write requests per group, the commit path's busy share of `seconds`, and the shares of
    that in the fsync, the rest of the store batch and the index
search_lua(codes_npy, out_lua, collection) writes a wrk script that posts k=10 searches of 1000 query codes:
    stored codes with 2 random bits flipped; write_search_lua(hex_codes, out_lua, collection) of given codes
"""
import re


def parse(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))

    def percentile_ms(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % p, text, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return rps, percentile_ms(50), percentile_ms(99), int(errors.group(1)) if errors else 0


def insert_lua(out_lua, collection, batch, pause_ms):
    # A random 64-bit code is four random 16-bit groups: cheap to make, so
    # that the client takes little of the CPU the server shares with it.
    with open(out_lua, "w") as f:
        f.write("""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local batch, pause_ms = %d, %s
if pause_ms > 0 then
  delay = function() return pause_ms end
end
local fmt, rnd = string.format, math.random
request = function()
  local items = {}
  for i = 1, batch do
    items[i] = fmt('{"code":"%%04x%%04x%%04x%%04x"}', rnd(0, 65535), rnd(0, 65535), rnd(0, 65535), rnd(0, 65535))
  end
  return wrk.format(nil, "/collections/%s/items", nil, '{"items":[' .. table.concat(items, ",") .. ']}')
end
""" % (batch, pause_ms, collection))


def metric(path, name, collection):
    m = re.search(r'^%s\{collection="%s"[^}]*\} (\S+)$' % (re.escape(name), re.escape(collection)),
                  open(path).read(), re.M)
    return float(m.group(1)) if m else 0.0


def commit_stages(before, after, seconds, collection):
    def delta(name):
        return metric(after, "hamdb_write_" + name, collection) - metric(before, "hamdb_write_" + name, collection)
    groups, store, sync, index = (delta(s) for s in
                                  ("groups_total", "store_seconds_total", "sync_seconds_total", "index_seconds_total"))
    # Commits run one at a time, so their store plus index time is the time the path was busy.
    busy = store + index
    share = lambda s: f"{100 * s / busy:.0f}%" if busy else "-"
    per_group = delta("requests_total") / groups if groups else 0
    return [f"{per_group:.1f}", f"{100 * busy / seconds:.0f}%", share(sync), share(store - sync), share(index)]


def search_lua(codes_npy, out_lua, collection):
    import numpy as np
    codes = np.load(codes_npy)
    rng = np.random.default_rng(7)
    rows = codes[rng.integers(0, len(codes), 1000)].copy()
    for r in rows:
        for b in rng.integers(0, codes.shape[1] * 8, 2):
            r[b // 8] ^= np.uint8(1 << (b % 8))
    write_search_lua([bytes(r).hex() for r in rows], out_lua, collection)


def write_search_lua(hex_codes, out_lua, collection):
    """A wrk script that posts k=10 searches of these query codes, round robin."""
    qs = ",\n".join('"%s"' % c for c in hex_codes)
    with open(out_lua, "w") as f:
        f.write("""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local queries = {
%s
}
local i = 0
request = function()
  i = i + 1
  local q = queries[(i %% #queries) + 1]
  return wrk.format(nil, "/collections/%s/search", nil, '{"code":"' .. q .. '","k":10}')
end
""" % (qs, collection))
