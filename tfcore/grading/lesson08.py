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
