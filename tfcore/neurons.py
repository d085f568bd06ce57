"""MLP units of a trained model (lesson 04): what each hidden unit reads and what it writes.

Block l's MLP is a sum over its d_ff hidden units, ``FFN(x) = sum_i m_i v_i + b_2``: unit i's
activation ``m_i = phi(k_i . x + b_i)`` (a SwiGLU unit: ``SiLU(k_g . x) (k_u . x)``) is the i-th
input of the down projection, its value ``v_i`` the i-th column of that projection's weight.

- ``unit_activations(model, tokens, layer)``: every m_i at every position, (B, T, d_ff);
- ``top_activations(model, tokens, layer, k)``: each unit's k largest activations and where they are;
- ``unit_logit_effect(model, layer)``: what each v_i adds to the logits directly (the logit lens), (d_ff, V);
- ``ablate_units(model, layer, units)``: within a ``with`` block, the chosen units' m_i are 0.

The model is a decoder (or encoder) ``tfcore.model.Transformer``; ``layer`` counts its blocks from 0.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from tfcore._checks import require_int, require_integer_dtype, require_ndim, require_positive_int
from tfcore.model import Transformer
from tfcore.norms import LayerNorm


def _blocks(model: Transformer) -> nn.ModuleList:
    if not isinstance(model, Transformer):
        raise TypeError(f"model must be a tfcore.model.Transformer, got {type(model).__name__}")
    if model.decoder is not None and model.encoder is not None:
        raise ValueError("model is an encoder-decoder: its units are ambiguous here; use a decoder or an encoder model")
    return model.decoder if model.decoder is not None else model.encoder


def down_projection(model: Transformer, layer: int) -> nn.Linear:
    """The down projection W_2 of block ``layer``'s MLP: weight (d_model, d_ff), column i is unit i's value."""
    blocks = _blocks(model)
    require_int("layer", layer)
    if not 0 <= layer < len(blocks):
        raise ValueError(f"layer must lie in [0, n_layers={len(blocks)}), got {layer}")
    mlp = blocks[layer].mlp
    return mlp.fc_out if hasattr(mlp, "fc_out") else mlp.w2


def _check_tokens(model: Transformer, tokens: Tensor) -> None:
    _blocks(model)
    require_ndim("tokens", tokens, 2, "(B, T)")
    require_integer_dtype("tokens", tokens, "token ids")
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"tokens must hold at least one sequence of one token, got shape {tuple(tokens.shape)}")
    limit = model.config.max_seq_len
    if tokens.shape[1] > limit and model.config.positions in ("learned", "sinusoidal"):
        raise ValueError(f"tokens has T={tokens.shape[1]} but the model's max_seq_len={limit} "
                         f"(positions={model.config.positions!r} has no entries beyond it)")


def unit_activations(model: Transformer, tokens: Tensor, layer: int) -> Tensor:
    """tokens (B, T) -> the activations m of block ``layer``'s MLP units, (B, T, d_ff).

    Read by a hook on the input of the down projection during one forward pass (no gradients;
    the model's training mode is left as it is, so use ``model.eval()`` for dropout-free values).
    """
    proj = down_projection(model, layer)
    _check_tokens(model, tokens)
    seen: list[Tensor] = []
    handle = proj.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        handle.remove()
    return seen[0]


def top_activations(model: Transformer, tokens: Tensor, layer: int, k: int = 10,
                    batch_size: int = 128) -> tuple[Tensor, Tensor]:
    """Each unit's ``k`` largest activations over every position of ``tokens`` (N, T), and where they are.

    Returns (values, where): values (d_ff, k), largest first; where (d_ff, k, 2) int64 holding
    (sequence, position) into ``tokens``. The sequences run ``batch_size`` at a time, so only
    (batch_size, T, d_ff) activations are held at once.
    """
    _check_tokens(model, tokens)
    require_positive_int("k", k)
    require_positive_int("batch_size", batch_size)
    n, t = tokens.shape
    if k > n * t:
        raise ValueError(f"k must be at most the number of positions N * T = {n * t}, got {k}")
    best_values: Tensor | None = None
    best_index: Tensor | None = None
    for start in range(0, n, batch_size):
        acts = unit_activations(model, tokens[start:start + batch_size], layer)  # (b, T, d_ff)
        values = acts.reshape(-1, acts.shape[-1]).T  # (d_ff, b * T)
        index = torch.arange(start * t, start * t + values.shape[1]).expand_as(values)
        if best_values is not None:
            values, index = torch.cat((best_values, values), 1), torch.cat((best_index, index), 1)
        keep = min(k, values.shape[1])
        best_values, order = values.topk(keep, dim=1)
        best_index = index.gather(1, order)
    where = torch.stack((best_index // t, best_index % t), dim=-1)
    return best_values, where


def unit_logit_effect(model: Transformer, layer: int) -> Tensor:
    """What each unit of block ``layer`` writes into the logits directly: (d_ff, vocab_size).

    Row i is ``W_U (gamma * (v_i - mean(v_i)))``: the unit's value v_i through the final norm's
    linear part (LayerNorm: centring and gain; RMSNorm: gain; a Post-LN model has no final norm)
    and the unembedding. The final norm's division by the stream's size is a positive factor
    shared by every vocabulary entry, so it changes no ranking within a row. This is the direct
    effect only: what later blocks do with v_i is not in it (``ablate_units`` measures the total).
    """
    v = down_projection(model, layer).weight.detach().T  # (d_ff, d_model): row i is v_i
    norm = model.final_norm if model.decoder is not None else model.encoder_norm
    if model.mlm_dense is not None:
        raise ValueError("model has a masked-LM head (dense + activation before the unembedding): "
                         "its effect on the logits is not linear in v")
    if norm is not None:
        if isinstance(norm, LayerNorm):  # RMSNorm does not centre
            v = v - v.mean(dim=-1, keepdim=True)
        v = v * norm.weight.detach()
    return (v * model.config.output_scale) @ model.unembed.weight.detach().T


@contextlib.contextmanager
def ablate_units(model: Transformer, layer: int, units: int | Sequence[int]) -> Iterator[None]:
    """Within the ``with`` block, units ``units`` of block ``layer``'s MLP have activation 0 (their
    values are not added); on exit the model is as before."""
    proj = down_projection(model, layer)
    chosen = [units] if isinstance(units, (int, bool)) or not isinstance(units, Iterable) else list(units)
    d_ff = proj.weight.shape[1]
    for u in chosen:
        require_int("units", u)
        if not 0 <= u < d_ff:
            raise ValueError(f"units must lie in [0, d_ff={d_ff}), got {u}")

    def hook(module: nn.Module, args: tuple) -> tuple:
        m = args[0].clone()
        m[..., chosen] = 0.0
        return (m,) + tuple(args[1:])

    handle = proj.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()
