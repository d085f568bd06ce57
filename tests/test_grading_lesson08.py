"""Tests-for-tests of lesson 08's checks (complexity.*): see tests/test_grading.py."""
from __future__ import annotations

import math

import numpy as np
import pytest

from test_grading import Entry, case_params, run_case


def kv_cache_bytes(n_layers, batch, seq_len, n_kv_heads, d_head, bytes_per_value):
    return 2 * n_layers * batch * seq_len * n_kv_heads * d_head * bytes_per_value


def kv_cache_bytes_steps(n_layers, batch, seq_len, n_kv_heads, d_head, bytes_per_value):
    per_token_per_layer = 2 * n_kv_heads * d_head  # one key and one value vector per KV head
    values = per_token_per_layer * seq_len * batch * n_layers
    return values * bytes_per_value


def attention_flops(batch, n_heads, seq_len, d_head):
    return 4 * batch * n_heads * seq_len ** 2 * d_head


def attention_flops_matmuls(batch, n_heads, seq_len, d_head):
    def matmul(m, k, n):  # (m, k) @ (k, n): m n dot products of length k, 2 FLOPs per multiply-add
        return 2 * m * k * n

    return batch * n_heads * (matmul(seq_len, d_head, seq_len) + matmul(seq_len, seq_len, d_head))


CASES = {
    "complexity.kv_cache_bytes": Entry(
        solution=kv_cache_bytes,
        styles={"steps": kv_cache_bytes_steps,
                "numpy_int": lambda *args: np.prod(np.array([2, *args], dtype=np.int64)),
                "math.prod": lambda *args: math.prod((2, *args))},
        wrong={
            "no_factor_2": (lambda l, b, t, h, d, n: l * b * t * h * d * n, "forgot the factor 2 for keys AND values"),
            "float": (lambda *args: 2.0 * math.prod(args), "return an int"),
            "no_bytes": (lambda l, b, t, h, d, n: 2 * l * b * t * h * d, "forgot bytes_per_value"),
            "no_layers": (lambda l, b, t, h, d, n: 2 * b * t * h * d * n, "forgot n_layers"),
            "gib": (lambda *args: 2 * math.prod(args) / 2**30, "returned GiB"),
        },
    ),
    "complexity.attention_flops": Entry(
        solution=attention_flops,
        styles={"two_matmuls": attention_flops_matmuls},
        wrong={
            "multiply_add_as_one": (lambda b, h, t, d: 2 * b * h * t * t * d, "half the expected count"),
            "linear_in_t": (lambda b, h, t, d: 4 * b * h * t * d, "T^2"),
            "quarter": (lambda b, h, t, d: b * h * t * t * d, "a quarter"),
            "float": (lambda b, h, t, d: 4.0 * b * h * t * t * d, "return an int"),
            "no_heads": (lambda b, h, t, d: 4 * b * t * t * d, "forgot the heads"),
        },
    ),
}


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson08_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)
