"""Tests for tfcore.flash: the tiled (FlashAttention) kernel in PyTorch.

The reference is written here with plain torch ops in float64, independent of
tfcore.flash, so a shared bug cannot hide.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import single_thread  # noqa: F401 (autouse fixture: one torch thread for tiny tensors)

from tfcore.flash import flash_attention, flash_attention_steps, naive_attention

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is part of the test extra")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

NEG_INF = float("-inf")


# --------------------------------------------------------------------------- #
# Independent float64 reference
# --------------------------------------------------------------------------- #


def reference(q, k, v, is_causal=False, key_padding_mask=None, scale=None):
    """Float64 attention with plain torch ops. Returns (O, lse); empty rows give O = 0, lse = -inf."""
    q, k, v = q.double(), k.double(), v.double()
    n_rep = q.shape[1] // k.shape[1]
    k = torch.repeat_interleave(k, n_rep, dim=1)
    v = torch.repeat_interleave(v, n_rep, dim=1)
    T_q, T_k = q.shape[2], k.shape[2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = torch.einsum("bhid,bhjd->bhij", q, k) * scale
    allowed = torch.ones(T_q, T_k, dtype=torch.bool)
    if is_causal:
        i = torch.arange(T_q)[:, None]
        j = torch.arange(T_k)[None, :]
        allowed = j <= i + (T_k - T_q)
    allowed = allowed[None, None].expand_as(s)
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :]
    s = torch.where(allowed, s, torch.full_like(s, NEG_INF))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.where(allowed, torch.exp(s - lse.clamp_min(-1e300)[..., None]), torch.zeros_like(s))
    return torch.einsum("bhij,bhjd->bhid", p, v), lse


def make_qkv(B, h, h_kv, T_q, T_k, d, dtype=torch.float32, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, h, T_q, d, generator=g).to(dtype)
    k = torch.randn(B, h_kv, T_k, d, generator=g).to(dtype)
    v = torch.randn(B, h_kv, T_k, d, generator=g).to(dtype)
    return [x.requires_grad_(requires_grad) for x in (q, k, v)]


def padding_mask(B, T_k, seed=0, empty_batch=None):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, T_k, generator=g) > 0.3
    mask[:, 0] = True
    if empty_batch is not None:
        mask[empty_batch] = False  # every key of this batch element is padding
    return mask


# shapes: (B, h, h_kv, T_q, T_k, d, is_causal, padded, block_q, block_k)
CASES = {
    "T=1": (1, 2, 2, 1, 1, 8, True, False, 16, 16),
    "T_not_multiple": (2, 2, 2, 37, 37, 16, True, False, 8, 16),
    "block_larger_than_T": (2, 2, 2, 9, 9, 8, False, False, 128, 128),
    "T_q<T_k_causal": (1, 2, 2, 5, 23, 8, True, False, 4, 8),
    "T_q>T_k_causal_empty_rows": (1, 2, 2, 23, 5, 8, True, False, 8, 4),
    "cross_noncausal": (2, 2, 2, 7, 19, 8, False, False, 4, 8),
    "padding": (3, 2, 2, 13, 13, 8, False, True, 4, 4),
    "padding_causal": (3, 2, 2, 13, 13, 8, True, True, 8, 4),
    "gqa_h4_hkv2": (2, 4, 2, 17, 17, 8, True, False, 8, 8),
    "mqa_h4_hkv1": (2, 4, 1, 17, 21, 8, False, True, 8, 8),
    "tiles_1x1": (1, 2, 1, 6, 6, 4, True, False, 1, 1),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_forward_lse_and_grads_match_float64_reference(case):
    B, h, h_kv, T_q, T_k, d, causal, padded, bq, bk = case
    q, k, v = make_qkv(B, h, h_kv, T_q, T_k, d)
    kpm = padding_mask(B, T_k, empty_batch=B - 1) if padded else None
    out, lse = flash_attention(q, k, v, causal, kpm, block_q=bq, block_k=bk, return_lse=True)
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref, ref_lse = reference(q64, k64, v64, causal, kpm)
    assert out.dtype == torch.float32 and out.shape == (B, h, T_q, d)
    assert lse.dtype == torch.float32 and lse.shape == (B, h, T_q)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse.double(), ref_lse, atol=1e-5, rtol=1e-5)  # -inf matches -inf
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (out.double() * g).sum().backward()
    (ref * g).sum().backward()
    for name, a, b in (("dq", q.grad, q64.grad), ("dk", k.grad, k64.grad), ("dv", v.grad, v64.grad)):
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_fully_masked_rows_give_zeros_and_finite_grads():
    q, k, v = make_qkv(2, 2, 2, 6, 6, 8)
    kpm = torch.ones(2, 6, dtype=torch.bool)
    kpm[1] = False  # batch element 1 has no real key at all
    out, lse = flash_attention(q, k, v, key_padding_mask=kpm, block_q=4, block_k=4, return_lse=True)
    assert not torch.isnan(out).any()
    assert (out[1] == 0).all() and (lse[1] == NEG_INF).all()
    out.sum().backward()
    for x in (q, k, v):
        assert torch.isfinite(x.grad).all()
    assert (q.grad[1] == 0).all() and (k.grad[1] == 0).all() and (v.grad[1] == 0).all()


@pytest.mark.parametrize(
    "B, h, h_kv, T_q, T_k, d, causal, padded, bq, bk",
    [
        (1, 2, 1, 5, 7, 3, True, True, 2, 3),
        (2, 2, 2, 4, 4, 3, False, False, 3, 2),
        (1, 2, 2, 6, 3, 2, True, False, 4, 2),  # T_q > T_k: some rows see nothing
    ],
)
def test_gradcheck_float64(B, h, h_kv, T_q, T_k, d, causal, padded, bq, bk):
    q, k, v = make_qkv(B, h, h_kv, T_q, T_k, d, dtype=torch.float64)
    kpm = torch.tensor([[True, True, False, True, False, True, True]])[:, :T_k] if padded else None

    def f(q, k, v):
        out, lse = flash_attention(q, k, v, causal, kpm, block_q=bq, block_k=bk, return_lse=True)
        return out, lse.masked_fill(lse == NEG_INF, 0.0)  # finite differences of -inf are NaN

    assert torch.autograd.gradcheck(f, (q, k, v))


def test_float64_inputs_stay_float64():
    q, k, v = make_qkv(1, 2, 2, 5, 5, 4, dtype=torch.float64)
    out, lse = flash_attention(q, k, v, True, return_lse=True)
    assert out.dtype == torch.float64 and lse.dtype == torch.float64
    torch.testing.assert_close(out, reference(q, k, v, True)[0], atol=1e-12, rtol=1e-12)


def test_matches_torch_sdpa():
    q, k, v = make_qkv(2, 4, 2, 33, 33, 16, requires_grad=False)
    kw = {"enable_gqa": True}
    for causal in (False, True):
        ours = flash_attention(q, k, v, causal, block_q=16, block_k=8)
        theirs = F.scaled_dot_product_attention(q, k, v, is_causal=causal, **kw)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    # T_q != T_k: SDPA's is_causal is top-left aligned, so pass our (end-aligned) mask explicitly
    q2 = q[:, :, :9]
    allowed = torch.arange(33)[None, :] <= torch.arange(9)[:, None] + (33 - 9)
    theirs = F.scaled_dot_product_attention(q2, k, v, attn_mask=allowed, **kw)
    torch.testing.assert_close(flash_attention(q2, k, v, True, block_q=4, block_k=8), theirs, atol=1e-5, rtol=1e-5)
    # a custom scale and padding
    kpm = padding_mask(2, 33)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=kpm[:, None, None, :], scale=0.3, **kw)
    torch.testing.assert_close(flash_attention(q, k, v, key_padding_mask=kpm, scale=0.3), theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_half_precision_inputs(dtype, tol):
    q32, k32, v32 = make_qkv(2, 4, 2, 40, 40, 16, requires_grad=False)
    q, k, v = (x.to(dtype).requires_grad_() for x in (q32, k32, v32))
    out, lse = flash_attention(q, k, v, True, block_q=16, block_k=16, return_lse=True)
    assert out.dtype == dtype and lse.dtype == torch.float32
    # reference on the same rounded inputs, in float64: the error left is the kernel's own
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref, _ = reference(q64, k64, v64, True)
    torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (out.double() * g).sum().backward()
    (ref * g).sum().backward()
    for a, b in ((q.grad, q64.grad), (k.grad, k64.grad), (v.grad, v64.grad)):
        assert a.dtype == dtype
        torch.testing.assert_close(a.double(), b, atol=5 * tol, rtol=5 * tol)


def test_noncontiguous_inputs():
    # (B, T, h, d) tensors viewed as (B, h, T, d), as a model produces them
    x = torch.randn(2, 11, 4, 8)
    q = x.transpose(1, 2)
    k = torch.randn(2, 11, 2, 8).transpose(1, 2)
    v = torch.randn(2, 11, 2, 8).transpose(1, 2)
    torch.testing.assert_close(flash_attention(q, k, v, True, block_q=4, block_k=4).double(),
                               reference(q, k, v, True)[0], atol=1e-5, rtol=1e-5)


def test_never_materialises_a_T_by_T_matrix(monkeypatch):
    """Every matmul result is at most one tile per (batch, head): no (T, T) scores anywhere."""
    B, h, T, d, bq, bk = 1, 2, 64, 8, 16, 8
    largest = []
    real_bmm = torch.bmm

    def spy(a, b, *args, **kwargs):
        out = real_bmm(a, b, *args, **kwargs)
        largest.append(out.numel())
        return out

    monkeypatch.setattr(torch, "bmm", spy)
    q, k, v = make_qkv(B, h, h, T, T, d)
    flash_attention(q, k, v, True, block_q=bq, block_k=bk).sum().backward()
    assert largest and max(largest) <= B * h * bq * max(bk, d)
    assert max(largest) < T * T


# --------------------------------------------------------------------------- #
# naive_attention (the benchmark's baseline) and the step-through helper
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("causal, padded, T_q", [(False, False, 9), (True, False, 9), (True, True, 14), (False, True, 5)])
def test_naive_attention_matches_reference(causal, padded, T_q):
    q, k, v = make_qkv(2, 4, 2, T_q, 9, 8, dtype=torch.float64, requires_grad=False)
    kpm = padding_mask(2, 9, empty_batch=1) if padded else None
    torch.testing.assert_close(naive_attention(q, k, v, causal, kpm), reference(q, k, v, causal, kpm)[0])


@pytest.mark.parametrize("causal", [False, True])
def test_steps_end_at_naive_attention(causal):
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3))
    k, v = torch.cat([k, k[:4] * 2]), torch.cat([v, v[:4]])  # T_k = 10, T_q = 6
    steps = flash_attention_steps(q, k, v, block_k=3, is_causal=causal)
    assert [s["keys"] for s in steps] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    expected = reference(q[None, None], k[None, None], v[None, None], causal)[0][0, 0]
    torch.testing.assert_close(steps[-1]["O"], expected)
    m_prev = torch.full((6,), NEG_INF, dtype=torch.float64)
    for s in steps:
        assert (s["m"] >= m_prev).all()  # the running max never decreases
        m_safe = torch.where(s["m"] == NEG_INF, torch.zeros_like(s["m"]), s["m"])
        torch.testing.assert_close(s["rescale"], torch.exp(m_prev - m_safe))
        torch.testing.assert_close(s["O"] * s["l"][:, None], s["O_acc"])
        m_prev = s["m"]


# --------------------------------------------------------------------------- #
# Random shapes
# --------------------------------------------------------------------------- #


@settings(max_examples=20, deadline=None)
@given(
    B=st.integers(1, 2),
    h_kv=st.integers(1, 2),
    n_rep=st.integers(1, 3),
    T_q=st.integers(1, 24),
    T_k=st.integers(1, 24),
    d=st.sampled_from([1, 4, 8]),
    causal=st.booleans(),
    padded=st.booleans(),
    bq=st.integers(1, 32),
    bk=st.integers(1, 32),
    seed=st.integers(0, 2**16),
)
def test_random_shapes_match_reference(B, h_kv, n_rep, T_q, T_k, d, causal, padded, bq, bk, seed):
    q, k, v = make_qkv(B, h_kv * n_rep, h_kv, T_q, T_k, d, seed=seed)
    kpm = padding_mask(B, T_k, seed=seed) if padded else None
    out, lse = flash_attention(q, k, v, causal, kpm, block_q=bq, block_k=bk, return_lse=True)
    ref, ref_lse = reference(q.detach(), k.detach(), v.detach(), causal, kpm)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse.double(), ref_lse, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


# --------------------------------------------------------------------------- #
# Errors name the argument and the axis
# --------------------------------------------------------------------------- #


def _qkv(B=2, h=4, h_kv=2, T=8, d=16):
    return make_qkv(B, h, h_kv, T, T, d, requires_grad=False)


def test_error_messages():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"k has d_head=8 but q has d_head=16"):
        flash_attention(q, k[..., :8], v)
    with pytest.raises(ValueError, match=r"v has d_head=8 but q has d_head=16"):
        flash_attention(q, k, v[..., :8])
    with pytest.raises(ValueError, match=r"k has B=1 but q has B=2"):
        flash_attention(q, k[:1], v[:1])
    with pytest.raises(ValueError, match=r"v has T_k=5 but k has T_k=8"):
        flash_attention(q, k, v[:, :, :5])
    with pytest.raises(ValueError, match=r"v has h_kv=1 but k has h_kv=2"):
        flash_attention(q, k, v[:, :1])
    with pytest.raises(ValueError, match=r"h=4 query heads is not a multiple of h_kv=3 key/value heads"):
        q3, k3, v3 = make_qkv(2, 4, 3, 8, 8, 16, requires_grad=False)
        flash_attention(q3, k3, v3)
    with pytest.raises(TypeError, match=r"k has dtype torch.float64 but q has dtype torch.float32"):
        flash_attention(q, k.double(), v)
    with pytest.raises(ValueError, match=r"q must have shape \(B, h, T, d_head\) \(4 axes\), got \(8, 16\)"):
        flash_attention(q[0, 0], k, v)
    with pytest.raises(ValueError, match=r"k must have shape \(B, h, T, d_head\)"):
        flash_attention(q, k[0], v)
    with pytest.raises(TypeError, match=r"q must be a floating-point tensor"):
        flash_attention(q.long(), k.long(), v.long())
    with pytest.raises(TypeError, match=r"q must be a torch.Tensor"):
        flash_attention(q.tolist(), k, v)
    for bad in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match=r"block_q must be a positive integer"):
            flash_attention(q, k, v, block_q=bad)
        with pytest.raises(ValueError, match=r"block_k must be a positive integer"):
            flash_attention(q, k, v, block_k=bad)
    with pytest.raises(ValueError, match=r"scale must be a positive number"):
        flash_attention(q, k, v, scale=0.0)
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(B, T_k\) = \(2, 8\), got \(2, 7\)"):
        flash_attention(q, k, v, key_padding_mask=torch.ones(2, 7, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"key_padding_mask must be bool"):
        flash_attention(q, k, v, key_padding_mask=torch.ones(2, 8))
    with pytest.raises(ValueError, match=r"k has T_k=0"):
        flash_attention(q, k[:, :, :0], v[:, :, :0])
    with pytest.raises(ValueError, match=r"k has d_head=8 but q has d_head=4"):
        flash_attention_steps(torch.randn(3, 4), torch.randn(5, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match=r"q must have shape \(T, d_head\)"):
        flash_attention_steps(q, k, v)
    with pytest.raises(ValueError, match=r"block_k must be a positive integer"):
        flash_attention_steps(torch.randn(3, 4), torch.randn(5, 4), torch.randn(5, 4), block_k=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for a cross-device mismatch")
def test_device_mismatch_error():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"k is on cuda:0 but q is on cpu"):
        flash_attention(q, k.cuda(), v)
    with pytest.raises(ValueError, match=r"key_padding_mask is on cpu but q is on cuda:0"):
        flash_attention(q.cuda(), k.cuda(), v.cuda(), key_padding_mask=torch.ones(2, 8, dtype=torch.bool))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_reference(dtype):
    q, k, v = (x.detach().cuda().to(dtype).requires_grad_() for x in make_qkv(2, 4, 2, 300, 300, 64))
    kpm = padding_mask(2, 300).cuda()
    out = flash_attention(q, k, v, True, kpm)
    ref, _ = reference(q.detach().cpu(), k.detach().cpu(), v.detach().cpu(), True, kpm.cpu())
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.double().cpu(), ref, atol=tol, rtol=tol)
    out.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


# --------------------------------------------------------------------------- #
# The optional Triton module must import without triton
# --------------------------------------------------------------------------- #


def test_triton_module_imports_without_triton(monkeypatch):
    # load a fresh copy of the module while `import triton` fails, as if it were not installed
    monkeypatch.setitem(sys.modules, "triton", None)
    path = Path(__file__).resolve().parents[1] / "tfcore" / "triton_flash.py"
    spec = importlib.util.spec_from_file_location("_triton_flash_without_triton", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not module.HAS_TRITON
    q = torch.randn(1, 1, 4, 16)
    with pytest.raises(ImportError, match=r"triton is not installed: pip install -e '\.\[gpu\]'"):
        module.triton_attention(q, q, q)
