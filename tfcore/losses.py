"""Training signals (lesson 09): the shifted language-model loss and the masked-LM loss.

    LM:   L = -(1/T) sum_t log p(x_{t+1} | x_{<=t})      (a model at chance scores ln V)
    MLM:  mask 15% of tokens (80% -> [MASK], 10% -> random, 10% unchanged); loss on those only
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from tfcore._checks import require_ndim, require_same_size

IGNORE_INDEX = -100  # targets equal to this are left out of the loss (padding, unmasked MLM positions)


def lm_loss(logits: Tensor, tokens: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Mean cross-entropy of ``tokens[:, 1:]`` given ``logits[:, :-1]``.

    logits: (B, T, V); tokens: (B, T). Position t predicts token t + 1, so the last
    logit and the first token have no partner. Targets equal to ``ignore_index`` are skipped.
    """
    require_ndim("logits", logits, 3, "(B, T, V)")
    require_ndim("tokens", tokens, 2, "(B, T)")
    require_same_size("tokens", tokens.shape[0], "logits", logits.shape[0], "B")
    require_same_size("tokens", tokens.shape[1], "logits", logits.shape[1], "T")
    if tokens.shape[1] < 2:
        raise ValueError(f"tokens needs T >= 2 to have a next token to predict, got T={tokens.shape[1]}")
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v).float(), tokens[:, 1:].reshape(-1), ignore_index=ignore_index)


def mlm_mask(
    tokens: Tensor, mask_id: int, vocab_size: int, p: float = 0.15, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """BERT's corruption. tokens (B, T) -> (inputs (B, T), targets (B, T)).

    Each position is chosen with probability p; of those 80% become ``mask_id``, 10% a
    random token, 10% stay. ``targets`` holds the original token at chosen positions and
    ``IGNORE_INDEX`` elsewhere.
    """
    require_ndim("tokens", tokens, 2, "(B, T)")
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
    require_ndim("logits", logits, 3, "(B, T, V)")
    require_ndim("targets", targets, 2, "(B, T)")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX)


def perplexity(loss: float) -> float:
    """exp(loss): the effective number of equally likely next tokens."""
    return math.exp(loss)
