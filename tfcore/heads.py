"""Multi-head attention (lesson 03): split, attend per head, merge, project.

    head_i = Attn(X W_Q^i, X W_K^i, X W_V^i)
    MHA(X) = Concat(head_1, ..., head_h) W_O

With ``n_kv_heads < n_heads`` (GQA; MQA when ``n_kv_heads == 1``), query head i
uses key/value head ``i // (n_heads / n_kv_heads)``, and the KV cache shrinks by
that factor.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfcore._checks import (
    require_choice,
    require_float,
    require_ndim,
    require_nonempty,
    require_number,
    require_positive_int,
    require_positive_number,
    require_same_device_dtype,
    require_same_size,
)
from tfcore.attention import scaled_dot_product_attention
from tfcore.masks import causal_mask, check_mask, combine_masks, to_additive
from tfcore.positions import ROPE_LAYOUTS, rope

BACKENDS = ("naive", "sdpa", "tiled", "triton")


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """(B, T, d_model) -> (B, n_heads, T, d_head) by a view and a transpose."""
    require_ndim("x", x, 3, "(B, T, d_model)")
    require_positive_int("n_heads", n_heads)
    b, t, d_model = x.shape
    if d_model % n_heads:
        raise ValueError(f"x has d_model={d_model}, which n_heads={n_heads} does not divide")
    return x.view(b, t, n_heads, d_model // n_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, h, T, d_head) -> (B, T, h * d_head), the inverse of ``split_heads``."""
    require_ndim("x", x, 4, "(B, h, T, d_head)")
    b, h, t, d_head = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d_head)


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """(B, h_kv, T, d) -> (B, h_kv * n_rep, T, d); query head i reads key/value head i // n_rep."""
    require_ndim("x", x, 4, "(B, h_kv, T, d_head)")
    require_positive_int("n_rep", n_rep)
    if n_rep == 1:
        return x
    b, h_kv, t, d = x.shape
    return x[:, :, None].expand(b, h_kv, n_rep, t, d).reshape(b, h_kv * n_rep, t, d)


@dataclass
class KVCache:
    """Keys and values seen so far by one attention layer, each (B, h_kv, T_cached, d_head).

    They live in buffers (B, h_kv, capacity, d_head) that double when full, so adding a token
    writes it in place rather than copying everything cached (as ``torch.cat`` would): over T
    appends the copying is O(T), not O(T^2). ``k`` and ``v`` are views of the filled part.
    """

    static: bool = False  # True for cross-attention: the encoder's K/V are computed once
    max_length: int | None = None  # when known (generate: max_seq_len), no buffer grows past it
    length: int = 0
    k_buffer: Tensor | None = field(default=None, repr=False)  # (B, h_kv, capacity, d_head)
    v_buffer: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.max_length is not None:
            require_positive_int("max_length", self.max_length)

    @property
    def k(self) -> Tensor | None:
        return None if self.k_buffer is None else self.k_buffer[:, :, :self.length]

    @property
    def v(self) -> Tensor | None:
        return None if self.v_buffer is None else self.v_buffer[:, :, :self.length]

    @property
    def capacity(self) -> int:
        return 0 if self.k_buffer is None else self.k_buffer.shape[2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add the new (B, h_kv, T_new, d_head) keys/values; return everything cached."""
        require_ndim("k", k, 4, "(B, h_kv, T_new, d_head)")
        if not (isinstance(v, Tensor) and v.shape == k.shape and v.dtype == k.dtype and v.device == k.device):
            require_ndim("v", v, 4, "(B, h_kv, T_new, d_head)")
            if v.shape != k.shape:
                raise ValueError(f"v has shape {tuple(v.shape)} but k has {tuple(k.shape)}")
            require_same_device_dtype(("k", "v"), (k, v))
        batch, n_kv_heads, t_new, d_head = k.shape
        if self.k_buffer is not None and (batch, n_kv_heads, d_head) != self.k_buffer.shape[:2] + self.k_buffer.shape[3:]:
            held = self.k_buffer.shape
            raise ValueError(f"k has (B, h_kv, d_head) = {(batch, n_kv_heads, d_head)} but the cache holds "
                             f"{(held[0], held[1], held[3])}")
        end = self.length + t_new
        # Autograd saves the views handed out before, so writing into their buffer would break
        # backward: when gradients flow, every append gets a fresh buffer (as torch.cat would).
        tracked = torch.is_grad_enabled() and (k.requires_grad or v.requires_grad)
        if tracked or end > self.capacity:
            doubled = 2 * self.capacity if self.max_length is None else min(2 * self.capacity, self.max_length)
            capacity = end if tracked else max(end, doubled)
            self.k_buffer, self.v_buffer = self._moved(self.k_buffer, k, capacity), self._moved(self.v_buffer, v, capacity)
        self.k_buffer[:, :, self.length:end] = k
        self.v_buffer[:, :, self.length:end] = v
        self.length = end
        return self.k, self.v

    def _moved(self, old: Tensor | None, new: Tensor, capacity: int) -> Tensor:
        """A (B, h_kv, capacity, d_head) buffer holding the first ``length`` entries of ``old``."""
        buffer = new.new_empty(new.shape[0], new.shape[1], capacity, new.shape[3])
        if old is not None:
            buffer[:, :, :self.length] = old[:, :, :self.length]
        return buffer


@dataclass
class ModelCache:
    """One ``KVCache`` per layer (and per cross-attention layer) for ``generate``."""

    self_attn: list[KVCache] = field(default_factory=list)
    cross_attn: list[KVCache] = field(default_factory=list)

    @classmethod
    def empty(cls, n_layers: int, max_length: int | None = None) -> "ModelCache":
        """Empty caches for ``n_layers`` layers; ``max_length`` caps the self-attention buffers."""
        require_positive_int("n_layers", n_layers)
        return cls([KVCache(max_length=max_length) for _ in range(n_layers)],
                   [KVCache(static=True) for _ in range(n_layers)])

    @property
    def length(self) -> int:
        return self.self_attn[0].length if self.self_attn else 0


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    is_causal: bool,
    scale: float | None,
    backend: str = "naive",
    return_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Run attention with one of the backends. q (B, h, T_q, d); k, v (B, h_kv, T_k, d), h a multiple of h_kv.

    mask: bool or additive float, (T_q, T_k) or 4 axes broadcasting to (B, h, T_q, T_k); the
    rule, and which masks each backend takes, are in ``tfcore.masks``. is_causal needs
    T_k >= T_q. Returns the output (B, h, T_q, d) and the weights (B, h, T_q, T_k) when asked
    (``"naive"`` only). Every backend accepts and refuses the same calls, except where a
    backend takes fewer masks; it then says which backends take it.
    """
    _check_qkv(q, k, v)
    if scale is not None:
        require_positive_number("scale", scale)
    if mask is not None:
        check_mask(mask, (q.shape[0], q.shape[1], q.shape[2], k.shape[2]), q.device)
    return _attend(q, k, v, mask, is_causal, scale, backend, return_weights)


def _attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    is_causal: bool,
    scale: float | None,
    backend: str,
    return_weights: bool,
) -> tuple[Tensor, Tensor | None]:
    """``attend`` for q, k, v and mask already checked (``MultiHeadAttention`` builds q, k, v itself)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if return_weights and backend != "naive":
        raise ValueError(f"attention weights are only materialised by the 'naive' backend, not {backend!r}")
    if is_causal and k.shape[2] < q.shape[2]:
        raise ValueError(f"is_causal needs T_k >= T_q (the keys include every query position), "
                         f"got q with T_q={q.shape[2]} and k with T_k={k.shape[2]}")
    n_rep = q.shape[1] // k.shape[1]
    if backend == "naive":
        out = scaled_dot_product_attention(
            q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), mask=mask, is_causal=is_causal, scale=scale,
            return_weights=return_weights,
        )
        return out if return_weights else (out, None)
    if backend == "sdpa":
        if mask is not None and mask.dtype != torch.bool:
            mask = mask.to(q.dtype)  # as the naive path does; PyTorch refuses e.g. a float64 mask for float32 q
        if is_causal and mask is None and q.shape[2] == k.shape[2]:  # both alignments agree: let PyTorch
            return F.scaled_dot_product_attention(  # pick a fused causal kernel (flash/cuDNN need no mask)
                q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), is_causal=True, scale=scale), None
        if is_causal and mask is None and q.shape[2] == 1:  # one new token (decoding): it sits after every
            return F.scaled_dot_product_attention(  # cached key, so the causal mask would be all True
                q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), scale=scale), None
        if is_causal:  # PyTorch aligns its causal mask to the first key; ours is aligned to the last
            causal = causal_mask(q.shape[2], k.shape[2], device=q.device)
            mask = causal if mask is None else (combine_masks(mask, causal) if mask.dtype == torch.bool
                                                else mask + to_additive(causal, mask.dtype))
        out = F.scaled_dot_product_attention(
            q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), attn_mask=mask, scale=scale
        )
        return out, None
    if backend == "tiled":
        from tfcore.flash import flash_attention

        key_padding = _key_padding_from(mask, k.shape[0], k.shape[2])
        return flash_attention(q, k, v, is_causal=is_causal, key_padding_mask=key_padding, scale=scale), None
    if mask is not None:
        raise ValueError(
            f"the 'triton' backend accepts is_causal only, no mask; got a {mask.dtype} mask of shape "
            f"{tuple(mask.shape)}: 'tiled' also takes a bool key padding mask (B, 1, 1, T_k), "
            "'naive' and 'sdpa' take every mask"
        )
    from tfcore.triton_flash import triton_attention

    return triton_attention(q, k, v, is_causal=is_causal, scale=scale), None


def decoding_attention_kernels(device: torch.device) -> contextlib.AbstractContextManager:
    """On CUDA, SDPA without its cuDNN kernel while decoding.

    cuDNN's attention builds a plan for every new sequence length, and decoding brings a new
    key length at every step, so each step would pay for a plan; the FlashAttention and
    memory-efficient kernels take any length as it comes.
    """
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    """The checks every backend shares: q (B, h, T_q, d); k, v (B, h_kv, T_k, d), h a multiple of h_kv."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        require_ndim(name, x, 4, "(B, h, T, d_head)" if name == "q" else "(B, h_kv, T_k, d_head)")
        require_float(name, x)
    require_same_device_dtype(("q", "k", "v"), (q, k, v))
    require_same_size("k", k.shape[0], "q", q.shape[0], "B")
    require_same_size("k", k.shape[3], "q", q.shape[3], "d_head")
    for axis, (name, size) in enumerate((("B", k.shape[0]), ("h_kv", k.shape[1]), ("T_k", k.shape[2]))):
        require_same_size("v", v.shape[axis], "k", size, name)
    require_nonempty("q", q, "(B, h, T_q, d_head)")
    require_nonempty("k", k, "(B, h_kv, T_k, d_head)")
    h, h_kv = q.shape[1], k.shape[1]
    if h < h_kv:
        raise ValueError(f"q has h={h} query heads but k has h_kv={h_kv} key/value heads: each key/value head "
                         "serves a group of query heads, so h must be a multiple of h_kv (q and k swapped?)")
    if h % h_kv:
        raise ValueError(f"q has h={h} query heads, which is not a multiple of k's h_kv={h_kv} key/value heads")


def _key_padding_from(mask: Tensor | None, batch: int, t_k: int) -> Tensor | None:
    """The tiled kernels take only a key padding mask (B, T_k): accept bool (B or 1, 1, 1, T_k) masks."""
    if mask is None:
        return None
    if mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2] != 1 or mask.shape[3] != t_k:
        raise ValueError(
            f"the 'tiled' backend accepts is_causal and a bool key padding mask (B, 1, 1, T_k) only, "
            f"got a {mask.dtype} mask of shape {tuple(mask.shape)}: backends 'naive' and 'sdpa' take every mask"
        )
    return mask[:, 0, 0, :].expand(batch, t_k)


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with ``n_heads`` query heads and ``n_kv_heads`` key/value heads.

    x: (B, T_q, d_model) -> (B, T_q, d_model). Set ``backend`` to choose the kernel, and
    ``capture_weights = True`` to keep the last weights (B, h, T_q, T_k) in ``last_weights``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        rope_base: float | None = None,
        rope_layout: str = "interleaved",
        scale: float | None = None,
        d_head: int | None = None,
        out_bias: bool | None = None,
        rope_scaling: dict | None = None,
    ) -> None:
        """``bias`` covers W_Q, W_K, W_V, and W_O unless ``out_bias`` says otherwise; d_head None: d_model / n_heads."""
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        for name, value in (("d_model", d_model), ("n_heads", n_heads), ("n_kv_heads", n_kv_heads)):
            require_positive_int(name, value)
        if d_head is None and d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        if n_kv_heads > n_heads:
            raise ValueError(f"n_kv_heads={n_kv_heads} exceeds n_heads={n_heads}: each key/value head serves a "
                             "group of query heads, so n_kv_heads must divide n_heads")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads}")
        require_number("dropout", dropout, 0, 1, high_open=True)
        if rope_base is not None:
            require_positive_number("rope_base", rope_base)
        require_choice("rope_layout", rope_layout, ROPE_LAYOUTS)
        if scale is not None:
            require_positive_number("scale", scale)
        self.n_heads, self.n_kv_heads, self.d_head = n_heads, n_kv_heads, d_head or d_model // n_heads
        self.d_model = d_model  # a plain int: input checks read it at every call (submodules are slower to reach)
        if rope_base is not None and self.d_head % 2:
            raise ValueError(f"RoPE rotates channel pairs, so d_head={self.d_head} must be even")
        self.q_proj = nn.Linear(d_model, n_heads * self.d_head, bias=bias)  # W_Q
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.d_head, bias=bias)  # W_K
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.d_head, bias=bias)  # W_V
        self.out_proj = nn.Linear(n_heads * self.d_head, d_model, bias=bias if out_bias is None else out_bias)  # W_O
        self.dropout = nn.Dropout(dropout)
        self.rope_base, self.rope_layout, self.rope_scaling, self.scale = rope_base, rope_layout, rope_scaling, scale
        self.backend = "naive"
        self.capture_weights = False
        self.last_weights: Tensor | None = None
        self.head_mask: Tensor | None = None  # (h,) multipliers for ablation: 0 removes a head

    def forward(
        self,
        x: Tensor,
        source: Tensor | None = None,
        mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
    ) -> Tensor:
        """x: (B, T_q, d_model) queries; source: (B, T_k, d_model) for cross-attention (default x).

        mask: bool (True = may attend) or additive float, (T_q, T_k) or 4 axes broadcasting to
        (B, h, T_q, T_k): the rule, and the masks each backend takes, are in ``tfcore.masks``.
        With RoPE, x's tokens sit at positions cache.length .. cache.length + T_q - 1.
        cache: a ``KVCache`` the new keys/values are appended to (decoding).
        """
        self._check_inputs(x, source, cache)
        b, t_q, _ = x.shape
        if mask is not None:  # before the cache is touched, so that a refused call leaves it as it was
            check_mask(mask, (b, self.n_heads, t_q, self._key_length(x if source is None else source, cache)), x.device)
        q = self._project_q(x).view(b, t_q, self.n_heads, self.d_head).transpose(1, 2)  # (B, h, T_q, d_head)
        k, v = self._keys_values(x if source is None else source, cache)
        if self.rope_base is not None and source is None:
            start = 0 if cache is None else cache.length - t_q  # the cache already holds x's keys
            q = rope(q, torch.arange(start, start + t_q, device=x.device), self.rope_base, self.rope_layout, self.rope_scaling)
        if self.capture_weights and self.backend != "naive":
            raise ValueError("capture_weights needs backend='naive' (fused kernels never form the weights)")
        out, weights = _attend(q, k, v, mask, is_causal, self.scale, self.backend, self.capture_weights)
        if self.capture_weights:
            self.last_weights = weights.detach()
        if self.head_mask is not None:
            if self.head_mask.shape != (self.n_heads,):
                raise ValueError(f"head_mask must have shape (h,) = ({self.n_heads},), got {tuple(self.head_mask.shape)}")
            out = out * self.head_mask.to(out)[None, :, None, None]
        return self.dropout(self.out_proj(out.transpose(1, 2).reshape(b, t_q, -1)))

    @staticmethod
    def _key_length(source: Tensor, cache: KVCache | None) -> int:
        """T_k of this call: the source's length, plus what the cache holds."""
        if cache is None:
            return source.shape[1]
        return cache.length if cache.static and cache.k is not None else cache.length + source.shape[1]

    def _check_inputs(self, x: Tensor, source: Tensor | None, cache: KVCache | None) -> None:
        """Shapes and dtypes only (no values read); one fast test on the decoding path, details only on failure.

        (Module attributes such as ``self.q_proj.weight`` cost a microsecond each to reach, so the
        test uses plain ints; a dtype that differs from the weights' is explained by ``_project_q``.)
        """
        d_model = self.d_model
        if not (isinstance(x, Tensor) and x.dim() == 3 and x.shape[2] == d_model and x.is_floating_point()
                and x.shape[0] > 0 and x.shape[1] > 0):
            require_ndim("x", x, 3, "(B, T, d_model)")
            require_float("x", x)
            require_same_size("x", x.shape[-1], "the layer", d_model, "d_model")
            require_nonempty("x", x, "(B, T, d_model)")
        if source is not None:
            self._check_source(x, source, self.k_proj.weight)
        if cache is not None and not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a KVCache, got {type(cache).__name__}")

    def _project_q(self, x: Tensor) -> Tensor:
        """W_Q x; a dtype other than the weights' gets an error that says so (checked only when it fails)."""
        try:
            return self.q_proj(x)
        except RuntimeError:
            weight = self.q_proj.weight
            if x.dtype != weight.dtype:
                raise TypeError(f"x has dtype {x.dtype} but the layer's weights have {weight.dtype}: "
                                f"convert one of them (x.to({weight.dtype}) or layer.to({x.dtype}))") from None
            raise

    def _check_source(self, x: Tensor, source: Tensor, weight: Tensor) -> None:
        require_ndim("source", source, 3, "(B, T_k, d_model)")
        require_float("source", source)
        if source.dtype != weight.dtype and not torch.is_autocast_enabled(source.device.type):
            raise TypeError(f"source has dtype {source.dtype} but the layer's weights have {weight.dtype}")
        require_same_size("source", source.shape[-1], "the layer", self.d_model, "d_model")
        require_same_size("source", source.shape[0], "x", x.shape[0], "B")
        require_nonempty("source", source, "(B, T_k, d_model)")

    def _keys_values(self, source: Tensor, cache: KVCache | None) -> tuple[Tensor, Tensor]:
        """Project the source to keys and values (B, h_kv, T_k, d_head), using and filling the cache."""
        if cache is not None and cache.static and cache.k is not None:
            return cache.k, cache.v  # cross-attention: the encoder output does not change while decoding
        b, t_k, _ = source.shape
        k = self.k_proj(source).view(b, t_k, self.n_kv_heads, self.d_head).transpose(1, 2)
        v = self.v_proj(source).view(b, t_k, self.n_kv_heads, self.d_head).transpose(1, 2)
        if self.rope_base is not None and not (cache is not None and cache.static):
            start = 0 if cache is None else cache.length
            k = rope(k, torch.arange(start, start + t_k, device=source.device), self.rope_base, self.rope_layout,
                     self.rope_scaling)
        return cache.append(k, v) if cache is not None else (k, v)
