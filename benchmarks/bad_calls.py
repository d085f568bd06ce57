"""How tfcore answers wrong calls: a few hundred of them across every public module (issue 17).

Each call is classified by what comes back:

    clear   an exception whose message names the argument (as a whole word)
    raw     an exception that does not name it (PyTorch's own, ZeroDivisionError, ...)
    silent  no exception: a result for a call that is wrong

    PYTHONPATH=. python benchmarks/bad_calls.py        # counts per module
    PYTHONPATH=. python benchmarks/bad_calls.py -v     # and every call that is not "clear"
    PYTHONPATH=. python benchmarks/bad_calls.py -a     # and every call with its message

It calls only functions that existed before issue 17, so it runs on older trees too (that is
how the "before" counts were taken). tests/test_bad_inputs.py is the table CI keeps; this script
is the survey that found the kinds of mistake it covers.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter, defaultdict

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402
from torch import nn  # noqa: E402

from tfcore import attention, blocks, complexity, data, diagnostics, flash, heads, losses, masks, mlp, model, norms, positions  # noqa: E402
from tfcore.viz import plots  # noqa: E402

CASES: list[tuple[str, str, object, tuple[str, ...]]] = []


def add(module: str, label: str, fn, *names: str) -> None:
    CASES.append((module, label, fn, names))


def r(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(dtype)


def ones(*shape, dtype=torch.bool):
    return torch.ones(*shape, dtype=dtype)


B, H, T, D = 2, 4, 5, 8
q4, k4, v4 = r(B, H, T, D), r(B, H, T, D), r(B, H, T, D)
BAD_INTS = (0, -1, 2.5)

# ----------------------------------------------------------------------------------- attention
A = attention
add("attention", "softmax int", lambda: A.softmax(torch.ones(3, dtype=torch.long)), "x")
add("attention", "softmax dim out of range", lambda: A.softmax(r(3, 4), dim=5), "dim")
add("attention", "sdpa q 1D", lambda: A.scaled_dot_product_attention(r(4), r(3, 4), r(3, 4)), "q")
add("attention", "sdpa q int", lambda: A.scaled_dot_product_attention(q4.long(), k4, v4), "q")
add("attention", "sdpa d_head mismatch", lambda: A.scaled_dot_product_attention(q4, r(B, H, T, 4), v4), "d_head")
add("attention", "sdpa T_k mismatch", lambda: A.scaled_dot_product_attention(q4, k4, r(B, H, 3, D)), "T_k")
add("attention", "sdpa batch mismatch 2 vs 3", lambda: A.scaled_dot_product_attention(q4, r(3, H, T, D), r(3, H, T, D)), "B", "batch")
add("attention", "sdpa heads mismatch 4 vs 3", lambda: A.scaled_dot_product_attention(q4, r(B, 3, T, D), r(B, 3, T, D)), "h", "heads")
add("attention", "sdpa k,v batch 2 vs 3", lambda: A.scaled_dot_product_attention(q4, k4, r(3, H, T, D)), "B", "batch")
add("attention", "sdpa T_k=0", lambda: A.scaled_dot_product_attention(q4, r(B, H, 0, D), r(B, H, 0, D)), "T_k")
add("attention", "sdpa d_head=0", lambda: A.scaled_dot_product_attention(r(B, H, T, 0), r(B, H, T, 0), v4), "d_head")
add("attention", "sdpa int mask", lambda: A.scaled_dot_product_attention(q4, k4, v4, mask=ones(T, T, dtype=torch.long)), "mask")
add("attention", "sdpa uint8 mask", lambda: A.scaled_dot_product_attention(q4, k4, v4, mask=ones(T, T, dtype=torch.uint8)), "mask")
add("attention", "sdpa (B,T_k) mask with B != T_q", lambda: A.scaled_dot_product_attention(q4, k4, v4, mask=ones(B, T)), "mask")
add("attention", "sdpa (B,1,T_k) mask (head axis)", lambda: A.scaled_dot_product_attention(q4, k4, v4, mask=ones(B, 1, T)), "mask")
add("attention", "sdpa (h,T_q,T_k)->3D on 4D scores", lambda: A.scaled_dot_product_attention(q4, k4, v4, mask=ones(1, T, T)), "mask")
add("attention", "sdpa (T_k,) 1D mask", lambda: A.scaled_dot_product_attention(q4, k4, v4, mask=ones(T)), "mask")
add("attention", "sdpa 5D mask", lambda: A.scaled_dot_product_attention(q4, k4, v4, mask=ones(1, B, H, T, T)), "mask")
add("attention", "sdpa mask wrong T_k", lambda: A.scaled_dot_product_attention(q4, k4, v4, mask=ones(T, T + 1)), "mask")
add("attention", "sdpa mask not a tensor", lambda: A.scaled_dot_product_attention(q4, k4, v4, mask=[[True] * T] * T), "mask")
add("attention", "sdpa mask on meta", lambda: A.scaled_dot_product_attention(q4, k4, v4, mask=ones(T, T).to("meta")), "mask")
for s in (0.0, -1.0, float("nan"), float("inf")):
    add("attention", f"sdpa scale={s}", lambda s=s: A.scaled_dot_product_attention(q4, k4, v4, scale=s), "scale")
add("attention", "sdpa scale str", lambda: A.scaled_dot_product_attention(q4, k4, v4, scale="1"), "scale")
add("attention", "sdpa causal T_q > T_k", lambda: A.scaled_dot_product_attention(r(1, 1, 6, D), r(1, 1, 3, D), r(1, 1, 3, D), is_causal=True), "t_k", "T_k")
add("attention", "apply_mask int", lambda: A.apply_mask(r(T, T), ones(T, T, dtype=torch.int32)), "mask")
add("attention", "apply_mask (B,T) on (B,h,T,T)", lambda: A.apply_mask(r(B, H, T, T), ones(B, T)), "mask")

# ----------------------------------------------------------------------------------- masks
M = masks
for v in BAD_INTS:
    add("masks", f"causal_mask t_q={v}", lambda v=v: M.causal_mask(v), "t_q")
    add("masks", f"sliding_window t={v}", lambda v=v: M.sliding_window_mask(v, 2), "t")
    add("masks", f"sliding_window window={v}", lambda v=v: M.sliding_window_mask(5, v), "window")
    add("masks", f"prefix_lm t={v}", lambda v=v: M.prefix_lm_mask(v, 0), "t")
add("masks", "causal_mask t_k < t_q", lambda: M.causal_mask(5, 3), "t_k")
add("masks", "prefix_lm prefix > t", lambda: M.prefix_lm_mask(4, 5), "prefix_len")
add("masks", "prefix_lm prefix -1", lambda: M.prefix_lm_mask(4, -1), "prefix_len")
add("masks", "prefix_lm prefix 1.5", lambda: M.prefix_lm_mask(4, 1.5), "prefix_len")
add("masks", "padding_mask lengths float", lambda: M.padding_mask([1.0, 2.0], 4), "lengths")
add("masks", "padding_mask lengths 2D", lambda: M.padding_mask([[1, 2]], 4), "lengths")
add("masks", "padding_mask lengths > t", lambda: M.padding_mask([5], 4), "lengths")
add("masks", "padding_mask lengths < 0", lambda: M.padding_mask([-1], 4), "lengths")
add("masks", "padding_mask empty lengths", lambda: M.padding_mask(torch.zeros(0, dtype=torch.long)), "lengths")
add("masks", "padding_mask t=2.5", lambda: M.padding_mask([1], 2.5), "t")
add("masks", "padding_mask bool lengths", lambda: M.padding_mask(torch.tensor([True, False]), 3), "lengths")
add("masks", "cross_attention_mask lengths > t", lambda: M.cross_attention_mask([7], 4), "lengths", "source_lengths")
add("masks", "block_diagonal 3D ids", lambda: M.block_diagonal_mask(torch.zeros(1, 2, 3, dtype=torch.long)), "segment_ids")
add("masks", "block_diagonal empty", lambda: M.block_diagonal_mask(torch.zeros(0, dtype=torch.long)), "segment_ids")
add("masks", "combine int mask", lambda: M.combine_masks(ones(3, 3), ones(3, 3, dtype=torch.long)), "mask")
add("masks", "combine incompatible", lambda: M.combine_masks(ones(3, 3), ones(4, 4)), "mask")
add("masks", "combine (B,1,T) with (B,1,1,T)", lambda: M.combine_masks(ones(B, 1, T), ones(B, 1, 1, T)), "mask")
add("masks", "combine not a tensor", lambda: M.combine_masks(ones(3, 3), [[True]]), "mask")
add("masks", "to_additive int", lambda: M.to_additive(ones(3, 3, dtype=torch.long)), "mask")
add("masks", "to_additive dtype long", lambda: M.to_additive(ones(3, 3), dtype=torch.long), "dtype")
add("masks", "to_additive fill +inf", lambda: M.to_additive(ones(3, 3), fill=float("inf")), "fill")
add("masks", "to_additive fill nan", lambda: M.to_additive(ones(3, 3), fill=float("nan")), "fill")

# ----------------------------------------------------------------------------------- heads
Hd = heads
for v in BAD_INTS:
    add("heads", f"split_heads n_heads={v}", lambda v=v: Hd.split_heads(r(B, T, 8), v), "n_heads")
    add("heads", f"repeat_kv n_rep={v}", lambda v=v: Hd.repeat_kv(r(B, 2, T, D), v), "n_rep")
    add("heads", f"MHA n_heads={v}", lambda v=v: Hd.MultiHeadAttention(16, v), "n_heads")
    add("heads", f"MHA d_model={v}", lambda v=v: Hd.MultiHeadAttention(v, 4), "d_model")
    add("heads", f"MHA n_kv_heads={v}", lambda v=v: Hd.MultiHeadAttention(16, 4, v), "n_kv_heads")
    add("heads", f"ModelCache.empty n_layers={v}", lambda v=v: Hd.ModelCache.empty(v), "n_layers")
add("heads", "split_heads not dividing", lambda: Hd.split_heads(r(B, T, 10), 4), "n_heads")
add("heads", "split_heads 2D", lambda: Hd.split_heads(r(T, 8), 2), "x")
add("heads", "merge_heads 3D", lambda: Hd.merge_heads(r(B, T, 8)), "x")
add("heads", "MHA n_kv_heads > n_heads", lambda: Hd.MultiHeadAttention(16, 4, 8), "n_kv_heads")
add("heads", "MHA n_kv not dividing", lambda: Hd.MultiHeadAttention(24, 6, 4), "n_kv_heads")
add("heads", "MHA dropout 1.5", lambda: Hd.MultiHeadAttention(16, 4, dropout=1.5), "dropout")
add("heads", "MHA dropout -0.1", lambda: Hd.MultiHeadAttention(16, 4, dropout=-0.1), "dropout")
for s in (0.0, -1.0, float("nan")):
    add("heads", f"MHA rope_base={s}", lambda s=s: Hd.MultiHeadAttention(16, 4, rope_base=s)(r(1, 3, 16)), "rope_base")
    add("heads", f"MHA scale={s}", lambda s=s: Hd.MultiHeadAttention(16, 4, scale=s)(r(1, 3, 16)), "scale")
add("heads", "MHA rope_layout bad", lambda: Hd.MultiHeadAttention(16, 4, rope_base=1e4, rope_layout="rot"), "rope_layout")
add("heads", "MHA rope odd d_head", lambda: Hd.MultiHeadAttention(12, 4, rope_base=1e4), "d_head")
mha = Hd.MultiHeadAttention(16, 4)
mha_gqa = Hd.MultiHeadAttention(16, 4, 2)
add("heads", "MHA x int", lambda: mha(torch.ones(1, 3, 16, dtype=torch.long)), "x")
add("heads", "MHA x 2D", lambda: mha(r(3, 16)), "x")
add("heads", "MHA x wrong width", lambda: mha(r(1, 3, 12)), "d_model")
add("heads", "MHA x float64 vs float32 weights", lambda: mha(r(1, 3, 16, dtype=torch.float64)), "x", "dtype")
add("heads", "MHA source wrong width", lambda: mha(r(2, 3, 16), source=r(2, 4, 12)), "source")
add("heads", "MHA source batch 3 vs 2", lambda: mha(r(2, 3, 16), source=r(3, 4, 16)), "source")
add("heads", "MHA source batch 1 vs 2", lambda: mha(r(2, 3, 16), source=r(1, 4, 16)), "source")
add("heads", "MHA source 2D", lambda: mha(r(2, 3, 16), source=r(4, 16)), "source")
add("heads", "MHA source int", lambda: mha(r(2, 3, 16), source=torch.ones(2, 4, 16, dtype=torch.long)), "source")
add("heads", "MHA mask (B,T) B==T", lambda: mha(r(3, 3, 16), mask=ones(3, 3).tril()) if False else mha(r(2, 3, 16), mask=ones(2, 3)), "mask")
add("heads", "MHA mask (B,1,T)", lambda: mha(r(2, 3, 16), mask=ones(2, 1, 3)), "mask")
add("heads", "MHA mask int", lambda: mha(r(2, 3, 16), mask=ones(3, 3, dtype=torch.long)), "mask")
add("heads", "MHA mask T_k wrong", lambda: mha(r(2, 3, 16), mask=ones(3, 4)), "mask")
add("heads", "MHA cross mask T_k wrong", lambda: mha(r(2, 3, 16), source=r(2, 4, 16), mask=ones(2, 1, 1, 3)), "mask")
add("heads", "MHA cache wrong batch", lambda: (lambda c: (mha(r(2, 1, 16), cache=c), mha(r(3, 1, 16), cache=c)))(Hd.KVCache()), "k", "cache")
add("heads", "MHA cache not a KVCache", lambda: mha(r(2, 1, 16), cache="x"), "cache")
add("heads", "MHA backend bad", lambda: (setattr(mha_b := Hd.MultiHeadAttention(16, 4), "backend", "fast"), mha_b(r(1, 3, 16))), "backend")
add("heads", "MHA head_mask wrong shape", lambda: (setattr(mha_h := Hd.MultiHeadAttention(16, 4), "head_mask", torch.ones(3)), mha_h(r(1, 3, 16))), "head_mask")
add("heads", "KVCache.append k 3D", lambda: Hd.KVCache().append(r(2, 3, 4), r(2, 3, 4)), "k")
add("heads", "KVCache.append v shape", lambda: Hd.KVCache().append(r(2, 2, 3, 4), r(2, 2, 3, 5)), "v")
add("heads", "KVCache.append v dtype", lambda: Hd.KVCache().append(r(2, 2, 3, 4), r(2, 2, 3, 4, dtype=torch.float64)), "v")
add("heads", "KVCache max_length 0", lambda: Hd.KVCache(max_length=0).append(r(1, 1, 1, 4), r(1, 1, 1, 4)), "max_length")
at = Hd.attend
add("heads", "attend backend bad", lambda: at(q4, k4, v4, None, False, None, "fast"), "backend")
add("heads", "attend weights sdpa", lambda: at(q4, k4, v4, None, False, None, "sdpa", True), "backend", "return_weights")
add("heads", "attend q 3D", lambda: at(r(H, T, D), r(H, T, D), r(H, T, D), None, False, None), "q")
add("heads", "attend q/k batch 2 vs 3", lambda: at(q4, r(3, H, T, D), r(3, H, T, D), None, False, None), "B")
add("heads", "attend q/k batch 2 vs 1", lambda: at(q4, r(1, H, T, D), r(1, H, T, D), None, False, None), "B")
add("heads", "attend q heads < kv heads", lambda: at(r(B, 2, T, D), k4, v4, None, False, None), "h", "h_kv")
add("heads", "attend q heads not multiple", lambda: at(r(B, 6, T, D), k4, v4, None, False, None), "h", "h_kv")
add("heads", "attend k,v heads differ", lambda: at(q4, r(B, 2, T, D), r(B, 4, T, D), None, False, None), "h_kv")
add("heads", "attend T_k = 0", lambda: at(q4, r(B, H, 0, D), r(B, H, 0, D), None, False, None), "T_k")
add("heads", "attend T_k=0 sdpa", lambda: at(q4, r(B, H, 0, D), r(B, H, 0, D), None, False, None, "sdpa"), "T_k")
add("heads", "attend d_head mismatch sdpa", lambda: at(q4, r(B, H, T, 4), r(B, H, T, 4), None, False, None, "sdpa"), "d_head")
add("heads", "attend dtype mismatch sdpa", lambda: at(q4, k4.double(), v4.double(), None, False, None, "sdpa"), "k", "dtype")
for be in ("naive", "sdpa", "tiled"):
    add("heads", f"attend int mask {be}", lambda be=be: at(q4, k4, v4, ones(T, T, dtype=torch.long), False, None, be), "mask")
    add("heads", f"attend (B,1,T_k) mask {be}", lambda be=be: at(q4, k4, v4, ones(B, 1, T), False, None, be), "mask")
    add("heads", f"attend (T_k,) mask {be}", lambda be=be: at(q4, k4, v4, ones(T), False, None, be), "mask")
    add("heads", f"attend causal T_q>T_k {be}", lambda be=be: at(r(B, H, 6, D), k4, v4, None, True, None, be), "T_k", "t_k")
    add("heads", f"attend scale nan {be}", lambda be=be: at(q4, k4, v4, None, False, float("nan"), be), "scale")
    add("heads", f"attend scale -1 {be}", lambda be=be: at(q4, k4, v4, None, False, -1.0, be), "scale")
add("heads", "attend tiled (T,T) mask", lambda: at(q4, k4, v4, ones(T, T), False, None, "tiled"), "mask")
add("heads", "attend tiled float padding", lambda: at(q4, k4, v4, torch.zeros(B, 1, 1, T), False, None, "tiled"), "mask")
add("heads", "attend triton padding mask", lambda: at(q4, k4, v4, ones(B, 1, 1, T), False, None, "triton"), "mask")
add("heads", "attend triton (T,T) mask", lambda: at(q4, k4, v4, ones(T, T), False, None, "triton"), "mask")

# ----------------------------------------------------------------------------------- mlp
for v in BAD_INTS:
    add("mlp", f"MLP d_ff={v}", lambda v=v: mlp.MLP(16, v), "d_ff")
    add("mlp", f"MLP d_model={v}", lambda v=v: mlp.MLP(v, 16), "d_model")
    add("mlp", f"SwiGLU d_ff={v}", lambda v=v: mlp.SwiGLU(16, v), "d_ff")
    add("mlp", f"make_mlp d_ff={v}", lambda v=v: mlp.make_mlp("gelu", 16, v), "d_ff")
add("mlp", "gelu approximate bad", lambda: mlp.gelu(r(3), "fast"), "approximate")
add("mlp", "swiglu d_model mismatch", lambda: mlp.swiglu(r(2, 8), r(16, 6), r(8, 16), r(16, 6)), "d_model")
add("mlp", "swiglu w3 shape", lambda: mlp.swiglu(r(2, 8), r(16, 8), r(8, 16), r(12, 8)), "w3")
add("mlp", "swiglu w2 d_ff", lambda: mlp.swiglu(r(2, 8), r(16, 8), r(8, 12), r(16, 8)), "w2")
add("mlp", "swiglu w2 out", lambda: mlp.swiglu(r(2, 8), r(16, 8), r(6, 16), r(16, 8)), "w2")
add("mlp", "swiglu w1 1D", lambda: mlp.swiglu(r(2, 8), r(8), r(8, 16), r(16, 8)), "w1")
add("mlp", "MLP activation bad", lambda: mlp.MLP(16, 32, "tanh"), "activation")
add("mlp", "make_mlp kind bad", lambda: mlp.make_mlp("tanh", 16, 32), "kind")
add("mlp", "MLP dropout 2", lambda: mlp.MLP(16, 32, dropout=2.0), "dropout")
add("mlp", "MLP forward wrong width", lambda: mlp.MLP(16, 32)(r(2, 12)), "x", "d_model")
add("mlp", "SwiGLU forward wrong width", lambda: mlp.SwiGLU(16, 32)(r(2, 12)), "x", "d_model")
add("mlp", "MLP forward int", lambda: mlp.MLP(16, 32)(torch.ones(2, 16, dtype=torch.long)), "x")

# ----------------------------------------------------------------------------------- norms
for e in (-1e-5, float("nan")):
    add("norms", f"layer_norm eps={e}", lambda e=e: norms.layer_norm(r(2, 8), None, None, eps=e), "eps")
    add("norms", f"rms_norm eps={e}", lambda e=e: norms.rms_norm(r(2, 8), None, eps=e), "eps")
    add("norms", f"LayerNorm eps={e}", lambda e=e: norms.LayerNorm(8, eps=e), "eps")
    add("norms", f"RMSNorm eps={e}", lambda e=e: norms.RMSNorm(8, eps=e), "eps")
for v in BAD_INTS:
    add("norms", f"LayerNorm d_model={v}", lambda v=v: norms.LayerNorm(v), "d_model")
    add("norms", f"RMSNorm d_model={v}", lambda v=v: norms.RMSNorm(v), "d_model")
add("norms", "layer_norm weight (2,d)", lambda: norms.layer_norm(r(3, 8), r(2, 8), None), "weight")
add("norms", "layer_norm weight (1,d)", lambda: norms.layer_norm(r(3, 8), r(1, 8), None), "weight")
add("norms", "layer_norm bias (3,d)", lambda: norms.layer_norm(r(3, 8), None, r(3, 8)), "bias")
add("norms", "layer_norm weight wrong d", lambda: norms.layer_norm(r(3, 8), r(6), None), "weight")
add("norms", "layer_norm weight scalar", lambda: norms.layer_norm(r(3, 8), torch.tensor(2.0), None), "weight")
add("norms", "rms_norm weight (2,d)", lambda: norms.rms_norm(r(3, 8), r(2, 8)), "weight")
add("norms", "rms_norm weight not tensor", lambda: norms.rms_norm(r(3, 8), [1.0] * 8), "weight")
add("norms", "layer_norm int x", lambda: norms.layer_norm(torch.ones(3, 8, dtype=torch.long), None, None), "x")
add("norms", "LayerNorm forward wrong width", lambda: norms.LayerNorm(8)(r(2, 6)), "d_model")
add("norms", "make_norm kind bad", lambda: norms.make_norm("batch", 8), "norm", "kind")
add("norms", "make_norm d_model 0", lambda: norms.make_norm("layer", 0), "d_model")

# ----------------------------------------------------------------------------------- positions
P = positions
for v in BAD_INTS:
    add("positions", f"sinusoidal t={v}", lambda v=v: P.sinusoidal(v, 8), "t")
    add("positions", f"LearnedPositions max_len={v}", lambda v=v: P.LearnedPositions(v, 8), "max_len")
    add("positions", f"alibi_slopes n_heads={v}", lambda v=v: P.alibi_slopes(v), "n_heads")
    add("positions", f"alibi_bias t_q={v}", lambda v=v: P.alibi_bias(4, v), "t_q")
    add("positions", f"T5RelativeBias forward t_q={v}", lambda v=v: P.T5RelativeBias(4)(v), "t_q")
for base in (0.0, -10.0, float("nan"), float("inf")):
    add("positions", f"sinusoidal base={base}", lambda b=base: P.sinusoidal(4, 8, base=b), "base")
    add("positions", f"rope base={base}", lambda b=base: P.rope(r(3, 8), torch.arange(3), base=b), "base")
    add("positions", f"rope_angles base={base}", lambda b=base: P.rope_angles(torch.arange(3), 8, base=b), "base")
add("positions", "sinusoidal odd d", lambda: P.sinusoidal(4, 7), "d")
add("positions", "LearnedPositions beyond", lambda: P.LearnedPositions(4, 8)(torch.arange(6)), "position", "positions", "max_len")
add("positions", "LearnedPositions negative", lambda: P.LearnedPositions(4, 8)(torch.tensor([-1, 0])), "positions")
add("positions", "LearnedPositions float", lambda: P.LearnedPositions(4, 8)(torch.tensor([0.0, 1.0])), "positions")
add("positions", "LearnedPositions empty", lambda: P.LearnedPositions(4, 8)(torch.zeros(0, dtype=torch.long)), "positions")
add("positions", "rope odd d", lambda: P.rope(r(3, 7), torch.arange(3)), "d", "d_head")
add("positions", "rope positions wrong T", lambda: P.rope(r(3, 8), torch.arange(4)), "positions")
add("positions", "rope positions 2D", lambda: P.rope(r(3, 8), torch.arange(3)[None]), "positions")
add("positions", "rope layout bad", lambda: P.rope(r(3, 8), torch.arange(3), layout="rot"), "layout")
add("positions", "rope x int", lambda: P.rope(torch.ones(3, 8, dtype=torch.long), torch.arange(3)), "x")
add("positions", "rope_angles odd d", lambda: P.rope_angles(torch.arange(3), 7), "d", "d_head")
add("positions", "rope_angles d 0", lambda: P.rope_angles(torch.arange(3), 0), "d")
add("positions", "alibi_bias t_k < t_q", lambda: P.alibi_bias(4, 5, 3), "t_k")
add("positions", "t5_bucket float", lambda: P.t5_bucket(torch.tensor([0.5, -1.0])), "relative")
add("positions", "t5_bucket n_buckets 1", lambda: P.t5_bucket(torch.arange(-3, 3), n_buckets=1), "n_buckets")
add("positions", "t5_bucket n_buckets 0", lambda: P.t5_bucket(torch.arange(-3, 3), n_buckets=0), "n_buckets")
add("positions", "t5_bucket max_distance small", lambda: P.t5_bucket(torch.arange(-30, 30), n_buckets=32, max_distance=4), "max_distance")
add("positions", "T5RelativeBias n_buckets 1", lambda: P.T5RelativeBias(4, n_buckets=1)(3), "n_buckets")
add("positions", "T5RelativeBias n_heads 0", lambda: P.T5RelativeBias(0), "n_heads")
add("positions", "T5RelativeBias t_k < t_q", lambda: P.T5RelativeBias(4)(5, 3), "t_k")

# ----------------------------------------------------------------------------------- blocks
Bl = blocks
add("blocks", "Block d_ff 0", lambda: Bl.Block(16, 4, 0), "d_ff")
add("blocks", "Block d_ff -1", lambda: Bl.Block(16, 4, -1), "d_ff")
add("blocks", "Block n_heads 0", lambda: Bl.Block(16, 0, 32), "n_heads")
add("blocks", "Block placement bad", lambda: Bl.Block(16, 4, 32, placement="middle"), "placement")
add("blocks", "Block norm bad", lambda: Bl.Block(16, 4, 32, norm="batch"), "norm")
add("blocks", "Block mlp bad", lambda: Bl.Block(16, 4, 32, mlp="tanh"), "mlp")
add("blocks", "Block parallel + cross", lambda: Bl.Block(16, 4, 32, placement="parallel", cross_attention=True), "placement")
add("blocks", "Block scale 0", lambda: Bl.Block(16, 4, 32, scale=0.0), "scale")
add("blocks", "Block rope_base -1", lambda: Bl.Block(16, 4, 32, rope_base=-1.0), "rope_base")
blk = Bl.Block(16, 4, 32)
dblk = Bl.decoder_block(16, 4, 32)
add("blocks", "Block forward source without cross-attn", lambda: blk(r(2, 3, 16), source=r(2, 4, 16)), "source")
add("blocks", "Block forward source_mask without cross-attn", lambda: blk(r(2, 3, 16), source_mask=ones(2, 1, 1, 3)), "source_mask")
add("blocks", "decoder block without source", lambda: dblk(r(2, 3, 16), is_causal=True), "source")
add("blocks", "decoder block source wrong width", lambda: dblk(r(2, 3, 16), is_causal=True, source=r(2, 4, 8)), "source")
add("blocks", "decoder block source batch", lambda: dblk(r(2, 3, 16), is_causal=True, source=r(1, 4, 16)), "source")
add("blocks", "decoder block source_mask (B,T)", lambda: dblk(r(2, 3, 16), is_causal=True, source=r(2, 4, 16), source_mask=ones(2, 4)), "source_mask", "mask")
add("blocks", "Block forward x 2D", lambda: blk(r(3, 16)), "x")
add("blocks", "Block forward mask 3D", lambda: blk(r(2, 3, 16), mask=ones(2, 1, 3)), "mask")
add("blocks", "decoder_block cross_attention=False", lambda: Bl.decoder_block(16, 4, 32, cross_attention=False), "cross_attention")

# ----------------------------------------------------------------------------------- model
TC, TF = model.TransformerConfig, model.Transformer
for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len", "d_ff", "n_kv_heads"):
    for v in (0, -1, 2.5, True):
        add("model", f"config {name}={v}", lambda name=name, v=v: TC(**{name: v}), name)
for v in (-1, 0, 2.5):
    add("model", f"config n_encoder_layers={v}", lambda v=v: TC(architecture="encoder-decoder", n_encoder_layers=v), "n_encoder_layers")
for name, v in (("rope_base", 0.0), ("rope_base", -1.0), ("rope_base", float("nan")), ("attention_scale", 0.0),
                ("attention_scale", -0.5), ("attention_scale", float("nan")), ("dropout", 1.5), ("dropout", -0.1),
                ("dropout", 1.0), ("architecture", "gpt"), ("norm", "batch"), ("placement", "mid"), ("mlp", "tanh"),
                ("positions", "abs"), ("rope_layout", "x"), ("backend", "fast"), ("bias", "yes"), ("tie_weights", 1)):
    add("model", f"config {name}={v}", lambda name=name, v=v: TC(positions="rope", **{name: v}) if name == "rope_base" else TC(**{name: v}), name)
add("model", "config n_heads not dividing", lambda: TC(d_model=30, n_heads=4), "n_heads")
add("model", "config n_kv not dividing", lambda: TC(n_heads=4, n_kv_heads=3), "n_kv_heads")
add("model", "config n_kv > n_heads", lambda: TC(n_heads=4, n_kv_heads=8), "n_kv_heads")
add("model", "config rope odd d_head", lambda: TC(d_model=12, n_heads=4, positions="rope"), "d_head")
add("model", "config parallel enc-dec", lambda: TC(placement="parallel", architecture="encoder-decoder"), "placement")
add("model", "gpt2_config bad key", lambda: model.gpt2_config(n_layer=2), "n_layer")
add("model", "with_changes n_heads 0", lambda: model.with_changes(TC(), n_heads=0), "n_heads")
add("model", "Transformer(not a config)", lambda: TF({"d_model": 16}), "config")
cfg = TC(vocab_size=11, d_model=16, n_layers=1, n_heads=4, max_seq_len=16)
dec = TF(cfg).eval()
enc = TF(model.with_changes(cfg, architecture="encoder")).eval()
ed = TF(model.with_changes(cfg, architecture="encoder-decoder")).eval()
alibi = TF(model.with_changes(cfg, positions="alibi")).eval()
tok = torch.randint(11, (2, 6), generator=torch.Generator().manual_seed(0))
add("model", "forward tokens float", lambda: dec(tok.float()), "tokens")
add("model", "forward tokens bool", lambda: dec(tok > 3), "tokens")
add("model", "forward tokens uint8", lambda: dec(tok.to(torch.uint8)), "tokens")
add("model", "forward tokens int16", lambda: dec(tok.to(torch.int16)), "tokens")
add("model", "forward tokens (B, 0)", lambda: dec(tok[:, :0]), "tokens")
add("model", "forward tokens (0, T)", lambda: dec(tok[:0]), "tokens")
add("model", "forward tokens 1D", lambda: dec(tok[0]), "tokens")
add("model", "forward tokens 3D", lambda: dec(tok[None]), "tokens")
add("model", "forward ids == vocab", lambda: dec(torch.full((1, 3), 11)), "vocab_size")
add("model", "forward ids negative", lambda: dec(torch.full((1, 3), -1)), "vocab_size")
add("model", "forward too long", lambda: dec(torch.zeros(1, 17, dtype=torch.long)), "max_seq_len")
add("model", "forward tokens list", lambda: dec([[1, 2]]), "tokens")
add("model", "forward lengths (3,) for B=2", lambda: dec(tok, lengths=torch.tensor([6, 5, 4])), "lengths")
add("model", "forward lengths (1,) for B=2", lambda: dec(tok, lengths=torch.tensor([4])), "lengths")
add("model", "forward lengths 2D", lambda: dec(tok, lengths=torch.tensor([[6, 5]])), "lengths")
add("model", "forward lengths > T", lambda: dec(tok, lengths=torch.tensor([7, 5])), "lengths")
add("model", "forward lengths float", lambda: dec(tok, lengths=torch.tensor([6.0, 5.0])), "lengths")
add("model", "encoder lengths (1,) for B=2", lambda: enc(tok, lengths=torch.tensor([4])), "lengths")
add("model", "alibi lengths (1,) for B=2", lambda: alibi(tok, lengths=torch.tensor([4])), "lengths")
add("model", "decoder given source", lambda: dec(tok, source=tok), "source")
add("model", "decoder given source_lengths", lambda: dec(tok, source_lengths=torch.tensor([6, 6])), "source_lengths")
add("model", "decoder given memory", lambda: dec(tok, memory=r(2, 6, 16)), "memory")
add("model", "encoder given source", lambda: enc(tok, source=tok), "source")
add("model", "encoder given memory", lambda: enc(tok, memory=r(2, 6, 16)), "memory")
add("model", "encoder given cache", lambda: enc(tok, cache=heads.ModelCache.empty(1)), "cache")
add("model", "enc-dec without source", lambda: ed(tok), "source")
add("model", "enc-dec source batch 3 vs 2", lambda: ed(tok, source=torch.zeros(3, 4, dtype=torch.long)), "source")
add("model", "enc-dec source batch 1 vs 2", lambda: ed(tok, source=torch.zeros(1, 4, dtype=torch.long)), "source")
add("model", "enc-dec source float", lambda: ed(tok, source=torch.zeros(2, 4)), "source")
add("model", "enc-dec source 1D", lambda: ed(tok, source=torch.zeros(4, dtype=torch.long)), "source")
add("model", "enc-dec source_lengths (1,)", lambda: ed(tok, source=torch.zeros(2, 4, dtype=torch.long), source_lengths=torch.tensor([3])), "source_lengths")
add("model", "enc-dec source_lengths > T_src", lambda: ed(tok, source=torch.zeros(2, 4, dtype=torch.long), source_lengths=torch.tensor([5, 3])), "source_lengths", "lengths")
add("model", "enc-dec memory wrong width", lambda: ed(tok, memory=r(2, 4, 8)), "memory")
add("model", "enc-dec memory batch 1", lambda: ed(tok, memory=r(1, 4, 16)), "memory")
add("model", "enc-dec memory 2D", lambda: ed(tok, memory=r(4, 16)), "memory")
add("model", "forward mask (B,T) B != T", lambda: dec(tok, mask=ones(2, 6)), "mask")
add("model", "forward mask (B,1,T)", lambda: dec(tok, mask=ones(2, 1, 6)), "mask")
add("model", "forward mask int", lambda: dec(tok, mask=ones(6, 6, dtype=torch.long)), "mask")
add("model", "forward mask float", lambda: dec(tok, mask=torch.zeros(6, 6)), "mask")
add("model", "forward mask wrong T", lambda: dec(tok, mask=ones(5, 5)), "mask")
add("model", "encoder mask (B,1,T)", lambda: enc(tok, mask=ones(2, 1, 6)), "mask")
add("model", "forward cache not a ModelCache", lambda: dec(tok, cache="x"), "cache")
add("model", "encode on decoder", lambda: dec.encode(tok), "encoder", "architecture")
add("model", "encode source float", lambda: ed.encode(tok.float()), "source")
add("model", "encode source_lengths wrong", lambda: ed.encode(tok, torch.tensor([3])), "source_lengths")
add("model", "embed_tokens start -1", lambda: dec.embed_tokens(tok, start=-1), "start")
add("model", "set_backend bad", lambda: dec.set_backend("fast"), "backend")
g = dec.generate
add("model", "generate max_new_tokens -1", lambda: g(tok, -1), "max_new_tokens")
add("model", "generate max_new_tokens 2.5", lambda: g(tok, 2.5), "max_new_tokens")
add("model", "generate max_new_tokens '3'", lambda: g(tok, "3"), "max_new_tokens")
add("model", "generate temperature -1", lambda: g(tok, 2, temperature=-1.0), "temperature")
add("model", "generate temperature nan", lambda: g(tok, 2, temperature=float("nan")), "temperature")
add("model", "generate temperature inf", lambda: g(tok, 2, temperature=float("inf")), "temperature")
add("model", "generate top_k 0", lambda: g(tok, 2, top_k=0), "top_k")
add("model", "generate top_k > V", lambda: g(tok, 2, top_k=12), "top_k")
add("model", "generate top_k 2.5", lambda: g(tok, 2, top_k=2.5), "top_k")
add("model", "generate prompt float", lambda: g(tok.float(), 2), "prompt")
add("model", "generate prompt (B,0)", lambda: g(tok[:, :0], 2), "prompt")
add("model", "generate prompt empty 1D", lambda: g(torch.zeros(0, dtype=torch.long), 2), "prompt")
add("model", "generate prompt 3D", lambda: g(tok[None], 2), "prompt")
add("model", "generate prompt bool", lambda: g(tok > 2, 2), "prompt")
add("model", "generate prompt too long", lambda: g(torch.zeros(1, 17, dtype=torch.long), 2), "prompt", "max_seq_len")
add("model", "generate prompt ids >= V", lambda: g(torch.full((1, 2), 11), 2), "vocab_size", "prompt")
add("model", "generate on decoder with source", lambda: g(tok, 2, source=tok), "source")
add("model", "generate enc-dec without source", lambda: ed.generate(tok, 2), "source")
add("model", "generate enc-dec source batch", lambda: ed.generate(tok, 2, source=torch.zeros(3, 4, dtype=torch.long)), "source")
add("model", "generate encoder-only", lambda: enc.generate(tok, 2), "architecture", "encoder")
add("model", "sample logits 1D", lambda: model.sample(r(11)), "logits")
add("model", "sample logits 3D", lambda: model.sample(r(2, 3, 11)), "logits")
add("model", "sample logits int", lambda: model.sample(torch.ones(2, 11, dtype=torch.long)), "logits")
add("model", "sample temperature -1", lambda: model.sample(r(2, 11), temperature=-1.0), "temperature")
add("model", "sample temperature nan", lambda: model.sample(r(2, 11), temperature=float("nan")), "temperature")
add("model", "sample top_k 0", lambda: model.sample(r(2, 11), top_k=0), "top_k")
add("model", "sample top_k > V", lambda: model.sample(r(2, 11), top_k=12), "top_k")
add("model", "sample top_k -1", lambda: model.sample(r(2, 11), top_k=-1), "top_k")
add("model", "capture_attention non-model", lambda: model.capture_attention(nn.Linear(2, 2)).__enter__(), "model")

# ----------------------------------------------------------------------------------- complexity
C = complexity
add("complexity", "count_parameters str", lambda: C.count_parameters("model"), "model")
add("complexity", "parameter_count str", lambda: C.parameter_count("config"), "config")
for v in (0, -1, 2.5):
    add("complexity", f"attention_params d_model={v}", lambda v=v: C.attention_params(v, 4), "d_model")
    add("complexity", f"attention_params n_heads={v}", lambda v=v: C.attention_params(16, v), "n_heads")
    add("complexity", f"mlp_params d_ff={v}", lambda v=v: C.mlp_params(16, v), "d_ff")
    add("complexity", f"norm_params d_model={v}", lambda v=v: C.norm_params(v), "d_model")
    add("complexity", f"projection_flops batch={v}", lambda v=v: C.projection_flops(v, 8, 16, 4), "batch")
    add("complexity", f"projection_flops seq_len={v}", lambda v=v: C.projection_flops(1, v, 16, 4), "seq_len")
    add("complexity", f"mlp_flops seq_len={v}", lambda v=v: C.mlp_flops(1, v, 16, 64), "seq_len")
    add("complexity", f"block_flops batch={v}", lambda v=v: C.block_flops(v, 8, 16, 4, 64), "batch")
    add("complexity", f"attention_overtakes_linear d_model={v}", lambda v=v: C.attention_overtakes_linear(v), "d_model")
    add("complexity", f"score_memory_bytes seq_len={v}", lambda v=v: C.score_memory_bytes(1, 4, v), "seq_len")
    add("complexity", f"attention_flops seq_len={v}", lambda v=v: C.attention_flops(1, 4, v, 8), "seq_len")
    add("complexity", f"kv_cache_bytes batch={v}", lambda v=v: C.kv_cache_bytes(1, v, 8, 4, 8, 2), "batch")
    add("complexity", f"training_flops_per_token seq_len={v}", lambda v=v: C.training_flops_per_token(cfg, v), "seq_len")
add("complexity", "attention_params n_heads not dividing", lambda: C.attention_params(16, 5), "n_heads")
add("complexity", "attention_params n_kv not dividing", lambda: C.attention_params(16, 4, 3), "n_kv_heads")
add("complexity", "attention_params n_kv > n_heads", lambda: C.attention_params(16, 4, 8), "n_kv_heads")
add("complexity", "attention_params n_kv 0", lambda: C.attention_params(16, 4, 0), "n_kv_heads")
add("complexity", "mlp_params kind bad", lambda: C.mlp_params(16, 64, "tanh"), "kind")
add("complexity", "norm_params kind bad", lambda: C.norm_params(16, "batch"), "kind")
add("complexity", "mlp_flops kind bad", lambda: C.mlp_flops(1, 8, 16, 64, "tanh"), "kind")
add("complexity", "projection_flops n_heads not dividing", lambda: C.projection_flops(1, 8, 16, 5), "n_heads")
add("complexity", "projection_flops n_kv not dividing", lambda: C.projection_flops(1, 8, 16, 4, 3), "n_kv_heads")
add("complexity", "block_flops n_heads not dividing", lambda: C.block_flops(1, 8, 16, 5, 64), "n_heads")
add("complexity", "attention_overtakes_linear d_ff 0", lambda: C.attention_overtakes_linear(16, 0), "d_ff")
add("complexity", "score_memory_bytes bytes 0", lambda: C.score_memory_bytes(1, 4, 8, 0), "bytes_per_value")
add("complexity", "best_time not callable", lambda: C.best_time(3), "f")
add("complexity", "best_time repeats 0", lambda: C.best_time(lambda: None, 0), "repeats")

# ----------------------------------------------------------------------------------- data
Dt = data
ct = Dt.CharTokenizer(list("abc"))
add("data", "decode id == V", lambda: ct.decode([3]), "ids")
add("data", "decode id -1", lambda: ct.decode([-1]), "ids")
add("data", "decode tensor id 5", lambda: ct.decode(torch.tensor([0, 5])), "ids")
add("data", "decode float ids", lambda: ct.decode(torch.tensor([0.5])), "ids")
add("data", "decode str ids", lambda: ct.decode("ab"), "ids")
add("data", "decode 2D ids", lambda: ct.decode(torch.zeros(2, 2, dtype=torch.long)), "ids")
add("data", "encode non-str", lambda: ct.encode(123), "text")
add("data", "encode unknown char", lambda: ct.encode("abz"), "text")
add("data", "CharTokenizer duplicates", lambda: Dt.CharTokenizer(list("aab")).encode("a"), "chars")
add("data", "CharTokenizer multi-char entry", lambda: Dt.CharTokenizer(["ab", "c"]), "chars")
add("data", "from_text empty", lambda: Dt.CharTokenizer.from_text(""), "text")
add("data", "shakespeare_splits 1.5", lambda: Dt.shakespeare_splits(1.5), "val_fraction")
add("data", "shakespeare_splits 0", lambda: Dt.shakespeare_splits(0.0), "val_fraction")
add("data", "random_batch float data", lambda: Dt.random_batch(torch.rand(100), 2, 8), "data")
add("data", "random_batch 2D data", lambda: Dt.random_batch(torch.zeros(2, 100, dtype=torch.long), 2, 8), "data")
add("data", "random_batch too short", lambda: Dt.random_batch(torch.zeros(9, dtype=torch.long), 2, 8), "data", "block_size")
for v in BAD_INTS:
    add("data", f"random_batch batch_size={v}", lambda v=v: Dt.random_batch(torch.zeros(100, dtype=torch.long), v, 8), "batch_size")
    add("data", f"induction_batch batch_size={v}", lambda v=v: Dt.induction_batch(v, 4, 10), "batch_size")
    add("data", f"induction_batch half_len={v}", lambda v=v: Dt.induction_batch(2, v, 10), "half_len")
    add("data", f"induction_batch vocab_size={v}", lambda v=v: Dt.induction_batch(2, 4, v), "vocab_size")
    add("data", f"copy_batch length={v}", lambda v=v: Dt.copy_batch(2, v, 10), "length")
    add("data", f"copy_batch vocab_size={v}", lambda v=v: Dt.copy_batch(2, 3, v), "vocab_size")
    add("data", f"digit_task_batch length={v}", lambda v=v: Dt.digit_task_batch("reverse", 2, v), "length")
    add("data", f"digit_task_batch batch_size={v}", lambda v=v: Dt.digit_task_batch("sort", v, 4), "batch_size")
add("data", "induction_batch min_half_len > half", lambda: Dt.induction_batch(2, 4, 10, min_half_len=5), "min_half_len")
add("data", "digit_task_batch task bad", lambda: Dt.digit_task_batch("add", 2, 4), "task")

# ----------------------------------------------------------------------------------- losses
L = losses
lg = r(2, 5, 7)
tk = torch.randint(7, (2, 5), generator=torch.Generator().manual_seed(0))
add("losses", "lm_loss ids == V", lambda: L.lm_loss(lg, torch.full((2, 5), 7)), "tokens")
add("losses", "lm_loss ids -5", lambda: L.lm_loss(lg, torch.full((2, 5), -5)), "tokens")
add("losses", "lm_loss tokens float", lambda: L.lm_loss(lg, tk.float()), "tokens")
add("losses", "lm_loss tokens bool", lambda: L.lm_loss(lg, tk > 2), "tokens")
add("losses", "lm_loss logits int", lambda: L.lm_loss(lg.long(), tk), "logits")
add("losses", "lm_loss B mismatch", lambda: L.lm_loss(lg, tk[:1]), "B")
add("losses", "lm_loss T mismatch", lambda: L.lm_loss(lg, tk[:, :4]), "T")
add("losses", "lm_loss T=1", lambda: L.lm_loss(lg[:, :1], tk[:, :1]), "T", "tokens")
add("losses", "lm_loss T=0", lambda: L.lm_loss(lg[:, :0], tk[:, :0]), "T", "tokens")
add("losses", "lm_loss logits 2D", lambda: L.lm_loss(lg[0], tk), "logits")
add("losses", "mlm_loss targets == V", lambda: L.mlm_loss(lg, torch.full((2, 5), 7)), "targets")
add("losses", "mlm_loss targets float", lambda: L.mlm_loss(lg, tk.float()), "targets")
add("losses", "mlm_loss shape mismatch", lambda: L.mlm_loss(lg, tk[:, :4]), "T", "targets")
add("losses", "mlm_loss B mismatch", lambda: L.mlm_loss(lg, tk[:1]), "B", "targets")
add("losses", "mlm_loss logits int", lambda: L.mlm_loss(lg.long(), tk), "logits")
for p in (-0.1, 1.5, float("nan")):
    add("losses", f"mlm_mask p={p}", lambda p=p: L.mlm_mask(tk, 7, 7, p=p), "p")
add("losses", "mlm_mask mask_id -1", lambda: L.mlm_mask(tk, -1, 7), "mask_id")
add("losses", "mlm_mask mask_id inside vocab", lambda: L.mlm_mask(tk, 3, 7), "mask_id")
add("losses", "mlm_mask mask_id -100", lambda: L.mlm_mask(tk, -100, 7), "mask_id")
add("losses", "mlm_mask mask_id 2.5", lambda: L.mlm_mask(tk, 7.5, 7), "mask_id")
add("losses", "mlm_mask vocab_size 0", lambda: L.mlm_mask(tk, 7, 0), "vocab_size")
add("losses", "mlm_mask vocab_size -1", lambda: L.mlm_mask(tk, 7, -1), "vocab_size")
add("losses", "mlm_mask tokens float", lambda: L.mlm_mask(tk.float(), 7, 7), "tokens")
add("losses", "mlm_mask tokens 1D", lambda: L.mlm_mask(tk[0], 7, 7), "tokens")
for x in (-0.5, float("nan"), "1.0"):
    add("losses", f"perplexity {x!r}", lambda x=x: L.perplexity(x), "loss")

# ----------------------------------------------------------------------------------- diagnostics (probe only)
Dg = diagnostics
add("diagnostics", "attention_entropy 1D", lambda: Dg.attention_entropy(r(4)), "weights")
add("diagnostics", "attention_entropy int", lambda: Dg.attention_entropy(torch.ones(3, 3, dtype=torch.long)), "weights")
add("diagnostics", "moving_average window 0", lambda: Dg.moving_average([1.0, 2.0], 0), "window")
add("diagnostics", "moving_average window > n", lambda: Dg.moving_average([1.0, 2.0], 3), "window")
add("diagnostics", "bounded str", lambda: Dg.bounded("x"), "error")
add("diagnostics", "max_diff shape mismatch", lambda: Dg.max_diff("a", r(3), r(4)), "a has", "b has")
add("diagnostics", "leakage_by_perturbation position", lambda: Dg.leakage_by_perturbation(lambda t: t[..., None].float(), tok, 11, 9), "position")
add("diagnostics", "leakage_by_perturbation vocab 0", lambda: Dg.leakage_by_perturbation(lambda t: t[..., None].float(), tok, 0, 1), "vocab_size")
add("diagnostics", "leakage_by_jacobian x 2D", lambda: Dg.leakage_by_jacobian(lambda x: x, r(3, 4)), "x")
add("diagnostics", "normalised_entropy 1D", lambda: Dg.normalised_entropy(r(4)), "weights")
add("diagnostics", "residual_norms float tokens", lambda: Dg.residual_norms(dec, tok.float()), "tokens")
add("diagnostics", "leakage_test position", lambda: Dg.leakage_test(dec, tok, 11, positions=[9]), "position")
add("diagnostics", "leakage_test vocab 0", lambda: Dg.leakage_test(dec, tok, 0), "vocab_size")
add("diagnostics", "padding_leakage lengths wrong", lambda: Dg.padding_leakage(dec, tok, torch.tensor([3]), 11), "lengths")
add("diagnostics", "ablate_heads bad layer", lambda: Dg.ablate_heads(dec, {"nope": [0]}).__enter__(), "heads", "nope")
add("diagnostics", "ablate_heads bad head", lambda: Dg.ablate_heads(dec, {"decoder.0.attn": [9]}).__enter__(), "heads", "head")
add("diagnostics", "ablate_heads bad mode", lambda: Dg.ablate_heads(dec, {"decoder.0.attn": [0]}, mode="x").__enter__(), "mode")
add("diagnostics", "overfit_batch steps 0", lambda: Dg.overfit_batch(dec, lambda m: m(tok).sum(), steps=0), "steps")
add("diagnostics", "classify_heads thresholds swapped", lambda: Dg.classify_heads({"a": torch.tensor([0.5])}, 0.9, 0.2), "collapsed", "diffuse")

# ----------------------------------------------------------------------------------- flash
F_ = flash
add("flash", "flash q 3D", lambda: F_.flash_attention(r(H, T, D), r(H, T, D), r(H, T, D)), "q")
add("flash", "flash batch mismatch", lambda: F_.flash_attention(q4, r(3, H, T, D), r(3, H, T, D)), "B")
add("flash", "flash heads not multiple", lambda: F_.flash_attention(r(B, 6, T, D), k4, v4), "h", "h_kv")
add("flash", "flash T_k 0", lambda: F_.flash_attention(q4, r(B, H, 0, D), r(B, H, 0, D)), "T_k")
add("flash", "flash kpm int", lambda: F_.flash_attention(q4, k4, v4, key_padding_mask=ones(B, T, dtype=torch.long)), "key_padding_mask")
add("flash", "flash kpm (B,1,1,T)", lambda: F_.flash_attention(q4, k4, v4, key_padding_mask=ones(B, 1, 1, T)), "key_padding_mask")
add("flash", "flash scale nan", lambda: F_.flash_attention(q4, k4, v4, scale=float("nan")), "scale")
add("flash", "flash scale inf", lambda: F_.flash_attention(q4, k4, v4, scale=float("inf")), "scale")
add("flash", "flash block_q 0", lambda: F_.flash_attention(q4, k4, v4, block_q=0), "block_q")
add("flash", "flash block_k 2.5", lambda: F_.flash_attention(q4, k4, v4, block_k=2.5), "block_k")
add("flash", "naive_attention dtype mismatch", lambda: F_.naive_attention(q4, k4.double(), v4), "k")
add("flash", "steps q 4D", lambda: F_.flash_attention_steps(q4, k4, v4), "q")
add("flash", "steps block_k 0", lambda: F_.flash_attention_steps(r(T, D), r(T, D), r(T, D), block_k=0), "block_k")
add("flash", "steps T_k 0", lambda: F_.flash_attention_steps(r(T, D), r(0, D), r(0, D)), "T_k")
add("flash", "steps scale -1", lambda: F_.flash_attention_steps(r(T, D), r(T, D), r(T, D), scale=-1.0), "scale")

# ----------------------------------------------------------------------------------- viz (tensors only)
add("viz", "heatmap 3D weights", lambda: plots.attention_heatmap(r(2, 3, 3)), "weights")
add("viz", "heatmap bool weights", lambda: plots.attention_heatmap(ones(3, 3)), "weights")
add("viz", "heatmap tokens wrong length", lambda: plots.attention_heatmap(r(3, 3), "ab"), "query_tokens")
add("viz", "heatmap mask str", lambda: plots.attention_heatmap(r(3, 3), mask="future"), "mask")
add("viz", "heatmap mask int", lambda: plots.attention_heatmap(r(3, 3), mask=ones(3, 3, dtype=torch.long)), "mask")
add("viz", "heatmap mask wrong shape", lambda: plots.attention_heatmap(r(3, 3), mask=ones(4, 4)), "mask")
add("viz", "heatmap highlight_row", lambda: plots.attention_heatmap(r(3, 3), highlight_row=5), "highlight_row")
add("viz", "plot_mask int", lambda: plots.plot_mask(ones(3, 3, dtype=torch.long)), "mask")
add("viz", "head_entropy_grid 2D", lambda: plots.head_entropy_grid({"a": r(3, 3)}), "weights", "a")


def classify(fn, names):
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        msg = str(e)
        named = any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", msg) for n in names)
        return ("clear" if named else "raw"), f"{type(e).__name__}: {msg.splitlines()[0][:160] if msg else ''}"
    return "silent", ""


def main() -> None:
    verbose = "-v" in sys.argv
    import warnings

    warnings.simplefilter("ignore")
    totals: Counter = Counter()
    by_module: dict[str, Counter] = defaultdict(Counter)
    for module, label, fn, names in CASES:
        kind, detail = classify(fn, names)
        totals[kind] += 1
        by_module[module][kind] += 1
        if verbose and kind != "clear" or "-a" in sys.argv:
            print(f"{kind:6s} {module:12s} {label:45s} {detail}")
    print(f"\n{'module':12s} {'clear':>6s} {'raw':>5s} {'silent':>7s}")
    for module, c in by_module.items():
        print(f"{module:12s} {c['clear']:6d} {c['raw']:5d} {c['silent']:7d}")
    print(f"{'total':12s} {totals['clear']:6d} {totals['raw']:5d} {totals['silent']:7d}   ({len(CASES)} calls)")


if __name__ == "__main__":
    main()
