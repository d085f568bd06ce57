"""Shared helpers for the tfcore unit tests: tiny configs and weight copying into PyTorch's own modules.

Nothing here re-implements tfcore: the references are PyTorch modules (``nn.MultiheadAttention``,
``nn.TransformerEncoderLayer``, ...) or explicit loops written in the tests themselves.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tfcore.heads import MultiHeadAttention
from tfcore.model import Transformer, TransformerConfig
from tfcore.train import TrainConfig


def tiny_config(**overrides) -> TransformerConfig:
    """A model small enough to build and run in milliseconds."""
    base = dict(vocab_size=19, d_model=16, n_layers=2, n_heads=4, max_seq_len=24)
    return TransformerConfig(**{**base, **overrides})


def tiny_model(seed: int = 0, **overrides) -> Transformer:
    """A tiny model in eval mode with weights drawn from ``seed`` (biases made non-zero too)."""
    torch.manual_seed(seed)
    model = Transformer(tiny_config(**overrides)).eval()
    with torch.no_grad():  # the default init zeroes biases and sets norm gains to 1: perturb them so they matter
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


TRAIN_CORPUS = torch.arange(4000) % 29  # a periodic "text" for training tests: learnable, and no files needed


def train_model(seed: int = 0, **overrides) -> Transformer:
    """A tiny decoder for the training tests (PyTorch's default init, train mode)."""
    torch.manual_seed(seed)
    fields = dict(vocab_size=32, d_model=32, n_layers=2, n_heads=4, max_seq_len=32, backend="sdpa")
    return Transformer(TransformerConfig(**{**fields, **overrides}))


def train_config(**overrides) -> TrainConfig:
    """A training run of a dozen steps on ``TRAIN_CORPUS`` windows, evaluated every 4."""
    fields = dict(steps=12, batch_size=8, block_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=3, eval_interval=4,
                  eval_batches=2, log_interval=1, callback_interval=4)
    return TrainConfig(**{**fields, **overrides})


def random_tokens(batch: int, length: int, vocab_size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(vocab_size, (batch, length), generator=g)


def torch_mha_from(ours: MultiHeadAttention, d_model: int, n_heads: int, bias: bool) -> nn.MultiheadAttention:
    """``nn.MultiheadAttention`` (batch_first) holding the same weights as our layer.

    With GQA (n_kv_heads < n_heads) each key/value head's rows are repeated for its query
    group, which is exactly what sharing one K/V head among n_rep query heads means.
    """
    ref = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True, dropout=0.0)
    d_head = d_model // n_heads
    n_rep = n_heads // ours.n_kv_heads

    def per_head(w: torch.Tensor) -> torch.Tensor:  # (h_kv * d_head, ...) -> (h * d_head, ...)
        return w.reshape(ours.n_kv_heads, d_head, *w.shape[1:]).repeat_interleave(n_rep, dim=0).reshape(
            n_heads * d_head, *w.shape[1:])

    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat((ours.q_proj.weight, per_head(ours.k_proj.weight),
                                            per_head(ours.v_proj.weight))))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        if bias:
            ref.in_proj_bias.copy_(torch.cat((ours.q_proj.bias, per_head(ours.k_proj.bias),
                                              per_head(ours.v_proj.bias))))
            ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ref


def randomise_(module: nn.Module, seed: int = 0, std: float = 0.3) -> nn.Module:
    """Overwrite every parameter with N(0, std^2) noise (norm gains around 1), in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype) * std
            p.copy_(1.0 + noise if "norm" in name and name.endswith("weight") else noise)
    return module


def flash_or_skip():
    """The tiled kernel module, or skip the test when it is not written yet / fails to import."""
    try:
        from tfcore import flash  # noqa: F401
    except Exception as exc:  # ImportError, or a half-written module
        pytest.skip(f"tfcore.flash does not import ({type(exc).__name__}: {exc})")
    return flash


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Run a test module's tiny tensors on one thread (restored afterwards).

    With two cores and other processes busy, PyTorch's OpenMP threads spin-wait on each
    other and a millisecond forward pass can take a hundred times longer. Import this
    fixture into a test module to apply it there.
    """
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
