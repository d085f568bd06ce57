"""tfcore.heads against explicit loops, torch.nn.MultiheadAttention, and itself across backends and caches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import flash_or_skip, torch_mha_from, single_thread  # noqa: F401 (autouse fixture)

from tfcore.heads import KVCache, MultiHeadAttention, attend, merge_heads, repeat_kv, split_heads
from tfcore.masks import causal_mask, padding_mask

D_MODEL, N_HEADS = 16, 4


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def make_mha(seed=0, dtype=torch.float64, **kw) -> MultiHeadAttention:
    torch.manual_seed(seed)
    mha = MultiHeadAttention(D_MODEL, N_HEADS, **kw).to(dtype).eval()
    if kw.get("bias", True):
        with torch.no_grad():  # nn.Linear's init leaves biases small but non-zero; make sure they matter
            for lin in (mha.q_proj, mha.k_proj, mha.v_proj, mha.out_proj):
                lin.bias.normal_(0, 0.3)
    return mha


# ---------------------------------------------------------------------------------------------
# split / merge / repeat_kv


def test_split_heads_against_a_loop():
    b, t, h, d_head = 2, 3, 4, 5
    x = rand(b, t, h * d_head)
    out = split_heads(x, h)
    assert out.shape == (b, h, t, d_head)
    for bi in range(b):
        for hi in range(h):
            for ti in range(t):
                for di in range(d_head):
                    assert out[bi, hi, ti, di] == x[bi, ti, hi * d_head + di]


def test_merge_heads_inverts_split_heads():
    x = rand(2, 7, 12)
    for h in (1, 2, 3, 4, 6, 12):
        assert torch.equal(merge_heads(split_heads(x, h)), x)
    heads = rand(2, 3, 5, 4)
    assert torch.equal(split_heads(merge_heads(heads), 3), heads)


def test_merge_heads_is_concatenation_of_heads():
    heads = rand(2, 3, 5, 4)
    assert torch.equal(merge_heads(heads), torch.cat([heads[:, i] for i in range(3)], dim=-1))


def test_split_heads_errors():
    with pytest.raises(ValueError, match="d_model=10, which n_heads=4 does not divide"):
        split_heads(torch.zeros(1, 2, 10), 4)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, d_model\)"):
        split_heads(torch.zeros(2, 10), 2)


@pytest.mark.parametrize("h_kv,n_rep", [(1, 4), (2, 3), (3, 1), (4, 2)])
def test_repeat_kv_against_a_loop(h_kv, n_rep):
    x = rand(2, h_kv, 3, 5)
    out = repeat_kv(x, n_rep)
    assert out.shape == (2, h_kv * n_rep, 3, 5)
    for i in range(h_kv * n_rep):
        assert torch.equal(out[:, i], x[:, i // n_rep]), f"query head {i} must read kv head {i // n_rep}"


# ---------------------------------------------------------------------------------------------
# against torch.nn.MultiheadAttention


@pytest.mark.parametrize("bias", [True, False])
def test_self_attention_matches_torch(bias):
    ours = make_mha(bias=bias)
    ref = torch_mha_from(ours, D_MODEL, N_HEADS, bias).double()
    x = rand(3, 6, D_MODEL, seed=1)
    expected, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(ours(x), expected)


@pytest.mark.parametrize("bias", [True, False])
def test_cross_attention_matches_torch(bias):
    ours = make_mha(bias=bias)
    ref = torch_mha_from(ours, D_MODEL, N_HEADS, bias).double()
    x, source = rand(2, 4, D_MODEL, seed=1), rand(2, 9, D_MODEL, seed=2)
    expected, _ = ref(x, source, source, need_weights=False)
    torch.testing.assert_close(ours(x, source=source), expected)


def test_padding_mask_matches_key_padding_mask():
    ours = make_mha()
    ref = torch_mha_from(ours, D_MODEL, N_HEADS, True).double()
    x, source = rand(3, 4, D_MODEL, seed=1), rand(3, 7, D_MODEL, seed=2)
    lengths = [7, 2, 5]
    ours_mask = padding_mask(lengths, 7)  # True = attend
    key_padding_mask = ~ours_mask[:, 0, 0]  # PyTorch: True = ignore
    expected, _ = ref(x, source, source, key_padding_mask=key_padding_mask, need_weights=False)
    torch.testing.assert_close(ours(x, source=source, mask=ours_mask), expected)


def test_causal_matches_torch_attn_mask():
    ours = make_mha()
    ref = torch_mha_from(ours, D_MODEL, N_HEADS, True).double()
    x = rand(2, 6, D_MODEL, seed=1)
    attn_mask = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)  # PyTorch: True = hidden
    expected, _ = ref(x, x, x, attn_mask=attn_mask, need_weights=False)
    torch.testing.assert_close(ours(x, is_causal=True), expected)
    torch.testing.assert_close(ours(x, mask=causal_mask(6)), expected)


def test_causal_and_padding_match_torch():
    ours = make_mha()
    ref = torch_mha_from(ours, D_MODEL, N_HEADS, True).double()
    x = rand(2, 6, D_MODEL, seed=1)
    lengths = [6, 4]
    attn_mask = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)
    expected, _ = ref(x, x, x, attn_mask=attn_mask, key_padding_mask=~padding_mask(lengths, 6)[:, 0, 0],
                      need_weights=False)
    torch.testing.assert_close(ours(x, mask=padding_mask(lengths, 6), is_causal=True), expected)


def test_captured_weights_match_torch_average_weights():
    ours = make_mha()
    ref = torch_mha_from(ours, D_MODEL, N_HEADS, True).double()
    x = rand(2, 5, D_MODEL, seed=1)
    ours.capture_weights = True
    ours(x)
    _, ref_weights = ref(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(ours.last_weights, ref_weights)


def test_custom_scale_matches_torch_with_rescaled_queries():
    """softmax(s q.k) with our scale s equals PyTorch's 1/sqrt(d_head) scale applied to queries times s sqrt(d_head)."""
    s, d_head = 0.7, D_MODEL // N_HEADS
    ours = make_mha(scale=s)
    ref = torch_mha_from(ours, D_MODEL, N_HEADS, True).double()
    with torch.no_grad():
        ref.in_proj_weight[:D_MODEL] *= s * d_head**0.5
        ref.in_proj_bias[:D_MODEL] *= s * d_head**0.5
    x = rand(2, 5, D_MODEL, seed=1)
    torch.testing.assert_close(ours(x), ref(x, x, x, need_weights=False)[0])


# ---------------------------------------------------------------------------------------------
# GQA / MQA


@pytest.mark.parametrize("bias", [True, False])
def test_gqa_with_as_many_kv_heads_as_query_heads_is_mha(bias):
    ours = make_mha(n_kv_heads=N_HEADS, bias=bias)
    assert ours.k_proj.out_features == D_MODEL
    ref = torch.nn.MultiheadAttention(D_MODEL, N_HEADS, bias=bias, batch_first=True).double()
    with torch.no_grad():  # plain copy, no repetition: h_kv = h is MHA
        ref.in_proj_weight.copy_(torch.cat((ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight)))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        if bias:
            ref.in_proj_bias.copy_(torch.cat((ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias)))
            ref.out_proj.bias.copy_(ours.out_proj.bias)
    x = rand(2, 5, D_MODEL, seed=3)
    torch.testing.assert_close(ours(x, is_causal=True), ref(x, x, x, attn_mask=~causal_mask(5), need_weights=False)[0])


@pytest.mark.parametrize("n_kv_heads", [1, 2])
def test_gqa_equals_mha_with_repeated_kv_weights(n_kv_heads):
    ours = make_mha(n_kv_heads=n_kv_heads)
    d_head = D_MODEL // N_HEADS
    assert ours.k_proj.weight.shape == (n_kv_heads * d_head, D_MODEL)
    ref = torch_mha_from(ours, D_MODEL, N_HEADS, True).double()
    x, source = rand(2, 5, D_MODEL, seed=3), rand(2, 8, D_MODEL, seed=4)
    torch.testing.assert_close(ours(x), ref(x, x, x, need_weights=False)[0])
    torch.testing.assert_close(ours(x, source=source), ref(x, source, source, need_weights=False)[0])


def test_invalid_head_counts_raise():
    with pytest.raises(ValueError, match="d_model=18 is not divisible by n_heads=4"):
        MultiHeadAttention(18, 4)
    with pytest.raises(ValueError, match="n_heads=4 is not a multiple of n_kv_heads=3"):
        MultiHeadAttention(16, 4, n_kv_heads=3)
    with pytest.raises(ValueError, match="d_head=3 must be even"):
        MultiHeadAttention(12, 4, rope_base=10000.0)


def test_input_width_is_checked():
    with pytest.raises(ValueError, match="x has d_model=8 but the layer has d_model=16"):
        make_mha()(torch.zeros(1, 3, 8, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# backends


def backends():
    return ["naive", "sdpa", "tiled"]


def use_backend(mha, backend):
    if backend == "tiled":
        flash_or_skip()
    mha.backend = backend
    return mha


MASK_CASES = {
    "none": lambda: (None, False),
    "causal": lambda: (None, True),
    "padding": lambda: (padding_mask([6, 3], 6), False),
    "causal+padding": lambda: (padding_mask([6, 3], 6), True),
    "full bool": lambda: (torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(0)) < 0.7, False),
    "additive": lambda: (rand(1, N_HEADS, 6, 6, seed=8), True),
}


@pytest.mark.parametrize("backend", ["sdpa", "tiled"])
@pytest.mark.parametrize("case", list(MASK_CASES))
@pytest.mark.parametrize("n_kv_heads", [N_HEADS, 2])
def test_backends_agree(backend, case, n_kv_heads):
    mask, is_causal = MASK_CASES[case]()
    if case == "full bool":
        mask[..., 0] = True
    dtype = torch.float32
    naive = make_mha(n_kv_heads=n_kv_heads, dtype=dtype)
    x = rand(2, 6, D_MODEL, seed=5, dtype=dtype)
    expected = naive(x, mask=mask, is_causal=is_causal)
    other = use_backend(make_mha(n_kv_heads=n_kv_heads, dtype=dtype), backend)
    if backend == "tiled" and case in ("full bool", "additive"):
        with pytest.raises(ValueError, match="backend accepts is_causal and a bool key padding mask"):
            other(x, mask=mask, is_causal=is_causal)
        return
    torch.testing.assert_close(other(x, mask=mask, is_causal=is_causal), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["sdpa", "tiled"])
def test_backends_agree_when_decoding_with_fewer_queries_than_keys(backend):
    """T_q < T_k with is_causal: every backend must align the causal mask to the last key."""
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 3, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    if backend == "tiled":
        flash_or_skip()
    expected, _ = attend(q, k, v, None, True, None, "naive")
    out, _ = attend(q, k, v, None, True, None, backend)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # independent reference: PyTorch with an explicit bottom-right causal mask and repeated heads
    mask = torch.tensor([[j <= i + 4 for j in range(7)] for i in range(3)])
    ref = F.scaled_dot_product_attention(q, k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1), attn_mask=mask)
    torch.testing.assert_close(expected, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["naive", "sdpa", "tiled"])
def test_fully_masked_rows_give_zeros_in_every_backend(backend):
    """A sequence of length 0 hides every key: documented as zero output, never NaN."""
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 3, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    if backend == "tiled":
        flash_or_skip()
    out, _ = attend(q, k, v, padding_mask([5, 0], 5), False, None, backend)
    assert not out.isnan().any()
    assert (out[1] == 0).all()
    ref = F.scaled_dot_product_attention(q[:1], k[:1].repeat_interleave(2, 1), v[:1].repeat_interleave(2, 1))
    torch.testing.assert_close(out[:1], ref, atol=1e-5, rtol=1e-5)


BAD_ATTEND_CALLS = {  # wrong calls every backend must refuse, with the same exception and message
    "integer mask": lambda: dict(mask=torch.ones(3, 5, dtype=torch.long)),
    "(B, T_k) padding mask": lambda: dict(mask=torch.ones(2, 5, dtype=torch.bool)),
    "(B, 1, T_k) mask": lambda: dict(mask=torch.ones(2, 1, 5, dtype=torch.bool)),
    "(T_k,) mask": lambda: dict(mask=torch.ones(5, dtype=torch.bool)),
    "mask of wrong T_k": lambda: dict(mask=torch.ones(2, 1, 1, 4, dtype=torch.bool)),
    "causal with T_q > T_k": lambda: dict(q=torch.randn(2, 4, 6, 8), is_causal=True),
    "no keys": lambda: dict(k=torch.randn(2, 2, 0, 8), v=torch.randn(2, 2, 0, 8)),
    "fewer query heads than kv heads": lambda: dict(q=torch.randn(2, 1, 3, 8)),
    "k batch 1": lambda: dict(k=torch.randn(1, 2, 5, 8), v=torch.randn(1, 2, 5, 8)),
    "scale 0": lambda: dict(scale=0.0),
}


@pytest.mark.parametrize("case", list(BAD_ATTEND_CALLS))
def test_every_backend_refuses_the_same_calls_with_the_same_message(case):
    args = dict(q=torch.randn(2, 4, 3, 8), k=torch.randn(2, 2, 5, 8), v=torch.randn(2, 2, 5, 8), mask=None,
                is_causal=False, scale=None)
    args.update(BAD_ATTEND_CALLS[case]())
    errors = {}
    for backend in ("naive", "sdpa", "tiled", "triton"):  # triton: refused before its kernels are needed
        with pytest.raises((ValueError, TypeError)) as info:
            attend(**args, backend=backend)
        errors[backend] = (type(info.value), str(info.value))
    assert len(set(errors.values())) == 1, errors


@pytest.mark.parametrize("backend,mask,accepts", [
    ("tiled", lambda: torch.ones(3, 5, dtype=torch.bool), "'naive' and 'sdpa' take every mask"),
    ("tiled", lambda: torch.zeros(2, 1, 1, 5), "'naive' and 'sdpa' take every mask"),
    ("tiled", lambda: torch.ones(2, 1, 3, 5, dtype=torch.bool), "'naive' and 'sdpa' take every mask"),
    ("triton", lambda: padding_mask([5, 3], 5), "'tiled' also takes a bool key padding mask"),
    ("triton", lambda: causal_mask(3, 5), "'naive' and 'sdpa' take every mask"),
])
def test_a_backend_that_takes_fewer_masks_names_those_that_take_it(backend, mask, accepts):
    q, k, v = torch.randn(2, 4, 3, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    m = mask()
    attend(q, k, v, m, False, None, "naive")  # a valid mask: the naive and sdpa backends take it
    attend(q, k, v, m, False, None, "sdpa")
    with pytest.raises(ValueError, match=accepts):
        attend(q, k, v, m, False, None, backend)


def test_tiled_takes_a_key_padding_mask_shared_by_the_batch():
    q, k, v = torch.randn(2, 4, 3, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    shared = padding_mask([4], 5)  # (1, 1, 1, T_k)
    expected, _ = attend(q, k, v, shared, False, None, "naive")
    torch.testing.assert_close(attend(q, k, v, shared, False, None, "tiled")[0], expected, atol=1e-5, rtol=1e-5)


def test_cross_attention_source_is_checked_against_the_layer_and_the_queries():
    mha = make_mha()
    x = rand(2, 3, D_MODEL)
    with pytest.raises(ValueError, match="source has d_model=8 but the layer has d_model=16"):
        mha(x, source=rand(2, 4, 8))
    with pytest.raises(ValueError, match="source has B=1 but x has B=2"):
        mha(x, source=rand(1, 4, D_MODEL))  # would broadcast one source over the batch


def test_attend_rejects_unknown_backend_and_weights_from_fused_kernels():
    q = torch.zeros(1, 2, 3, 4)
    with pytest.raises(ValueError, match="backend must be one of"):
        attend(q, q, q, None, False, None, "cuda-magic")
    with pytest.raises(ValueError, match="only materialised by the 'naive' backend"):
        attend(q, q, q, None, False, None, "sdpa", return_weights=True)
    mha = make_mha()
    mha.backend, mha.capture_weights = "sdpa", True
    with pytest.raises(ValueError, match="capture_weights needs backend='naive'"):
        mha(torch.zeros(1, 3, D_MODEL, dtype=torch.float64))


def test_head_mask_equals_zeroing_the_heads_output_columns():
    mha = make_mha()
    x = rand(2, 5, D_MODEL, seed=2)
    mha.head_mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    ablated = mha(x)
    mha.head_mask = None
    d_head = D_MODEL // N_HEADS
    with torch.no_grad():
        for h in (1, 3):
            mha.out_proj.weight[:, h * d_head:(h + 1) * d_head] = 0
    torch.testing.assert_close(ablated, mha(x))


# ---------------------------------------------------------------------------------------------
# KV cache and RoPE


@pytest.mark.parametrize("backend", ["naive", "sdpa", "tiled"])
@pytest.mark.parametrize("rope_layout", [None, "interleaved", "split_half"])
@pytest.mark.parametrize("n_kv_heads", [N_HEADS, 2, 1])
def test_kv_cache_one_token_at_a_time_equals_full_causal_forward(backend, rope_layout, n_kv_heads):
    kw = dict(n_kv_heads=n_kv_heads)
    if rope_layout is not None:
        kw.update(rope_base=10000.0, rope_layout=rope_layout)
    mha = use_backend(make_mha(dtype=torch.float32, **kw), backend)
    x = rand(2, 7, D_MODEL, seed=6, dtype=torch.float32)
    full = mha(x, is_causal=True)
    cache = KVCache()
    steps = [mha(x[:, t:t + 1], is_causal=True, cache=cache) for t in range(7)]
    assert cache.length == 7 and cache.k.shape == (2, n_kv_heads, 7, D_MODEL // N_HEADS)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rope_layout", [None, "interleaved"])
def test_kv_cache_in_uneven_chunks(rope_layout):
    kw = dict(rope_base=500.0, rope_layout=rope_layout) if rope_layout else {}
    mha = make_mha(**kw)
    x = rand(1, 9, D_MODEL, seed=7)
    full = mha(x, is_causal=True)
    cache = KVCache()
    chunks = [mha(x[:, a:b], is_causal=True, cache=cache) for a, b in ((0, 4), (4, 5), (5, 9))]
    torch.testing.assert_close(torch.cat(chunks, dim=1), full)


def test_static_cache_for_cross_attention_is_computed_once():
    mha = make_mha()
    x, source = rand(1, 3, D_MODEL, seed=1), rand(1, 5, D_MODEL, seed=2)
    cache = KVCache(static=True)
    key_projections = []
    mha.k_proj.register_forward_hook(lambda module, args, out: key_projections.append(out.shape))
    first = mha(x[:, :1], source=source, cache=cache)
    rest = mha(x[:, 1:], source=source, cache=cache)
    assert key_projections == [(1, 5, D_MODEL)] and cache.length == 5
    torch.testing.assert_close(torch.cat((first, rest), 1), mha(x, source=source))


def test_kv_cache_fills_buffers_in_place_and_doubles_them_when_full():
    mha = make_mha(n_kv_heads=2, rope_base=100.0)
    x = rand(1, 40, D_MODEL, seed=8)
    cache, steps, capacities = KVCache(), [], []
    with torch.no_grad():
        for t in range(40):
            steps.append(mha(x[:, t:t + 1], is_causal=True, cache=cache))
            capacities.append(cache.capacity)
    assert sorted(set(capacities)) == [1, 2, 4, 8, 16, 32, 64]  # 7 buffers for 40 tokens, not 40
    assert cache.k.shape == (1, 2, 40, D_MODEL // N_HEADS) and cache.k_buffer.shape[2] == 64
    torch.testing.assert_close(torch.cat(steps, dim=1), mha(x, is_causal=True))


def test_kv_cache_buffers_stop_growing_at_max_length():
    cache = KVCache(max_length=24)
    with torch.no_grad():
        for t in range(24):
            cache.append(torch.full((1, 2, 1, 4), float(t)), torch.zeros(1, 2, 1, 4))
            assert cache.capacity <= 24
    assert cache.capacity == 24 and cache.k[0, 0, :, 0].tolist() == [float(t) for t in range(24)]


def test_kv_cache_gradients_match_the_full_forward():
    """With autograd on, appends must not overwrite what backward needs (earlier views)."""
    mha = make_mha()
    x = rand(2, 6, D_MODEL, seed=9).requires_grad_()
    cache = KVCache()
    stepped = torch.cat([mha(x[:, t:t + 1], is_causal=True, cache=cache) for t in range(6)], dim=1)
    grad_stepped = torch.autograd.grad(stepped.square().sum(), (x, mha.k_proj.weight))
    grad_full = torch.autograd.grad(mha(x, is_causal=True).square().sum(), (x, mha.k_proj.weight))
    for a, b in zip(grad_stepped, grad_full):
        torch.testing.assert_close(a, b)


def test_kv_cache_refuses_keys_of_another_shape():
    cache = KVCache()
    cache.append(torch.zeros(1, 2, 3, 8), torch.zeros(1, 2, 3, 8))
    with pytest.raises(ValueError, match=r"k has \(B, h_kv, d_head\) = \(1, 4, 8\) but the cache holds \(1, 2, 8\)"):
        cache.append(torch.zeros(1, 4, 1, 8), torch.zeros(1, 4, 1, 8))
    with pytest.raises(ValueError, match="v has shape"):
        cache.append(torch.zeros(1, 2, 1, 8), torch.zeros(1, 2, 1, 4))


def complex_rope(x, positions, base):
    """Interleaved RoPE as complex multiplication: (x_2i + i x_2i+1) * exp(i pos theta_i)."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    rot = torch.polar(torch.ones(len(positions), d // 2, dtype=torch.float64),
                      positions.double()[:, None] * theta)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * rot).flatten(-2)


def test_rope_mha_matches_a_reference_written_with_complex_numbers():
    mha = make_mha(rope_base=10000.0, rope_layout="interleaved")
    x = rand(2, 6, D_MODEL, seed=9)
    b, t, d_head = 2, 6, D_MODEL // N_HEADS
    heads = lambda lin: F.linear(x, lin.weight, lin.bias).view(b, t, N_HEADS, d_head).transpose(1, 2)
    pos = torch.arange(t)
    q, k = complex_rope(heads(mha.q_proj), pos, 10000.0), complex_rope(heads(mha.k_proj), pos, 10000.0)
    o = F.scaled_dot_product_attention(q, k, heads(mha.v_proj), is_causal=True)
    expected = F.linear(o.transpose(1, 2).reshape(b, t, D_MODEL), mha.out_proj.weight, mha.out_proj.bias)
    torch.testing.assert_close(mha(x, is_causal=True), expected)


def test_rope_makes_attention_see_order():
    """Without positions, attention is permutation-equivariant; RoPE breaks it."""
    mha = make_mha(rope_base=10000.0)
    x = rand(1, 5, D_MODEL, seed=2)
    perm = torch.tensor([4, 2, 0, 3, 1])
    assert not torch.allclose(mha(x[:, perm]), mha(x)[:, perm])
