"""Positional information (lesson 07): attention alone cannot tell token order apart.

- learned absolute table ``P[t]`` added to the embeddings (``LearnedPositions``);
- sinusoidal table ``PE(pos, 2i) = sin(pos / 10000^(2i/d))``, ``PE(pos, 2i+1) = cos(...)``;
- relative biases added to the scores: T5 buckets (``T5RelativeBias``) and ALiBi;
- RoPE: rotate channel pairs of q and k by ``pos * theta_i``, ``theta_i = base^(-2i/d)``,
  so that ``q_m . k_n`` depends on ``m - n`` only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tfcore._checks import (
    require_choice,
    require_float,
    require_int,
    require_integer_dtype,
    require_min_ndim,
    require_ndim,
    require_positive_int,
    require_positive_number,
    require_same_size,
)

ROPE_LAYOUTS = ("interleaved", "split_half")
ROPE_SCALING_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def sinusoidal(t: int, d: int, base: float = 10000.0) -> Tensor:
    """The sinusoidal table (T, d): column 2i is ``sin(pos / base^(2i/d))``, column 2i+1 the cos."""
    require_positive_int("t", t)
    require_positive_int("d", d)
    require_positive_number("base", base)
    if d % 2:
        raise ValueError(f"d must be even for sin/cos pairs, got d={d}")
    pos = torch.arange(t, dtype=torch.float64).unsqueeze(1)  # (T, 1)
    inv_freq = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)
    table = torch.empty(t, d, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * inv_freq)
    table[:, 1::2] = torch.cos(pos * inv_freq)
    return table.float()


class LearnedPositions(nn.Module):
    """A learned table P (max_len, d_model); ``forward(positions)`` returns P[positions]."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        require_positive_int("max_len", max_len)
        require_positive_int("d_model", d_model)
        self.max_len = max_len
        self.table = nn.Embedding(max_len, d_model)

    def forward(self, positions: Tensor) -> Tensor:
        """positions: (T,) -> (T, d_model). The hard cap: positions must be < max_len."""
        require_integer_dtype("positions", positions, "integer positions")
        if positions.numel() == 0:
            raise ValueError(f"positions is empty (shape {tuple(positions.shape)}): pass at least one position")
        if int(positions.min()) < 0:
            raise ValueError(f"positions must be >= 0, got {int(positions.min())}")
        if int(positions.max()) >= self.max_len:
            raise ValueError(
                f"position {int(positions.max())} is beyond the learned table (max_len={self.max_len}): "
                "a learned absolute table cannot represent longer contexts"
            )
        return self.table(positions)


def rope_angles(positions: Tensor, d: int, base: float = 10000.0, scaling: dict | None = None) -> Tensor:
    """Angles ``pos * base^(-2i/d)`` for each position and pair: (T,) -> (T, d/2), float64.

    Kept in float64 (cast after cos/sin): float32 angles of large positions are off by ~1e-6 rad.
    scaling: Llama 3.1's rule (``llama3_frequencies``), a dict with the keys ``ROPE_SCALING_KEYS``.
    """
    require_positive_int("d", d)
    require_positive_number("base", base)
    if d % 2:
        raise ValueError(f"RoPE needs an even d_head, got d_head={d}")
    inv_freq = base ** (-torch.arange(0, d, 2, dtype=torch.float64, device=positions.device) / d)
    if scaling is not None:
        inv_freq = llama3_frequencies(inv_freq, **scaling)
    return positions.to(torch.float64).unsqueeze(-1) * inv_freq


def llama3_frequencies(inv_freq: Tensor, factor: float, low_freq_factor: float, high_freq_factor: float,
                       original_max_position_embeddings: int) -> Tensor:
    """Llama 3.1's RoPE scaling of the frequencies (d/2,), for contexts ``factor`` times the trained one.

    With L = original_max_position_embeddings: pairs whose wavelength 2 pi / f is below
    L / high_freq_factor keep f; above L / low_freq_factor they turn ``factor`` times slower;
    in between, f is blended linearly in L / wavelength between the two.
    """
    wavelength = 2 * math.pi / inv_freq
    blend = (original_max_position_embeddings / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blended = (1 - blend) * inv_freq / factor + blend * inv_freq
    slow = wavelength > original_max_position_embeddings / low_freq_factor
    fast = wavelength < original_max_position_embeddings / high_freq_factor
    return torch.where(slow, inv_freq / factor, torch.where(fast, inv_freq, blended))


def check_rope_scaling(scaling: dict) -> None:
    """Refuse a ``scaling`` dict that ``llama3_frequencies`` cannot use, naming the reason."""
    if not isinstance(scaling, dict) or set(scaling) != set(ROPE_SCALING_KEYS):
        raise ValueError(f"rope_scaling must be a dict with the keys {ROPE_SCALING_KEYS}, got {scaling!r}")
    if not (scaling["factor"] > 0 and 0 < scaling["low_freq_factor"] < scaling["high_freq_factor"]
            and scaling["original_max_position_embeddings"] > 0):
        raise ValueError("rope_scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and "
                         f"original_max_position_embeddings > 0, got {scaling}")


def rope(x: Tensor, positions: Tensor, base: float = 10000.0, layout: str = "interleaved",
         scaling: dict | None = None) -> Tensor:
    """Rotary position embedding. x: (..., T, d); positions: (T,). Returns (..., T, d).

    ``layout="interleaved"`` rotates the pairs (x[2i], x[2i+1]); ``"split_half"`` rotates
    (x[i], x[i + d/2]) (the ``rotate_half`` layout). Pair i turns by ``pos * base^(-2i/d)``
    (frequencies rescaled by ``scaling``, see ``rope_angles``).
    """
    require_min_ndim("x", x, 2, "(..., T, d)")
    require_float("x", x)
    positions = torch.as_tensor(positions, device=x.device)
    if positions.dim() != 1:
        raise ValueError(f"positions must have shape (T,), got {tuple(positions.shape)}")
    require_same_size("positions", positions.shape[0], "x", x.shape[-2], "T")
    require_choice("layout", layout, ROPE_LAYOUTS)
    angles = rope_angles(positions, x.shape[-1], base, scaling)  # (T, d/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    if layout == "interleaved":
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)


def alibi_slopes(n_heads: int) -> Tensor:
    """ALiBi's geometric head slopes m_h, (n_heads,).

    For a power of two n: ``m_h = 2^(-8 h / n)``, h = 1..n. Otherwise the slopes of the
    nearest smaller power of two, then every other slope of the next power of two.
    """
    require_positive_int("n_heads", n_heads)

    def geometric(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    p = 2 ** math.floor(math.log2(n_heads))
    slopes = geometric(p) + geometric(2 * p)[0::2][: n_heads - p]
    return torch.tensor(slopes)


def alibi_bias(n_heads: int, t_q: int, t_k: int | None = None) -> Tensor:
    """ALiBi's additive bias ``-m_h |i - j|``, (n_heads, T_q, T_k), queries aligned to the last key (T_k >= T_q)."""
    t_k = t_q if t_k is None else t_k
    _check_lengths(t_q, t_k)
    i = torch.arange(t_q).unsqueeze(1) + (t_k - t_q)
    j = torch.arange(t_k).unsqueeze(0)
    distance = (i - j).abs().float()  # (T_q, T_k)
    return -alibi_slopes(n_heads)[:, None, None] * distance


def t5_bucket(relative: Tensor, n_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True) -> Tensor:
    """T5's bucket of each offset ``j - i``: exact for small offsets, logarithmic up to max_distance.

    relative: integer tensor of offsets (any shape). Returns bucket ids of the same shape.
    n_buckets: at least 4 (2 unidirectional); max_distance: larger than the offsets that get a
    bucket of their own (n_buckets / 4, or n_buckets / 2 unidirectional).
    """
    require_integer_dtype("relative", relative, "integer offsets j - i")
    _check_buckets(n_buckets, max_distance, bidirectional)
    buckets = torch.zeros_like(relative)
    if bidirectional:
        n_buckets //= 2
        buckets = buckets + (relative > 0).long() * n_buckets  # later keys get the upper half
        distance = relative.abs()
    else:
        distance = (-relative).clamp(min=0)  # only the past counts
    exact = n_buckets // 2
    is_small = distance < exact
    log_ratio = torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact)
    large = (exact + (log_ratio * (n_buckets - exact)).long()).clamp(max=n_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class T5RelativeBias(nn.Module):
    """Learned scalar bias per (head, bucket of j - i), added to the scores: (h, T_q, T_k)."""

    def __init__(self, n_heads: int, n_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True) -> None:
        super().__init__()
        require_positive_int("n_heads", n_heads)
        _check_buckets(n_buckets, max_distance, bidirectional)
        self.n_buckets, self.max_distance, self.bidirectional = n_buckets, max_distance, bidirectional
        self.bias = nn.Embedding(n_buckets, n_heads)

    def forward(self, t_q: int, t_k: int | None = None) -> Tensor:
        """Returns the bias (n_heads, T_q, T_k), queries aligned to the last key (T_k >= T_q)."""
        t_k = t_q if t_k is None else t_k
        _check_lengths(t_q, t_k)
        device = self.bias.weight.device
        i = torch.arange(t_q, device=device).unsqueeze(1) + (t_k - t_q)
        j = torch.arange(t_k, device=device).unsqueeze(0)
        buckets = t5_bucket(j - i, self.n_buckets, self.max_distance, self.bidirectional)
        return self.bias(buckets).permute(2, 0, 1)


def _check_lengths(t_q: int, t_k: int) -> None:
    """Relative biases align the T_q queries to the last of T_k >= T_q keys."""
    require_positive_int("t_q", t_q)
    require_positive_int("t_k", t_k)
    if t_k < t_q:
        raise ValueError(f"t_k must be >= t_q (the queries are the last t_q of the t_k positions), got t_q={t_q}, t_k={t_k}")


def _check_buckets(n_buckets: int, max_distance: int, bidirectional: bool) -> None:
    """T5 buckets: half exact (offsets 0 .. exact - 1), half logarithmic up to max_distance."""
    smallest = 4 if bidirectional else 2
    require_int("n_buckets", n_buckets, minimum=smallest)
    exact = (n_buckets // 2 if bidirectional else n_buckets) // 2
    require_int("max_distance", max_distance)
    if max_distance <= exact:
        raise ValueError(f"max_distance must be larger than the {exact} offsets that get a bucket of their own "
                         f"(n_buckets={n_buckets}), got {max_distance}")

