"""Checks for lesson 05 (residuals and normalisation): ``norms.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson05.py``.
"""

from __future__ import annotations

import torch

from tfcore.grading import Checker, exercise
from tfcore.norms import layer_norm, rms_norm

LESSON = "05_norms"

WRONG_AXIS = "normalised over the wrong axis: each token is normalised over its last axis (d_model)"


def _norm_cases(c: Checker) -> list:
    """(case, x, eps or None for the default) for both norms."""
    return [
        ("x (2, 3, 7)", c.randn(2, 3, 7, scale=2.0) + 0.5, None),
        ("a single vector x (5,)", c.randn(5), None),
        ("small-variance x (3, 8) (std 1e-3: eps matters)", 0.5 + c.randn(3, 8, scale=1e-3), None),
        ("tiny x (3, 8) (values about 1e-3: eps matters)", c.randn(3, 8, scale=1e-3), None),
        ("eps=1e-2 passed explicitly", c.randn(4, 6, scale=0.1), 1e-2),
        ("a transposed (non-contiguous) x (2, 5, 6)", c.randn(2, 6, 5).transpose(1, 2), None),
        ("d_model = 1: x (4, 1)", c.randn(4, 1), None),
        ("large mean: x (4, 16) around 1000", 1e3 + c.randn(4, 16), None),
    ]


def _call(answer, c: Checker, case: str, *args, eps):
    hint = "the signature is fixed by the exercise, with eps as a keyword argument"
    if eps is None:
        return c.call(answer, *args, case=case, hint=hint)
    return c.call(answer, *args, eps=eps, case=case, hint=hint)


# ----------------------------------------------------------------------------- norms.layer_norm


@exercise("norms.layer_norm", "LayerNorm over the last axis: gamma (x - mu) / sqrt(var + eps) + beta", lesson=LESSON)
def _layer_norm(answer, c: Checker) -> None:
    for case, x, eps in _norm_cases(c):
        d = x.shape[-1]
        w, b = 1.0 + c.randn(d, scale=0.5), c.randn(d, scale=0.5)
        e = 1e-5 if eps is None else eps
        ref = layer_norm(x, w, b, e)
        out = _call(answer, c, case, x, w, b, eps=eps)
        mu = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)

        def norm(v, eps_inside=e, eps_outside=0.0, centre=mu):
            return (x - centre) / (torch.sqrt(v + eps_inside) + eps_outside) * w + b

        c.compare(out, ref, case, atol=1e-3 if "large mean" in case else 1e-5, rtol=1e-4, wrong=[
            ("you used the unbiased variance (dividing by d - 1): LayerNorm uses the biased one "
             "(unbiased=False or correction=0)", lambda: norm(x.var(-1, keepdim=True, unbiased=True))),
            ("eps inside vs outside the sqrt: divide by sqrt(var + eps), not sqrt(var) + eps",
             lambda: norm(var, eps_inside=0.0, eps_outside=e)),
            ("used x.std() (unbiased) with eps outside the sqrt: divide by sqrt(x.var(unbiased=False) + eps)",
             lambda: norm(x.var(-1, keepdim=True, unbiased=True), eps_inside=0.0, eps_outside=e)),
            ("forgot eps: divide by sqrt(var + eps)", lambda: norm(var, eps_inside=0.0)),
            ("ignored the eps argument (used the default 1e-5)", lambda: norm(var, eps_inside=1e-5)),
            ("wrong default eps: layer_norm's default is eps=1e-5", lambda: norm(var, eps_inside=1e-6)),
            ("computed the variance as mean(x^2) - mean(x)^2, which cancels catastrophically when the mean "
             "is large: use ((x - mu)^2).mean()", lambda: norm((x * x).mean(-1, keepdim=True) - mu * mu)),
            (WRONG_AXIS, lambda: (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + e) * w + b),
            (WRONG_AXIS, lambda: (x - x.mean(0, keepdim=True)) / torch.sqrt(x.var(0, keepdim=True, unbiased=False) + e) * w + b),
            ("forgot the bias (beta): y = weight * x_hat + bias", lambda: norm(var) - b),
            ("forgot the weight (gamma): y = weight * x_hat + bias", lambda: (x - mu) / torch.sqrt(var + e) + b),
            ("weight and bias swapped: y = weight * x_hat + bias", lambda: (x - mu) / torch.sqrt(var + e) * b + w),
        ], nonfinite=("NaN: with d_model = 1 the unbiased variance divides by d - 1 = 0; LayerNorm uses the "
                      "biased variance" if d == 1 else None))


# ----------------------------------------------------------------------------- norms.rms_norm


@exercise("norms.rms_norm", "RMSNorm over the last axis: gamma x / sqrt(mean(x^2) + eps)", lesson=LESSON)
def _rms_norm(answer, c: Checker) -> None:
    for case, x, eps in _norm_cases(c):
        d = x.shape[-1]
        w = 1.0 + c.randn(d, scale=0.5)
        e = 1e-6 if eps is None else eps
        ref = rms_norm(x, w, e)
        out = _call(answer, c, case, x, w, eps=eps)
        ms = x.pow(2).mean(-1, keepdim=True)

        def norm(v, eps_inside=e, eps_outside=0.0, centre=0.0):
            return (x - centre) / (torch.sqrt(v + eps_inside) + eps_outside) * w

        c.compare(out, ref, case, atol=1e-5, rtol=1e-4, wrong=[
            ("you subtracted the mean: RMSNorm does not centre (that is LayerNorm)",
             lambda: norm(x.var(-1, keepdim=True, unbiased=False), centre=x.mean(-1, keepdim=True))),
            ("divided by the standard deviation: RMSNorm divides by the root mean square sqrt(mean(x^2) + eps)",
             lambda: norm(x.var(-1, keepdim=True, unbiased=False))),
            ("eps inside vs outside the sqrt: divide by sqrt(mean(x^2) + eps), not sqrt(mean(x^2)) + eps",
             lambda: norm(ms, eps_inside=0.0, eps_outside=e)),
            ("forgot eps: divide by sqrt(mean(x^2) + eps)", lambda: norm(ms, eps_inside=0.0)),
            ("ignored the eps argument (used the default 1e-6)", lambda: norm(ms, eps_inside=1e-6)),
            ("wrong default eps: rms_norm's default is eps=1e-6", lambda: norm(ms, eps_inside=1e-5)),
            ("used the sum of squares instead of the mean: sqrt(mean(x^2) + eps)", lambda: norm(x.pow(2).sum(-1, keepdim=True))),
            (WRONG_AXIS, lambda: x / torch.sqrt(x.pow(2).mean() + e) * w),
            (WRONG_AXIS, lambda: x / torch.sqrt(x.pow(2).mean(0, keepdim=True) + e) * w),
            ("forgot the weight (gamma): y = weight * x / rms", lambda: x / torch.sqrt(ms + e)),
        ])
