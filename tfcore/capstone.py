"""The capstone of lesson 09: a learner's own ``GPT`` and the names of its parameters.

The learner writes ``GPT(vocab_size, d_model, n_layers, n_heads, max_seq_len)``, a decoder-only
transformer (token embedding, learned positions, ``n_layers`` Pre-LN blocks of causal multi-head
self-attention and a GELU MLP, a final LayerNorm, a tied unembedding). Its state dict uses the
names below, so that a ``tfcore.Transformer`` of the same shape (the shipped
``shakespeare-char-cpu`` model) can be copied into it with ``model.load_state_dict(...)``:

    tok_emb.weight                     (V, d_model)       the unembedding too (tied): logits = h E^T
    pos_emb.weight                     (max_seq_len, d_model)
    blocks.{i}.ln1.weight, .bias       (d_model,)         LayerNorm before attention
    blocks.{i}.attn.q_proj.weight      (d_model, d_model) and .bias (d_model,); k_proj, v_proj alike
    blocks.{i}.attn.out_proj.weight    (d_model, d_model) and .bias (d_model,)
    blocks.{i}.ln2.weight, .bias       (d_model,)         LayerNorm before the MLP
    blocks.{i}.mlp.fc1.weight          (4 d_model, d_model) and .bias (4 d_model,)
    blocks.{i}.mlp.fc2.weight          (d_model, 4 d_model) and .bias (d_model,)
    ln_f.weight, ln_f.bias             (d_model,)         the final LayerNorm

With ``fused_qkv=True`` the three projections are one ``blocks.{i}.attn.qkv`` Linear of
``3 d_model`` outputs (rows: queries, then keys, then values), as in GPT-2's ``c_attn``.
Heads are the consecutive ``d_head``-wide slices of a projection's outputs (``split_heads``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from tfcore._checks import require_float, require_ndim, require_positive_int, require_tensor
from tfcore.model import Transformer, TransformerConfig

SHIPPED = "shakespeare-char-cpu"  # the trained model the learner loads (tfcore/weights/shakespeare-char-cpu.pt)
GPT_ARGS = ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len")  # the learner's constructor

# What a learner's GPT can express: the config fields it fixes and their values.
_FIXED = dict(architecture="decoder", norm="layer", placement="pre", mlp="gelu", positions="learned", bias=True,
              tie_weights=True, attention_scale=None)


def require_gpt_shaped(config: TransformerConfig) -> None:
    """Raise ``ValueError`` naming the field unless ``config`` is a model the capstone GPT can hold."""
    if not isinstance(config, TransformerConfig):
        raise TypeError(f"config must be a TransformerConfig (model.config), got {type(config).__name__}")
    for name, value in _FIXED.items():
        if getattr(config, name) != value:
            raise ValueError(f"the capstone GPT has {name}={value!r}, but this model has {name}={getattr(config, name)!r}")
    if config.n_kv_heads != config.n_heads:
        raise ValueError(f"the capstone GPT has one key/value head per query head, but this model has "
                         f"n_kv_heads={config.n_kv_heads}, n_heads={config.n_heads}")
    if config.d_ff != 4 * config.d_model:
        raise ValueError(f"the capstone GPT's MLP is 4 d_model wide, but this model has d_ff={config.d_ff}, "
                         f"d_model={config.d_model}")


def gpt_args(config: TransformerConfig) -> dict[str, int]:
    """The learner's constructor arguments for a model shaped like ``config``: ``GPT(**gpt_args(config))``."""
    require_gpt_shaped(config)
    return {name: getattr(config, name) for name in GPT_ARGS}


def parameter_table(vocab_size: int, d_model: int, n_layers: int, n_heads: int, max_seq_len: int,
                    fused_qkv: bool = False) -> dict[str, tuple[int, ...]]:
    """Every parameter name of the capstone GPT and its shape, in the order of ``state_dict()``.

    n_heads does not change any shape (heads are slices of the projections); it is an argument so
    that the table is called with the same arguments as the GPT.
    """
    for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layers", n_layers),
                        ("n_heads", n_heads), ("max_seq_len", max_seq_len)):
        require_positive_int(name, value)
    if d_model % n_heads:
        raise ValueError(f"n_heads={n_heads} must divide d_model={d_model} (d_head = d_model / n_heads)")
    d, d_ff = d_model, 4 * d_model
    table: dict[str, tuple[int, ...]] = {"tok_emb.weight": (vocab_size, d), "pos_emb.weight": (max_seq_len, d)}
    for i in range(n_layers):
        p = f"blocks.{i}."
        table.update({p + "ln1.weight": (d,), p + "ln1.bias": (d,)})
        projections = ("qkv",) if fused_qkv else ("q_proj", "k_proj", "v_proj")
        width = 3 * d if fused_qkv else d
        for name in projections:
            table.update({p + f"attn.{name}.weight": (width, d), p + f"attn.{name}.bias": (width,)})
        table.update({p + "attn.out_proj.weight": (d, d), p + "attn.out_proj.bias": (d,),
                      p + "ln2.weight": (d,), p + "ln2.bias": (d,),
                      p + "mlp.fc1.weight": (d_ff, d), p + "mlp.fc1.bias": (d_ff,),
                      p + "mlp.fc2.weight": (d, d_ff), p + "mlp.fc2.bias": (d,)})
    table.update({"ln_f.weight": (d,), "ln_f.bias": (d,)})
    return table


# tfcore name (inside decoder.{i}.) -> capstone name (inside blocks.{i}.)
_BLOCK_NAMES = {
    "norm_attn": "ln1", "attn.q_proj": "attn.q_proj", "attn.k_proj": "attn.k_proj", "attn.v_proj": "attn.v_proj",
    "attn.out_proj": "attn.out_proj", "norm_mlp": "ln2", "mlp.fc_in": "mlp.fc1", "mlp.fc_out": "mlp.fc2",
}


def to_gpt(model: Transformer, fused_qkv: bool = False) -> dict[str, Tensor]:
    """A tfcore decoder's weights under the capstone GPT's names (fresh fp32 copies, on the CPU).

    ``GPT(**gpt_args(model.config)).load_state_dict(to_gpt(model))`` gives the learner's model
    the same function as ``model``.
    """
    if not isinstance(model, Transformer):
        raise TypeError(f"model must be a tfcore Transformer, got {type(model).__name__}")
    c = model.config
    require_gpt_shaped(c)
    src = {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}
    state = {"tok_emb.weight": src["embed.weight"], "pos_emb.weight": src["positions.table.weight"]}
    for i in range(c.n_layers):
        for ours, theirs in _BLOCK_NAMES.items():
            if fused_qkv and ours in ("attn.q_proj", "attn.k_proj", "attn.v_proj"):
                continue
            for kind in ("weight", "bias"):
                state[f"blocks.{i}.{theirs}.{kind}"] = src[f"decoder.{i}.{ours}.{kind}"]
        if fused_qkv:
            for kind in ("weight", "bias"):
                state[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(
                    [src[f"decoder.{i}.attn.{n}_proj.{kind}"] for n in "qkv"], dim=0)  # (3 d_model, ...)
    state.update({"ln_f.weight": src["final_norm.weight"], "ln_f.bias": src["final_norm.bias"]})
    table = parameter_table(**gpt_args(c), fused_qkv=fused_qkv)
    return {name: state[name] for name in table}  # the table's order


def from_gpt(state: dict[str, Tensor], n_heads: int) -> Transformer:
    """A tfcore ``Transformer`` (eval mode) holding a capstone GPT's weights: the inverse of ``to_gpt``.

    Sizes come from the shapes (V and d_model from ``tok_emb.weight``, max_seq_len from
    ``pos_emb.weight``, n_layers from the block indices); n_heads is not visible in any shape.
    A fused ``attn.qkv`` is split into its three projections.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a capstone GPT's state_dict() (a dict of tensors), got {type(state).__name__}")
    missing = [k for k in ("tok_emb.weight", "pos_emb.weight") if k not in state]
    if missing:
        raise KeyError(f"state has no {missing[0]!r}: is it a capstone GPT's state_dict()?")
    for name in ("tok_emb.weight", "pos_emb.weight"):
        require_ndim(name, state[name], 2, "(rows, d_model)")
    vocab_size, d_model = state["tok_emb.weight"].shape
    max_seq_len = state["pos_emb.weight"].shape[0]
    n_layers = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    config = TransformerConfig(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                               max_seq_len=max_seq_len, **_FIXED)
    fused = "blocks.0.attn.qkv.weight" in state
    expected = parameter_table(**gpt_args(config), fused_qkv=fused)
    for name, shape in expected.items():
        if name not in state:
            raise KeyError(f"state has no {name!r} (expected shape {shape})")
        require_tensor(name, state[name])
        require_float(name, state[name])
        if tuple(state[name].shape) != shape:
            raise ValueError(f"{name} has shape {tuple(state[name].shape)}, expected {shape}")
    unused = [name for name in state if name not in expected and _is_parameter_like(name, state[name], state)]
    if unused:
        raise ValueError(f"state has parameters the capstone GPT does not have: {', '.join(unused)} (they would "
                         f"be dropped; expected the {len(expected)} names of parameter_table)")
    src = {k: state[k].detach().float().cpu() for k in expected}
    out = {"embed.weight": src["tok_emb.weight"], "unembed.weight": src["tok_emb.weight"],
           "positions.table.weight": src["pos_emb.weight"],
           "final_norm.weight": src["ln_f.weight"], "final_norm.bias": src["ln_f.bias"]}
    for i in range(n_layers):
        for ours, theirs in _BLOCK_NAMES.items():
            for kind in ("weight", "bias"):
                name = f"blocks.{i}.{theirs}.{kind}"
                if fused and ours in ("attn.q_proj", "attn.k_proj", "attn.v_proj"):
                    part = "qkv".index(ours[5])  # rows: q, then k, then v
                    name = f"blocks.{i}.attn.qkv.{kind}"
                    out[f"decoder.{i}.{ours}.{kind}"] = src[name][part * d_model:(part + 1) * d_model]
                else:
                    out[f"decoder.{i}.{ours}.{kind}"] = src[name]
    model = Transformer(config)
    model.load_state_dict(out)
    return model.eval()


def _is_parameter_like(name: str, value: object, state: dict) -> bool:
    """An extra entry ``from_gpt`` must not drop: a float ``.weight`` other than a tied copy of the token
    embedding, or a 1-D float ``.bias``. Buffers (a causal mask, even one named ``attn.bias``) are ignored."""
    if not isinstance(value, Tensor) or not value.is_floating_point():
        return False
    if name.endswith(".weight"):
        tok = state["tok_emb.weight"]
        return not (value.shape == tok.shape and torch.equal(value, tok))
    return name.endswith(".bias") and value.dim() == 1


def shipped_model() -> Transformer:
    """The shipped ``shakespeare-char-cpu`` model (eval mode, naive attention: every step explicit)."""
    from tfcore.train import pretrained

    model, _ = pretrained(SHIPPED)
    model.set_backend("naive")
    return model


def shipped_gpt_args() -> dict[str, int]:
    """The shipped model's GPT constructor arguments: V=65, d_model=128, 4 layers, 4 heads, context 64."""
    return gpt_args(shipped_model().config)


def shipped_state_dict(fused_qkv: bool = False) -> dict[str, Tensor]:
    """The shipped model's weights under the capstone names: ``GPT(**shipped_gpt_args()).load_state_dict(...)``."""
    return to_gpt(shipped_model(), fused_qkv=fused_qkv)

