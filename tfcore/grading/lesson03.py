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


# ----------------------------------------------------------------------------- heads.param_count


@exercise("heads.param_count", "parameters of an attention layer with n_heads query and n_kv_heads key/value heads",
          lesson=LESSON)
def _param_count(answer, c: Checker) -> None:
    from tfcore.complexity import attention_params

    cases = [
        (768, 12, 12, True),
        (768, 12, 12, False),
        (512, 8, 2, True),
        (4096, 32, 8, False),
        (1024, 16, 1, True),
        (12, 6, 3, True),
        (10, 5, 5, True),
        (7, 1, 1, False),
    ]
    for d, h, h_kv, bias in cases:
        case = f"d_model={d}, n_heads={h}, n_kv_heads={h_kv}, bias={bias}"
        ref = attention_params(d, h, h_kv, bias)
        kv = h_kv * (d // h)
        out = c.call(answer, d, h, h_kv, bias, case=case)
        wrong = [
            ("ignored n_kv_heads: W_K and W_V map d_model to n_kv_heads * d_head outputs, fewer than d_model "
             "under GQA/MQA", lambda: 4 * d * d + (4 * d if bias else 0)),
            ("W_K and W_V have n_kv_heads * d_head outputs (d_head = d_model / n_heads), not n_kv_heads * d_model",
             lambda: 2 * d * d + 2 * d * h_kv * d + ((2 * d + 2 * h_kv * d) if bias else 0)),
            ("the output projection W_O is missing: four projections, W_Q, W_K, W_V and W_O",
             lambda: d * d + 2 * d * kv + ((d + 2 * kv) if bias else 0)),
            ("shrank W_Q too: only keys and values are shared; there are n_heads query heads, so W_Q is "
             "d_model x d_model", lambda: d * d + 3 * d * kv + ((d + 3 * kv) if bias else 0)),
            ("shrank W_O too: the output projection maps all n_heads * d_head = d_model channels back to d_model",
             lambda: d * d + 3 * d * kv + ((2 * d + 2 * kv) if bias else 0)),
        ]
        if bias:
            wrong += [
                ("forgot the biases: with bias=True each projection has one bias per output", lambda: 2 * d * d + 2 * d * kv),
                ("the K and V biases have n_kv_heads * d_head entries each (one per output), not d_model",
                 lambda: 2 * d * d + 2 * d * kv + 4 * d),
            ]
        else:
            wrong.append(("counted biases although bias=False", lambda: ref + 2 * d + 2 * kv))
        c.number(out, ref, case, integer=True, wrong=wrong)


# ----------------------------------------------------------------------------- heads.mha


def _mha_variant(x, w_q, w_k, w_v, w_o, h, *, scale="head", split="ok", merge="ok", out_proj=True,
                 transpose_w=False, softmax_dim=-1, causal=False):
    """Multi-head attention with one thing changed, for the wrong-answer variants."""
    import math

    import torch

    b, t, d = x.shape
    if transpose_w:
        w_q, w_k, w_v, w_o = w_q.T, w_k.T, w_v.T, w_o.T
    d_head = d // h

    def heads(a):
        if split == "view":
            return a.reshape(b, h, t, d_head)
        return a.reshape(b, t, h, d_head).transpose(1, 2)

    q, k, v = heads(x @ w_q.T), heads(x @ w_k.T), heads(x @ w_v.T)
    s = q @ k.transpose(-2, -1)
    s = s / {"head": math.sqrt(d_head), "model": math.sqrt(d), "none": 1.0}[scale]
    if causal:
        s = s.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
    o = torch.softmax(s, dim=softmax_dim) @ v  # (B, h, T, d_head)
    o = o.reshape(b, t, d) if merge == "view" else o.transpose(1, 2).reshape(b, t, d)
    return o @ w_o.T if out_proj else o


@exercise("heads.mha", "multi-head self-attention mha(x, w_q, w_k, w_v, w_o, n_heads), as nn.MultiheadAttention",
          lesson=LESSON)
def _mha(answer, c: Checker) -> None:
    import math

    import torch

    cases = [
        ("x (2, 5, 12), n_heads=3", c.randn(2, 5, 12), 3),
        ("x (1, 7, 8), n_heads=2", c.randn(1, 7, 8), 2),
        ("x (3, 4, 6), n_heads=6 (d_head=1)", c.randn(3, 4, 6), 6),
        ("x (1, 6, 10), n_heads=1", c.randn(1, 6, 10), 1),
        ("x (2, 1, 10), n_heads=5 (T=1)", c.randn(2, 1, 10), 5),
        ("a transposed (non-contiguous) x (2, 6, 8), n_heads=4", c.randn(6, 2, 8).transpose(0, 1), 4),
    ]
    for case, x, h in cases:
        d = x.shape[-1]
        w_q, w_k, w_v, w_o = (c.randn(d, d, scale=1.5 / math.sqrt(d)) for _ in range(4))
        ref_layer = torch.nn.MultiheadAttention(d, h, bias=False, batch_first=True)
        with torch.no_grad():
            ref_layer.in_proj_weight.copy_(torch.cat((w_q, w_k, w_v)))
            ref_layer.out_proj.weight.copy_(w_o)
            ref = ref_layer(x, x, x, need_weights=False)[0]
        out = c.call(answer, x, w_q, w_k, w_v, w_o, h, case=case,
                     hint="weights are in nn.Linear layout (out, in): q = x @ w_q.T")
        args = (x, w_q, w_k, w_v, w_o, h)
        c.compare(out, ref, case, atol=1e-5, rtol=1e-4, wrong=[
            ("forgot the 1/sqrt(d_head) scale of the scores", lambda: _mha_variant(*args, scale="none")),
            ("scaled by 1/sqrt(d_model): each head's scores are dot products of d_head numbers, so scale by "
             "1/sqrt(d_head)", lambda: _mha_variant(*args, scale="model")),
            ("heads mixed up when splitting: view (B, T, d_model) as (B, T, h, d_head), then transpose(1, 2); "
             "a plain reshape to (B, h, T, d_head) mixes positions", lambda: _mha_variant(*args, split="view")),
            ("heads mixed up when merging: transpose(1, 2) back to (B, T, h, d_head) before reshaping to "
             "(B, T, d_model)", lambda: _mha_variant(*args, merge="view")),
            ("the output projection is missing: multiply the concatenated heads by W_O (x @ w_o.T)",
             lambda: _mha_variant(*args, out_proj=False)),
            ("the weights are in nn.Linear layout (out, in): q = x @ w_q.T, not x @ w_q",
             lambda: _mha_variant(*args, transpose_w=True)),
            ("softmax over the wrong axis: normalise over the keys (the last axis of the scores)",
             lambda: _mha_variant(*args, softmax_dim=-2)),
            ("n_heads was ignored: split the d_model channels into n_heads heads of d_head each",
             lambda: _mha_variant(x, w_q, w_k, w_v, w_o, 1)),
            ("applied a causal mask: this is bidirectional self-attention (nn.MultiheadAttention without a mask)",
             lambda: _mha_variant(*args, causal=True)),
        ])


# ----------------------------------------------------------------------------- predictions (lesson notebook)

from tfcore.grading.predictions import predict_choice, predict_number  # noqa: E402


def _random_composition_baseline() -> float:
    """Mean K-composition score of 1,000 pairs of random heads, d_model = 64, d_head = 16 (seed 0): the
    lesson's reveal cell computes the same with ``random_composition_scores``."""
    from tfcore.diagnostics import random_composition_scores

    return float(random_composition_scores(64, 16, kind="k", samples=1000, seed=0).mean())


def _kv_cache_gib() -> float:
    """The KV cache of a Llama-2-7B-sized decoder (32 layers, h_kv = 32, d_head = 128), batch 8 x 4096, fp16."""
    from tfcore.complexity import kv_cache_bytes

    return kv_cache_bytes(32, 8, 4096, 32, 128, bytes_per_value=2) / 2**30


predict_choice(
    "heads.predict_more_heads_params",
    "An attention layer with d_model = 768 and h = 12 heads (GPT-2 small) is rebuilt with h = 24 heads, "
    "d_head = 768 / 24 = 32. Its parameter count",
    lesson=LESSON,
    options={"A": "doubles", "B": "stays the same", "C": "halves", "D": "grows by 12 more bias vectors"},
    answer="B",
    why="W_Q, W_K, W_V and W_O stay (768, 768) matrices and the biases stay 4 vectors of 768: more heads only cut "
        "the same columns into more, narrower blocks (24 of 32 instead of 12 of 64). The count is "
        "4 d^2 + 4 d = 2 362 368 whatever h is.",
    hint="which matrices does a multi-head layer hold, and does their shape depend on h when d_head = d_model / h?",
)

predict_choice(
    "heads.predict_ablated_induction",
    "Remove the previous-token head of layer 0 (its output times 0). The induction scores of the four layer-1 heads, "
    "about 0.8 in the intact model,",
    lesson=LESSON,
    options={"A": "stay about 0.8: the layer-1 heads' own weights did not change",
             "B": "fall well below 0.8", "C": "rise above 0.8"},
    answer="B",
    why="an induction head finds the token after the earlier copy because that position's key says \"my "
        "predecessor was a\", and layer 0's previous-token head wrote that. Without it the keys lose most of that "
        "information, so the same W_Q and W_K no longer single out the right position and the attention spreads: "
        "the pattern depends on layer 0's output, not only on layer 1's weights.",
    hint="what in the key of the position after the earlier copy tells the induction head to look there, and "
         "which head put it into the residual stream?",
)

predict_number(
    "heads.predict_random_composition",
    "The K-composition score ||W_QK W_OV||_F / (||W_QK||_F ||W_OV||_F) of two random heads (every weight standard "
    "normal) with d_model = 64 and d_head = 16, averaged over many pairs",
    lesson=LESSON, answer=_random_composition_baseline, abs=0.04, at_least=(0, "a ratio of norms is never negative"),
    mistakes={0.25: "0.25 is 1/sqrt(d_head): the overlap is measured in the d_model = 64 dimensional stream",
              1 / 64: "1/64 is the squared score; the score is its square root"},
    why="for a random unit vector b in d dimensions, ||A b||^2 is on average ||A||_F^2 / d (A's squared norm spreads "
        "evenly over the d directions). The columns of W_OV are such random directions for W_QK, so ||W_QK W_OV||_F "
        "is about ||W_QK||_F ||W_OV||_F / sqrt(d_model) and the score about 1/sqrt(64) = 0.125: not 0, random heads overlap a little by chance, and that is the baseline a trained "
        "head's score is compared with. d_head = 16 does not enter: the score measures overlap in the "
        "d_model-dimensional residual stream.",
    hint="how much of a random direction in d dimensions lies in the directions a random matrix amplifies? Think "
         "of the squared cosine between two random unit vectors in d dimensions.",
)

predict_number(
    "heads.predict_kv_cache_gib",
    "The KV cache of a decoder with 32 layers, h_kv = h = 32 heads of d_head = 128 (Llama 2 7B's shape), for a "
    "batch of 8 sequences of 4096 tokens in fp16, in GiB (2^30 bytes)",
    lesson=LESSON, answer=_kv_cache_gib, rel=0.25, unit=" GiB",
    mistakes={8: "half of it: count both the key and the value of every token",
              32: "fp16 takes 2 bytes per number, not 4", 2: "that is one sequence: the batch holds 8",
              16 * 1024: "that is the size in MiB: the question asks in GiB (2^30 bytes)"},
    why="each token stores a key and a value (2) for every layer (32) and KV head (32), each of d_head = 128 "
        "numbers of 2 bytes: 2 x 32 x 32 x 128 x 2 = 524 288 bytes = 0.5 MiB per token; times 8 x 4096 = 32 768 "
        "tokens gives 16 GiB, more than the 12.6 GiB of the model's own weights in fp16 (6.74 B parameters).",
    hint="count the numbers cached per token (keys and values, every layer, every KV head, d_head each), then "
         "multiply by the bytes per number and the tokens in the batch.",
)
