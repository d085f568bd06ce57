"""The position-wise feed-forward network (lesson 04).

FFN(x)    = W_2 phi(W_1 x + b_1) + b_2,        phi in {ReLU, GELU, GELU-tanh}
SwiGLU(x) = W_2 (SiLU(W_1 x) * W_3 x)           (GEGLU: GELU in place of SiLU)

Every token goes through the same MLP on its own: it mixes channels, never tokens.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfcore._checks import (
    require_float,
    require_min_ndim,
    require_ndim,
    require_number,
    require_positive_int,
    require_same_size,
)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU: ``x * Phi(x)`` exactly (``"none"``) or with the tanh approximation (``"tanh"``). Any shape."""
    if approximate == "none":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if approximate == "tanh":
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))
    raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


ACTIVATIONS = {
    "relu": torch.relu,
    "gelu": lambda x: gelu(x, "none"),
    "gelu_tanh": lambda x: gelu(x, "tanh"),
    "silu": lambda x: x * torch.sigmoid(x),
}
# The modules run PyTorch's one-kernel versions of the same functions (tests check they agree).
FUSED_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": partial(F.gelu, approximate="tanh"), "silu": F.silu}
# the gated MLP kinds and the activation of their gate: SwiGLU (Llama), GEGLU (T5 v1.1 / Flan: tanh GELU)
GATED = {"swiglu": "silu", "geglu": "gelu", "geglu_tanh": "gelu_tanh"}
MLP_KINDS = (*ACTIVATIONS, *GATED)  # what make_mlp builds


def swiglu(x: Tensor, w1: Tensor, w2: Tensor, w3: Tensor) -> Tensor:
    """``(silu(x W1^T) * (x W3^T)) W2^T`` with weights in nn.Linear layout (out, in).

    x: (..., d_model); w1, w3: (d_ff, d_model); w2: (d_model, d_ff). Returns (..., d_model).
    """
    require_min_ndim("x", x, 1, "(..., d_model)")
    require_float("x", x)
    require_ndim("w1", w1, 2, "(d_ff, d_model)")
    require_ndim("w2", w2, 2, "(d_model, d_ff)")
    require_ndim("w3", w3, 2, "(d_ff, d_model)")
    require_same_size("w1", w1.shape[-1], "x", x.shape[-1], "d_model")
    require_same_size("w3", tuple(w3.shape), "w1", tuple(w1.shape), "shape")
    require_same_size("w2", w2.shape[-1], "w1", w1.shape[0], "d_ff")
    require_same_size("w2", w2.shape[0], "x", x.shape[-1], "d_model")
    gate = x @ w1.T
    return (gate * torch.sigmoid(gate) * (x @ w3.T)) @ w2.T


def _check_sizes(d_model: int, d_ff: int, dropout: float) -> None:
    require_positive_int("d_model", d_model)
    require_positive_int("d_ff", d_ff)
    require_number("dropout", dropout, 0, 1, high_open=True)


def _check_input(x: Tensor, d_model: int) -> None:
    """x: (..., d_model) floating point (shape and dtype only: no values read; one test, details on failure)."""
    if not (isinstance(x, Tensor) and x.dim() >= 1 and x.shape[-1] == d_model and x.is_floating_point()):
        require_min_ndim("x", x, 1, "(..., d_model)")
        require_float("x", x)
        require_same_size("x", x.shape[-1], "the layer", d_model, "d_model")


class MLP(nn.Module):
    """``W_2 phi(W_1 x + b_1) + b_2``. x: (..., d_model) -> (..., d_model); hidden width d_ff."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        _check_sizes(d_model, d_ff, dropout)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation, self.d_model = activation, d_model  # d_model: a plain int for the input check
        self.fc_in = nn.Linear(d_model, d_ff, bias=bias)  # W_1: rows are the "keys"
        self.fc_out = nn.Linear(d_ff, d_model, bias=bias)  # W_2: columns are the "values"
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., d_model) -> (..., d_model)."""
        _check_input(x, self.d_model)
        return self.dropout(self.fc_out(FUSED_ACTIVATIONS[self.activation](self.fc_in(x))))


class SwiGLU(nn.Module):
    """``W_2 (SiLU(W_1 x) * W_3 x)``; three matrices, so d_ff ~ 8/3 d_model keeps 8 d_model^2 weights.

    ``activation="gelu"`` or ``"gelu_tanh"`` gates with GELU instead: GEGLU.
    """

    def __init__(self, d_model: int, d_ff: int, bias: bool = False, dropout: float = 0.0, activation: str = "silu") -> None:
        super().__init__()
        _check_sizes(d_model, d_ff, dropout)
        if activation not in FUSED_ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(FUSED_ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.d_model = d_model  # a plain int for the input check
        self.w1 = nn.Linear(d_model, d_ff, bias=bias)  # gate
        self.w3 = nn.Linear(d_model, d_ff, bias=bias)  # up
        self.w2 = nn.Linear(d_ff, d_model, bias=bias)  # down
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., d_model) -> (..., d_model)."""
        _check_input(x, self.d_model)
        return self.dropout(self.w2(FUSED_ACTIVATIONS[self.activation](self.w1(x)) * self.w3(x)))


def make_mlp(kind: str, d_model: int, d_ff: int, bias: bool = True, dropout: float = 0.0) -> nn.Module:
    """``"swiglu"``, ``"geglu"``, ``"geglu_tanh"`` -> SwiGLU gated by ``GATED[kind]``; ``"relu"``,
    ``"gelu"``, ``"gelu_tanh"``, ``"silu"`` -> MLP with that activation."""
    if kind not in MLP_KINDS:
        raise ValueError(f"kind must be one of {MLP_KINDS}, got {kind!r}")
    if kind in GATED:
        return SwiGLU(d_model, d_ff, bias=bias, dropout=dropout, activation=GATED[kind])
    return MLP(d_model, d_ff, activation=kind, bias=bias, dropout=dropout)
