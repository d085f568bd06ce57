"""``python -m tfcore.train``: train a preset from the shell, and survive Ctrl-C.

    python -m tfcore.train --preset shakespeare-char-cpu                     # 2,400 steps
    python -m tfcore.train --preset shakespeare-char-cpu --time-budget 180   # as many steps as fit in 180 s
    python -m tfcore.train --preset shakespeare-char-cpu --resume            # go on after Ctrl-C or a crash
    torchrun --nproc_per_node 2 -m tfcore.train --preset shakespeare-char-tiny   # data-parallel

Checkpoints go to ``OUT_DIR/ckpt.pt`` (default ``runs/PRESET``), the one before it is kept as
``ckpt.prev.pt``, and every event is appended to ``OUT_DIR/log.jsonl``. Ctrl-C or SIGTERM ends
the current step, writes a checkpoint and prints the command that resumes the run.

Exit status: 0 when the run is done (its steps or its time budget); 128 + the signal's number
after Ctrl-C (130) or SIGTERM (143), once the checkpoint is written; 2 when a checkpoint or an
argument is refused (unreadable with no previous one, another configuration, a bad value).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

import torch.distributed as dist

from tfcore.checkpoints import CHECKPOINT_NAME, CheckpointError, save_weights
from tfcore.distributed import distributed_context, setup_distributed
from tfcore.presets import PRESETS, build
from tfcore.train import LOG_NAME, TrainResult, train


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tfcore.train", description="Train a preset (torchrun for DDP).",
        epilog="Ctrl-C or SIGTERM: the current step ends, a checkpoint is written and the command that resumes "
               "the run is printed (exit status 130 or 143).")
    p.add_argument("--preset", default="shakespeare-char-cpu", choices=sorted(PRESETS))
    p.add_argument("--steps", type=int, help="total optimiser steps (a resumed run continues up to this); with "
                                             "--time-budget, the nominal length that sets the warm-up's share")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="train for this long: the learning-rate schedule follows the clock (warm-up and decay as "
                        "fractions of the budget) and the run stops when it is spent")
    p.add_argument("--out-dir", help="checkpoint and log folder (default: runs/PRESET)")
    p.add_argument("--checkpoint-interval", type=int, metavar="STEPS",
                   help="also write a checkpoint every this many steps (default: the preset's; 0: at the end only)")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/ckpt.pt (or ckpt.prev.pt)")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume even if the model or training configuration differs from the checkpoint's")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: auto)")
    p.add_argument("--seed", type=int)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--save-weights", metavar="PATH",
                   help="after training, save the model (config, fp32 weights, loss history) for pretrained()")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    setup_distributed()
    rank, world = distributed_context()
    say = print if rank == 0 else (lambda *a, **k: None)
    try:
        return _run(args, argv, say, world)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before training began, or a second Ctrl-C inside a step
        say("interrupted: stopped at once; the last checkpoint written (if any) is intact")
        return 128 + signal.SIGINT
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _run(args: argparse.Namespace, argv: list[str], say, world: int) -> int:
    overrides = {"out_dir": args.out_dir or os.path.join("runs", args.preset)}
    for name in ("steps", "time_budget", "checkpoint_interval", "device", "seed", "compile"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    try:
        model, cfg, train_data, val_data, tokenizer = build(args.preset, **overrides)
    except ValueError as e:  # a value TrainConfig refuses, e.g. --checkpoint-interval -1
        parser().error(str(e))
    out = Path(cfg.out_dir)
    say(f"preset {args.preset}: {PRESETS[args.preset].description}")
    length = f"{cfg.time_budget:g} s" if cfg.time_budget is not None else f"{cfg.steps} steps"
    say(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; "
        f"{length} of {cfg.batch_size} x {cfg.block_size} tokens on {world} process(es)")
    say(f"checkpoint: {out / CHECKPOINT_NAME}")
    say(f"log (JSON lines): {out / LOG_NAME}")
    result = train(model, cfg, train_data, val_data, progress=not args.no_progress, tokenizer=tokenizer,
                   resume=args.resume, log=say, allow_config_change=args.allow_config_change)
    if result.interrupted:
        _say_how_to_resume(result, argv, out, world, say)
        return 128 + getattr(signal.Signals, result.stop_reason, signal.SIGTERM).value
    say(f"done: {result.steps} steps ({result.stop_reason}), final val loss {result.final_val_loss:.4f}, "
        f"{result.tokens_per_s:.0f} tokens/s, {result.wall_seconds:.1f} s")
    if args.save_weights and distributed_context()[0] == 0:
        Path(args.save_weights).parent.mkdir(parents=True, exist_ok=True)
        save_weights(args.save_weights, model, args.preset, result)
        say(f"weights (for tfcore.train.pretrained): {args.save_weights}")
    return 0


def _say_how_to_resume(result: TrainResult, argv: list[str], out: Path, world: int, say) -> None:
    ckpt = out / CHECKPOINT_NAME
    if not ckpt.exists():
        say("no step finished: nothing to resume; run the same command again")
        return
    args = [a for a in argv if a != "--resume"] + ["--resume"]
    if not any(a == "--out-dir" or a.startswith("--out-dir=") for a in args):
        args += ["--out-dir", str(out)]
    launcher = ["torchrun", "--nproc_per_node", str(world), "-m", "tfcore.train"] if world > 1 else \
        ["python", "-m", "tfcore.train"]
    say(f"resume with: {shlex.join(launcher + args)}")
    if "--save-weights" in " ".join(argv):
        say("weights not saved: the run is not finished (the resumed run saves them)")
