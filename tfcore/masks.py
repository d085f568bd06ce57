"""Attention masks (lesson 02). Every mask here is boolean: True = the query may attend the key.

Shapes are chosen to broadcast against scores (B, h, T_q, T_k):

| mask | shape |
|---|---|
| causal, sliding window, prefix-LM | (T_q, T_k) |
| key padding from lengths | (B, 1, 1, T_k) |
| block-diagonal for packed sequences | (B, 1, T, T) |

Combine masks with ``combine_masks`` (logical AND under broadcasting).
"""

from __future__ import annotations

import torch
from torch import Tensor

from tfcore._checks import require_ndim, require_positive_int


def _positions(t_q: int, t_k: int, device: torch.device | str | None) -> tuple[Tensor, Tensor]:
    """Query positions (T_q, 1) and key positions (1, T_k), queries aligned to the last key."""
    i = torch.arange(t_q, device=device).unsqueeze(1) + (t_k - t_q)
    j = torch.arange(t_k, device=device).unsqueeze(0)
    return i, j


def causal_mask(t_q: int, t_k: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """``M[i, j] = [j <= i]``: each query sees itself and the past. Shape (T_q, T_k).

    With T_k > T_q (decoding with a KV cache) the queries are the last T_q positions,
    so query i sits at absolute position i + T_k - T_q.
    """
    t_k = t_q if t_k is None else t_k
    require_positive_int("t_q", t_q)
    require_positive_int("t_k", t_k)
    if t_k < t_q:
        raise ValueError(f"causal_mask needs t_k >= t_q (keys include every query position), got t_q={t_q}, t_k={t_k}")
    i, j = _positions(t_q, t_k, device)
    return j <= i


def padding_mask(lengths: Tensor | list[int], t: int | None = None) -> Tensor:
    """Key padding mask from sequence lengths: True at real tokens. Shape (B, 1, 1, T).

    lengths: (B,) integers in [0, T]. t: padded length T (defaults to max(lengths)).
    """
    lengths = torch.as_tensor(lengths)
    require_ndim("lengths", lengths, 1, "(B,)")
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
    t = int(lengths.max()) if t is None else t
    if (lengths < 0).any() or (lengths > t).any():
        raise ValueError(f"lengths must lie in [0, T={t}], got {lengths.tolist()}")
    keep = torch.arange(t, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    return keep[:, None, None, :]


def sliding_window_mask(t: int, window: int, causal: bool = True) -> Tensor:
    """Local attention: ``|i - j| < window``, and ``j <= i`` too if ``causal``. Shape (T, T)."""
    require_positive_int("t", t)
    require_positive_int("window", window)
    i, j = _positions(t, t, None)
    near = (i - j).abs() < window
    return near & (j <= i) if causal else near


def prefix_lm_mask(t: int, prefix_len: int) -> Tensor:
    """Prefix-LM: the first ``prefix_len`` tokens see each other (bidirectional); the rest are causal. Shape (T, T)."""
    require_positive_int("t", t)
    if not 0 <= prefix_len <= t:
        raise ValueError(f"prefix_len must lie in [0, T={t}], got {prefix_len}")
    i, j = _positions(t, t, None)
    return (j <= i) | (j < prefix_len)


def block_diagonal_mask(segment_ids: Tensor, causal: bool = True) -> Tensor:
    """Packed sequences: token i sees token j only inside the same segment. Shape (B, 1, T, T).

    segment_ids: (B, T) or (T,) integers, equal within one packed sequence, e.g.
    ``[0, 0, 0, 1, 1, 2]``. With ``causal`` each segment is also causal.
    """
    segment_ids = torch.as_tensor(segment_ids)
    if segment_ids.dim() == 1:
        segment_ids = segment_ids.unsqueeze(0)
    require_ndim("segment_ids", segment_ids, 2, "(B, T)")
    same = segment_ids.unsqueeze(2) == segment_ids.unsqueeze(1)  # (B, T, T)
    if causal:
        same = same & causal_mask(segment_ids.shape[1], device=segment_ids.device)
    return same.unsqueeze(1)


def cross_attention_mask(source_lengths: Tensor | list[int], t_source: int | None = None) -> Tensor:
    """Decoder queries attending encoder keys: only the padding of the source matters. Shape (B, 1, 1, T_source).

    It broadcasts against cross-attention scores (B, h, T_target, T_source).
    """
    return padding_mask(source_lengths, t_source)


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of boolean masks under broadcasting; ``None`` entries are skipped.

    Example: causal (T, T) & padding (B, 1, 1, T) -> (B, 1, T, T).
    """
    present = [m for m in masks if m is not None]
    for n, m in enumerate(present):
        if m.dtype != torch.bool:
            raise TypeError(f"mask {n} must be bool (True = may attend), got {m.dtype}; use to_additive only at the end")
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = out & m  # & broadcasts, e.g. (T, T) & (B, 1, 1, T) -> (B, 1, T, T)
    return out


def to_additive(mask: Tensor, dtype: torch.dtype = torch.float32, fill: float = float("-inf")) -> Tensor:
    """Boolean mask -> additive float mask: 0 where allowed, ``fill`` (-inf, or a large negative) where hidden."""
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be bool, got {mask.dtype}")
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, fill)
