"""Tests-for-tests of lesson 02's checks (masks.*): see tests/test_grading.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from test_grading import Entry, case_params, run_case


def causal_mask(t):
    return torch.tril(torch.ones(t, t, dtype=torch.bool))


def causal_mask_arange(t):
    i = torch.arange(t)
    return i[None, :] <= i[:, None]


def causal_mask_loop(t):
    return torch.tensor([[j <= i for j in range(t)] for i in range(t)], dtype=torch.bool).reshape(t, t)


def causal_mask_numpy(t):
    return torch.from_numpy(np.tril(np.ones((t, t), dtype=bool)))


def padding_mask(lengths, t):
    return (torch.arange(t)[None, :] < lengths[:, None])[:, None, None, :]


def padding_mask_loop(lengths, t):
    rows = [[pos < int(n) for pos in range(t)] for n in lengths]
    return torch.tensor(rows, dtype=torch.bool).reshape(len(rows), 1, 1, t)


def padding_mask_numpy(lengths, t):
    keep = np.arange(t)[None, :] < lengths.numpy()[:, None]
    return torch.from_numpy(keep).view(len(keep), 1, 1, t)


CASES = {
    "masks.causal": Entry(
        solution=causal_mask,
        styles={"arange": causal_mask_arange, "loop": causal_mask_loop, "numpy": causal_mask_numpy},
        wrong={
            "inverted": (lambda t: torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1), "the mask is inverted"),
            "strict": (lambda t: torch.tril(torch.ones(t, t, dtype=torch.bool), diagonal=-1), "the diagonal is hidden"),
            "transposed": (lambda t: torch.triu(torch.ones(t, t, dtype=torch.bool)), "the mask is transposed"),
            "float": (lambda t: torch.tril(torch.ones(t, t)), "right pattern, wrong dtype"),
            "four_axes": (lambda t: causal_mask(t)[None, None], "return shape (T, T)"),
        },
    ),
    "masks.padding": Entry(
        solution=padding_mask,
        styles={"loop": padding_mask_loop, "numpy": padding_mask_numpy},
        wrong={
            "inverted": (lambda lengths, t: ~padding_mask(lengths, t), "the mask is inverted"),
            "off_by_one": (lambda lengths, t: (torch.arange(t)[None, :] <= lengths[:, None])[:, None, None, :], "off by one"),
            "two_axes": (lambda lengths, t: torch.arange(t)[None, :] < lengths[:, None], "returned shape (B, T)"),
            "ignores_t": (lambda lengths, t: padding_mask(lengths, int(lengths.max())), "use the T argument"),
            "query_axis": (lambda lengths, t: padding_mask(lengths, t).transpose(-1, -2), "query position"),
            "float": (lambda lengths, t: padding_mask(lengths, t).float(), "wrong dtype"),
        },
    ),
}


# ----------------------------------------------------------------------------- masks.combine


def causal_padding_mask(lengths, t):
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
    keys = (torch.arange(t)[None, :] < lengths[:, None])[:, None, None, :]
    return causal & keys


def causal_padding_mask_loop(lengths, t):
    rows = [[[j <= i and j < int(n) for j in range(t)] for i in range(t)] for n in lengths]
    return torch.tensor(rows, dtype=torch.bool).reshape(len(rows), 1, t, t)


def causal_padding_mask_numpy(lengths, t):
    i, j = np.arange(t)[:, None], np.arange(t)[None, :]
    keep = (j <= i)[None] & (j[None] < lengths.numpy()[:, None, None])
    return torch.from_numpy(keep)[:, None]


def causal_padding_mask_tfcore(lengths, t):
    from tfcore.masks import causal_mask as tf_causal, combine_masks, padding_mask as tf_padding

    return combine_masks(tf_causal(t), tf_padding(lengths, t))


def _query_mask(lengths, t):
    return (torch.arange(t)[None, :] < lengths[:, None])[:, None, :, None]


# ----------------------------------------------------------------------------- masks.leakage


def leaks(model_fn, tokens, vocab_size):
    with torch.no_grad():
        base = model_fn(tokens)
        for j in range(tokens.shape[1]):
            changed = tokens.clone()
            changed[:, j] = (changed[:, j] + 1) % vocab_size
            if not torch.equal(model_fn(changed)[:, :j], base[:, :j]):
                return True
    return False


def leaks_tfcore(model_fn, tokens, vocab_size):
    from tfcore.diagnostics import leakage_by_perturbation

    return any(leakage_by_perturbation(model_fn, tokens, vocab_size, j) for j in range(tokens.shape[1]))


def leaks_future_block(model_fn, tokens, vocab_size):
    """Change every future token at once, for each cut i."""
    with torch.no_grad():
        base = model_fn(tokens)
        for i in range(tokens.shape[1] - 1):
            changed = tokens.clone()
            changed[:, i + 1:] = (changed[:, i + 1:] + 3) % vocab_size
            if not torch.allclose(model_fn(changed)[:, :i + 1], base[:, :i + 1], rtol=0, atol=1e-7):
                return True
    return False


def leaks_tensor(model_fn, tokens, vocab_size):
    """Returns a 0-d bool tensor."""
    base = model_fn(tokens)
    moved = []
    for j in range(tokens.shape[1]):
        changed = tokens.clone()
        changed[:, j] = (changed[:, j] + 1) % vocab_size
        moved.append((model_fn(changed)[:, :j] != base[:, :j]).any())
    return torch.stack(moved).any()


def _leaks_with(new_token=None, compare=None, positions=None, atol=0.0):
    """A detector with one mistake: how the token is changed, which outputs are compared, which positions, tolerance."""
    def detector(model_fn, tokens, vocab_size):
        base = model_fn(tokens)
        t = tokens.shape[1]
        for j in (positions(t) if positions else range(t)):
            changed = tokens.clone()
            changed[:, j] = new_token(changed[:, j], vocab_size) if new_token else (changed[:, j] + 1) % vocab_size
            out = model_fn(changed)
            cols = compare(j, t) if compare else slice(0, j)
            if ((out[:, cols] - base[:, cols]).abs() > atol).any():
                return True
        return False

    return detector


def leaks_in_place(model_fn, tokens, vocab_size):
    base = model_fn(tokens.clone())
    for j in range(tokens.shape[1]):
        original = tokens[:, j].clone()
        tokens[:, j] = (tokens[:, j] + 1) % vocab_size
        if not torch.equal(model_fn(tokens)[:, :j], base[:, :j]):
            return True
    return False


# ----------------------------------------------------------------------------- masks.which_mask


def which_mask():
    return {
        "encoder-only: self-attention": "full",
        "decoder-only: self-attention": "causal",
        "encoder-decoder: encoder self-attention": "full",
        "encoder-decoder: decoder self-attention": "causal",
        "encoder-decoder: cross-attention": "full",
    }


def which_mask_synonyms():
    return {
        "encoder-only: self-attention": "bidirectional",
        "decoder-only: self-attention": "Causal",
        "encoder-decoder: encoder self-attention": "no mask",
        "encoder-decoder: decoder self-attention": "look-ahead",
        "encoder-decoder: cross-attention": "padding only",
    }


def _which_mask_with(changes):
    """The solution with some values changed ({key: value}); a value None removes the key."""
    def answer():
        out = which_mask()
        for key, value in changes.items():
            if value is None:
                del out[key]
            else:
                out[key] = value
        return out

    return answer


CASES.update({
    "masks.combine": Entry(
        solution=causal_padding_mask,
        styles={"loop": causal_padding_mask_loop, "numpy": causal_padding_mask_numpy, "tfcore": causal_padding_mask_tfcore},
        wrong={
            "or": (lambda lengths, t: torch.tril(torch.ones(t, t, dtype=torch.bool)) | padding_mask(lengths, t), "OR"),
            "pad_queries_too": (lambda lengths, t: causal_padding_mask(lengths, t) & _query_mask(lengths, t),
                                "rows of pad queries"),
            "query_axis": (lambda lengths, t: torch.tril(torch.ones(t, t, dtype=torch.bool)) & _query_mask(lengths, t),
                           "rows of pad queries"),
            "transposed": (lambda lengths, t: torch.triu(torch.ones(t, t, dtype=torch.bool)) & padding_mask(lengths, t),
                           "transposed"),
            "no_head_axis": (lambda lengths, t: causal_padding_mask(lengths, t)[:, 0], "keep the head axis"),
            "padding_only": (lambda lengths, t: padding_mask(lengths, t), "the padding mask alone"),
            "ignores_t": (lambda lengths, t: causal_padding_mask(lengths, int(lengths.max())), "use the T argument"),
            "float": (lambda lengths, t: causal_padding_mask(lengths, t).float(), "wrong dtype"),
        },
    ),
    "masks.leakage": Entry(
        solution=leaks,
        styles={"tfcore": leaks_tfcore, "future_block": leaks_future_block, "tensor": leaks_tensor},
        wrong={
            "always_false": (lambda model_fn, tokens, vocab_size: False, "missed a leak"),
            "always_true": (lambda model_fn, tokens, vocab_size: True, "flagged a correct causal model"),
            "compares_all": (_leaks_with(compare=lambda j, t: slice(0, t)), "flagged a correct causal model"),
            "adjacent_only": (_leaks_with(compare=lambda j, t: slice(max(j - 1, 0), j)), "from the last position"),
            "skips_last": (_leaks_with(positions=lambda t: range(t - 1)), "from the last position"),
            "fixed_zero": (_leaks_with(new_token=lambda col, v: torch.zeros_like(col)), "whose token is 0"),
            "fixed_last_id": (_leaks_with(new_token=lambda col, v: torch.full_like(col, v - 1)),
                              "whose token is vocab_size - 1"),
            "loose": (_leaks_with(atol=1e-3), "small leak"),
            "in_place": (leaks_in_place, "in place"),
            "list": (lambda model_fn, tokens, vocab_size: [(0, 1)], "return True"),
        },
    ),
    "masks.which_mask": Entry(
        solution=which_mask,
        styles={"synonyms": which_mask_synonyms},
        wrong={
            "all_causal": (lambda: {k: "causal" for k in which_mask()}, "encoder-only model (BERT)"),
            "all_full": (lambda: {k: "full" for k in which_mask()}, "decoder-only model (GPT)"),
            "cross_causal": (_which_mask_with({"encoder-decoder: cross-attention": "causal"}), "cross-attention: decoder"),
            "decoder_self_full": (_which_mask_with({"encoder-decoder: decoder self-attention": "full"}),
                                  "generates the target left to right"),
            "encoder_causal": (_which_mask_with({"encoder-decoder: encoder self-attention": "causal"}),
                               "reads the whole source"),
            "missing_key": (_which_mask_with({"encoder-decoder: cross-attention": None}), "missing key"),
            "typo_key": (lambda: {**which_mask(), "encoder-decoder: cross attention": "full"}, "did you mean"),
            "unknown_name": (_which_mask_with({"decoder-only: self-attention": "triangular"}), "unknown mask name"),
            "pairs": (lambda: list(which_mask().items()), "return a dict"),
        },
    ),
})


# Predictions (tests/test_grading_predictions.py runs them): ID -> (right answers, wrong answers, a substring
# of the reasoning, the value as the feedback shows it).
PREDICTION_CASES = {
    # wrong reasonings: padding always leaks (A), the causal mask is the one that needs lengths (C), masks of
    # any kind make padding harmless (D)
    "masks.predict_padding": (["B", "b", "(B)", "only the encoder without lengths"], ["A", "c", "(D)", "none of them"],
                              "already hides every later key", "(B) only the encoder"),
    # wrong reasonings: one layer's band only (9), every pair (45), two bands of 9 (18), none (0)
    "masks.predict_off_by_one_pairs": ([17, 17.0, 9 + 8], [9, 45, 18, 16, 0], "9 + 8 = 17", "17 pairs"),
}


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson02_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)
