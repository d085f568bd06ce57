"""Tests-for-tests of lesson 10's checks (diagnostics.*): see tests/test_grading.py."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from test_grading import Entry, case_params, run_case

from tfcore.losses import lm_loss
from tfcore.diagnostics import leakage_test
from tfcore.model import capture_attention


def attention_entropy(weights):
    logs = torch.where(weights > 0, weights.log(), torch.zeros_like(weights))
    return -(weights * logs).sum(-1)


def entropy_numpy(weights):
    w = weights.numpy().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0)
    return torch.from_numpy(-terms.sum(-1)).to(weights.dtype)


def entropy_loop(weights):
    rows = weights.reshape(-1, weights.shape[-1])
    out = [-sum(a * math.log(a) for a in row.tolist() if a > 0) for row in rows]
    return torch.tensor(out, dtype=weights.dtype).reshape(weights.shape[:-1])


CASES = {
    "diagnostics.attention_entropy": Entry(
        solution=attention_entropy,
        styles={"xlogy": lambda w: -torch.special.xlogy(w, w).sum(-1), "numpy": entropy_numpy, "loop": entropy_loop},
        wrong={
            "naive": (lambda w: -(w * w.log()).sum(-1), "0 log 0 = 0"),
            "log2": (lambda w: -torch.special.xlogy(w, w).sum(-1) / math.log(2), "log base 2 instead of natural log"),
            "no_minus": (lambda w: torch.special.xlogy(w, w).sum(-1), "forgot the minus sign"),
            "wrong_axis": (lambda w: -torch.special.xlogy(w, w).sum(-2), "summed over the wrong axis"),
            "mean": (lambda w: -torch.special.xlogy(w, w).mean(-1), "averaged over the keys"),
        },
    ),
}


# ----------------------------------------------------------------------------- diagnostics.residual_norms


def residual_norms(model, tokens):
    blocks = list(model.encoder or []) + list(model.decoder or [])
    ratios = []

    def hook(module, args, out):
        x = args[0]
        ratios.append((out - x).norm() / x.norm())

    handles = [b.register_forward_hook(hook) for b in blocks]
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(ratios)


def residual_norms_by_hand(model, tokens):
    """No hooks: run the blocks one by one (decoder blocks causal)."""
    with torch.no_grad():
        x = model.embed_tokens(tokens)
        out = []
        stack, causal = (model.decoder, True) if model.decoder is not None else (model.encoder, False)
        for block in stack:
            y = block(x, is_causal=causal)
            out.append(float(torch.linalg.vector_norm(y - x) / torch.linalg.vector_norm(x)))
            x = y
    return torch.tensor(out)


def _ratio_with(f):
    def answer(model, tokens):
        blocks = list(model.encoder or []) + list(model.decoder or [])
        ratios = []
        handles = [b.register_forward_hook(lambda m, a, out: ratios.append(f(a[0], out))) for b in blocks]
        with torch.no_grad():
            model(tokens)
        for h in handles:
            h.remove()
        return torch.stack(ratios)
    return answer


def residual_norms_leaving_hooks(model, tokens):
    blocks = list(model.encoder or []) + list(model.decoder or [])
    ratios = []
    for b in blocks:
        b.register_forward_hook(lambda m, a, out: ratios.append((out - a[0]).norm() / a[0].norm()))
    with torch.no_grad():
        model(tokens)
    return torch.stack(ratios[-len(blocks):])


# ----------------------------------------------------------------------------- diagnostics.find_bug


def _symptoms(model):
    """(leaking (earlier output, later token) pairs, max |row sum - 1| of the captured attention)."""
    tokens = torch.randint(0, model.config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    leaks = sum(len(v) for v in leakage_test(model, tokens, model.config.vocab_size).values())
    with torch.no_grad(), capture_attention(model) as weights:
        model(tokens)
    return leaks, max(float((w.sum(-1) - 1).abs().max()) for w in weights.values())


def find_bug(model):
    leaks, row_error = _symptoms(model)
    if row_error > 1e-3:
        return "softmax axis"
    return "mask direction" if leaks else "missing scale"


def find_bug_by_influence(model):
    """Only model(tokens) calls: which tokens move which outputs (no captured weights)."""
    v = model.config.vocab_size
    tokens = torch.randint(0, v, (1, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = model(tokens)
        moved = torch.zeros(8, 8, dtype=torch.bool)  # moved[i, j]: output i moves when token j changes
        for j in range(8):
            changed = tokens.clone()
            changed[0, j] = (changed[0, j] + 1) % v
            moved[:, j] = (model(changed) - base).abs().amax(dim=(0, 2)) > 1e-6
    if not moved.triu(1).any():
        return "Missing_Scale"  # causal: the bug does not touch the mask
    return "wrong softmax axis" if moved.tril(-1).any() else "transposed mask"


def find_bug_leaks_only(model):
    leaks, _ = _symptoms(model)
    return "mask direction" if leaks else "missing scale"


def find_bug_rows_only(model):
    _, row_error = _symptoms(model)
    return "softmax axis" if row_error > 1e-3 else "missing scale"


def find_bug_swapped(model):
    leaks, row_error = _symptoms(model)
    if not leaks:
        return "missing scale"
    return "mask direction" if row_error > 1e-3 else "softmax axis"


def find_bug_guess(model, _rng=__import__("random").Random(0)):
    return _rng.choice(["mask direction", "softmax axis", "missing scale"])


# ----------------------------------------------------------------------------- diagnostics.checklist


def checklist(model, tokens, vocab_size, steps=10):
    with torch.no_grad():
        logits = model(tokens)
    initial = lm_loss(logits, tokens).item()
    causal = True
    with torch.no_grad():
        for j in range(1, tokens.shape[1]):
            changed = tokens.clone()
            changed[:, j] = (changed[:, j] + 1) % vocab_size
            if (model(changed) - logits)[:, :j].abs().max() > 1e-5:
                causal = False
    with torch.no_grad(), capture_attention(model) as weights:
        model(tokens)
    rows = all(bool(((w.sum(-1) - 1).abs() < 1e-4).all()) for w in weights.values())
    model.zero_grad()
    lm_loss(model(tokens), tokens).backward()
    grad_norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters() if p.grad is not None))
    model.zero_grad()
    clone = copy.deepcopy(model)
    opt = torch.optim.Adam([p for p in clone.parameters() if p.requires_grad], lr=3e-2)
    for _ in range(steps):
        loss = lm_loss(clone(tokens), tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = lm_loss(clone(tokens), tokens).item()
    return {"initial_loss": initial, "loss_at_chance": abs(initial - math.log(vocab_size)) < 0.5, "causal": causal,
            "rows_sum_to_one": rows, "grad_norm": grad_norm, "overfits": final < 0.5 * initial}


def checklist_with_tfcore(model, tokens, vocab_size, steps=10):
    """The same checks through tfcore.diagnostics, with torch.autograd.grad and tensors for flags."""
    from tfcore.diagnostics import gradient_norms, leakage_test, overfit_batch

    with torch.no_grad():
        initial = lm_loss(model(tokens), tokens)
    leaks = leakage_test(model, tokens, vocab_size)
    with torch.no_grad(), capture_attention(model) as weights:
        model(tokens)
    rows = torch.stack([torch.allclose(w.sum(-1), torch.ones(()), atol=1e-4) * torch.tensor(True)
                        for w in weights.values()]).all()
    norms = gradient_norms(model, lm_loss(model(tokens), tokens)) if any(
        p.requires_grad for p in model.parameters()) else {}
    losses = overfit_batch(model, lambda m: lm_loss(m(tokens), tokens), steps=steps, lr=3e-2)
    return {"initial_loss": initial, "loss_at_chance": (initial - math.log(vocab_size)).abs() < 0.5,
            "causal": not any(leaks.values()), "rows_sum_to_one": rows,
            "grad_norm": math.sqrt(sum(v * v for v in norms.values())), "overfits": losses[-1] < 0.5 * losses[0]}


def _checklist_with(**changes):
    def answer(model, tokens, vocab_size, steps=10):
        out = checklist(model, tokens, vocab_size, steps)
        for key, f in changes.items():
            out[key] = f(model, tokens, vocab_size, out)
        return out
    return answer


def _causal_any_position(model, tokens, vocab_size, out):
    with torch.no_grad():
        logits = model(tokens)
        changed = tokens.clone()
        changed[:, 2] = (changed[:, 2] + 1) % vocab_size
        return bool((model(changed) - logits).abs().max() <= 1e-5)  # compares every position, also i >= j


def _rows_over_queries(model, tokens, vocab_size, out):
    with torch.no_grad(), capture_attention(model) as weights:
        model(tokens)
    return all(bool(((w.sum(-2) - 1).abs() < 1e-4).all()) for w in weights.values())


def checklist_trains_the_model(model, tokens, vocab_size, steps=10):
    out = checklist(model, tokens, vocab_size, 0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    for _ in range(steps):
        loss = lm_loss(model(tokens), tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out["overfits"] = lm_loss(model(tokens), tokens).item() < 0.5 * out["initial_loss"]
    return out


def _sum_of_norms(model, tokens, vocab_size, out):
    model.zero_grad()
    lm_loss(model(tokens), tokens).backward()
    total = sum(float(p.grad.norm()) for p in model.parameters() if p.grad is not None)
    model.zero_grad()
    return total


CASES.update({
    "diagnostics.residual_norms": Entry(
        solution=residual_norms,
        styles={"by_hand": residual_norms_by_hand},
        wrong={
            "output_over_input": (_ratio_with(lambda x, y: y.norm() / x.norm()), "F_l(x) = block(x) - x"),
            "inverted": (_ratio_with(lambda x, y: x.norm() / (y - x).norm()), "the ratio is inverted"),
            "over_output": (_ratio_with(lambda x, y: (y - x).norm() / y.norm()), "not of its output"),
            "per_token": (_ratio_with(lambda x, y: ((y - x).norm(dim=-1) / x.norm(dim=-1)).mean()), "per-token"),
            "hooks_left": (residual_norms_leaving_hooks, "handle.remove()"),
        },
    ),
    "diagnostics.find_bug": Entry(
        solution=find_bug,
        styles={"influence_and_aliases": find_bug_by_influence},
        wrong={
            "constant": (lambda model: "missing scale", "named 'missing scale' for all 6 models"),
            "guess": (find_bug_guess, "of 6 right"),
            "leaks_only": (find_bug_leaks_only, "has the 'softmax axis' bug, not 'mask direction': both bugs make"),
            "rows_only": (find_bug_rows_only, "has the 'mask direction' bug, not 'missing scale'"),
            "swapped": (find_bug_swapped, "rows do sum to 1 over the keys, yet it leaks"),
            "not_a_name": (lambda model: "the mask is wrong", "not one of the bug names"),
            "old_dict": (lambda model: {"X": "missing scale"}, "return one of the strings"),
        },
    ),
    "diagnostics.checklist": Entry(
        solution=checklist,
        styles={"tfcore": checklist_with_tfcore},
        wrong={
            "causal_all_positions": (_checklist_with(causal=_causal_any_position), "compare only the outputs"),
            "rows_over_queries": (_checklist_with(rows_sum_to_one=_rows_over_queries), "the last axis"),
            "trains_the_model": (checklist_trains_the_model, "overfit a copy"),
            "sum_of_norms": (_checklist_with(grad_norm=_sum_of_norms), "not the sum of the per-parameter norms"),
            "unshifted": (_checklist_with(initial_loss=lambda m, t, v, o: float(
                torch.nn.functional.cross_entropy(m(t).flatten(0, 1), t.flatten()))), "shift the targets"),
            "always_at_chance": (_checklist_with(loss_at_chance=lambda m, t, v, o: True), "loss_at_chance"),
        },
    ),
})


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson10_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)


# ----------------------------------------------------------------------------- predictions (lesson notebook)
# ID -> (right answers, wrong answers, a piece of the reasoning, the value as the feedback shows it); gathered by
# tests/test_grading_predictions.py. The reference is the mean of log(i + 1) over 64 rows, log(64!) / 64 = 3.206.
PREDICTION_CASES = {
    "diagnostics.predict_causal_uniform_entropy": (
        [3.21, 3.2058, math.lgamma(65) / 64, 3.16, 3.05, 3.4, np.float64(3.3)],
        [math.log(64), 4.16, math.log(32.5), 2.08, 0, 1.0], "mean of logs is below the log of the mean",
        "3.206 nats"),
    "diagnostics.predict_missing_scale": (
        ["B", "b", "(B)", " b. ", "model B"], ["A", "c", "(C)", "model A"], "passes every test of structure",
        "(B) model B"),
}
