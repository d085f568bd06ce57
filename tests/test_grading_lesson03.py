"""Tests-for-tests of lesson 03's checks (heads.*): see tests/test_grading.py."""
from __future__ import annotations

import pytest
import torch

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
}


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson03_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)
