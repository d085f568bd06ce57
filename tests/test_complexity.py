"""tfcore.complexity against real forward passes (FlopCounterMode), real caches and real modules."""

from __future__ import annotations

import time

import pytest
import torch
from helpers import random_tokens, single_thread, tiny_model  # noqa: F401 (autouse fixture)
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tfcore.attention import scaled_dot_product_attention
from tfcore.blocks import Block
from tfcore.complexity import (
    attention_flops,
    attention_overtakes_linear,
    attention_params,
    best_time,
    block_flops,
    kv_cache_bytes,
    mlp_flops,
    mlp_params,
    norm_params,
    projection_flops,
    score_memory_bytes,
)
from tfcore.heads import ModelCache, MultiHeadAttention
from tfcore.mlp import make_mlp
from tfcore.model import llama_config

GiB = 2**30


def measured_flops(fn, *args, **kwargs) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops()


@pytest.mark.parametrize("b,h,t,d", [(1, 1, 4, 8), (2, 3, 7, 5), (3, 4, 16, 16)])
def test_attention_flops_match_a_counted_forward_pass(b, h, t, d):
    q, k, v = (torch.randn(b, h, t, d) for _ in range(3))
    assert measured_flops(scaled_dot_product_attention, q, k, v) == attention_flops(b, h, t, d)


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_projection_plus_attention_flops_match_a_counted_mha(n_kv_heads):
    b, t, d, h = 2, 6, 32, 4
    mha = MultiHeadAttention(d, h, n_kv_heads=n_kv_heads, bias=False)
    x = torch.randn(b, t, d)
    expected = projection_flops(b, t, d, h, n_kv_heads) + attention_flops(b, h, t, d // h)
    assert measured_flops(mha, x) == expected
    if n_kv_heads == h:
        assert projection_flops(b, t, d, h) == 8 * b * t * d * d


@pytest.mark.parametrize("kind", ["gelu", "relu", "swiglu"])
def test_mlp_flops_match_a_counted_mlp(kind):
    b, t, d, d_ff = 2, 5, 12, 48
    mlp = make_mlp(kind, d, d_ff, bias=False)
    assert measured_flops(mlp, torch.randn(b, t, d)) == mlp_flops(b, t, d, d_ff, kind)
    if kind != "swiglu":
        assert mlp_flops(b, t, d, 4 * d) == 16 * b * t * d * d


def test_block_flops_match_a_counted_block():
    b, t, d, h, d_ff = 2, 9, 16, 4, 64
    block = Block(d, h, d_ff, bias=False, mlp="gelu")
    assert measured_flops(block, torch.randn(b, t, d), is_causal=True) == block_flops(b, t, d, h, d_ff)["total"]


def test_attention_overtakes_linear_at_six_d_model():
    d = 64
    crossing = attention_overtakes_linear(d)
    assert crossing == 6 * d
    at = block_flops(1, int(crossing), d, 4, 4 * d)
    assert at["attention"] == at["projections"] + at["mlp"]
    before, after = block_flops(1, 6 * d - 8, d, 4, 4 * d), block_flops(1, 6 * d + 8, d, 4, 4 * d)
    assert before["attention"] < before["projections"] + before["mlp"]
    assert after["attention"] > after["projections"] + after["mlp"]


def test_score_memory_matches_the_materialised_weights():
    q = torch.randn(2, 3, 10, 4)
    _, weights = scaled_dot_product_attention(q, q, q, return_weights=True)
    assert score_memory_bytes(2, 3, 10) == weights.numel() * weights.element_size()
    assert score_memory_bytes(2, 3, 10, bytes_per_value=2) == weights.half().numel() * 2


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kv_cache_bytes_match_a_filled_cache(n_kv_heads, dtype):
    model = tiny_model(n_kv_heads=n_kv_heads, positions="rope").to(dtype)
    tokens = random_tokens(3, 11, 19)
    cache = ModelCache.empty(model.config.n_layers)
    with torch.no_grad():
        model(tokens[:, :7], cache=cache)
        model(tokens[:, 7:], cache=cache)
    real = sum(t.numel() * t.element_size() for layer in cache.self_attn for t in (layer.k, layer.v))
    c = model.config
    assert real == kv_cache_bytes(c.n_layers, 3, 11, n_kv_heads, c.d_head, torch.finfo(dtype).bits // 8)


def test_seven_billion_class_kv_cache():
    """32 layers, 32 heads of 128, 4096 tokens, fp16: 2 GiB per sequence; 8 KV heads (GQA): 0.5 GiB."""
    assert kv_cache_bytes(32, 1, 4096, 32, 128, 2) == 2 * GiB
    assert kv_cache_bytes(32, 1, 4096, 8, 128, 2) == GiB // 2
    c = llama_config()
    assert (c.n_layers, c.n_kv_heads, c.d_head, c.max_seq_len) == (32, 8, 128, 4096)
    assert kv_cache_bytes(c.n_layers, 1, c.max_seq_len, c.n_kv_heads, c.d_head, 2) == GiB // 2


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("d,h", [(16, 4), (48, 6), (768, 12)])
def test_attention_params_match_torch_multihead_attention(d, h, bias):
    ref = nn.MultiheadAttention(d, h, bias=bias, device="meta")
    assert attention_params(d, h, bias=bias) == sum(p.numel() for p in ref.parameters())
    assert attention_params(d, h, bias=False) == 4 * d * d


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_attention_params_match_our_gqa_layer(n_kv_heads):
    mha = MultiHeadAttention(32, 4, n_kv_heads=n_kv_heads, bias=True)
    assert attention_params(32, 4, n_kv_heads, bias=True) == sum(p.numel() for p in mha.parameters())


@pytest.mark.parametrize("bias", [True, False])
def test_mlp_and_norm_params_match_torch_modules(bias):
    d, d_ff = 12, 40
    mlp = nn.Sequential(nn.Linear(d, d_ff, bias=bias), nn.Linear(d_ff, d, bias=bias))
    assert mlp_params(d, d_ff, "gelu", bias) == sum(p.numel() for p in mlp.parameters())
    swiglu = nn.ModuleList([nn.Linear(d, d_ff, bias=bias), nn.Linear(d, d_ff, bias=bias), nn.Linear(d_ff, d, bias=bias)])
    assert mlp_params(d, d_ff, "swiglu", bias) == sum(p.numel() for p in swiglu.parameters())
    assert norm_params(d, "layer", bias) == sum(p.numel() for p in nn.LayerNorm(d, bias=bias).parameters())
    assert norm_params(d, "rms", bias) == sum(p.numel() for p in nn.RMSNorm(d).parameters())


@pytest.mark.parametrize("fn,args,name", [
    (attention_flops, (0, 1, 1, 1), "batch"),
    (attention_flops, (1, 1, -3, 1), "seq_len"),
    (kv_cache_bytes, (32, 1, 4096, 0, 128, 2), "n_kv_heads"),
    (kv_cache_bytes, (32, 1, 4096, 8, 128, 0.5), "bytes_per_value"),
])
def test_errors_name_the_argument(fn, args, name):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        fn(*args)


def test_best_time_is_the_fastest_of_the_calls():
    """A function whose calls take 50, 10 and 30 ms: best_time reports about 10 ms, after 3 calls."""
    delays = iter([0.05, 0.01, 0.03])
    calls = []

    def f():
        calls.append(1)
        time.sleep(next(delays))

    seconds = best_time(f, repeats=3)
    assert len(calls) == 3 and 0.01 <= seconds < 0.03
    with pytest.raises(ValueError, match="repeats"):
        best_time(f, repeats=0)
