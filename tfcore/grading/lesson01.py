"""Checks for lesson 01 (attention): ``attention.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson01.py``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from tfcore.attention import scaled_dot_product_attention as ref_sdpa
from tfcore.attention import softmax as ref_softmax
from tfcore.grading import Checker, exercise
from tfcore.masks import causal_mask, padding_mask
from tfcore.positions import sinusoidal

LESSON = "01_attention"

NO_SCALE = "scores are too large by sqrt(d): did you forget the 1/sqrt(d_head) scale?"
SCALE_BY_D = "scaled by 1/d instead of 1/sqrt(d): the scale is 1/sqrt(d_head)"
SCALE_TIMES = "multiplied the scores by sqrt(d) instead of dividing by it"
WRONG_AXIS_KEYS = "softmax over the wrong axis: each query's weights must sum to 1 over the keys (the last axis)"


# ----------------------------------------------------------------------------- attention.by_hand


def _np_softmax(s: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(s - s.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@exercise("attention.by_hand", "attention of 3x3 matrices in NumPy: softmax(Q K^T / sqrt(d)) V", lesson=LESSON)
def _by_hand(answer, c: Checker) -> None:
    rng = np.random.default_rng(0)
    cases = [
        ("Q = K = the identity, V = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]",
         np.eye(3), np.eye(3), np.arange(1.0, 10.0).reshape(3, 3)),
        ("random Q, K, V (seed 0)", *(rng.standard_normal((3, 3)) for _ in range(3))),
        ("random Q, K, V with larger scores", *(rng.standard_normal((3, 3)) * s for s in (3.0, 2.0, 1.0))),
        ("Q and K with different rows", rng.standard_normal((3, 3)), 2 * rng.standard_normal((3, 3)),
         rng.standard_normal((3, 3))),
    ]
    for case, q, k, v in cases:
        ref = ref_sdpa(*(torch.from_numpy(a) for a in (q, k, v))).numpy()
        out = c.call(answer, q, k, v, case=case, hint="Q @ K.T has shape (3, 3); softmax each row; then @ V")
        d = q.shape[-1]
        s = q @ k.T
        c.compare(out, ref, case, kind="ndarray", dtype="float", atol=1e-6, rtol=1e-5, wrong=[
            ("you returned the weights A; the output is A @ V", lambda: _np_softmax(s / math.sqrt(d))),
            ("scores are too large by sqrt(d): did you forget to divide Q K^T by sqrt(d_k) = sqrt(3)?",
             lambda: _np_softmax(s) @ v),
            ("scaled by 1/d instead of 1/sqrt(d): divide the scores by sqrt(d_k)", lambda: _np_softmax(s / d) @ v),
            ("softmax over the wrong axis: each row (one query) must sum to 1: use axis=-1",
             lambda: _np_softmax(s / math.sqrt(d), axis=0) @ v),
            ("normalised over the whole matrix: each row must sum to 1 on its own",
             lambda: np.exp(s / math.sqrt(d)) / np.exp(s / math.sqrt(d)).sum() @ v),
            ("used Q @ K instead of Q @ K.T: scores[i, j] = q_i . k_j", lambda: _np_softmax(q @ k / math.sqrt(d)) @ v),
            ("multiplied in the wrong order: the output is A @ V, row i mixing the values with query i's weights",
             lambda: _np_softmax(s / math.sqrt(d)).T @ v),
            ("multiplied in the wrong order: the output is A @ V, not V @ A", lambda: v @ _np_softmax(s / math.sqrt(d))),
        ])


# ----------------------------------------------------------------------------- attention.softmax


@exercise("attention.softmax", "numerically stable softmax(x, dim=-1)", lesson=LESSON)
def _softmax(answer, c: Checker) -> None:
    partly_masked = c.randn(3, 6)
    partly_masked[0, 2:] = float("-inf")
    partly_masked[2, ::2] = float("-inf")
    cases = [
        ("a vector of 7 logits", c.randn(7), -1),
        ("x of shape (3, 5), dim=-1", c.randn(3, 5), -1),
        ("x of shape (2, 3, 11), dim=1", c.randn(2, 3, 11), 1),
        ("x of shape (4, 6), dim=0", c.randn(4, 6), 0),
        ("one logit per row: x of shape (4, 1)", c.randn(4, 1), -1),
        ("a transposed (non-contiguous) view of shape (3, 5)", c.randn(5, 3).T, -1),
        ("float64 logits of shape (2, 7)", c.randn(2, 7, dtype=torch.float64), -1),
        ("rows with some -inf logits (masked entries)", partly_masked, -1),
        ("large logits (about 1e4)", c.randn(3, 5, scale=1e4), -1),
        ("very negative logits (about -1e4)", -1e4 + c.randn(3, 5), -1),
        ("rows of very different sizes (one near 0, one near -1e4)",
         torch.stack([c.randn(5), -1e4 + c.randn(5)]), -1),
    ]
    for case, x, dim in cases:
        ref = ref_softmax(x, dim)
        out = c.call(answer, x, dim=dim, case=case,
                     hint="use keepdim=True in max and sum so that they broadcast against x")
        last = x.dim() - 1
        e = (x - x.amax(dim=dim, keepdim=True)).exp()
        wrong = []
        if dim % x.dim() != last:
            wrong.append((f"softmax over the last axis although dim={dim}: use the dim argument",
                          lambda: ref_softmax(x, -1)))
        for other in range(x.dim()):
            if other != dim % x.dim():
                wrong.append(("rows do not sum to 1: softmax over the wrong axis?", lambda o=other: ref_softmax(x, o)))
        wrong += [
            ("forgot to divide by the sum: softmax = exp(x - max) / sum(exp(x - max))", lambda: e),
            ("normalised over the whole tensor: divide by the sum along dim only (keepdim=True)", lambda: e / e.sum()),
            ("returned log-softmax: softmax is exp(x - max) / sum(exp(x - max))", lambda: torch.log_softmax(x, dim)),
            ("subtracted the global max: rows far below it underflow to 0/0 = NaN; subtract each row's own "
             "max (x.amax(dim, keepdim=True))",
             lambda: (x - x.max()).exp() / (x - x.max()).exp().sum(dim=dim, keepdim=True)),
        ]
        if "large" in case:
            nonfinite = "NaN for large logits: subtract the row max before exp (exp(1e4) overflows)"
        elif "-1e4" in case:
            nonfinite = ("NaN for very negative logits: exp underflows to 0 and 0/0 = NaN; "
                         "subtract each row's max before exp")
        else:
            nonfinite = None
        # Near 1e4 a float32 holds only ~3 decimals, so exp(x - logsumexp(x)) is right to ~1e-3 there.
        atol = 2e-3 if "1e4" in case else 1e-6
        c.compare(out, ref, case, atol=atol, rtol=1e-5, wrong=wrong, nonfinite=nonfinite)


# ----------------------------------------------------------------------------- attention.sdpa


@exercise("attention.sdpa", "scaled dot-product attention sdpa(q, k, v, mask=None)", lesson=LESSON)
def _sdpa(answer, c: Checker) -> None:
    def qkv(lead: tuple, t_q: int, t_k: int, d: int, d_v: int, scale: float = 1.0):
        return c.randn(*lead, t_q, d, scale=scale), c.randn(*lead, t_k, d, scale=scale), c.randn(*lead, t_k, d_v)

    causal5 = causal_mask(5)
    pad = padding_mask(torch.tensor([4, 3, 5]), 7)  # (3, 1, 1, 7); inverted it still leaves a key per row
    k_t = c.randn(2, 3, 8, 6)
    v_t = c.randn(2, 3, 4, 6)
    both = causal_mask(6) & padding_mask(torch.tensor([6, 4]), 6)  # (2, 1, 6, 6), every row sees key 0
    holes = torch.tensor([[True, False, True, False], [False, False, False, False],
                          [True, True, False, True], [False, True, False, False]])
    cases = [
        ("q, k, v of shape (1, 1, 3, 4)", *qkv((1, 1), 3, 3, 4, 4), None),
        ("B=2, h=3, T_q=5, T_k=6, d=7, d_v=5", *qkv((2, 3), 5, 6, 7, 5), None),
        ("unbatched q (4, 8), k (6, 8), v (6, 3)", *qkv((), 4, 6, 8, 3), None),
        ("T = 1", *qkv((2, 1), 1, 1, 5, 3), None),
        ("a causal mask (5, 5)", *qkv((2, 2), 5, 5, 6, 6), causal5),
        ("a padding mask (B, 1, 1, T_k) with lengths [4, 3, 5]", *qkv((3, 2), 4, 7, 6, 6), pad),
        ("k and v as transposed (non-contiguous) views", c.randn(2, 3, 5, 8), k_t.transpose(-2, -1),
         v_t.transpose(-2, -1), None),
        ("large scores (q and k of size 30)", *qkv((1, 2), 4, 4, 16, 8, scale=30.0), None),
    ]
    for case, q, k, v, mask in cases:
        _sdpa_case(answer, c, case, q, k, v, mask, ref_sdpa(q, k, v, mask))

    # Against PyTorch's own attention, on causal + padding masks (no row without a key there).
    q, k, v = qkv((2, 3), 6, 6, 8, 8)
    _sdpa_case(answer, c, "causal + padding mask, compared with torch.nn.functional.scaled_dot_product_attention",
               q, k, v, both, F.scaled_dot_product_attention(q, k, v, attn_mask=both))

    # A query row with no visible key: any convention passes, the note says which one it is.
    q, k, v = qkv((1, 2), 4, 4, 5, 3)
    rows = holes.any(-1, keepdim=True).expand(1, 2, 4, 3)
    out = _sdpa_case(answer, c, "a mask with a fully masked query row (row 1)", q, k, v, holes,
                     ref_sdpa(q, k, v, holes), rows=rows)
    empty = out.detach()[~rows]
    if not torch.isfinite(empty).all():
        c.note("rows with no visible key give NaN (tfcore returns zeros there; lesson 02 fixes this)")
    elif empty.abs().max() > 0:
        c.note("rows with no visible key give finite non-zero values, e.g. the mean of v with a large "
               "negative fill (tfcore returns zeros there; lesson 02 compares the conventions)")


def _sdpa_case(answer, c: Checker, case: str, q, k, v, mask, ref, rows=None) -> torch.Tensor:
    out = c.call(answer, q, k, v, mask, case=case,
                 hint="q @ k.transpose(-2, -1) has shape (..., T_q, T_k): k.T would reverse every axis")
    d, d_v = q.shape[-1], v.shape[-1]
    s = q @ k.transpose(-2, -1) / math.sqrt(d)

    def with_scale(scale: float):
        return lambda: ref_sdpa(q, k, v, mask, scale=scale)

    wrong = [
        ("returned the attention weights: the output is weights @ v",
         lambda: ref_sdpa(q, k, v, mask, return_weights=True)[1]),
        (NO_SCALE, with_scale(1.0)),
        (SCALE_BY_D, with_scale(1.0 / d)),
        (SCALE_TIMES, with_scale(math.sqrt(d))),
        ("scaled by 1/sqrt(d_v), v's last axis: the scale uses d, the last axis of q and k",
         with_scale(1.0 / math.sqrt(d_v))),
        (WRONG_AXIS_KEYS, lambda: ref_softmax(s if mask is None else s.masked_fill(~mask, float("-inf")), -2) @ v),
    ]
    if mask is not None:
        has_key_inverted = (~mask).any(-1, keepdim=True).expand(*ref.shape[:-1], 1).expand(ref.shape)
        weights = ref_softmax(s, -1)
        wrong += [
            ("the mask is inverted: True must mean may attend", lambda: (ref_sdpa(q, k, v, ~mask), has_key_inverted)),
            ("the mask was ignored: keys where the mask is False must get zero weight", lambda: ref_sdpa(q, k, v)),
            ("applied the mask after the softmax: the rows no longer sum to 1; fill the scores with -inf "
             "before the softmax", lambda: (weights * mask) @ v),
            ("masked scores were set to 0 instead of -inf: exp(0) = 1 still gives those keys weight",
             lambda: ref_softmax(s * mask, -1) @ v),
            ("the boolean mask was added to the scores: hide scores with masked_fill(~mask, float('-inf'))",
             lambda: ref_softmax(s + mask.to(s.dtype), -1) @ v),
        ]
    large = "large" in case
    return c.compare(out, ref, case, atol=1e-5, rtol=1e-4, wrong=wrong, rows=rows,
                     nonfinite=("NaN for large scores: subtract the row max before exp (or use torch.softmax)"
                                if large else None))


# ----------------------------------------------------------------------------- attention.permutation


def _attention_functions(c: Checker) -> dict:
    d = 4
    w_q, w_k, w_v = (c.randn(d, d) for _ in range(3))

    def self_attention(x):
        """Plain self-attention with fixed projections: permutation-equivariant."""
        return ref_sdpa(x @ w_q, x @ w_k, x @ w_v)

    def with_positions(x):
        """Self-attention after adding sinusoidal positions: not equivariant."""
        return self_attention(x + sinusoidal(x.shape[-2], x.shape[-1]).to(x.dtype))

    def causal_attention(x):
        """Causal self-attention: not equivariant."""
        return ref_sdpa(x @ w_q, x @ w_k, x @ w_v, is_causal=True)

    return {"self_attention": self_attention, "with_positions": with_positions, "causal_attention": causal_attention}


WRONG_DIRECTION = ("permuted one side in the wrong direction: compare attn_fn(x[..., perm, :]) with "
                   "attn_fn(x)[..., perm, :] (the same perm, applied the same way, on both sides)")


def _permutation_values(attn, x: torch.Tensor, perm: torch.Tensor) -> tuple[float, list[tuple[str, float]]]:
    """(the right max |attn(P x) - P attn(x)|, [(hint, the value a mistake gives)]) on one input."""
    inv = torch.argsort(perm)
    with torch.no_grad():
        ax, apx, aix = attn(x), attn(x[..., perm, :]), attn(x[..., inv, :])
    diff = apx - ax[..., perm, :]
    return float(diff.abs().max()), [
        (WRONG_DIRECTION, float((apx - ax[..., inv, :]).abs().max())),
        (WRONG_DIRECTION, float((aix - ax[..., perm, :]).abs().max())),
        ("did not permute the output: compare attn_fn(x[..., perm, :]) with attn_fn(x)[..., perm, :]",
         float((apx - ax).abs().max())),
        ("returned the mean absolute difference: return the max", float(diff.abs().mean())),
        ("forgot the abs(): return the max of |attn_fn(P x) - P attn_fn(x)|", float(diff.max())),
    ]


def _tells_apart(ref: float, wrong: list[tuple[str, float]], atol: float, rtol: float) -> bool:
    """True when the mistakes that show on this input (a value off the right one) give values 2% apart from the
    other mistakes' values: then each wrong answer gets its own message, whatever the draw."""
    shown = [(h, v) for h, v in wrong if abs(v - ref) > atol + rtol * abs(ref)]
    return all(abs(a - b) > 0.02 * max(abs(a), abs(b)) for i, (h, a) in enumerate(shown)
               for g, b in shown[i + 1:] if g != h)


@exercise("attention.permutation", "permutation check: max |attn(x[perm]) - attn(x)[perm]|", lesson=LESSON)
def _permutation(answer, c: Checker) -> None:
    fns = _attention_functions(c)
    cases = [
        ("plain self-attention, x (5, 4), perm [2, 0, 3, 4, 1]", "self_attention", (5, 4), [2, 0, 3, 4, 1]),
        ("self-attention with sinusoidal positions, x (6, 4), perm [1, 2, 0, 5, 3, 4]", "with_positions",
         (6, 4), [1, 2, 0, 5, 3, 4]),
        ("causal self-attention, batched x (2, 5, 4), perm [4, 3, 0, 1, 2]", "causal_attention",
         (2, 5, 4), [4, 3, 0, 1, 2]),
        ("plain self-attention, batched x (3, 7, 4), perm [6, 0, 1, 2, 3, 4, 5]", "self_attention",
         (3, 7, 4), [6, 0, 1, 2, 3, 4, 5]),
        ("self-attention with positions and the identity permutation", "with_positions", (4, 4), [0, 1, 2, 3]),
    ]
    atol, rtol = 1e-4, 1e-3
    for case, name, shape, perm in cases:
        attn, perm = fns[name], torch.tensor(perm)
        for _ in range(20):  # random inputs on which no two mistakes give the same number (rare draws do)
            x = c.randn(*shape)
            ref, wrong = _permutation_values(attn, x, perm)
            if _tells_apart(ref, wrong, atol, rtol):
                break
        out = c.call(answer, attn, x, perm, case=case,
                     hint="permute the token axis (dim -2): x[..., perm, :] works for (T, d) and (B, T, d)")
        if isinstance(out, (bool, np.bool_)) or (isinstance(out, torch.Tensor) and out.dtype == torch.bool):
            c.fail(f"{c.name} returned a bool on {case}: return the max abs difference (a number), not a yes/no")
        c.number(out, ref, case, atol=atol, rtol=rtol, wrong=[(h, lambda v=v: v) for h, v in wrong])


# ----------------------------------------------------------------------------- predictions (lesson notebook)

from tfcore.grading.predictions import predict_choice, predict_number  # noqa: E402


def _unscaled_entropy() -> float:
    """Mean entropy (nats) of the rows of softmax(q k^T) without the 1/sqrt(d_k) scale: 512 queries, T_k = 32
    keys, d_k = 512, q and k standard normal (float64, seed 0). The lesson's reveal cell computes the same."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(512, 512, generator=g, dtype=torch.float64)
    k = torch.randn(32, 512, generator=g, dtype=torch.float64)
    w = torch.softmax(q @ k.T, dim=-1)
    return float(-torch.special.xlogy(w, w).sum(-1).mean())


predict_number(
    "attention.predict_unscaled_entropy",
    "The mean entropy (nats) of an attention row over T_k = 32 keys, with d_k = 512, q and k standard normal, "
    "and no 1/sqrt(d_k) scale (uniform weights would give ln 32 = 3.47)",
    lesson=LESSON, answer=_unscaled_entropy, abs=0.5, unit=" nats", at_least=(0, "an entropy is never negative"),
    mistakes={math.log(32): "that is ln 32, the entropy of uniform weights, as if the scores were all alike",
              3.0: "about 3 nats is the entropy WITH the 1/sqrt(d_k) scale"},
    why="q . k sums 512 products of unit-variance numbers, so its standard deviation is sqrt(512) = 22.6. Scores "
        "that differ by tens make softmax almost one-hot: nearly all the weight lands on the largest score, and the "
        "entropy is near 0 instead of ln 32 = 3.47. Dividing by sqrt(d_k) brings the scores back to unit variance "
        "and the weights back to a spread (about 3.0 nats here).",
    hint="how large is q . k when it sums 512 products of unit-variance numbers, and what does softmax do to "
         "scores that differ by tens?",
)

predict_choice(
    "attention.predict_rows_sum",
    "The attention weights A = softmax(Q K^T / sqrt(d)) have shape (T_q, T_k). What sums to 1?",
    lesson=LESSON,
    options={"A": "each row: one query's weights over the keys", "B": "each column: one key's weights over the queries",
             "C": "the whole matrix"},
    answer="A",
    why="the softmax normalises over the last axis, the keys: each query spreads one unit of attention over the "
        "keys, so every row sums to 1. A column can sum to anything: a key that many queries like collects more "
        "than 1, an ignored key almost 0.",
    hint="over which axis does the softmax normalise, and what does one row of A belong to?",
)

predict_choice(
    "attention.predict_equivariant",
    "Which maps satisfy f(P X) = P f(X) for every permutation P: (1) attention, (2) attention with a causal "
    "mask, (3) a two-layer encoder without positions, (4) the same encoder with learned position embeddings?",
    lesson=LESSON,
    options={"A": "all four", "B": "1 and 3", "C": "1, 2 and 3", "D": "only 1"},
    answer="B",
    why="attention treats its rows as a set: reordering the tokens reorders the scores' rows and columns alike, "
        "and the outputs follow. An encoder block adds only parts that act on each position on its own (MLP, "
        "LayerNorm, residual additions), so it commutes with P too. A causal mask and position embeddings belong "
        "to positions, not tokens: after reordering, token pi(i) sits at position i and gets position i's mask "
        "row and embedding, so the outputs change by more than their order.",
    hint="which parts of each map depend on where a token sits rather than on what it is?",
)
