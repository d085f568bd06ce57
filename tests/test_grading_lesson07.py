"""Tests-for-tests of lesson 07's checks (positions.*): see tests/test_grading.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from test_grading import Entry, case_params, run_case


def sinusoidal(t, d):
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    inv_freq = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    table = torch.zeros(t, d)
    table[:, 0::2] = torch.sin(pos * inv_freq)
    table[:, 1::2] = torch.cos(pos * inv_freq)
    return table


def sinusoidal_loop(t, d):
    rows = []
    for pos in range(t):
        row = []
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            row += [math.sin(angle), math.cos(angle)]
        rows.append(row)
    return torch.tensor(rows)


def sinusoidal_numpy(t, d):
    pos = np.arange(t)[:, None]
    angle = pos / np.power(10000.0, np.arange(0, d, 2) / d)
    return torch.from_numpy(np.stack([np.sin(angle), np.cos(angle)], axis=-1).reshape(t, d))


def _sin_variant(swap=False, halves=False, exponent="pair", first=0):
    def answer(t, d):
        pos = torch.arange(first, first + t, dtype=torch.float64)[:, None]
        cols = torch.arange(d, dtype=torch.float64)
        power = {"pair": cols - cols % 2, "column": cols, "half": cols // 2}[exponent] / d
        angle = pos / 10000.0 ** power
        if halves:
            a = angle[:, 0::2]
            return torch.cat((a.sin(), a.cos()), dim=1)
        even = cols.long() % 2 == 0
        if swap:
            even = ~even
        return torch.where(even, angle.sin(), angle.cos())

    return answer


def rope(x, positions, base=10000.0):
    d = x.shape[-1]
    angle = positions[:, None].float() * base ** (-torch.arange(0, d, 2).float() / d)
    cos, sin = angle.cos(), angle.sin()
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


def rope_complex(x, positions, base=10000.0):
    d = x.shape[-1]
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    angle = positions[:, None].double() * base ** (-torch.arange(0, d, 2).double() / d)
    return torch.view_as_real(pairs * torch.polar(torch.ones_like(angle), angle)).flatten(-2).to(x.dtype)


def _rope_variant(layout="interleaved", sign=1.0, exponent=2.0, use_positions=True, use_base=True):
    def answer(x, positions, base=10000.0):
        t, d = x.shape[-2], x.shape[-1]
        pos = positions if use_positions else torch.arange(t)
        b = base if use_base else 10000.0
        angle = pos[:, None].double() * b ** (-exponent * torch.arange(d // 2).double() / d)
        cos, sin = angle.cos().float(), sign * angle.sin().float()
        if layout == "halves":
            a, bb = x[..., : d // 2], x[..., d // 2:]
            return torch.cat((a * cos - bb * sin, a * sin + bb * cos), dim=-1)
        a, bb = x[..., 0::2], x[..., 1::2]
        ra, rb = a * cos - bb * sin, a * sin + bb * cos
        if layout == "concat":
            return torch.cat((ra, rb), dim=-1)
        return torch.stack((ra, rb), dim=-1).flatten(-2)

    return answer


CASES = {
    "positions.sinusoidal": Entry(
        solution=sinusoidal,
        styles={"loop": sinusoidal_loop, "numpy_float64": sinusoidal_numpy},
        wrong={
            "swapped": (_sin_variant(swap=True), "cos/sin columns swapped"),
            "halves": (_sin_variant(halves=True), "sin in the first half"),
            "exponent_i_over_d": (_sin_variant(exponent="half"), "frequencies off"),
            "exponent_per_column": (_sin_variant(exponent="column"), "share one frequency"),
            "from_one": (_sin_variant(first=1), "positions start at 0"),
        },
    ),
    "positions.rope": Entry(
        solution=rope,
        styles={"complex": rope_complex},
        wrong={
            "split_halves": (_rope_variant(layout="halves"), "rotated the split halves instead of interleaved pairs"),
            "wrong_way": (_rope_variant(sign=-1.0), "rotated the wrong way"),
            "frequencies": (_rope_variant(exponent=1.0), "frequencies off"),
            "ignores_positions": (_rope_variant(use_positions=False), "ignored the positions argument"),
            "ignores_base": (_rope_variant(use_base=False), "ignored the base argument"),
            "concat": (_rope_variant(layout="concat"), "wrong order"),
        },
    ),
}



# ----------------------------------------------------------------------------- positions.alibi


def alibi(n_heads, t):
    def geometric(n):
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    p = 2 ** int(math.floor(math.log2(n_heads)))
    slopes = torch.tensor(geometric(p) + geometric(2 * p)[0::2][: n_heads - p])
    pos = torch.arange(t)
    return slopes, -slopes[:, None, None] * (pos[:, None] - pos[None, :]).abs()


def alibi_loops(n_heads, t):
    """Slopes by the recursive rule of the ALiBi code, bias by explicit loops (float64)."""
    def slopes_of(n):
        if math.log2(n).is_integer():
            start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
            return [start * start**i for i in range(n)]
        p = 2 ** math.floor(math.log2(n))
        return slopes_of(p) + slopes_of(2 * p)[0::2][: n - p]

    slopes = slopes_of(n_heads)
    bias = [[[-m * abs(i - j) for j in range(t)] for i in range(t)] for m in slopes]
    return torch.tensor(slopes, dtype=torch.float64), torch.tensor(bias, dtype=torch.float64)


def _alibi_variant(slopes_fn=None, bias_fn=None):
    def answer(n_heads, t):
        slopes, bias = alibi(n_heads, t)
        if slopes_fn is not None:
            slopes = slopes_fn(n_heads, slopes)
            bias = -slopes[:, None, None] * (torch.arange(t)[:, None] - torch.arange(t)[None, :]).abs()
        if bias_fn is not None:
            bias = bias_fn(slopes, t, bias)
        return slopes, bias

    return answer


# ----------------------------------------------------------------------------- positions.equivariance


def equivariance_gap(model, tokens, perm):
    with torch.no_grad():
        return (model(tokens[:, perm]) - model(tokens)[:, perm]).abs().max().item()


def equivariance_gap_matrix(model, tokens, perm):
    """With an explicit permutation matrix P acting on the token axis, in float64 at the end."""
    P = torch.eye(len(perm))[perm]  # (P y)[i] = y[perm[i]]
    permuted_tokens = (P.long() @ tokens.T).T
    with torch.no_grad():
        a = model(permuted_tokens).double()
        b = torch.einsum("ij,bjv->biv", P.double(), model(tokens).double())
    return float(np.abs((a - b).numpy()).max())


CASES["positions.alibi"] = Entry(
    solution=alibi,
    styles={"recursive_loops_float64": alibi_loops},
    wrong={
        "reversed": (_alibi_variant(slopes_fn=lambda n, s: s.flip(0)), "reverse order"),
        "h_from_zero": (_alibi_variant(slopes_fn=lambda n, s: torch.tensor([2.0 ** (-8.0 * h / n) for h in range(n)])),
                        "h counts from 1"),
        "plain_geometric": (_alibi_variant(slopes_fn=lambda n, s: torch.tensor([2.0 ** (-8.0 * h / n)
                                                                                for h in range(1, n + 1)])),
                            "not a power of two"),
        "sorted": (_alibi_variant(slopes_fn=lambda n, s: s.sort(descending=True).values), "do not sort"),
        "positive": (_alibi_variant(bias_fn=lambda s, t, b: -b), "wrong sign"),
        "no_abs": (_alibi_variant(bias_fn=lambda s, t, b: -s[:, None, None] * (torch.arange(t)[:, None]
                                                                            - torch.arange(t)[None, :])),
                   "use the distance |i - j|"),
        "heads_last": (_alibi_variant(bias_fn=lambda s, t, b: b.permute(1, 2, 0)), "heads go first"),
        "list": (lambda n, t: list(alibi(n, t)), "return a tuple (slopes, bias)"),
    },
)

CASES["positions.equivariance"] = Entry(
    solution=equivariance_gap,
    styles={"permutation_matrix": equivariance_gap_matrix},
    wrong={
        "output_not_permuted": (lambda m, x, p: (m(x[:, p]) - m(x)).abs().max().item(), "permuted the same way"),
        "inverse": (lambda m, x, p: (m(x[:, p]) - m(x)[:, torch.argsort(p)]).abs().max().item(), "inverse permutation"),
        "mean": (lambda m, x, p: (m(x[:, p]) - m(x)[:, p]).abs().mean().item(), "not the mean"),
        "no_abs": (lambda m, x, p: (m(x[:, p]) - m(x)[:, p]).max().item(), "absolute value"),
    },
)

@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson07_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)


# prediction ID -> (right answers, wrong answers, a piece of the reasoning, the value as shown): see
# tests/test_grading_predictions.py, which collects this table.
PREDICTION_CASES = {
    "positions.predict_gpt2_table": ([786432, 1024 * 768, 786432.0], [1024, 768, 786432 * 12, 1025 * 768],
                                     "1024 x 768 = 786 432", "786 432 parameters"),
    "positions.predict_slowest_wavelength": (
        [47117, 47000, 2 * math.pi * 10000 ** (62 / 64), 45000, 49400],
        [2 * math.pi * 10000, 10000, 2 * math.pi, 7499, 2 * math.pi * 10000 ** (63 / 64), 44000],
        "2 pi 10000^(62/64)", "the value is 47 117 positions"),
    "positions.predict_flattest_beyond": (["C", "c", "(C)", "ALiBi"], ["A", "B", "D", "E"], "the same at every distance",
                                          "(C) ALiBi"),
}
