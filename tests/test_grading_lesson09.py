"""Tests-for-tests of lesson 09's checks (training.*): see tests/test_grading.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_grading import Entry, case_params, run_case


def lm_loss(logits, tokens):
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v), tokens[:, 1:].reshape(-1))


def lm_loss_gather(logits, tokens):
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    return -logp.gather(-1, tokens[:, 1:, None]).mean()


def lm_loss_loop(logits, tokens):
    b, t, _ = logits.shape
    total = logits.new_zeros(())
    for i in range(b):
        for j in range(t - 1):
            total = total - torch.log_softmax(logits[i, j], dim=-1)[tokens[i, j + 1]]
    return total / (b * (t - 1))


def lm_loss_naive(logits, tokens):
    p = torch.softmax(logits[:, :-1], dim=-1)
    return -torch.log(p.gather(-1, tokens[:, 1:, None])).mean()


CASES = {
    "training.lm_loss": Entry(
        solution=lm_loss,
        styles={"gather": lm_loss_gather, "loop": lm_loss_loop},
        wrong={
            "no_shift": (lambda lg, tk: F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tk.reshape(-1)), "did not shift"),
            "wrong_direction": (lambda lg, tk: F.cross_entropy(lg[:, 1:].reshape(-1, lg.shape[-1]), tk[:, :-1].reshape(-1)),
                                "shifted the wrong way"),
            "sum": (lambda lg, tk: F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), tk[:, 1:].reshape(-1),
                                                   reduction="sum"), "summed the losses"),
            "log2": (lambda lg, tk: lm_loss(lg, tk) / math.log(2), "log base 2 instead of natural log"),
            "item": (lambda lg, tk: lm_loss(lg, tk).item(), "drop .item()"),
            "naive_log_softmax": (lm_loss_naive, "large logits"),
            "view": (lambda lg, tk: F.cross_entropy(lg[:, :-1].view(-1, lg.shape[-1]), tk[:, 1:].view(-1)), ".reshape"),
            "detached": (lambda lg, tk: lm_loss(lg, tk).detach(), "detached from the graph"),
        },
    ),
}


# ----------------------------------------------------------------------------- training.mlm_mask


def mlm_mask(tokens, mask_id, vocab_size, p=0.15, generator=None):
    chosen = torch.rand(tokens.shape, generator=generator) < p
    roll = torch.rand(tokens.shape, generator=generator)
    inputs = tokens.clone()
    inputs[chosen & (roll < 0.8)] = mask_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = torch.randint(vocab_size, tokens.shape, generator=generator)[swap]
    targets = torch.where(chosen, tokens, torch.full_like(tokens, -100))
    return inputs, targets


def mlm_mask_multinomial(tokens, mask_id, vocab_size, p=0.15, generator=None):
    """One categorical draw per position: keep (not chosen), mask, random, unchanged."""
    probs = torch.tensor([1 - p, 0.8 * p, 0.1 * p, 0.1 * p])
    kind = torch.multinomial(probs, tokens.numel(), replacement=True, generator=generator).reshape(tokens.shape)
    random_ids = torch.randint(0, vocab_size, tokens.shape, generator=generator)
    inputs = torch.where(kind == 1, torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(kind == 2, random_ids, inputs)
    targets = torch.where(kind > 0, tokens, torch.full_like(tokens, -100))
    return inputs, targets


def mlm_mask_numpy(tokens, mask_id, vocab_size, p=0.15, generator=None):
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    t = tokens.numpy().copy()
    u = rng.random(t.shape)
    chosen, roll = u < p, rng.random(t.shape)
    out = t.copy()
    out[chosen & (roll < 0.8)] = mask_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    out[swap] = rng.integers(0, vocab_size, t.shape)[swap]
    return torch.from_numpy(out), torch.from_numpy(np.where(chosen, t, -100))


def _with(f):
    """A wrong variant built from the solution: f(tokens, inputs, targets, mask_id, p) -> (inputs, targets)."""
    def answer(tokens, mask_id, vocab_size, p=0.15, generator=None):
        inputs, targets = mlm_mask(tokens, mask_id, vocab_size, p, generator)
        return f(tokens, inputs, targets, mask_id)
    return answer


def mlm_all_masked(tokens, inputs, targets, mask_id):
    return torch.where(targets != -100, torch.full_like(tokens, mask_id), tokens), targets


def mlm_global_rng(tokens, mask_id, vocab_size, p=0.15, generator=None):
    return mlm_mask(tokens, mask_id, vocab_size, p, None)


def mlm_fixed_p(tokens, mask_id, vocab_size, p=0.15, generator=None):
    return mlm_mask(tokens, mask_id, vocab_size, 0.15, generator)


# ----------------------------------------------------------------------------- training.tying


def param_count(vocab_size, d_model, n_layers, max_seq_len, tie_weights=True):
    d = d_model
    block = 2 * (2 * d) + (4 * d * d + 4 * d) + (2 * d * 4 * d + 4 * d + d)  # two LayerNorms, attention, MLP
    total = vocab_size * d + max_seq_len * d + n_layers * block + 2 * d  # + the final LayerNorm
    return total if tie_weights else total + vocab_size * d


def param_count_meta(vocab_size, d_model, n_layers, max_seq_len, tie_weights=True):
    """Build the real model on the meta device (no memory, no time) and count its parameters."""
    from tfcore.complexity import count_parameters
    from tfcore.model import Transformer, TransformerConfig

    with torch.device("meta"):
        model = Transformer(TransformerConfig(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=1,
                                              max_seq_len=max_seq_len, tie_weights=tie_weights))
    return count_parameters(model)


def param_count_state_dict(vocab_size, d_model, n_layers, max_seq_len, tie_weights=True):
    """The classic mistake: state_dict() lists a tied matrix under both of its names."""
    from tfcore.model import Transformer, TransformerConfig

    with torch.device("meta"):
        model = Transformer(TransformerConfig(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=1,
                                              max_seq_len=max_seq_len, tie_weights=tie_weights))
    return sum(v.numel() for v in model.state_dict().values())


# ----------------------------------------------------------------------------- training.perplexity


def perplexity(losses, counts):
    return float(torch.exp((losses * counts).sum() / counts.sum()))


def perplexity_loop(losses, counts):
    total = sum(l * n for l, n in zip(losses.tolist(), counts.tolist()))
    return math.exp(total / sum(counts.tolist()))


CASES.update({
    "training.mlm_mask": Entry(
        solution=mlm_mask,
        styles={"multinomial": mlm_mask_multinomial, "numpy": mlm_mask_numpy},
        wrong={
            "all_masked": (_with(mlm_all_masked), "every chosen position became [MASK]"),
            "no_ignore": (_with(lambda tk, i, t, m: (i, tk.clone())), "no target is -100"),
            "only_masked_targets": (_with(lambda tk, i, t, m: (i, torch.where(i == m, tk, torch.full_like(tk, -100)))),
                                    "the loss covers every chosen position"),
            "targets_corrupted": (_with(lambda tk, i, t, m: (i, torch.where(t != -100, i, t))),
                                  "the targets hold the corrupted inputs"),
            "swapped": (_with(lambda tk, i, t, m: (t, i)), "return (inputs, targets)"),
            "global_rng": (mlm_global_rng, "generators seeded alike"),
            "fixed_p": (mlm_fixed_p, "use the argument p"),
        },
    ),
    "training.tying": Entry(
        solution=param_count,
        styles={"meta_device": param_count_meta},
        wrong={
            "state_dict": (param_count_state_dict, "count that V x d_model matrix once"),
            "never_tied": (lambda V, d, L, T, tie_weights=True: param_count(V, d, L, T, False), "count that V x d_model"),
            "no_positions": (lambda V, d, L, T, tie_weights=True: param_count(V, d, L, T, tie_weights) - T * d,
                             "position table"),
            "no_biases": (lambda V, d, L, T, tie_weights=True: param_count(V, d, L, T, tie_weights) - 9 * L * d,
                          "forgot the biases"),
            "gain_only": (lambda V, d, L, T, tie_weights=True: param_count(V, d, L, T, tie_weights) - (2 * L + 1) * d,
                          "a gain AND a shift"),
            "float": (lambda V, d, L, T, tie_weights=True: float(param_count(V, d, L, T, tie_weights)), "return an int"),
        },
    ),
    "training.perplexity": Entry(
        solution=perplexity,
        styles={"loop": perplexity_loop, "tensor": lambda l, n: torch.exp((l * n).sum() / n.sum())},
        wrong={
            "unweighted": (lambda l, n: math.exp(float(l.mean())), "weight each batch's loss"),
            "mean_of_ppl": (lambda l, n: float((l.exp() * n).sum() / n.sum()), "exponentiate once"),
            "base2": (lambda l, n: 2 ** float((l * n).sum() / n.sum()), "not 2 ** loss"),
            "sum": (lambda l, n: math.exp(float((l * n).sum())), "not exp(sum)"),
            "loss": (lambda l, n: float((l * n).sum() / n.sum()), "not the mean loss itself"),
        },
    ),
})


def test_tying_reference_matches_real_models():
    """The check's reference (a formula) against parameters of real models, tied and untied."""
    from tfcore.complexity import count_parameters
    from tfcore.grading.lesson09 import _gpt_count
    from tfcore.model import Transformer, TransformerConfig

    for v, d, layers, t in ((65, 64, 2, 64), (7, 8, 1, 5)):
        for tie in (True, False):
            model = Transformer(TransformerConfig(vocab_size=v, d_model=d, n_layers=layers, n_heads=1,
                                                  max_seq_len=t, tie_weights=tie))
            assert count_parameters(model) == _gpt_count(v, d, layers, t, tie) == param_count(v, d, layers, t, tie)


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson09_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)


# ----------------------------------------------------------------------------- predictions (lesson notebook)
# ID -> (right answers, wrong answers, a piece of the reasoning, the value as the feedback shows it); gathered by
# tests/test_grading_predictions.py. The values are the lesson's: the fresh model's loss 4.195 (ln 65 = 4.174),
# the encoder's loss far below the decoder's, top_p = 0.9 keeping e, r and o after "To be, or not to b".
PREDICTION_CASES = {
    "training.predict_initial_loss": (
        [4.195, math.log(65), 4.17, 4.0, 4.4, np.float32(4.2)],
        [math.log2(65), 6.02, 0, 65, 1 / 65, 3.9, 2.4], "-log(1/65) = ln 65", "4.195 nats"),
    "training.predict_encoder_loss": (
        ["C", "c", "(C)", " c. ", "far lower"], ["A", "b", "(B)", "clearly higher than the decoder's"],
        "copy it from its input", "(C) far lower"),
    "training.predict_nucleus_size": (
        [3, 3.0, np.int64(3)], [2, 1, 5, 14, 65], "the token that crosses p included", "3 characters"),
}
