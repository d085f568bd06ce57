"""The argument checks of ``Transformer.forward``, ``encode`` and ``generate`` (``tfcore.model``).

Each refuses what the model would misread or silently ignore, with an error naming the argument
and the axis, before any work is done. Like every check in ``tfcore._checks`` they read shapes
and Python numbers only, never tensor values: none of them waits for a GPU. The one check that
reads values, the range of the token ids, is ``Transformer.check_token_ids``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from tfcore._checks import (
    require_float,
    require_int,
    require_integer_dtype,
    require_ndim,
    require_nonempty,
    require_same_size,
    require_tensor,
)
from tfcore.heads import ModelCache
from tfcore.masks import check_mask
from tfcore.sampling import check_sampling

if TYPE_CHECKING:
    from tfcore.model import Transformer


def check_forward_args(model: Transformer, tokens: Tensor, lengths: Tensor | None, source: Tensor | None,
                       source_lengths: Tensor | None, mask: Tensor | None, cache: ModelCache | None,
                       memory: Tensor | None) -> None:
    """Refuse what ``model.forward`` would misread or ignore, naming the argument (shapes only, no values read)."""
    check_token_batch("tokens", tokens)
    b, t = tokens.shape
    arch = model.config.architecture
    if arch != "encoder-decoder":
        given = [n for n, v in (("source", source), ("source_lengths", source_lengths), ("memory", memory))
                 if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} given to a model with architecture={arch!r}, which has no "
                             "cross-attention to use it: only 'encoder-decoder' models take a source")
    else:
        if source is not None and memory is not None:
            raise ValueError("pass source (token ids) or memory (the encoder's output), not both")
        if source is not None:
            check_token_batch("source", source)
            require_same_size("source", source.shape[0], "tokens", b, "B")
        if memory is not None:
            require_ndim("memory", memory, 3, "(B, T_src, d_model)")
            require_float("memory", memory)
            require_nonempty("memory", memory, "(B, T_src, d_model)")
            require_same_size("memory", memory.shape[0], "tokens", b, "B")
            require_same_size("memory", memory.shape[2], "the model", model.config.d_model, "d_model")
        if source_lengths is not None:
            if source is None and memory is None:
                raise ValueError("source_lengths given without source or memory")
            check_lengths("source_lengths", source_lengths, b)
    check_lengths("lengths", lengths, b)
    if cache is not None and not isinstance(cache, ModelCache):
        raise TypeError(f"cache must be a ModelCache, got {type(cache).__name__}")
    if mask is not None:
        t_k = t + (cache.length if cache is not None else 0)
        check_mask(mask, (b, model.config.n_heads, t, t_k), model.embed.weight.device)
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be bool (True = may attend): the model ANDs it with its own masks, got {mask.dtype}")


def check_generate_args(model: Transformer, prompt: Tensor, max_new_tokens: int, temperature: float,
                        top_k: int | None, top_p: float | None, source: Tensor | None) -> Tensor:
    """Refuse what ``model.generate`` cannot use (shapes only); return the prompt as (B, T) token ids."""
    if model.decoder is None:
        raise ValueError("an encoder-only model does not generate: use architecture='decoder' or 'encoder-decoder'")
    require_tensor("prompt", prompt)
    if prompt.dim() not in (1, 2):
        raise ValueError(f"prompt must have shape (B, T) or (T,), got {tuple(prompt.shape)}")
    tokens = prompt.unsqueeze(0) if prompt.dim() == 1 else prompt
    check_token_batch("prompt", tokens)
    require_int("max_new_tokens", max_new_tokens, minimum=0)
    check_sampling(temperature, top_k, top_p, model.config.vocab_size)
    limit = model.config.max_seq_len
    if tokens.shape[1] > limit:
        raise ValueError(f"prompt has {tokens.shape[1]} tokens but max_seq_len={limit}")
    if model.encoder is not None:
        if source is None:
            raise ValueError("an encoder-decoder model generates from a source: pass source=(B, T_src) token ids")
        check_token_batch("source", source)
        require_same_size("source", source.shape[0], "prompt", tokens.shape[0], "B")
    elif source is not None:
        raise ValueError("source given to a decoder-only model, which has no encoder to read it")
    return tokens


def check_token_batch(name: str, tokens: Tensor) -> None:
    """tokens: (B, T) ids of an index dtype (int64 or int32), B, T >= 1. Shapes and dtype only."""
    if isinstance(tokens, Tensor) and tokens.dim() == 2 and tokens.dtype in (torch.long, torch.int) \
            and tokens.shape[0] > 0 and tokens.shape[1] > 0:
        return  # the common case in one test (it runs at every decoding step)
    require_ndim(name, tokens, 2, "(B, T)")
    if tokens.dtype not in (torch.long, torch.int):
        kind = "integer ids" if tokens.is_floating_point() else f"ids of dtype torch.long or torch.int ({name}.long())"
        raise TypeError(f"{name} must be {kind}, got dtype {tokens.dtype}")
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"{name} has shape (B, T) = {tuple(tokens.shape)}: it needs at least one sequence of one token")


def check_lengths(name: str, lengths: Tensor | list[int] | None, batch: int) -> None:
    """lengths: (B,) integers, one per sequence (their values are checked by ``padding_mask``)."""
    if lengths is None:
        return
    if not isinstance(lengths, Tensor):
        try:
            lengths = torch.as_tensor(lengths)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a tensor or list of integers (B,), got {lengths!r}") from None
    require_ndim(name, lengths, 1, "(B,)")
    require_integer_dtype(name, lengths)
    require_same_size(name, lengths.shape[0], "source" if name == "source_lengths" else "tokens", batch, "B")
