"""Checks for lesson 07 (positional information): ``positions.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson07.py``.
"""

from __future__ import annotations

import torch

from tfcore.grading import Checker, exercise
from tfcore.positions import rope, sinusoidal

LESSON = "07_positions"


def _table(t: int, d: int, exponent, first_pos: int = 0, layout: str = "interleaved", swap: bool = False):
    """A sinusoidal-like table whose column frequencies come from ``exponent(i) -> power of 10000``."""
    pos = torch.arange(first_pos, first_pos + t, dtype=torch.float64)[:, None]
    cols = torch.arange(d, dtype=torch.float64)
    angle = pos / 10000.0 ** exponent(cols)
    sin, cos = torch.sin(angle), torch.cos(angle)
    if swap:
        sin, cos = cos, sin
    if layout == "halves":
        half = d // 2
        return torch.cat((sin[:, 0:d:2][:, :half], cos[:, 0:d:2][:, :half]), dim=1)
    return torch.where(cols.long() % 2 == 0, sin, cos)


# ----------------------------------------------------------------------------- positions.sinusoidal


@exercise("positions.sinusoidal", "the sinusoidal table (T, d): sin in column 2i, cos in 2i+1", lesson=LESSON)
def _sinusoidal(answer, c: Checker) -> None:
    for t, d in ((5, 8), (1, 2), (7, 6), (16, 16), (50, 64)):
        case = f"T={t}, d={d}"
        ref = sinusoidal(t, d)
        out = c.call(answer, t, d, case=case)

        def pair(cols):  # 2i for both columns of pair i
            return (cols - cols % 2) / d

        c.compare(out, ref, case, dtype="float", atol=1e-4, rtol=1e-4, wrong=[
            ("cos/sin columns swapped: column 2i is sin, column 2i+1 is cos", lambda: _table(t, d, pair, swap=True)),
            ("sin in the first half and cos in the second: interleave them (column 2i sin, column 2i+1 cos)",
             lambda: _table(t, d, pair, layout="halves")),
            ("frequencies off: the exponent is 2i/d with i counting pairs (so it is the even column index / d)",
             lambda: _table(t, d, lambda cols: (cols // 2) / d)),
            ("columns 2i and 2i+1 must share one frequency: use the even column index 2i in both",
             lambda: _table(t, d, lambda cols: cols / d)),
            ("positions start at 0: row 0 is sin(0) = 0, cos(0) = 1", lambda: _table(t, d, pair, first_pos=1)),
            ("returned (d, T): rows are positions, shape (T, d)", lambda: ref.T),
        ])


# ----------------------------------------------------------------------------- positions.rope


def _rope_variant(x, positions, base, exponent_scale=2.0, swap=False, sign=1.0, layout="interleaved"):
    d = x.shape[-1]
    inv_freq = base ** (-exponent_scale * torch.arange(d // 2, dtype=torch.float64) / d)
    angle = (positions.double()[:, None] * inv_freq).to(x.dtype)
    cos, sin = angle.cos(), sign * angle.sin()
    if swap:
        cos, sin = sin, cos
    a, b = x[..., 0::2], x[..., 1::2]
    ra, rb = a * cos - b * sin, a * sin + b * cos
    if layout == "concat":
        return torch.cat((ra, rb), dim=-1)
    return torch.stack((ra, rb), dim=-1).flatten(-2)


@exercise("positions.rope", "RoPE on interleaved pairs (x[2i], x[2i+1]), angle pos * base^(-2i/d)", lesson=LESSON)
def _rope(answer, c: Checker) -> None:
    cases = [
        ("x (1, 1, 4, 8), positions 0..3", c.randn(1, 1, 4, 8), torch.arange(4), None),
        ("x (2, 3, 5, 6), positions 3..7", c.randn(2, 3, 5, 6), torch.arange(3, 8), None),
        ("x (7, 4), positions [0, 5, 2, 9, 11, 1, 3]", c.randn(7, 4), torch.tensor([0, 5, 2, 9, 11, 1, 3]), None),
        ("T = 1: x (2, 1, 1, 8), position 17", c.randn(2, 1, 1, 8), torch.tensor([17]), None),
        ("base=500 passed explicitly, x (1, 2, 4, 8)", c.randn(1, 2, 4, 8), torch.arange(4), 500.0),
        ("a transposed (non-contiguous) x (2, 5, 8)", c.randn(2, 8, 5).transpose(-1, -2), torch.arange(5), None),
    ]
    for case, x, positions, base in cases:
        b = 10000.0 if base is None else base
        ref = rope(x, positions, b)
        if base is None:
            out = c.call(answer, x, positions, case=case)
        else:
            out = c.call(answer, x, positions, base=base, case=case, hint="the signature is rope(x, positions, base=10000.0)")
        t = x.shape[-2]
        c.compare(out, ref, case, atol=1e-5, rtol=1e-4, wrong=[
            ("rotated the split halves instead of interleaved pairs: pair i is (x[2i], x[2i+1])",
             lambda: rope(x, positions, b, layout="split_half")),
            ("rotated the wrong way: (a, b) -> (a cos - b sin, a sin + b cos)",
             lambda: _rope_variant(x, positions, b, sign=-1.0)),
            ("cos/sin swapped: (a, b) -> (a cos - b sin, a sin + b cos)",
             lambda: _rope_variant(x, positions, b, swap=True)),
            ("frequencies off: theta_i = base^(-2i/d), with i counting pairs",
             lambda: _rope_variant(x, positions, b, exponent_scale=1.0)),
            ("ignored the positions argument (used 0 .. T-1)", lambda: rope(x, torch.arange(t), b)),
            ("ignored the base argument (used 10000)", lambda: rope(x, positions, 10000.0)),
            ("put the rotated pairs back in the wrong order: keep them interleaved (stack on a new last axis, "
             "then flatten)", lambda: _rope_variant(x, positions, b, layout="concat")),
        ])
