"""Counting parameters, FLOPs and memory (lesson 08). A multiply-add counts as 2 FLOPs.

    attention scores and mixing (QK^T, AV):  4 B h T^2 d_head
    projections (Q, K, V, O, MHA):           8 B T d_model^2
    MLP at 4x expansion:                     16 B T d_model^2
    KV cache:                                2 * n_layers * B * T * h_kv * d_head * bytes

and ``best_time`` for measuring what the formulas predict.
"""

from __future__ import annotations

import time
from typing import Callable

from torch import nn

from tfcore._checks import require_choice, require_positive_int
from tfcore.mlp import GATED, MLP_KINDS
from tfcore.norms import NORMS


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Sum of ``numel`` over the model's parameters; a tied matrix counts once."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def attention_params(d_model: int, n_heads: int, n_kv_heads: int | None = None, bias: bool = True,
                     d_head: int | None = None, out_bias: bool | None = None) -> int:
    """W_Q, W_O (d_model x d_model) and W_K, W_V (d_model x h_kv d_head), plus biases: 4 d^2 + 4 d for MHA.

    d_head None: d_model / n_heads (else W_Q, W_O are d_model x h d_head); out_bias None: = bias.
    """
    n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
    _check_heads(d_model, n_heads, n_kv_heads, d_head)
    d_head = d_head or d_model // n_heads
    q_width, kv_width = n_heads * d_head, n_kv_heads * d_head
    weights = 2 * d_model * q_width + 2 * d_model * kv_width
    return weights + (q_width + 2 * kv_width) * bias + d_model * (bias if out_bias is None else out_bias)


def mlp_params(d_model: int, d_ff: int, kind: str = "gelu", bias: bool = True) -> int:
    """2 d_model d_ff (+ biases) for an MLP; 3 d_model d_ff (+ biases) for SwiGLU and the other gated kinds."""
    _check_sizes(d_model=d_model, d_ff=d_ff)
    require_choice("kind", kind, MLP_KINDS)
    if kind in GATED:
        return 3 * d_model * d_ff + ((2 * d_ff + d_model) if bias else 0)
    return 2 * d_model * d_ff + ((d_ff + d_model) if bias else 0)


def norm_params(d_model: int, kind: str = "layer", bias: bool = True) -> int:
    """LayerNorm: gain and shift (2 d); RMSNorm: gain only (d)."""
    _check_sizes(d_model=d_model)
    require_choice("kind", kind, NORMS)
    return d_model * (2 if kind == "layer" and bias else 1)


def parameter_count(config) -> dict[str, int]:
    """Parameters of ``Transformer(config)`` by part, from the formulas alone; ``"total"`` sums them."""
    _check_config(config)
    c = config
    attn = attention_params(c.d_model, c.n_heads, c.n_kv_heads, c.bias_of("qkv"), c.head_dim, c.bias_of("out"))
    mlp = mlp_params(c.d_model, c.d_ff, c.mlp, c.bias_of("mlp"))
    norm = norm_params(c.d_model, c.norm, c.bias_of("norm"))
    n_stacks = 1 + (c.architecture == "encoder-decoder")
    n_tables = n_stacks if not c.shared_positions else 1
    n_norms_per_block = 1 if c.placement == "parallel" else 2
    block = attn + mlp + n_norms_per_block * norm
    decoder_layers = 0 if c.architecture == "encoder" else c.n_layers
    encoder_layers = {"decoder": 0, "encoder": c.n_layers, "encoder-decoder": c.n_encoder_layers}[c.architecture]
    cross = (attn + norm) * decoder_layers if c.architecture == "encoder-decoder" else 0
    final_norms = 0 if c.placement == "post" else norm * n_stacks
    mlm_head = c.d_model * c.d_model + c.d_model * c.bias_of("mlp") + norm if c.mlm_head else 0
    parts = {
        "embedding": (c.vocab_size + c.n_token_types) * c.d_model + (norm * n_stacks if c.embed_norm else 0),
        "positions": n_tables * (c.max_seq_len + c.position_offset) * c.d_model if c.positions == "learned" else
                     32 * c.n_heads * n_stacks if c.positions == "t5" else 0,
        "blocks": block * (decoder_layers + encoder_layers),
        "cross_attention": cross,
        "final_norms": final_norms,
        "unembedding": (0 if c.tie_weights else c.vocab_size * c.d_model) + c.vocab_size * c.unembed_bias + mlm_head,
    }
    parts["total"] = sum(parts.values())
    return parts


def attention_flops(batch: int, n_heads: int, seq_len: int, d_head: int) -> int:
    """QK^T and AV of dense attention: 2 matmuls of 2 B h T^2 d_head FLOPs each = 4 B h T^2 d_head."""
    _check_sizes(batch=batch, n_heads=n_heads, seq_len=seq_len, d_head=d_head)
    return 4 * batch * n_heads * seq_len * seq_len * d_head


def projection_flops(batch: int, seq_len: int, d_model: int, n_heads: int, n_kv_heads: int | None = None) -> int:
    """Q, K, V and output projections: 2 B T (params without biases) = 8 B T d^2 for MHA."""
    _check_sizes(batch=batch, seq_len=seq_len)
    return 2 * batch * seq_len * attention_params(d_model, n_heads, n_kv_heads, bias=False)


def mlp_flops(batch: int, seq_len: int, d_model: int, d_ff: int, kind: str = "gelu") -> int:
    """2 B T (MLP weights) = 16 B T d^2 at d_ff = 4 d."""
    _check_sizes(batch=batch, seq_len=seq_len)
    return 2 * batch * seq_len * mlp_params(d_model, d_ff, kind, bias=False)


def block_flops(batch: int, seq_len: int, d_model: int, n_heads: int, d_ff: int) -> dict[str, int]:
    """Forward FLOPs of one MHA block by part."""
    _check_heads(d_model, n_heads, n_heads)
    parts = {
        "attention": attention_flops(batch, n_heads, seq_len, d_model // n_heads),
        "projections": projection_flops(batch, seq_len, d_model, n_heads),
        "mlp": mlp_flops(batch, seq_len, d_model, d_ff),
    }
    parts["total"] = sum(parts.values())
    return parts


def attention_overtakes_linear(d_model: int, d_ff: int | None = None) -> float:
    """The T where 4 B T^2 d equals the projections + MLP, 2 B T (4 d^2 + 2 d d_ff): T = 6 d at d_ff = 4 d."""
    d_ff = 4 * d_model if d_ff is None else d_ff
    _check_sizes(d_model=d_model, d_ff=d_ff)
    return (8 * d_model**2 + 4 * d_model * d_ff) / (4 * d_model)


def score_memory_bytes(batch: int, n_heads: int, seq_len: int, bytes_per_value: int = 4) -> int:
    """The B h T^2 scores naive attention materialises, in bytes."""
    _check_sizes(batch=batch, n_heads=n_heads, seq_len=seq_len, bytes_per_value=bytes_per_value)
    return batch * n_heads * seq_len * seq_len * bytes_per_value


def kv_cache_bytes(n_layers: int, batch: int, seq_len: int, n_kv_heads: int, d_head: int, bytes_per_value: int) -> int:
    """Keys and values of every layer: 2 * n_layers * B * T * h_kv * d_head * bytes."""
    _check_sizes(n_layers=n_layers, batch=batch, seq_len=seq_len, n_kv_heads=n_kv_heads, d_head=d_head,
                 bytes_per_value=bytes_per_value)
    return 2 * n_layers * batch * seq_len * n_kv_heads * d_head * bytes_per_value


def training_flops_per_token(config, seq_len: int) -> int:
    """About 6 N (forward 2 N, backward 4 N) for the weights plus 12 L T d for attention (non-embedding N)."""
    _check_sizes(seq_len=seq_len)
    c = config
    n = parameter_count(c)["blocks"] + parameter_count(c)["cross_attention"]
    return 6 * n + 12 * c.n_layers * seq_len * c.d_model


def best_time(f: Callable[[], object], repeats: int = 5) -> float:
    """Seconds taken by the fastest of ``repeats`` calls of ``f()``.

    Other work on the machine only ever adds time, so the fastest call is the closest to the cost
    of ``f`` itself. Results vary from run to run and machine to machine: print them in cells whose
    output is not compared.
    """
    require_positive_int("repeats", repeats)
    if not callable(f):
        raise TypeError(f"f must be a function of no arguments, got {type(f).__name__}")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def _check_sizes(**sizes: int) -> None:
    """Every size is a positive integer: a zero, negative or fractional size has no cost to count."""
    for name, value in sizes.items():
        require_positive_int(name, value)


def _check_heads(d_model: int, n_heads: int, n_kv_heads: int, d_head: int | None = None) -> None:
    """n_heads divides d_model (d_head = d_model / n_heads, unless d_head is given) and n_kv_heads divides
    n_heads (GQA groups)."""
    _check_sizes(d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads)
    if d_head is not None:
        _check_sizes(d_head=d_head)
    elif d_model % n_heads:
        raise ValueError(f"n_heads={n_heads} does not divide d_model={d_model} (d_head = d_model / n_heads)")
    if n_heads % n_kv_heads:
        raise ValueError(f"n_kv_heads={n_kv_heads} does not divide n_heads={n_heads} (each key/value head serves "
                         "a whole group of query heads)")


def _check_config(config: object) -> None:
    from tfcore.model import TransformerConfig  # here: tfcore.model does not need this module

    if not isinstance(config, TransformerConfig):
        raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
    config.validate()

