"""Checks for lesson 03 (multi-head attention): ``heads.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson03.py``.
"""

from __future__ import annotations

from tfcore.grading import Checker, exercise
from tfcore.heads import merge_heads, repeat_kv, split_heads

LESSON = "03_heads"

INTERLEAVED_SPLIT = ("heads interleaved wrongly: did you reshape without transposing? "
                     "view as (B, T, h, d_head), then transpose(1, 2)")
INTERLEAVED_MERGE = ("heads interleaved wrongly: did you reshape without transposing? "
                     "transpose(1, 2) to (B, T, h, d_head) first, then reshape")
NOT_CONTIGUOUS = "after a transpose the tensor is not contiguous: use .reshape (or .contiguous().view)"


# ----------------------------------------------------------------------------- heads.split


@exercise("heads.split", "split heads: (B, T, d_model) -> (B, h, T, d_head)", lesson=LESSON)
def _split(answer, c: Checker) -> None:
    cases = [
        ("x (2, 5, 12), n_heads=3", c.randn(2, 5, 12), 3),
        ("x (3, 7, 8), n_heads=2", c.randn(3, 7, 8), 2),
        ("x (1, 3, 35), n_heads=5 (d_head=7)", c.randn(1, 3, 35), 5),
        ("x (1, 1, 6), n_heads=6 (T=1, d_head=1)", c.randn(1, 1, 6), 6),
        ("x (2, 4, 10), n_heads=1", c.randn(2, 4, 10), 1),
        ("a transposed (non-contiguous) x (2, 5, 12), n_heads=4", c.randn(5, 2, 12).transpose(0, 1), 4),
    ]
    for case, x, h in cases:
        b, t, d = x.shape
        dh = d // h
        ref = split_heads(x, h)
        out = c.call(answer, x, h, case=case, hint=NOT_CONTIGUOUS)
        c.compare(out, ref, case, wrong=[
            (INTERLEAVED_SPLIT, lambda: x.reshape(b, h, t, dh)),
            ("channels assigned to heads wrongly: head i owns channels i*d_head .. (i+1)*d_head - 1; "
             "view as (B, T, h, d_head), not (B, T, d_head, h)", lambda: x.reshape(b, t, dh, h).permute(0, 3, 1, 2)),
            ("forgot the transpose: (B, T, h, d_head) must become (B, h, T, d_head) with transpose(1, 2)",
             lambda: x.reshape(b, t, h, dh)),
        ], shape_hints={(b, dh, t, h): "the head axis is 1 and d_head is last: (B, h, T, d_head)"})


# ----------------------------------------------------------------------------- heads.merge


@exercise("heads.merge", "merge heads: (B, h, T, d_head) -> (B, T, h * d_head)", lesson=LESSON)
def _merge(answer, c: Checker) -> None:
    cases = [
        ("x (2, 3, 5, 4)", c.randn(2, 3, 5, 4)),
        ("x (1, 1, 1, 7) (one head, T=1)", c.randn(1, 1, 1, 7)),
        ("x (3, 2, 7, 1) (d_head=1)", c.randn(3, 2, 7, 1)),
        ("the output of split_heads, a non-contiguous (2, 4, 3, 5)", split_heads(c.randn(2, 3, 20), 4)),
    ]
    for case, x in cases:
        b, h, t, dh = x.shape
        ref = merge_heads(x)
        out = c.call(answer, x, case=case, hint=NOT_CONTIGUOUS)
        c.compare(out, ref, case, wrong=[
            (INTERLEAVED_MERGE, lambda: x.reshape(b, t, h * dh)),
            ("channels interleaved: the output holds head 0's d_head channels, then head 1's, ...: "
             "permute to (B, T, h, d_head), not (B, T, d_head, h)", lambda: x.permute(0, 2, 3, 1).reshape(b, t, h * dh)),
            ("returned (B, T, h, d_head): reshape the last two axes into one of size h * d_head",
             lambda: x.transpose(1, 2)),
        ])


# ----------------------------------------------------------------------------- heads.repeat_kv


@exercise("heads.repeat_kv", "GQA: repeat K/V heads so query head i uses kv head i // n_rep", lesson=LESSON)
def _repeat_kv(answer, c: Checker) -> None:
    cases = [
        ("x (2, 3, 5, 4), n_rep=2", c.randn(2, 3, 5, 4), 2),
        ("x (1, 2, 3, 6), n_rep=3", c.randn(1, 2, 3, 6), 3),
        ("x (2, 4, 3, 2), n_rep=1 (MHA)", c.randn(2, 4, 3, 2), 1),
        ("x (1, 1, 7, 3), n_rep=5 (MQA)", c.randn(1, 1, 7, 3), 5),
        ("a transposed (non-contiguous) x (2, 3, 5, 4), n_rep=2", c.randn(2, 5, 3, 4).transpose(1, 2), 2),
    ]
    for case, x, n_rep in cases:
        b, h_kv, t, d = x.shape
        ref = repeat_kv(x, n_rep)
        out = c.call(answer, x, n_rep, case=case)
        c.compare(out, ref, case, wrong=[
            ("query head i must use kv head i // n_rep (you used i % h_kv: repeat_interleave vs repeat)",
             lambda: x.repeat(1, n_rep, 1, 1)),
            ("repeated along the wrong axis: repeat the head axis (dim 1), not time",
             lambda: x.repeat_interleave(n_rep, dim=2)),
            ("repeated along the wrong axis: repeat the head axis (dim 1), not the channels",
             lambda: x.repeat_interleave(n_rep, dim=3)),
        ], shape_hints={
            (b, h_kv, n_rep, t, d): "expand adds an axis: reshape to (B, h_kv * n_rep, T, d) afterwards",
            (b, h_kv, t, d): "returned h_kv heads: repeat each one n_rep times",
        })
