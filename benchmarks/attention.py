"""Attention benchmark: naive vs tiled (tfcore.flash) vs PyTorch SDPA backends vs Triton.

Every method runs on the same inputs q (B, h, T, d_head), k, v (B, h_kv, T, d_head):

    naive             tfcore.flash.naive_attention: softmax(q k^T * scale + mask) v, scores materialised
    tiled             tfcore.flash.flash_attention: the PyTorch FlashAttention teaching kernel
    sdpa              torch.nn.functional.scaled_dot_product_attention, PyTorch's own choice
    sdpa-<backend>    the same, restricted with torch.nn.attention.sdpa_kernel to FLASH_ATTENTION,
                      CUDNN_ATTENTION, EFFICIENT_ATTENTION or MATH (those that fail here are
                      recorded under "unavailable" with their error)
    triton            tfcore.triton_flash.triton_attention (CUDA only)

Time: median of several calls after a warm-up, all methods interleaved round by round
so that a busy machine slows them alike; on CUDA every call is followed by
torch.cuda.synchronize(). "fwd" runs without autograd; "fwd+bwd" runs the forward
with requires_grad inputs and backward() with a random output gradient.
TFLOP/s: forward 4 B h T^2 d_head (halved when causal), backward 2.5x forward.

Peak extra memory:
  CUDA: torch.cuda.max_memory_allocated() during the call minus the memory allocated before it.
  CPU:  PyTorch's CPU allocator is plain malloc and invisible to tracemalloc, so this
        measures the process's resident-set high-water mark: in a fresh subprocess per
        (method, mode), for each T in increasing order, after a small warm-up call,
        malloc_trim(0) returns freed heap pages to the OS, writing "5" to
        /proc/self/clear_refs resets VmHWM to the current VmRSS, the call runs, and
        peak extra = VmHWM - VmRSS-before. Inputs (and, for fwd+bwd, nothing kept
        afterwards) are allocated before the reset; the output and gradients count.

Usage:
    python benchmarks/attention.py                    # CPU fp32 defaults, writes benchmarks/results/attention_cpu.json/.png
    python benchmarks/attention.py --device cuda --dtype bfloat16 --heads 16 --seq-lens 1024,4096,16384
    python benchmarks/attention.py --quick            # a smoke run in a few seconds
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_model  # noqa: E402  (benchmarks/machine.py, beside this script)
from tfcore.flash import flash_attention, naive_attention  # noqa: E402

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SDPA_BACKENDS = ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION", "MATH")
MATERIALISING = ("naive", "sdpa-MATH")  # methods that hold (B, h, T, T) scores


# --------------------------------------------------------------------------- #
# Methods
# --------------------------------------------------------------------------- #


def sdpa_method(backend: str | None, causal: bool, gqa: bool) -> Callable:
    """SDPA, optionally restricted to one backend."""

    def run(q, k, v):
        kwargs = {"is_causal": causal, "enable_gqa": True} if gqa else {"is_causal": causal}
        if backend is None:
            return F.scaled_dot_product_attention(q, k, v, **kwargs)
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(getattr(SDPBackend, backend)):
            return F.scaled_dot_product_attention(q, k, v, **kwargs)

    return run


def all_methods(device: str, causal: bool, gqa: bool) -> dict[str, Callable]:
    """Every candidate, before checking which ones run on this device."""
    methods: dict[str, Callable] = {
        "naive": lambda q, k, v: naive_attention(q, k, v, is_causal=causal),
        "tiled": lambda q, k, v: flash_attention(q, k, v, is_causal=causal),
        "sdpa": sdpa_method(None, causal, gqa),
    }
    for backend in SDPA_BACKENDS:
        methods[f"sdpa-{backend}"] = sdpa_method(backend, causal, gqa)
    if device == "cuda":
        methods["triton"] = triton_method(causal)
    return methods


def triton_method(causal: bool) -> Callable:
    def run(q, k, v):
        from tfcore.triton_flash import triton_attention

        return triton_attention(q, k, v, is_causal=causal)

    return run


def make_inputs(B, h, h_kv, T, d, dtype, device, requires_grad=False, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    shapes = ((B, h, T, d), (B, h_kv, T, d), (B, h_kv, T, d))
    return [torch.randn(s, generator=g, dtype=torch.float32).to(device, dtype).requires_grad_(requires_grad)
            for s in shapes]


def available_methods(methods: dict[str, Callable], args) -> tuple[dict[str, Callable], dict[str, str]]:
    """Try each method forward and backward on a small input; return the working ones and the errors."""
    ok, failed = {}, {}
    for name, fn in methods.items():
        try:
            q, k, v = make_inputs(1, args.heads, args.kv_heads, 64, args.d_head, args.dtype, args.device, True)
            out = fn(q, k, v)
            out.float().sum().backward()
            ref = naive_attention(q.detach().double(), k.detach().double(), v.detach().double(), is_causal=args.causal)
            err = (out.double() - ref).abs().max().item()
            if not err < (1e-3 if args.dtype == torch.float32 else 5e-2):
                raise RuntimeError(f"wrong result: max error {err:.2e}")
            ok[name] = fn
        except Exception as exc:  # noqa: BLE001 - recorded, not hidden
            failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    return ok, failed


# --------------------------------------------------------------------------- #
# Timing
# --------------------------------------------------------------------------- #


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def one_call(fn: Callable, inputs, mode: str, grad_out) -> None:
    """Run forward (no autograd) or forward + backward once."""
    if mode == "fwd":
        with torch.no_grad():
            fn(*inputs)
    else:
        for x in inputs:
            x.grad = None
        fn(*inputs).backward(grad_out)


def time_methods(methods: dict[str, Callable], T: int, mode: str, args) -> tuple[dict, dict]:
    """Seconds per call (wall clock, and process CPU time) for each method, interleaved
    over args.reps rounds after a warm-up."""
    inputs = make_inputs(args.batch, args.heads, args.kv_heads, T, args.d_head, args.dtype, args.device, mode != "fwd")
    grad_out = torch.randn_like(inputs[0]) if mode != "fwd" else None
    times: dict[str, list[float]] = {name: [] for name in methods}
    cpu_times: dict[str, list[float]] = {name: [] for name in methods}
    for name, fn in methods.items():  # warm-up (autotuning, lazy initialisation)
        for _ in range(args.warmup):
            one_call(fn, inputs, mode, grad_out)
    sync(args.device)
    for _ in range(args.reps):
        for name, fn in methods.items():
            sync(args.device)
            t0, c0 = time.perf_counter(), time.process_time()
            one_call(fn, inputs, mode, grad_out)
            sync(args.device)
            times[name].append(time.perf_counter() - t0)
            cpu_times[name].append(time.process_time() - c0)
    return times, cpu_times


def flops(B: int, h: int, T: int, d: int, causal: bool, mode: str) -> float:
    fwd = 4.0 * B * h * T * T * d * (0.5 if causal else 1.0)
    return fwd if mode == "fwd" else 3.5 * fwd


# --------------------------------------------------------------------------- #
# Memory
# --------------------------------------------------------------------------- #


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.MULTILINE).group(1))


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def cpu_peak_extra_bytes(fn: Callable, inputs, mode: str, grad_out) -> int:
    """Resident-set high-water mark during one call, minus the resident set just before it (Linux)."""
    _malloc_trim()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current VmRSS
    before = _proc_status_kib("VmRSS")
    one_call(fn, inputs, mode, grad_out)
    return (_proc_status_kib("VmHWM") - before) * 1024


def cuda_peak_extra_bytes(fn: Callable, inputs, mode: str, grad_out) -> int:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    one_call(fn, inputs, mode, grad_out)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def measure_memory_here(name: str, mode: str, seq_lens: list[int], args) -> dict[int, int]:
    """Peak extra bytes for one method at each T (in this process)."""
    fn = all_methods(args.device, args.causal, args.kv_heads != args.heads)[name]
    measure = cuda_peak_extra_bytes if args.device == "cuda" else cpu_peak_extra_bytes
    # warm-up at a small T: lazy initialisation is not the method's memory
    small = make_inputs(args.batch, args.heads, args.kv_heads, 64, args.d_head, args.dtype, args.device, mode != "fwd")
    one_call(fn, small, mode, torch.randn_like(small[0]) if mode != "fwd" else None)
    del small
    result = {}
    for T in sorted(seq_lens):
        inputs = make_inputs(args.batch, args.heads, args.kv_heads, T, args.d_head, args.dtype, args.device, mode != "fwd")
        grad_out = torch.randn_like(inputs[0]) if mode != "fwd" else None
        result[T] = measure(fn, inputs, mode, grad_out)
        del inputs, grad_out
    return result


def measure_memory(name: str, mode: str, seq_lens: list[int], args) -> dict[int, int]:
    """On CPU: a fresh subprocess per (method, mode); on CUDA: in this process."""
    if args.device == "cuda" or not seq_lens:
        return measure_memory_here(name, mode, seq_lens, args) if seq_lens else {}
    cmd = [sys.executable, __file__, "--_memory-child", name, mode, *_child_flags(args, seq_lens)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return {int(T): b for T, b in json.loads(out.strip().splitlines()[-1]).items()}


def _child_flags(args, seq_lens: list[int]) -> list[str]:
    return [
        "--device", args.device, "--dtype", args.dtype_name, "--batch", str(args.batch), "--heads", str(args.heads),
        "--kv-heads", str(args.kv_heads), "--d-head", str(args.d_head), "--seq-lens", ",".join(map(str, seq_lens)),
        "--causal" if args.causal else "--no-causal", "--threads", str(torch.get_num_threads()),
    ]


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def machine_info(device: str) -> dict:
    info = {
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    info["cpu_model"] = cpu_model()
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if device == "cuda":
        info["cuda"] = torch.version.cuda
    return info


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a script, not a notebook: choosing the backend here is fine
    import matplotlib.pyplot as plt

    cfg = results["config"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    for col, mode in enumerate(("fwd", "fwd+bwd")):  # a mode not measured leaves its column empty
        for name, per_t in results["methods"].items():
            pts = sorted((int(T), r[mode]) for T, r in per_t.items() if mode in r)
            ts = [(T, r["time_ms"]) for T, r in pts if "time_ms" in r]
            ms = [(T, r["peak_extra_mib"]) for T, r in pts if "peak_extra_mib" in r]
            style = {"marker": "o", "lw": 2.5 if name in ("naive", "tiled") else 1.2}
            if ts:
                axes[0, col].plot(*zip(*ts), label=name, **style)
            if ms:
                axes[1, col].plot(*zip(*ms), label=name, **style)
        axes[0, col].set_title(f"{mode} time")
        axes[0, col].set_ylabel("ms (median)")
        axes[1, col].set_title(f"{mode} peak extra memory ({results['memory_method'].split(':')[0]})")
        axes[1, col].set_ylabel("MiB")
        for ax in axes[:, col]:
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("T")
            ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    m = results["machine"]
    fig.suptitle(
        f"attention, B={cfg['batch']} h={cfg['heads']} h_kv={cfg['kv_heads']} d_head={cfg['d_head']} "
        f"{cfg['dtype']} {'causal' if cfg['causal'] else 'full'} | {m['device_name']} ({m.get('cpu_model', '')}), "
        f"{m['torch_threads']} torch thread(s), torch {m['torch']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="default: float32 on CPU, bfloat16 on CUDA")
    p.add_argument("--seq-lens", default=None, help="comma-separated T values (default 256..4096 on CPU)")
    p.add_argument("--memory-seq-lens", default=None,
                   help="extra T values measured for forward memory only (default 8192 on CPU)")
    p.add_argument("--d-head", type=int, default=64)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=None, help="h_kv (default: --heads)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--causal", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--reps", type=int, default=None, help="timed calls per method (default 5 CPU, 20 CUDA)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--max-scores-gib", type=float, default=8.0,
                   help="skip materialising methods when one (B, h, T, T) score tensor exceeds this")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    p.add_argument("--quick", action="store_true", help="small smoke run")
    p.add_argument("--methods", default=None, help="comma-separated subset of the methods (default: all)")
    p.add_argument("--max-tiled-len", type=int, default=None,
                   help="skip 'tiled' (a Python loop over tiles, slow at long T on a GPU) above this T")
    p.add_argument("--modes", default="fwd,fwd+bwd", help="comma-separated: fwd, fwd+bwd (default both)")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="time only, skip the memory sweep")
    p.add_argument("--note", default=None, help="a remark kept in the JSON (e.g. how busy the machine was)")
    p.add_argument("--out", default=None, help="JSON path; the PNG is written next to it")
    p.add_argument("--_memory-child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.dtype_name = args.dtype or ("float32" if args.device == "cpu" else "bfloat16")
    args.dtype = DTYPES[args.dtype_name]
    args.kv_heads = args.kv_heads or args.heads
    args.modes = args.modes.split(",")
    if not args.modes or set(args.modes) - {"fwd", "fwd+bwd"}:
        p.error(f"--modes must name fwd and/or fwd+bwd, got {','.join(args.modes)!r}")
    if args.heads % args.kv_heads:
        p.error(f"--heads={args.heads} is not a multiple of --kv-heads={args.kv_heads}")
    default_lens = "256,512,1024,2048,4096" if args.device == "cpu" else "512,1024,2048,4096,8192,16384"
    if args.quick:
        default_lens, args.memory_seq_lens = "128,256", args.memory_seq_lens or ""
    args.seq_lens = [int(t) for t in (args.seq_lens or default_lens).split(",") if t]
    mem_default = "8192" if args.device == "cpu" else ""
    args.memory_seq_lens = [int(t) for t in (args.memory_seq_lens if args.memory_seq_lens is not None
                                             else mem_default).split(",") if t]
    args.reps = args.reps or (2 if args.quick else 5 if args.device == "cpu" else 20)
    quick = "_quick" if args.quick else ""
    args.out = Path(args.out or ROOT / "benchmarks" / "results" / f"attention_{args.device}{quick}.json")
    return args


def skipped(args, name: str, T: int) -> bool:
    """Methods left out at this T: materialising ones over --max-scores-gib, 'tiled' over --max-tiled-len."""
    if name in MATERIALISING and scores_gib(args, T) > args.max_scores_gib:
        return True
    return name == "tiled" and args.max_tiled_len is not None and T > args.max_tiled_len


def scores_gib(args, T: int) -> float:
    return args.batch * args.heads * T * T * torch.finfo(args.dtype).bits / 8 / 2**30


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._memory_child:  # child process: print {T: bytes} as JSON and exit
        name, mode = args._memory_child
        print(json.dumps(measure_memory_here(name, mode, args.seq_lens, args)))
        return {}
    start = time.time()
    load_before = os.getloadavg()
    gqa = args.kv_heads != args.heads
    candidates = all_methods(args.device, args.causal, gqa)
    if args.methods:
        wanted = args.methods.split(",")
        unknown = [n for n in wanted if n not in candidates]
        if unknown:
            raise SystemExit(f"--methods: unknown {unknown}; known: {sorted(candidates)}")
        candidates = {n: f for n, f in candidates.items() if n in wanted}
    methods, unavailable = available_methods(candidates, args)
    print(f"methods: {', '.join(methods)}; unavailable: {', '.join(unavailable) or 'none'}", flush=True)
    results: dict = {
        "machine": machine_info(args.device),
        "config": {"batch": args.batch, "heads": args.heads, "kv_heads": args.kv_heads, "d_head": args.d_head,
                   "dtype": args.dtype_name, "causal": args.causal, "seq_lens": args.seq_lens,
                   "memory_seq_lens": args.memory_seq_lens, "reps": args.reps, "warmup": args.warmup,
                   "modes": args.modes, "threads": torch.get_num_threads()},
        "timing_method": "median of interleaved calls after warm-up; time_ms: wall clock (perf_counter"
        + (", torch.cuda.synchronize()" if args.device == "cuda" else "")
        + "); cpu_time_ms: process CPU time summed over threads (time.process_time), less sensitive "
        "to other processes on a shared machine",
        "memory_method": ("cuda: max_memory_allocated() - memory_allocated() before the call" if args.device == "cuda"
                          else "rss: VmHWM - VmRSS around one call in a fresh subprocess per (method, mode), "
                               "after malloc_trim(0) and a /proc/self/clear_refs high-water reset"),
        "flops_convention": "fwd 4*B*h*T^2*d (x0.5 causal); bwd 2.5x fwd",
        "unavailable": unavailable,
        "methods": {name: {} for name in methods},
    }
    for mode in args.modes:
        for T in args.seq_lens:
            runnable = {n: f for n, f in methods.items() if not skipped(args, n, T)}
            times, cpu_times = time_methods(runnable, T, mode, args)
            for name, ts in times.items():
                med = statistics.median(ts)
                results["methods"][name].setdefault(str(T), {})[mode] = {
                    "time_ms": med * 1e3, "times_ms": [t * 1e3 for t in ts],
                    "cpu_time_ms": statistics.median(cpu_times[name]) * 1e3,
                    "tflops": flops(args.batch, args.heads, T, args.d_head, args.causal, mode) / med / 1e12,
                }
            line = "  ".join(f"{n} {statistics.median(t) * 1e3:.1f}" for n, t in times.items())
            print(f"{mode:8s} T={T:<6d} ms: {line}", flush=True)
    # memory: the sweep for both modes, plus forward-only extra lengths
    for name in methods if args.memory else []:
        for mode in args.modes:
            lens = args.seq_lens + (args.memory_seq_lens if mode == "fwd" else [])
            lens = [T for T in lens if not skipped(args, name, T)]
            for T, b in measure_memory(name, mode, lens, args).items():
                results["methods"][name].setdefault(str(T), {}).setdefault(mode, {})["peak_extra_mib"] = b / 2**20
        print(f"memory {name}: done", flush=True)
    results["summary"] = summary(results, args)
    results["load_average_before_after"] = [load_before, os.getloadavg()]
    if args.note:
        results["note"] = args.note
    results["wall_seconds"] = time.time() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.out.with_suffix(".png"))
    print(json.dumps(results["summary"], indent=1))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')} in {results['wall_seconds']:.0f} s")
    return results


def summary(results: dict, args) -> dict:
    """Ratios tiled / naive for every T; on CUDA also triton's time and TFLOP/s next to the fastest SDPA."""
    out = {}
    triton_res = results["methods"].get("triton", {})
    for T in map(str, args.seq_lens):
        for mode in args.modes:
            sdpa = {n: r[T][mode] for n, r in results["methods"].items()
                    if n.startswith("sdpa") and mode in r.get(T, {}) and "time_ms" in r[T][mode]}
            if "time_ms" in triton_res.get(T, {}).get(mode, {}) and sdpa:
                best = min(sdpa, key=lambda n: sdpa[n]["time_ms"])
                tr = triton_res[T][mode]
                out[f"triton {mode} T={T}"] = {"ms": tr["time_ms"], "tflops": tr["tflops"], "fastest_sdpa": best,
                                               "sdpa_ms": sdpa[best]["time_ms"], "sdpa_tflops": sdpa[best]["tflops"]}
    tiled = results["methods"].get("tiled", {})
    for other in ("naive", "sdpa"):  # the tiled kernel against naive attention and PyTorch's own choice
        for T in map(str, args.seq_lens + args.memory_seq_lens):
            for mode in args.modes:
                a, b = tiled.get(T, {}).get(mode, {}), results["methods"].get(other, {}).get(T, {}).get(mode, {})
                if "time_ms" in a and "time_ms" in b:
                    out[f"time tiled/{other} {mode} T={T}"] = a["time_ms"] / b["time_ms"]
                    out[f"cpu time tiled/{other} {mode} T={T}"] = a["cpu_time_ms"] / b["cpu_time_ms"]
                if "peak_extra_mib" in a and "peak_extra_mib" in b and b["peak_extra_mib"] > 0:
                    out[f"memory tiled/{other} {mode} T={T}"] = a["peak_extra_mib"] / b["peak_extra_mib"]
    return out


if __name__ == "__main__":
    main()
