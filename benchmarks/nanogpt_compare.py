"""GPT-2-small training step: nanoGPT's model.py and tfcore's model, on the same card in the same run.

    python benchmarks/nanogpt_compare.py                      # CUDA, B 12, T 1024, bf16, torch.compile
    python benchmarks/nanogpt_compare.py --nanogpt PATH/model.py
    python benchmarks/nanogpt_compare.py --tiny --device cpu --no-compile   # a dry run of every line on a CPU

nanoGPT is not part of this repository: put its ``model.py`` (https://github.com/karpathy/nanoGPT,
the file at the repository's root, unchanged) at ``benchmarks/scratch/nanogpt/model.py``. The
folder ``benchmarks/scratch/`` is ignored by git; carry it to the GPU machine with the run. Without
the file the script says so and times tfcore's step alone.

Both steps do what a training step does, in the same way: bf16 autocast, ``torch.compile``, a
forward to the loss, backward, gradient clipping at 1.0, fused AdamW (lr 6e-4, betas (0.9, 0.95),
weight decay 0.1 on the matrices), ``zero_grad(set_to_none=True)``. nanoGPT's step is the one its
``train.py`` runs (``model(x, y)`` returns the loss; ``configure_optimizers`` builds its AdamW) with
its own attention (SDPA, PyTorch's default backend); tfcore's step is ``benchmarks/train_gpu.py``'s
(which times every SDPA backend first and keeps the fastest). Each step time is the mean over
``--steps`` steps run back to back with nothing read back between them, after ``--warmup`` steps
(compilation included). The JSON (benchmarks/results/nanogpt_compare_<device>.json) holds both
and the ratio tfcore / nanoGPT; issue 20's target is at most 0.9.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import time
from pathlib import Path

import torch
import train_gpu  # benchmarks/train_gpu.py, beside this script

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_NANOGPT = Path(__file__).resolve().parent / "scratch" / "nanogpt" / "model.py"
GPT2_SMALL = dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50304)
TINY = dict(n_layer=2, n_head=4, n_embd=64, vocab_size=512)  # the shape of train_gpu.py --tiny


def load_nanogpt(path: Path):
    """nanoGPT's model module, imported from its file (it is not installed or vendored)."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_nanogpt(module, shape: dict, batch: int, seq_len: int, device: torch.device, compile_model: bool,
                 warmup: int, steps: int) -> dict:
    """Mean ms per nanoGPT training step, run as tfcore's benchmark runs its own."""
    torch.manual_seed(0)
    config = module.GPTConfig(block_size=seq_len, dropout=0.0, bias=True, **shape)  # GPT-2: biases, no dropout
    model = module.GPT(config).to(device).train()
    optimizer = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), device.type)
    forward = torch.compile(model) if compile_model else model
    amp = torch.bfloat16 if device.type == "cuda" else None
    x = torch.randint(shape["vocab_size"], (batch, seq_len), device=device)
    y = torch.randint(shape["vocab_size"], (batch, seq_len), device=device)

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            _, loss = forward(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    t0 = time.perf_counter()
    losses = [step().item() for _ in range(warmup)]
    warmup_s = time.perf_counter() - t0
    train_gpu.sync(device)
    t0 = time.perf_counter()
    pending = [step() for _ in range(steps)]  # back to back: the CPU queues a step while the GPU runs one
    train_gpu.sync(device)
    step_ms = (time.perf_counter() - t0) * 1e3 / steps
    result = {"step_ms": step_ms, "warmup_seconds": warmup_s, "losses": losses + torch.stack(pending).tolist(),
              "parameters": sum(p.numel() for p in model.parameters()),
              "tokens_per_s": batch * seq_len / (step_ms / 1e3)}
    if device.type == "cuda":
        result["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nanogpt", type=Path, default=DEFAULT_NANOGPT, help="path of nanoGPT's model.py")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (a dry run on a CPU)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu (--tiny only)")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20; tiny 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first, compile included (default 5; tiny 2)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda" and not args.tiny:
        raise SystemExit("no CUDA device: run with --tiny to exercise the script on the CPU")
    shape, batch, seq_len = (TINY, 4, 64) if args.tiny else (GPT2_SMALL, 12, 1024)
    steps, warmup = args.steps or (3 if args.tiny else 20), args.warmup or (2 if args.tiny else 5)
    name = f"nanogpt_compare{'_tiny' if args.tiny else ''}_{device.type}"
    out = Path(args.out) if args.out else RESULTS / f"{name}.json"
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")

    result: dict = {"benchmark": name, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "batch": batch, "seq_len": seq_len, "shape": shape,
                    "compile": args.compile, "steps": steps, "warmup": warmup}
    if args.nanogpt.exists():
        nano = time_nanogpt(load_nanogpt(args.nanogpt), shape, batch, seq_len, device, args.compile, warmup, steps)
        result["nanogpt"] = {"file": str(args.nanogpt), **nano}
        print(f"nanoGPT: {nano['step_ms']:.1f} ms per step ({nano['tokens_per_s']:.0f} tokens/s)", flush=True)
    else:
        result["nanogpt"] = None
        print(f"nanoGPT's model.py not found at {args.nanogpt}: timing tfcore alone (see this script's docstring)")
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    ours = train_gpu.main(["--device", str(device), "--steps", str(steps), "--warmup", str(warmup),
                           "--out", str(out.with_name(out.stem + "_tfcore.json"))]
                          + (["--tiny"] if args.tiny else []) + ([] if args.compile else ["--no-compile"]))
    result["tfcore"] = {k: ours[k] for k in ("step_ms", "warmup_seconds", "sdpa_backend", "tokens_per_s", "parameters")}
    if result["nanogpt"] is not None:
        result["tfcore_over_nanogpt"] = ours["step_ms"] / result["nanogpt"]["step_ms"]
        print(f"tfcore / nanoGPT step time: {result['tfcore_over_nanogpt']:.3f} (target <= 0.9)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {out}")
    return result


if __name__ == "__main__":
    main()
