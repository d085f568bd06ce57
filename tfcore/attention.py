"""Scaled dot-product attention, written out step by step (lesson 01).

    S = Q K^T * scale          scores,  (..., T_q, T_k)
    A = softmax(S + mask)      weights, every row sums to 1 over the key axis
    O = A V                    output,  (..., T_q, d_v)

Masks follow one rule everywhere in tfcore: a boolean mask is True where a query
may attend to a key; a float mask is added to the scores (0 keeps, -inf hides);
its shape is (T_q, T_k) or has as many axes as the scores (the full rule, and what
is refused: ``tfcore.masks``). A row whose keys are all hidden gets zero weights and
a zero output, not NaN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tfcore._checks import (
    require_float,
    require_int,
    require_min_ndim,
    require_nonempty,
    require_positive_number,
    require_same_device_dtype,
    require_same_size,
)
from tfcore.masks import causal_mask, check_mask


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax along ``dim``; rows that are all ``-inf`` give zeros.

    Subtracting the row maximum leaves the result unchanged (it cancels between
    numerator and denominator) and keeps ``exp`` from overflowing for large logits.

    x: any shape, floating point. Returns the same shape.
    """
    require_float("x", x)
    require_int("dim", dim)
    n = max(x.dim(), 1)
    if not -n <= dim < n:
        raise ValueError(f"dim must lie in [{-n}, {n}) for x of shape {tuple(x.shape)}, got {dim}")
    row_max = x.amax(dim=dim, keepdim=True)
    # A row of only -inf has max -inf; use 0 there so that exp(-inf - 0) = 0, not NaN.
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    e = torch.exp(x - row_max)
    total = e.sum(dim=dim, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))


def apply_mask(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Hide the scores a mask forbids.

    scores: (..., T_q, T_k). mask: bool (True = may attend) or float (added), of shape
    (T_q, T_k) or with as many axes as the scores (the rule: ``tfcore.masks``).
    Returns masked scores of the same shape.
    """
    if mask is None:
        return scores
    check_mask(mask, scores.shape, scores.device)
    if mask.dtype == torch.bool:
        return scores.masked_fill(~mask, float("-inf"))
    return scores + mask.to(scores.dtype)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Attention ``softmax(q k^T * scale + mask) v`` with every intermediate explicit.

    q: (..., T_q, d), k: (..., T_k, d), v: (..., T_k, d_v); leading axes broadcast
    (equal or 1), typically (B, h). mask: bool (True = may attend) or additive float,
    (T_q, T_k) or with as many axes as the scores (..., T_q, T_k): the rule is in
    ``tfcore.masks``. is_causal: query i sees keys j <= i + (T_k - T_q), i.e. the
    causal mask is aligned to the last key, as when decoding with a KV cache (T_k >= T_q).
    scale: a positive number, default 1 / sqrt(d).

    Returns the output (..., T_q, d_v), and the weights (..., T_q, T_k) if
    ``return_weights``. Fully masked query rows give zero weights and zero output.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        require_min_ndim(name, t, 2, "(..., T, d)")
        require_float(name, t)
    require_same_device_dtype(("q", "k", "v"), (q, k, v))
    require_same_size("k", k.shape[-1], "q", q.shape[-1], "d_head")
    require_same_size("v", v.shape[-2], "k", k.shape[-2], "T_k")
    require_nonempty("k", k, "(T_k, d_head)")
    require_nonempty("q", q, "(T_q, d_head)")
    _require_broadcastable_leading_axes(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else require_positive_number("scale", scale)

    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (..., T_q, T_k)
    scores = apply_mask(scores, mask)
    if is_causal:
        t_q, t_k = q.shape[-2], k.shape[-2]
        scores = apply_mask(scores, causal_mask(t_q, t_k, device=q.device))
    weights = softmax(scores, dim=-1)  # each row sums to 1 (or is all zero if fully masked)
    out = torch.matmul(weights, v)  # (..., T_q, d_v)
    return (out, weights) if return_weights else out


def _require_broadcastable_leading_axes(q: Tensor, k: Tensor, v: Tensor) -> None:
    """Raise unless the leading axes (everything before (T, d), e.g. (B, h)) of q, k, v are equal or 1."""
    lead = {"q": q.shape[:-2], "k": k.shape[:-2], "v": v.shape[:-2]}
    n = max(len(x) for x in lead.values())
    names = ("B", "h")[-n:] if n <= 2 else tuple(f"axis {i}" for i in range(n))
    for axis in range(1, n + 1):  # right-aligned, as broadcasting is
        sizes = {name: shape[-axis] for name, shape in lead.items() if len(shape) >= axis}
        big = {name: size for name, size in sizes.items() if size != 1}
        if len(set(big.values())) > 1:
            a, size_a = next(iter(big.items()))  # dicts keep the order q, k, v
            b, size_b = next((name, size) for name, size in big.items() if size != size_a)
            axis_name = names[-axis]
            raise ValueError(f"{b} has {axis_name}={size_b} but {a} has {axis_name}={size_a}: "
                             "the axes before (T, d) must be equal or 1 (broadcast)")

