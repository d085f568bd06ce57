"""Tests-for-tests of lesson 02's checks (masks.*): see tests/test_grading.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from test_grading import Entry, case_params, run_case


def causal_mask(t):
    return torch.tril(torch.ones(t, t, dtype=torch.bool))


def causal_mask_arange(t):
    i = torch.arange(t)
    return i[None, :] <= i[:, None]


def causal_mask_loop(t):
    return torch.tensor([[j <= i for j in range(t)] for i in range(t)], dtype=torch.bool).reshape(t, t)


def causal_mask_numpy(t):
    return torch.from_numpy(np.tril(np.ones((t, t), dtype=bool)))


def padding_mask(lengths, t):
    return (torch.arange(t)[None, :] < lengths[:, None])[:, None, None, :]


def padding_mask_loop(lengths, t):
    rows = [[pos < int(n) for pos in range(t)] for n in lengths]
    return torch.tensor(rows, dtype=torch.bool).reshape(len(rows), 1, 1, t)


def padding_mask_numpy(lengths, t):
    keep = np.arange(t)[None, :] < lengths.numpy()[:, None]
    return torch.from_numpy(keep).view(len(keep), 1, 1, t)


CASES = {
    "masks.causal": Entry(
        solution=causal_mask,
        styles={"arange": causal_mask_arange, "loop": causal_mask_loop, "numpy": causal_mask_numpy},
        wrong={
            "inverted": (lambda t: torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1), "the mask is inverted"),
            "strict": (lambda t: torch.tril(torch.ones(t, t, dtype=torch.bool), diagonal=-1), "the diagonal is hidden"),
            "transposed": (lambda t: torch.triu(torch.ones(t, t, dtype=torch.bool)), "the mask is transposed"),
            "float": (lambda t: torch.tril(torch.ones(t, t)), "right pattern, wrong dtype"),
            "four_axes": (lambda t: causal_mask(t)[None, None], "return shape (T, T)"),
        },
    ),
    "masks.padding": Entry(
        solution=padding_mask,
        styles={"loop": padding_mask_loop, "numpy": padding_mask_numpy},
        wrong={
            "inverted": (lambda lengths, t: ~padding_mask(lengths, t), "the mask is inverted"),
            "off_by_one": (lambda lengths, t: (torch.arange(t)[None, :] <= lengths[:, None])[:, None, None, :], "off by one"),
            "two_axes": (lambda lengths, t: torch.arange(t)[None, :] < lengths[:, None], "returned shape (B, T)"),
            "ignores_t": (lambda lengths, t: padding_mask(lengths, int(lengths.max())), "use the T argument"),
            "query_axis": (lambda lengths, t: padding_mask(lengths, t).transpose(-1, -2), "query position"),
            "float": (lambda lengths, t: padding_mask(lengths, t).float(), "wrong dtype"),
        },
    ),
}


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson02_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)
