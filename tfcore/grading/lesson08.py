"""Checks for lesson 08 (complexity and memory): ``complexity.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson08.py``.
"""

from __future__ import annotations

from tfcore.complexity import attention_flops, kv_cache_bytes
from tfcore.grading import Checker, exercise

LESSON = "08_complexity"


# ----------------------------------------------------------------------------- complexity.kv_cache_bytes

KV_NAMES = ("n_layers", "batch", "seq_len", "n_kv_heads", "d_head", "bytes_per_value")


@exercise("complexity.kv_cache_bytes", "KV-cache size in bytes: 2 * layers * B * T * h_kv * d_head * bytes",
          lesson=LESSON)
def _kv_cache_bytes(answer, c: Checker) -> None:
    cases = [
        # distinct primes first: any missing or extra factor shows up unambiguously
        ("n_layers=3, batch=5, seq_len=7, n_kv_heads=11, d_head=13, bytes_per_value=17", (3, 5, 7, 11, 13, 17)),
        ("a 7B-class model: 32 layers, 32 KV heads of 128, 4096 tokens, fp16", (32, 1, 4096, 32, 128, 2)),
        ("GQA: 80 layers, batch 2, 8 KV heads of 128, 8192 tokens, bf16", (80, 2, 8192, 8, 128, 2)),
        ("everything 1", (1, 1, 1, 1, 1, 1)),
        ("24 layers, batch 3, 1000 tokens, 12 KV heads of 64, fp32", (24, 3, 1000, 12, 64, 4)),
    ]
    for case, args in cases:
        ref = kv_cache_bytes(*args)
        out = c.call(answer, *args, case=case)
        wrong = [("forgot the factor 2 for keys AND values", lambda: ref // 2),
                 ("counted bits, not bytes", lambda: ref * 8),
                 ("returned GiB: return bytes", lambda: ref / 2**30),
                 ("returned MiB: return bytes", lambda: ref / 2**20)]
        wrong += [(f"forgot {name}: the cache holds every layer, sequence, token, KV head and channel",
                   lambda v=v: ref // v) for name, v in zip(KV_NAMES, args) if name != "bytes_per_value"]
        wrong += [("forgot bytes_per_value: the result is in bytes, not values", lambda: ref // args[-1])]
        c.number(out, ref, case, integer=True, wrong=wrong)


# ----------------------------------------------------------------------------- complexity.attention_flops


@exercise("complexity.attention_flops", "FLOPs of QK^T and AV: 4 B h T^2 d_head", lesson=LESSON)
def _attention_flops(answer, c: Checker) -> None:
    cases = [
        ("batch=3, n_heads=5, seq_len=7, d_head=11", (3, 5, 7, 11)),
        ("GPT-2 small at T=128: batch 1, 12 heads of 64", (1, 12, 128, 64)),
        ("batch 8, 16 heads of 128, T=1024", (8, 16, 1024, 128)),
        ("everything 1", (1, 1, 1, 1)),
    ]
    for case, (b, h, t, d) in cases:
        ref = attention_flops(b, h, t, d)
        out = c.call(answer, b, h, t, d, case=case)
        c.number(out, ref, case, integer=True, wrong=[
            ("half the expected count: a multiply-add is 2 FLOPs, and there are two matmuls (QK^T and AV)",
             lambda: ref // 2),
            ("a quarter of the expected count: count both matmuls (QK^T and AV), each multiply-add as 2 FLOPs",
             lambda: ref // 4),
            ("the score matrix is T x T: the FLOPs grow with T^2", lambda: ref // t),
            ("forgot the batch", lambda: ref // b),
            ("forgot the heads: every head has its own T x T scores", lambda: ref // h),
            ("forgot d_head: each score is a dot product of length d_head", lambda: ref // d),
            ("twice the expected count: QK^T and AV are 2 B h T^2 d_head FLOPs each", lambda: ref * 2),
        ])


# ----------------------------------------------------------------------------- complexity.block_flops

import math  # noqa: E402

import torch  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

from tfcore.complexity import block_flops  # noqa: E402

BLOCK_PARTS = ("attention", "projections", "mlp", "total")


@exercise("complexity.block_flops", "forward FLOPs of one MHA block by part: attention, projections, mlp, total",
          lesson=LESSON)
def _block_flops(answer, c: Checker) -> None:
    cases = [
        ("batch=3, seq_len=7, d_model=10, n_heads=5, d_ff=11", (3, 7, 10, 5, 11)),
        ("GPT-2 small at T=1024: batch 1, d_model 768, 12 heads, d_ff 3072", (1, 1024, 768, 12, 3072)),
        ("T = 1: batch 2, seq_len 1, d_model 8, 2 heads, d_ff 32", (2, 1, 8, 2, 32)),
        ("batch 4, T=2048, d_model 4096, 32 heads, d_ff 11008", (4, 2048, 4096, 32, 11008)),
    ]
    for case, (b, t, d, h, f) in cases:
        ref = block_flops(b, t, d, h, f)
        out = c.call(answer, b, t, d, h, f, case=case,
                     hint="the signature is block_flops(batch, seq_len, d_model, n_heads, d_ff)")
        if not isinstance(out, dict):
            what = "None: is the return statement missing?" if out is None else \
                f"a {c.type_name(out)}: return a dict with keys {', '.join(BLOCK_PARTS)}"
            c.fail(f"{c.name} returned {what} on {case}")
        missing = [k for k in BLOCK_PARTS if k not in out]
        if missing:
            c.fail(f"the dict on {case} has no key {missing[0]!r}: return the keys {', '.join(BLOCK_PARTS)}")
        wrong = {
            "attention": [
                ("attention: a multiply-add is 2 FLOPs and there are two products (QK^T and AV): 4 B h T^2 d_head",
                 lambda: ref["attention"] // 2),
                ("attention: the score matrix is T x T, so the FLOPs grow with T^2", lambda: ref["attention"] // t),
                ("attention: every head has its own T x T scores: 4 B h T^2 d_head = 4 B T^2 d_model",
                 lambda: ref["attention"] // h),
            ],
            "projections": [
                ("projections: Q, K, V and the output projection are four d x d matrices: 8 B T d^2",
                 lambda: 6 * b * t * d * d),
                ("projections: a multiply-add is 2 FLOPs: 8 B T d^2, not 4 B T d^2", lambda: ref["projections"] // 2),
            ],
            "mlp": [
                ("mlp: use d_ff, not 4 d_model: 2 matrices of d_model x d_ff, 4 B T d_model d_ff",
                 lambda: 16 * b * t * d * d),
                ("mlp: count both matrices (d -> d_ff and d_ff -> d), 2 FLOPs per multiply-add: 4 B T d d_ff",
                 lambda: ref["mlp"] // 2),
            ],
            # checked last: the parts are right by then, so a wrong total is not their sum
            "total": [("total must be the sum of attention, projections and mlp", lambda: float(out["total"]))],
        }
        for part in BLOCK_PARTS:
            c.number(out[part], ref[part], f"{case} ({part})", integer=True, wrong=wrong[part])


# ----------------------------------------------------------------------------- complexity.online_softmax


def _chunked(x: torch.Tensor, chunk: int, rescale: str = "right", normalise: str = "final"):
    """Online softmax with optional mistakes; normalise "final" | "last"; rescale "right", "inverted", or not at all:
    "none" (each chunk's exp taken from its own max, the sums added as they are) or "stale" (the running max
    subtracted, but the old sum never multiplied by exp(m_old - m_new))."""
    x = x.double()
    m, l, last = -math.inf, 0.0, 0.0
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk]
        m_new = max(m, part.max().item())
        shift = 0.0 if m_new == -math.inf else m_new
        if rescale == "right":
            alpha = math.exp(m - shift) if m != -math.inf else 0.0
        elif rescale == "inverted":
            alpha = math.exp(shift - m) if m != -math.inf else 0.0
        else:
            alpha = 1.0
        local = part.max().item() if rescale == "none" else shift
        last = torch.exp(part - (0.0 if local == -math.inf else local)).sum().item()
        l = alpha * l + last
        m = m_new
    denominator = l if normalise == "final" else last
    return torch.exp(x - m) / denominator, m, l


NO_RESCALE = ("when the running max grows from m_old to m_new, multiply l by exp(m_old - m_new) before adding the new "
              "chunk's sum")


@exercise("complexity.online_softmax", "softmax of a 1-D row in chunks, keeping the running max m and sum l",
          lesson=LESSON)
def _online_softmax(answer, c: Checker) -> None:
    neg = -math.inf
    cases = [
        ("10 random scores, chunk 3", c.randn(10), 3),
        ("17 scores of scale 5, chunk 4", c.randn(17, scale=5.0), 4),
        ("scores that grow along the row (the max rises in every chunk), chunk 5",
         torch.arange(12, dtype=torch.float32) * 3.0 + c.randn(12) * 0.1, 5),
        ("one score, chunk 1", c.randn(1), 1),
        ("chunk larger than the row: 5 scores, chunk 8", c.randn(5), 8),
        ("large scores near 1e4, chunk 4 (exp overflows without subtracting the max)", c.randn(13) * 3.0 + 1e4, 4),
        ("large negative scores near -1e4, chunk 3", c.randn(11) * 3.0 - 1e4, 3),
        ("float64 scores, chunk 7", c.randn(20, dtype=torch.float64), 7),
        ("masked scores (-inf) in the middle of a chunk, chunk 3",
         torch.cat((c.randn(4), torch.tensor([neg, neg]), c.randn(3))), 3),
        ("a whole first chunk masked (-inf), chunk 3", torch.cat((torch.full((3,), neg), c.randn(6))), 3),
    ]
    for case, x, chunk in cases:
        out = c.call(answer, x, chunk, case=case, hint="the signature is online_softmax(x, chunk)")
        if not isinstance(out, tuple):
            what = "None: is the return statement missing?" if out is None else \
                f"a {c.type_name(out)}: return a tuple (p, m, l)"
            c.fail(f"{c.name} returned {what} on {case}")
        if len(out) != 3:
            c.fail(f"{c.name} returned a tuple of {len(out)} items on {case}: return (p, m, l)")
        p, m, l = out
        ref = torch.softmax(x.double(), dim=0).to(x.dtype)
        ref_m = x.double().max().item()
        ref_l = torch.exp(x.double() - ref_m).sum().item()
        first_masked = case.startswith("a whole first chunk")
        c.compare(p, ref, case, atol=1e-6, rtol=1e-5, wrong=[
            *((NO_RESCALE, lambda way=way: _chunked(x, chunk, rescale=way)[0].to(x.dtype)) for way in ("none", "stale")),
            ("the rescale factor is exp(m_old - m_new) (at most 1), not exp(m_new - m_old)",
             lambda: _chunked(x, chunk, rescale="inverted")[0].to(x.dtype)),
            ("divide by the final l, the sum over ALL chunks, not by the last chunk's sum",
             lambda: _chunked(x, chunk, normalise="last")[0].to(x.dtype)),
            ("return the probabilities exp(x - m) / l, not the unnormalised exp(x - m)",
             lambda: torch.exp(x.double() - ref_m).to(x.dtype)),
        ], nonfinite=(
            "NaN where the answer is finite: a chunk that is entirely -inf leaves m = -inf, and "
            "exp(-inf - (-inf)) is NaN; subtract 0 instead of m while m is still -inf" if first_masked else
            "NaN/inf where the answer is finite: subtract the running max before exp (exp overflows for large "
            "scores), and only divide by l at the end"))
        c.number(m, ref_m, f"{case} (m)", rtol=1e-6, atol=1e-6, wrong=[
            ("m must be the max over the whole row, not over the last chunk",
             lambda: x[(len(x) - 1) // chunk * chunk:].max().item()),
        ])
        c.number(l, ref_l, f"{case} (l)", rtol=1e-5, atol=1e-6, wrong=[
            *(("l: when the max grows, rescale the old sum by exp(m_old - m_new) before adding the new chunk",
               lambda way=way: _chunked(x, chunk, rescale=way)[2]) for way in ("none", "stale")),
            ("l must be the sum of exp(x - m) over the whole row with the final m", lambda: ref_l * math.exp(ref_m)),
        ])


    # the point of the exercise: no reduction ever sees more than one chunk
    x, chunk = c.randn(24, scale=3.0), 5
    case = "24 scores, chunk 5"
    with c.monitor(_WholeRowReductions, chunk) as seen:
        out = c.call(answer, x, chunk, case=case)
    c.compare(out[0] if isinstance(out, tuple) and out else out, torch.softmax(x, dim=0), case)
    if seen.calls:
        c.fail(f"on {case} your function called {seen.calls[0]} on {seen.sizes[0]} scores at once: compute m and l "
               f"chunk by chunk (at most {chunk} scores per max or sum), as a kernel that never holds the whole row")


class _WholeRowReductions(TorchFunctionMode):
    """Records reductions (max, sum, softmax, ...) applied to more than ``chunk`` elements inside the block."""

    NAMES = ("max", "amax", "sum", "logsumexp", "softmax", "log_softmax", "nansum")

    def __init__(self, chunk: int) -> None:
        super().__init__()
        self.chunk = chunk
        self.calls, self.sizes = [], []

    def __enter__(self):
        self.calls, self.sizes = [], []
        return super().__enter__()

    def report(self) -> dict:
        """What ``c.monitor`` brings back from the kernel."""
        return {"calls": self.calls, "sizes": self.sizes}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.NAMES and args and isinstance(args[0], torch.Tensor) and args[0].numel() > self.chunk:
            self.calls.append(name)
            self.sizes.append(args[0].numel())
        return func(*args, **(kwargs or {}))


# ----------------------------------------------------------------------------- complexity.tiled_attention


def _naive_one_head(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v in float64, cast back. q: (T_q, d); k, v: (T_k, d)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q.double() @ k.double().T) * scale
    return (torch.softmax(s, dim=-1) @ v.double()).to(q.dtype)


def _tiled_variant(q, k, v, block_q, block_k, rescale_o=True, normalise="final"):
    """The tiled forward with a mistake: O not rescaled, or normalised by the last tile's sum."""
    q, k, v = q.double(), k.double(), v.double()
    scale = 1.0 / math.sqrt(q.shape[-1])
    rows = []
    for r0 in range(0, q.shape[0], block_q):
        qi = q[r0:r0 + block_q] * scale
        m = torch.full((qi.shape[0], 1), -math.inf, dtype=q.dtype)
        l = torch.zeros(qi.shape[0], 1, dtype=q.dtype)
        o = torch.zeros(qi.shape[0], q.shape[1], dtype=q.dtype)
        last = l
        for c0 in range(0, k.shape[0], block_k):
            s = qi @ k[c0:c0 + block_k].T
            m_new = torch.maximum(m, s.amax(-1, keepdim=True))
            p = torch.exp(s - m_new)
            alpha = torch.exp(m - m_new)
            last = p.sum(-1, keepdim=True)
            l = alpha * l + last
            o = (alpha * o if rescale_o else o) + p @ v[c0:c0 + block_k]
            m = m_new
        rows.append(o / (l if normalise == "final" else last))
    return torch.cat(rows)


class _LargestIntermediate(TorchFunctionMode):
    """Records the largest number of elements of any tensor a torch function returns inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.largest, self.shape = 0, None

    def __enter__(self):
        self.largest, self.shape = 0, None
        return super().__enter__()

    def report(self) -> dict:
        """What ``c.monitor`` brings back from the kernel."""
        return {"largest": self.largest, "shape": self.shape}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.largest:
                self.largest, self.shape = t.numel(), tuple(t.shape)
        return out


@exercise("complexity.tiled_attention", "tiled attention forward for one head (online softmax), exact vs naive",
          lesson=LESSON)
def _tiled_attention(answer, c: Checker) -> None:
    cases = [
        ("T_q = T_k = 8, d = 4, tiles 4 x 4", 8, 8, 4, 4, 4, 1.0, torch.float32),
        ("T_q=7, T_k=11, d=5, tiles 3 x 4 (sizes not multiples of the tiles)", 7, 11, 5, 3, 4, 1.0, torch.float32),
        ("T_q = T_k = 1, d = 3, tiles 2 x 2", 1, 1, 3, 2, 2, 1.0, torch.float32),
        ("T_q=5, T_k=9, d=8, tiles 1 x 1", 5, 9, 8, 1, 1, 1.0, torch.float32),
        ("tiles larger than the sequence: T_q=4, T_k=6, d=4, tiles 16 x 16", 4, 6, 4, 16, 16, 1.0, torch.float32),
        ("large scores (q scaled by 30): T_q=9, T_k=10, d=6, tiles 4 x 3", 9, 10, 6, 4, 3, 30.0, torch.float32),
        ("float64: T_q=6, T_k=13, d=4, tiles 4 x 5", 6, 13, 4, 4, 5, 1.0, torch.float64),
    ]
    for case, t_q, t_k, d, bq, bk, q_scale, dtype in cases:
        q = c.randn(t_q, d, dtype=dtype) * q_scale
        k, v = c.randn(t_k, d, dtype=dtype), c.randn(t_k, d, dtype=dtype)
        ref = _naive_one_head(q, k, v)
        out = c.call(answer, q, k, v, bq, bk, case=case,
                     hint="the signature is tiled_attention(q, k, v, block_q, block_k)")
        tol = 1e-10 if dtype == torch.float64 else 1e-5
        c.compare(out, ref, case, atol=tol, rtol=tol * 10, wrong=[
            ("scale the scores by 1/sqrt(d_head)", lambda: _naive_one_head(q, k, v, scale=1.0)),
            ("scale by 1/sqrt(d_head), not sqrt(d_head)", lambda: _naive_one_head(q, k, v, scale=math.sqrt(d))),
            ("when the running max grows, rescale the accumulated output O by exp(m_old - m_new) as well as l",
             lambda: _tiled_variant(q, k, v, bq, bk, rescale_o=False).to(dtype)),
            ("divide O by the final l (the sum over all key tiles), not by the last tile's sum",
             lambda: _tiled_variant(q, k, v, bq, bk, normalise="last").to(dtype)),
            ("the output has one row per query: shape (T_q, d_head)", lambda: ref.T),
        ], nonfinite="NaN/inf where the answer is finite: subtract the running max m before exp, and divide by l "
                     "only at the end")
    # the point of tiling: no T_q x T_k matrix at any time
    t, d, bq, bk = 64, 8, 16, 16
    q, k, v = (c.randn(t, d) for _ in range(3))
    case = f"T_q = T_k = {t}, d = {d}, tiles {bq} x {bk}"
    with c.monitor(_LargestIntermediate) as seen:
        out = c.call(answer, q, k, v, bq, bk, case=case)
    c.compare(out, _naive_one_head(q, k, v), case)
    if seen.largest >= t * t:
        c.fail(f"on {case} your function built a tensor of shape {seen.shape}: a tiled kernel never holds the "
               f"T_q x T_k scores, only one block_q x block_k ({bq} x {bk}) tile at a time")


# ----------------------------------------------------------------------------- predictions (lesson notebook)

from tfcore.complexity import attention_overtakes_linear  # noqa: E402
from tfcore.grading.predictions import predict_choice, predict_number  # noqa: E402

predict_number(
    "complexity.predict_attention_crossover",
    "For GPT-2 small (d = 768), at what sequence length T does one block's attention (4 B T^2 d FLOPs) cost as "
    "much as its projections (8 B T d^2) and MLP (16 B T d^2) together?",
    lesson=LESSON, answer=lambda: attention_overtakes_linear(768), rel=0.15, unit=" tokens",
    mistakes={3072: "3072 = 4 d is where attention overtakes the MLP alone", 1536: "1536 = 2 d is where it overtakes "
              "the projections alone", 768: "768 = d: T and d are not the crossover by themselves"},
    why="set 4 B T^2 d = (8 + 16) B T d^2 and divide by 4 B T d: T = 6 d = 6 * 768 = 4608 tokens, beyond "
        "GPT-2's 1024-token context. 3072 = 4 d is where attention overtakes the MLP alone; below T = 6 d the "
        "linear layers cost more.",
    hint="write attention and the linear layers as functions of T and solve for the T where they are equal",
)

predict_number(
    "complexity.predict_kv_cache_gib",
    "The KV cache of Llama 2 7B (32 layers, 32 heads of d_head = 128, every head with its own keys and values) "
    "for one sequence of 4096 tokens in fp16, in GiB",
    lesson=LESSON, answer=lambda: kv_cache_bytes(32, 1, 4096, 32, 128, 2) / 2 ** 30, rel=0.1, unit=" GiB",
    mistakes={1: "1 GiB counts the keys only: the values take as much", 4: "4 GiB is fp32; fp16 takes 2 bytes",
              0.5: "0.5 GiB is GQA with 8 KV heads; here every head has its own", 2048: "that is the size in MiB: the "
              "question asks in GiB"},
    why="each layer stores a key and a value (the factor 2) for every token and every KV head: "
        "2 * 32 layers * 4096 tokens * 32 heads * 128 * 2 bytes = 2^31 bytes = 2 GiB, 512 KiB per token. "
        "Forgetting the values gives 1 GiB; fp32 would give 4 GiB; with GQA's 8 KV heads it would be 0.5 GiB.",
    hint="what does one layer store per token and per key/value head, how many bytes is an fp16 number, and "
         "how many layers are there?",
)

predict_choice(
    "complexity.predict_running_sum",
    "Online softmax: when a key tile raises a row's running maximum (m' > m), what happens to that row's "
    "running sum l?",
    lesson=LESSON,
    options={"A": "it always decreases", "B": "it always increases", "C": "it can do either"},
    answer="C",
    why="the update is l' = alpha * l + rowsum(exp(S_j - m')) with alpha = exp(m - m') < 1: the old sum is first "
        "shrunk (the same scores count for less against a larger maximum), then the tile adds its own sum, at "
        "least 1 since its largest score is the new maximum. A small jump over a small sum leaves l higher "
        "(row 0 of the lesson's table); a large jump over a large sum removes more than the tile adds, and l "
        "drops (row 2 at tile 3).",
    hint="write l' in terms of l, the rescale factor alpha and the new tile's sum: which of them can be large?",
)
