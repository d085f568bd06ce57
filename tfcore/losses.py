"""Training signals (lesson 09): the shifted language-model loss and the masked-LM loss.

    LM:   L = -(1/T) sum_t log p(x_{t+1} | x_{<=t})      (a model at chance scores ln V)
    MLM:  mask 15% of tokens (80% -> [MASK], 10% -> random, 10% unchanged); loss on those only
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from tfcore._checks import (
    require_float,
    require_int,
    require_integer_dtype,
    require_ndim,
    require_number,
    require_same_size,
)

IGNORE_INDEX = -100  # targets equal to this are left out of the loss (padding, unmasked MLM positions)


def lm_loss(logits: Tensor, tokens: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Mean cross-entropy of ``tokens[:, 1:]`` given ``logits[:, :-1]``.

    logits: (B, T, V) floating point; tokens: (B, T) ids in [0, V) or ``ignore_index``. Position
    t predicts token t + 1, so the last logit and the first token have no partner. Targets equal
    to ``ignore_index`` are skipped. Ids out of range raise a ValueError naming them on the CPU;
    on a GPU that check would wait for the device at every step (and under torch.compile it
    would split the graph), so there PyTorch's own assert fires instead.
    """
    _check_logits_targets(logits, tokens, "tokens", ignore_index)
    if tokens.shape[1] < 2:
        raise ValueError(f"tokens needs T >= 2 to have a next token to predict, got T={tokens.shape[1]}")
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v).float(), tokens[:, 1:].reshape(-1).long(),
                           ignore_index=ignore_index)


def _check_logits_targets(logits: Tensor, targets: Tensor, name: str, ignore_index: int) -> None:
    """logits (B, T, V) float and targets (B, T) integer ids in [0, V) or ignore_index (values checked on the CPU)."""
    require_ndim("logits", logits, 3, "(B, T, V)")
    require_float("logits", logits)
    require_ndim(name, targets, 2, "(B, T)")
    require_integer_dtype(name, targets, "integer token ids")
    require_same_size(name, targets.shape[0], "logits", logits.shape[0], "B")
    require_same_size(name, targets.shape[1], "logits", logits.shape[1], "T")
    v = logits.shape[-1]
    # on the CPU the check costs no wait for a device; under torch.compile it would split the graph
    if targets.device.type == "cpu" and targets.numel() and not torch.compiler.is_compiling():
        bad = ((targets < 0) | (targets >= v)) & (targets != ignore_index)
        if bad.any():
            found = targets[bad]
            raise ValueError(f"{name} must be ids in [0, V={v}) (V = logits' last axis) or ignore_index={ignore_index}, "
                             f"got ids from {int(found.min())} to {int(found.max())} outside it")


def mlm_mask(
    tokens: Tensor, mask_id: int, vocab_size: int, p: float = 0.15, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """BERT's corruption. tokens (B, T) -> (inputs (B, T), targets (B, T)).

    Each position is chosen with probability p in [0, 1]; of those 80% become ``mask_id``, 10% a
    random token from [0, vocab_size), 10% stay. ``targets`` holds the original token at chosen
    positions and ``IGNORE_INDEX`` elsewhere. ``mask_id`` is an id of its own, outside the
    ordinary ids (>= vocab_size, usually vocab_size): else the model could not tell [MASK] from a
    real token.
    """
    require_ndim("tokens", tokens, 2, "(B, T)")
    require_integer_dtype("tokens", tokens, "integer token ids")
    require_int("vocab_size", vocab_size, minimum=1)
    require_int("mask_id", mask_id)
    if mask_id < vocab_size:
        raise ValueError(f"mask_id={mask_id} must be an id of its own, >= vocab_size={vocab_size} (the ordinary ids "
                         "0 .. vocab_size - 1 are real tokens): usually mask_id = vocab_size")
    require_number("p", p, 0, 1)
    # Random draws on the CPU (where a seeded generator lives), then moved to the tokens' device.
    chosen = (torch.rand(tokens.shape, generator=generator) < p).to(tokens.device)
    roll = torch.rand(tokens.shape, generator=generator).to(tokens.device)
    random_ids = torch.randint(vocab_size, tokens.shape, generator=generator).to(tokens.device)
    inputs = tokens.clone()
    inputs[chosen & (roll < 0.8)] = mask_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = random_ids[swap]
    targets = torch.where(chosen, tokens, torch.full_like(tokens, IGNORE_INDEX))
    return inputs, targets


def mlm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy at the masked positions only. logits (B, T, V); targets (B, T) with IGNORE_INDEX elsewhere."""
    _check_logits_targets(logits, targets, "targets", IGNORE_INDEX)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1).long(),
                           ignore_index=IGNORE_INDEX)


def perplexity(loss: float) -> float:
    """exp(loss): the effective number of equally likely next tokens. loss: a cross-entropy, >= 0."""
    if isinstance(loss, torch.Tensor) and loss.numel() != 1:
        raise ValueError(f"loss must be one number, got a tensor of shape {tuple(loss.shape)}")
    if isinstance(loss, (str, bytes, bool)) or not hasattr(loss, "__float__"):
        raise ValueError(f"loss must be a number, got {loss!r}")
    value = float(loss)
    if math.isnan(value) or value < 0:
        raise ValueError(f"loss must be a cross-entropy, a number >= 0, got {value}")
    try:
        return math.exp(value)
    except OverflowError:  # a loss above ~709 nats: more than float64 can hold
        return math.inf
