"""Checks for lesson 10 (diagnostics): ``diagnostics.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson10.py``.
"""

from __future__ import annotations

import math

import torch

from tfcore.attention import scaled_dot_product_attention, softmax
from tfcore.diagnostics import attention_entropy
from tfcore.grading import Checker, exercise

LESSON = "10_diagnostics"


# ----------------------------------------------------------------------------- diagnostics.attention_entropy


@exercise("diagnostics.attention_entropy", "entropy of each attention row, natural log, 0 log 0 = 0", lesson=LESSON)
def _attention_entropy(answer, c: Checker) -> None:
    _, causal = scaled_dot_product_attention(*(c.randn(4, 3) for _ in range(3)), is_causal=True, return_weights=True)
    cases = [
        ("random weights (2, 3, 5, 7)", softmax(c.randn(2, 3, 5, 7, scale=2.0))),
        ("uniform rows (2, 4, 4): entropy log 4", torch.full((2, 4, 4), 0.25)),
        ("one-hot rows (the identity, 3 x 3): entropy 0", torch.eye(3)),
        ("causal weights (4, 4), zeros above the diagonal", causal),
        ("T_q=3, T_k=6", softmax(c.randn(3, 6))),
        ("a transposed (non-contiguous) view (2, 4, 5)", softmax(c.randn(2, 5, 4), dim=1).transpose(1, 2)),
    ]
    for case, w in cases:
        ref = attention_entropy(w)
        out = c.call(answer, w, case=case)
        plogp = torch.where(w > 0, w * w.log(), torch.zeros_like(w))
        c.compare(out, ref, case, atol=1e-5, rtol=1e-4, wrong=[
            ("log base 2 instead of natural log", lambda: ref / math.log(2)),
            ("forgot the minus sign: H = -sum a log a is >= 0", lambda: -ref),
            ("summed over the wrong axis: sum over the keys (the last axis)", lambda: -plogp.sum(-2)),
            ("averaged over the keys instead of summing", lambda: -plogp.mean(-1)),
            ("divided by log T_k: return the entropy itself (compare with log T_k separately)",
             lambda: ref / math.log(w.shape[-1]) if w.shape[-1] > 1 else None),
            ("summed over both axes: return one entropy per query row, shape (..., T_q)", lambda: -plogp.sum((-2, -1))),
        ], nonfinite="NaN where a weight is 0: define 0 log 0 = 0 (torch.where, or torch.special.xlogy)")
