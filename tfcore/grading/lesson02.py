"""Checks for lesson 02 (masks): ``masks.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson02.py``.
"""

from __future__ import annotations

import torch

from tfcore.grading import Checker, exercise
from tfcore.masks import causal_mask, padding_mask

LESSON = "02_masks"


# ----------------------------------------------------------------------------- masks.causal


@exercise("masks.causal", "causal mask (T, T), True where j <= i", lesson=LESSON)
def _causal(answer, c: Checker) -> None:
    for t in (5, 1, 2, 7, 13):
        case = f"T={t}"
        ref = causal_mask(t)
        out = c.call(answer, t, case=case)
        c.compare(out, ref, case, wrong=[
            ("the mask is inverted: True must mean may attend (j <= i)", lambda: ~ref),
            ("the diagonal is hidden: a token may attend to itself (j <= i, not j < i)",
             lambda: ref & ~torch.eye(t, dtype=torch.bool)),
            ("the mask is transposed: row i is the query and sees the columns j <= i (the lower triangle, torch.tril)",
             lambda: ref.T),
        ], shape_hints={(1, 1, t, t): "return shape (T, T); it broadcasts against (B, h, T, T) scores by itself"})


# ----------------------------------------------------------------------------- masks.padding


@exercise("masks.padding", "key padding mask (B, 1, 1, T) from lengths, True at real tokens", lesson=LESSON)
def _padding(answer, c: Checker) -> None:
    cases = [([3, 5, 1], 5), ([2, 4], 6), ([0, 2], 3), ([7], 7), ([1, 9, 4, 6], 9)]
    for lengths, t in cases:
        case = f"lengths {lengths}, T={t}"
        lengths_t = torch.tensor(lengths)
        ref = padding_mask(lengths_t, t)
        b = len(lengths)
        keep = torch.arange(t)[None, :] < lengths_t[:, None]  # (B, T)
        out = c.call(answer, lengths_t, t, case=case)
        c.compare(out, ref, case, wrong=[
            ("the mask is inverted: True must mean a real token (a key that may be attended)", lambda: ~ref),
            ("off by one: position t is a real token when t < length",
             lambda: (torch.arange(t)[None, :] <= lengths_t[:, None])[:, None, None, :]),
            ("returned shape (B, T): add two axes, (B, 1, 1, T), so that it broadcasts against scores "
             "(B, h, T_q, T_k)", lambda: keep),
            ("the padding axis sits in the query position: the shape is (B, 1, 1, T), masking keys",
             lambda: keep[:, None, :, None]),
        ], shape_hints={
            (b, 1, 1, int(max(lengths))): "the mask needs T columns even when every sequence is shorter than T: "
                                          "use the T argument",
            (b, 1, t): "the shape is (B, 1, 1, T): one axis for the heads and one for the queries",
        })
