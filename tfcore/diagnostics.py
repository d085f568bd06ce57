"""Diagnostics (lessons 02, 03 and 10): tools that find bugs, and circuits, without reading the code.

- ``attention_entropy``: H_i = -sum_j a_ij log a_ij, against ``uniform_attention_entropy`` (log T_k for a
  row that sees every key, log(i + 1) for causal row i);
  ``normalised_entropy``, ``head_entropy`` and ``classify_heads`` per head of a whole model;
- ``leakage_by_perturbation`` / ``leakage_by_jacobian``: does output i depend on input j > i?
  ``leakage_test``, ``influence_matrix`` and ``padding_leakage`` run the same test on a whole model;
- ``residual_norms`` / ``ResidualNormRecorder``: ||F_l(x_l)|| / ||x_l|| per block, by forward hooks;
- ``ablate_heads`` (zero or mean ablation), ``head_means``, ``head_ablation_effects``;
- the induction circuit (lesson 03): ``previous_token_scores`` and ``induction_scores`` from attention
  weights; from the weights alone, ``composition_scores`` (Q-, K-, V-composition of two layers' heads)
  and ``ov_copying_scores``, each with a random-head baseline (``random_composition_scores``,
  ``random_ov_copying_scores``), built on ``head_weights``, ``norm_matrix``, ``qk_matrix``, ``ov_matrix``,
  ``composition_score`` and ``copying_score``;
- ``gradient_norms`` (per block), ``layer_gradient_norms`` (one parameter per block: lesson 05), ``overfit_batch``;
- ``debugging_checklist(model, batch, vocab_size)``: all of the above as one ``ChecklistReport``;
- helpers for the lessons' printouts and plots: ``bounded``, ``max_diff``, ``moving_average``.
"""

from __future__ import annotations

import contextlib
import copy
import html
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn

from tfcore._checks import (
    require_choice, require_float, require_int, require_min_ndim, require_ndim, require_number,
    require_positive_int, require_tensor,
)
from tfcore.heads import MultiHeadAttention


def bounded(error: float | Tensor, tol: float = 1e-6, digits: int = 1) -> str:
    """``"< tol"`` when ``error < tol``, else ``"= error"``: how to print a rounding-level error.

    Float rounding differs between CPUs and kernels, so the digits of an error that small do not
    repeat from machine to machine; the bound does. Choose ``tol`` for the size and dtype of the
    values compared (about 1e-6 for float32 values of order 1).
    """
    if isinstance(error, Tensor):
        if error.numel() != 1 or error.is_complex() or error.dtype == torch.bool:
            raise ValueError(f"error must be one real number, got a tensor of shape {tuple(error.shape)} "
                             f"and dtype {error.dtype} (take .abs().max() of a difference first)")
    elif isinstance(error, bool) or not isinstance(error, numbers.Real):
        raise TypeError(f"error must be a number or a one-element tensor, got {type(error).__name__}")
    require_int("digits", digits, minimum=0)
    require_number("tol", tol, 0, None, low_open=True)
    error = float(error)
    return f"< {tol:.0e}" if error < tol else f"= {error:.{digits}e}"


def max_diff(label: str, a: Tensor, b: Tensor, tol: float = 1e-6) -> None:
    """Print ``label: max |difference| < tol`` (or ``= value``) for two tensors of one shape."""
    require_tensor("a", a)
    require_tensor("b", b)
    if a.shape != b.shape:
        raise ValueError(f"{label}: b has shape {tuple(b.shape)} but a has shape {tuple(a.shape)}: max_diff compares "
                         "tensors of one shape (broadcasting would compare other entries than meant)")
    print(f"{label}: max |difference| {bounded((a - b).abs().max(), tol, digits=2)}")


def moving_average(values: Iterable[float] | Tensor, window: int) -> Tensor:
    """Means of each ``window`` consecutive values: (n,) -> (n - window + 1,), float64.

    Entry i averages values[i .. i + window - 1], so plot it against x positions
    ``window - 1 ..`` (the last step averaged) or ``window // 2 ..`` (the centre).
    """
    values = torch.as_tensor(values, dtype=torch.float64).flatten()
    if not 1 <= window <= len(values):
        raise ValueError(f"window must lie in [1, {len(values)}] (the number of values), got {window}")
    return values.unfold(0, window, 1).mean(dim=1)


def attention_entropy(weights: Tensor) -> Tensor:
    """Entropy of each attention row, natural log, with 0 log 0 = 0. (..., T_q, T_k) -> (..., T_q)."""
    require_tensor("weights", weights)
    if weights.dim() < 2:
        raise ValueError(f"weights must have shape (..., T_q, T_k), got {tuple(weights.shape)}")
    require_float("weights", weights)
    logs = torch.where(weights > 0, weights.log(), torch.zeros_like(weights))
    return -(weights * logs).sum(dim=-1)


def uniform_attention_entropy(t_q: int, t_k: int, causal: bool = False) -> Tensor:
    """Entropy (nats) of uniform attention over the keys each query sees: (T_q,) float64, log(visible keys).

    Without a mask every query sees T_k keys (log T_k). Under a causal mask query i, aligned to the last
    key, sees i + 1 + T_k - T_q keys: the mean over a square causal matrix is log(T!) / T, less than log T.
    """
    require_positive_int("t_q", t_q)
    require_positive_int("t_k", t_k)
    if causal and t_q > t_k:
        raise ValueError(f"a causal mask with t_q={t_q} > t_k={t_k} leaves the first queries no key to see")
    visible = torch.arange(1 + t_k - t_q, t_k + 1, dtype=torch.float64) if causal else torch.full((t_q,), float(t_k))
    return visible.log()


def leakage_by_perturbation(f: Callable[[Tensor], Tensor], tokens: Tensor, vocab_size: int, position: int,
                            atol: float = 1e-6) -> list[int]:
    """Change the token at ``position`` and list the earlier output positions that moved.

    f: tokens (B, T) -> outputs (B, T, ...). A causal model returns []. Changing token j
    may only change outputs i >= j.
    """
    _require_vocab(vocab_size)
    if not 0 <= position < tokens.shape[1]:
        raise ValueError(f"position must lie in [0, T={tokens.shape[1]}), got {position}")
    changed = tokens.clone()
    changed[:, position] = (changed[:, position] + 1) % vocab_size
    with torch.no_grad():
        before, after = f(tokens), f(changed)
    moved = (before - after).abs().flatten(2).amax(dim=(0, 2)) > atol  # (T,)
    return [i for i in range(position) if moved[i]]


def _require_vocab(vocab_size: object) -> None:
    """The perturbation tests replace a token by (id + 1) mod vocab_size: that needs two ids at least."""
    require_int("vocab_size", vocab_size, minimum=2)


def leakage_by_jacobian(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Influence of input j on output i: ``J[i, j] = ||d y_i / d x_j||`` for one sequence.

    f: x (1, T, d_in) -> y (1, T, d_out), e.g. a model applied to embeddings. Returns (T, T);
    for a causal f it is zero above the diagonal.
    """
    if x.dim() != 3 or x.shape[0] != 1:
        raise ValueError(f"x must have shape (1, T, d_in), got {tuple(x.shape)}")
    jac = torch.autograd.functional.jacobian(lambda inp: f(inp)[0], x)  # (T, d_out, 1, T, d_in)
    return jac[:, :, 0].pow(2).sum(dim=(1, 3)).sqrt()


# =============================================================================================
# Lesson 10: whole-model diagnostics. Everything below runs on any ``tfcore.model.Transformer``
# (decoder, encoder or encoder-decoder) and leaves the model as it found it: same weights, same
# training mode, no hooks left behind.
# =============================================================================================

STATUSES = ("pass", "warn", "fail", "info", "skip")


def _blocks(model: nn.Module) -> dict[str, nn.Module]:
    """The residual blocks of a tfcore model by name, e.g. {"decoder.0": Block, ...}, encoder first."""
    out: dict[str, nn.Module] = {}
    for stack in ("encoder", "decoder"):
        for i, block in enumerate(getattr(model, stack, None) or []):
            out[f"{stack}.{i}"] = block
    if not out:
        raise ValueError("the model has no encoder or decoder blocks (expected a tfcore Transformer)")
    return out


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``with eval_mode(model):`` eval mode and no gradients inside, the previous mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _forward(model: nn.Module, tokens: Tensor, source: Tensor | None = None, **kwargs: Any) -> Tensor:
    if source is not None:
        kwargs["source"] = source
    return model(tokens, **kwargs)


# ----------------------------------------------------------------------------- residual norms


class ResidualNormRecorder:
    """Forward hooks that record ``||F_l(x_l)|| / ||x_l||`` for every block at every forward pass.

    F_l(x_l) = block(x_l) - x_l is what block l writes to the residual stream; the ratio says how
    much it changes the stream (Frobenius norms over the whole batch). Use as a context manager::

        with ResidualNormRecorder(model) as rec:
            model(tokens)
        rec.last            # {"decoder.0": 0.41, "decoder.1": 0.37}
        rec.history         # {"decoder.0": [ratio of each forward pass], ...}

    The hooks are removed on exit (also when an exception is raised).
    """

    def __init__(self, model: nn.Module, blocks: Mapping[str, nn.Module] | None = None) -> None:
        self.blocks = dict(blocks) if blocks is not None else _blocks(model)
        self.history: dict[str, list[float]] = {name: [] for name in self.blocks}
        self._handles: list[Any] = []

    def _hook(self, name: str):
        def hook(module, args, kwargs, out):
            x = args[0] if args else kwargs["x"]
            update = out.detach().float() - x.detach().float()
            self.history[name].append(float(update.norm() / x.detach().float().norm().clamp_min(1e-30)))

        return hook

    def __enter__(self) -> "ResidualNormRecorder":
        self._handles = [b.register_forward_hook(self._hook(n), with_kwargs=True) for n, b in self.blocks.items()]
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @property
    def last(self) -> dict[str, float]:
        """The ratio of the latest forward pass per block (NaN for a block that has not run)."""
        return {n: (v[-1] if v else float("nan")) for n, v in self.history.items()}


def residual_norms(model: nn.Module, tokens: Tensor, source: Tensor | None = None, **kwargs: Any) -> dict[str, float]:
    """``||F_l(x_l)|| / ||x_l||`` per block from one forward pass (eval mode, no gradients).

    tokens: (B, T) ids; source: the encoder's tokens for an encoder-decoder model; other keyword
    arguments go to ``model(...)`` (e.g. ``lengths``). Returns {block name: ratio}, encoder first.
    A ratio near 0 means a block that writes (almost) nothing; far above 1, a block that
    overwrites the stream.
    """
    with ResidualNormRecorder(model) as rec, eval_mode(model):
        _forward(model, tokens, source, **kwargs)
    return rec.last


# ----------------------------------------------------------------------------- head ablation


def _attention_layers(model: nn.Module) -> dict[str, nn.Module]:
    layers = model.attention_layers() if hasattr(model, "attention_layers") else {}
    if not layers:
        raise ValueError("the model has no attention layers (expected a tfcore Transformer)")
    return layers


def _normalise_heads(model: nn.Module, heads: Any) -> dict[str, list[int]]:
    """{layer: [heads]} from a dict or from (layer, head) pairs; names and indices validated."""
    layers = _attention_layers(model)
    pairs = heads.items() if isinstance(heads, Mapping) else None
    out: dict[str, list[int]] = {}
    if pairs is None:
        for item in heads:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise TypeError(f"heads must be {{layer name: [head, ...]}} or (layer name, head) pairs, got {item!r}")
            out.setdefault(item[0], []).append(item[1])
    else:
        for name, hs in pairs:
            out[name] = [hs] if isinstance(hs, int) else list(hs)
    for name, hs in out.items():
        if name not in layers:
            raise KeyError(f"no attention layer {name!r}; the model has {list(layers)}")
        n = layers[name].n_heads
        for h in hs:
            if not isinstance(h, int) or not 0 <= h < n:
                raise ValueError(f"head index {h!r} out of range for {name!r}, which has n_heads={n}")
    return out


def head_means(model: nn.Module, tokens: Tensor, source: Tensor | None = None, **kwargs: Any) -> dict[str, Tensor]:
    """Mean output of every head over a reference batch: {layer: (h, d_head)}.

    The mean is taken over batch and positions of each head's output (the input of ``out_proj``,
    before the heads are mixed). Mean ablation replaces a head by this constant: the head still
    adds its average contribution, but no longer depends on the input.
    """
    layers = _attention_layers(model)
    sums: dict[str, Tensor] = {}

    def hook_for(name: str, layer: nn.Module):
        def hook(module, args):
            z = args[0].detach().float()  # (B, T, h * d_head)
            z = z.reshape(-1, layer.n_heads, layer.d_head)
            sums[name] = z.mean(dim=0)

        return hook

    handles = [m.out_proj.register_forward_pre_hook(hook_for(n, m)) for n, m in layers.items()]
    try:
        with eval_mode(model):
            _forward(model, tokens, source, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return sums


@contextlib.contextmanager
def ablate_heads(model: nn.Module, heads: Any, mode: str = "zero", means: Mapping[str, Tensor] | None = None,
                 reference: Tensor | None = None) -> Iterator[None]:
    """Within the ``with`` block the chosen heads are ablated; on exit everything is restored.

    heads: {layer name: [head, ...]} or an iterable of (layer name, head) pairs, names as in
    ``model.attention_layers()`` (e.g. "decoder.1.attn"). mode: "zero" sets the heads' outputs
    to 0 (through ``MultiHeadAttention.head_mask``); "mean" replaces them by their mean output on
    a reference batch: pass ``means`` from ``head_means`` or ``reference`` tokens (B, T).
    """
    chosen = _normalise_heads(model, heads)
    layers = _attention_layers(model)
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode must be 'zero' or 'mean', got {mode!r}")
    if mode == "mean" and means is None:
        if reference is None:
            raise ValueError("mode='mean' needs means=head_means(model, tokens) or reference=tokens")
        means = head_means(model, reference)
    saved = {name: layers[name].head_mask for name in chosen}
    handles = []
    try:
        for name, hs in chosen.items():
            layer = layers[name]
            if mode == "zero":
                mask = torch.ones(layer.n_heads) if saved[name] is None else saved[name].detach().clone().float()
                mask[hs] = 0.0
                layer.head_mask = mask
            else:
                mean = means[name]
                idx = list(hs)

                def hook(module, args, layer=layer, mean=mean, idx=idx):
                    z = args[0]
                    b, t, _ = z.shape
                    z = z.reshape(b, t, layer.n_heads, layer.d_head).clone()
                    z[:, :, idx] = mean[idx].to(z)
                    return (z.reshape(b, t, -1),) + tuple(args[1:])

                handles.append(layer.out_proj.register_forward_pre_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()
        for name, mask in saved.items():
            layers[name].head_mask = mask


def _default_loss(model: nn.Module, tokens: Tensor, source: Tensor | None, **kwargs: Any) -> Tensor:
    from tfcore.losses import lm_loss

    return lm_loss(_forward(model, tokens, source, **kwargs), tokens)


def head_ablation_effects(model: nn.Module, tokens: Tensor, mode: str = "zero", reference: Tensor | None = None,
                          loss_fn: Callable[[nn.Module], Tensor] | None = None,
                          source: Tensor | None = None) -> tuple[float, dict[str, Tensor]]:
    """Ablate one head at a time and measure the loss: (base loss, {layer: (h,) loss increases}).

    loss_fn(model) -> scalar loss; default: the shifted LM loss of ``tokens`` (decoders).
    mode "mean" takes the head means on ``reference`` (default: ``tokens`` themselves).
    A large increase marks a head the model relies on; about 0, a head it can do without.
    """
    if loss_fn is None:
        if getattr(model, "decoder", None) is None:
            raise ValueError("an encoder-only model needs loss_fn(model) -> loss (e.g. an MLM loss)")

        def loss_fn(m: nn.Module) -> Tensor:
            return _default_loss(m, tokens, source)

    means = head_means(model, tokens if reference is None else reference, source) if mode == "mean" else None
    with eval_mode(model):
        base = float(loss_fn(model))
        effects: dict[str, Tensor] = {}
        for name, layer in _attention_layers(model).items():
            deltas = torch.zeros(layer.n_heads)
            for h in range(layer.n_heads):
                with ablate_heads(model, {name: [h]}, mode=mode, means=means):
                    deltas[h] = float(loss_fn(model)) - base
            effects[name] = deltas
    return base, effects


# ----------------------------------------------------------------------------- the induction circuit (lesson 03)
# Scores read from attention weights, then scores read from the weights alone (Elhage et al. 2021, "A
# Mathematical Framework for Transformer Circuits"), in that paper's column-vector convention: a head computes
# q = W_Q x, k = W_K x, v = W_V x and writes W_O z into the residual stream. nn.Linear stores exactly these
# matrices (weight: (out, in)), so W_QK = W_Q^T W_K and W_OV = W_O W_V are (d_model, d_model).

COMPOSITIONS = ("q", "k", "v")


def _square_weights(weights: Tensor, minimum: int) -> int:
    require_ndim("weights", weights, 4, "(B, h, T, T)")
    t = weights.shape[-1]
    if weights.shape[-2] != t:
        raise ValueError(f"weights must be self-attention weights (B, h, T, T), got T_q={weights.shape[-2]} "
                         f"and T_k={t}")
    if t < minimum:
        raise ValueError(f"weights have T={t} positions; this score needs at least {minimum}")
    return t


def previous_token_scores(weights: Tensor) -> Tensor:
    """Mean attention of query t on key t - 1 per head: (B, h, T, T) -> (h,), over the batch and t = 1 .. T-1."""
    t = _square_weights(weights, 2)
    q = torch.arange(1, t, device=weights.device)
    return weights[:, :, q, q - 1].mean(dim=(0, 2))


def induction_scores(weights: Tensor, period: int) -> Tensor:
    """Mean attention of query t on key t - period + 1 per head: (B, h, T, T) -> (h,), for t = period .. T-1.

    For sequences that repeat after ``period`` tokens (token t = token t - period in the repeat), key
    t - period + 1 holds the token that followed the earlier occurrence of token t: where an induction
    head looks. Uniform causal attention would give query t the weight 1 / (t + 1).
    """
    t = _square_weights(weights, 2)
    require_int("period", period, minimum=1)
    if period >= t:
        raise ValueError(f"period must be smaller than T={t} (the sequence must repeat), got {period}")
    q = torch.arange(period, t, device=weights.device)
    return weights[:, :, q, q - period + 1].mean(dim=(0, 2))


def head_weights(layer: MultiHeadAttention, head: int) -> dict[str, Tensor]:
    """One head's ``W_Q``, ``W_K``, ``W_V`` (d_head, d_model) and ``W_O`` (d_model, d_head), float64 copies.

    Column-vector convention: q = W_Q x (rows of ``q_proj.weight``), the head writes W_O z (columns of
    ``out_proj.weight``). With GQA, W_K and W_V are those of the key/value head that query head reads.
    """
    if not isinstance(layer, MultiHeadAttention):
        raise TypeError(f"layer must be a tfcore MultiHeadAttention, got {type(layer).__name__}")
    require_int("head", head, minimum=0)
    if head >= layer.n_heads:
        raise ValueError(f"head index {head} out of range for a layer with n_heads={layer.n_heads}")
    dh = layer.d_head
    kv = head // (layer.n_heads // layer.n_kv_heads)
    rows, kv_rows = slice(head * dh, (head + 1) * dh), slice(kv * dh, (kv + 1) * dh)
    with torch.no_grad():
        return {"W_Q": layer.q_proj.weight[rows].double(), "W_K": layer.k_proj.weight[kv_rows].double(),
                "W_V": layer.v_proj.weight[kv_rows].double(), "W_O": layer.out_proj.weight[:, rows].double()}


def norm_matrix(norm: nn.Module | None, d_model: int) -> Tensor:
    """The linear part of a norm as a (d_model, d_model) float64 matrix acting on column vectors.

    LayerNorm: diag(g) (I - 1 1^T / d), centring then the gain g; RMSNorm: diag(g); None: I. Left out: the
    division by the (root) mean square, one positive number per position that rescales whatever reads it,
    and the bias. Weights that read the norm's output are folded with it: W_K N, W_V N.
    """
    from tfcore.norms import LayerNorm, RMSNorm

    eye = torch.eye(d_model, dtype=torch.float64)
    if norm is None:
        return eye
    if not isinstance(norm, (LayerNorm, RMSNorm, nn.LayerNorm, nn.RMSNorm)):
        raise TypeError(f"norm must be a LayerNorm or RMSNorm (or None), got {type(norm).__name__}")
    gain = norm.weight.detach().double() if norm.weight is not None else torch.ones(d_model, dtype=torch.float64)
    centre = eye - 1.0 / d_model if isinstance(norm, (LayerNorm, nn.LayerNorm)) else eye
    return gain[:, None] * centre


def _self_attention(model: nn.Module, name: str) -> tuple[MultiHeadAttention, Tensor]:
    """The self-attention layer ``name`` and the matrix of the norm it reads through (pre-LN, parallel)."""
    layers = _attention_layers(model)
    if name not in layers:
        raise KeyError(f"no attention layer {name!r}; the model has {list(layers)}")
    if not name.endswith(".attn"):
        raise ValueError(f"{name!r} is a cross-attention layer: its keys and values read the encoder's output, "
                         "not the residual stream; circuit scores need self-attention layers")
    placement = getattr(getattr(model, "config", None), "placement", "pre")
    if placement == "post":
        raise ValueError("circuit scores fold the norm that each layer reads through (pre-LN or parallel "
                         "blocks); a Post-LN block normalises after the residual addition: not supported")
    block = model.get_submodule(name.rsplit(".", 1)[0])
    return layers[name], norm_matrix(block.norm_attn, layers[name].d_model)


def qk_matrix(layer: MultiHeadAttention, head: int, norm: Tensor | None = None, offset: int = 0) -> Tensor:
    """W_QK = N^T W_Q^T R W_K N of one head, (d_model, d_model) float64: score = x_query^T W_QK x_key (unscaled).

    norm: the (d_model, d_model) matrix of the norm the layer reads through (``norm_matrix``; None: I).
    With RoPE, R rotates by the relative position: ``offset`` = query position - key position (0: R = I).
    """
    require_int("offset", offset, minimum=0)
    w = head_weights(layer, head)
    n = torch.eye(layer.d_model, dtype=torch.float64) if norm is None else norm
    q, k = w["W_Q"] @ n, w["W_K"] @ n
    if layer.rope_base is None:
        return q.T @ k
    from tfcore.positions import rope

    # rope() rotates row vectors: row i of rope(I, p) is (R_p e_i)^T, so rope(I, p) = R_p^T = R_{-p}, and a
    # query at m and a key at n = m - offset score (R_m q) . (R_n k) = q^T R_{n - m} k = q^T rope(I, offset) k
    eye = torch.eye(layer.d_head, dtype=torch.float64)
    rotation = rope(eye, torch.full((layer.d_head,), offset), layer.rope_base, layer.rope_layout, layer.rope_scaling)
    return q.T @ rotation @ k


def ov_matrix(layer: MultiHeadAttention, head: int, norm: Tensor | None = None) -> Tensor:
    """W_OV = W_O W_V N of one head, (d_model, d_model) float64: what the head writes for a value input x."""
    w = head_weights(layer, head)
    n = torch.eye(layer.d_model, dtype=torch.float64) if norm is None else norm
    return w["W_O"] @ w["W_V"] @ n


def composition_score(reader: Tensor, writer: Tensor) -> Tensor:
    """||reader writer||_F / (||reader||_F ||writer||_F) for (..., d, d) matrices: at most 1.

    How much of what ``writer`` puts into the residual stream ``reader`` reads; about 1/sqrt(d) for
    independent random matrices.
    """
    if reader.shape[-1] != writer.shape[-2]:
        raise ValueError(f"reader has {reader.shape[-1]} columns but writer has {writer.shape[-2]} rows")
    norm = torch.linalg.matrix_norm
    return norm(reader @ writer) / (norm(reader) * norm(writer))


def _reader_matrix(layer: MultiHeadAttention, head: int, norm: Tensor, kind: str, offset: int) -> Tensor:
    if kind == "v":
        return ov_matrix(layer, head, norm)
    qk = qk_matrix(layer, head, norm, offset)
    return qk if kind == "k" else qk.T


def composition_scores(model: nn.Module, writer: str, reader: str, kind: str = "k", offset: int = 0) -> Tensor:
    """Composition of every head of layer ``writer`` with every head of a later layer ``reader``: (h_w, h_r).

    score[i, j] = composition_score(M_j, W_OV^i) with M_j the reader head's
    - "k": W_QK (its keys read what head i wrote at the key's position; an induction head's keys read
      the previous-token head's output),
    - "q": W_QK^T (its queries read it), "v": W_OV (its values read it).
    Norms are folded into the weights that read them (``norm_matrix``), biases left out. offset: the
    query-key distance of RoPE's rotation in W_QK (``qk_matrix``). Compare with
    ``random_composition_scores``.
    """
    require_choice("kind", kind, COMPOSITIONS)
    w_layer, w_norm = _self_attention(model, writer)
    r_layer, r_norm = _self_attention(model, reader)
    order = list(_attention_layers(model))
    if order.index(writer) >= order.index(reader):
        raise ValueError(f"reader {reader!r} must come after writer {writer!r}: a layer reads only what earlier "
                         "layers wrote")
    writes = torch.stack([ov_matrix(w_layer, i, w_norm) for i in range(w_layer.n_heads)])  # (h_w, d, d)
    reads = torch.stack([_reader_matrix(r_layer, j, r_norm, kind, offset) for j in range(r_layer.n_heads)])
    return composition_score(reads[None, :], writes[:, None])


def random_composition_scores(d_model: int, d_head: int, kind: str = "k", samples: int = 1000,
                              seed: int = 0) -> Tensor:
    """Composition scores of pairs of random heads, (samples,) float64: the baseline for trained scores.

    W_Q, W_K, W_V, W_O standard normal, as at initialisation up to a scale the score ignores, no norms,
    no rotation. The mean is about 1/sqrt(d_model): random directions in d_model dimensions barely overlap.
    """
    require_choice("kind", kind, COMPOSITIONS)
    for name, value in (("d_model", d_model), ("d_head", d_head), ("samples", samples)):
        require_positive_int(name, value)
    g = torch.Generator().manual_seed(seed)

    def draw(*shape: int) -> Tensor:
        return torch.randn(samples, *shape, generator=g, dtype=torch.float64)

    writes = draw(d_model, d_head) @ draw(d_head, d_model)  # W_O W_V
    if kind == "v":
        reads = draw(d_model, d_head) @ draw(d_head, d_model)
    else:
        reads = draw(d_head, d_model).transpose(1, 2) @ draw(d_head, d_model)  # W_Q^T W_K
    return composition_score(reads, writes)


def _ov_core(model: nn.Module, norm: Tensor) -> Tensor:
    """C = N E^T U F, (d_model, d_model) float64: a head's full OV circuit U F W_O W_V N E^T has the non-zero
    eigenvalues of the (d_head, d_head) matrix W_V C W_O.

    E: token embeddings (times the model's embedding scale and through its embedding norm, if any), U: the
    unembedding, N: the norm the layer reads through, F: the final norm (``norm_matrix``).
    """
    if getattr(model, "mlm_dense", None) is not None:
        raise ValueError("the model has a masked-LM head (dense + activation + norm) before the unembedding: "
                         "not linear, so its OV circuits have no matrix")
    final = model.final_norm if model.final_norm is not None else getattr(model, "encoder_norm", None)
    d = norm.shape[0]
    with torch.no_grad():
        embed = model.embed.weight.double().T * float(model.embed_scale)  # (d, V)
        if getattr(model, "embed_norm", None) is not None:
            embed = norm_matrix(model.embed_norm["decoder" if model.decoder is not None else "encoder"], d) @ embed
        return norm @ embed @ model.unembed.weight.double() @ norm_matrix(final, d)


def copying_score(eigenvalues: Tensor) -> Tensor:
    """sum(lambda) / sum(|lambda|) over the last axis, (..., n) -> (...): 1 when every eigenvalue is positive,
    -1 when every one is negative."""
    return eigenvalues.sum(dim=-1).real / eigenvalues.abs().sum(dim=-1)


def ov_copying_scores(model: nn.Module, layer: str) -> Tensor:
    """Copying score of each head's full OV circuit in layer ``layer``: (h,) in [-1, 1] (Elhage et al. 2021).

    The full OV circuit M = U F W_O W_V N E^T is (vocab, vocab): column s holds the logits the head adds
    when it attends to token s (the direct path: embedding -> head -> unembedding, biases and the other
    layers left out). Score = sum(lambda) / sum(|lambda|) over M's eigenvalues: near 1 when the head raises
    the logit of the very token it attends to (copying), about 0 for random heads
    (``random_ov_copying_scores``). The non-zero eigenvalues of M are those of W_V C W_O (``_ov_core``).
    """
    attn, norm = _self_attention(model, layer)
    core = _ov_core(model, norm)
    heads = [head_weights(attn, i) for i in range(attn.n_heads)]
    small = torch.stack([w["W_V"] @ core @ w["W_O"] for w in heads])  # (h, d_head, d_head)
    return copying_score(torch.linalg.eigvals(small))


def random_ov_copying_scores(model: nn.Module, layer: str, samples: int = 200, seed: int = 0) -> Tensor:
    """Copying scores with standard normal W_V, W_O of the layer's head shape: (samples,) float64.

    The baseline for ``ov_copying_scores``: the model's embeddings, norms and unembedding, random heads.
    """
    require_positive_int("samples", samples)
    attn, norm = _self_attention(model, layer)
    core = _ov_core(model, norm)
    g = torch.Generator().manual_seed(seed)
    w_v = torch.randn(samples, attn.d_head, attn.d_model, generator=g, dtype=torch.float64)
    w_o = torch.randn(samples, attn.d_model, attn.d_head, generator=g, dtype=torch.float64)
    return copying_score(torch.linalg.eigvals(w_v @ core @ w_o))


# ----------------------------------------------------------------------------- attention entropy per head


def normalised_entropy(weights: Tensor, causal: bool = False) -> Tensor:
    """Entropy of each row divided by that of a uniform row over the visible keys: (..., T_q).

    1 = uniform over every visible key (diffuse), 0 = one key (collapsed). With ``causal`` the
    query at row i (aligned to the last key) sees i + 1 + (T_k - T_q) keys, else all T_k. Rows
    with a single visible key have no spread to measure and give NaN.
    """
    require_min_ndim("weights", weights, 2, "(..., T_q, T_k)")
    t_q, t_k = weights.shape[-2], weights.shape[-1]
    visible = (torch.arange(t_q, dtype=torch.float64) + 1 + (t_k - t_q)) if causal else torch.full((t_q,), float(t_k))
    uniform = visible.log().to(weights.device)
    h = attention_entropy(weights).double()
    out = torch.where(uniform > 0, h / uniform.clamp_min(1e-30), torch.full_like(h, float("nan")))
    return out.to(weights.dtype if weights.is_floating_point() else torch.float32)


def _is_causal_layer(name: str) -> bool:
    """Decoder self-attention is causal; encoder and cross-attention layers see every key."""
    return name.startswith("decoder.") and name.endswith(".attn")


def head_entropy(model: nn.Module, tokens: Tensor, source: Tensor | None = None,
                 **kwargs: Any) -> dict[str, dict[str, Tensor]]:
    """Per layer: {"entropy": (h,) mean H in nats, "normalised": (h,) mean H / H_uniform, "weights": (B, h, T_q, T_k)}.

    Weights come from ``capture_attention`` on one forward pass (eval mode); decoder
    self-attention is measured against a causal uniform row, everything else against log T_k.
    """
    from tfcore.model import capture_attention

    with eval_mode(model), capture_attention(model) as captured:
        _forward(model, tokens, source, **kwargs)
    out = {}
    for name, w in captured.items():
        if w is None:
            continue
        norm = normalised_entropy(w.float(), causal=_is_causal_layer(name))
        out[name] = {"entropy": attention_entropy(w.float()).mean(dim=(0, 2)),
                     "normalised": torch.nanmean(norm, dim=(0, 2)) if norm.isfinite().any() else norm.mean(dim=(0, 2)),
                     "weights": w}
    return out


def classify_heads(normalised: Mapping[str, Tensor], collapsed: float = 0.2, diffuse: float = 0.9) -> dict[str, list]:
    """{"collapsed": [(layer, head, value)], "diffuse": [...]} from per-layer (h,) normalised entropies."""
    require_number("collapsed", collapsed)
    require_number("diffuse", diffuse)
    if collapsed > diffuse:
        raise ValueError(f"collapsed={collapsed!r} is above diffuse={diffuse!r}: a head is collapsed below the first "
                         "threshold and diffuse above the second (swapped arguments?)")
    out: dict[str, list] = {"collapsed": [], "diffuse": []}
    for name, values in normalised.items():
        for h, v in enumerate(values.tolist()):
            if v < collapsed:
                out["collapsed"].append((name, h, v))
            elif v > diffuse:
                out["diffuse"].append((name, h, v))
    return out


# ----------------------------------------------------------------------------- whole-model mask tests


def influence_matrix(model: nn.Module, tokens: Tensor, vocab_size: int, source: Tensor | None = None,
                     **kwargs: Any) -> Tensor:
    """How far each output moves when one input token changes: ``M[i, j] = max |Δ logits_i|`` for token j.

    tokens: (B, T). Token j is replaced by (id + 1) mod vocab_size in every row, one position at a
    time (T + 1 forward passes, eval mode). Returns (T, T): a causal model is zero above the
    diagonal (j > i); a bidirectional one is not. A picture of the same question as
    ``leakage_by_jacobian``, from the tokens instead of the embeddings.
    """
    _require_vocab(vocab_size)
    t = tokens.shape[1]
    out = torch.zeros(t, t)
    with eval_mode(model):
        before = _forward(model, tokens, source, **kwargs).float()
        for j in range(t):
            changed = tokens.clone()
            changed[:, j] = (changed[:, j] + 1) % vocab_size
            out[:, j] = (_forward(model, changed, source, **kwargs).float() - before).abs().flatten(2).amax(dim=(0, 2)).cpu()
    return out


def leakage_test(model: nn.Module, tokens: Tensor, vocab_size: int, positions: Iterable[int] | None = None,
                 source: Tensor | None = None, atol: float = 1e-5, **kwargs: Any) -> dict[int, list[int]]:
    """The lesson 02 leakage test on a whole model: {changed position j: earlier outputs i < j that moved}.

    Changes the token at each position j (all positions by default, at most 64 of them spread
    evenly) and lists the outputs i < j whose logits moved by more than ``atol``. A causal
    decoder gives [] everywhere; a bidirectional encoder gives [0, ..., j - 1].
    """
    _require_vocab(vocab_size)
    t = tokens.shape[1]
    if positions is None:
        positions = range(1, t) if t <= 65 else sorted({round(1 + k * (t - 2) / 63) for k in range(64)})
    out: dict[int, list[int]] = {}
    with eval_mode(model):
        before = _forward(model, tokens, source, **kwargs).float()
        for j in positions:
            if not 0 <= j < t:
                raise ValueError(f"position must lie in [0, T={t}), got {j}")
            changed = tokens.clone()
            changed[:, j] = (changed[:, j] + 1) % vocab_size
            moved = (_forward(model, changed, source, **kwargs).float() - before).abs().flatten(2).amax(dim=(0, 2)) > atol
            out[j] = [i for i in range(j) if moved[i]]
    return out


def padding_leakage(model: nn.Module, tokens: Tensor, lengths: Tensor, vocab_size: int,
                    source: Tensor | None = None, atol: float = 1e-5) -> list[tuple[int, int]]:
    """Change every padded token (position >= length) and list the real outputs that moved: [(row, position)].

    With a correct key padding mask the list is empty: padding cannot reach real tokens.
    """
    _require_vocab(vocab_size)
    lengths = torch.as_tensor(lengths)
    t = tokens.shape[1]
    pad = torch.arange(t)[None, :] >= lengths[:, None]  # (B, T)
    changed = torch.where(pad, (tokens + 1) % vocab_size, tokens)
    with eval_mode(model):
        before = _forward(model, tokens, source, lengths=lengths).float()
        after = _forward(model, changed, source, lengths=lengths).float()
    moved = (before - after).abs().flatten(2).amax(dim=2) > atol  # (B, T)
    return [(b, i) for b, i in (moved & ~pad).nonzero().tolist()]


# ----------------------------------------------------------------------------- gradients and overfitting


def _param_group(name: str) -> str:
    parts = name.split(".")
    if parts[0] in ("encoder", "decoder") and len(parts) > 1 and parts[1].isdigit():
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def gradient_norms(model: nn.Module, loss: Tensor) -> dict[str, float]:
    """||dL/dθ|| per part of the model ("embed", "decoder.0", ..., "unembed"), from one loss.

    Uses ``torch.autograd.grad``, so the parameters' ``.grad`` fields are left alone. A tied
    unembedding is the embedding matrix, so it is reported under "embed" only.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    squares: dict[str, float] = {}
    for (name, _), g in zip(named, grads):
        group = _param_group(name)
        squares[group] = squares.get(group, 0.0) + (0.0 if g is None else float(g.detach().double().pow(2).sum()))
    return {k: math.sqrt(v) for k, v in squares.items()}


def layer_gradient_norms(model: nn.Module, loss: Tensor, parameter: str = "mlp.fc_out.weight") -> dict[str, Tensor]:
    """||dL/dW|| of one parameter in every block, per stack: {"decoder": (n_layers,), ...}, encoder first.

    parameter: the name inside a block, e.g. ``"mlp.fc_out.weight"`` (W^2 of a GELU/ReLU MLP, the
    matrix Xiong et al. 2020 follow), ``"mlp.w2.weight"`` (SwiGLU), ``"attn.v_proj.weight"``.
    One ``torch.autograd.grad`` call; the parameters' ``.grad`` fields are left alone.
    """
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError(f"loss must be a one-element tensor, got {type(loss).__name__}"
                         f"{'' if not isinstance(loss, Tensor) else ' of shape ' + str(tuple(loss.shape))}")
    if not loss.requires_grad:
        raise ValueError("loss does not require grad: compute it from the model's output outside torch.no_grad()")
    blocks = _blocks(model)
    params: dict[str, Tensor] = {}
    for name, block in blocks.items():
        try:
            params[name] = block.get_parameter(parameter)
        except AttributeError:
            names = sorted(n for n, _ in block.named_parameters())
            raise ValueError(f"parameter {parameter!r} is not in {name}; its parameters: {names}") from None
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True, retain_graph=True)
    out: dict[str, list[float]] = {}
    for name, g in zip(params, grads):
        out.setdefault(name.split(".")[0], []).append(0.0 if g is None else float(g.detach().double().norm()))
    return {stack: torch.tensor(norms, dtype=torch.float64) for stack, norms in out.items()}


def overfit_batch(model: nn.Module, loss_fn: Callable[[nn.Module], Tensor], steps: int = 60, lr: float = 3e-3) -> list[float]:
    """Train a deep copy of the model on one fixed batch; return the loss before each step and after the last.

    loss_fn(model) -> scalar loss on the fixed batch. A healthy model drives it far down in a few
    dozen Adam steps; if it cannot, something blocks learning (a detached graph, a frozen or
    zeroed layer, a loss on the wrong targets). The original model is not touched.
    """
    require_positive_int("steps", steps)
    require_number("lr", lr, 0, None, low_open=True)
    clone = copy.deepcopy(model).train()
    params = [p for p in clone.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, foreach=True) if params else None
    losses = []
    for _ in range(steps):
        loss = loss_fn(clone)
        losses.append(float(loss.detach()))
        if opt is None or not loss.requires_grad:
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        losses.append(float(loss_fn(clone)))
    return losses


# ----------------------------------------------------------------------------- the checklist


@dataclass
class CheckItem:
    """One line of the checklist: a name, a status and what was measured."""

    name: str
    status: str  # "pass" | "warn" | "fail" | "info" | "skip"
    summary: str  # one line: the measured value against the expectation
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


_MARKS = {"pass": "ok  ", "warn": "WARN", "fail": "FAIL", "info": "info", "skip": "skip"}
_COLOURS = {"pass": "#2e7d32", "warn": "#ef6c00", "fail": "#c62828", "info": "#1565c0", "skip": "#757575"}


@dataclass
class ChecklistReport:
    """The result of ``debugging_checklist``: ``items`` in order, ``ok`` when nothing failed.

    ``report["leakage"]`` is one item; ``str(report)`` (and ``print``) a text table; in a
    notebook the report shows as an HTML table. ``to_dict()`` gives plain Python values.
    """

    model: str
    items: list[CheckItem]

    @property
    def ok(self) -> bool:
        return all(item.status != "fail" for item in self.items)

    @property
    def failed(self) -> list[str]:
        return [item.name for item in self.items if item.status == "fail"]

    @property
    def warnings(self) -> list[str]:
        return [item.name for item in self.items if item.status == "warn"]

    def __getitem__(self, name: str) -> CheckItem:
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(f"no check named {name!r}; the checks are {[i.name for i in self.items]}")

    def __str__(self) -> str:
        width = max(len(i.name) for i in self.items)
        lines = [f"debugging checklist: {self.model}"]
        lines += [f"  [{_MARKS[i.status]}] {i.name:<{width}}  {i.summary}" for i in self.items]
        verdict = "no failures" if self.ok else "FAILED: " + ", ".join(self.failed)
        if self.warnings:
            verdict += "; warnings: " + ", ".join(self.warnings)
        lines.append(f"  => {verdict}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        rows = "".join(
            f'<tr><td style="color:{_COLOURS[i.status]};font-weight:bold;text-align:left">{_MARKS[i.status].strip()}</td>'
            f'<td style="text-align:left">{html.escape(i.name)}</td>'
            f'<td style="text-align:left">{html.escape(i.summary)}</td></tr>'
            for i in self.items
        )
        verdict = "no failures" if self.ok else "failed: " + ", ".join(self.failed)
        return (f'<div class="tfcore-checklist"><b>debugging checklist</b>: {html.escape(self.model)}'
                f'<table style="border-collapse:collapse;font-family:monospace;font-size:12px">'
                f"<tr><th>status</th><th>check</th><th>result</th></tr>{rows}</table>"
                f"<i>{html.escape(verdict)}</i></div>")

    def to_dict(self) -> dict[str, Any]:
        """{"model", "ok", "items": [{"name", "status", "summary", "details"}]} with plain values."""

        def plain(x: Any) -> Any:
            if isinstance(x, Tensor):
                return x.tolist()
            if isinstance(x, Mapping):
                return {str(k): plain(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [plain(v) for v in x]
            return x

        return {"model": self.model, "ok": self.ok,
                "items": [{"name": i.name, "status": i.status, "summary": i.summary, "details": plain(i.details)}
                          for i in self.items]}


def _describe_model(model: nn.Module) -> str:
    c = getattr(model, "config", None)
    n = sum(p.numel() for p in model.parameters())
    if c is None:
        return f"{type(model).__name__}, {n:,} parameters"
    return (f"{c.architecture}, {c.n_layers} layers, {c.n_heads} heads, d_model={c.d_model}, "
            f"vocab={c.vocab_size}, {n:,} parameters")


def debugging_checklist(
    model: nn.Module,
    batch: Tensor,
    vocab_size: int,
    *,
    source: Tensor | None = None,
    steps: int = 60,
    lr: float = 3e-3,
    overfit_target: float = 0.25,
    loss_tolerance: float = 0.1,
    mask_id: int | None = None,
    seed: int = 0,
) -> ChecklistReport:
    """Run the lesson 10 checklist on a tfcore model and one batch; returns a ``ChecklistReport``.

    batch: (B, T) token ids (the decoder's tokens for an encoder-decoder model, whose encoder
    input is ``source``). The loss is the shifted LM loss for models with a decoder and the
    masked-LM loss (15% of positions, ``mask_id`` default ``vocab_size - 1``, drawn from ``seed``)
    for encoders. Checks, in order:

    1. initial loss: within ``loss_tolerance`` x ln V of ln V (a model at chance); far above:
       overconfident initialisation; below: already trained (or leaking).
    2. overfit one batch: ``steps`` Adam steps (``lr``) on a copy; the loss must end below
       ``overfit_target`` x its start.
    3. leakage: a decoder's output i must not move when a token j > i changes; an encoder's must.
    4. padding: with the last quarter of each row marked as padding (``lengths``), changing
       those tokens must not move any real output.
    5. attention rows: every captured attention row sums to 1 over the keys.
    6. gradient norms: one backward pass; every part gets a finite, non-zero gradient.
    7. attention entropy: mean H / H_uniform per head; collapsed (< 0.2) and diffuse (> 0.9) heads.
    8. residual norms: ||F_l(x)|| / ||x|| per block; warn above 10 (overwrites) or below 1e-3 (dead).

    The model is left as it was (weights, training mode, hooks).
    """
    from tfcore.losses import lm_loss, mlm_loss, mlm_mask

    if batch.dim() != 2:
        raise ValueError(f"batch must have shape (B, T), got {tuple(batch.shape)}")
    if batch.shape[1] < 2:
        raise ValueError(f"batch needs T >= 2 (a next token to predict), got T={batch.shape[1]}")
    has_decoder = getattr(model, "decoder", None) is not None
    has_encoder = getattr(model, "encoder", None) is not None
    if has_decoder and has_encoder and source is None:
        raise ValueError("an encoder-decoder model needs source=(B, T_src) encoder tokens")
    items: list[CheckItem] = []
    log_v = math.log(vocab_size)

    if has_decoder:
        inputs, targets = batch, None

        def loss_fn(m: nn.Module) -> Tensor:
            return lm_loss(_forward(m, batch, source), batch)
    else:
        mid = vocab_size - 1 if mask_id is None else mask_id
        inputs, targets = mlm_mask(batch, mid, mid, 0.15, torch.Generator().manual_seed(seed))
        if (targets == -100).all():  # a tiny batch may draw no position: score the first one
            targets[:, 0] = batch[:, 0]

        def loss_fn(m: nn.Module) -> Tensor:
            return mlm_loss(_forward(m, inputs), targets)

    # 1. initial loss
    with eval_mode(model):
        loss0 = float(loss_fn(model))
    gap = loss0 - log_v
    if not math.isfinite(loss0):
        status, note = "fail", "not finite"
    elif abs(gap) <= loss_tolerance * log_v:
        status, note = "pass", "at chance, as a fresh model should be"
    elif gap > 0:
        status, note = "fail", "above chance: overconfident logits (initialisation or output scale)"
    else:
        status, note = "warn", "below chance: already trained, or the model sees its targets"
    items.append(CheckItem("initial loss", status, f"{loss0:.3f} vs ln V = {log_v:.3f} ({note})",
                           {"loss": loss0, "ln_V": log_v}))

    # 2. overfit one batch
    torch.manual_seed(seed)
    curve = overfit_batch(model, loss_fn, steps=steps, lr=lr)
    start, end = curve[0], curve[-1]
    ok = math.isfinite(end) and end < overfit_target * start
    items.append(CheckItem("overfit one batch", "pass" if ok else "fail",
                           f"{start:.3f} -> {end:.3f} in {steps} steps (target < {overfit_target:g} x start)",
                           {"losses": curve}))

    # 3. leakage
    leaks = leakage_test(model, inputs, vocab_size, source=source)
    leaky = {j: i for j, i in leaks.items() if i}
    n_pairs = sum(len(i) for i in leaks.values())
    if has_decoder:
        if leaky:
            first = min(leaky)
            status, summary = "fail", (f"output depends on later tokens: {n_pairs} (earlier output, later token) pairs, "
                                       f"e.g. changing token {first} moves outputs {leaky[first][:5]}")
        else:
            status, summary = "pass", f"no output moves when a later token changes ({len(leaks)} positions tried)"
    else:
        total = sum(j for j in leaks)
        status = "pass" if n_pairs == total else "fail"
        summary = (f"bidirectional as an encoder should be ({n_pairs}/{total} earlier outputs move)" if status == "pass"
                   else f"an encoder should see later tokens, but only {n_pairs}/{total} earlier outputs move")
    items.append(CheckItem("leakage", status, summary, {"moved": leaks}))

    # 4. padding
    b, t = inputs.shape
    n_pad = max(1, t // 4)
    lengths = torch.full((b,), t - n_pad, dtype=torch.long)
    try:
        bad = padding_leakage(model, inputs, lengths, vocab_size, source=source)
        items.append(CheckItem("padding", "fail" if bad else "pass",
                               (f"{len(bad)} real outputs move when padding changes, e.g. (row, position) {bad[0]}"
                                if bad else f"changing the last {n_pad} (padded) tokens moves no real output"),
                               {"moved": bad}))
    except Exception as exc:  # a model that does not accept lengths
        items.append(CheckItem("padding", "skip", f"model(tokens, lengths=...) raised {type(exc).__name__}: {exc}"))

    # 5. attention rows sum to 1
    try:
        entropies = head_entropy(model, inputs, source)
    except Exception as exc:
        entropies = {}
        items.append(CheckItem("attention rows", "skip", f"could not capture weights ({type(exc).__name__}: {exc})"))
    else:
        worst = 0.0
        for name, e in entropies.items():
            worst = max(worst, float((e["weights"].float().sum(-1) - 1).abs().max()))
        items.append(CheckItem("attention rows", "pass" if worst < 1e-3 else "fail",
                               "max |sum_j a_ij - 1| " + ("< 1e-05" if worst < 1e-5 else f"= {worst:.2g}")  # rounding differs by CPU
                               + ("" if worst < 1e-3 else ": the softmax does not normalise over the keys"),
                               {"max_error": worst}))

    # 6. gradient norms
    was_training = model.training
    model.eval()
    try:
        loss = loss_fn(model)
        norms = gradient_norms(model, loss) if loss.requires_grad else {}
    finally:
        model.train(was_training)
    bad = [k for k, v in norms.items() if not math.isfinite(v) or v == 0.0]
    if not norms:
        status, summary = "fail", "the loss has no gradient (detached graph or frozen parameters)"
    else:
        lo, hi = min(norms.values()), max(norms.values())
        status = "fail" if bad else "pass"
        summary = (f"zero or non-finite gradient in {bad}" if bad
                   else f"{len(norms)} parts, norms from {lo:.2g} to {hi:.2g}")
    items.append(CheckItem("gradient norms", status, summary, {"norms": norms}))

    # 7. attention entropy
    if entropies:
        normalised = {n: e["normalised"] for n, e in entropies.items()}
        kinds = classify_heads(normalised)
        n_heads = sum(len(v) for v in normalised.values())
        allv = torch.cat([v.flatten() for v in normalised.values()])
        items.append(CheckItem(
            "attention entropy", "info",
            f"H / H_uniform from {float(allv.min()):.2f} to {float(allv.max()):.2f}; "
            f"{len(kinds['collapsed'])} collapsed, {len(kinds['diffuse'])} diffuse of {n_heads} heads",
            {"normalised": normalised, "entropy": {n: e["entropy"] for n, e in entropies.items()}, **kinds}))

    # 8. residual norms
    ratios = residual_norms(model, inputs, source)
    big = [n for n, r in ratios.items() if not r <= 10]
    dead = [n for n, r in ratios.items() if r < 1e-3]
    status = "warn" if big or dead else "info"
    summary = "; ".join(f"{n} {r:.2g}" for n, r in ratios.items())
    if big:
        summary += f"  (above 10: {big})"
    if dead:
        summary += f"  (below 1e-3: {dead})"
    items.append(CheckItem("residual norms", status, summary, {"ratios": ratios}))

    return ChecklistReport(_describe_model(model), items)


# ----------------------------------------------------------------------------- broken models (lesson 10's exercise)

ATTENTION_BUGS = ("mask direction", "softmax axis", "missing scale")


class BrokenAttention(MultiHeadAttention):
    """Self-attention with one fault of ``ATTENTION_BUGS`` (no cache, no cross-attention); see ``inject_bug``."""

    fault: str = "missing scale"

    def forward(self, x: Tensor, source: Tensor | None = None, mask: Tensor | None = None,
                is_causal: bool = False, cache: Any = None) -> Tensor:
        """x (B, T, d_model) -> (B, T, d_model), as MultiHeadAttention but with the layer's fault."""
        from tfcore.attention import softmax
        from tfcore.masks import causal_mask

        if source is not None or cache is not None:
            raise NotImplementedError("a broken layer handles self-attention without a cache only")
        b, t, _ = x.shape
        q, k, v = (proj(x).view(b, t, -1, self.d_head).transpose(1, 2)  # (B, h, T, d_head)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-2, -1)  # (B, h, T, T)
        if self.fault != "missing scale":
            scores = scores / math.sqrt(self.d_head)
        visible = causal_mask(t, device=x.device) if is_causal else torch.ones(t, t, dtype=torch.bool,
                                                                              device=x.device)
        if self.fault == "mask direction":
            visible = visible.T  # keys j >= i instead of j <= i
        if mask is not None:
            visible = visible & mask
        weights = softmax(scores.masked_fill(~visible, float("-inf")),
                          dim=-2 if self.fault == "softmax axis" else -1)
        if self.capture_weights:
            self.last_weights = weights.detach()
        out = weights @ v  # (B, h, T, d_head)
        if self.head_mask is not None:
            out = out * self.head_mask.to(out)[None, :, None, None]
        return self.out_proj(out.transpose(1, 2).reshape(b, t, -1))


def inject_bug(model: nn.Module, bug: str) -> nn.Module:
    """A deep copy of a tfcore decoder whose every attention layer has ``bug`` (one of ``ATTENTION_BUGS``).

    The copy computes tokens (B, T) -> logits (B, T, V) like the model, except for the bug:
    "mask direction" (keys j >= i visible instead of j <= i), "softmax axis" (the softmax
    normalises over the queries, dim -2) or "missing scale" (no 1 / sqrt(d_head)). For
    decoder-only models with learned, sinusoidal or no positions and n_kv_heads = n_heads.
    """
    if bug not in ATTENTION_BUGS:
        raise ValueError(f"bug must be one of {list(ATTENTION_BUGS)}, got {bug!r}")
    config = getattr(model, "config", None)
    if config is None or getattr(model, "encoder", None) is not None or getattr(model, "decoder", None) is None:
        raise ValueError("model must be a decoder-only tfcore Transformer")
    if config.positions not in ("learned", "sinusoidal", "none") or config.n_kv_heads not in (None, config.n_heads):
        raise ValueError(f"model has positions={config.positions!r}, n_kv_heads={config.n_kv_heads}: a broken copy "
                         "needs learned, sinusoidal or no positions and as many key/value heads as query heads")
    broken = copy.deepcopy(model)
    for layer in broken.attention_layers().values():
        layer.__class__ = BrokenAttention
        layer.fault = bug
    return broken


def mystery_model(bug: str | None = None, seed: int | None = None, vocab_size: int = 50) -> nn.Module:
    """A small decoder (2 layers, 4 heads, d_model 32, context 32) in eval mode with one attention bug.

    bug: one of ``ATTENTION_BUGS``, or None to draw one at random; seed: the weights' seed, or
    None for fresh ones (unseeded draws differ on every call). W_Q and W_K are drawn at the usual
    1 / sqrt(d_model) scale, so that attention scores are of order 1 and a sharper or wrong
    pattern shows in the outputs. The global RNG is left untouched.
    """
    from tfcore.model import Transformer, TransformerConfig

    if seed is None or bug is None:
        fresh = torch.Generator()
        fresh.seed()  # from the operating system, not from the global RNG
        seed = int(torch.randint(2**62, (1,), generator=fresh)) if seed is None else seed
        bug = ATTENTION_BUGS[int(torch.randint(len(ATTENTION_BUGS), (1,), generator=fresh))] if bug is None else bug
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        healthy = Transformer(TransformerConfig(vocab_size=vocab_size, d_model=32, n_layers=2, n_heads=4,
                                                max_seq_len=32)).eval()
        with torch.no_grad():
            for layer in healthy.attention_layers().values():
                for proj in (layer.q_proj, layer.k_proj):
                    proj.weight.normal_(0.0, 1.0 / math.sqrt(proj.in_features))
    return inject_bug(healthy, bug)
