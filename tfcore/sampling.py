"""Choosing the next token from the model's logits: greedy, temperature, top-k, top-p (lesson 09).

    logits (B, V) at the last position -> / temperature -> keep the top k -> keep the top-p nucleus
                                       -> softmax, renormalised -> one draw per row: ids (B, 1)

``Transformer.generate`` draws every token this way; ``sample`` and ``sampling_probs`` are
re-exported by ``tfcore.model``. (Not to be confused with ``tfcore.samplers``: training batches.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tfcore._checks import require_ndim, require_nonempty, require_number


def sample(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
           generator: torch.Generator | None = None, top_p: float | None = None) -> Tensor:
    """Next token ids (B, 1) from last-position logits (B, V).

    temperature >= 0 divides the logits (0 is greedy: the argmax). top_k in [1, V] keeps the k
    most likely tokens; top_p in (0, 1] (nucleus sampling) keeps the smallest set of most likely
    tokens whose probabilities sum to at least p. Both renormalise what they keep, top_k first.
    ``sampling_probs`` returns the distribution drawn from.
    """
    check_sampling(temperature, top_k, top_p, _vocab_size_of(logits))
    return draw(logits, temperature, top_k, top_p, generator)


def sampling_probs(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None) -> Tensor:
    """The distribution ``sample`` draws from: (B, V) logits -> (B, V) float32 probabilities, rows sum to 1.

    temperature > 0 (0 means greedy: no distribution to return). Tokens that top_k or top_p
    leave out get probability 0; the others are renormalised.
    """
    check_sampling(temperature, top_k, top_p, _vocab_size_of(logits))
    if temperature == 0:
        raise ValueError("temperature=0 is greedy decoding (the argmax), not a distribution: pass temperature > 0")
    return _filtered_probs(logits, temperature, top_k, top_p)


def check_sampling(temperature: float, top_k: int | None, top_p: float | None, vocab_size: int) -> None:
    """Refuse a temperature, top_k or top_p that ``sample`` cannot use with ``vocab_size`` tokens."""
    require_number("temperature", temperature, 0, None)
    if top_k is not None and not (isinstance(top_k, int) and not isinstance(top_k, bool) and 1 <= top_k <= vocab_size):
        raise ValueError(f"top_k must lie in [1, vocab_size={vocab_size}] (an integer), got {top_k!r}")
    if top_p is not None:
        require_number("top_p", top_p, 0, 1, low_open=True)


def draw(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None,
         generator: torch.Generator | None) -> Tensor:
    """``sample`` without the checks (``generate`` checks its arguments once, not at every step)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    return torch.multinomial(_filtered_probs(logits, temperature, top_k, top_p), 1, generator=generator)


def _vocab_size_of(logits: Tensor) -> int:
    """V of floating-point logits (B, V)."""
    require_ndim("logits", logits, 2, "(B, V)")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    require_nonempty("logits", logits, "(B, V)")
    return logits.shape[1]


def _filtered_probs(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None) -> Tensor:
    """Softmax of logits / temperature after top-k and top-p filtering, (B, V) float32."""
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if top_p is None or top_p >= 1:  # p = 1 keeps every token (float sums of the tail may not reach 1)
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the more likely tokens
    keep_sorted = before < top_p  # kept until the tokens before it reach p; the most likely always
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    probs = probs * keep
    return probs / probs.sum(dim=-1, keepdim=True)
