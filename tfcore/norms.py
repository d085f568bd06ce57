"""Normalisation layers (lesson 05).

LayerNorm:  y = gamma * (x - mu) / sqrt(sigma^2 + eps) + beta
RMSNorm:    y = gamma * x / sqrt(mean(x^2) + eps)
Both act on the last axis (d_model) of each token separately.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfcore._checks import require_float, require_min_ndim, require_number, require_positive_int, require_same_size, require_tensor

NORMS = ("layer", "rms")


def _check(x: Tensor, weight: Tensor | None, bias: Tensor | None = None) -> None:
    """x: (..., d_model) floating point; weight, bias: exactly (d_model,) or None (a (2, d_model) weight would broadcast)."""
    require_min_ndim("x", x, 1, "(..., d_model)")
    require_float("x", x)
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None:
            require_tensor(name, p)
            if p.dim() != 1:
                raise ValueError(f"{name} must have shape (d_model,) = ({x.shape[-1]},) for x of shape "
                                 f"{tuple(x.shape)}, got {tuple(p.shape)}")
            require_same_size(name, p.shape[0], "x", x.shape[-1], "d_model")


def _check_layer_input(x: Tensor, d_model: int) -> None:
    """x: (..., d_model) floating point; one test on the hot path, the details only on failure."""
    if not (isinstance(x, Tensor) and x.dim() >= 1 and x.shape[-1] == d_model and x.is_floating_point()):
        require_min_ndim("x", x, 1, "(..., d_model)")
        require_float("x", x)
        require_same_size("x", x.shape[-1], "the layer", d_model, "d_model")


def _check_eps(eps: float) -> float:
    """eps >= 0: it keeps the division finite for a constant token; a negative eps can make it NaN."""
    return require_number("eps", eps, 0, None)


def layer_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float = 1e-5) -> Tensor:
    """LayerNorm over the last axis. x: (..., d_model); weight, bias: (d_model,) or None; eps >= 0."""
    _check(x, weight, bias)
    _check_eps(eps)
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)  # biased variance, as in the paper and nn.LayerNorm
    y = (x - mu) * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def rms_norm(x: Tensor, weight: Tensor | None, eps: float = 1e-6) -> Tensor:
    """RMSNorm over the last axis: no centring, no bias. x: (..., d_model); weight: (d_model,) or None; eps >= 0."""
    _check(x, weight)
    _check_eps(eps)
    y = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return y * weight if weight is not None else y


class LayerNorm(nn.Module):
    """LayerNorm with learnable gain ``weight`` and (optional) shift ``bias``, each (d_model,).

    It runs PyTorch's fused kernel, which computes ``layer_norm`` above in one pass instead of
    eight separate operations (tests check the two agree).
    """

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        require_positive_int("d_model", d_model)
        self.eps, self.d_model = _check_eps(eps), d_model  # d_model: a plain int for the input check
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., d_model) -> (..., d_model)."""
        _check_layer_input(x, self.d_model)
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """RMSNorm with learnable gain ``weight`` (d_model,); PyTorch's fused ``F.rms_norm`` computes ``rms_norm``."""

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        require_positive_int("d_model", d_model)
        self.eps, self.d_model = _check_eps(eps), d_model  # d_model: a plain int for the input check
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., d_model) -> (..., d_model)."""
        _check_layer_input(x, self.d_model)
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


DEFAULT_EPS = {"layer": 1e-5, "rms": 1e-6}


def make_norm(kind: str, d_model: int, bias: bool = True, eps: float | None = None) -> nn.Module:
    """``"layer"`` -> LayerNorm, ``"rms"`` -> RMSNorm (no bias); eps None: ``DEFAULT_EPS[kind]``."""
    if kind not in NORMS:
        raise ValueError(f"norm must be 'layer' or 'rms', got {kind!r}")
    eps = DEFAULT_EPS[kind] if eps is None else eps
    return LayerNorm(d_model, eps, bias) if kind == "layer" else RMSNorm(d_model, eps)
