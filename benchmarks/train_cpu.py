"""Character-level Shakespeare on the CPU in a 3-minute budget: the ``shakespeare-char-cpu`` preset.

    python benchmarks/train_cpu.py                  # the preset as it is (about 3 minutes on 2 cores)
    python benchmarks/train_cpu.py --time-budget 180 --out benchmarks/results/train_cpu_budget180.json
                                                    # as many steps as fit in 180 s (the schedule follows the clock)
    python benchmarks/train_cpu.py --steps 50       # a quick check of the script

Measures the whole run: reading the corpus, building the model, every training step, every
evaluation (step 0 included) and the final one. Writes benchmarks/results/train_cpu.json (config,
steps, wall time, tokens/s, the validation-loss curve with the wall time of each point, the
machine's load average) and train_cpu.png (the loss curve). The anchor: nanoGPT's documented CPU
config (4 layers, 4 heads, d 128, context 64, batch 12, 2000 steps, lr 1e-3) reaches a
validation loss of about 1.88 in about 3 minutes. With ``--time-budget`` the budget covers the
training loop (evaluations included); reading the corpus, building the model, the first and the
final evaluation come on top (a few seconds).

The machine should be otherwise idle: the load average before and after is recorded, and a run
whose load average exceeds the core count is marked ``"contended": true`` (its wall time is then
not the machine's). Process CPU time is recorded as well.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from dataclasses import asdict
from pathlib import Path

import torch
from machine import cpu_model  # benchmarks/machine.py, beside this script

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="shakespeare-char-cpu")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: the preset's)")
    parser.add_argument("--budget", type=float, default=180.0, help="seconds the whole run may take")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="train for this many seconds (TrainConfig.time_budget) instead of the preset's steps")
    parser.add_argument("--progress", action="store_true", help="show the tqdm bar")
    parser.add_argument("--out", default=None, help="JSON path (the PNG goes beside it)")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    load_before = os.getloadavg()
    from tfcore.train import LossPlot, build, train

    overrides = {"steps": args.steps} if args.steps else {}
    if args.threads:
        overrides["num_threads"] = args.threads
    if args.time_budget:
        overrides["time_budget"] = args.time_budget
    model, cfg, train_data, val_data, tokenizer = build(args.preset, **overrides)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    marks: list[dict] = []

    def clock(state) -> None:  # runs after each evaluation: when was each point reached?
        if state.evals and (not marks or marks[-1]["step"] != state.evals[-1]["step"]):
            marks.append({**state.evals[-1], "wall_s": time.perf_counter() - t_start})

    cfg.callback_interval = cfg.eval_interval
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    result = train(model, cfg, train_data, val_data, callbacks=[clock], progress=args.progress)
    wall = time.perf_counter() - t_start
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    load_after = os.getloadavg()
    cores = os.cpu_count() or 1
    evals = [{**e, "wall_s": next((m["wall_s"] for m in marks if m["step"] == e["step"]), None)} for e in result.evals]
    out = {
        "benchmark": "train_cpu",
        "preset": args.preset,
        "model_config": asdict(model.config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_config": asdict(cfg),
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "time_budget_seconds": cfg.time_budget,
        "tokens": result.steps * cfg.batch_size * cfg.block_size,
        "wall_seconds": wall,
        "within_budget": wall <= args.budget,
        "budget_seconds": args.budget,
        "tokens_per_s": result.tokens_per_s,
        "final_val_loss": result.final_val_loss,
        "val_curve": evals,
        "train_loss_every_10": result.losses[::10],
        "cpu_seconds": (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime),
        "threads": torch.get_num_threads(),
        "cores": cores,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "contended": max(load_before[0], load_after[0]) > cores + 0.5,
        "machine": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "torch": torch.__version__,
        "anchor": "nanoGPT CPU config: val loss ~1.88 in ~3 min",
    }
    path = Path(args.out) if args.out else RESULTS / "train_cpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    png = LossPlot(display=False, width=7, height=3.5).render(result.losses, result.evals)
    path.with_suffix(".png").write_bytes(png)
    print(f"{args.preset}: {result.steps} steps ({result.stop_reason}), val loss {result.final_val_loss:.4f}, {wall:.1f} s wall "
          f"({'within' if out['within_budget'] else 'OVER'} {args.budget:.0f} s), {result.tokens_per_s:.0f} tokens/s, "
          f"load {load_before[0]:.1f} -> {load_after[0]:.1f} on {cores} cores  -> {path}")
    return out


if __name__ == "__main__":
    main()
