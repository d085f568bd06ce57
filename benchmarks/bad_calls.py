"""How tfcore answers wrong calls: a few hundred of them across every public module (issue 17).

Each call is classified by what comes back:

    clear   an exception whose message names the argument (as a whole word)
    raw     an exception that does not name it (PyTorch's own, ZeroDivisionError, ...)
    silent  no exception: a result for a call that is wrong

    PYTHONPATH=. python benchmarks/bad_calls.py        # counts per module
    PYTHONPATH=. python benchmarks/bad_calls.py -v     # and every call that is not "clear"
    PYTHONPATH=. python benchmarks/bad_calls.py -a     # and every call with its message

The first survey calls only functions that existed before issue 17, so it runs on older trees too
(that is how the "before" counts were taken); the second pass (``add_second_pass``) covers the API
added since, and is left out where those modules are missing. tests/test_bad_inputs.py is the table CI keeps; this script
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


# ----------------------------------------------------------------------------------- second pass (newer modules)
# The public API added after the first survey: sampling, generate's options, neurons, extrapolation,
# threads, capstone, the forward checks, train with any nn.Module, TrainConfig, checkpoints, the
# training CLI, the lesson widgets and tfcore.hf. On a tree without these modules the section is
# left out (the first survey's counts stay comparable).


def add_second_pass() -> None:
    import os
    import tempfile

    from tfcore import capstone, checkpoints, extrapolation as ex, model_checks, neurons, sampling, threads, train_cli
    from tfcore import viz
    from tfcore.train import TrainConfig, train

    NAN, INF = float("nan"), float("inf")

    def ids(*s, high=11, dtype=torch.long):
        return torch.randint(high, s, generator=torch.Generator().manual_seed(0)).to(dtype)

    L=r(2,7)
    S=sampling
    for v in (NAN, INF, -1.0, "1", None, True):
        add("sampling", f"temperature={v!r}", lambda v=v: S.sample(L, temperature=v), "temperature")
    for v in (0, -1, 8, 2.5, True, torch.tensor(3)):
        add("sampling", f"top_k={v!r}", lambda v=v: S.sample(L, top_k=v), "top_k")
    for v in (0.0, -0.1, 1.5, NAN, INF, "0.9", True):
        add("sampling", f"top_p={v!r}", lambda v=v: S.sample(L, top_p=v), "top_p")
    add("sampling","logits 1D", lambda: S.sample(r(7)), "logits")
    add("sampling","logits 3D", lambda: S.sample(r(2,3,7)), "logits")
    add("sampling","logits int", lambda: S.sample(ids(2,7)), "logits")
    add("sampling","logits bool", lambda: S.sample(torch.ones(2,7,dtype=torch.bool)), "logits")
    add("sampling","logits V=0", lambda: S.sample(r(2,0)), "logits", "V")
    add("sampling","logits B=0", lambda: S.sample(r(0,7)), "logits", "B")
    add("sampling","logits list", lambda: S.sample([[1.0,2.0]]), "logits")
    add("sampling","generator wrong", lambda: S.sample(L, generator=3), "generator")
    add("sampling","probs temp 0", lambda: S.sampling_probs(L, temperature=0), "temperature")
    add("sampling","probs V=0", lambda: S.sampling_probs(r(2,0)), "logits","V")
    add("sampling","probs top_k 0", lambda: S.sampling_probs(L, top_k=0), "top_k")
    add("sampling","probs top_p 0", lambda: S.sampling_probs(L, top_p=0.0), "top_p")
    add("sampling","probs logits 3D", lambda: S.sampling_probs(r(1,2,7)), "logits")
    CFG = model.TransformerConfig(vocab_size=11, d_model=16, n_layers=1, n_heads=4, max_seq_len=16)
    DEC = model.Transformer(CFG).eval()
    ENC = model.Transformer(model.with_changes(CFG, architecture="encoder")).eval()
    S2S = model.Transformer(model.with_changes(CFG, architecture="encoder-decoder")).eval()
    TOK=ids(2,6)
    g=DEC.generate
    add("generate","max_new -1", lambda: g(TOK, -1), "max_new_tokens")
    add("generate","max_new 2.5", lambda: g(TOK, 2.5), "max_new_tokens")
    add("generate","max_new True", lambda: g(TOK, True), "max_new_tokens")
    add("generate","temp -1", lambda: g(TOK, 2, temperature=-1.0), "temperature")
    add("generate","temp nan", lambda: g(TOK, 2, temperature=NAN), "temperature")
    add("generate","top_k 12", lambda: g(TOK, 2, top_k=12), "top_k")
    add("generate","top_k 0", lambda: g(TOK, 2, top_k=0), "top_k")
    add("generate","top_p 0", lambda: g(TOK, 2, top_p=0.0), "top_p")
    add("generate","top_p 2", lambda: g(TOK, 2, top_p=2.0), "top_p")
    add("generate","top_p nan", lambda: g(TOK, 2, top_p=NAN), "top_p")
    add("generate","prompt float", lambda: g(TOK.float(), 2), "prompt")
    add("generate","prompt bool", lambda: g(TOK.bool(), 2), "prompt")
    add("generate","prompt uint8", lambda: g(TOK.to(torch.uint8), 2), "prompt")
    add("generate","prompt 3D", lambda: g(TOK[None], 2), "prompt")
    add("generate","prompt empty T", lambda: g(ids(2,0), 2), "prompt")
    add("generate","prompt empty 1D", lambda: g(ids(0), 2), "prompt")
    add("generate","prompt list", lambda: g([1,2,3], 2), "prompt")
    add("generate","prompt id 11", lambda: g(torch.tensor([[11]]), 2), "prompt", "tokens")
    add("generate","prompt id -1", lambda: g(torch.tensor([[-1]]), 2), "prompt", "tokens")
    add("generate","prompt too long", lambda: g(ids(1,17), 2), "prompt")
    add("generate","source to dec", lambda: g(TOK, 2, source=TOK), "source")
    add("generate","encoder generate", lambda: ENC.generate(TOK, 2), "encoder-only")
    add("generate","s2s no source", lambda: S2S.generate(TOK, 2), "source")
    add("generate","s2s source B", lambda: S2S.generate(TOK, 2, source=ids(3,4)), "source")
    add("generate","s2s source float", lambda: S2S.generate(TOK, 2, source=ids(2,4).float()), "source")
    add("generate","generator wrong", lambda: g(TOK, 2, generator="x"), "generator")
    add("generate","use_cache str", lambda: g(TOK, 2, use_cache="no"), "use_cache")
    # neurons
    N=neurons
    add("neurons","layer -1", lambda: N.down_projection(DEC, -1), "layer")
    add("neurons","layer 1", lambda: N.down_projection(DEC, 1), "layer")
    add("neurons","layer 0.0", lambda: N.down_projection(DEC, 0.0), "layer")
    add("neurons","model s2s", lambda: N.down_projection(S2S, 0), "model")
    add("neurons","model linear", lambda: N.down_projection(nn.Linear(2,2), 0), "model")
    add("neurons","tokens float", lambda: N.unit_activations(DEC, TOK.float(), 0), "tokens")
    add("neurons","tokens 1D", lambda: N.unit_activations(DEC, ids(6), 0), "tokens")
    add("neurons","tokens empty", lambda: N.unit_activations(DEC, ids(0,6), 0), "tokens")
    add("neurons","tokens id 11", lambda: N.unit_activations(DEC, torch.tensor([[11]]), 0), "tokens")
    add("neurons","tokens too long", lambda: N.unit_activations(DEC, ids(1,17), 0), "tokens")
    add("neurons","tokens bool", lambda: N.unit_activations(DEC, TOK.bool(), 0), "tokens")
    add("neurons","tokens uint8", lambda: N.unit_activations(DEC, TOK.to(torch.uint8), 0), "tokens")
    add("neurons","top k 0", lambda: N.top_activations(DEC, TOK, 0, k=0), "k")
    add("neurons","top k 13", lambda: N.top_activations(DEC, TOK, 0, k=13), "k")
    add("neurons","top batch 0", lambda: N.top_activations(DEC, TOK, 0, batch_size=0), "batch_size")
    add("neurons","top layer 5", lambda: N.top_activations(DEC, TOK, 5), "layer")
    add("neurons","logit_effect layer 3", lambda: N.unit_logit_effect(DEC, 3), "layer")
    add("neurons","ablate unit 64", lambda: N.ablate_units(DEC, 0, 64).__enter__(), "units")
    add("neurons","ablate unit -1", lambda: N.ablate_units(DEC, 0, -1).__enter__(), "units")
    add("neurons","ablate unit 1.0", lambda: N.ablate_units(DEC, 0, [1.0]).__enter__(), "units")
    add("neurons","ablate units tensor", lambda: N.ablate_units(DEC, 0, torch.tensor([1, 70])).__enter__(), "units")
    add("neurons","ablate units str", lambda: N.ablate_units(DEC, 0, "3").__enter__(), "units")
    add("neurons","ablate units bool", lambda: N.ablate_units(DEC, 0, True).__enter__(), "units")
    # extrapolation
    E=ex
    for name,v in (("d_model",0),("steps",-1),("train_len",2.5),("lr",0.0),("lr",NAN),("min_lr",-1.0),("eval_seed",-1),("warmup_steps",0),("batch_size",True)):
        add("extrapolation",f"exp {name}={v}", lambda name=name,v=v: E.LengthExperiment(**{name:v}), name)
    add("extrapolation","eval_len < train_len", lambda: E.LengthExperiment(train_len=64, eval_len=32), "eval_len")
    add("extrapolation","n_heads not dividing", lambda: E.LengthExperiment(d_model=48, n_heads=5), "n_heads")
    add("extrapolation","scheme bad", lambda: E.train_at_length("nope", 0, E.LengthExperiment(), ids(1000), 11), "scheme")
    add("extrapolation","vocab 0", lambda: E.train_at_length("rope", 0, E.LengthExperiment(), ids(1000), 0), "vocab_size")
    EXP=E.LengthExperiment(train_len=8, eval_len=16, eval_windows=3)
    add("extrapolation","windows val float", lambda: E.held_out_windows(ids(100).float(), EXP), "val_ids")
    add("extrapolation","windows val 2D", lambda: E.held_out_windows(ids(2,100), EXP), "val_ids")
    add("extrapolation","windows val short", lambda: E.held_out_windows(ids(10), EXP), "val_ids")
    add("extrapolation","windows exp wrong", lambda: E.held_out_windows(ids(100), {"eval_len": 8}), "exp")
    W=ids(3,9)
    add("extrapolation","lbp windows float", lambda: E.loss_by_position(DEC, W.float()), "windows")
    add("extrapolation","lbp windows 1D", lambda: E.loss_by_position(DEC, ids(9)), "windows")
    add("extrapolation","lbp windows N=0", lambda: E.loss_by_position(DEC, ids(0,9)), "windows")
    add("extrapolation","lbp windows T=1", lambda: E.loss_by_position(DEC, ids(3,1)), "windows", "length")
    add("extrapolation","lbp length 0", lambda: E.loss_by_position(DEC, W, 0), "length")
    add("extrapolation","lbp length 9", lambda: E.loss_by_position(DEC, W, 9), "length")
    add("extrapolation","lbp batch 0", lambda: E.loss_by_position(DEC, W, batch_size=0), "batch_size")
    add("extrapolation","lbp windows too long", lambda: E.loss_by_position(DEC, ids(3,20)), "windows", "max_seq_len")
    add("extrapolation","lbp id out of vocab", lambda: E.loss_by_position(DEC, ids(3,9,high=20)), "windows", "tokens")
    add("extrapolation","lbp encoder", lambda: E.loss_by_position(ENC, W), "model")
    add("extrapolation","lbp model not transformer", lambda: E.loss_by_position(nn.Linear(2,2), W), "model")
    add("extrapolation","ntk base 0", lambda: E.ntk_base(0.0, 2.0, 8), "base")
    add("extrapolation","ntk base -1", lambda: E.ntk_base(-1.0, 2.0, 8), "base")
    add("extrapolation","ntk base nan", lambda: E.ntk_base(NAN, 2.0, 8), "base")
    add("extrapolation","ntk factor 0", lambda: E.ntk_base(10000.0, 0.0, 8), "factor")
    add("extrapolation","ntk factor -2", lambda: E.ntk_base(10000.0, -2.0, 8), "factor")
    add("extrapolation","ntk factor inf", lambda: E.ntk_base(10000.0, INF, 8), "factor")
    add("extrapolation","ntk d_head 3", lambda: E.ntk_base(10000.0, 2.0, 3), "d_head")
    add("extrapolation","ntk base str", lambda: E.ntk_base("1e4", 2.0, 8), "base")
    ROPE=model.Transformer(model.with_changes(CFG, positions="rope")).eval()
    add("extrapolation","rbc learned model", lambda: E.rope_base_curves(DEC, W, [100.0]), "model")
    add("extrapolation","rbc base 0", lambda: E.rope_base_curves(ROPE, W, [0.0]), "bases")
    add("extrapolation","rbc base -5", lambda: E.rope_base_curves(ROPE, W, [-5.0]), "bases")
    add("extrapolation","rbc base nan", lambda: E.rope_base_curves(ROPE, W, [NAN]), "bases")
    add("extrapolation","rbc bases float", lambda: E.rope_base_curves(ROPE, W, 100.0), "bases")
    add("extrapolation","sweep scheme bad", lambda: E.length_sweep(ids(1000), ids(1000), 11, ["nope"], [0], EXP), "scheme", "schemes")
    add("extrapolation","sweep no seeds", lambda: E.length_sweep(ids(1000), ids(1000), 11, ["rope"], [], EXP), "seeds")
    add("extrapolation","sweep no schemes", lambda: E.length_sweep(ids(1000), ids(1000), 11, [], [0], EXP), "schemes")
    add("extrapolation","sweep bases 0", lambda: E.length_sweep(ids(1000), ids(1000), 11, ["nope"], [0], EXP, rope_bases=[0.0]), "rope_bases", "scheme", "schemes")
    add("extrapolation","sweep scheme str", lambda: E.length_sweep(ids(1000), ids(1000), 11, "rope", [0], EXP), "schemes")
    # threads
    Th=threads
    add("threads","threads_for avail 0", lambda: Th.threads_for(10, 0), "available")
    add("threads","threads_for work -1", lambda: Th.threads_for(-1), "work")
    add("threads","threads_for work 2.5", lambda: Th.threads_for(2.5), "work")
    add("threads","threads_for work str", lambda: Th.threads_for("10"), "work")
    add("threads","set_threads 0", lambda: Th.set_threads(0), "n")
    add("threads","set_threads 1.5", lambda: Th.set_threads(1.5), "n")
    add("threads","intra 0", lambda: Th.intra_op_threads(0).__enter__(), "n")
    add("threads","intra -1", lambda: Th.intra_op_threads(-1).__enter__(), "n")
    add("threads","widest no linear", lambda: Th.widest_linear(nn.ReLU()), "model")
    add("threads","widest not module", lambda: Th.widest_linear(3), "model")
    add("threads","largest new -1", lambda: Th.largest_operation(CFG, 10, -1, 4), "new_tokens")
    add("threads","largest t_k -1", lambda: Th.largest_operation(CFG, 10, 1, -1), "t_k")
    add("threads","largest widest 0", lambda: Th.largest_operation(CFG, 0, 1, 1), "widest")
    add("threads","largest config none", lambda: Th.largest_operation(None, 10, 1, 1), "config")
    # capstone
    C=capstone
    add("capstone","require llama", lambda: C.require_gpt_shaped(model.with_changes(CFG, positions="rope")), "positions")
    add("capstone","require not config", lambda: C.require_gpt_shaped(DEC), "config")
    add("capstone","gpt_args dff", lambda: C.gpt_args(model.with_changes(CFG, d_ff=10)), "d_ff")
    for name,v in (("vocab_size",0),("d_model",-1),("n_layers",0),("n_heads",0),("max_seq_len",2.5),("d_model",True)):
        kw=dict(vocab_size=11,d_model=16,n_layers=1,n_heads=4,max_seq_len=16); kw[name]=v
        add("capstone",f"table {name}={v}", lambda kw=kw: C.parameter_table(**kw), name)
    add("capstone","table heads not dividing", lambda: C.parameter_table(11,16,1,5,16), "n_heads")
    add("capstone","to_gpt not transformer", lambda: C.to_gpt(nn.Linear(2,2)), "model")
    add("capstone","to_gpt rope", lambda: C.to_gpt(ROPE), "positions")
    GOOD=C.to_gpt(model.Transformer(model.with_changes(CFG, d_ff=64, mlp="gelu", tie_weights=True)))
    def without(k): d=dict(GOOD); d.pop(k); return d
    def changed(k, t): d=dict(GOOD); d[k]=t; return d
    add("capstone","from_gpt missing tok", lambda: C.from_gpt(without("tok_emb.weight"), 4), "tok_emb.weight")
    add("capstone","from_gpt missing fc1", lambda: C.from_gpt(without("blocks.0.mlp.fc1.weight"), 4), "blocks.0.mlp.fc1.weight")
    add("capstone","from_gpt extra key", lambda: C.from_gpt({**GOOD, "blocks.0.attn.extra.weight": r(3)}, 4), "blocks.0.attn.extra.weight")
    add("capstone","from_gpt extra top key", lambda: C.from_gpt({**GOOD, "lm_head.weight": r(11,16)}, 4), "lm_head.weight")
    add("capstone","from_gpt wrong shape", lambda: C.from_gpt(changed("blocks.0.ln1.weight", r(15)), 4), "blocks.0.ln1.weight")
    add("capstone","from_gpt transposed fc1", lambda: C.from_gpt(changed("blocks.0.mlp.fc1.weight", r(16,64)), 4), "blocks.0.mlp.fc1.weight")
    add("capstone","from_gpt n_heads 3", lambda: C.from_gpt(GOOD, 3), "n_heads")
    add("capstone","from_gpt n_heads 0", lambda: C.from_gpt(GOOD, 0), "n_heads")
    add("capstone","from_gpt tok 1D", lambda: C.from_gpt(changed("tok_emb.weight", r(11)), 4), "tok_emb.weight")
    add("capstone","from_gpt pos 1D", lambda: C.from_gpt(changed("pos_emb.weight", r(16)), 4), "pos_emb.weight")
    add("capstone","from_gpt tok int", lambda: C.from_gpt(changed("tok_emb.weight", ids(11,16)), 4), "tok_emb.weight")
    add("capstone","from_gpt value list", lambda: C.from_gpt(changed("ln_f.weight", [1.0]*16), 4), "ln_f.weight")
    add("capstone","from_gpt state not dict", lambda: C.from_gpt(DEC, 4), "state")
    add("capstone","from_gpt layer gap", lambda: C.from_gpt({k.replace("blocks.0.","blocks.1."):v for k,v in GOOD.items()}, 4), "blocks.0.ln1.weight")
    add("capstone","from_gpt fused wrong", lambda: C.from_gpt({**{k:v for k,v in GOOD.items() if "_proj" not in k or "out_proj" in k}, "blocks.0.attn.qkv.weight": r(40,16), "blocks.0.attn.qkv.bias": r(48)}, 4), "blocks.0.attn.qkv.weight")
    add("capstone","from_gpt mixed fused", lambda: C.from_gpt({**GOOD, "blocks.0.attn.qkv.weight": r(48,16), "blocks.0.attn.qkv.bias": r(48)}, 4), "blocks.0.attn.qkv.weight", "blocks.0.attn.q_proj.weight")
    # model_checks direct
    add("model_checks","lengths float", lambda: DEC(TOK, lengths=torch.tensor([1.0,2.0])), "lengths")
    add("model_checks","lengths 2D", lambda: DEC(TOK, lengths=torch.tensor([[1,2]])), "lengths")
    add("model_checks","lengths B", lambda: DEC(TOK, lengths=[1,2,3]), "lengths")
    add("model_checks","lengths str", lambda: DEC(TOK, lengths="ab"), "lengths")
    add("model_checks","lengths 7", lambda: DEC(TOK, lengths=[7,1]), "lengths")
    add("model_checks","lengths -1", lambda: DEC(TOK, lengths=[-1,1]), "lengths")
    add("model_checks","memory to dec", lambda: DEC(TOK, memory=r(2,3,16)), "memory")
    add("model_checks","s2s memory width", lambda: S2S(TOK, memory=r(2,3,8)), "memory")
    add("model_checks","s2s memory int", lambda: S2S(TOK, memory=ids(2,3,16)), "memory")
    add("model_checks","s2s memory float64", lambda: S2S(TOK, memory=r(2,3,16).double()), "memory", "source")
    add("model_checks","s2s src+mem", lambda: S2S(TOK, source=TOK, memory=r(2,3,16)), "memory", "source")
    add("model_checks","s2s src_len no src", lambda: S2S(TOK, source_lengths=[1,2]), "source_lengths")
    add("model_checks","s2s memory T_src 0", lambda: S2S(TOK, memory=r(2,0,16)), "memory")
    add("model_checks","cache wrong type", lambda: DEC(TOK, cache={}), "cache")
    add("model_checks","mask float", lambda: DEC(TOK, mask=r(6,6)), "mask")
    add("model_checks","check_lengths direct B", lambda: model_checks.check_lengths("lengths", [1], 2), "lengths")
    add("model_checks","check_token_batch direct", lambda: model_checks.check_token_batch("tokens", ids(2,3).short()), "tokens")
    add("model_checks","tokens int16", lambda: DEC(ids(2,3).short()), "tokens")
    add("model_checks","tokens too long", lambda: DEC(ids(1,17)), "tokens","max_seq_len")
    add("model_checks","encode dec", lambda: DEC.encode(TOK), "encode", "encoder")
    add("model_checks","encode float", lambda: S2S.encode(TOK.float()), "source", "tokens")
    add("model_checks","s2s source T 0", lambda: S2S(TOK, source=ids(2,0)), "source")
    add("model_checks","s2s source ids 11", lambda: S2S(TOK, source=torch.full((2,3),11)), "source")
    # train with plain module
    class Tiny(nn.Module):
        def __init__(s, V=11, out=None, dtype=torch.float32):
            super().__init__(); s.e=nn.Embedding(V,8).to(dtype); s.l=nn.Linear(8,V).to(dtype); s.out=out
        def forward(s, x):
            y=s.l(s.e(x))
            return s.out(y) if s.out else y
    CORP=ids(500)
    TC=lambda **k: TrainConfig(**{**dict(steps=2, batch_size=2, block_size=8, eval_interval=0, eval_batches=1, warmup_steps=1), **k})
    add("train","vocab smaller", lambda: train(Tiny(V=5), TC(), CORP, progress=False), "train_data", "vocab", "V")
    add("train","returns tuple", lambda: train(Tiny(out=lambda y:(y,None)), TC(), CORP, progress=False), "model", "logits")
    add("train","returns 2D", lambda: train(Tiny(out=lambda y:y[:, -1]), TC(), CORP, progress=False), "model", "logits")
    add("train","returns int", lambda: train(Tiny(out=lambda y:y.argmax(-1, keepdim=True).expand_as(y).clone()), TC(), CORP, progress=False), "model", "logits")
    add("train","no params", lambda: train(nn.Identity(), TC(), CORP, progress=False), "model")
    add("train","corpus float", lambda: train(Tiny(), TC(), CORP.float(), progress=False), "train_data")
    add("train","corpus 2D", lambda: train(Tiny(), TC(), CORP.view(10,50), progress=False), "train_data")
    add("train","corpus short", lambda: train(Tiny(), TC(), ids(5), progress=False), "train_data")
    add("train","corpus bool", lambda: train(Tiny(), TC(), CORP.bool(), progress=False), "train_data")
    add("train","corpus list", lambda: train(Tiny(), TC(), CORP.tolist(), progress=False), "train_data")
    add("train","corpus negative ids", lambda: train(Tiny(), TC(), CORP-5, progress=False), "train_data")
    add("train","val short", lambda: train(Tiny(), TC(), CORP, ids(4), progress=False), "val_data")
    add("train","cfg dict", lambda: train(Tiny(), {"steps":2}, CORP, progress=False), "cfg")
    add("train","model fn", lambda: train(lambda x:x, TC(), CORP, progress=False), "model")
    add("train","block > max_seq_len", lambda: train(model.Transformer(CFG), TC(block_size=32), CORP, progress=False), "block_size", "max_seq_len")
    add("train","mlm on decoder", lambda: train(model.Transformer(CFG), TC(objective="mlm"), CORP, progress=False), "objective")
    add("train","sampler wrong", lambda: train(Tiny(), TC(), lambda b,g: ids(b,8), progress=False), "train_data", "sampler")
    add("train","callbacks not callable", lambda: train(Tiny(), TC(), CORP, callbacks=[3], progress=False), "callbacks")
    add("train","resume missing", lambda: train(Tiny(), TC(), CORP, resume=os.path.join(tempfile.mkdtemp(prefix="tfcore-bad-calls-"), "nope.pt"), progress=False), "resume")
    for name,v in (("time_budget",0),("time_budget",-1.0),("time_budget",NAN),("checkpoint_interval",-1),("checkpoint_interval",2.5),("warmup_steps",-1),("grad_clip",-1.0),("weight_decay",-0.1),("mask_prob",1.5),("lr",0.0),("min_lr",1.0),("betas",(0.9,1.0)),("eps",0.0),("steps",0),("grad_accum",0),("eval_batch_size",0),("lr_decay_steps",0),("num_threads",0),("objective","clm"),("optimizer","sgd"),("dtype","fp16"),("device","gpu"),("backend","fast"),("sample_prompt", 3),("out_dir", 3),("compile","yes"),("fused_adamw","yes"),("seed",1.5),("time_budget",True),("sample_tokens",-1),("mask_id",-1)):
        add("TrainConfig", f"{name}={v!r}", lambda name=name,v=v: TrainConfig(**{name:v}), name)
    add("train","device gpu", lambda: train(Tiny(), TC(device="gpu"), CORP, progress=False), "device")
    add("train","backend bad", lambda: train(model.Transformer(CFG), TC(backend="fast"), CORP, progress=False), "backend")
    add("train","mask_id >= vocab", lambda: train(ENC, TC(objective="mlm", mask_id=11), CORP, progress=False), "mask_id")
    # checkpoints
    tmp=tempfile.mkdtemp(prefix="tfcore-bad-calls-")
    junk=os.path.join(tmp,"junk.pt"); open(junk,"w").write("hello")
    notck=os.path.join(tmp,"notck.pt"); torch.save({"a":1}, notck)
    sd=os.path.join(tmp,"sd.pt"); torch.save(DEC.state_dict(), sd)
    add("checkpoints","read junk", lambda: checkpoints.read_checkpoint(junk), junk)
    add("checkpoints","read notck", lambda: checkpoints.read_checkpoint(notck), notck)
    add("checkpoints","load junk", lambda: checkpoints.load_checkpoint(junk), junk, "path")
    add("checkpoints","load missing", lambda: checkpoints.load_checkpoint(os.path.join(tmp,"none.pt")), "none.pt", "path")
    add("checkpoints","model_from junk", lambda: checkpoints.model_from_checkpoint(junk), junk, "path")
    add("checkpoints","model_from notck", lambda: checkpoints.model_from_checkpoint(notck), notck, "path")
    add("checkpoints","model_from state dict", lambda: checkpoints.model_from_checkpoint(sd), sd, "path")
    add("checkpoints","pretrained unknown", lambda: checkpoints.pretrained("nope"), "nope")
    add("checkpoints","pretrained junk", lambda: checkpoints.pretrained(junk), junk)
    add("checkpoints","pretrained notck", lambda: checkpoints.pretrained(notck), notck)
    add("checkpoints","pretrained sd", lambda: checkpoints.pretrained(sd), sd)
    add("checkpoints","latest junk no prev", lambda: checkpoints.latest_checkpoint(junk), junk)
    add("checkpoints","save_weights not transformer", lambda: checkpoints.save_weights(os.path.join(tmp,"w.pt"), nn.Linear(2,2), "x", None), "model")
    # train with checkpoint of different model
    def _resume_other():
        d=tempfile.mkdtemp(); train(Tiny(), TC(out_dir=d), CORP, progress=False)
        return train(Tiny(V=12), TC(out_dir=d), CORP, progress=False, resume=True)
    add("checkpoints","resume other module", _resume_other, "ckpt.pt", "model")
    def _resume_tf():
        d=tempfile.mkdtemp(); train(Tiny(), TC(out_dir=d), CORP, progress=False)
        return train(model.Transformer(CFG), TC(out_dir=d), CORP, progress=False, resume=True)
    add("checkpoints","resume transformer from module ckpt", _resume_tf, "ckpt.pt", "model")
    def _resume_junk():
        d=tempfile.mkdtemp(); open(os.path.join(d,"ckpt.pt"),"w").write("x")
        return train(Tiny(), TC(out_dir=d), CORP, progress=False, resume=True)
    add("checkpoints","resume junk", _resume_junk, "ckpt.pt")
    # train_cli
    from tfcore import train_cli
    def cli(*a):
        import contextlib, io
        with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
            try: rc=train_cli.main(list(a))
            except SystemExit as e: raise ValueError(err.getvalue()) from None
        raise ValueError(f"rc={rc} " + err.getvalue()) if rc else None
    for a in (["--time-budget","0"],["--time-budget","-5"],["--time-budget","nan"],["--checkpoint-interval","-1"],["--steps","0"],["--steps","-3"],["--seed","x"],["--preset","nope"],["--time-budget","inf"]):
        add("train_cli"," ".join(a), lambda a=a: cli(*a, "--out-dir", tempfile.mkdtemp(), "--no-progress", "--steps" if "--steps" not in a else "--seed", "1" if "--steps" not in a else "0"), a[0].lstrip("-"), a[0], a[0].lstrip("-").replace("-","_"))
    # viz
    from tfcore import viz
    for label,fn,name in (
      ("neuron activation", lambda: viz.NeuronExplorer("tanh"), "activation"),
      ("neuron along nan", lambda: viz.NeuronExplorer(along=NAN), "along"),
      ("neuron along 99", lambda: viz.NeuronExplorer(along=99.0), "along"),
      ("neuron across str", lambda: viz.NeuronExplorer(across="1"), "across"),
      ("neuron d_model 1", lambda: viz.NeuronExplorer(d_model=1), "d_model"),
      ("neuron d_model 2.5", lambda: viz.NeuronExplorer(d_model=2.5), "d_model"),
      ("neuron dpi 0", lambda: viz.NeuronExplorer(dpi=0), "dpi"),
      ("neuron dpi -5", lambda: viz.NeuronExplorer(dpi=-5), "dpi"),
      ("neuron seed str", lambda: viz.NeuronExplorer(seed="a"), "seed"),
      ("norm values nan", lambda: viz.NormExplorer([NAN, 1.0]), "values"),
      ("norm values 1", lambda: viz.NormExplorer([1.0]), "values"),
      ("norm values 13", lambda: viz.NormExplorer([1.0]*13), "values"),
      ("norm values 4", lambda: viz.NormExplorer([4.0, 1.0]), "values"),
      ("norm values str", lambda: viz.NormExplorer(["a", 1.0]), "values"),
      ("norm values scalar", lambda: viz.NormExplorer(3.0), "values"),
      ("norm values tensor 2D", lambda: viz.NormExplorer(torch.ones(2,3)), "values"),
      ("norm scale 0", lambda: viz.NormExplorer(scale=0.0), "scale"),
      ("norm scale nan", lambda: viz.NormExplorer(scale=NAN), "scale"),
      ("norm shift inf", lambda: viz.NormExplorer(shift=INF), "shift"),
      ("norm dpi 0", lambda: viz.NormExplorer(dpi=0), "dpi"),
      ("rope d_head 3", lambda: viz.RopeExplorer(d_head=3), "d_head"),
      ("rope d_head 0", lambda: viz.RopeExplorer(d_head=0), "d_head"),
      ("rope d_head 4.0", lambda: viz.RopeExplorer(d_head=4.0), "d_head"),
      ("rope qpos -1", lambda: viz.RopeExplorer(query_pos=-1), "query_pos"),
      ("rope kpos 49", lambda: viz.RopeExplorer(key_pos=49), "key_pos"),
      ("rope qpos 2.5", lambda: viz.RopeExplorer(query_pos=2.5), "query_pos"),
      ("rope max_pos 0", lambda: viz.RopeExplorer(0, 0, max_pos=0), "max_pos"),
      ("rope max_pos -1", lambda: viz.RopeExplorer(0, 0, max_pos=-1), "max_pos"),
      ("rope max_pos 2.5", lambda: viz.RopeExplorer(0, 0, max_pos=2.5), "max_pos"),
      ("rope base 0", lambda: viz.RopeExplorer(base=0.0), "base"),
      ("rope base -1", lambda: viz.RopeExplorer(base=-1.0), "base"),
      ("rope base nan", lambda: viz.RopeExplorer(base=NAN), "base"),
        ("rope dpi 0", lambda: viz.RopeExplorer(dpi=0), "dpi"),
      ("cost model", lambda: viz.CostCalculator("gpt5"), "model"),
      ("cost dtype", lambda: viz.CostCalculator(dtype="int3"), "dtype"),
      ("cost seq 100", lambda: viz.CostCalculator(seq_len=100), "seq_len"),
      ("cost seq 0", lambda: viz.CostCalculator(seq_len=0), "seq_len"),
      ("cost batch 0", lambda: viz.CostCalculator(batch=0), "batch"),
      ("cost batch -1", lambda: viz.CostCalculator(batch=-1), "batch"),
      ("cost batch 2.5", lambda: viz.CostCalculator(batch=2.5), "batch"),
      ("cost batch 1e6", lambda: viz.CostCalculator(batch=10**6), "batch"),
      ("cost dpi 0", lambda: viz.CostCalculator(dpi=0), "dpi"),
      ("table row short", lambda: viz.Table(["a","b"], [[1]]), "rows"),
      ("table rows not list", lambda: viz.Table(["a","b"], [1, 2]), "rows"),
      ("table columns empty", lambda: viz.Table([], []), "columns"),
      ("table columns str", lambda: viz.Table("ab", [[1, 2]]), "columns"),
      ("table rows str", lambda: viz.Table(["a"], "xy"), "rows"),
      ("table rows None", lambda: viz.Table(["a"], None), "rows"),
    ):
        add("viz", label, fn, name)

    try:
        import transformers
    except ImportError:
        return
    transformers.logging.set_verbosity_error()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from test_hf import make_hf

    from tfcore.hf import from_hf, gpt2_small_random, to_hf

    HG=make_hf("gpt2"); HSD=HG.state_dict(); HGC=HG.config
    HL=make_hf("llama"); HLSD=HL.state_dict(); HLC=HL.config
    def hf_without(sd,k): d=dict(sd); d.pop(k); return d
    def hf_changed(sd,k,v): d=dict(sd); d[k]=v; return d
    add("hf", "missing key", lambda: from_hf(hf_without(HSD,"transformer.h.0.ln_1.weight"), HGC), "transformer.h.0.ln_1.weight")
    add("hf", "extra key", lambda: from_hf({**HSD, "transformer.h.0.extra": torch.zeros(3)}, HGC), "transformer.h.0.extra")
    add("hf", "wrong shape", lambda: from_hf(hf_changed(HSD,"transformer.h.0.mlp.c_fc.weight", torch.zeros(40,24)), HGC), "transformer.h.0.mlp.c_fc.weight")
    add("hf", "wrong shape wte", lambda: from_hf(hf_changed(HSD,"transformer.wte.weight", torch.zeros(50,24)), HGC), "transformer.wte.weight", "vocab_size")
    add("hf", "wte 1D", lambda: from_hf(hf_changed(HSD,"transformer.wte.weight", torch.zeros(24)), HGC), "transformer.wte.weight")
    add("hf", "wte int", lambda: from_hf(hf_changed(HSD,"transformer.wte.weight", torch.zeros(53,24,dtype=torch.long)), HGC), "transformer.wte.weight")
    add("hf", "value list", lambda: from_hf(hf_changed(HSD,"transformer.h.0.ln_1.weight", [1.0]*24), HGC), "transformer.h.0.ln_1.weight")
    add("hf", "unsupported arch", lambda: from_hf(transformers.GPTNeoForCausalLM(transformers.GPTNeoConfig(vocab_size=53, hidden_size=16, num_layers=2, num_heads=2, attention_types=[[["global"],2]], max_position_embeddings=16))), "model_type")
    add("hf", "no config", lambda: from_hf(HSD), "hf_config")
    add("hf", "config dict", lambda: from_hf(HSD, HGC.to_dict()), "hf_config")
    add("hf", "not model", lambda: from_hf(3), "from_hf", "model_or_state_dict")
    add("hf", "config more layers", lambda: from_hf(HSD, transformers.GPT2Config(**{**HGC.to_dict(), "n_layer": 3})), "transformer.h.2.ln_1.weight", "n_layer")
    add("hf", "config fewer layers", lambda: from_hf(HSD, transformers.GPT2Config(**{**HGC.to_dict(), "n_layer": 1})), "transformer.h.1.ln_1.weight", "n_layer")
    add("hf", "config other vocab", lambda: from_hf(HSD, transformers.GPT2Config(**{**HGC.to_dict(), "vocab_size": 60})), "transformer.wte.weight", "vocab_size")
    add("hf", "config other heads 5", lambda: from_hf(HSD, transformers.GPT2Config(**{**HGC.to_dict(), "n_head": 5})), "n_head", "n_embd")
    add("hf", "config positions short", lambda: from_hf(HSD, transformers.GPT2Config(**{**HGC.to_dict(), "n_positions": 16})), "transformer.wpe.weight", "n_positions")
    add("hf", "config gpt2 with llama sd", lambda: from_hf(HLSD, HGC), "transformer.wte.weight")
    add("hf", "llama config gpt2 sd", lambda: from_hf(HSD, HLC), "model.embed_tokens.weight")
    add("hf", "llama kv heads differ", lambda: from_hf(HLSD, transformers.LlamaConfig(**{**HLC.to_dict(), "num_key_value_heads": 4})), "num_key_value_heads", "model.layers.0.self_attn.k_proj.weight")
    add("hf", "llama kv heads 3", lambda: from_hf(HLSD, transformers.LlamaConfig(**{**HLC.to_dict(), "num_key_value_heads": 3})), "num_key_value_heads")
    add("hf", "llama activation", lambda: from_hf(HLSD, transformers.LlamaConfig(**{**HLC.to_dict(), "hidden_act": "tanh"})), "hidden_act")
    add("hf", "llama rope theta 0", lambda: from_hf(HLSD, transformers.LlamaConfig(**{**HLC.to_dict(), "rope_theta": 0.0, "rope_parameters": {"rope_type":"default","rope_theta":0.0}})), "rope_theta")
    add("hf", "gpt2 activation", lambda: from_hf(HSD, transformers.GPT2Config(**{**HGC.to_dict(), "activation_function": "swish"})), "activation_function", "hf_config")
    add("hf", "gpt2 eps 0", lambda: from_hf(HSD, transformers.GPT2Config(**{**HGC.to_dict(), "layer_norm_epsilon": 0.0})), "layer_norm_epsilon")
    add("hf", "gpt2 eps -1", lambda: from_hf(HSD, transformers.GPT2Config(**{**HGC.to_dict(), "layer_norm_epsilon": -1e-5})), "layer_norm_epsilon")
    add("hf", "gpt2 scale_attn_by_inverse_layer_idx", lambda: from_hf(HSD, transformers.GPT2Config(**{**HGC.to_dict(), "scale_attn_by_inverse_layer_idx": True})), "scale_attn_by_inverse_layer_idx")
    add("hf", "gpt2 reorder_and_upcast", lambda: from_hf(HSD, transformers.GPT2Config(**{**HGC.to_dict(), "scale_attn_weights": False})), "scale_attn_weights")
    add("hf", "to_hf not model", lambda: to_hf(3), "model")
    add("hf", "to_hf encoder", lambda: to_hf(model.Transformer(model.TransformerConfig(vocab_size=11, d_model=16, n_layers=1, n_heads=4, max_seq_len=16, architecture="encoder"))), "architecture")
    add("hf", "to_hf alibi", lambda: to_hf(model.Transformer(model.TransformerConfig(vocab_size=11, d_model=16, n_layers=1, n_heads=4, max_seq_len=16, positions="alibi"))), "positions")
    add("hf", "to_hf postln", lambda: to_hf(model.Transformer(model.TransformerConfig(vocab_size=11, d_model=16, n_layers=1, n_heads=4, max_seq_len=16, placement="post"))), "placement")
    add("hf", "gpt2_small_random bad field", lambda: gpt2_small_random(n_layers=2), "n_layers")
    add("hf", "gpt2_small_random n_layer 0", lambda: from_hf(gpt2_small_random(n_layer=0, n_embd=16, n_head=2, vocab_size=10, n_positions=8)), "n_layer", "hf_config")
    add("hf", "gpt2_small_random n_embd not div", lambda: gpt2_small_random(n_layer=1, n_embd=10, n_head=3, vocab_size=10, n_positions=8), "n_embd", "n_head")


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
    try:
        add_second_pass()
    except ImportError as e:  # an older tree: the first survey only
        print(f"(second pass left out: {e})")
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
