"""tfcore.attention against PyTorch's fused attention, float64 loops, and autograd."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tfcore.attention import scaled_dot_product_attention as attention
from tfcore.attention import softmax
from tfcore.heads import MultiHeadAttention

from helpers import single_thread  # noqa: F401 (autouse fixture: one thread for tiny tensors)

B, H, TQ, TK, D = 2, 3, 5, 7, 8
SETTINGS = settings(max_examples=25, deadline=None)


def rand(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def qkv(t_q=TQ, t_k=TK, d=D, d_v=D, dtype=torch.float64, seed=0):
    return rand(B, H, t_q, d, seed=seed, dtype=dtype), rand(B, H, t_k, d, seed=seed + 1, dtype=dtype), \
        rand(B, H, t_k, d_v, seed=seed + 2, dtype=dtype)


def random_bool_mask(shape, seed=0):
    """A random mask in which every query row keeps at least one key (the last one)."""
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(shape, generator=g) < 0.6
    m[..., -1] = True
    return m


def loop_attention(q, k, v, allowed, scale):
    """o_i = sum_j a_ij v_j with a_ij = exp(s_ij) / sum_j' exp(s_ij'), written with Python floats, one row at a time."""
    out = torch.zeros(q.shape[:-1] + (v.shape[-1],), dtype=torch.float64)
    for idx in torch.cartesian_prod(*(torch.arange(n) for n in q.shape[:-2])).reshape(-1, q.dim() - 2).tolist():
        idx = tuple(idx)
        for i in range(q.shape[-2]):
            s = [float(q[idx][i] @ k[idx][j]) * scale if allowed[i][j] else -math.inf for j in range(k.shape[-2])]
            m = max(s)
            if m == -math.inf:
                continue  # fully masked row: zeros, as documented
            e = [math.exp(x - m) for x in s]
            total = sum(e)
            for j in range(k.shape[-2]):
                out[idx][i] += (e[j] / total) * v[idx][j].double()
    return out


# ---------------------------------------------------------------------------------------------
# against torch.nn.functional.scaled_dot_product_attention


@SETTINGS
@given(b=st.integers(1, 3), h=st.integers(1, 3), t_q=st.integers(1, 6), t_k=st.integers(1, 6),
       d=st.integers(1, 9), d_v=st.integers(1, 9), seed=st.integers(0, 1000))
def test_matches_torch_sdpa_random_shapes(b, h, t_q, t_k, d, d_v, seed):
    q, k, v = rand(b, h, t_q, d, seed=seed), rand(b, h, t_k, d, seed=seed + 1), rand(b, h, t_k, d_v, seed=seed + 2)
    torch.testing.assert_close(attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("shape", [(TQ, TK), (B, 1, 1, TK), (B, 1, TQ, TK), (B, H, TQ, TK)],
                         ids=["(Tq,Tk)", "(B,1,1,Tk)", "(B,1,Tq,Tk)", "(B,h,Tq,Tk)"])
def test_bool_masks_match_torch_sdpa(shape):
    q, k, v = qkv()
    mask = random_bool_mask(shape)
    assert not mask.all(), "the mask must hide something for the test to mean anything"
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(attention(q, k, v, mask=mask), expected)
    # and the masked version really differs from the unmasked one
    assert not torch.allclose(expected, F.scaled_dot_product_attention(q, k, v))


@SETTINGS
@given(shape_kind=st.sampled_from(["qk", "key", "batch", "full"]), t_q=st.integers(1, 5), t_k=st.integers(1, 5),
       seed=st.integers(0, 1000))
def test_bool_masks_random_shapes(shape_kind, t_q, t_k, seed):
    shape = {"qk": (t_q, t_k), "key": (B, 1, 1, t_k), "batch": (B, 1, t_q, t_k), "full": (B, H, t_q, t_k)}[shape_kind]
    q, k, v = qkv(t_q, t_k, seed=seed)
    mask = random_bool_mask(shape, seed=seed)
    torch.testing.assert_close(attention(q, k, v, mask=mask),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


@pytest.mark.parametrize("shape", [(TQ, TK), (B, 1, 1, TK), (B, H, TQ, TK)])
def test_additive_float_masks_match_torch_sdpa(shape):
    q, k, v = qkv()
    additive = rand(*shape, seed=5)  # arbitrary finite biases ...
    additive = additive.masked_fill(~random_bool_mask(shape, seed=6), float("-inf"))  # ... and hidden keys
    torch.testing.assert_close(attention(q, k, v, mask=additive),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=additive))


def test_is_causal_square_matches_torch():
    q, k, v = qkv(t_q=6, t_k=6)
    torch.testing.assert_close(attention(q, k, v, is_causal=True),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))


@pytest.mark.parametrize("t_q,t_k", [(1, 6), (3, 6), (5, 6)])
def test_is_causal_short_queries_are_aligned_to_the_last_key(t_q, t_k):
    """PyTorch's is_causal is top-left aligned; ours is bottom-right (decoding with a KV cache)."""
    q, k, v = qkv(t_q, t_k)
    offset = t_k - t_q
    bottom_right = torch.tensor([[j <= i + offset for j in range(t_k)] for i in range(t_q)])
    torch.testing.assert_close(attention(q, k, v, is_causal=True),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=bottom_right))


def test_is_causal_combines_with_a_mask():
    q, k, v = qkv(4, 6)
    pad = random_bool_mask((B, 1, 1, 6), seed=3)
    pad[..., 0] = True  # the first key is visible to every causal query
    causal = torch.tensor([[j <= i + 2 for j in range(6)] for i in range(4)])
    torch.testing.assert_close(attention(q, k, v, mask=pad, is_causal=True),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=pad & causal))


def test_is_causal_with_more_queries_than_keys_raises():
    q, k, v = qkv(6, 4)
    with pytest.raises(ValueError, match="t_k >= t_q"):
        attention(q, k, v, is_causal=True)


@pytest.mark.parametrize("scale", [0.05, 1.0, 3.0])
def test_custom_scale_matches_torch(scale):
    q, k, v = qkv()
    torch.testing.assert_close(attention(q, k, v, scale=scale), F.scaled_dot_product_attention(q, k, v, scale=scale))


def test_default_scale_is_inverse_sqrt_d_head():
    q, k, v = qkv(d=16)
    by_hand = torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1) @ v  # 1 / sqrt(16)
    torch.testing.assert_close(attention(q, k, v), by_hand)
    assert not torch.allclose(attention(q, k, v, scale=1.0), by_hand)


def test_float32_matches_torch_on_float32():
    q, k, v = qkv(dtype=torch.float32)
    mask = random_bool_mask((B, 1, TQ, TK))
    out = attention(q, k, v, mask=mask)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# weights, float64 loop reference, fully masked rows


def test_return_weights_rows_sum_to_one_and_match_softmax():
    q, k, v = qkv()
    mask = random_bool_mask((B, H, TQ, TK))
    out, weights = attention(q, k, v, mask=mask, return_weights=True)
    assert weights.shape == (B, H, TQ, TK)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, TQ, dtype=torch.float64))
    assert (weights[~mask.expand_as(weights)] == 0).all()
    expected = torch.softmax((q @ k.transpose(-1, -2) / math.sqrt(D)).masked_fill(~mask, -math.inf), dim=-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(out, weights @ v)


def test_float32_attention_matches_a_float64_python_loop():
    q, k, v = qkv(t_q=3, t_k=4, d=5, d_v=2, dtype=torch.float32)
    allowed = [[True, False, True, True], [False, False, False, True], [True, True, True, True]]
    out = attention(q, k, v, mask=torch.tensor(allowed))
    ref = loop_attention(q.double(), k.double(), v.double(), allowed, 1 / math.sqrt(5))
    torch.testing.assert_close(out.double(), ref, atol=2e-6, rtol=1e-5)


def test_fully_masked_rows_give_zeros_without_nan_and_finite_gradients():
    q, k, v = (t.clone().requires_grad_() for t in qkv(t_q=4, t_k=5))
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1] = False  # query 1 sees nothing
    out, weights = attention(q, k, v, mask=mask, return_weights=True)
    assert not out.isnan().any() and not weights.isnan().any()
    assert (out[:, :, 1] == 0).all() and (weights[:, :, 1] == 0).all()
    torch.testing.assert_close(weights[:, :, [0, 2, 3]].sum(-1), torch.ones(B, H, 3, dtype=torch.float64))
    out.square().sum().backward()
    for name, t in (("q", q), ("k", k), ("v", v)):
        assert torch.isfinite(t.grad).all(), f"{name}.grad has non-finite entries"
    assert (q.grad[:, :, 1] == 0).all()  # the hidden row has no path to anything
    # the other rows are untouched by the dead one: same as attention over those rows only
    keep = [0, 2, 3]
    torch.testing.assert_close(out[:, :, keep], F.scaled_dot_product_attention(q[:, :, keep], k, v))


def test_fully_masked_rows_with_additive_minus_inf():
    q, k, v = qkv(t_q=3, t_k=4)
    additive = torch.zeros(3, 4, dtype=torch.float64)
    additive[2] = -math.inf
    out = attention(q, k, v, mask=additive)
    assert not out.isnan().any() and (out[:, :, 2] == 0).all()


def test_softmax_matches_torch_and_handles_all_minus_inf_rows():
    x = rand(4, 6, seed=2)
    torch.testing.assert_close(softmax(x), torch.softmax(x, dim=-1))
    torch.testing.assert_close(softmax(x, dim=0), torch.softmax(x, dim=0))
    x[1] = -math.inf
    x[2, :3] = -math.inf
    y = softmax(x)
    assert (y[1] == 0).all()
    torch.testing.assert_close(y[2], torch.softmax(x[2], dim=-1))


def test_softmax_is_stable_for_large_logits():
    x = torch.tensor([[1e4, 1e4 - 1.0, 1e4 - 2.0], [-1e4, 0.0, 1e4]], dtype=torch.float32)
    y = softmax(x)
    assert torch.isfinite(y).all()
    e = [math.exp(0), math.exp(-1), math.exp(-2)]
    torch.testing.assert_close(y[0], torch.tensor([c / sum(e) for c in e]))
    torch.testing.assert_close(y[1], torch.tensor([0.0, 0.0, 1.0]))


def test_large_logits_stay_finite_and_match_float64():
    q, k, v = qkv(dtype=torch.float32)
    q = q * 1e4 / q.abs().max()  # scores of order 1e4 * |k|
    out = attention(q, k, v, scale=1.0)
    assert torch.isfinite(out).all()
    ref = torch.softmax(q.double() @ k.double().transpose(-1, -2), dim=-1) @ v.double()
    torch.testing.assert_close(out.double(), ref, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# autograd


@pytest.mark.parametrize("kind", ["none", "bool", "additive", "causal"])
def test_gradcheck(kind):
    q, k, v = (t.requires_grad_() for t in qkv(t_q=3, t_k=4, d=3, d_v=2))
    mask = {"none": None, "bool": random_bool_mask((3, 4), seed=1),
            "additive": rand(B, 1, 3, 4, seed=9), "causal": None}[kind]
    assert torch.autograd.gradcheck(lambda a, b, c: attention(a, b, c, mask=mask, is_causal=kind == "causal"),
                                    (q, k, v))


def test_gradients_match_torch_sdpa():
    inputs = [t.requires_grad_() for t in qkv()]
    ref_inputs = [t.detach().clone().requires_grad_() for t in inputs]
    mask = random_bool_mask((B, 1, 1, TK))
    attention(*inputs, mask=mask).sin().sum().backward()
    F.scaled_dot_product_attention(*ref_inputs, attn_mask=mask).sin().sum().backward()
    for ours, theirs in zip(inputs, ref_inputs):
        torch.testing.assert_close(ours.grad, theirs.grad)


# ---------------------------------------------------------------------------------------------
# errors that name the argument and the axis


def test_error_on_mismatched_d_head():
    q, k, v = torch.randn(1, 2, 3, 64), torch.randn(1, 2, 5, 32), torch.randn(1, 2, 5, 32)
    with pytest.raises(ValueError, match="k has d_head=32 but q has d_head=64"):
        attention(q, k, v)


def test_error_on_mismatched_key_length():
    q, k, v = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 5, 8)
    with pytest.raises(ValueError, match="v has T_k=5 but k has T_k=6"):
        attention(q, k, v)


@pytest.mark.parametrize("shape", [(TQ + 1, TK), (B, 1, 1, TK - 1), (3 * B, 1, TQ, TK), (B, H, TQ, TK, 1)])
def test_error_on_non_broadcastable_mask(shape):
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"mask of shape .* does not broadcast"):
        attention(q, k, v, mask=torch.ones(shape, dtype=torch.bool))


def test_error_on_integer_mask():
    q, k, v = qkv()
    with pytest.raises(TypeError, match="mask must be bool"):
        attention(q, k, v, mask=torch.ones(TQ, TK, dtype=torch.long))


@pytest.mark.parametrize("which", ["q", "k", "v"])
def test_error_on_integer_inputs(which):
    tensors = dict(zip("qkv", qkv(dtype=torch.float32)))
    tensors[which] = tensors[which].long()
    with pytest.raises(TypeError, match=f"{which} must be a floating-point tensor"):
        attention(**tensors)


def test_error_on_dtype_mismatch():
    q, k, v = qkv(dtype=torch.float32)
    with pytest.raises(TypeError, match="k has dtype torch.float64 but q has dtype torch.float32"):
        attention(q, k.double(), v)


def test_error_on_device_mismatch():
    q, k, v = qkv(dtype=torch.float32)
    with pytest.raises(ValueError, match="v is on meta but q is on cpu"):
        attention(q, k, v.to("meta"))


def test_error_on_too_few_axes():
    with pytest.raises(ValueError, match=r"q must have shape"):
        attention(torch.randn(4), torch.randn(3, 4), torch.randn(3, 4))


# ---------------------------------------------------------------------------------------------
# permutation equivariance


def test_attention_is_permutation_equivariant():
    x = rand(1, 1, 6, D, seed=4)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    out = attention(x, x, x)
    torch.testing.assert_close(attention(x[:, :, perm], x[:, :, perm], x[:, :, perm]), out[:, :, perm])


def test_causal_attention_is_not_permutation_equivariant():
    """The same check fails as soon as the layer knows about order: the check can fail."""
    x = rand(1, 1, 6, D, seed=4)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    out = attention(x, x, x, is_causal=True)
    assert not torch.allclose(attention(x[:, :, perm], x[:, :, perm], x[:, :, perm], is_causal=True), out[:, :, perm])


@SETTINGS
@given(t=st.integers(2, 7), seed=st.integers(0, 1000), n_kv=st.sampled_from([1, 2, 4]))
def test_multi_head_attention_is_permutation_equivariant(t, seed, n_kv):
    torch.manual_seed(seed)
    mha = MultiHeadAttention(16, 4, n_kv_heads=n_kv).double()
    x = rand(2, t, 16, seed=seed)
    perm = torch.randperm(t)
    torch.testing.assert_close(mha(x[:, perm]), mha(x)[:, perm])


# ---------------------------------------------------------------------------------------------
# leading axes, empty axes, scale


def test_leading_axes_of_size_one_broadcast_like_repeating_them():
    """k, v shared by every batch element (B=1) is documented broadcasting, equal to repeating them."""
    q, k, v = rand(3, 2, 4, 8, seed=1), rand(1, 2, 6, 8, seed=2), rand(1, 2, 6, 8, seed=3)
    torch.testing.assert_close(attention(q, k, v), attention(q, k.expand(3, -1, -1, -1), v.expand(3, -1, -1, -1)))


@pytest.mark.parametrize("k_shape,v_shape,message", [
    ((3, H, TK, D), (3, H, TK, D), "k has B=3 but q has B=2"),
    ((B, 2, TK, D), (B, 2, TK, D), "k has h=2 but q has h=3"),
    ((B, H, TK, D), (4, H, TK, D), "v has B=4 but q has B=2"),
])
def test_leading_axes_that_do_not_broadcast_name_the_axis_and_both_sizes(k_shape, v_shape, message):
    with pytest.raises(ValueError, match=message):
        attention(rand(B, H, TQ, D), rand(*k_shape), rand(*v_shape))


def test_no_keys_is_refused_rather_than_a_silent_zero_output():
    with pytest.raises(ValueError, match="k has T_k=0"):
        attention(rand(B, H, TQ, D), rand(B, H, 0, D), rand(B, H, 0, D))


@pytest.mark.parametrize("scale", [0.0, -0.5, float("nan"), float("inf")])
def test_a_scale_that_is_not_a_positive_number_is_refused(scale):
    with pytest.raises(ValueError, match="scale must"):
        attention(*qkv(), scale=scale)

