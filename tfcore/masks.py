"""Attention masks (lesson 02). Every mask here is boolean: True = the query may attend the key.

Shapes are chosen to broadcast against scores (B, h, T_q, T_k):

| mask | shape |
|---|---|
| causal, sliding window, prefix-LM | (T_q, T_k) |
| key padding from lengths | (B, 1, 1, T_k) |
| block-diagonal for packed sequences | (B, 1, T, T) |

Combine masks with ``combine_masks`` (logical AND under broadcasting).

The mask rule (every attention entry point, every backend: ``check_mask`` enforces it)
-------------------------------------------------------------------------------------
dtype
    bool: True = the query may attend the key (as in ``torch.nn.functional.scaled_dot_product_attention``);
    floating point: added to the scores (0 keeps a key, -inf hides it, other values bias it).
    Integer masks are refused, not converted: 1 means "attend" in some libraries and "hide" in
    others. Write ``mask.bool()`` (1 = attend) or ``mask == 0`` (1 = hide) to say which.
shape, against scores (..., T_q, T_k), usually (B, h, T_q, T_k)
    - 2 axes: always (T_q, T_k), one pattern for every sequence and head (sizes T_q or 1, T_k or 1);
    - as many axes as the scores, each the scores' size or 1: (B, 1, 1, T_k) key padding,
      (B, 1, T_q, T_k) one pattern per sequence, (1, h, T_q, T_k) one per head (ALiBi),
      (B, h, T_q, T_k) everything;
    - anything else is refused, although broadcasting would accept it: a 1-axis (T_k,) mask,
      and a 3-axis mask on 4-axis scores, whose first axis would land on the head axis.
    A key padding mask therefore always has four axes, (B, 1, 1, T_k) (``padding_mask`` builds
    it): a (B, T_k) tensor is read as (T_q, T_k) and refused when B != T_q. When B happens to
    equal T_q the two cannot be told apart by shape, which is why padding never comes as (B, T_k).
backends (``tfcore.heads.attend``)
    "naive" and "sdpa" accept every mask above; "tiled" accepts ``is_causal`` and a bool key
    padding mask (B or 1, 1, 1, T_k) only; "triton" accepts ``is_causal`` only. A mask a backend
    cannot take is refused with a message naming the backends that can, never approximated.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tfcore._checks import require_int, require_integer_dtype, require_ndim, require_positive_int, require_tensor


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


def padding_mask(lengths: Tensor | list[int], t: int | None = None, *, name: str = "lengths") -> Tensor:
    """Key padding mask from sequence lengths: True at real tokens. Shape (B, 1, 1, T).

    lengths: (B,) integers in [0, T]. t: padded length T (defaults to max(lengths)).
    name: what errors call ``lengths`` (e.g. ``"source_lengths"``).
    """
    lengths = torch.as_tensor(lengths)
    require_ndim(name, lengths, 1, "(B,)")
    require_integer_dtype(name, lengths)
    if lengths.shape[0] == 0:
        raise ValueError(f"{name} has B=0 entries: it needs one length per sequence")
    t = int(lengths.max()) if t is None else require_int("t", t, minimum=0)
    if (lengths < 0).any() or (lengths > t).any():
        raise ValueError(f"{name} must lie in [0, T={t}], got {lengths.tolist()}")
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
    if isinstance(prefix_len, bool) or not isinstance(prefix_len, int) or not 0 <= prefix_len <= t:
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
    if segment_ids.shape[1] == 0:
        raise ValueError(f"segment_ids has T=0 positions, got shape {tuple(segment_ids.shape)}")
    same = segment_ids.unsqueeze(2) == segment_ids.unsqueeze(1)  # (B, T, T)
    if causal:
        same = same & causal_mask(segment_ids.shape[1], device=segment_ids.device)
    return same.unsqueeze(1)


def cross_attention_mask(source_lengths: Tensor | list[int], t_source: int | None = None) -> Tensor:
    """Decoder queries attending encoder keys: only the padding of the source matters. Shape (B, 1, 1, T_source).

    It broadcasts against cross-attention scores (B, h, T_target, T_source).
    """
    return padding_mask(source_lengths, t_source, name="source_lengths")


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of boolean masks under broadcasting; ``None`` entries are skipped.

    Example: causal (T, T) & padding (B, 1, 1, T) -> (B, 1, T, T).
    """
    present = [(n, m) for n, m in enumerate(masks) if m is not None]
    for n, m in present:
        require_tensor(f"mask {n}", m)
        if m.dtype != torch.bool:
            raise TypeError(f"mask {n} must be bool (True = may attend), got {m.dtype}; use to_additive only at the end")
    if not present:
        return None
    ndim = max(m.dim() for _, m in present)
    for n, m in present:  # the mask rule: (T_q, T_k) or full rank, so no axis lands where it does not belong
        if m.dim() not in (2, ndim):
            raise ValueError(f"mask {n} of shape {tuple(m.shape)} has {m.dim()} axes but another mask has {ndim}: "
                             f"combine (T_q, T_k) masks with masks of one rank, e.g. (B, 1, 1, T_k), not (B, 1, T_k)")
    for axis in range(1, ndim + 1):  # right-aligned sizes must be equal or 1 (torch's own error is slow to build)
        sizes = {m.shape[-axis] for _, m in present if m.dim() >= axis} - {1}
        if len(sizes) > 1:
            shapes = ", ".join(f"mask {n} {tuple(m.shape)}" for n, m in present)
            raise ValueError(f"the masks do not broadcast together: {shapes}")
    out = present[0][1]
    for _, m in present[1:]:
        out = out & m  # & broadcasts, e.g. (T, T) & (B, 1, 1, T) -> (B, 1, T, T)
    return out


def to_additive(mask: Tensor, dtype: torch.dtype = torch.float32, fill: float = float("-inf")) -> Tensor:
    """Boolean mask -> additive float mask: 0 where allowed, ``fill`` (-inf, or a large negative) where hidden."""
    require_tensor("mask", mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be bool, got {mask.dtype}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating-point dtype (the mask is added to the scores), got {dtype}")
    if isinstance(fill, bool) or not isinstance(fill, (int, float)) or not fill < 0:
        raise ValueError(f"fill must be -inf or a negative number (it hides a key), got {fill!r}")
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, fill)


def check_mask(mask: Tensor, scores_shape: tuple[int, ...] | torch.Size, device: torch.device | None = None,
               name: str = "mask") -> None:
    """Raise unless ``mask`` follows the mask rule (module docstring) for scores of ``scores_shape``.

    scores_shape: (..., T_q, T_k), usually (B, h, T_q, T_k). device: where the scores live.
    Reads the mask's shape, dtype and device only, never its values.
    """
    require_tensor(name, mask)
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(
            f"{name} must be bool (True = may attend) or float (added to the scores), got {mask.dtype}: "
            f"an integer mask is ambiguous; write {name}.bool() if 1 means attend, {name} == 0 if 1 means hide"
        )
    shape, target = tuple(mask.shape), tuple(scores_shape)
    layout = "(B, h, T_q, T_k)" if len(target) == 4 else "(..., T_q, T_k)"
    if len(shape) not in (2, len(target)) and len(shape) < len(target):
        raise ValueError(
            f"{name} of shape {shape} has {len(shape)} ax{'i' if len(shape) == 1 else 'e'}s; against scores {layout} = "
            f"{target} a mask has 2 axes (T_q, T_k) or {len(target)}, each the scores' size or 1"
            + (f": the first axis of a 3-axis mask would land on the head axis h={target[1]}; "
               "use (B, 1, T_q, T_k) for one mask per sequence or (B, 1, 1, T_k) for key padding"
               if len(shape) == 3 and len(target) == 4 else "")
        )
    fits = len(shape) <= len(target) and all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))
    if not fits:
        hint = ""
        if len(shape) == 2 and len(target) == 4 and shape == (target[0], target[3]):
            hint = (": a 2-axis mask means (T_q, T_k); a key padding mask (B, T_k) must be (B, 1, 1, T_k) "
                    "(padding_mask builds it)")
        raise ValueError(f"{name} of shape {shape} does not broadcast to the scores' shape {target} (..., T_q, T_k)"
                         f"{hint}")
    if device is not None and mask.device != device:
        raise ValueError(f"{name} is on {mask.device} but the scores are on {device}")

