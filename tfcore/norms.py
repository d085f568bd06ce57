"""Normalisation layers (lesson 05).

LayerNorm:  y = gamma * (x - mu) / sqrt(sigma^2 + eps) + beta
RMSNorm:    y = gamma * x / sqrt(mean(x^2) + eps)
Both act on the last axis (d_model) of each token separately.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfcore._checks import require_float, require_min_ndim, require_same_size


def _check(x: Tensor, weight: Tensor | None, bias: Tensor | None = None) -> None:
    require_min_ndim("x", x, 1, "(..., d_model)")
    require_float("x", x)
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None:
            require_same_size(name, p.shape[-1], "x", x.shape[-1], "d_model")


def layer_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float = 1e-5) -> Tensor:
    """LayerNorm over the last axis. x: (..., d_model); weight, bias: (d_model,) or None."""
    _check(x, weight, bias)
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)  # biased variance, as in the paper and nn.LayerNorm
    y = (x - mu) * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def rms_norm(x: Tensor, weight: Tensor | None, eps: float = 1e-6) -> Tensor:
    """RMSNorm over the last axis: no centring, no bias. x: (..., d_model); weight: (d_model,) or None."""
    _check(x, weight)
    y = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return y * weight if weight is not None else y


class LayerNorm(nn.Module):
    """LayerNorm with learnable gain ``weight`` and (optional) shift ``bias``, each (d_model,).

    It runs PyTorch's fused kernel, which computes ``layer_norm`` above in one pass instead of
    eight separate operations (tests check the two agree).
    """

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., d_model) -> (..., d_model)."""
        _check(x, self.weight, self.bias)
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """RMSNorm with learnable gain ``weight`` (d_model,); PyTorch's fused ``F.rms_norm`` computes ``rms_norm``."""

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., d_model) -> (..., d_model)."""
        _check(x, self.weight)
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


DEFAULT_EPS = {"layer": 1e-5, "rms": 1e-6}


def make_norm(kind: str, d_model: int, bias: bool = True, eps: float | None = None) -> nn.Module:
    """``"layer"`` -> LayerNorm, ``"rms"`` -> RMSNorm (no bias); eps None: ``DEFAULT_EPS[kind]``."""
    if kind == "layer":
        return LayerNorm(d_model, DEFAULT_EPS[kind] if eps is None else eps, bias)
    if kind == "rms":
        return RMSNorm(d_model, DEFAULT_EPS[kind] if eps is None else eps)
    raise ValueError(f"norm must be 'layer' or 'rms', got {kind!r}")
