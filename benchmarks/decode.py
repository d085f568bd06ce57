"""Decoding speed: 1,000 new tokens with the KV cache against recomputing the whole prefix.

    python benchmarks/decode.py                     # CPU, the shakespeare-char-cpu shape, context 1024
    python benchmarks/decode.py --device cuda --shape gpt2-small --dtype bfloat16 --batch 128
                                                    # a GPU: GPT-2-small shape, 128 sequences at once

On a GPU a small model at batch 1 is bound by kernel launches whichever way it decodes (a
forward over 1,000 tokens costs about what a forward over one costs), so the cache pays off
there as the work per step grows: a bigger model, more sequences at once.

Without a cache, step t runs the model on all t tokens so far: O(T^2) token-positions over a
generation (and O(T^3) attention work). With the cache, step t runs one token and attends over
the t cached keys/values. Both use greedy decoding from the same prompt, so they must produce
the same tokens (up to float ties); the script reports how many agree. Results go to
benchmarks/results/decode_<device>.json.

``--threads N`` sets PyTorch's thread count first; without it PyTorch's default (one per core)
is what ``generate`` gets, and it chooses per step how many of them a step is worth
(``tfcore.threads``). The JSON keeps the load average before and after and the CPU time of each
run beside its wall time: on a busy machine a one-thread run's CPU time is close to what its
wall time would be on an idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from machine import cpu_model  # benchmarks/machine.py, beside this script

from tfcore.model import Transformer, TransformerConfig
from tfcore.train import PRESETS

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = {"cpu": "shakespeare-char-cpu", "gpt2-small": "gpt2-small-gpu"}  # --shape -> preset


def timed_generate(model: Transformer, prompt: torch.Tensor, new_tokens: int, use_cache: bool,
                   device: torch.device) -> tuple[torch.Tensor, float, float]:
    """The generated tokens, the wall seconds and the process's CPU seconds (all its threads)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, cpu0 = time.perf_counter(), time.process_time()
    out = model.generate(prompt, new_tokens, temperature=0.0, use_cache=use_cache)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0, time.process_time() - cpu0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--new-tokens", type=int, default=1000)
    parser.add_argument("--context", type=int, default=1024, help="max_seq_len of the model")
    parser.add_argument("--backend", default="sdpa")
    parser.add_argument("--shape", default="cpu", choices=sorted(SHAPES), help="model shape (a preset's)")
    parser.add_argument("--batch", type=int, default=1, help="sequences decoded at once")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="model weights' dtype")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each mode (the median is kept)")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/decode_<device>.json)")
    parser.add_argument("--note", default=None, help="a remark kept in the JSON (e.g. how busy the machine was)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    device = torch.device(args.device)
    shape = {k: v for k, v in PRESETS[SHAPES[args.shape]].model.items() if k not in ("max_seq_len", "backend")}
    shape.setdefault("vocab_size", 65)
    torch.manual_seed(0)
    config = TransformerConfig(**shape, max_seq_len=args.context, backend=args.backend)
    model = Transformer(config).to(device, getattr(torch, args.dtype)).eval()
    if args.new_tokens + 1 > args.context:
        raise SystemExit(f"--new-tokens {args.new_tokens} does not fit in --context {args.context}: "
                         "generate would crop and refill the cache")
    prompt = torch.arange(args.batch, device=device)[:, None] % config.vocab_size  # (batch, 1), a row each

    model.generate(prompt, 8, temperature=0.0)  # warm-up: allocator, kernels, threads
    model.generate(prompt, 8, temperature=0.0, use_cache=False)
    timings: dict[str, list[float]] = {"cache": [], "recompute": []}
    cpu_timings: dict[str, list[float]] = {"cache": [], "recompute": []}
    outputs = {}
    for _ in range(args.repeats):
        for mode in ("cache", "recompute"):
            out, seconds, cpu_seconds = timed_generate(model, prompt, args.new_tokens, mode == "cache", device)
            timings[mode].append(seconds)
            cpu_timings[mode].append(cpu_seconds)
            outputs[mode] = out
    cache_s, recompute_s = statistics.median(timings["cache"]), statistics.median(timings["recompute"])
    agree = (outputs["cache"] == outputs["recompute"]).float().mean().item()
    result = {
        "benchmark": "decode",
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": {**shape, "max_seq_len": args.context, "backend": args.backend,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "new_tokens": args.new_tokens,
        "decoding": f"greedy, batch {args.batch}, {args.dtype} weights",
        "batch": args.batch,
        "cache_seconds": cache_s,
        "recompute_seconds": recompute_s,
        "cache_tokens_per_s": args.batch * args.new_tokens / cache_s,
        "recompute_tokens_per_s": args.batch * args.new_tokens / recompute_s,
        "speedup": recompute_s / cache_s,
        "cache_cpu_seconds": statistics.median(cpu_timings["cache"]),
        "recompute_cpu_seconds": statistics.median(cpu_timings["recompute"]),
        "same_tokens_fraction": agree,
        "all_timings": timings,
        "all_cpu_timings": cpu_timings,
    }
    if load_before is not None:
        result["load_average_before"], result["load_average_after"] = load_before, os.getloadavg()
    if args.note:
        result["note"] = args.note
    out_path = Path(args.out) if args.out else RESULTS / f"decode_{device.type}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.new_tokens} tokens on {device}: cache {result['cache_tokens_per_s']:.0f} tok/s, "
          f"recompute {result['recompute_tokens_per_s']:.0f} tok/s, speedup {result['speedup']:.1f}x, "
          f"same tokens {agree:.1%}  -> {out_path}")
    return result


if __name__ == "__main__":
    main()
