"""Tests-for-tests of lesson 08's checks (complexity.*): see tests/test_grading.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from test_grading import Entry, case_params, run_case


def kv_cache_bytes(n_layers, batch, seq_len, n_kv_heads, d_head, bytes_per_value):
    return 2 * n_layers * batch * seq_len * n_kv_heads * d_head * bytes_per_value


def kv_cache_bytes_steps(n_layers, batch, seq_len, n_kv_heads, d_head, bytes_per_value):
    per_token_per_layer = 2 * n_kv_heads * d_head  # one key and one value vector per KV head
    values = per_token_per_layer * seq_len * batch * n_layers
    return values * bytes_per_value


def attention_flops(batch, n_heads, seq_len, d_head):
    return 4 * batch * n_heads * seq_len ** 2 * d_head


def attention_flops_matmuls(batch, n_heads, seq_len, d_head):
    def matmul(m, k, n):  # (m, k) @ (k, n): m n dot products of length k, 2 FLOPs per multiply-add
        return 2 * m * k * n

    return batch * n_heads * (matmul(seq_len, d_head, seq_len) + matmul(seq_len, seq_len, d_head))


CASES = {
    "complexity.kv_cache_bytes": Entry(
        solution=kv_cache_bytes,
        styles={"steps": kv_cache_bytes_steps,
                "numpy_int": lambda *args: np.prod(np.array([2, *args], dtype=np.int64)),
                "math.prod": lambda *args: math.prod((2, *args))},
        wrong={
            "no_factor_2": (lambda l, b, t, h, d, n: l * b * t * h * d * n, "forgot the factor 2 for keys AND values"),
            "float": (lambda *args: 2.0 * math.prod(args), "return an int"),
            "no_bytes": (lambda l, b, t, h, d, n: 2 * l * b * t * h * d, "forgot bytes_per_value"),
            "no_layers": (lambda l, b, t, h, d, n: 2 * b * t * h * d * n, "forgot n_layers"),
            "gib": (lambda *args: 2 * math.prod(args) / 2**30, "returned GiB"),
        },
    ),
    "complexity.attention_flops": Entry(
        solution=attention_flops,
        styles={"two_matmuls": attention_flops_matmuls},
        wrong={
            "multiply_add_as_one": (lambda b, h, t, d: 2 * b * h * t * t * d, "half the expected count"),
            "linear_in_t": (lambda b, h, t, d: 4 * b * h * t * d, "T^2"),
            "quarter": (lambda b, h, t, d: b * h * t * t * d, "a quarter"),
            "float": (lambda b, h, t, d: 4.0 * b * h * t * t * d, "return an int"),
            "no_heads": (lambda b, h, t, d: 4 * b * t * t * d, "forgot the heads"),
        },
    ),
}



# ----------------------------------------------------------------------------- complexity.block_flops


def block_flops(batch, seq_len, d_model, n_heads, d_ff):
    d_head = d_model // n_heads
    parts = {"attention": 4 * batch * n_heads * seq_len**2 * d_head,
             "projections": 8 * batch * seq_len * d_model**2,
             "mlp": 4 * batch * seq_len * d_model * d_ff}
    parts["total"] = sum(parts.values())
    return parts


def block_flops_matmuls(batch, seq_len, d_model, n_heads, d_ff):
    """Every matrix product spelled out as (m, k) @ (k, n) -> 2 m k n FLOPs."""
    def matmul(m, k, n):
        return 2 * m * k * n

    rows, d_head = batch * seq_len, d_model // n_heads
    projections = sum(matmul(rows, d_model, d_model) for _ in ("q", "k", "v", "o"))
    attention = batch * n_heads * (matmul(seq_len, d_head, seq_len) + matmul(seq_len, seq_len, d_head))
    mlp = matmul(rows, d_model, d_ff) + matmul(rows, d_ff, d_model)
    return {"projections": projections, "attention": attention, "mlp": mlp, "total": projections + attention + mlp}


def _block_variant(**changes):
    def answer(b, t, d, h, f):
        parts = block_flops(b, t, d, h, f)
        for key, fn in changes.items():
            parts[key] = fn(b, t, d, h, f, parts)
        if "total" not in changes:
            parts["total"] = parts["attention"] + parts["projections"] + parts["mlp"]
        return parts

    return answer


# ----------------------------------------------------------------------------- complexity.online_softmax


def online_softmax(x, chunk):
    m = torch.tensor(float("-inf"), dtype=x.dtype)
    l = torch.tensor(0.0, dtype=x.dtype)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk]
        m_new = torch.maximum(m, part.max())
        shift = m_new if torch.isfinite(m_new) else torch.zeros_like(m_new)  # a fully masked chunk so far
        l = l * torch.exp(m - shift) + torch.exp(part - shift).sum()
        m = m_new
    return torch.exp(x - m) / l, m, l


def online_softmax_python(x, chunk):
    """Plain Python floats for m and l, NumPy for the chunks."""
    values = x.double().numpy()
    m, l = -math.inf, 0.0
    for start in range(0, len(values), chunk):
        part = values[start:start + chunk]
        m_new = max(m, float(part.max()))
        if m_new == -math.inf:
            continue  # nothing visible yet: l stays 0
        l = l * math.exp(m - m_new) + float(np.exp(part - m_new).sum())
        m = m_new
    return torch.from_numpy(np.exp(values - m) / l).to(x.dtype), m, l


def _os_variant(rescale=True, inverted=False, guard=True, normalise_last=False, whole_row_max=False):
    def answer(x, chunk):
        m = torch.tensor(float("-inf"), dtype=x.dtype)
        l = torch.tensor(0.0, dtype=x.dtype)
        last = l
        for start in range(0, len(x), chunk):
            part = x[start:start + chunk]
            m_new = torch.maximum(m, part.max())
            shift = m_new if (torch.isfinite(m_new) or not guard) else torch.zeros_like(m_new)
            alpha = torch.exp(shift - m) if inverted else torch.exp(m - shift)
            if not torch.isfinite(m):
                alpha = torch.zeros_like(alpha)
            last = torch.exp(part - shift).sum()
            l = (alpha * l if rescale else l) + last
            m = m_new
        if whole_row_max:
            m = x.max()
            l = torch.exp(x - m).sum()
        return torch.exp(x - m) / (last if normalise_last else l), m, l

    return answer


# ----------------------------------------------------------------------------- complexity.tiled_attention


def tiled_attention(q, k, v, block_q, block_k):
    scale = 1 / math.sqrt(q.shape[-1])
    out = torch.empty_like(q)
    for r0 in range(0, q.shape[0], block_q):
        qi = q[r0:r0 + block_q] * scale
        m = torch.full((qi.shape[0], 1), float("-inf"), dtype=q.dtype)
        l = torch.zeros(qi.shape[0], 1, dtype=q.dtype)
        o = torch.zeros(qi.shape[0], q.shape[1], dtype=q.dtype)
        for c0 in range(0, k.shape[0], block_k):
            s = qi @ k[c0:c0 + block_k].T
            m_new = torch.maximum(m, s.amax(-1, keepdim=True))
            p = torch.exp(s - m_new)
            alpha = torch.exp(m - m_new)
            l = alpha * l + p.sum(-1, keepdim=True)
            o = alpha * o + p @ v[c0:c0 + block_k]
            m = m_new
        out[r0:r0 + block_q] = o / l
    return out


def tiled_attention_tfcore_steps(q, k, v, block_q, block_k):
    """Row tiles through tfcore.flash.flash_attention_steps (one key tile per step), float64 inside."""
    from tfcore.flash import flash_attention_steps

    rows = [flash_attention_steps(q[r0:r0 + block_q].double(), k.double(), v.double(), block_k=block_k)[-1]["O"]
            for r0 in range(0, q.shape[0], block_q)]
    return torch.cat(rows).to(q.dtype)


def _tiled_wrong(scale=None, rescale_o=True, normalise_last=False, transpose=False, full_scores=False):
    def answer(q, k, v, block_q, block_k):
        d = q.shape[-1]
        s_factor = 1 / math.sqrt(d) if scale is None else scale(d)
        if full_scores:
            return torch.softmax(q @ k.T * s_factor, dim=-1) @ v
        out = torch.empty_like(q)
        for r0 in range(0, q.shape[0], block_q):
            qi = q[r0:r0 + block_q] * s_factor
            m = torch.full((qi.shape[0], 1), float("-inf"), dtype=q.dtype)
            l = torch.zeros(qi.shape[0], 1, dtype=q.dtype)
            o = torch.zeros(qi.shape[0], d, dtype=q.dtype)
            last = l
            for c0 in range(0, k.shape[0], block_k):
                s = qi @ k[c0:c0 + block_k].T
                m_new = torch.maximum(m, s.amax(-1, keepdim=True))
                p = torch.exp(s - m_new)
                alpha = torch.exp(m - m_new)
                last = p.sum(-1, keepdim=True)
                l = alpha * l + last
                o = (alpha * o if rescale_o else o) + p @ v[c0:c0 + block_k]
                m = m_new
            out[r0:r0 + block_q] = o / (last if normalise_last else l)
        return out.T if transpose else out

    return answer


CASES["complexity.block_flops"] = Entry(
    solution=block_flops,
    styles={"matmuls": block_flops_matmuls},
    wrong={
        "mlp_4d": (_block_variant(mlp=lambda b, t, d, h, f, p: 16 * b * t * d * d), "use d_ff, not 4 d_model"),
        "three_projections": (_block_variant(projections=lambda b, t, d, h, f, p: 6 * b * t * d * d), "four d x d"),
        "attention_half": (_block_variant(attention=lambda b, t, d, h, f, p: 2 * b * t * t * d), "two products"),
        "attention_no_heads": (_block_variant(attention=lambda b, t, d, h, f, p: 4 * b * t * t * (d // h)),
                               "every head has its own"),
        "total_wrong": (_block_variant(total=lambda b, t, d, h, f, p: p["projections"] + p["mlp"]),
                        "total must be the sum"),
        "missing_key": (lambda *a: {k: v for k, v in block_flops(*a).items() if k != "mlp"}, "no key 'mlp'"),
        "tuple": (lambda *a: tuple(block_flops(*a).values()), "return a dict"),
    },
)

CASES["complexity.online_softmax"] = Entry(
    solution=online_softmax,
    styles={"python_floats_numpy": online_softmax_python},
    wrong={
        "no_rescale": (_os_variant(rescale=False), "multiply l by exp(m_old - m_new)"),
        "inverted": (_os_variant(inverted=True), "not exp(m_new - m_old)"),
        "no_guard": (_os_variant(guard=False), "entirely -inf"),
        "last_chunk_sum": (_os_variant(normalise_last=True), "not by the last chunk's sum"),
        "whole_row": (_os_variant(whole_row_max=True), "chunk by chunk"),
        "only_p": (lambda x, chunk: online_softmax(x, chunk)[0], "return a tuple (p, m, l)"),
    },
)

CASES["complexity.tiled_attention"] = Entry(
    solution=tiled_attention,
    styles={"tfcore_steps_float64": tiled_attention_tfcore_steps},
    wrong={
        "no_scale": (_tiled_wrong(scale=lambda d: 1.0), "1/sqrt(d_head)"),
        "scale_times_sqrt": (_tiled_wrong(scale=lambda d: math.sqrt(d)), "not sqrt(d_head)"),
        "o_not_rescaled": (_tiled_wrong(rescale_o=False), "rescale the accumulated output O"),
        "last_tile_sum": (_tiled_wrong(normalise_last=True), "not by the last tile's sum"),
        "transposed": (_tiled_wrong(transpose=True), "one row per query"),
        "full_scores": (_tiled_wrong(full_scores=True), "never holds the T_q x T_k scores"),
    },
)

@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson08_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)


# ----------------------------------------------------------------------------- predictions (lesson notebook)

# prediction ID -> (right answers, wrong answers, a substring of the reasoning, the value as shown);
# collected by tests/test_grading_predictions.py
PREDICTION_CASES = {
    "complexity.predict_attention_crossover": (
        [4608, 6 * 768, 4500, 5000], [3072, 1024, 768, 9216, 2304], "T = 6 d = 6 * 768 = 4608",
        "the value is 4 608 tokens"),
    "complexity.predict_kv_cache_gib": (
        [2, 2.0, 2 ** 31 / 2 ** 30, 2.147], [1, 4, 0.5, 0.0625, 64], "2^31 bytes = 2 GiB", "the value is 2 GiB"),
    "complexity.predict_running_sum": (
        ["C", "c", "(C)", "it can do either"], ["A", "b", "it always decreases"], "l' = alpha * l + rowsum",
        "(C) it can do either"),
}


def test_running_sum_prediction_both_ways():
    """The reasoning's claim on the lesson's example: where the max jumps, l rises in some rows, drops in others."""
    import torch

    from tfcore.flash import flash_attention_steps

    torch.manual_seed(1)  # the lesson's example
    q, k, v = torch.randn(4, 8), torch.randn(16, 8), torch.randn(16, 8)
    k = k * torch.linspace(0.5, 2.0, 16)[:, None]
    steps = flash_attention_steps(q, k, v, block_k=4)
    rose = dropped = 0
    for before, after in zip(steps, steps[1:]):
        jumped = after["m"] > before["m"]
        rose += int((jumped & (after["l"] > before["l"])).sum())
        dropped += int((jumped & (after["l"] < before["l"])).sum())
        # the update the text states: l' = alpha * l + the tile's sum, alpha = exp(m - m')
        alpha = torch.exp(before["m"] - after["m"])
        torch.testing.assert_close(after["l"], alpha * before["l"] + after["P"].sum(-1))
    assert rose and dropped
