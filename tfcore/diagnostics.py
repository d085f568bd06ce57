"""Diagnostics (lessons 02 and 10): tools that find bugs without reading the code.

- ``attention_entropy``: H_i = -sum_j a_ij log a_ij, against log T_k for a uniform row;
- ``leakage_by_perturbation`` / ``leakage_by_jacobian``: does output i depend on input j > i?
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def attention_entropy(weights: Tensor) -> Tensor:
    """Entropy of each attention row, natural log, with 0 log 0 = 0. (..., T_q, T_k) -> (..., T_q)."""
    if weights.dim() < 2:
        raise ValueError(f"weights must have shape (..., T_q, T_k), got {tuple(weights.shape)}")
    logs = torch.where(weights > 0, weights.log(), torch.zeros_like(weights))
    return -(weights * logs).sum(dim=-1)


def leakage_by_perturbation(f: Callable[[Tensor], Tensor], tokens: Tensor, vocab_size: int, position: int,
                            atol: float = 1e-6) -> list[int]:
    """Change the token at ``position`` and list the earlier output positions that moved.

    f: tokens (B, T) -> outputs (B, T, ...). A causal model returns []. Changing token j
    may only change outputs i >= j.
    """
    if not 0 <= position < tokens.shape[1]:
        raise ValueError(f"position must lie in [0, T={tokens.shape[1]}), got {position}")
    changed = tokens.clone()
    changed[:, position] = (changed[:, position] + 1) % vocab_size
    with torch.no_grad():
        before, after = f(tokens), f(changed)
    moved = (before - after).abs().flatten(2).amax(dim=(0, 2)) > atol  # (T,)
    return [i for i in range(position) if moved[i]]


def leakage_by_jacobian(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Influence of input j on output i: ``J[i, j] = ||d y_i / d x_j||`` for one sequence.

    f: x (1, T, d_in) -> y (1, T, d_out), e.g. a model applied to embeddings. Returns (T, T);
    for a causal f it is zero above the diagonal.
    """
    if x.dim() != 3 or x.shape[0] != 1:
        raise ValueError(f"x must have shape (1, T, d_in), got {tuple(x.shape)}")
    jac = torch.autograd.functional.jacobian(lambda inp: f(inp)[0], x)  # (T, d_out, 1, T, d_in)
    return jac[:, :, 0].pow(2).sum(dim=(1, 3)).sqrt()
