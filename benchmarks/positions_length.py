"""Lesson 07's length experiment: six position schemes, three seeds each, trained at T = 64, scored at T = 512.

    python benchmarks/positions_length.py           # the lesson's results (18 runs, one thread)
    python benchmarks/positions_length.py --steps 20 --seeds 0 --out /tmp/quick.json   # a quick check

Each run builds a 2-layer decoder (d_model 48, 4 heads) with one position scheme (learned,
sinusoidal, rope, alibi, t5, none) from its seed, trains it for 600 steps on windows of 64
characters of Shakespeare (the seed also picks the windows, the same for every scheme), and
scores it on 64 held-out windows of 512 characters: the mean loss at each position. The RoPE
models are also scored with other bases (the trained 1e4, the NTK-aware base for 8 times the
length, 1e6) without retraining. Everything is in ``tfcore.extrapolation``; the settings are
``LengthExperiment()``'s defaults.

Writes benchmarks/results/positions_length.json, which lesson 07 loads: the settings, and per
scheme and seed the training loss and the held-out loss at each position (4 decimals), plus the
CPU and wall time, the thread count and the machine. With one thread the results are the same on
every run on a given machine (torch's CPU kernels may round differently on another one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import torch
from machine import cpu_model  # benchmarks/machine.py, beside this script

from tfcore.data import shakespeare_splits
from tfcore.extrapolation import LengthExperiment, length_sweep, ntk_base
from tfcore.model import POSITIONS

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemes", default=",".join(POSITIONS), help="comma-separated position schemes")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: LengthExperiment's)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1: deterministic, fair)")
    parser.add_argument("--out", default=str(RESULTS / "positions_length.json"))
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    exp = LengthExperiment() if args.steps is None else LengthExperiment(steps=args.steps)
    schemes, seeds = args.schemes.split(","), [int(s) for s in args.seeds.split(",")]
    d_head = exp.d_model // exp.n_heads
    bases = [1e4, ntk_base(1e4, exp.eval_len / exp.train_len, d_head), 1e6]
    tok, train_ids, val_ids = shakespeare_splits()

    load_before, wall_start = os.getloadavg(), time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    out = length_sweep(train_ids, val_ids, tok.vocab_size, schemes, seeds, exp, rope_bases=bases, log=print)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    out.update({
        "benchmark": "positions_length",
        "command": "python benchmarks/positions_length.py" + (f" --steps {args.steps}" if args.steps else ""),
        "total_cpu_seconds": round((cpu_after.ru_utime + cpu_after.ru_stime)
                                   - (cpu_before.ru_utime + cpu_before.ru_stime), 1),
        "wall_seconds": round(time.perf_counter() - wall_start, 1),
        "threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpu_model": cpu_model(),
        "torch": torch.__version__,
    })
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out) + "\n")
    print(f"{len(schemes)} schemes x {len(seeds)} seeds: {out['total_cpu_seconds']} s CPU, "
          f"{out['wall_seconds']} s wall, {out['threads']} thread(s), load {load_before[0]:.1f} -> "
          f"{out['load_average_after'][0]:.1f}  -> {path}")
    return out


if __name__ == "__main__":
    main()
