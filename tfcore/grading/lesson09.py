"""Checks for lesson 09 (training signals): ``training.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson09.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tfcore.grading import Checker, exercise
from tfcore.losses import lm_loss

LESSON = "09_training"


# ----------------------------------------------------------------------------- training.lm_loss


@exercise("training.lm_loss", "shifted LM loss: mean cross-entropy of tokens[:, 1:] given logits[:, :-1]",
          lesson=LESSON)
def _lm_loss(answer, c: Checker) -> None:
    def tokens(b, t, v):
        return torch.randint(0, v, (b, t), generator=c.gen)

    cases = [
        ("B=2, T=5, V=7", c.randn(2, 5, 7), tokens(2, 5, 7)),
        ("B=1, T=2, V=3 (one prediction)", c.randn(1, 2, 3), tokens(1, 2, 3)),
        ("B=3, T=11, V=13", c.randn(3, 11, 13, scale=2.0), tokens(3, 11, 13)),
        ("logits as a transposed (non-contiguous) view (2, 6, 7)", c.randn(2, 7, 6).transpose(1, 2), tokens(2, 6, 7)),
        ("large logits (about 1e4)", c.randn(2, 4, 5, scale=1e4), tokens(2, 4, 5)),
    ]
    for case, logits, toks in cases:
        ref = lm_loss(logits, toks)
        b, t, v = logits.shape
        out = c.call(answer, logits, toks, case=case,
                     hint="logits[:, :-1] is not contiguous: flatten with .reshape, not .view")
        if isinstance(out, float):
            c.fail(f"{c.name} returned a Python float on {case}: return the 0-d tensor so that loss.backward() "
                   "works (drop .item())")
        flat = logits.reshape(-1, v)
        shifted = logits[:, :-1].reshape(-1, v)
        targets = toks[:, 1:].reshape(-1)
        per_token = F.cross_entropy(shifted, targets, reduction="none")
        c.compare(out, ref, case, dtype="float", atol=1e-5, rtol=1e-5, wrong=[
            ("did not shift: logits[:, :-1] predict tokens[:, 1:]", lambda: F.cross_entropy(flat, toks.reshape(-1))),
            ("shifted the wrong way: logits[:, :-1] predict tokens[:, 1:]",
             lambda: F.cross_entropy(logits[:, 1:].reshape(-1, v), toks[:, :-1].reshape(-1))),
            ("summed the losses: take the mean over the B * (T - 1) predictions", lambda: per_token.sum()),
            ("log base 2 instead of natural log", lambda: ref / math.log(2)),
            ("the loss is negative: cross-entropy is -log p(target)", lambda: -ref),
            ("used the raw logit of the target: take log_softmax over the vocabulary first",
             lambda: -shifted.gather(1, targets[:, None]).mean()),
            ("returned the per-token losses: take their mean", lambda: per_token),
            ("returned the per-token losses: take their mean", lambda: per_token.reshape(b, t - 1)),
            ("returned one loss per sequence: take the mean over every prediction",
             lambda: per_token.reshape(b, t - 1).mean(1)),
            ("return a 0-d tensor, not shape (1,)", lambda: ref.reshape(1)),
        ], nonfinite=("inf/NaN for large logits: use log_softmax or F.cross_entropy (log-sum-exp), "
                      "not log(softmax(...))" if "large" in case else None))

    logits = c.randn(2, 4, 5).requires_grad_(True)
    case = "logits that require grad"
    out = c.call(answer, logits, tokens(2, 4, 5), case=case)
    if isinstance(out, float) or not isinstance(out, torch.Tensor) or out.grad_fn is None:
        c.fail(f"the loss is detached from the graph on {case}: build it with torch operations (no .item(), "
               "no NumPy) so that loss.backward() works")
    c.cases += 1
