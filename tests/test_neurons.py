"""tfcore.neurons (lesson 04): activations, top contexts, logit effect and ablation of MLP units.

References are computed here by hand: the blocks called one by one with the MLP written out,
a full sort instead of the streamed top-k, autograd through the model's own final norm and
unembedding, and the residual stream read before the final norm.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import random_tokens, single_thread, tiny_model  # noqa: F401 (autouse fixture)

from tfcore.neurons import ablate_units, down_projection, top_activations, unit_activations, unit_logit_effect


def _by_hand(model, tokens, layer):
    """Pre-LN blocks called one by one; block ``layer``'s MLP units written out: (B, T, d_ff)."""
    x = model.embed_tokens(tokens)
    for block in model.decoder[:layer]:
        x = block(x, is_causal=True)
    block = model.decoder[layer]
    x = x + block.attn(block.norm_attn(x), is_causal=True)
    h = block.norm_mlp(x)
    mlp = block.mlp
    if hasattr(mlp, "fc_in"):
        return F.gelu(h @ mlp.fc_in.weight.T + mlp.fc_in.bias)
    return F.silu(F.linear(h, mlp.w1.weight, mlp.w1.bias)) * F.linear(h, mlp.w3.weight, mlp.w3.bias)


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_unit_activations_are_the_mlp_hidden_layer(mlp):
    model = tiny_model(mlp=mlp, n_layers=3).double()
    tokens = random_tokens(2, 7, 19)
    for layer in range(3):
        with torch.no_grad():
            ref = _by_hand(model, tokens, layer)
        out = unit_activations(model, tokens, layer)
        assert out.shape == (2, 7, model.config.d_ff)
        torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)


def test_top_activations_equal_a_full_sort_whatever_the_batch_size():
    model = tiny_model(n_layers=2)
    tokens = random_tokens(7, 5, 19, seed=3)  # 35 positions
    acts = unit_activations(model, tokens, 1).reshape(-1, model.config.d_ff).T  # (d_ff, 35)
    ref_values, ref_flat = acts.sort(dim=1, descending=True)
    for batch_size in (1, 3, 7, 100):
        values, where = top_activations(model, tokens, 1, k=6, batch_size=batch_size)
        assert values.shape == (model.config.d_ff, 6) and where.shape == (model.config.d_ff, 6, 2)
        torch.testing.assert_close(values, ref_values[:, :6], atol=1e-6, rtol=0)
        assert torch.equal(where[..., 0] * 5 + where[..., 1], ref_flat[:, :6])
    assert top_activations(model, tokens, 1, k=35)[0].shape == (model.config.d_ff, 35)


def _direction_derivative(model, x, v):
    """d logits(final_norm(x + eps v)) / d eps at eps = 0, by autograd through the model's own modules."""
    eps = torch.zeros((), dtype=torch.float64, requires_grad=True)
    state = x + eps * v
    if model.final_norm is not None:
        state = model.final_norm(state)
    logits = model.unembed(state)
    return torch.stack([torch.autograd.grad(logits[j], eps, retain_graph=True)[0] for j in range(len(logits))])


@pytest.mark.parametrize("overrides", [dict(), dict(norm="rms", mlp="swiglu", bias=False), dict(placement="post")])
def test_unit_logit_effect_is_the_derivative_of_the_logits_along_the_value(overrides):
    """With the state chosen orthogonal to the (centred) value, the final norm's only other term
    vanishes: the derivative of the logits along v_i is effect_i / (the state's size)."""
    model = tiny_model(n_layers=2, **overrides).double()
    effect = unit_logit_effect(model, 1)
    values = down_projection(model, 1).weight.detach().T  # (d_ff, d_model)
    assert effect.shape == (model.config.d_ff, model.config.vocab_size)
    g = torch.Generator().manual_seed(0)
    for unit in (0, 5, model.config.d_ff - 1):
        v = values[unit]
        x = torch.randn(model.config.d_model, generator=g, dtype=torch.float64)
        if model.final_norm is None:
            scale = 1.0
        elif overrides.get("norm") == "rms":
            x = x - (x @ v) / (v @ v) * v
            scale = float((x.pow(2).mean() + model.final_norm.eps).sqrt())
        else:
            vc, xc = v - v.mean(), x - x.mean()
            x = xc - (xc @ vc) / (vc @ vc) * vc
            scale = float((x.var(unbiased=False) + model.final_norm.eps).sqrt())
        derivative = _direction_derivative(model, x, v)
        torch.testing.assert_close(effect[unit] / scale, derivative, atol=1e-10, rtol=1e-8)


def _final_stream(model, tokens):
    seen = []
    handle = model.final_norm.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            logits = model(tokens)
    finally:
        handle.remove()
    return seen[0], logits


def test_ablating_a_unit_of_the_last_block_removes_exactly_m_v_from_the_stream():
    model = tiny_model(n_layers=2).double()
    tokens = random_tokens(3, 6, 19)
    m = unit_activations(model, tokens, 1)  # (B, T, d_ff)
    v = down_projection(model, 1).weight.detach().T
    before, logits = _final_stream(model, tokens)
    with ablate_units(model, 1, [2, 9]):
        after, ablated = _final_stream(model, tokens)
    expected = m[..., 2, None] * v[2] + m[..., 9, None] * v[9]
    torch.testing.assert_close(before - after, expected, atol=1e-12, rtol=0)
    assert not torch.allclose(logits, ablated)
    restored = _final_stream(model, tokens)[1]
    assert torch.equal(restored, logits)  # the hook is gone


def test_ablating_an_earlier_unit_changes_later_positions_only_through_the_model():
    model = tiny_model(n_layers=2)
    tokens = random_tokens(2, 6, 19)
    with torch.no_grad():
        ref = model(tokens)
        with ablate_units(model, 0, 4):
            out = model(tokens)
        with pytest.raises(RuntimeError), ablate_units(model, 0, 4):
            raise RuntimeError("inside")
        again = model(tokens)
    assert not torch.allclose(out, ref)
    assert torch.equal(again, ref)  # restored after an exception too


@pytest.mark.parametrize("call, error, match", [
    (lambda m, t: unit_activations(m, t, 2), ValueError, r"layer must lie in \[0, n_layers=2\)"),
    (lambda m, t: unit_activations(m, t.float(), 0), TypeError, "tokens must hold token ids"),
    (lambda m, t: unit_activations(m, t[0], 0), ValueError, r"\(B, T\)"),
    (lambda m, t: top_activations(m, t, 0, k=13), ValueError, "N \\* T = 12"),
    (lambda m, t: top_activations(m, t, 0, k=0), ValueError, "k must be a positive integer"),
    (lambda m, t: ablate_units(m, 1, [64]).__enter__(), ValueError, r"units must lie in \[0, d_ff=64\)"),
    (lambda m, t: unit_logit_effect(m.decoder, 0), TypeError, "model must be a tfcore.model.Transformer"),
])
def test_bad_calls_name_the_argument(call, error, match):
    model, tokens = tiny_model(n_layers=2), random_tokens(2, 6, 19)
    with pytest.raises(error, match=match):
        call(model, tokens)


def test_an_encoder_decoder_model_is_refused():
    model = tiny_model(architecture="encoder-decoder")
    with pytest.raises(ValueError, match="encoder-decoder"):
        unit_logit_effect(model, 0)
