"""What the input checks cost a cached decoding step (issue 17: validation must stay off the hot path).

    PYTHONPATH=. python benchmarks/check_overhead.py

Times each check that runs at every decoding step (min over repeats of process CPU time, so other
processes on the machine matter less) and sums them per step of the benchmarks/decode.py model
(shakespeare-char-cpu shape: 4 layers, d_model 128): 1 forward check, 4 attention, 4 KV-cache,
4 MLP and 9 norm input checks. For comparison it times the checks the same path ran before
(91a1f3b: ndim and width of x in attention, k/v shapes in the cache, the tokens' ndim and dtype).
None of them reads a value from the device.
"""

from __future__ import annotations

import time
import timeit

import torch

from tfcore import mlp, norms
from tfcore._checks import require_ndim, require_same_size
from tfcore.heads import KVCache
from tfcore.model import Transformer, TransformerConfig
from tfcore.model_checks import check_forward_args


def per_call_us(f, n: int = 20000) -> float:
    return min(timeit.repeat(f, number=n, repeat=7, timer=time.process_time)) / n * 1e6


def main() -> None:
    torch.set_num_threads(1)
    model = Transformer(TransformerConfig(vocab_size=65, d_model=128, n_layers=4, n_heads=4, max_seq_len=1024,
                                          backend="sdpa")).eval()
    attn, x, tokens = model.decoder[0].attn, torch.randn(1, 1, 128), torch.zeros(1, 1, dtype=torch.long)
    k, cache = torch.randn(1, 4, 1, 32), KVCache(max_length=1024)
    empty = per_call_us(lambda: None)

    def cost(f) -> float:
        return per_call_us(f) - empty

    def old_attention() -> None:
        require_ndim("x", x, 3, "(B, T, d_model)")
        require_same_size("x", x.shape[-1], "the layer", attn.q_proj.in_features, "d_model")

    def old_tokens() -> None:
        if tokens.dim() != 2 or tokens.is_floating_point():
            raise ValueError

    now = {"forward": (1, cost(lambda: check_forward_args(model, tokens, None, None, None, None, None, None))),
           "attention": (4, cost(lambda: attn._check_inputs(x, None, cache))),
           "kv cache": (4, cost(lambda: isinstance(k, torch.Tensor) and k.shape == k.shape and k.dtype == k.dtype
                                and k.device == k.device)),
           "mlp": (4, cost(lambda: mlp._check_input(x, 128))),
           "norm": (9, cost(lambda: norms._check_layer_input(x, 128)))}
    before = {"tokens": (1, cost(old_tokens)), "attention": (4, cost(old_attention)),
              "kv cache": (4, cost(lambda: k.shape != k.shape))}
    for label, checks in (("now", now), ("before", before)):
        parts = ", ".join(f"{name} {n} x {us:.2f}" for name, (n, us) in checks.items())
        print(f"{label:6s} {sum(n * us for n, us in checks.values()):5.1f} us per step  ({parts} us)")


if __name__ == "__main__":
    main()
