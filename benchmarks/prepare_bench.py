"""Throughput of `ethsft prepare` on generated transactions.

    python benchmarks/prepare_bench.py --rows 200000 [--format csv|jsonl|parquet] [--seed 0]

Generates ``--rows`` synthetic transactions with ``ethsft.eth.synth`` (not
timed), then times ``ethsft.eth.prepare.prepare`` (one process, one core: read,
validate, decode calldata with eth-abi, label, split, write), without the token
statistics (reported separately: they tokenize a fixed sample of 2000).
Prints rows/s (wall clock, and per CPU-second of this process, which is the
figure to quote on a machine shared with other jobs) and the peak resident
memory of this process.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ethsft.eth.prepare import prepare, token_stats  # noqa: E402
from ethsft.eth.synth import generate_rows, write_rows  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--format", choices=("csv", "jsonl", "parquet"), default="csv")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", help="work directory (default: a temporary one, removed afterwards)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        src = os.path.join(tmp, f"decoded.{args.format}")
        t0 = time.perf_counter()
        write_rows(src, generate_rows(args.rows, args.seed))
        gen_s = time.perf_counter() - t0
        size_mib = os.path.getsize(src) / 2**20
        rss_before = peak_rss_mib()
        print(f"generated {args.rows} rows ({size_mib:.1f} MiB {args.format}) in {gen_s:.1f} s; "
              f"peak RSS so far {rss_before:.0f} MiB", flush=True)

        t0, c0 = time.perf_counter(), time.process_time()
        s = prepare(src, os.path.join(tmp, "out"), seed=args.seed, progress=False, count_tokens=False)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"prepare: {s['rows_read']} rows in {secs:.2f} s wall = {s['rows_read'] / secs:,.0f} rows/s "
              f"({cpu:.2f} s CPU = {s['rows_read'] / cpu:,.0f} rows per CPU-second; the two differ when "
              f"the core is shared)")
        print(f"kept {s['kept']}, duplicates {s['duplicates']}, rejected {s['rejected']}; splits {s['splits']}")
        print(f"peak RSS {peak_rss_mib():.0f} MiB (before prepare {rss_before:.0f} MiB)")

        import json
        import random

        sample = []
        with open(os.path.join(tmp, "out", "train.jsonl")) as f:
            for i, line in enumerate(f):
                rec = json.loads(line)
                pair = (rec["instruction"] + "\n\n" + rec["input"], rec["output"])
                if len(sample) < 2000:
                    sample.append(pair)
                elif (j := random.Random(i).randrange(i + 1)) < 2000:
                    sample[j] = pair
        t0 = time.perf_counter()
        t = token_stats(sample)
        if "prompt" in t:
            print(f"tokens ({t['tokenizer']}, {t['sample']} train records, {time.perf_counter() - t0:.1f} s): "
                  f"prompt mean {t['prompt']['mean']} p95 {t['prompt']['p95']}; "
                  f"completion mean {t['completion']['mean']} p95 {t['completion']['p95']}")
        else:
            print(f"tokens: {t}")


if __name__ == "__main__":
    main()
