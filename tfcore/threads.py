"""CPU threads chosen by the size of the work: one thread for a small model's tiny operations.

PyTorch splits one operation (a matrix multiply, an attention kernel) over
``torch.get_num_threads()`` threads on the CPU, its *intra-op* threads. The split has a fixed
cost on every operation: the other threads must be woken, and the operation ends only when its
slowest thread has finished, so one thread that the operating system has not scheduled (another
program holds the core) stalls it. A thread pays off only when its share of the work takes
much longer than that. A small model decoding one token runs operations of some ten thousand
multiply-adds, a few microseconds each: on a 2-core machine, two threads made cached decoding
2.4x slower than one (244 vs 582 tokens/s, issue 20). ``threads_for`` gives every thread at
least ``WORK_PER_THREAD`` multiply-adds; ``intra_op_threads`` sets a count for a block of code
and puts the caller's count back afterwards.

    with intra_op_threads(threads_for(work)):
        ...

``Transformer.generate`` sizes each decoding step by ``largest_operation``: its widest linear
layer (``widest_linear``) or one layer's attention, whichever does more multiply-adds.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

import torch
from torch import nn

from tfcore._checks import require_int, require_positive_int

if TYPE_CHECKING:
    from tfcore.model import TransformerConfig

# About 2^20 multiply-adds take a core some tens of microseconds, well above the cost of waking
# a second one on an idle machine; a smaller share is not worth a thread (benchmarks/threads.py
# measures where a second thread starts to pay off on the machine it runs on).
WORK_PER_THREAD = 1 << 20


def threads_for(work: int, available: int | None = None) -> int:
    """Threads worth using for an operation of ``work`` multiply-adds: one per ``WORK_PER_THREAD``,
    at least 1 and at most ``available`` (default: ``torch.get_num_threads()``)."""
    require_int("work", work, minimum=0)
    available = torch.get_num_threads() if available is None else require_positive_int("available", available)
    return max(1, min(available, work // WORK_PER_THREAD))


def set_threads(n: int) -> None:
    """``torch.set_num_threads(n)`` unless ``n`` threads are set already (setting it has a cost:
    PyTorch resizes its thread pools)."""
    require_positive_int("n", n)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@contextlib.contextmanager
def intra_op_threads(n: int | None = None) -> Iterator[None]:
    """Within the block PyTorch runs each operation on ``n`` threads (None: the count stays as it
    is); when the block ends, even by an exception, the count from before the block is restored,
    also if the block changed it (with ``set_threads``)."""
    saved = torch.get_num_threads()
    if n is not None:
        set_threads(n)
    try:
        yield
    finally:
        set_threads(saved)


def widest_linear(model: nn.Module) -> int:
    """in_features x out_features of the model's largest linear layer: its multiply-adds per token."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    sizes = [m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear)]
    if not sizes:
        raise ValueError(f"model ({type(model).__name__}) has no nn.Linear layer to measure")
    return max(sizes)


def largest_operation(config: TransformerConfig, widest: int, new_tokens: int, t_k: int) -> int:
    """Multiply-adds of the largest single operation of a forward over ``new_tokens`` tokens (all
    sequences together), each attending ``t_k`` keys: the widest linear layer, or one layer's
    attention (q k^T, then A v, over every head)."""
    for name, value in (("widest", widest), ("new_tokens", new_tokens), ("t_k", t_k)):
        require_positive_int(name, value)
    if not all(hasattr(config, a) for a in ("n_heads", "d_head")):
        raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
    return new_tokens * max(widest, 2 * config.n_heads * t_k * config.d_head)
