"""One full GPT-2-small training step on a GPU: time, tokens/s and MFU.

    python benchmarks/train_gpu.py            # CUDA: 12 layers, 12 heads, d 768, vocab 50304, T 1024, B 12
    python benchmarks/train_gpu.py --tiny     # a tiny shape on the CPU: exercises every line, times nothing useful

The step is the one ``tfcore.train.train`` runs for the ``gpt2-small-gpu`` preset: bf16 autocast,
``torch.compile`` of the loss function (model + cross-entropy in one graph), gradient clipping,
fused AdamW with weight-decay groups, ``set_to_none`` zeroing. Before timing, every SDPA kernel
PyTorch offers for this shape (cuDNN, FlashAttention-2, memory-efficient, math) is timed on its
own for a causal forward + backward, and the step runs with the fastest one.

FLOPs per token (the PaLM / nanoGPT convention, which counts the full T x T score matrix even
though causal kernels skip half of it):

    6 N + 12 L T d      N = parameters that multiply activations (all but the position table;
                        the tied embedding counts once, as the unembedding)

The step time is the mean over ``--steps`` steps run back to back with nothing read back between
them, as ``tfcore.train.train`` runs them (the CPU queues a step while the GPU runs the one before);
the same number of steps, each between two syncs, give the spread (``step_ms_synced_*``).
MFU = FLOPs per step / step time / peak; the peak defaults to 989 TFLOP/s (H100 SXM, dense BF16).
Results go to benchmarks/results/train_gpu[_tiny]_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from tfcore.model import Transformer, TransformerConfig, gpt2_config
from tfcore.train import PRESETS, autocast_dtype, batch_loss, lr_at, make_optimizer

RESULTS = Path(__file__).resolve().parent / "results"
H100_BF16_PEAK = 989e12


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_token(model: Transformer, seq_len: int) -> tuple[float, int]:
    """(6 N + 12 L T d, N) with N = parameters excluding the position table."""
    c = model.config
    n = sum(p.numel() for p in model.parameters())
    if model.positions is not None:
        n -= model.positions.table.weight.numel()
    return 6 * n + 12 * c.n_layers * seq_len * c.d_model, n


def sdpa_backends(device: torch.device):
    from torch.nn.attention import SDPBackend

    if device.type != "cuda":
        return {"default": None}
    return {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


def time_attention(backend, shape: tuple[int, int, int, int], device: torch.device, dtype: torch.dtype,
                   repeats: int = 10) -> float:
    """Median ms of a causal SDPA forward + backward with only ``backend`` allowed (inf if it refuses)."""
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel

    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    times = []
    try:
        with sdpa_kernel([backend]) if backend is not None else _null():
            for i in range(repeats + 2):
                sync(device)
                t0 = time.perf_counter()
                F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
                sync(device)
                if i >= 2:
                    times.append((time.perf_counter() - t0) * 1e3)
    except RuntimeError:
        return float("inf")
    return statistics.median(times)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def pick_backend(model: Transformer, batch: int, seq_len: int, device: torch.device, dtype: torch.dtype,
                 choice: str) -> tuple[str, dict]:
    backends = sdpa_backends(device)
    c = model.config
    shape = (batch, c.n_heads, seq_len, c.d_head)
    if choice != "auto":
        return choice, {}
    timings = {name: time_attention(b, shape, device, dtype) for name, b in backends.items()}
    return min(timings, key=timings.get), timings


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny shape (runs on a CPU in seconds, plus compile)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu (--tiny only)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seq-len", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20; tiny 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first, compile included (default 5)")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--compile-mode", default=None, choices=["reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
                        help="torch.compile's mode (default: its default); reduce-overhead replays CUDA graphs")
    parser.add_argument("--backend", default="auto", help="auto | cudnn | flash | efficient | math")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_PEAK / 1e12)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda" and not args.tiny:
        raise SystemExit("no CUDA device: run with --tiny to exercise the script on the CPU")
    preset = PRESETS["gpt2-small-gpu"]
    if args.tiny:
        config = gpt2_config(vocab_size=512, d_model=64, n_layers=2, n_heads=4, max_seq_len=64, backend="sdpa")
        batch, seq_len, steps, warmup = args.batch or 4, args.seq_len or 64, args.steps or 3, args.warmup or 2
    else:
        config = TransformerConfig(**preset.model)
        batch, seq_len = args.batch or preset.train.batch_size, args.seq_len or preset.train.block_size
        steps, warmup = args.steps or 20, args.warmup or 5
    cfg = replace(preset.train, batch_size=batch, block_size=seq_len, compile=args.compile,
                  device=str(device), fused_adamw=device.type == "cuda")

    torch.manual_seed(0)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    model = Transformer(config).to(device).train()
    optimizer = make_optimizer(model, cfg, device)
    amp = autocast_dtype(cfg, device)  # bf16 on CUDA, fp32 on the CPU
    loss_fn = torch.compile(batch_loss, mode=args.compile_mode) if cfg.compile else batch_loss
    backend_name, attention_ms = pick_backend(model, batch, seq_len, device, amp or torch.float32, args.backend)
    backend = sdpa_backends(device).get(backend_name) if backend_name != "default" else None
    inputs = torch.randint(config.vocab_size, (batch, seq_len), device=device)
    targets = torch.randint(config.vocab_size, (batch, seq_len), device=device)

    from torch.nn.attention import sdpa_kernel

    def step(i: int) -> torch.Tensor:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(i, cfg)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss, _ = loss_fn(model, (inputs, targets))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()  # still on the device: reading it would wait for the step

    times, losses = [], []
    with sdpa_kernel([backend]) if backend is not None else _null():
        sync(device)
        t_compile = time.perf_counter()
        for i in range(warmup):
            losses.append(step(i).item())
        warmup_s = time.perf_counter() - t_compile
        # As tfcore.train.train runs: no read-back between steps, so the CPU queues step i + 1
        # while the GPU still runs step i. The mean over the stretch is the figure we report.
        sync(device)
        t0 = time.perf_counter()
        pending = [step(i) for i in range(warmup, warmup + steps)]
        sync(device)
        step_ms = (time.perf_counter() - t0) * 1e3 / steps
        losses += torch.stack(pending).tolist()
        # The same number of steps again, each timed on its own (a sync before and after): the spread.
        for i in range(warmup + steps, warmup + 2 * steps):
            sync(device)
            t0 = time.perf_counter()
            losses.append(step(i).item())
            times.append((time.perf_counter() - t0) * 1e3)
    per_token, n_params = flops_per_token(model, seq_len)
    flops_per_step = per_token * batch * seq_len
    result = {
        "benchmark": "train_gpu" + ("_tiny" if args.tiny else ""),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "model": {k: getattr(config, k) for k in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len", "mlp")},
        "parameters": sum(p.numel() for p in model.parameters()),
        "matmul_parameters": n_params,
        "batch": batch, "seq_len": seq_len,
        "dtype": str(amp or torch.float32), "compile": cfg.compile, "compile_mode": args.compile_mode, "fused_adamw": cfg.fused_adamw,
        "sdpa_backend": backend_name, "attention_fwd_bwd_ms": attention_ms,
        "warmup_steps": warmup, "warmup_seconds": warmup_s,
        "step_ms": step_ms, "step_ms_synced_median": statistics.median(times), "step_ms_synced_all": times,
        "tokens_per_s": batch * seq_len / (step_ms / 1e3),
        "flops_per_token": per_token, "flops_per_step": flops_per_step,
        "achieved_tflops": flops_per_step / (step_ms / 1e3) / 1e12,
        "peak_tflops": args.peak_tflops,
        "mfu": flops_per_step / (step_ms / 1e3) / (args.peak_tflops * 1e12),
        "losses": losses,
    }
    if device.type == "cuda":
        result["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    out = Path(args.out) if args.out else RESULTS / f"{result['benchmark']}_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['device']}: step {step_ms:.1f} ms (mean of {steps}; {result['step_ms_synced_median']:.1f} ms "
          f"with a sync around each), {result['tokens_per_s']:.0f} tokens/s, "
          f"{result['achieved_tflops']:.1f} TFLOP/s, MFU {result['mfu']:.1%} of {args.peak_tflops:.0f} TFLOP/s, "
          f"SDPA {backend_name}, compile {cfg.compile} ({warmup_s:.1f} s warm-up)  -> {out}")
    return result


if __name__ == "__main__":
    main()
