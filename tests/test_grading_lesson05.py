"""Tests-for-tests of lesson 05's checks (norms.*): see tests/test_grading.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_grading import Entry, case_params, run_case


def layer_norm(x, weight, bias, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * weight + bias


def layer_norm_numpy(x, weight, bias, eps=1e-5):
    a = x.numpy().astype(np.float64)
    y = (a - a.mean(-1, keepdims=True)) / np.sqrt(a.var(-1, keepdims=True) + eps)
    return torch.from_numpy(y * weight.numpy() + bias.numpy()).to(x.dtype)


def _ln(unbiased=False, eps_outside=False, eps_fixed=None, naive_var=False, swap=False):
    def answer(x, weight, bias, eps=1e-5):
        e = eps if eps_fixed is None else eps_fixed
        mu = x.mean(-1, keepdim=True)
        var = (x * x).mean(-1, keepdim=True) - mu * mu if naive_var else x.var(-1, keepdim=True, unbiased=unbiased)
        denom = torch.sqrt(var) + e if eps_outside else torch.sqrt(var + e)
        w, b = (bias, weight) if swap else (weight, bias)
        return (x - mu) / denom * w + b

    return answer


def rms_norm(x, weight, eps=1e-6):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rms_norm_norm(x, weight, eps=1e-6):
    d = x.shape[-1]
    return weight * x / torch.sqrt(torch.linalg.vector_norm(x, dim=-1, keepdim=True) ** 2 / d + eps)


def _rms(centre=False, eps_outside=False, eps_fixed=None, total=False, default_eps=1e-6):
    def answer(x, weight, eps=default_eps):
        e = eps if eps_fixed is None else eps_fixed
        z = x - x.mean(-1, keepdim=True) if centre else x
        ms = z.pow(2).sum(-1, keepdim=True) if total else z.pow(2).mean(-1, keepdim=True)
        denom = torch.sqrt(ms) + e if eps_outside else torch.sqrt(ms + e)
        return z / denom * weight

    return answer


CASES = {
    "norms.layer_norm": Entry(
        solution=layer_norm,
        styles={"torch": lambda x, w, b, eps=1e-5: F.layer_norm(x, (x.shape[-1],), w, b, eps),
                "numpy_float64": layer_norm_numpy},
        wrong={
            "unbiased": (_ln(unbiased=True), "you used the unbiased variance"),
            "eps_outside": (_ln(eps_outside=True), "eps inside vs outside the sqrt"),
            "no_eps": (_ln(eps_fixed=0.0), "forgot eps"),
            "hard_coded_eps": (_ln(eps_fixed=1e-5), "ignored the eps argument"),
            "naive_variance": (_ln(naive_var=True), "cancels catastrophically"),
            "swapped": (_ln(swap=True), "weight and bias swapped"),
            "wrong_axis": (lambda x, w, b, eps=1e-5: (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + eps) * w + b,
                           "normalised over the wrong axis"),
        },
    ),
    "norms.rms_norm": Entry(
        solution=rms_norm,
        styles={"torch": lambda x, w, eps=1e-6: F.rms_norm(x, (x.shape[-1],), w, eps), "vector_norm": rms_norm_norm},
        wrong={
            "centred": (_rms(centre=True), "you subtracted the mean"),
            "eps_outside": (_rms(eps_outside=True), "eps inside vs outside the sqrt"),
            "sum": (_rms(total=True), "sum of squares"),
            "hard_coded_eps": (_rms(eps_fixed=1e-6), "ignored the eps argument"),
            "layer_norm_eps": (_rms(default_eps=1e-5), "wrong default eps"),
            "no_weight": (lambda x, w, eps=1e-6: x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps), "forgot the weight"),
        },
    ),
}


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson05_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)
