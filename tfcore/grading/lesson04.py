"""Checks for lesson 04 (feed-forward network): ``mlp.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson04.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tfcore.grading import Checker, exercise
from tfcore.mlp import swiglu

LESSON = "04_mlp"


# ----------------------------------------------------------------------------- mlp.swiglu


@exercise("mlp.swiglu", "SwiGLU: (silu(x W1^T) * (x W3^T)) W2^T", lesson=LESSON)
def _swiglu(answer, c: Checker) -> None:
    cases = [
        ("x (2, 5, 6), d_ff=7", c.randn(2, 5, 6), 7),
        ("x (4, 8), d_ff=11", c.randn(4, 8), 11),
        ("a single token x (5,), d_ff=3", c.randn(5), 3),
        ("x (1, 1, 4), d_ff=12", c.randn(1, 1, 4, scale=3.0), 12),
        ("a transposed (non-contiguous) x (2, 3, 6), d_ff=9", c.randn(6, 3, 2).transpose(0, 2), 9),
    ]
    for case, x, d_ff in cases:
        d = x.shape[-1]
        w1, w3 = c.randn(d_ff, d, scale=0.5), c.randn(d_ff, d, scale=0.5)
        w2 = c.randn(d, d_ff, scale=0.5)
        ref = swiglu(x, w1, w2, w3)
        out = c.call(answer, x, w1, w2, w3, case=case,
                     hint="the weights are in nn.Linear layout (out, in): x @ w1.T, then @ w2.T")
        gate, up = x @ w1.T, x @ w3.T
        c.compare(out, ref, case, atol=1e-5, rtol=1e-4, wrong=[
            ("the gate is W1: silu(x W1^T) * (x W3^T), not silu(x W3^T) * (x W1^T)", lambda: (F.silu(up) * gate) @ w2.T),
            ("used sigmoid instead of silu: silu(z) = z * sigmoid(z)", lambda: (torch.sigmoid(gate) * up) @ w2.T),
            ("used ReLU instead of SiLU: silu(z) = z * sigmoid(z)", lambda: (torch.relu(gate) * up) @ w2.T),
            ("used GELU instead of SiLU: silu(z) = z * sigmoid(z)", lambda: (F.gelu(gate) * up) @ w2.T),
            ("applied silu to the product: only the gate x W1^T goes through silu", lambda: F.silu(gate * up) @ w2.T),
            ("dropped the up projection: multiply silu(x W1^T) by x W3^T", lambda: F.silu(gate) @ w2.T),
            ("forgot the down projection W2: the output must have d_model channels", lambda: F.silu(gate) * up),
        ])
