"""Tests-for-tests of lesson 04's checks (mlp.*): see tests/test_grading.py."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from test_grading import Entry, case_params, run_case


def swiglu(x, w1, w2, w3):
    return (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T


def swiglu_linear(x, w1, w2, w3):
    return F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)


def swiglu_einsum(x, w1, w2, w3):
    gate = torch.einsum("...i,fi->...f", x, w1)
    up = torch.einsum("...i,fi->...f", x, w3)
    return torch.einsum("...f,df->...d", gate * torch.sigmoid(gate) * up, w2)


CASES = {
    "mlp.swiglu": Entry(
        solution=swiglu,
        styles={"F.linear": swiglu_linear, "einsum": swiglu_einsum},
        wrong={
            "gate_on_w3": (lambda x, w1, w2, w3: (F.silu(x @ w3.T) * (x @ w1.T)) @ w2.T, "the gate is W1"),
            "sigmoid": (lambda x, w1, w2, w3: (torch.sigmoid(x @ w1.T) * (x @ w3.T)) @ w2.T, "sigmoid instead of silu"),
            "relu": (lambda x, w1, w2, w3: (torch.relu(x @ w1.T) * (x @ w3.T)) @ w2.T, "ReLU instead of SiLU"),
            "untransposed": (lambda x, w1, w2, w3: (F.silu(x @ w1) * (x @ w3)) @ w2, "nn.Linear layout"),
            "silu_of_product": (lambda x, w1, w2, w3: F.silu((x @ w1.T) * (x @ w3.T)) @ w2.T, "silu to the product"),
            "no_down": (lambda x, w1, w2, w3: F.silu(x @ w1.T) * (x @ w3.T), "forgot the down projection"),
        },
    ),
}


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson04_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)
