"""Reads the output of `wrk --latency` (the load benchmarks' scripts import it).

parse(path) -> (requests/s, p50 ms, p99 ms, non-2xx responses)
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
