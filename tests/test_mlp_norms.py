"""tfcore.mlp and tfcore.norms against torch.nn / torch.nn.functional and float64 formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tfcore.mlp import MLP, SwiGLU, gelu, make_mlp, swiglu
from tfcore.norms import LayerNorm, RMSNorm, layer_norm, make_norm, rms_norm

from helpers import single_thread  # noqa: F401 (autouse fixture: one thread for tiny tensors)

SETTINGS = settings(max_examples=25, deadline=None)


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------------------------
# LayerNorm


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=0, max_size=2), d=st.integers(2, 12), seed=st.integers(0, 999),
       eps=st.sampled_from([1e-5, 1e-3, 0.1]))
def test_layer_norm_matches_functional(shape, d, seed, eps):
    x = rand(*shape, d, seed=seed) * 3 + 1
    w, b = rand(d, seed=seed + 1), rand(d, seed=seed + 2)
    torch.testing.assert_close(layer_norm(x, w, b, eps), F.layer_norm(x, (d,), w, b, eps))
    torch.testing.assert_close(layer_norm(x, None, None, eps), F.layer_norm(x, (d,), None, None, eps))


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_module_matches_torch_module(bias):
    ours, ref = LayerNorm(10, bias=bias), nn.LayerNorm(10, bias=bias)
    with torch.no_grad():
        ours.weight.copy_(rand(10, seed=1, dtype=torch.float32))
        ref.weight.copy_(ours.weight)
        if bias:
            ours.bias.copy_(rand(10, seed=2, dtype=torch.float32))
            ref.bias.copy_(ours.bias)
    assert ours.eps == ref.eps
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    x = rand(3, 4, 10, seed=3, dtype=torch.float32)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("spread", [1e-2, 1e-3, 1e-4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_norm_small_variance_where_eps_matters(spread, dtype):
    """sigma^2 ~ spread^2 is comparable to eps: the output is squashed by sqrt(var / (var + eps)).

    The float32 inputs are centred near 0 so that float32 itself can resolve them (an offset of
    5 with a spread of 1e-4 leaves about 200 ulps, and any float32 LayerNorm is then off by 1e-4);
    the float64 inputs carry the offset, which the formula must cancel.
    """
    eps = 1e-5
    offset = 5.0 if dtype == torch.float64 else 0.0
    x = (offset + spread * rand(4, 16, seed=7)).to(dtype)
    ours = layer_norm(x, None, None, eps)
    torch.testing.assert_close(ours, F.layer_norm(x, (16,), eps=eps))
    xd = x.double()  # float64 formula on the same inputs
    mu = xd.mean(-1, keepdim=True)
    var = ((xd - mu) ** 2).mean(-1, keepdim=True)
    torch.testing.assert_close(ours, ((xd - mu) / torch.sqrt(var + eps)).to(dtype))
    # eps is not negligible here: the output's mean square sits visibly below 1
    if spread <= 1e-3:
        assert ours.double().pow(2).mean() < 0.95


def test_layer_norm_of_constant_input_is_bias():
    x = torch.full((2, 8), 3.0)
    b = rand(8, seed=1, dtype=torch.float32)
    torch.testing.assert_close(layer_norm(x, torch.ones(8), b), b.expand(2, 8))


def test_layer_norm_gradients_match_functional():
    x = rand(3, 6, seed=1).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    w, b = rand(6, seed=2), rand(6, seed=3)
    layer_norm(x, w, b).sin().sum().backward()
    F.layer_norm(x_ref, (6,), w, b).sin().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)


# ---------------------------------------------------------------------------------------------
# RMSNorm


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=0, max_size=2), d=st.integers(1, 12), seed=st.integers(0, 999),
       eps=st.sampled_from([1e-6, 1e-3]))
def test_rms_norm_matches_functional(shape, d, seed, eps):
    x = rand(*shape, d, seed=seed) * 2 + 0.5
    w = rand(d, seed=seed + 1)
    torch.testing.assert_close(rms_norm(x, w, eps), F.rms_norm(x, (d,), w, eps))
    # and the formula itself, in float64
    torch.testing.assert_close(rms_norm(x, None, eps), x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def test_rms_norm_module_matches_torch_module():
    ours, ref = RMSNorm(12), nn.RMSNorm(12, eps=1e-6)
    with torch.no_grad():
        ours.weight.copy_(rand(12, seed=1, dtype=torch.float32))
        ref.weight.copy_(ours.weight)
    x = rand(2, 5, 12, seed=2, dtype=torch.float32) * 0.01  # small inputs: eps matters
    torch.testing.assert_close(ours(x), ref(x))
    assert sum(p.numel() for p in ours.parameters()) == 12


def test_rms_norm_does_not_centre():
    x = torch.full((1, 4), 2.0)
    torch.testing.assert_close(rms_norm(x, None, eps=0.0), torch.ones(1, 4))
    torch.testing.assert_close(layer_norm(x, None, None), torch.zeros(1, 4))


def test_norm_errors_name_the_argument():
    with pytest.raises(ValueError, match="weight has d_model=5 but x has d_model=6"):
        layer_norm(torch.zeros(2, 6), torch.ones(5), None)
    with pytest.raises(ValueError, match="bias has d_model=4 but x has d_model=6"):
        layer_norm(torch.zeros(2, 6), torch.ones(6), torch.zeros(4))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        rms_norm(torch.zeros(2, 6, dtype=torch.long), None)
    with pytest.raises(ValueError, match="norm must be 'layer' or 'rms'"):
        make_norm("batch", 8)


def test_make_norm_kinds():
    assert isinstance(make_norm("layer", 8), LayerNorm) and make_norm("layer", 8, bias=False).bias is None
    assert isinstance(make_norm("rms", 8), RMSNorm)


# ---------------------------------------------------------------------------------------------
# activations and MLPs


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(approximate):
    x = torch.linspace(-8, 8, 401, dtype=torch.float64)
    torch.testing.assert_close(gelu(x, approximate), F.gelu(x, approximate=approximate))
    x32 = x.float()
    torch.testing.assert_close(gelu(x32, approximate), F.gelu(x32, approximate=approximate))


def test_gelu_exact_is_x_times_normal_cdf():
    for v in (-3.0, -0.5, 0.0, 0.7, 2.5):
        phi = 0.5 * (1 + math.erf(v / math.sqrt(2)))
        assert gelu(torch.tensor(v, dtype=torch.float64)).item() == pytest.approx(v * phi, abs=1e-12)


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        gelu(torch.zeros(2), "erf")


def silu64(z):
    return z / (1.0 + torch.exp(-z))


def test_swiglu_function_matches_float64_formula():
    d, d_ff = 6, 10
    x = rand(3, 4, d, seed=1, dtype=torch.float32)
    w1, w2, w3 = rand(d_ff, d, seed=2), rand(d, d_ff, seed=3), rand(d_ff, d, seed=4)
    out = swiglu(x, w1.float(), w2.float(), w3.float())
    xd = x.double()
    expected = torch.einsum("...f,df->...d", silu64(torch.einsum("...d,fd->...f", xd, w1))
                            * torch.einsum("...d,fd->...f", xd, w3), w2)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bias", [False, True])
def test_swiglu_module_matches_float64_formula(bias):
    torch.manual_seed(0)
    m = SwiGLU(6, 16, bias=bias)
    x = rand(2, 3, 6, seed=5, dtype=torch.float32)
    W = {n: p.detach().double() for n, p in m.named_parameters()}
    xd = x.double()
    lin = lambda name: xd @ W[f"{name}.weight"].T + (W[f"{name}.bias"] if bias else 0.0)
    hidden = silu64(lin("w1")) * lin("w3")
    expected = hidden @ W["w2.weight"].T + (W["w2.bias"] if bias else 0.0)
    torch.testing.assert_close(m(x).double(), expected, atol=1e-6, rtol=1e-5)
    assert sum(p.numel() for p in m.parameters()) == 3 * 6 * 16 + (2 * 16 + 6 if bias else 0)


def test_swiglu_function_checks_shapes():
    with pytest.raises(ValueError, match="w1 has d_model=5 but x has d_model=6"):
        swiglu(torch.zeros(2, 6), torch.zeros(8, 5), torch.zeros(6, 8), torch.zeros(8, 5))
    with pytest.raises(ValueError, match="w2 has d_ff=7 but w1 has d_ff=8"):
        swiglu(torch.zeros(2, 6), torch.zeros(8, 6), torch.zeros(6, 7), torch.zeros(8, 6))


@pytest.mark.parametrize("activation,phi", [("relu", F.relu), ("gelu", F.gelu),
                                            ("gelu_tanh", lambda z: F.gelu(z, approximate="tanh")),
                                            ("silu", F.silu)])
def test_mlp_matches_torch_sequential(activation, phi):
    torch.manual_seed(0)
    m = MLP(6, 24, activation=activation)
    ref = nn.Sequential(nn.Linear(6, 24), nn.Linear(24, 6))
    ref.load_state_dict({"0.weight": m.fc_in.weight, "0.bias": m.fc_in.bias,
                         "1.weight": m.fc_out.weight, "1.bias": m.fc_out.bias})
    x = rand(2, 5, 6, seed=3, dtype=torch.float32)
    torch.testing.assert_close(m(x), ref[1](phi(ref[0](x))))


def test_make_mlp_kinds_and_errors():
    assert isinstance(make_mlp("swiglu", 8, 16), SwiGLU)
    assert make_mlp("relu", 8, 16).activation == "relu"
    with pytest.raises(ValueError, match=r"kind must be one of \('relu', 'gelu', 'gelu_tanh', 'silu', 'swiglu', 'geglu', 'geglu_tanh'\)"):
        make_mlp("tanh", 8, 16)  # the argument is make_mlp's kind, so the message names kind
    with pytest.raises(ValueError, match="activation must be one of"):
        MLP(8, 16, activation="tanh")


@pytest.mark.parametrize("kind", ["gelu", "relu", "swiglu"])
def test_mlp_is_token_independent(kind):
    """The Jacobian of the MLP over a whole sequence is block-diagonal across tokens."""
    torch.manual_seed(0)
    m = make_mlp(kind, 4, 12).double()
    x = rand(1, 5, 4, seed=1) + 0.3
    jac = torch.autograd.functional.jacobian(lambda inp: m(inp)[0], x)[:, :, 0]  # (T, d, T, d)
    for t in range(5):
        for s in range(5):
            block = jac[t, :, s, :]
            if t == s:
                assert block.abs().max() > 1e-3, "a token must depend on itself"
            else:
                assert (block == 0).all(), f"output {t} depends on input token {s}"
    # perturbing one token moves only its own output
    x2 = x.clone()
    x2[0, 2] += 1.0
    moved = (m(x2) - m(x)).abs().amax(-1)[0]
    assert moved[2] > 0 and (moved[[0, 1, 3, 4]] == 0).all()


def test_attention_is_not_token_independent():
    """The same Jacobian check fails for attention, which mixes tokens: the check can fail."""
    from tfcore.heads import MultiHeadAttention

    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 2).double()
    x = rand(1, 5, 4, seed=1)
    jac = torch.autograd.functional.jacobian(lambda inp: mha(inp)[0], x)[:, :, 0]
    assert jac[0, :, 3, :].abs().max() > 1e-6


def test_norms_refuse_a_negative_eps_and_a_weight_that_would_broadcast():
    x = rand(3, 8, seed=1, dtype=torch.float32)
    torch.testing.assert_close(layer_norm(x, None, None, eps=0.0), F.layer_norm(x, (8,), eps=0.0))  # eps = 0 is fine
    for make in (lambda: layer_norm(x, None, None, eps=-1e-5), lambda: LayerNorm(8, eps=-1e-5),
                 lambda: rms_norm(x, None, eps=-1e-6), lambda: RMSNorm(8, eps=-1e-6)):
        with pytest.raises(ValueError, match=r"eps must lie in \[0, inf\)"):
            make()
    with pytest.raises(ValueError, match=r"weight must have shape \(d_model,\) = \(8,\)"):
        layer_norm(x, torch.ones(3, 8), None)  # (3, 8) broadcasts against x: a different gain per token


@pytest.mark.parametrize("make", [lambda: MLP(8, 0), lambda: SwiGLU(8, 0), lambda: make_mlp("gelu", 8, 0)])
def test_an_mlp_without_hidden_units_is_refused(make):
    with pytest.raises(ValueError, match="d_ff must be a positive integer, got 0"):
        make()  # it would output the bias only, whatever the input

