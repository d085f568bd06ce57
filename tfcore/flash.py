"""FlashAttention in plain PyTorch: exact attention without the T x T score matrix (lesson 08).

Naive attention writes the whole score matrix ``S = Q K^T * scale`` of shape
``(B, h, T_q, T_k)`` to memory, reads it back for the softmax, and again for ``P V``.
FlashAttention (Dao et al. 2022; FlashAttention-2, Dao 2023) never stores it. The
queries are cut into row tiles ``Q_i`` of ``Br`` rows and the keys and values into
column tiles ``K_j, V_j`` of ``Bc`` rows. For one query tile it walks the key tiles
and keeps, per query row, three running quantities (the *online softmax*):

    m   running maximum of the scores seen so far              (Br,)
    l   running sum of exp(S - m)                              (Br,)
    O   running, not yet normalised output  sum_j exp(S - m) V  (Br, d_head)

When a new tile raises the maximum from ``m_old`` to ``m_new`` every earlier term
was computed against the wrong maximum; multiplying ``l`` and ``O`` by the rescale
factor ``exp(m_old - m_new)`` fixes that exactly. After the last tile ``O / l`` is
the softmax-weighted average, identical to naive attention, and
``L = m + log(l)`` (the logsumexp of each score row) is all the backward pass
needs to rebuild any tile of ``P = exp(S - L)`` on the fly.

Extra memory is O(T d) plus one ``Br x Bc`` tile per (batch, head) instead of
O(T^2). On a CPU the tiles also stay in cache, which is why this Python loop is
faster than naive attention for long sequences.

Shapes (as everywhere in tfcore):

    q        (B, h, T_q, d_head)
    k, v     (B, h_kv, T_k, d_head)     h a multiple of h_kv (GQA / MQA)
    output   (B, h, T_q, d_head)
    lse (L)  (B, h, T_q)                float32 (float64 for float64 inputs)

Masks: ``key_padding_mask`` is bool ``(B, T_k)``, True where the key is a real
token. ``is_causal`` aligns the mask to the last key: query ``i`` sees key ``j``
iff ``j <= i + T_k - T_q`` (the KV-cache convention). A query row that sees no key
gets a zero output and ``L = -inf``, never NaN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tfcore._checks import (
    require_float,
    require_ndim,
    require_positive_int,
    require_same_device_dtype,
    require_same_size,
    require_tensor,
)

__all__ = ["flash_attention", "flash_attention_steps", "naive_attention"]

NEG_INF = float("-inf")
# The kernels below work in base 2: with S measured in units of log2(e) (the queries are multiplied
# by scale * LOG2E), exp(s - m) = 2^(S - m), and PyTorch's exp2 runs several times faster than exp
# on a CPU (1 core, a 128 x 128 tile of 8 heads: 18 vs 85 microseconds). The Triton kernel does
# the same. The logsumexp L is handed out in natural units: L = ln 2 * (m + log2 l).
LOG2E = 1.4426950408889634  # log2(e)
LN2 = 0.6931471805599453  # ln(2) = 1 / log2(e)

# Measured on a 2-core CPU, fp32, (1, 8, 2048, 64) causal: 128 x 128 tiles are
# the sweet spot (smaller ones pay Python overhead per tile, larger ones fall
# out of the cache). On a GPU larger tiles amortise kernel launches better.
DEFAULT_BLOCK_Q = 128
DEFAULT_BLOCK_K = 128


# --------------------------------------------------------------------------- #
# Checks
# --------------------------------------------------------------------------- #


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> None:
    """Raise errors that name the argument and the axis for bad q, k, v or mask."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        require_ndim(name, x, 4, "(B, h, T, d_head)")
        require_float(name, x)
    require_same_device_dtype(("q", "k", "v"), (q, k, v))
    B, h, T_q, d = q.shape
    require_same_size("k", k.shape[0], "q", B, "B")
    require_same_size("v", v.shape[0], "q", B, "B")
    require_same_size("k", k.shape[3], "q", d, "d_head")
    require_same_size("v", v.shape[3], "q", d, "d_head")
    require_same_size("v", v.shape[1], "k", k.shape[1], "h_kv")
    require_same_size("v", v.shape[2], "k", k.shape[2], "T_k")
    h_kv, T_k = k.shape[1], k.shape[2]
    for name, size, axis in (("q", T_q, "T_q"), ("k", T_k, "T_k"), ("q", d, "d_head"), ("q", h, "h"), ("k", h_kv, "h_kv")):
        if size == 0:
            raise ValueError(f"{name} has {axis}=0; attention needs at least one element on that axis")
    if h % h_kv != 0:
        raise ValueError(f"h={h} query heads is not a multiple of h_kv={h_kv} key/value heads")
    if key_padding_mask is not None:
        require_tensor("key_padding_mask", key_padding_mask)
        if key_padding_mask.dtype != torch.bool:
            raise TypeError(f"key_padding_mask must be bool (True = real token), got dtype {key_padding_mask.dtype}")
        if tuple(key_padding_mask.shape) != (B, T_k):
            raise ValueError(
                f"key_padding_mask must have shape (B, T_k) = {(B, T_k)}, got {tuple(key_padding_mask.shape)}"
            )
        if key_padding_mask.device != q.device:
            raise ValueError(f"key_padding_mask is on {key_padding_mask.device} but q is on {q.device}")


def _resolve_scale(scale: float | None, d_head: int) -> float:
    """``scale`` or the default 1 / sqrt(d_head); must be a finite positive number."""
    if scale is None:
        return 1.0 / math.sqrt(d_head)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
        raise ValueError(f"scale must be a positive number or None, got {scale!r}")
    return float(scale)


def _accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp16/bf16/fp32 accumulate in fp32; float64 stays float64 (for gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------- #
# Reference: naive attention that materialises the scores
# --------------------------------------------------------------------------- #


def naive_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    is_causal: bool = False,
    key_padding_mask: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """``softmax(q k^T * scale + mask) v`` computed the obvious way, scores and all.

    q: (B, h, T_q, d_head); k, v: (B, h_kv, T_k, d_head); key_padding_mask: bool
    (B, T_k), True = real token. Same masking conventions as ``flash_attention``.
    Materialises the (B, h, T_q, T_k) scores: the memory flash attention avoids.
    Works in any floating dtype (use float64 for references). Returns (B, h, T_q, d_head).
    """
    _check_inputs(q, k, v, key_padding_mask)
    B, h, T_q, d = q.shape
    h_kv, T_k = k.shape[1], k.shape[2]
    scale = _resolve_scale(scale, d)
    # GQA: every group of h / h_kv query heads reads the same K/V head
    if h != h_kv:
        k = k.repeat_interleave(h // h_kv, dim=1)
        v = v.repeat_interleave(h // h_kv, dim=1)
    # S = Q K^T * scale, (B, h, T_q, T_k)
    s = (q @ k.transpose(-2, -1)) * scale
    # hide what the masks forbid
    may_be_empty = key_padding_mask is not None or (is_causal and T_q > T_k)
    if is_causal:
        s = s.masked_fill(~_causal_tile_mask(0, T_q, 0, T_k, T_k - T_q, q.device), NEG_INF)
    if key_padding_mask is not None:
        s = s.masked_fill(~key_padding_mask[:, None, None, :], NEG_INF)
    # P = softmax(S); a row with no visible key is all NaN here -> zeros
    p = torch.softmax(s, dim=-1)
    if may_be_empty:
        p = p.nan_to_num(0.0)
    # O = P V
    return p @ v


# --------------------------------------------------------------------------- #
# Tiles and masks
# --------------------------------------------------------------------------- #


def _causal_tile_mask(r0: int, r1: int, c0: int, c1: int, offset: int, device: torch.device) -> Tensor:
    """Bool (r1 - r0, c1 - c0): True where query row i may see key column j (j <= i + offset)."""
    rows = torch.arange(r0, r1, device=device).unsqueeze(1)
    cols = torch.arange(c0, c1, device=device).unsqueeze(0)
    return cols <= rows + offset


def _visible_key_end(r1: int, T_k: int, offset: int, is_causal: bool) -> int:
    """One past the last key that any row of the query tile [r0, r1) may see."""
    if not is_causal:
        return T_k
    return max(0, min(T_k, r1 + offset))


def _mask_tile(
    S: Tensor,
    r0: int,
    r1: int,
    c0: int,
    c1: int,
    offset: int,
    is_causal: bool,
    real: Tensor | None,
    B: int,
) -> None:
    """Set to -inf, in place, the entries of the score tile S the masks hide.

    S: (B * h_kv, n_rep * Br, Bc), rows ordered (query head in group, query position).
    real: bool (B, Bc), the padding mask of this key tile, or None if every key is real.
    """
    G, R, Bc = S.shape
    Br = r1 - r0
    # causal: only tiles that cross the diagonal need a mask
    if is_causal and c1 - 1 > r0 + offset:
        allowed = _causal_tile_mask(r0, r1, c0, c1, offset, S.device)
        S.view(G, R // Br, Br, Bc).masked_fill_(~allowed, NEG_INF)
    # padding: hide the keys that are not real tokens, per batch element
    if real is not None:
        S.view(B, G // B, R, Bc).masked_fill_(~real[:, None, None, :], NEG_INF)


def _padded_key_tiles(kpm: Tensor | None, T_k: int, block_k: int) -> list[Tensor | None]:
    """For each key tile, its slice of the padding mask (B, Bc), or None if it holds no padding.

    Decided once, so the tile loop needs no device-to-host check per tile.
    """
    starts = range(0, T_k, block_k)
    if kpm is None:
        return [None for _ in starts]
    has_pad = (~kpm).any(dim=0).tolist()
    return [kpm[:, c0 : c0 + block_k] if any(has_pad[c0 : c0 + block_k]) else None for c0 in starts]


def _group_heads(q: Tensor, k: Tensor, v: Tensor, acc: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Group query heads by the K/V head they share, without repeating K/V.

    q (B, h, T_q, d) -> (B * h_kv, n_rep, T_q, d); k, v (B, h_kv, T_k, d) -> (B * h_kv, T_k, d),
    all in the accumulation dtype. Query head i uses K/V head i // n_rep, n_rep = h // h_kv.
    """
    B, h, T_q, d = q.shape
    h_kv, T_k = k.shape[1], k.shape[2]
    qg = q.reshape(B * h_kv, h // h_kv, T_q, d).to(acc)
    kg = k.reshape(B * h_kv, T_k, d).to(acc)
    vg = v.reshape(B * h_kv, T_k, d).to(acc)
    return qg, kg, vg


def _query_tile(xg: Tensor, r0: int, r1: int) -> Tensor:
    """Rows [r0, r1) of every head of a group: (G, n_rep, T, ...) -> (G, n_rep * Br, ...)."""
    G, n_rep = xg.shape[:2]
    return xg[:, :, r0:r1].reshape(G, n_rep * (r1 - r0), *xg.shape[3:])


def _put_query_tile(dst: Tensor, src: Tensor, r0: int, r1: int) -> None:
    """Inverse of ``_query_tile``: write (G, n_rep * Br, ...) into rows [r0, r1) of (G, n_rep, T, ...)."""
    G, n_rep = dst.shape[:2]
    dst[:, :, r0:r1] = src.reshape(G, n_rep, r1 - r0, *dst.shape[3:])


# --------------------------------------------------------------------------- #
# Forward: online softmax over key tiles
# --------------------------------------------------------------------------- #


def _flash_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    is_causal: bool,
    kpm: Tensor | None,
    scale: float,
    block_q: int,
    block_k: int,
) -> tuple[Tensor, Tensor]:
    """Tiled forward. Returns O (B, h, T_q, d) in q's dtype and L = logsumexp (B, h, T_q).

    All batch elements and heads go through each tile at once (batched matmuls),
    so the Python loop runs only ceil(T_q / Br) * ceil(T_k / Bc) times.
    """
    B, h, T_q, d = q.shape
    T_k = k.shape[2]
    acc = _accumulator_dtype(q.dtype)
    qg, kg, vg = _group_heads(q, k, v, acc)
    G, n_rep = qg.shape[:2]
    offset = T_k - T_q
    O_all = torch.zeros(G, n_rep, T_q, d, dtype=acc, device=q.device)
    L_all = torch.full((G, n_rep, T_q), NEG_INF, dtype=acc, device=q.device)
    pad = _padded_key_tiles(kpm, T_k, block_k)
    # can some row have no visible key (yet)? Without padding, causal rows see key 0 when i + offset >= 0
    may_be_empty = kpm is not None or (is_causal and offset < 0)
    for r0 in range(0, T_q, block_q):
        r1 = min(r0 + block_q, T_q)
        key_end = _visible_key_end(r1, T_k, offset, is_causal)
        if key_end == 0:
            continue  # causal with T_q > T_k: these rows see no key; O = 0, L = -inf
        # Q_i, pre-multiplied by the scale (and log2 e, see LOG2E) so that S = Q_i K_j^T directly
        Q_i = _query_tile(qg, r0, r1) * (scale * LOG2E)
        m = l = O = None
        # walk only the key tiles this query tile can see (causal skipping)
        for c0 in range(0, key_end, block_k):
            c1 = min(c0 + block_k, T_k)
            V_j = vg[:, c0:c1]
            # S = Q_i K_j^T, (G, n_rep * Br, Bc)
            S = torch.bmm(Q_i, kg[:, c0:c1].transpose(1, 2))
            _mask_tile(S, r0, r1, c0, c1, offset, is_causal, pad[c0 // block_k], B)
            # m_new = max(m_old, rowmax(S))
            m_new = S.amax(dim=-1) if m is None else torch.maximum(m, S.amax(dim=-1))
            # a row with nothing visible yet has m_new = -inf: subtract 0 there (2^-inf = 0, not NaN)
            m_sub = m_new.masked_fill(m_new == NEG_INF, 0.0) if may_be_empty else m_new
            # P = 2^(S - m_new) (= exp of the scores minus their max), in place in S's storage
            P = S.sub_(m_sub.unsqueeze(-1)).exp2_()
            if m is None:
                # first tile: nothing to rescale yet; l = rowsum(P), O = P V_j
                l, O = P.sum(dim=-1), torch.bmm(P, V_j)
            else:
                # rescale factor 2^(m_old - m_new) for what was accumulated before
                alpha = (m - m_sub).exp2_()
                # l = alpha * l + rowsum(P);  O = alpha * O + P V_j
                l.mul_(alpha).add_(P.sum(dim=-1))
                O.mul_(alpha.unsqueeze(-1)).baddbmm_(P, V_j)
            m = m_new
        # normalise: O / l (rows with l = 0 saw nothing and stay 0); L = m + log(l), in natural units
        _put_query_tile(O_all, O / l.clamp_min(torch.finfo(acc).tiny).unsqueeze(-1), r0, r1)
        _put_query_tile(L_all, (m + l.log2()) * LN2, r0, r1)
    return O_all.reshape(B, h, T_q, d).to(q.dtype), L_all.reshape(B, h, T_q)


# --------------------------------------------------------------------------- #
# Backward: rebuild P tile by tile from L
# --------------------------------------------------------------------------- #


def _flash_backward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    O: Tensor,
    L: Tensor,
    dO: Tensor,
    dL: Tensor | None,
    is_causal: bool,
    kpm: Tensor | None,
    scale: float,
    block_q: int,
    block_k: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients dq, dk, dv (shapes and dtypes of q, k, v) from the saved O and L.

    For each tile: P = exp(S - L), dV_j += P^T dO_i, dP = dO_i V_j^T,
    dS = P * (dP - D_i) with D = rowsum(dO * O), dQ_i += dS K_j * scale,
    dK_j += dS^T Q_i * scale. A gradient dL flowing into the logsumexp adds
    P * dL to dS (dL/dS = P), so it enters as D - dL.
    """
    B, h, T_q, d = q.shape
    h_kv, T_k = k.shape[1], k.shape[2]
    acc = _accumulator_dtype(q.dtype)
    qg, kg, vg = _group_heads(q, k, v, acc)
    G, n_rep = qg.shape[:2]
    offset = T_k - T_q
    dOg = dO.reshape(G, n_rep, T_q, d).to(acc)
    # D = rowsum(dO * O), (G, n_rep, T_q); minus dL if the caller used the logsumexp
    D = (dOg * O.reshape(G, n_rep, T_q, d).to(acc)).sum(dim=-1)
    if dL is not None:
        D = D - dL.reshape(G, n_rep, T_q).to(acc)
    # rows that saw no key have L = -inf; +inf there makes P = 2^(-inf - inf) = 0. In base 2 (see LOG2E)
    Lg = L.reshape(G, n_rep, T_q).to(acc)
    Lg = Lg.masked_fill(Lg == NEG_INF, float("inf")) * LOG2E
    dq = torch.zeros_like(qg)
    dk = torch.zeros_like(kg)
    dv = torch.zeros_like(vg)
    pad = _padded_key_tiles(kpm, T_k, block_k)
    for r0 in range(0, T_q, block_q):
        r1 = min(r0 + block_q, T_q)
        key_end = _visible_key_end(r1, T_k, offset, is_causal)
        if key_end == 0:
            continue
        # Q_i pre-multiplied by the scale: dK_j = sum dS^T Q_i needs no further scaling; S = Q2_i K_j^T
        # with Q2_i = Q_i * log2 e is in base 2, so P = 2^(S - L) with L in base 2 as well
        Q_i = _query_tile(qg, r0, r1) * scale
        Q2_i = Q_i * LOG2E
        dO_i = _query_tile(dOg, r0, r1)
        L_i = _query_tile(Lg, r0, r1).unsqueeze(-1)
        D_i = _query_tile(D, r0, r1).unsqueeze(-1)
        dQ_i = torch.zeros_like(Q_i)
        for c0 in range(0, key_end, block_k):
            c1 = min(c0 + block_k, T_k)
            K_j, V_j = kg[:, c0:c1], vg[:, c0:c1]
            # recompute S = Q2_i K_j^T and P = 2^(S - L) = exp(scores - L), (G, n_rep * Br, Bc)
            S = torch.bmm(Q2_i, K_j.transpose(1, 2))
            _mask_tile(S, r0, r1, c0, c1, offset, is_causal, pad[c0 // block_k], B)
            P = S.sub_(L_i).exp2_()
            # dV_j += P^T dO_i
            dv[:, c0:c1].baddbmm_(P.transpose(1, 2), dO_i)
            # dP = dO_i V_j^T, then dS = P * (dP - D_i), in place
            dS = torch.bmm(dO_i, V_j.transpose(1, 2)).sub_(D_i).mul_(P)
            # dQ_i += dS K_j (times the scale, applied once at the end);  dK_j += dS^T (Q_i * scale)
            dQ_i.baddbmm_(dS, K_j)
            dk[:, c0:c1].baddbmm_(dS.transpose(1, 2), Q_i)
        _put_query_tile(dq, dQ_i, r0, r1)
    dq = dq.mul_(scale).reshape(B, h, T_q, d).to(q.dtype)
    dk = dk.reshape(B, h_kv, T_k, d).to(k.dtype)
    dv = dv.reshape(B, h_kv, T_k, d).to(v.dtype)
    return dq, dk, dv


class _FlashAttention(torch.autograd.Function):
    """Autograd wrapper: saves q, k, v, O and L; the backward recomputes P per tile."""

    @staticmethod
    def forward(ctx, q, k, v, is_causal, kpm, scale, block_q, block_k):  # type: ignore[override]
        O, L = _flash_forward(q, k, v, is_causal, kpm, scale, block_q, block_k)
        ctx.save_for_backward(q, k, v, O, L)
        ctx.kpm = kpm
        ctx.args = (is_causal, scale, block_q, block_k)
        # let unused outputs arrive as None in backward (dL is usually unused)
        ctx.set_materialize_grads(False)
        return O, L

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dO, dL):  # type: ignore[override]
        q, k, v, O, L = ctx.saved_tensors
        is_causal, scale, block_q, block_k = ctx.args
        if dO is None:
            dO = torch.zeros_like(O)
        dq, dk, dv = _flash_backward(q, k, v, O, L, dO, dL, is_causal, ctx.kpm, scale, block_q, block_k)
        return dq, dk, dv, None, None, None, None, None


def flash_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    is_causal: bool = False,
    key_padding_mask: Tensor | None = None,
    scale: float | None = None,
    block_q: int = DEFAULT_BLOCK_Q,
    block_k: int = DEFAULT_BLOCK_K,
    return_lse: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Exact attention with tiles and the online softmax; never stores a T x T matrix.

    q: (B, h, T_q, d_head); k, v: (B, h_kv, T_k, d_head) with h a multiple of h_kv
    (query head i reads K/V head i // (h / h_kv)). is_causal: query i sees key j
    iff j <= i + T_k - T_q. key_padding_mask: bool (B, T_k), True = real token.
    scale: defaults to 1 / sqrt(d_head). block_q, block_k: tile sizes Br and Bc.

    Returns O (B, h, T_q, d_head) in q's dtype, and with ``return_lse`` also the
    logsumexp L (B, h, T_q) of each score row (float32; float64 for float64 inputs).
    fp16/bf16 inputs are accumulated in fp32. Differentiable in q, k, v (and
    through L); the backward pass recomputes P tile by tile from L.
    """
    _check_inputs(q, k, v, key_padding_mask)
    scale = _resolve_scale(scale, q.shape[-1])
    block_q = require_positive_int("block_q", block_q)
    block_k = require_positive_int("block_k", block_k)
    O, L = _FlashAttention.apply(q, k, v, bool(is_causal), key_padding_mask, scale, block_q, block_k)
    return (O, L) if return_lse else O


# --------------------------------------------------------------------------- #
# Step-through helper for the lesson
# --------------------------------------------------------------------------- #


def flash_attention_steps(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    block_k: int = 4,
    is_causal: bool = False,
    scale: float | None = None,
) -> list[dict[str, object]]:
    """Run the online softmax for ONE head and record the state after every key tile.

    q: (T_q, d_head); k, v: (T_k, d_head). The whole query block is one tile Q_i, so
    each step is one key tile K_j, V_j of ``block_k`` rows. Returns one dict per key tile:

        j        tile index;  keys: (c0, c1), the key rows of the tile
        S        (T_q, Bc) masked scores of the tile
        P        (T_q, Bc) exp(S - m), this tile's unnormalised weights
        m        (T_q,) running max after the tile
        l        (T_q,) running sum after the tile
        rescale  (T_q,) exp(m_old - m_new), applied to the earlier l and O
        O_acc    (T_q, d_head) unnormalised accumulator sum exp(S - m) V
        O        (T_q, d_head) O_acc / l, the output if we stopped here

    The last step's ``O`` equals naive softmax attention. Tensors are detached copies.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        require_ndim(name, x, 2, "(T, d_head)")
        require_float(name, x)
    require_same_device_dtype(("q", "k", "v"), (q, k, v))
    require_same_size("k", k.shape[1], "q", q.shape[1], "d_head")
    require_same_size("v", v.shape[1], "q", q.shape[1], "d_head")
    require_same_size("v", v.shape[0], "k", k.shape[0], "T_k")
    for name, size, axis in (("q", q.shape[0], "T_q"), ("k", k.shape[0], "T_k"), ("q", q.shape[1], "d_head")):
        if size == 0:
            raise ValueError(f"{name} has {axis}=0; attention needs at least one element on that axis")
    block_k = require_positive_int("block_k", block_k)
    scale = _resolve_scale(scale, q.shape[1])
    q, k, v = q.detach(), k.detach(), v.detach()
    T_q, T_k = q.shape[0], k.shape[0]
    offset = T_k - T_q
    m = torch.full((T_q,), NEG_INF, dtype=q.dtype, device=q.device)
    l = torch.zeros(T_q, dtype=q.dtype, device=q.device)
    O_acc = torch.zeros_like(q)
    steps: list[dict[str, object]] = []
    for j, c0 in enumerate(range(0, T_k, block_k)):
        c1 = min(c0 + block_k, T_k)
        # S = Q K_j^T * scale, hidden entries -inf
        S = (q @ k[c0:c1].T) * scale
        if is_causal:
            S = S.masked_fill(~_causal_tile_mask(0, T_q, c0, c1, offset, q.device), NEG_INF)
        # m_new = max(m_old, rowmax(S))
        m_new = torch.maximum(m, S.amax(dim=-1))
        m_safe = torch.where(m_new == NEG_INF, torch.zeros_like(m_new), m_new)
        # rescale factor for what was accumulated against the old max
        rescale = torch.exp(m - m_safe)
        # P = exp(S - m_new); l and O_acc rescaled, then the tile added
        P = torch.exp(S - m_safe.unsqueeze(-1))
        l = rescale * l + P.sum(dim=-1)
        O_acc = rescale.unsqueeze(-1) * O_acc + P @ v[c0:c1]
        m = m_new
        O = O_acc / torch.where(l > 0, l, torch.ones_like(l)).unsqueeze(-1)
        steps.append(
            {"j": j, "keys": (c0, c1), "S": S, "P": P, "m": m.clone(), "l": l.clone(), "rescale": rescale,
             "O_acc": O_acc.clone(), "O": O}
        )
    return steps
