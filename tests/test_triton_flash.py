"""Tests for tfcore.triton_flash, the Triton FlashAttention-2 kernels.

Without a GPU the kernels run in Triton's interpreter. TRITON_INTERPRET=1 must be
set before triton itself is imported (triton's own helpers such as tl.zeros are
jitted at import), so this module sets it before importing triton. If triton was
already imported in this process without it (another test module, or torch
probing for triton), the interpreter tests cannot run here: they are skipped and
run instead in a fresh pytest subprocess by test_interpreter_in_fresh_process.
Interpreter shapes stay tiny (about half a millisecond per program instance).
bf16 and large shapes run on CUDA only (the interpreter computes bf16 wrongly).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ON_GPU = torch.cuda.is_available()
if not ON_GPU:
    # process-wide on purpose: on a machine without CUDA every Triton kernel must be interpreted
    os.environ["TRITON_INTERPRET"] = "1"

triton = pytest.importorskip("triton", reason="triton is not installed (optional extra: pip install -e '.[gpu]')")

import triton.language as tl  # noqa: E402

import tfcore.triton_flash as triton_flash  # noqa: E402
from helpers import single_thread  # noqa: E402,F401 (autouse fixture: one torch thread for tiny tensors)

# Can the kernels run in this process? On CPU: only if triton was first imported in interpreter mode.
RUNNABLE_HERE = ON_GPU or (triton_flash.INTERPRET and type(tl.zeros).__name__ == "InterpretedFunction")
here = pytest.mark.skipif(
    not RUNNABLE_HERE,
    reason="triton was imported in this process before TRITON_INTERPRET=1 was set; "
    "test_interpreter_in_fresh_process runs these tests instead",
)

pytestmark = pytest.mark.triton
DEVICE = "cuda" if ON_GPU else "cpu"
NEG_INF = float("-inf")


def reference(q, k, v, is_causal=False):
    """Float64 attention with plain torch ops (end-aligned causal mask, GQA by repetition)."""
    q, k, v = q.double(), k.double(), v.double()
    n_rep = q.shape[1] // k.shape[1]
    k = torch.repeat_interleave(k, n_rep, dim=1)
    v = torch.repeat_interleave(v, n_rep, dim=1)
    T_q, T_k = q.shape[2], k.shape[2]
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if is_causal:
        allowed = torch.arange(T_k, device=q.device)[None, :] <= torch.arange(T_q, device=q.device)[:, None] + T_k - T_q
        s = s.masked_fill(~allowed, NEG_INF)
    return torch.softmax(s, dim=-1).nan_to_num(0.0) @ v


def make_qkv(B, h, h_kv, T_q, T_k, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = ((B, h, T_q, d), (B, h_kv, T_k, d), (B, h_kv, T_k, d))
    return [torch.randn(s, generator=g).to(DEVICE, dtype).requires_grad_() for s in shapes]


def check_against_reference(B, h, h_kv, T_q, T_k, d, causal, dtype, tol):
    q, k, v = make_qkv(B, h, h_kv, T_q, T_k, d, dtype)
    out = triton_flash.triton_attention(q, k, v, is_causal=causal)
    assert out.dtype == dtype and out.shape == (B, h, T_q, d)
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = reference(q64, k64, v64, causal)
    torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(DEVICE)
    (out.double() * g).sum().backward()
    (ref * g).sum().backward()
    for name, a, b in (("dq", q.grad, q64.grad), ("dk", k.grad, k64.grad), ("dv", v.grad, v64.grad)):
        assert a.dtype == dtype, name
        torch.testing.assert_close(a.double(), b, atol=4 * tol, rtol=4 * tol, msg=lambda m, n=name: f"{n}: {m}")


@here
def test_module_honours_the_interpreter_switch():
    assert triton_flash.HAS_TRITON
    assert triton_flash.INTERPRET == (not ON_GPU)


@pytest.mark.skipif(RUNNABLE_HERE, reason="the interpreter tests run in this process")
def test_interpreter_in_fresh_process():
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", __file__]
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert " passed" in result.stdout


# (B, h, h_kv, T_q, T_k, d, causal): interpreter tiles are 16 x 16, so 20 and 37 leave ragged tiles
SMALL = {
    "causal_ragged": (1, 2, 2, 20, 20, 16, True),
    "noncausal_ragged": (1, 1, 1, 20, 37, 16, False),
    "causal_Tq<Tk": (1, 1, 1, 17, 37, 16, True),
    "causal_Tq>Tk_empty_rows": (1, 1, 1, 37, 17, 16, True),
    "gqa_causal": (1, 4, 2, 20, 20, 16, True),
    "T=1_d32": (2, 1, 1, 1, 1, 32, True),
}


@here
@pytest.mark.parametrize("case", list(SMALL.values()), ids=list(SMALL))
def test_fp32_forward_backward(case):
    check_against_reference(*case, dtype=torch.float32, tol=1e-5)


@here
@pytest.mark.parametrize("causal", [False, True])
def test_fp16_forward_backward(causal):
    check_against_reference(1, 2, 1, 20, 20, 16, causal, dtype=torch.float16, tol=2e-3)


@here
def test_errors():
    q = torch.randn(1, 2, 8, 16, device=DEVICE)
    with pytest.raises(ValueError, match=r"k has d_head=32 but q has d_head=16"):
        triton_flash.triton_attention(q, torch.randn(1, 2, 8, 32, device=DEVICE), q)
    with pytest.raises(ValueError, match=r"h=2 query heads is not a multiple of h_kv=3 key/value heads"):
        kv = torch.randn(1, 3, 8, 16, device=DEVICE)
        triton_flash.triton_attention(q, kv, kv)
    with pytest.raises(ValueError, match=r"d_head=24; triton_attention supports d_head in"):
        x = torch.randn(1, 1, 8, 24, device=DEVICE)
        triton_flash.triton_attention(x, x, x)
    with pytest.raises(TypeError, match=r"q has dtype torch.float64; triton_attention supports"):
        x = q.double()
        triton_flash.triton_attention(x, x, x)


# --------------------------------------------------------------------------- #
# GPU only: bf16 and realistic shapes
# --------------------------------------------------------------------------- #

@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA GPU (bf16 and large shapes)")
@pytest.mark.parametrize("d", [32, 64, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T_q, T_k", [(1000, 1000), (333, 1000)])
def test_gpu_shapes(d, dtype, causal, T_q, T_k):
    tol = 2e-2 if dtype == torch.bfloat16 else 5e-3
    check_against_reference(2, 4, 2, T_q, T_k, d, causal, dtype=dtype, tol=tol)


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA GPU")
def test_gpu_matches_sdpa_bf16():
    q, k, v = make_qkv(1, 8, 8, 2048, 2048, 64, torch.bfloat16)
    ours = triton_flash.triton_attention(q, k, v, is_causal=True)
    theirs = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(ours, theirs, atol=2e-2, rtol=2e-2)
