"""FlashAttention-2 as Triton GPU kernels (optional extra; lesson 08 goes deeper).

The same algorithm as ``tfcore.flash``, written for a GPU. One *program* (a block
of threads) owns one query tile Q_i of BLOCK_M rows for one (batch, head); it walks
the key tiles K_j, V_j of BLOCK_N rows with the online softmax, keeping m, l and
the accumulator O in fp32 registers, and writes O / l and the logsumexp L once.
Scores live in registers only: no T x T matrix ever reaches GPU memory.

Kernels (plain pointer arithmetic with masks, no block pointers):

    _attn_fwd            grid (ceil(T_q / BLOCK_M), B * h)      O, L
    _attn_bwd_delta      grid (ceil(T_q / BLOCK_M), B * h)      D = rowsum(dO * O)
    _attn_bwd_dkdv       grid (ceil(T_k / BLOCK_N), B * h_kv)   dK_j, dV_j: loops over query
                                                                tiles and the h / h_kv query
                                                                heads of the group (no atomics)
    _attn_bwd_dq         grid (ceil(T_q / BLOCK_M), B * h)      dQ_i: loops over key tiles

Causal masking skips tiles: key tiles every row of the query tile may see run in
an unmasked loop, only the few tiles crossing the diagonal pay for the mask.
Exponentials use exp2 with the scale folded in: exp(x) = exp2(x * log2(e)).

Shapes: q (B, h, T_q, d_head); k, v (B, h_kv, T_k, d_head), h a multiple of h_kv;
output (B, h, T_q, d_head). d_head in {16, 32, 64, 128}. Causal is aligned to the
last key (query i sees key j iff j <= i + T_k - T_q), as in ``tfcore.flash``.

On a machine without a GPU the kernels run (slowly) in Triton's interpreter, which
must be switched on *before* this module is imported:

    import os; os.environ["TRITON_INTERPRET"] = "1"
    from tfcore.triton_flash import triton_attention

This module imports without triton installed; ``triton_attention`` then raises.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from tfcore.flash import _check_inputs, _resolve_scale

try:
    import triton
    import triton.language as tl
except ImportError:  # triton is an optional extra: pip install -e '.[gpu]'
    triton = None
    tl = None

__all__ = ["triton_attention", "HAS_TRITON", "INTERPRET"]

HAS_TRITON = triton is not None
LOG2E = 1.4426950408889634  # log2(e): exp(x) = exp2(x * LOG2E)
SUPPORTED_D_HEAD = (16, 32, 64, 128)

# Tile sizes used by Triton's interpreter (CPU): tl.dot needs every side >= 16.
INTERPRET_BLOCK_M = 16
INTERPRET_BLOCK_N = 16


if HAS_TRITON:

    # ----------------------------------------------------------------------- #
    # Forward
    # ----------------------------------------------------------------------- #

    @triton.jit
    def _fwd_inner(
        acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_vt,
        start, end, offs_m, offs_d, T_K, offset, qk_scale,
        MASK: tl.constexpr, IS_CAUSAL: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
    ):
        """Online softmax over key tiles [start, end); MASK: tiles on the diagonal or past T_k."""
        for start_n in range(start, end, BLOCK_N):
            start_n = tl.multiple_of(start_n, BLOCK_N)
            cols = start_n + tl.arange(0, BLOCK_N)
            # K_j^T (d, BLOCK_N) and V_j (BLOCK_N, d); keys past T_k load as 0
            if MASK:
                kT = tl.load(k_base + cols[None, :] * stride_kt + offs_d[:, None], mask=cols[None, :] < T_K, other=0.0)
                v = tl.load(v_base + cols[:, None] * stride_vt + offs_d[None, :], mask=cols[:, None] < T_K, other=0.0)
            else:
                kT = tl.load(k_base + cols[None, :] * stride_kt + offs_d[:, None])
                v = tl.load(v_base + cols[:, None] * stride_vt + offs_d[None, :])
            # S = Q_i K_j^T * scale, in log2 units (times log2 e)
            s = tl.dot(q, kT, input_precision=PRECISION) * qk_scale
            if MASK:
                visible = cols[None, :] < T_K
                if IS_CAUSAL:
                    visible = visible & (cols[None, :] <= offs_m[:, None] + offset)
                s = tl.where(visible, s, float("-inf"))
            # m_new = max(m_old, rowmax(S)); a row with nothing visible yet subtracts 0, not -inf
            m_new = tl.maximum(m_i, tl.max(s, 1))
            if MASK:
                m_sub = tl.where(m_new == float("-inf"), 0.0, m_new)
            else:
                m_sub = m_new
            # P = exp(S - m_new); rescale factor alpha = exp(m_old - m_new)
            p = tl.math.exp2(s - m_sub[:, None])
            alpha = tl.math.exp2(m_i - m_sub)
            # l = alpha * l + rowsum(P);  O = alpha * O + P V_j
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None]
            acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PRECISION)
            m_i = m_new
        return acc, l_i, m_i

    @triton.jit
    def _attn_fwd(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qt,
        stride_kb, stride_kh, stride_kt,
        stride_vb, stride_vh, stride_vt,
        stride_ob, stride_oh, stride_ot,
        H, N_REP, T_Q, T_K, qk_scale,
        HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ):
        """One program: query tile Q_i (BLOCK_M rows) of one (batch, head). Writes O_i and L_i."""
        pid_m = tl.program_id(0)
        if IS_CAUSAL:
            # the last query tiles see the most keys: launch them first for better load balance
            pid_m = tl.num_programs(0) - 1 - pid_m
        pid_bh = tl.program_id(1)
        # batch b, query head hq, and the K/V head it reads (GQA)
        b = (pid_bh // H).to(tl.int64)
        hq = (pid_bh % H).to(tl.int64)
        hk = hq // N_REP
        q_base = Q + b * stride_qb + hq * stride_qh
        k_base = K + b * stride_kb + hk * stride_kh
        v_base = V + b * stride_vb + hk * stride_vh
        o_base = O + b * stride_ob + hq * stride_oh
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = offs_m < T_Q
        # Q_i stays in registers for the whole loop
        q = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :], mask=row_ok[:, None], other=0.0)
        # running max m, running sum l, accumulator O (fp32)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        offset = T_K - T_Q
        # key tiles [0, full_end) are visible to every row: no mask; [full_end, end) need one
        full_end = (T_K // BLOCK_N) * BLOCK_N
        end = T_K
        if IS_CAUSAL:
            first_row_sees = tl.maximum(pid_m * BLOCK_M + offset + 1, 0)  # keys seen by the first row
            full_end = tl.minimum((first_row_sees // BLOCK_N) * BLOCK_N, full_end)
            end = tl.maximum(tl.minimum(pid_m * BLOCK_M + BLOCK_M + offset, T_K), full_end)
        acc, l_i, m_i = _fwd_inner(
            acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_vt, 0, full_end, offs_m, offs_d, T_K, offset,
            qk_scale, False, IS_CAUSAL, BLOCK_N, PRECISION,
        )
        acc, l_i, m_i = _fwd_inner(
            acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_vt, full_end, end, offs_m, offs_d, T_K, offset,
            qk_scale, True, IS_CAUSAL, BLOCK_N, PRECISION,
        )
        # O_i = O / l; L_i = m + log(l) in natural-log units; rows that saw no key: O = 0, L = -inf
        empty = l_i == 0.0
        l_safe = tl.where(empty, 1.0, l_i)
        out = acc / l_safe[:, None]
        lse = tl.where(empty, float("-inf"), (m_i + tl.math.log2(l_safe)) * 0.6931471805599453)  # times ln 2
        tl.store(o_base + offs_m[:, None] * stride_ot + offs_d[None, :], out.to(O.dtype.element_ty), mask=row_ok[:, None])
        tl.store(LSE + pid_bh.to(tl.int64) * T_Q + offs_m, lse, mask=row_ok)

    # ----------------------------------------------------------------------- #
    # Backward
    # ----------------------------------------------------------------------- #

    @triton.jit
    def _attn_bwd_delta(
        O, DO, DELTA, stride_ob, stride_oh, stride_ot, stride_dob, stride_doh, stride_dot,
        H, T_Q, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
    ):
        """D_i = rowsum(dO_i * O_i), fp32, one query tile of one (batch, head)."""
        pid_m = tl.program_id(0)
        pid_bh = tl.program_id(1)
        b = (pid_bh // H).to(tl.int64)
        hq = (pid_bh % H).to(tl.int64)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = offs_m < T_Q
        o = tl.load(O + b * stride_ob + hq * stride_oh + offs_m[:, None] * stride_ot + offs_d[None, :],
                    mask=row_ok[:, None], other=0.0)
        do = tl.load(DO + b * stride_dob + hq * stride_doh + offs_m[:, None] * stride_dot + offs_d[None, :],
                     mask=row_ok[:, None], other=0.0)
        delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
        tl.store(DELTA + pid_bh.to(tl.int64) * T_Q + offs_m, delta, mask=row_ok)

    @triton.jit
    def _dkdv_inner(
        dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qt, stride_dot,
        start, end, offs_n, offs_d, T_Q, offset, qk_scale,
        MASK: tl.constexpr, BLOCK_M: tl.constexpr, PRECISION: tl.constexpr,
    ):
        """Accumulate dK_j, dV_j over query tiles [start, end); MASK: tiles crossing the causal diagonal."""
        for start_m in range(start, end, BLOCK_M):
            start_m = tl.multiple_of(start_m, BLOCK_M)
            rows = start_m + tl.arange(0, BLOCK_M)
            row_ok = rows < T_Q
            # Q_i^T (d, BLOCK_M), dO_i (BLOCK_M, d), L_i and D_i; rows past T_q load as 0
            qT = tl.load(q_base + rows[None, :] * stride_qt + offs_d[:, None], mask=row_ok[None, :], other=0.0)
            do = tl.load(do_base + rows[:, None] * stride_dot + offs_d[None, :], mask=row_ok[:, None], other=0.0)
            lse = tl.load(lse_base + rows, mask=row_ok, other=0.0)
            delta = tl.load(delta_base + rows, mask=row_ok, other=0.0)
            # rows that saw no key have L = -inf: use +inf so P = 0 there
            lse2 = tl.where(lse == float("-inf"), float("inf"), lse * 1.4426950408889634)
            # P^T = exp(S^T - L), S^T = K_j Q_i^T * scale  (BLOCK_N, BLOCK_M)
            pT = tl.math.exp2(tl.dot(k, qT, input_precision=PRECISION) * qk_scale - lse2[None, :])
            if MASK:
                pT = tl.where(offs_n[:, None] <= rows[None, :] + offset, pT, 0.0)
            # dV_j += P^T dO_i
            dv = tl.dot(pT.to(do.dtype), do, dv, input_precision=PRECISION)
            # dP^T = V_j dO_i^T;  dS^T = P^T * (dP^T - D_i)
            dpT = tl.dot(v, tl.trans(do), input_precision=PRECISION)
            dsT = pT * (dpT - delta[None, :])
            # dK_j += dS^T Q_i  (times the scale, applied at the end)
            dk = tl.dot(dsT.to(qT.dtype), tl.trans(qT), dk, input_precision=PRECISION)
        return dk, dv

    @triton.jit
    def _attn_bwd_dkdv(
        Q, K, V, DO, LSE, DELTA, DK, DV,
        stride_qb, stride_qh, stride_qt,
        stride_kb, stride_kh, stride_kt,
        stride_vb, stride_vh, stride_vt,
        stride_dob, stride_doh, stride_dot,
        H, N_REP, T_Q, T_K, qk_scale, sm_scale,
        HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ):
        """One program: key tile K_j, V_j of one (batch, K/V head); sums over its N_REP query heads."""
        pid_n = tl.program_id(0)
        pid_bk = tl.program_id(1)
        H_KV = H // N_REP
        b = (pid_bk // H_KV).to(tl.int64)
        hk = (pid_bk % H_KV).to(tl.int64)
        start_n = pid_n * BLOCK_N
        offs_n = start_n + tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        col_ok = offs_n < T_K
        # K_j and V_j stay in registers; dK_j, dV_j accumulate in fp32
        k_base = K + b * stride_kb + hk * stride_kh
        v_base = V + b * stride_vb + hk * stride_vh
        k = tl.load(k_base + offs_n[:, None] * stride_kt + offs_d[None, :], mask=col_ok[:, None], other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :], mask=col_ok[:, None], other=0.0)
        dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
        offset = T_K - T_Q
        # query tiles: [lo, full_start) cross the diagonal (masked), [full_start, T_q) see all of K_j
        lo = 0
        full_start = 0
        if IS_CAUSAL:
            lo = (tl.maximum(start_n - offset, 0) // BLOCK_M) * BLOCK_M
            full_start = tl.cdiv(tl.maximum(start_n + BLOCK_N - 1 - offset, 0), BLOCK_M) * BLOCK_M
            full_start = tl.minimum(full_start, tl.cdiv(T_Q, BLOCK_M) * BLOCK_M)
            lo = tl.minimum(lo, full_start)
        for g in range(N_REP):
            hq = hk * N_REP + g
            q_base = Q + b * stride_qb + hq * stride_qh
            do_base = DO + b * stride_dob + hq * stride_doh
            row_base = (b * H + hq) * T_Q
            dk, dv = _dkdv_inner(
                dk, dv, k, v, q_base, do_base, LSE + row_base, DELTA + row_base, stride_qt, stride_dot,
                lo, full_start, offs_n, offs_d, T_Q, offset, qk_scale, True, BLOCK_M, PRECISION,
            )
            dk, dv = _dkdv_inner(
                dk, dv, k, v, q_base, do_base, LSE + row_base, DELTA + row_base, stride_qt, stride_dot,
                full_start, T_Q, offs_n, offs_d, T_Q, offset, qk_scale, False, BLOCK_M, PRECISION,
            )
        # dK = scale * sum dS^T Q; DK, DV are contiguous (B, h_kv, T_k, d)
        out_base = (b * H_KV + hk) * T_K * HEAD_DIM
        out_offs = offs_n[:, None] * HEAD_DIM + offs_d[None, :]
        tl.store(DK + out_base + out_offs, (dk * sm_scale).to(DK.dtype.element_ty), mask=col_ok[:, None])
        tl.store(DV + out_base + out_offs, dv.to(DV.dtype.element_ty), mask=col_ok[:, None])

    @triton.jit
    def _dq_inner(
        dq, q, do, lse2, delta, k_base, v_base, stride_kt, stride_vt,
        start, end, offs_m, offs_d, T_K, offset, qk_scale,
        MASK: tl.constexpr, IS_CAUSAL: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
    ):
        """Accumulate dQ_i over key tiles [start, end); MASK: tiles on the diagonal or past T_k."""
        for start_n in range(start, end, BLOCK_N):
            start_n = tl.multiple_of(start_n, BLOCK_N)
            cols = start_n + tl.arange(0, BLOCK_N)
            # K_j^T and V_j^T (d, BLOCK_N)
            if MASK:
                kT = tl.load(k_base + cols[None, :] * stride_kt + offs_d[:, None], mask=cols[None, :] < T_K, other=0.0)
                vT = tl.load(v_base + cols[None, :] * stride_vt + offs_d[:, None], mask=cols[None, :] < T_K, other=0.0)
            else:
                kT = tl.load(k_base + cols[None, :] * stride_kt + offs_d[:, None])
                vT = tl.load(v_base + cols[None, :] * stride_vt + offs_d[:, None])
            # P = exp(S - L), S = Q_i K_j^T * scale
            p = tl.math.exp2(tl.dot(q, kT, input_precision=PRECISION) * qk_scale - lse2[:, None])
            if MASK:
                visible = cols[None, :] < T_K
                if IS_CAUSAL:
                    visible = visible & (cols[None, :] <= offs_m[:, None] + offset)
                p = tl.where(visible, p, 0.0)
            # dP = dO_i V_j^T;  dS = P * (dP - D_i)
            dp = tl.dot(do, vT, input_precision=PRECISION)
            ds = p * (dp - delta[:, None])
            # dQ_i += dS K_j  (times the scale, applied at the end)
            dq = tl.dot(ds.to(kT.dtype), tl.trans(kT), dq, input_precision=PRECISION)
        return dq

    @triton.jit
    def _attn_bwd_dq(
        Q, K, V, DO, LSE, DELTA, DQ,
        stride_qb, stride_qh, stride_qt,
        stride_kb, stride_kh, stride_kt,
        stride_vb, stride_vh, stride_vt,
        stride_dob, stride_doh, stride_dot,
        H, N_REP, T_Q, T_K, qk_scale, sm_scale,
        HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ):
        """One program: dQ_i for query tile Q_i of one (batch, head)."""
        pid_m = tl.program_id(0)
        if IS_CAUSAL:
            pid_m = tl.num_programs(0) - 1 - pid_m  # heaviest query tiles first
        pid_bh = tl.program_id(1)
        b = (pid_bh // H).to(tl.int64)
        hq = (pid_bh % H).to(tl.int64)
        hk = hq // N_REP
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = offs_m < T_Q
        q = tl.load(Q + b * stride_qb + hq * stride_qh + offs_m[:, None] * stride_qt + offs_d[None, :],
                    mask=row_ok[:, None], other=0.0)
        do = tl.load(DO + b * stride_dob + hq * stride_doh + offs_m[:, None] * stride_dot + offs_d[None, :],
                     mask=row_ok[:, None], other=0.0)
        row_base = pid_bh.to(tl.int64) * T_Q
        lse = tl.load(LSE + row_base + offs_m, mask=row_ok, other=0.0)
        delta = tl.load(DELTA + row_base + offs_m, mask=row_ok, other=0.0)
        lse2 = tl.where(lse == float("-inf"), float("inf"), lse * 1.4426950408889634)
        dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        k_base = K + b * stride_kb + hk * stride_kh
        v_base = V + b * stride_vb + hk * stride_vh
        offset = T_K - T_Q
        # same tile ranges as the forward pass
        full_end = (T_K // BLOCK_N) * BLOCK_N
        end = T_K
        if IS_CAUSAL:
            first_row_sees = tl.maximum(pid_m * BLOCK_M + offset + 1, 0)
            full_end = tl.minimum((first_row_sees // BLOCK_N) * BLOCK_N, full_end)
            end = tl.maximum(tl.minimum(pid_m * BLOCK_M + BLOCK_M + offset, T_K), full_end)
        dq = _dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_kt, stride_vt, 0, full_end,
                       offs_m, offs_d, T_K, offset, qk_scale, False, IS_CAUSAL, BLOCK_N, PRECISION)
        dq = _dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_kt, stride_vt, full_end, end,
                       offs_m, offs_d, T_K, offset, qk_scale, True, IS_CAUSAL, BLOCK_N, PRECISION)
        # DQ is contiguous (B, h, T_q, d)
        dq_ptrs = DQ + pid_bh.to(tl.int64) * T_Q * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
        tl.store(dq_ptrs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=row_ok[:, None])

    # True when @triton.jit built interpreter functions (TRITON_INTERPRET=1 at import time)
    INTERPRET = type(_attn_fwd).__name__ == "InterpretedFunction"

    if INTERPRET:
        # the interpreter runs one fixed, small configuration; no autotuning
        _fwd_kernel = _attn_fwd
        _dkdv_kernel = _attn_bwd_dkdv
        _dq_kernel = _attn_bwd_dq
    else:
        # GPU: autotune a few FlashAttention-2 style configurations per shape.
        # (BLOCK_M, BLOCK_N, num_warps, num_stages); compiled for sm_90 with ptxas -v, these
        # mostly fit in registers at d_head = 64 and 128 (configs that spill simply lose the tuning).
        def _configs(choices: list[tuple[int, int, int, int]]) -> list:
            return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in choices]

        _KEY = ["T_Q", "T_K", "HEAD_DIM", "IS_CAUSAL", "N_REP"]
        _fwd_kernel = triton.autotune(
            _configs([(128, 64, 4, 3), (128, 64, 4, 4), (128, 128, 8, 2), (128, 128, 8, 3), (128, 64, 8, 3), (64, 64, 4, 3)]),
            key=_KEY,
        )(_attn_fwd)
        _dkdv_kernel = triton.autotune(
            _configs([(64, 128, 8, 2), (32, 128, 4, 2), (64, 64, 4, 2), (32, 64, 4, 3), (64, 128, 8, 3)]), key=_KEY
        )(_attn_bwd_dkdv)
        _dq_kernel = triton.autotune(
            _configs([(128, 64, 8, 2), (128, 32, 4, 2), (64, 64, 4, 2), (128, 64, 8, 3), (64, 32, 4, 3)]), key=_KEY
        )(_attn_bwd_dq)
else:
    INTERPRET = False


# --------------------------------------------------------------------------- #
# Launchers and autograd wrapper
# --------------------------------------------------------------------------- #


def _fixed_blocks() -> dict[str, int]:
    """Tile sizes passed explicitly in interpreter mode (autotuned on a GPU)."""
    return {"BLOCK_M": INTERPRET_BLOCK_M, "BLOCK_N": INTERPRET_BLOCK_N} if INTERPRET else {}


def _precision(dtype: torch.dtype) -> str | None:
    """fp32 inputs: exact fp32 products ("ieee"), not TF32; fp16/bf16 use Triton's default."""
    return "ieee" if dtype == torch.float32 else None


def _forward(q: Tensor, k: Tensor, v: Tensor, is_causal: bool, scale: float) -> tuple[Tensor, Tensor]:
    """Launch the forward kernel. Returns O (B, h, T_q, d) and L (B, h, T_q) float32."""
    B, H, T_Q, D = q.shape
    H_KV, T_K = k.shape[1], k.shape[2]
    o = torch.empty_like(q)
    lse = torch.empty((B, H, T_Q), dtype=torch.float32, device=q.device)

    def grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(T_Q, meta["BLOCK_M"]), B * H)

    _fwd_kernel[grid](
        q, k, v, o, lse,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        o.stride(0), o.stride(1), o.stride(2),
        H, H // H_KV, T_Q, T_K, scale * LOG2E,
        HEAD_DIM=D, IS_CAUSAL=is_causal, PRECISION=_precision(q.dtype), **_fixed_blocks(),
    )
    return o, lse


def _backward(
    q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor, do: Tensor, is_causal: bool, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Launch the three backward kernels. Returns dq, dk, dv (contiguous, input dtype)."""
    B, H, T_Q, D = q.shape
    H_KV, T_K = k.shape[1], k.shape[2]
    n_rep = H // H_KV
    # D = rowsum(dO * O)
    delta = torch.empty_like(lse)
    block = 16 if INTERPRET else 64
    _attn_bwd_delta[(triton.cdiv(T_Q, block), B * H)](
        o, do, delta, o.stride(0), o.stride(1), o.stride(2), do.stride(0), do.stride(1), do.stride(2),
        H, T_Q, HEAD_DIM=D, BLOCK_M=block,
    )
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    common = (
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        do.stride(0), do.stride(1), do.stride(2),
        H, n_rep, T_Q, T_K, scale * LOG2E, scale,
    )
    meta = {"HEAD_DIM": D, "IS_CAUSAL": is_causal, "PRECISION": _precision(q.dtype), **_fixed_blocks()}
    # dK, dV: one program per key tile and (batch, K/V head)
    _dkdv_kernel[lambda m: (triton.cdiv(T_K, m["BLOCK_N"]), B * H_KV)](q, k, v, do, lse, delta, dk, dv, *common, **meta)
    # dQ: one program per query tile and (batch, head)
    _dq_kernel[lambda m: (triton.cdiv(T_Q, m["BLOCK_M"]), B * H)](q, k, v, do, lse, delta, dq, *common, **meta)
    return dq, dk, dv


def _on_device(x: Tensor):
    """Launch on x's GPU (Triton launches on the current CUDA device); a no-op on CPU."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


class _TritonAttention(torch.autograd.Function):
    """Saves q, k, v, O and L; the backward kernels recompute P tile by tile."""

    @staticmethod
    def forward(ctx, q, k, v, is_causal, scale):  # type: ignore[override]
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        with _on_device(q):
            o, lse = _forward(q, k, v, is_causal, scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.is_causal, ctx.scale = is_causal, scale
        return o

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, do):  # type: ignore[override]
        q, k, v, o, lse = ctx.saved_tensors
        with _on_device(q):
            dq, dk, dv = _backward(q, k, v, o, lse, do.contiguous(), ctx.is_causal, ctx.scale)
        return dq, dk, dv, None, None


def _check_runnable(q: Tensor) -> None:
    """Raise a clear error when the kernels cannot run here."""
    if not HAS_TRITON:
        raise ImportError("triton is not installed: pip install -e '.[gpu]'")
    if q.device.type == "cuda":
        if INTERPRET:
            raise RuntimeError("tfcore.triton_flash was imported with TRITON_INTERPRET=1; CUDA tensors need a "
                               "fresh process without it")
        return
    if q.device.type == "cpu" and not INTERPRET:
        raise RuntimeError(
            "Triton kernels need a CUDA GPU; on CPU set os.environ['TRITON_INTERPRET'] = '1' before "
            "importing tfcore.triton_flash (slow, for testing only)"
        )
    if q.device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"triton_attention runs on CUDA (or CPU under TRITON_INTERPRET=1), got device {q.device}")


def triton_attention(q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False, scale: float | None = None) -> Tensor:
    """FlashAttention-2 forward and backward in Triton.

    q: (B, h, T_q, d_head); k, v: (B, h_kv, T_k, d_head), h a multiple of h_kv.
    d_head in {16, 32, 64, 128}; dtype fp16 or bf16 (fp32 allowed, mainly for tests).
    is_causal: query i sees key j iff j <= i + T_k - T_q. scale: default 1 / sqrt(d_head).
    Returns O (B, h, T_q, d_head) in q's dtype; differentiable in q, k and v.
    """
    _check_runnable(q)
    _check_inputs(q, k, v, None)
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"q has dtype {q.dtype}; triton_attention supports float16, bfloat16 and float32")
    d = q.shape[-1]
    if d not in SUPPORTED_D_HEAD:
        raise ValueError(f"q has d_head={d}; triton_attention supports d_head in {SUPPORTED_D_HEAD}")
    scale = _resolve_scale(scale, d)
    return _TritonAttention.apply(q, k, v, bool(is_causal), scale)
