"""Where a second thread starts to pay off: small operations timed on one thread and on all of them.

    python benchmarks/threads.py            # writes benchmarks/results/threads_cpu.json
    python benchmarks/threads.py --quick    # a smoke run in a few seconds

Two kinds of operation, over sizes from a few thousand to some tens of millions of multiply-adds:
a linear layer (rows x 128 -> 512, a decoding step of the shakespeare-char-cpu model when rows = 1)
and attention of one query per head over T cached keys (8 heads of 64, 2 * 8 * T * 64
multiply-adds), as in a decoding step. Each size is timed as a loop of calls lasting about a
millisecond, one thread and all threads interleaved, and the median of the repeats is kept.
``tfcore.threads.WORK_PER_THREAD`` (the least work ``threads_for`` gives a thread) should sit
where the table's speedup passes 1. On a busy machine the crossing moves to larger sizes (a
thread that is not scheduled holds every operation up): measure on an idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from machine import cpu_model  # benchmarks/machine.py, beside this script

from tfcore.threads import WORK_PER_THREAD

RESULTS = Path(__file__).resolve().parent / "results"


def operations(quick: bool) -> list[tuple[str, int, Callable]]:
    """(kind, multiply-adds, a call) for each size measured."""
    ops = []
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(512, 128, generator=g), torch.randn(512, generator=g)
    for rows in (1, 4, 16, 64, 256) if quick else (1, 2, 4, 8, 16, 32, 64, 128, 256, 512):
        x = torch.randn(rows, 128, generator=g)
        ops.append(("linear 128->512", rows * 128 * 512, lambda x=x: F.linear(x, weight, bias)))
    for t in (256, 4096) if quick else (128, 512, 2048, 8192, 32768):
        q, k, v = torch.randn(1, 8, 1, 64, generator=g), torch.randn(1, 8, t, 64, generator=g), torch.randn(1, 8, t, 64, generator=g)
        ops.append(("attention, 1 query", 2 * 8 * t * 64, lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v)))
    return ops


def seconds_per_call(fn, threads: int, calls: int) -> float:
    torch.set_num_threads(threads)
    fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="the 'all threads' count")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/threads_cpu.json)")
    args = parser.parse_args(argv)
    if args.threads < 2:
        parser.error(f"--threads must be at least 2 to compare with one thread, got {args.threads}")
    load_before = os.getloadavg()
    rows = []
    with torch.no_grad():
        for kind, work, fn in operations(args.quick):
            one = seconds_per_call(fn, 1, 10)
            calls = max(3, int(1e-3 / max(one, 1e-7)))  # about a millisecond per timing
            times = {1: [], args.threads: []}
            for _ in range(2 if args.quick else args.repeats):
                for n in times:
                    times[n].append(seconds_per_call(fn, n, calls))
            t1, tn = statistics.median(times[1]), statistics.median(times[args.threads])
            rows.append({"operation": kind, "multiply_adds": work, "us_1_thread": t1 * 1e6,
                         f"us_{args.threads}_threads": tn * 1e6, "speedup": t1 / tn})
            print(f"{kind:20s} {work:>11,d} multiply-adds: 1 thread {t1 * 1e6:8.1f} us, "
                  f"{args.threads} threads {tn * 1e6:8.1f} us, speedup {t1 / tn:5.2f}", flush=True)
    torch.set_num_threads(args.threads)
    result = {"benchmark": "threads", "cpu": cpu_model(), "torch": torch.__version__, "threads": args.threads,
              "work_per_thread": WORK_PER_THREAD, "rows": rows,
              "load_average_before": load_before, "load_average_after": os.getloadavg()}
    out = Path(args.out) if args.out else RESULTS / f"threads_cpu{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {out}  (tfcore.threads.WORK_PER_THREAD = {WORK_PER_THREAD:,d})")
    return result


if __name__ == "__main__":
    main()
