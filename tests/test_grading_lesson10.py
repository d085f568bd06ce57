"""Tests-for-tests of lesson 10's checks (diagnostics.*): see tests/test_grading.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from test_grading import Entry, case_params, run_case


def attention_entropy(weights):
    logs = torch.where(weights > 0, weights.log(), torch.zeros_like(weights))
    return -(weights * logs).sum(-1)


def entropy_numpy(weights):
    w = weights.numpy().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0)
    return torch.from_numpy(-terms.sum(-1)).to(weights.dtype)


def entropy_loop(weights):
    rows = weights.reshape(-1, weights.shape[-1])
    out = [-sum(a * math.log(a) for a in row.tolist() if a > 0) for row in rows]
    return torch.tensor(out, dtype=weights.dtype).reshape(weights.shape[:-1])


CASES = {
    "diagnostics.attention_entropy": Entry(
        solution=attention_entropy,
        styles={"xlogy": lambda w: -torch.special.xlogy(w, w).sum(-1), "numpy": entropy_numpy, "loop": entropy_loop},
        wrong={
            "naive": (lambda w: -(w * w.log()).sum(-1), "0 log 0 = 0"),
            "log2": (lambda w: -torch.special.xlogy(w, w).sum(-1) / math.log(2), "log base 2 instead of natural log"),
            "no_minus": (lambda w: torch.special.xlogy(w, w).sum(-1), "forgot the minus sign"),
            "wrong_axis": (lambda w: -torch.special.xlogy(w, w).sum(-2), "summed over the wrong axis"),
            "mean": (lambda w: -torch.special.xlogy(w, w).mean(-1), "averaged over the keys"),
        },
    ),
}


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson10_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)
