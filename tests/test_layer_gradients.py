"""tfcore.diagnostics.layer_gradient_norms (lesson 05): one parameter's gradient norm in every block.

The reference is ``loss.backward()`` and the parameters' own ``.grad`` fields, read here by name.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import random_tokens, single_thread, tiny_model  # noqa: F401 (autouse fixture)

from tfcore.diagnostics import gradient_norms, layer_gradient_norms


def _loss(model, tokens, source=None):
    logits = model(tokens) if source is None else model(tokens, source=source)
    return F.cross_entropy(logits.flatten(0, 1), tokens.roll(-1, 1).flatten())


@pytest.mark.parametrize("overrides, parameter", [
    (dict(n_layers=3), "mlp.fc_out.weight"),
    (dict(n_layers=2, placement="post"), "attn.v_proj.bias"),
    (dict(n_layers=2, mlp="swiglu"), "mlp.w2.weight"),
    (dict(n_layers=2, architecture="encoder-decoder"), "mlp.fc_out.weight"),
])
def test_layer_gradient_norms_equal_backward(overrides, parameter):
    model = tiny_model(**overrides).double()
    tokens = random_tokens(2, 6, 19)
    source = random_tokens(2, 5, 19, seed=1) if model.encoder is not None else None
    out = layer_gradient_norms(model, _loss(model, tokens, source), parameter)
    _loss(model, tokens, source).backward()
    stacks = [s for s in ("encoder", "decoder") if getattr(model, s) is not None]
    assert list(out) == stacks
    for stack in stacks:
        ref = torch.tensor([float(b.get_parameter(parameter).grad.norm()) for b in getattr(model, stack)],
                           dtype=torch.float64)
        assert out[stack].shape == (len(getattr(model, stack)),)
        torch.testing.assert_close(out[stack], ref, atol=1e-12, rtol=1e-10)


def test_the_loss_can_be_used_again_and_grad_fields_are_left_alone():
    model = tiny_model(n_layers=2)
    loss = _loss(model, random_tokens(2, 6, 19))
    layer_gradient_norms(model, loss)
    assert all(p.grad is None for p in model.parameters())
    assert set(gradient_norms(model, loss)) >= {"decoder.0", "decoder.1"}  # the graph is still there


@pytest.mark.parametrize("make_loss, parameter, match", [
    (lambda m, t: _loss(m, t), "mlp.fc_out.wieght", r"'mlp.fc_out.wieght' is not in decoder.0; its parameters: \["),
    (lambda m, t: m(t).sum(-1), "mlp.fc_out.weight", "loss must be a one-element tensor"),
    (lambda m, t: _loss(m, t).detach(), "mlp.fc_out.weight", "loss does not require grad"),
])
def test_bad_calls_say_what_is_wrong(make_loss, parameter, match):
    model = tiny_model(n_layers=2)
    with pytest.raises(ValueError, match=match):
        layer_gradient_norms(model, make_loss(model, random_tokens(2, 6, 19)), parameter)
