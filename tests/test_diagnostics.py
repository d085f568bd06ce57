"""tfcore.diagnostics: entropy by its formula, leakage detectors on a causal model and on a leaky one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import random_tokens, single_thread, tiny_model  # noqa: F401 (autouse fixture)

from tfcore.blocks import Block
from tfcore.diagnostics import (
    attention_entropy, bounded, leakage_by_jacobian, leakage_by_perturbation, max_diff, moving_average,
)

V = 19


# ---------------------------------------------------------------------------------------------
# entropy


def test_entropy_against_a_float64_formula():
    g = torch.Generator().manual_seed(0)
    weights = torch.softmax(torch.randn(2, 3, 4, 6, generator=g) * 2, dim=-1)
    weights[0, 0, 0] = torch.tensor([0.5, 0.5, 0.0, 0.0, 0.0, 0.0])  # zeros count as 0 log 0 = 0
    h = attention_entropy(weights)
    assert h.shape == (2, 3, 4)
    for idx in [(0, 0, 0), (1, 2, 3), (0, 1, 2)]:
        row = weights[idx].double().tolist()
        expected = -sum(p * math.log(p) for p in row if p > 0)
        assert h[idx].item() == pytest.approx(expected, rel=1e-5)
    assert h[0, 0, 0].item() == pytest.approx(math.log(2), rel=1e-6)


@pytest.mark.parametrize("t_k", [1, 2, 7, 64])
def test_uniform_rows_give_log_t_and_one_hot_rows_give_zero(t_k):
    uniform = torch.full((3, t_k), 1.0 / t_k, dtype=torch.float64)
    torch.testing.assert_close(attention_entropy(uniform), torch.full((3,), math.log(t_k), dtype=torch.float64))
    one_hot = torch.eye(t_k, dtype=torch.float64)
    h = attention_entropy(one_hot)
    assert not h.isnan().any()
    torch.testing.assert_close(h, torch.zeros(t_k, dtype=torch.float64))


def test_entropy_of_causal_weights_is_bounded_by_log_of_visible_keys():
    model = tiny_model()
    from tfcore.model import capture_attention

    with capture_attention(model) as weights, torch.no_grad():
        model(random_tokens(2, 8, V))
    h = attention_entropy(weights["decoder.0.attn"])  # (B, h, T)
    bound = torch.log(torch.arange(1, 9, dtype=torch.float32))
    assert (h <= bound + 1e-5).all() and (h[..., 0].abs() < 1e-6).all()


def test_entropy_rejects_vectors():
    with pytest.raises(ValueError, match=r"weights must have shape \(..., T_q, T_k\)"):
        attention_entropy(torch.ones(4))


# ---------------------------------------------------------------------------------------------
# leakage detectors


def make_leaky(model):
    """The same decoder with its self-attention run without the causal mask (a classic bug)."""
    def drop_causal(module, args, kwargs):
        return args, {**kwargs, "is_causal": False}

    handles = [m.register_forward_pre_hook(drop_causal, with_kwargs=True)
               for name, m in model.attention_layers().items() if name.endswith(".attn")]
    return handles


@pytest.mark.parametrize("positions", ["learned", "rope", "alibi"])
def test_perturbation_detector_passes_a_causal_model_and_flags_a_leaky_one(positions):
    model = tiny_model(positions=positions)
    tokens = random_tokens(2, 8, V, seed=3)
    for p in range(8):
        assert leakage_by_perturbation(model, tokens, V, p) == []
    handles = make_leaky(model)
    try:
        assert leakage_by_perturbation(model, tokens, V, 5) == [0, 1, 2, 3, 4]
        assert leakage_by_perturbation(model, tokens, V, 0) == []
    finally:
        for h in handles:
            h.remove()
    assert leakage_by_perturbation(model, tokens, V, 5) == []  # hooks removed: causal again


def test_perturbation_detector_flags_an_encoder():
    encoder = tiny_model(architecture="encoder")
    assert leakage_by_perturbation(encoder, random_tokens(1, 6, V), V, 4) == [0, 1, 2, 3]


def test_perturbation_detector_checks_position():
    with pytest.raises(ValueError, match=r"position must lie in \[0, T=6\)"):
        leakage_by_perturbation(tiny_model(), random_tokens(1, 6, V), V, 6)


def block_stack(is_causal: bool):
    torch.manual_seed(0)
    blocks = [Block(8, 2, 16).double() for _ in range(2)]

    def f(x):
        for b in blocks:
            x = b(x, is_causal=is_causal)
        return x

    return f


def test_jacobian_detector_on_causal_and_bidirectional_stacks():
    x = torch.randn(1, 6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    causal = leakage_by_jacobian(block_stack(True), x)
    assert causal.shape == (6, 6)
    assert (causal.triu(diagonal=1) == 0).all(), "dy_i/dx_j must vanish for j > i"
    lower = torch.ones(6, 6, dtype=torch.bool).tril()
    assert (causal[lower] > 0).all(), "every earlier input reaches every later output"
    leaky = leakage_by_jacobian(block_stack(False), x)
    assert (leaky[~lower] > 0).all(), "without the causal mask every later input leaks into earlier outputs"


def test_jacobian_detector_matches_torch_func_jacrev():
    f = block_stack(False)
    x = torch.randn(1, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    jac = torch.func.jacrev(lambda inp: f(inp[None])[0])(x[0])  # (T, d_out, T, d_in)
    expected = torch.sqrt((jac**2).sum(dim=(1, 3)))
    torch.testing.assert_close(leakage_by_jacobian(f, x), expected)


def test_jacobian_detector_checks_shape():
    with pytest.raises(ValueError, match=r"x must have shape \(1, T, d_in\)"):
        leakage_by_jacobian(lambda x: x, torch.zeros(2, 3, 4))


def test_bounded_prints_the_bound_below_tol_and_the_value_above(capsys):
    assert bounded(3e-8, 1e-6) == "< 1e-06" and bounded(torch.tensor(6e-8), 1e-6) == "< 1e-06"
    assert bounded(0.33, 1e-6) == "= 3.3e-01" and bounded(2e-6, 1e-6, digits=2) == "= 2.00e-06"
    a = torch.zeros(3)
    max_diff("close", a, a + 1e-8)
    max_diff("far", a, a + torch.tensor([0.0, 0.5, 0.0]))
    assert capsys.readouterr().out == "close: max |difference| < 1e-06\nfar: max |difference| = 5.00e-01\n"


def test_moving_average_matches_numpy_convolution():
    values = np.random.default_rng(0).normal(size=50)
    for window in (1, 7, 50):
        expected = np.convolve(values, np.ones(window) / window, mode="valid")
        np.testing.assert_allclose(moving_average(values.tolist(), window).numpy(), expected, rtol=1e-12)
    with pytest.raises(ValueError, match=r"window must lie in \[1, 3\]"):
        moving_average([1.0, 2.0, 3.0], 4)
