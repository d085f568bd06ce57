"""Tests-for-tests of lesson 05's checks (norms.*): see tests/test_grading.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_grading import Entry, case_params, run_case


def layer_norm(x, weight, bias, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * weight + bias


def layer_norm_numpy(x, weight, bias, eps=1e-5):
    a = x.numpy().astype(np.float64)
    y = (a - a.mean(-1, keepdims=True)) / np.sqrt(a.var(-1, keepdims=True) + eps)
    return torch.from_numpy(y * weight.numpy() + bias.numpy()).to(x.dtype)


def _ln(unbiased=False, eps_outside=False, eps_fixed=None, naive_var=False, swap=False):
    def answer(x, weight, bias, eps=1e-5):
        e = eps if eps_fixed is None else eps_fixed
        mu = x.mean(-1, keepdim=True)
        var = (x * x).mean(-1, keepdim=True) - mu * mu if naive_var else x.var(-1, keepdim=True, unbiased=unbiased)
        denom = torch.sqrt(var) + e if eps_outside else torch.sqrt(var + e)
        w, b = (bias, weight) if swap else (weight, bias)
        return (x - mu) / denom * w + b

    return answer


def rms_norm(x, weight, eps=1e-6):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rms_norm_norm(x, weight, eps=1e-6):
    d = x.shape[-1]
    return weight * x / torch.sqrt(torch.linalg.vector_norm(x, dim=-1, keepdim=True) ** 2 / d + eps)


def _rms(centre=False, eps_outside=False, eps_fixed=None, total=False, default_eps=1e-6):
    def answer(x, weight, eps=default_eps):
        e = eps if eps_fixed is None else eps_fixed
        z = x - x.mean(-1, keepdim=True) if centre else x
        ms = z.pow(2).sum(-1, keepdim=True) if total else z.pow(2).mean(-1, keepdim=True)
        denom = torch.sqrt(ms) + e if eps_outside else torch.sqrt(ms + e)
        return z / denom * weight

    return answer


# ----------------------------------------------------------------------------- norms.by_hand


def by_hand(x):
    d = len(x)
    mean = sum(x) / d
    var = sum((v - mean) ** 2 for v in x) / d
    rms = (sum(v * v for v in x) / d) ** 0.5
    return {"mean": mean, "var": var, "layer_norm": [(v - mean) / var ** 0.5 for v in x],
            "rms": rms, "rms_norm": [v / rms for v in x]}


def by_hand_torch_eps(x):
    t = torch.tensor(x)
    return {"mean": t.mean(), "var": t.var(unbiased=False), "rms": t.pow(2).mean().sqrt(),
            "layer_norm": F.layer_norm(t.double(), (len(x),), eps=1e-5),
            "rms_norm": F.rms_norm(t.double(), (len(x),), eps=1e-5).numpy()}


def _by_hand_wrong(**changes):
    def answer(x):
        out = by_hand(x)
        t = torch.tensor(x, dtype=torch.float64)
        d = len(x)
        if changes.get("unbiased"):
            var = float(t.var(unbiased=True))
            out["var"] = var
            out["layer_norm"] = ((t - t.mean()) / var ** 0.5).tolist()
        if changes.get("ln_not_centred"):
            out["layer_norm"] = (t / t.var(unbiased=False).sqrt()).tolist()
        if changes.get("rms_is_length"):
            out["rms"] = float(t.norm())
            out["rms_norm"] = (t / t.norm()).tolist()
        if changes.get("rms_centred"):
            out["rms_norm"] = out["layer_norm"]
        if changes.get("drop"):
            del out[changes["drop"]]
        if changes.get("var_is_std"):
            out["var"] = out["var"] ** 0.5
        return out

    return answer


# ----------------------------------------------------------------------------- norms.pre_post


def pre_ln_block(x, attn, mlp, ln1, ln2):
    x = x + attn(ln1(x))
    return x + mlp(ln2(x))


def post_ln_block(x, attn, mlp, ln1, ln2):
    x = ln1(x + attn(x))
    return ln2(x + mlp(x))


def ln_block(x, attn, mlp, ln1, ln2, placement):
    return (pre_ln_block if placement == "pre" else post_ln_block)(x, attn, mlp, ln1, ln2)


def ln_block_loop(x, attn, mlp, ln1, ln2, placement):
    for sublayer, norm in ((attn, ln1), (mlp, ln2)):
        x = x + sublayer(norm(x)) if placement == "pre" else norm(x + sublayer(x))
    return x


def _placement_ignored(block):
    return lambda x, attn, mlp, ln1, ln2, placement: block(x, attn, mlp, ln1, ln2)


def _post_norm_inside(x, attn, mlp, ln1, ln2, placement):
    if placement == "pre":
        return pre_ln_block(x, attn, mlp, ln1, ln2)
    x = x + ln1(attn(x))
    return x + ln2(mlp(x))


def _pre_added_normed(x, attn, mlp, ln1, ln2, placement):
    if placement == "post":
        return post_ln_block(x, attn, mlp, ln1, ln2)
    x = ln1(x)
    x = x + attn(x)
    x = ln2(x)
    return x + mlp(x)


def _pre_parallel(x, attn, mlp, ln1, ln2, placement):
    if placement == "post":
        return post_ln_block(x, attn, mlp, ln1, ln2)
    return x + attn(ln1(x)) + mlp(ln2(x))


def _swapped_norms(x, attn, mlp, ln1, ln2, placement):
    return ln_block(x, attn, mlp, ln2, ln1, placement)


CASES = {
    "norms.layer_norm": Entry(
        solution=layer_norm,
        styles={"torch": lambda x, w, b, eps=1e-5: F.layer_norm(x, (x.shape[-1],), w, b, eps),
                "numpy_float64": layer_norm_numpy},
        wrong={
            "unbiased": (_ln(unbiased=True), "you used the unbiased variance"),
            "eps_outside": (_ln(eps_outside=True), "eps inside vs outside the sqrt"),
            "no_eps": (_ln(eps_fixed=0.0), "forgot eps"),
            "hard_coded_eps": (_ln(eps_fixed=1e-5), "ignored the eps argument"),
            "naive_variance": (_ln(naive_var=True), "cancels catastrophically"),
            "swapped": (_ln(swap=True), "weight and bias swapped"),
            "wrong_axis": (lambda x, w, b, eps=1e-5: (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + eps) * w + b,
                           "normalised over the wrong axis"),
        },
    ),
    "norms.rms_norm": Entry(
        solution=rms_norm,
        styles={"torch": lambda x, w, eps=1e-6: F.rms_norm(x, (x.shape[-1],), w, eps), "vector_norm": rms_norm_norm},
        wrong={
            "centred": (_rms(centre=True), "you subtracted the mean"),
            "eps_outside": (_rms(eps_outside=True), "eps inside vs outside the sqrt"),
            "sum": (_rms(total=True), "sum of squares"),
            "hard_coded_eps": (_rms(eps_fixed=1e-6), "ignored the eps argument"),
            "layer_norm_eps": (_rms(default_eps=1e-5), "wrong default eps"),
            "no_weight": (lambda x, w, eps=1e-6: x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps), "forgot the weight"),
        },
    ),
    "norms.by_hand": Entry(
        solution=by_hand,
        styles={"torch_tensors_eps": by_hand_torch_eps},
        wrong={
            "unbiased": (_by_hand_wrong(unbiased=True), "divides by d - 1"),
            "var_is_std": (_by_hand_wrong(var_is_std=True), "'var' is the standard deviation"),
            "ln_not_centred": (_by_hand_wrong(ln_not_centred=True), "'layer_norm' is not centred"),
            "rms_is_length": (_by_hand_wrong(rms_is_length=True), "'rms' is the length of x"),
            "rms_centred": (_by_hand_wrong(rms_centred=True), "'rms_norm' is the LayerNorm output"),
            "missing_key": (_by_hand_wrong(drop="rms"), "lacks the key 'rms'"),
            "tuple": (lambda x: tuple(by_hand(x).values()), "return a dict"),
        },
    ),
    "norms.pre_post": Entry(
        solution=ln_block,
        styles={"loop": ln_block_loop},
        wrong={
            "always_post": (_placement_ignored(post_ln_block), "you wrote Post-LN for placement='pre'"),
            "always_pre": (_placement_ignored(pre_ln_block), "you wrote Pre-LN for placement='post'"),
            "swapped_norms": (_swapped_norms, "ln1 and ln2 swapped"),
            "post_norm_inside": (_post_norm_inside, "the norm sits inside the residual branch"),
            "pre_added_normed": (_pre_added_normed, "the normalised stream was added back"),
            "pre_parallel": (_pre_parallel, "parallel block"),
        },
    ),
}


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson05_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)


# ----------------------------------------------------------------------------- predictions (see tests/test_grading_predictions.py)

PREDICTION_CASES = {
    "norms.predict_layernorm_norm": ([2.83, 8 ** 0.5, 2.7, 2.95], [1, 8, 0, 2.5, 3.2],
                                     "sum_i y_i^2 = d", "the value is 2.828"),
    "norms.predict_depth_ratio": ([2.38, 2, 2.5, 1.8, (24 / 6) ** 0.5], [1, 4, 0.5, 1.5, 3.2],
                                  "about sqrt(4) = 2 times the size", "the value is 2.38"),
    "norms.predict_which_trains": (["B", "b", "(B)", "only Pre-LN", " only pre-ln "], ["A", "both", "C", "d", "neither"],
                                   "identity path from the embedding", "(B) only Pre-LN"),
}


def test_the_depth_ratio_is_the_one_the_lesson_prints():
    """norms.predict_depth_ratio's answer is the ratio lesson 05 computes and prints (saved output)."""
    import re
    from pathlib import Path

    import nbformat

    from tfcore.grading.lesson05 import DEPTH_RATIO

    nb = nbformat.read(Path(__file__).parents[1] / "notebooks" / "05_norms.ipynb", as_version=4)
    printed = [m.group(1) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               for m in re.finditer(r"Pre-LN, L = 6 over L = 24: ([0-9.]+)", o.get("text", ""))]
    assert printed == [f"{DEPTH_RATIO:.2f}"]
