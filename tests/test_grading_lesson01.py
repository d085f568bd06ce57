"""Tests-for-tests of lesson 01's checks (attention.*): see tests/test_grading.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_grading import Entry, case_params, run_case

# ----------------------------------------------------------------------------- attention.by_hand


def by_hand(Q, K, V):
    s = Q @ K.T / np.sqrt(Q.shape[-1])
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True) @ V


def by_hand_loops(Q, K, V):
    n, d = Q.shape
    out = np.zeros((n, V.shape[1]))
    for i in range(n):
        scores = [sum(Q[i, c] * K[j, c] for c in range(d)) / math.sqrt(d) for j in range(K.shape[0])]
        weights = [math.exp(s) for s in scores]
        total = sum(weights)
        for j, w in enumerate(weights):
            out[i] += w / total * V[j]
    return out


def by_hand_torch(Q, K, V):
    q, k, v = (torch.from_numpy(a) for a in (Q, K, V))
    return (torch.softmax(q @ k.T / math.sqrt(q.shape[-1]), dim=-1) @ v).numpy()


def _np_softmax(s, axis=-1):
    e = np.exp(s - s.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ----------------------------------------------------------------------------- attention.softmax


def softmax(x, dim=-1):
    m = x.amax(dim=dim, keepdim=True)
    e = (x - m).exp()
    return e / e.sum(dim=dim, keepdim=True)


def softmax_loop(x, dim=-1):
    moved = x.movedim(dim, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    out = torch.empty_like(rows)
    for r in range(rows.shape[0]):
        m = max(rows[r].tolist())
        e = [math.exp(v - m) for v in rows[r].tolist()]
        out[r] = torch.tensor([v / sum(e) for v in e], dtype=x.dtype)
    return out.reshape(moved.shape).movedim(-1, dim)


def softmax_logsumexp(x, dim=-1):
    return torch.exp(x - torch.logsumexp(x, dim=dim, keepdim=True))


def softmax_naive(x, dim=-1):
    e = x.exp()
    return e / e.sum(dim=dim, keepdim=True)


def softmax_global_max(x, dim=-1):
    e = (x - x.max()).exp()
    return e / e.sum(dim=dim, keepdim=True)


def softmax_last_axis(x, dim=-1):
    return softmax(x, -1)


def softmax_axis0(x, dim=-1):
    return softmax(x, 0)


def softmax_unnormalised(x, dim=-1):
    return (x - x.amax(dim=dim, keepdim=True)).exp()


def softmax_in_place(x, dim=-1):
    x -= x.amax(dim=dim, keepdim=True)
    return x.exp() / x.exp().sum(dim=dim, keepdim=True)


# ----------------------------------------------------------------------------- attention.sdpa


def sdpa(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(weights, nan=0.0) @ v


def sdpa_einsum(q, k, v, mask=None):
    scores = torch.einsum("...id,...jd->...ij", q, k) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf")))
    weights = torch.softmax(scores, dim=-1)
    return torch.einsum("...ij,...jd->...id", torch.nan_to_num(weights), v)


def sdpa_nan_rows(q, k, v, mask=None):
    """Correct wherever a row has a visible key; NaN on fully masked rows."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def sdpa_big_negative(q, k, v, mask=None):
    """A large finite fill: fully masked rows average v."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, -1e9)
    return torch.softmax(scores, dim=-1) @ v


def sdpa_torch(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _sdpa_with(scale=None, softmax_dim=-1, mask_mode="fill", naive_softmax=False, out="output"):
    def answer(q, k, v, mask=None):
        d = q.shape[-1]
        s = q @ k.transpose(-2, -1) * (1 / math.sqrt(d) if scale is None else scale(q, v))
        if mask is not None:
            if mask_mode == "fill":
                s = s.masked_fill(~mask, float("-inf"))
            elif mask_mode == "inverted":
                s = s.masked_fill(mask, float("-inf"))
            elif mask_mode == "add":
                s = s + mask
        if naive_softmax:
            w = s.exp() / s.exp().sum(dim=softmax_dim, keepdim=True)
        else:
            w = torch.nan_to_num(torch.softmax(s, dim=softmax_dim))
        if mask is not None and mask_mode == "after":
            w = w * mask
        return {"output": w @ v, "weights": w, "both": (w @ v, w)}[out]

    return answer


# ----------------------------------------------------------------------------- attention.permutation


def permutation_check(attn_fn, x, perm):
    return (attn_fn(x[..., perm, :]) - attn_fn(x)[..., perm, :]).abs().max().item()


def permutation_check_matrix(attn_fn, x, perm):
    P = torch.eye(x.shape[-2], dtype=x.dtype)[perm]  # (P x)[i] = x[perm[i]]
    return torch.max(torch.abs(attn_fn(P @ x) - P @ attn_fn(x)))


def permutation_wrong_direction(attn_fn, x, perm):
    inv = torch.argsort(perm)
    return (attn_fn(x[..., perm, :]) - attn_fn(x)[..., inv, :]).abs().max().item()


def permutation_output_unpermuted(attn_fn, x, perm):
    return (attn_fn(x[..., perm, :]) - attn_fn(x)).abs().max().item()


def permutation_mean(attn_fn, x, perm):
    return (attn_fn(x[..., perm, :]) - attn_fn(x)[..., perm, :]).abs().mean().item()


def permutation_allclose(attn_fn, x, perm):
    return torch.allclose(attn_fn(x[..., perm, :]), attn_fn(x)[..., perm, :])


def permutation_first_axis(attn_fn, x, perm):
    return (attn_fn(x[perm]) - attn_fn(x)[perm]).abs().max().item()


CASES = {
    "attention.by_hand": Entry(
        solution=by_hand,
        styles={"loops": by_hand_loops, "torch_round_trip": by_hand_torch},
        wrong={
            "no_scale": (lambda Q, K, V: _np_softmax(Q @ K.T) @ V, "sqrt(d_k)"),
            "axis_0": (lambda Q, K, V: _np_softmax(Q @ K.T / np.sqrt(3), axis=0) @ V, "wrong axis"),
            "weights": (lambda Q, K, V: _np_softmax(Q @ K.T / np.sqrt(3)), "returned the weights"),
            "no_transpose": (lambda Q, K, V: _np_softmax(Q @ K / np.sqrt(3)) @ V, "Q @ K instead of Q @ K.T"),
            "scale_by_d": (lambda Q, K, V: _np_softmax(Q @ K.T / 3) @ V, "1/d instead of 1/sqrt(d)"),
            "torch_tensor": (lambda Q, K, V: torch.from_numpy(by_hand(Q, K, V)), "return a NumPy array"),
        },
    ),
    "attention.softmax": Entry(
        solution=softmax,
        styles={"loop": softmax_loop, "logsumexp": softmax_logsumexp, "torch": torch.softmax},
        wrong={
            "naive": (softmax_naive, "NaN for large logits: subtract the row max before exp"),
            "global_max": (softmax_global_max, "subtracted the global max"),
            "ignores_dim": (softmax_last_axis, "use the dim argument"),
            "axis_0": (softmax_axis0, "softmax over the wrong axis"),
            "unnormalised": (softmax_unnormalised, "forgot to divide by the sum"),
            "log_softmax": (torch.log_softmax, "returned log-softmax"),
            "in_place": (softmax_in_place, "in place"),
            "no_keepdim": (lambda x, dim=-1: x.exp() / x.exp().sum(dim=dim), "keepdim=True"),
        },
    ),
    "attention.sdpa": Entry(
        solution=sdpa,
        styles={"einsum": sdpa_einsum, "nan_rows": sdpa_nan_rows, "big_negative_fill": sdpa_big_negative,
                "torch_sdpa": sdpa_torch},
        style_notes={"nan_rows": "note: rows with no visible key give NaN",
                     "big_negative_fill": "note: rows with no visible key give finite non-zero values"},
        wrong={
            "no_scale": (_sdpa_with(scale=lambda q, v: 1.0), "did you forget the 1/sqrt(d_head) scale?"),
            "scale_by_d": (_sdpa_with(scale=lambda q, v: 1.0 / q.shape[-1]), "1/d instead of 1/sqrt(d)"),
            "scale_by_d_v": (_sdpa_with(scale=lambda q, v: v.shape[-1] ** -0.5), "1/sqrt(d_v)"),
            "softmax_over_queries": (_sdpa_with(softmax_dim=-2), "softmax over the wrong axis"),
            "inverted_mask": (_sdpa_with(mask_mode="inverted"), "the mask is inverted: True must mean may attend"),
            "ignored_mask": (_sdpa_with(mask_mode="ignore"), "the mask was ignored"),
            "mask_after_softmax": (_sdpa_with(mask_mode="after"), "after the softmax"),
            "mask_added": (_sdpa_with(mask_mode="add"), "added to the scores"),
            "naive_softmax": (_sdpa_with(naive_softmax=True), "NaN for large scores"),
            "weights": (_sdpa_with(out="weights"), "returned the attention weights"),
            "tuple": (_sdpa_with(out="both"), "tuple of 2"),
            "k_dot_T": (lambda q, k, v, mask=None: torch.softmax(q @ k.T, -1) @ v, "k.transpose(-2, -1)"),
        },
    ),
    "attention.permutation": Entry(
        solution=permutation_check,
        styles={"permutation_matrix": permutation_check_matrix},
        wrong={
            "wrong_direction": (permutation_wrong_direction, "wrong direction"),
            "output_not_permuted": (permutation_output_unpermuted, "did not permute the output"),
            "mean": (permutation_mean, "mean absolute difference"),
            "allclose": (permutation_allclose, "returned a bool"),
            "always_zero": (lambda attn_fn, x, perm: 0.0, "wrong value"),
            "first_axis": (permutation_first_axis, "permute the token axis"),
        },
    ),
}


# Predictions (tests/test_grading_predictions.py runs them): ID -> (right answers, wrong answers, a substring
# of the reasoning, the value as the feedback shows it).
PREDICTION_CASES = {
    # 0.167 nats, +-0.5: "nearly one-hot" passes; "a bit below uniform" or "half of uniform" fails.
    "attention.predict_unscaled_entropy": (
        [0.167, 0, 0.1, 0.5, 1 / 3, 0.6, np.float32(0.2)],
        [1.0, 1.7, 3.0, 3.47, math.log(32), -1.0], "sqrt(512) = 22.6", "0.167 nats"),
    "attention.predict_rows_sum": (
        ["A", "a", "(A)", " a. ", "each row: one query's weights over the keys"], ["B", "c", "(C)"],
        "normalises over the last axis", "(A) each row"),
    # the plausible wrong reasonings: masks do not matter (C), the MLP or LayerNorm break it (D), nothing does (A)
    "attention.predict_equivariant": (["B", "b", "(B)", "1 and 3"], ["A", "C", "d", "only 1"],
                                      "belong to positions, not tokens", "(B) 1 and 3"),
}


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson01_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)
