"""Tests-for-tests of lesson 03's checks (heads.*): see tests/test_grading.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_grading import Entry, case_params, run_case


def split_heads(x, n_heads):
    b, t, d = x.shape
    return x.view(b, t, n_heads, d // n_heads).transpose(1, 2)


def split_heads_chunks(x, n_heads):
    return torch.stack(x.chunk(n_heads, dim=-1), dim=1)


def split_heads_loop(x, n_heads):
    d_head = x.shape[-1] // n_heads
    return torch.stack([x[..., i * d_head:(i + 1) * d_head] for i in range(n_heads)], dim=1)


def merge_heads(x):
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def merge_heads_cat(x):
    return torch.cat([x[:, i] for i in range(x.shape[1])], dim=-1)


def merge_heads_einsum_like(x):
    return x.permute(0, 2, 1, 3).flatten(2)


def repeat_kv(x, n_rep):
    b, h, t, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, t, d).reshape(b, h * n_rep, t, d)


def repeat_kv_loop(x, n_rep):
    return torch.cat([x[:, i:i + 1] for i in range(x.shape[1]) for _ in range(n_rep)], dim=1)


# ----------------------------------------------------------------------------- heads.param_count


def param_count(d_model, n_heads, n_kv_heads, bias):
    kv = n_kv_heads * (d_model // n_heads)
    return 2 * d_model * d_model + 2 * d_model * kv + ((2 * d_model + 2 * kv) if bias else 0)


def param_count_module(d_model, n_heads, n_kv_heads, bias):
    from tfcore.heads import MultiHeadAttention

    with torch.device("meta"):  # shapes only, no memory
        layer = MultiHeadAttention(d_model, n_heads, n_kv_heads, bias=bias)
    return sum(p.numel() for p in layer.parameters())


# ----------------------------------------------------------------------------- heads.mha


def mha(x, w_q, w_k, w_v, w_o, n_heads):
    b, t, d = x.shape
    d_head = d // n_heads

    def split(a):
        return a.reshape(b, t, n_heads, d_head).transpose(1, 2)

    q, k, v = split(x @ w_q.T), split(x @ w_k.T), split(x @ w_v.T)
    a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d_head), dim=-1)
    return (a @ v).transpose(1, 2).reshape(b, t, d) @ w_o.T


def mha_sdpa(x, w_q, w_k, w_v, w_o, n_heads):
    b, t, d = x.shape
    q, k, v = (F.linear(x, w).view(b, t, n_heads, -1).transpose(1, 2) for w in (w_q, w_k, w_v))
    return F.linear(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d), w_o)


def mha_loop(x, w_q, w_k, w_v, w_o, n_heads):
    d_head = x.shape[-1] // n_heads
    outs = []
    for i in range(n_heads):
        rows = slice(i * d_head, (i + 1) * d_head)
        q, k, v = x @ w_q[rows].T, x @ w_k[rows].T, x @ w_v[rows].T
        outs.append(torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d_head), dim=-1) @ v)
    return torch.cat(outs, dim=-1) @ w_o.T


def mha_torch(x, w_q, w_k, w_v, w_o, n_heads):
    layer = torch.nn.MultiheadAttention(x.shape[-1], n_heads, bias=False, batch_first=True)
    with torch.no_grad():
        layer.in_proj_weight.copy_(torch.cat((w_q, w_k, w_v)))
        layer.out_proj.weight.copy_(w_o)
        return layer(x, x, x, need_weights=False)[0]


def _mha_with(**change):
    from tfcore.grading.lesson03 import _mha_variant

    return lambda x, w_q, w_k, w_v, w_o, n_heads: _mha_variant(x, w_q, w_k, w_v, w_o, n_heads, **change)


CASES = {
    "heads.split": Entry(
        solution=split_heads,
        styles={"chunks": split_heads_chunks, "loop": split_heads_loop},
        wrong={
            "reshape_only": (lambda x, h: x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h),
                             "did you reshape without transposing?"),
            "no_transpose": (lambda x, h: x.reshape(x.shape[0], x.shape[1], h, x.shape[2] // h), "forgot the transpose"),
            "channel_order": (lambda x, h: x.reshape(x.shape[0], x.shape[1], x.shape[2] // h, h).permute(0, 3, 1, 2),
                              "channels assigned to heads wrongly"),
            "transpose_last": (lambda x, h: split_heads(x, h).transpose(1, 3), "wrong shape"),
        },
    ),
    "heads.merge": Entry(
        solution=merge_heads,
        styles={"cat": merge_heads_cat, "permute_flatten": merge_heads_einsum_like},
        wrong={
            "reshape_only": (lambda x: x.reshape(x.shape[0], x.shape[2], -1), "did you reshape without transposing?"),
            "view_after_transpose": (lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1), "not contiguous"),
            "channel_order": (lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1), "channels interleaved"),
            "no_reshape": (lambda x: x.transpose(1, 2), "returned (B, T, h, d_head)"),
        },
    ),
    "heads.repeat_kv": Entry(
        solution=repeat_kv,
        styles={"repeat_interleave": lambda x, n: x.repeat_interleave(n, dim=1), "loop": repeat_kv_loop},
        wrong={
            "tile": (lambda x, n: x.repeat(1, n, 1, 1), "query head i must use kv head i // n_rep"),
            "time_axis": (lambda x, n: x.repeat_interleave(n, dim=2), "repeated along the wrong axis"),
            "expand_only": (lambda x, n: x[:, :, None].expand(-1, -1, n, -1, -1), "expand adds an axis"),
            "unchanged": (lambda x, n: x, "repeat each one n_rep times"),
        },
    ),

    "heads.param_count": Entry(
        solution=param_count,
        styles={"module": param_count_module, "numpy_int": lambda *a: np.int64(param_count(*a))},
        wrong={
            "mha_only": (lambda d, h, kv, b: 4 * d * d + (4 * d if b else 0), "ignored n_kv_heads"),
            "kv_times_d_model": (lambda d, h, kv, b: 2 * d * d + 2 * d * kv * d + ((2 * d + 2 * kv * d) if b else 0),
                                 "not n_kv_heads * d_model"),
            "no_w_o": (lambda d, h, kv, b: param_count(d, h, kv, b) - d * d - (d if b else 0), "W_O is missing"),
            "no_bias": (lambda d, h, kv, b: param_count(d, h, kv, False), "forgot the biases"),
            "kv_bias_d_model": (lambda d, h, kv, b: param_count(d, h, kv, False) + (4 * d if b else 0),
                                "not d_model"),
            "float": (lambda *a: float(param_count(*a)), "return an int"),
        },
    ),
    "heads.mha": Entry(
        solution=mha,
        styles={"sdpa": mha_sdpa, "loop": mha_loop, "nn.MultiheadAttention": mha_torch},
        wrong={
            "no_scale": (_mha_with(scale="none"), "forgot the 1/sqrt(d_head) scale"),
            "scale_d_model": (_mha_with(scale="model"), "scaled by 1/sqrt(d_model)"),
            "split_view": (_mha_with(split="view"), "heads mixed up when splitting"),
            "merge_view": (_mha_with(merge="view"), "heads mixed up when merging"),
            "no_w_o": (_mha_with(out_proj=False), "output projection is missing"),
            "untransposed": (_mha_with(transpose_w=True), "nn.Linear layout"),
            "softmax_queries": (_mha_with(softmax_dim=-2), "softmax over the wrong axis"),
            "one_head": (lambda x, w_q, w_k, w_v, w_o, n_heads: mha(x, w_q, w_k, w_v, w_o, 1), "n_heads was ignored"),
            "causal": (_mha_with(causal=True), "applied a causal mask"),
        },
    ),
}


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson03_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)


# prediction ID -> (right answers, wrong answers, a piece of the reasoning, the value as the feedback shows it);
# collected by tests/test_grading_predictions.py
PREDICTION_CASES = {
    "heads.predict_more_heads_params": (["B", "b", "(B)", "stays the same"], ["A", "C", "d"],
                                        "4 d^2 + 4 d = 2 362 368", "(B) stays the same"),
    "heads.predict_ablated_induction": (["B", "(b)", "fall well below 0.8"], ["A", "C"],
                                        "the pattern depends on layer 0's output", "(B) fall well below"),
    # 1/sqrt(64) = 0.125 is right; 1/sqrt(d_head) = 0.25, 1/d_head, 0 (random = orthogonal) and 1 are not
    "heads.predict_random_composition": ([0.125, 1 / 8, 0.1, 0.15, math.sqrt(1 / 64)],
                                         [0, 0.25, 1 / 16, 1 / 64, 0.5, 1.0], "1/sqrt(64) = 0.125", "0.1249"),
    # 16 GiB (17.2 GB passes too); without the 2 for K and V: 8; fp32: 32; one layer: 0.5; one sequence: 2
    "heads.predict_kv_cache_gib": ([16, 2**34 / 2**30, 17.18, 14], [8, 32, 0.5, 2, 64], "0.5 MiB per token",
                                   "16 GiB"),
}
