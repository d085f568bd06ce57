"""tfcore.diagnostics.inject_bug and mystery_model: the broken decoders of lesson 10's find_bug exercise.

Each bug is compared with an independent reference: PyTorch's own scaled_dot_product_attention on
flipped sequences (a transposed causal mask is a causal mask read backwards), a tfcore model whose
attention scale is 1, and an explicit softmax over the query axis.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import random_tokens, tiny_model
from tfcore.diagnostics import ATTENTION_BUGS, BrokenAttention, inject_bug, leakage_test, mystery_model
from tfcore.heads import MultiHeadAttention
from tfcore.model import Transformer, capture_attention, with_changes


def _layer(fault: str, seed: int = 0) -> tuple[MultiHeadAttention, MultiHeadAttention]:
    torch.manual_seed(seed)
    healthy = MultiHeadAttention(16, 4).eval()
    broken = copy.deepcopy(healthy)
    broken.__class__, broken.fault = BrokenAttention, fault
    return healthy, broken


def _heads(layer: MultiHeadAttention, x: torch.Tensor):
    b, t, _ = x.shape
    return [p(x).view(b, t, layer.n_heads, layer.d_head).transpose(1, 2) for p in (layer.q_proj, layer.k_proj,
                                                                                  layer.v_proj)]


def test_mask_direction_is_causal_attention_read_backwards():
    healthy, broken = _layer("mask direction")
    x = torch.randn(2, 7, 16)
    q, k, v = (h.flip(2) for h in _heads(healthy, x))  # the sequence reversed
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True).flip(2)  # query i sees keys j >= i
    expected = healthy.out_proj(out.transpose(1, 2).reshape(2, 7, 16))
    with torch.no_grad():
        torch.testing.assert_close(broken(x, is_causal=True), expected, atol=1e-6, rtol=1e-5)


def test_softmax_axis_normalises_each_key_column_over_the_queries():
    healthy, broken = _layer("softmax axis")
    x = torch.randn(2, 5, 16)
    q, k, v = _heads(healthy, x)
    scores = (q @ k.transpose(-2, -1) / 2.0).masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
    weights = scores.exp() / scores.exp().sum(dim=-2, keepdim=True)  # (B, h, T, T), columns sum to 1
    expected = healthy.out_proj((weights @ v).transpose(1, 2).reshape(2, 5, 16))
    broken.capture_weights = True
    with torch.no_grad():
        torch.testing.assert_close(broken(x, is_causal=True), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(broken.last_weights.sum(-2), torch.ones(2, 4, 5))


def test_missing_scale_is_a_model_whose_attention_scale_is_one():
    model = tiny_model(3)
    with torch.no_grad():  # scores of order 1, so that the scale visibly matters
        for layer in model.attention_layers().values():
            layer.q_proj.weight.mul_(20.0)
            layer.k_proj.weight.mul_(20.0)
    unscaled = Transformer(with_changes(model.config, attention_scale=1.0)).eval()
    unscaled.load_state_dict(model.state_dict())
    tokens = random_tokens(2, 9, model.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(inject_bug(model, "missing scale")(tokens), unscaled(tokens), atol=1e-5, rtol=1e-5)
        with capture_attention(model) as scaled_w, capture_attention(unscaled) as unscaled_w:
            model(tokens), unscaled(tokens)
    assert (scaled_w["decoder.0.attn"] - unscaled_w["decoder.0.attn"]).abs().max() > 0.1  # the scale matters here


@pytest.mark.parametrize("bug, leaks, rows_sum_to_one", [
    ("mask direction", True, True), ("softmax axis", True, False), ("missing scale", False, True)])
def test_each_bug_shows_its_symptoms_for_any_weights(bug, leaks, rows_sum_to_one):
    for seed in range(3):
        model = mystery_model(bug, seed)
        tokens = random_tokens(2, 10, model.config.vocab_size, seed)
        assert any(leakage_test(model, tokens, model.config.vocab_size).values()) == leaks
        with torch.no_grad(), capture_attention(model) as weights:
            model(tokens)
        error = max(float((w.sum(-1) - 1).abs().max()) for w in weights.values())
        assert (error < 1e-5) == rows_sum_to_one, (seed, error)


def test_mystery_models_are_reproducible_copyable_and_leave_the_global_rng_alone():
    tokens = random_tokens(2, 8, 50)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, b = mystery_model("softmax axis", seed=7), mystery_model("softmax axis", seed=7)
    assert torch.equal(torch.rand(3), expected)
    assert not a.training
    with torch.no_grad():
        assert torch.equal(a(tokens), b(tokens))
        assert torch.equal(copy.deepcopy(a)(tokens), a(tokens))  # the bug survives a deep copy
        assert not torch.equal(mystery_model("missing scale", seed=7)(tokens), a(tokens))
    drawn = {mystery_model().decoder[0].attn.fault for _ in range(40)}  # unseeded: a new bug each time
    assert drawn == set(ATTENTION_BUGS)


def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(ValueError, match="bug must be one of"):
        inject_bug(tiny_model(0), "off by one")
    with pytest.raises(ValueError, match="decoder-only"):
        inject_bug(tiny_model(0, architecture="encoder"), "missing scale")
    with pytest.raises(ValueError, match="positions='rope'"):
        inject_bug(tiny_model(0, positions="rope"), "missing scale")
    assert inject_bug(tiny_model(0), "missing scale") is not None
