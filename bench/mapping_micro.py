"""Micro-benchmark of lib/mapping.py: µs per message for the small and large profiles, csv and json.

Not a test (no assertions on time). Run: ``.venv/bin/python -m bench.mapping_micro [--messages N]``.
Prints, per profile, the ujson decode alone (the floor the csv mapping builds on) and
``Mapper.map_records`` for both formats, as the sum over poll-sized slices of
each slice's best of several runs.
"""
from __future__ import annotations

import argparse
import random
import time
from collections import namedtuple

import ujson

from sinker_lib.config import MappingConfig
from sinker_lib.mapping import Mapper
from tests.stack.profiles import LARGE_COLUMNS, PROFILES, SMALL_COLUMNS, columns_for

Record = namedtuple("Record", "topic partition offset timestamp key value")

def per_message_us(fn, slices, n, runs) -> float:
    """Sum over slices of each slice's best time: robust to other processes sharing the CPU."""
    best = [float("inf")] * len(slices)
    for _ in range(runs):
        for i, s in enumerate(slices):
            t0 = time.perf_counter()
            fn(s)
            best[i] = min(best[i], time.perf_counter() - t0)
    return sum(best) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--slice", type=int, default=2000, help="records per map_records call")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(7)
    specs = {"small": SMALL_COLUMNS, "large": LARGE_COLUMNS}
    print(f"{'profile':8} {'bytes/msg':>9} {'ujson.loads':>12} {'csv':>8} {'csv-decode':>11} {'json':>8}")
    for profile, (_, make) in PROFILES.items():
        recs = [Record("t", 0, i, 1_700_000_000_000 + i, None, make(i, rng))
                for i in range(args.messages)]
        slices = [recs[i:i + args.slice] for i in range(0, len(recs), args.slice)]
        size = sum(len(r.value) for r in recs) / len(recs)
        loads = ujson.loads

        def decode(s):
            for r in s:
                loads(r.value)
        result = {"decode": per_message_us(decode, slices, len(recs), args.runs)}
        for fmt in ("csv", "json"):
            m = Mapper(columns_for(specs[profile]), MappingConfig(format=fmt))
            check_out, check_dead = [], []
            m.map_records(recs[:100], check_out, check_dead)
            if check_dead:
                raise SystemExit(f"{profile}/{fmt}: unexpected dead letters: {check_dead[:3]}")

            def run(s, m=m):
                out, dead = [], []
                m.map_records(s, out, dead)
            result[fmt] = per_message_us(run, slices, len(recs), args.runs)
        print(f"{profile:8} {size:9.0f} {result['decode']:10.2f}µs {result['csv']:6.2f}µs "
              f"{result['csv'] - result['decode']:9.2f}µs {result['json']:6.2f}µs")


if __name__ == "__main__":
    main()
