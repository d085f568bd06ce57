"""Batches for the training loop (lesson 09): a corpus or a synthetic task as a ``Sampler``.

A sampler is a function ``(batch_size, generator) -> batch``: ``(inputs, targets)`` for a decoder
or an encoder, ``(source, inputs, targets)`` for an encoder-decoder, every item ``(B, T)``.
Targets equal to ``IGNORE_INDEX`` are not scored. All randomness comes from ``generator``, so a
seeded generator replays the same batches (and a checkpoint that saves its state resumes them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Union

import torch
from torch import Tensor

from tfcore._checks import require_integer_dtype
from tfcore.data import copy_batch, digit_task_batch, induction_batch
from tfcore.losses import IGNORE_INDEX, mlm_mask

if TYPE_CHECKING:
    from tfcore.model import Transformer
    from tfcore.train import TrainConfig

Batch = tuple[Tensor, ...]  # (inputs, targets) or (source, inputs, targets), every item (B, ...)
Sampler = Callable[[int, torch.Generator], Batch]  # (global batch size, generator) -> batch


def corpus_sampler(data: Tensor, block_size: int, objective: str = "lm", mask_id: int | None = None,
                   mask_prob: float = 0.15, name: str = "data") -> Sampler:
    """Random windows of a 1-D corpus of ids (N,).

    "lm": windows of ``block_size + 1``; inputs = the first T ids, targets = the last T (shifted).
    "mlm": windows of ``block_size``, corrupted by ``mlm_mask`` with ids below ``mask_id``.
    """
    if data.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of ids (N,), got shape {tuple(data.shape)}")
    require_integer_dtype(name, data, "token ids")
    if len(data) <= block_size + 1:
        raise ValueError(f"{name} has {len(data)} tokens, too few for block_size={block_size}")
    if int(data.min()) < 0:  # read once, here: a negative id would index the embedding from its end
        raise ValueError(f"{name} holds negative token ids (the smallest is {int(data.min())})")
    if objective == "mlm" and mask_id is None:
        raise ValueError("objective='mlm' needs mask_id")
    offsets = torch.arange(block_size + 1)

    def sample(batch_size: int, generator: torch.Generator) -> Batch:
        starts = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
        windows = data[starts[:, None] + offsets]  # (B, T + 1), the same draws as data.random_batch
        if objective == "mlm":
            return mlm_mask(windows[:, :-1], mask_id, mask_id, mask_prob, generator)
        return windows[:, :-1], windows[:, 1:]

    return sample


def induction_sampler(half_len: int, vocab_size: int, min_half_len: int | None = None) -> Sampler:
    """``induction_batch`` as an LM task scored on the repeated half only (the first half is noise).

    With ``min_half_len`` (copies of varying length, see ``induction_batch``) only the tokens that
    can be copied are scored: the second copy after its first token.
    """

    def sample(batch_size: int, generator: torch.Generator) -> Batch:
        if min_half_len is None:
            tokens = induction_batch(batch_size, half_len, vocab_size, generator)
            targets = tokens[:, 1:].clone()
            targets[:, : half_len - 1] = IGNORE_INDEX  # positions whose next token is still random
            return tokens[:, :-1], targets
        tokens, lengths = induction_batch(batch_size, half_len, vocab_size, generator, min_half_len, True)
        targets = tokens[:, 1:].clone()
        first_scored = 2 * half_len - lengths + 1  # token index of the second copy's second token
        targets[torch.arange(1, 2 * half_len)[None, :] < first_scored[:, None]] = IGNORE_INDEX
        return tokens[:, :-1], targets

    return sample


def copy_sampler(length: int, vocab_size: int) -> Sampler:
    """``copy_batch`` (sequence, separator, sequence) scored on the copy after the separator.

    The separator has id ``vocab_size``: give the model ``vocab_size + 1`` ids.
    """

    def sample(batch_size: int, generator: torch.Generator) -> Batch:
        tokens = copy_batch(batch_size, length, vocab_size, generator)
        targets = tokens[:, 1:].clone()
        targets[:, :length] = IGNORE_INDEX
        return tokens[:, :-1], targets

    return sample


def digit_sampler(task: str, length: int) -> Sampler:
    """``digit_task_batch`` for encoder-decoder models: (source, decoder input, target), vocab 11."""

    def sample(batch_size: int, generator: torch.Generator) -> Batch:
        return digit_task_batch(task, batch_size, length, generator)

    return sample


def _checked(sampler: Sampler, name: str) -> Sampler:
    """``sampler``, refusing (by ``name``) a batch that is not (inputs, targets) or (source, inputs, targets)."""
    def sample(batch_size: int, generator: torch.Generator) -> Batch:
        batch = sampler(batch_size, generator)
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3) or \
                not all(isinstance(t, Tensor) and t.dim() == 2 for t in batch):
            shown = type(batch).__name__ if not isinstance(batch, (tuple, list)) else \
                f"{len(batch)} items: " + ", ".join(str(tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__
                                                  for t in batch)
            raise ValueError(f"{name} is a sampler, so it must return (inputs, targets) or (source, inputs, "
                             f"targets), each (B, T) token ids; got {shown}")
        return tuple(batch)
    return sample


def as_sampler(data: Union[Tensor, Sampler], cfg: TrainConfig, model: Transformer, name: str = "data") -> Sampler:
    """A corpus tensor (N,) becomes ``corpus_sampler``; a sampler passes through."""
    if callable(data) and not isinstance(data, Tensor):
        return _checked(data, name)
    if not isinstance(data, Tensor):
        raise TypeError(f"{name} must be a 1-D tensor of token ids (N,) or a sampler "
                        f"(batch_size, generator) -> batch, got {type(data).__name__}")
    mask_id = cfg.mask_id
    if mask_id is None and cfg.objective == "mlm":  # only a masked-LM corpus needs a [MASK] id
        mask_id = model.config.vocab_size - 1
    if cfg.objective == "seq2seq":
        raise ValueError("objective='seq2seq' needs a sampler returning (source, inputs, targets), e.g. digit_sampler")
    vocab_size = getattr(getattr(model, "config", None), "vocab_size", None)
    if mask_id is not None and vocab_size is not None and mask_id >= vocab_size:
        raise ValueError(f"mask_id={mask_id} is not a token of the model's vocabulary [0, vocab_size={vocab_size})")
    sampler = corpus_sampler(data, cfg.block_size, cfg.objective, mask_id, cfg.mask_prob, name=name)
    if vocab_size is not None and callable(getattr(model, "check_token_ids", None)):
        model.check_token_ids(data, name)  # once, here: the steps never read ids back
    return sampler
