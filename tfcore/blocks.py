"""Transformer blocks (lessons 05 and 06): attention and MLP on a residual stream.

    Pre-LN:    x = x + Attn(LN(x));        x = x + MLP(LN(x))
    Post-LN:   x = LN(x + Attn(x));        x = LN(x + MLP(x))        (the 2017 original)
    Parallel:  x = x + Attn(LN(x)) + MLP(LN(x))                       (GPT-J, PaLM)

A decoder block of an encoder-decoder model adds cross-attention between the two:
queries from the decoder stream, keys and values from the encoder output.
"""

from __future__ import annotations

from torch import Tensor, nn

from tfcore.heads import KVCache, MultiHeadAttention
from tfcore.mlp import MLP_KINDS, make_mlp
from tfcore.norms import make_norm

PLACEMENTS = ("pre", "post", "parallel")


class Block(nn.Module):
    """One transformer block. x: (B, T, d_model) -> (B, T, d_model).

    norm: "layer" | "rms"; placement: "pre" | "post" | "parallel"; mlp: "gelu" | "gelu_tanh" |
    "relu" | "swiglu" | "geglu" | "geglu_tanh". With ``cross_attention=True`` it is a decoder block of an
    encoder-decoder model and ``forward`` needs ``source`` (B, T_src, d_model).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        n_kv_heads: int | None = None,
        norm: str = "layer",
        placement: str = "pre",
        mlp: str = "gelu",
        bias: bool = True,
        dropout: float = 0.0,
        rope_base: float | None = None,
        rope_layout: str = "interleaved",
        cross_attention: bool = False,
        scale: float | None = None,
        *,
        d_head: int | None = None,
        norm_eps: float | None = None,
        rope_scaling: dict | None = None,
        qkv_bias: bool | None = None,
        out_bias: bool | None = None,
        mlp_bias: bool | None = None,
        norm_bias: bool | None = None,
    ) -> None:
        """``bias`` is the default of each part's own choice: qkv_bias (W_Q, W_K, W_V), out_bias (W_O),
        mlp_bias, norm_bias (LayerNorm's shift). d_head None: d_model / n_heads; norm_eps None: the norm's default."""
        super().__init__()
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        if mlp not in MLP_KINDS:
            raise ValueError(f"mlp must be one of {MLP_KINDS}, got {mlp!r}")
        if placement == "parallel" and cross_attention:
            raise ValueError("placement='parallel' has no place for cross-attention: use 'pre' or 'post'")
        qkv_bias, out_bias, mlp_bias, norm_bias = (bias if b is None else b for b in (qkv_bias, out_bias, mlp_bias, norm_bias))
        self.placement = placement
        attention = dict(n_kv_heads=n_kv_heads, bias=qkv_bias, dropout=dropout, rope_layout=rope_layout, scale=scale,
                         d_head=d_head, out_bias=out_bias)
        self.attn = MultiHeadAttention(d_model, n_heads, rope_base=rope_base, rope_scaling=rope_scaling, **attention)
        self.norm_attn = make_norm(norm, d_model, norm_bias, norm_eps)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, **attention) if cross_attention else None
        self.norm_cross = make_norm(norm, d_model, norm_bias, norm_eps) if cross_attention else None
        self.mlp = make_mlp(mlp, d_model, d_ff, mlp_bias, dropout)
        self.norm_mlp = make_norm(norm, d_model, norm_bias, norm_eps) if placement != "parallel" else None

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        is_causal: bool = False,
        source: Tensor | None = None,
        source_mask: Tensor | None = None,
        cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
    ) -> Tensor:
        """x: (B, T, d_model). mask, is_causal: for self-attention, mask (T, T_k) or 4 axes
        broadcasting to (B, h, T, T_k) (the rule: ``tfcore.masks``). source: encoder output
        (B, T_src, d_model); source_mask: (B, 1, 1, T_src). A block without cross-attention
        refuses source and source_mask rather than ignore them."""
        if self.cross_attn is not None and source is None:
            raise ValueError("this decoder block has cross-attention: pass source=encoder output (B, T_src, d_model)")
        if self.cross_attn is None and (source is not None or source_mask is not None):
            given = [n for n, v in (("source", source), ("source_mask", source_mask)) if v is not None]
            raise ValueError(f"{', '.join(given)} given to a block without cross-attention, which would ignore it: "
                             "build it with cross_attention=True (decoder_block)")

        def self_attention(h: Tensor) -> Tensor:
            return self.attn(h, mask=mask, is_causal=is_causal, cache=cache)

        def cross_attention(h: Tensor) -> Tensor:
            return self.cross_attn(h, source=source, mask=source_mask, cache=cross_cache)

        if self.placement == "parallel":
            h = self.norm_attn(x)
            return x + self_attention(h) + self.mlp(h)
        if self.placement == "pre":
            x = x + self_attention(self.norm_attn(x))
            if self.cross_attn is not None:
                x = x + cross_attention(self.norm_cross(x))
            return x + self.mlp(self.norm_mlp(x))
        x = self.norm_attn(x + self_attention(x))
        if self.cross_attn is not None:
            x = self.norm_cross(x + cross_attention(x))
        return self.norm_mlp(x + self.mlp(x))


def encoder_block(d_model: int, n_heads: int, d_ff: int, **options) -> Block:
    """A block whose self-attention sees every position (call it without ``is_causal``)."""
    return Block(d_model, n_heads, d_ff, **options)


def decoder_block(d_model: int, n_heads: int, d_ff: int, **options) -> Block:
    """A block with causal self-attention (call it with ``is_causal=True``) and cross-attention."""
    return Block(d_model, n_heads, d_ff, cross_attention=True, **options)
