"""Hugging Face ``transformers`` checkpoints in and out of tfcore (``pip install -e ".[hf]"``).

    from transformers import GPT2LMHeadModel
    hf_model = GPT2LMHeadModel.from_pretrained("gpt2")  # downloading is transformers' business
    model = from_hf(hf_model)                           # a tfcore Transformer with the same logits
    back = to_hf(model)                                 # a transformers model again (GPT-2, Llama family)

Supported (``SUPPORTED``): GPT-2; the Llama family (Llama 2/3/3.1, Mistral, Qwen2); BERT with its
masked-LM head; T5 (v1.0 and v1.1/Flan); BART. Each has a name map below, one function per
architecture: which source tensor fills which tfcore parameter, and how (``LAYOUTS``).
``from_hf`` refuses to guess: a tfcore parameter left unassigned, a source tensor left unused or
a shape that does not fit raises an error naming the tensor.

The converted model has the source's dtype and device, is in eval mode, and has dropout 0
(``TransformerConfig.dropout``: rebuild with ``with_changes`` to train with dropout).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Callable

import torch
from torch import Tensor

from tfcore._checks import require_float, require_tensor
from tfcore.model import Transformer, TransformerConfig
from tfcore.norms import DEFAULT_EPS
from tfcore.positions import ROPE_SCALING_KEYS

SUPPORTED = {  # model_type -> the transformers classes whose weights from_hf reads
    "gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM", "bert": "BertForMaskedLM", "t5": "T5ForConditionalGeneration",
    "bart": "BartForConditionalGeneration",
}


@dataclass(frozen=True)
class Link:
    """The source tensor ``hf`` fills the tfcore parameters ``tf``, as ``LAYOUTS[how]`` says."""

    hf: str
    tf: tuple[str, ...]
    how: str = "same"


# how -> (source tensor -> tfcore tensors, tfcore tensors -> source tensor)
LAYOUTS: dict[str, tuple[Callable, Callable]] = {
    "same": (lambda h: (h,), lambda ts: ts[0]),
    "T": (lambda h: (h.T,), lambda ts: ts[0].T),  # GPT-2's Conv1D stores weights as (in, out)
    "qkv": (lambda h: h.chunk(3), lambda ts: torch.cat(ts)),  # GPT-2's fused bias: q | k | v, (3 d,)
    "qkv_T": (lambda h: h.T.chunk(3), lambda ts: torch.cat(ts).T),  # fused, transposed weight: (d, 3 d)
    "row": (lambda h: (h[0],), lambda ts: ts[0][None]),  # BART's final_logits_bias: (1, V) -> (V,)
}


def _wb(hf: str, tf: str, bias: bool = True, how: str = "same") -> list[Link]:
    """A linear layer or norm: ``hf.weight`` -> ``tf.weight`` and, if any, ``hf.bias`` -> ``tf.bias``."""
    return [Link(f"{hf}.weight", (f"{tf}.weight",), how)] + ([Link(f"{hf}.bias", (f"{tf}.bias",))] if bias else [])


def _unembed(tied: bool, hf: str) -> list[Link]:
    return [] if tied else [Link(hf, ("unembed.weight",))]


def _require(cfg, **expected) -> None:
    """Refuse a source config whose option tfcore does not implement (absent options count as expected)."""
    for name, value in expected.items():
        if getattr(cfg, name, value) != value:
            raise ValueError(f"{cfg.model_type} with {name}={getattr(cfg, name)!r} is not supported (tfcore needs {value!r})")


def _mlp_kind(activation: str, gated: bool = False) -> str:
    """A transformers activation name -> tfcore's ``mlp`` kind."""
    kind = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu", "silu": "silu"}.get(activation)
    kind = {"silu": "swiglu", "gelu": "geglu", "gelu_tanh": "geglu_tanh"}.get(kind) if gated else kind
    if kind in (None, "silu"):
        raise ValueError(f"activation {activation!r}{' (gated)' if gated else ''} is not supported by tfcore's MLPs")
    return kind


# ----------------------------------------------------------------------------- GPT-2

def _gpt2(cfg, tied: bool) -> tuple[TransformerConfig, list[Link]]:
    _require(cfg, scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False)
    config = TransformerConfig(
        vocab_size=cfg.vocab_size, d_model=cfg.n_embd, n_layers=cfg.n_layer, n_heads=cfg.n_head,
        d_ff=cfg.n_inner or 4 * cfg.n_embd, max_seq_len=cfg.n_positions, norm="layer", norm_eps=cfg.layer_norm_epsilon,
        placement="pre", mlp=_mlp_kind(cfg.activation_function), positions="learned", bias=True, tie_weights=tied)
    links = [Link("transformer.wte.weight", ("embed.weight",)), Link("transformer.wpe.weight", ("positions.table.weight",)),
             *_wb("transformer.ln_f", "final_norm")]
    for i in range(cfg.n_layer):
        h, t = f"transformer.h.{i}.", f"decoder.{i}."
        qkv = [f"{t}attn.{p}_proj" for p in "qkv"]
        links += [*_wb(h + "ln_1", t + "norm_attn"),
                  Link(h + "attn.c_attn.weight", tuple(f"{p}.weight" for p in qkv), "qkv_T"),
                  Link(h + "attn.c_attn.bias", tuple(f"{p}.bias" for p in qkv), "qkv"),
                  *_wb(h + "attn.c_proj", t + "attn.out_proj", how="T"),
                  *_wb(h + "ln_2", t + "norm_mlp"),
                  *_wb(h + "mlp.c_fc", t + "mlp.fc_in", how="T"),
                  *_wb(h + "mlp.c_proj", t + "mlp.fc_out", how="T")]
    return config, links + _unembed(tied, "lm_head.weight")


# ----------------------------------------------------------------------------- Llama, Mistral, Qwen2

def _rope(cfg) -> tuple[float, dict | None]:
    """RoPE base and Llama 3.1 scaling, from transformers 5's ``rope_parameters`` or 4's ``rope_theta``/``rope_scaling``."""
    params = dict(getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {})
    kind = params.get("rope_type", params.get("type", "default"))
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(f"partial_rotary_factor={params['partial_rotary_factor']} is not supported (tfcore rotates every channel)")
    if kind not in ("default", "llama3"):
        raise ValueError(f"RoPE scaling {kind!r} is not supported: tfcore knows 'default' and Llama 3.1's 'llama3'")
    base = params.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    return base, ({k: params[k] for k in ROPE_SCALING_KEYS} if kind == "llama3" else None)


def _context(cfg) -> int:
    """max_position_embeddings, or the sliding window where one is on (tfcore is exact up to it)."""
    window = getattr(cfg, "sliding_window", None)
    if cfg.model_type == "qwen2" and not getattr(cfg, "use_sliding_window", False):
        window = None
    if window is not None and window < cfg.max_position_embeddings:
        warnings.warn(f"{cfg.model_type} attends within a sliding window of {window} tokens; tfcore attends to the whole "
                      f"context, so it agrees up to {window} tokens: max_seq_len is set to {window}", stacklevel=4)
        return window
    return cfg.max_position_embeddings


def _llama(cfg, tied: bool) -> tuple[TransformerConfig, list[Link]]:
    _require(cfg, hidden_act="silu")
    d, n_heads = cfg.hidden_size, cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or d // n_heads
    attention_bias, base_scaling = getattr(cfg, "attention_bias", False), _rope(cfg)
    config = TransformerConfig(
        vocab_size=cfg.vocab_size, d_model=d, n_layers=cfg.num_hidden_layers, n_heads=n_heads,
        n_kv_heads=cfg.num_key_value_heads or n_heads, d_ff=cfg.intermediate_size, max_seq_len=_context(cfg),
        norm="rms", norm_eps=cfg.rms_norm_eps, placement="pre", mlp="swiglu", positions="rope",
        rope_base=base_scaling[0], rope_scaling=base_scaling[1],
        rope_layout="split_half",  # transformers' rotate_half pairs channel i with channel i + d_head / 2
        bias=False, qkv_bias=attention_bias or cfg.model_type == "qwen2",  # Qwen2: biases on q, k, v only
        out_bias=attention_bias, mlp_bias=getattr(cfg, "mlp_bias", False),
        head_dim=None if head_dim * n_heads == d else head_dim, tie_weights=tied)
    links = [Link("model.embed_tokens.weight", ("embed.weight",)), Link("model.norm.weight", ("final_norm.weight",))]
    for i in range(cfg.num_hidden_layers):
        h, t = f"model.layers.{i}.", f"decoder.{i}."
        links += [Link(h + "input_layernorm.weight", (t + "norm_attn.weight",)),
                  *[link for p in "qkv" for link in _wb(f"{h}self_attn.{p}_proj", f"{t}attn.{p}_proj", config.bias_of("qkv"))],
                  *_wb(h + "self_attn.o_proj", t + "attn.out_proj", config.bias_of("out")),
                  Link(h + "post_attention_layernorm.weight", (t + "norm_mlp.weight",)),
                  *_wb(h + "mlp.gate_proj", t + "mlp.w1", config.bias_of("mlp")),
                  *_wb(h + "mlp.up_proj", t + "mlp.w3", config.bias_of("mlp")),
                  *_wb(h + "mlp.down_proj", t + "mlp.w2", config.bias_of("mlp"))]
    return config, links + _unembed(tied, "lm_head.weight")


# ----------------------------------------------------------------------------- BERT (masked LM)

def _bert(cfg, tied: bool) -> tuple[TransformerConfig, list[Link]]:
    _require(cfg, position_embedding_type="absolute", is_decoder=False, add_cross_attention=False)
    config = TransformerConfig(
        vocab_size=cfg.vocab_size, d_model=cfg.hidden_size, n_layers=cfg.num_hidden_layers, n_heads=cfg.num_attention_heads,
        d_ff=cfg.intermediate_size, max_seq_len=cfg.max_position_embeddings, architecture="encoder", norm="layer",
        norm_eps=cfg.layer_norm_eps, placement="post", mlp=_mlp_kind(cfg.hidden_act), positions="learned", bias=True,
        embed_norm=True, n_token_types=cfg.type_vocab_size, mlm_head=True, unembed_bias=True, tie_weights=tied)
    e, head = "bert.embeddings.", "cls.predictions."
    links = [Link(e + "word_embeddings.weight", ("embed.weight",)),
             Link(e + "position_embeddings.weight", ("positions.table.weight",)),
             Link(e + "token_type_embeddings.weight", ("token_types.weight",)), *_wb(e + "LayerNorm", "embed_norm.encoder"),
             *_wb(head + "transform.dense", "mlm_dense"), *_wb(head + "transform.LayerNorm", "mlm_norm"),
             Link(head + "bias", ("unembed.bias",))]
    for i in range(cfg.num_hidden_layers):
        h, t = f"bert.encoder.layer.{i}.", f"encoder.{i}."
        links += [*_wb(h + "attention.self.query", t + "attn.q_proj"), *_wb(h + "attention.self.key", t + "attn.k_proj"),
                  *_wb(h + "attention.self.value", t + "attn.v_proj"), *_wb(h + "attention.output.dense", t + "attn.out_proj"),
                  *_wb(h + "attention.output.LayerNorm", t + "norm_attn"),
                  *_wb(h + "intermediate.dense", t + "mlp.fc_in"), *_wb(h + "output.dense", t + "mlp.fc_out"),
                  *_wb(h + "output.LayerNorm", t + "norm_mlp")]
    return config, links + _unembed(tied, head + "decoder.weight")


# ----------------------------------------------------------------------------- T5 (v1.0, v1.1 / Flan)

def _t5(cfg, tied: bool) -> tuple[TransformerConfig, list[Link]]:
    _require(cfg, relative_attention_num_buckets=32, relative_attention_max_distance=128)
    # transformers 5 says so in scale_decoder_outputs; before, a tied LM head meant scaling (v1.0)
    scale_output = getattr(cfg, "scale_decoder_outputs", cfg.tie_word_embeddings)
    config = TransformerConfig(
        vocab_size=cfg.vocab_size, d_model=cfg.d_model, n_layers=cfg.num_decoder_layers, n_encoder_layers=cfg.num_layers,
        n_heads=cfg.num_heads, head_dim=None if cfg.d_kv * cfg.num_heads == cfg.d_model else cfg.d_kv, d_ff=cfg.d_ff,
        max_seq_len=getattr(cfg, "n_positions", None) or 512, architecture="encoder-decoder", norm="rms",
        norm_eps=cfg.layer_norm_epsilon, placement="pre", mlp=_mlp_kind(cfg.dense_act_fn, cfg.is_gated_act), positions="t5",
        bias=False, attention_scale=1.0,  # T5 does not scale q.k (its initialisation does)
        output_scale=cfg.d_model ** -0.5 if scale_output else 1.0, tie_weights=tied)

    def attention(h: str, t: str) -> list[Link]:
        return [link for p, q in zip("qkvo", ("q", "k", "v", "out")) for link in _wb(f"{h}.{p}", f"{t}.{q}_proj", False)]

    def mlp(h: str, t: str) -> list[Link]:
        if cfg.is_gated_act:
            return [*_wb(h + "wi_0", t + "w1", False), *_wb(h + "wi_1", t + "w3", False), *_wb(h + "wo", t + "w2", False)]
        return [*_wb(h + "wi", t + "fc_in", False), *_wb(h + "wo", t + "fc_out", False)]

    bias_table = "block.0.layer.0.SelfAttention.relative_attention_bias.weight"  # layer 0 holds the stack's table
    links = [Link("shared.weight", ("embed.weight",)),
             Link("encoder." + bias_table, ("t5_bias.encoder.bias.weight",)),
             Link("decoder." + bias_table, ("t5_bias.decoder.bias.weight",)),
             *_wb("encoder.final_layer_norm", "encoder_norm", False), *_wb("decoder.final_layer_norm", "final_norm", False)]
    for i in range(cfg.num_layers):
        h, t = f"encoder.block.{i}.layer.", f"encoder.{i}."
        links += [*attention(h + "0.SelfAttention", t + "attn"), *_wb(h + "0.layer_norm", t + "norm_attn", False),
                  *mlp(h + "1.DenseReluDense.", t + "mlp."), *_wb(h + "1.layer_norm", t + "norm_mlp", False)]
    for i in range(cfg.num_decoder_layers):
        h, t = f"decoder.block.{i}.layer.", f"decoder.{i}."
        links += [*attention(h + "0.SelfAttention", t + "attn"), *_wb(h + "0.layer_norm", t + "norm_attn", False),
                  *attention(h + "1.EncDecAttention", t + "cross_attn"), *_wb(h + "1.layer_norm", t + "norm_cross", False),
                  *mlp(h + "2.DenseReluDense.", t + "mlp."), *_wb(h + "2.layer_norm", t + "norm_mlp", False)]
    return config, links + _unembed(tied, "lm_head.weight")


# ----------------------------------------------------------------------------- BART

def _bart(cfg, tied: bool) -> tuple[TransformerConfig, list[Link]]:
    _require(cfg, decoder_attention_heads=cfg.encoder_attention_heads, decoder_ffn_dim=cfg.encoder_ffn_dim)
    config = TransformerConfig(
        vocab_size=cfg.vocab_size, d_model=cfg.d_model, n_layers=cfg.decoder_layers, n_encoder_layers=cfg.encoder_layers,
        n_heads=cfg.encoder_attention_heads, d_ff=cfg.encoder_ffn_dim, max_seq_len=cfg.max_position_embeddings,
        architecture="encoder-decoder", norm="layer", norm_eps=1e-5, placement="post", mlp=_mlp_kind(cfg.activation_function),
        positions="learned", position_offset=2, shared_positions=False, embed_norm=True,
        embed_scale=math.sqrt(cfg.d_model) if cfg.scale_embedding else 1.0, bias=True, unembed_bias=True, tie_weights=tied)

    def attention(h: str, t: str) -> list[Link]:
        return [link for p in ("q", "k", "v", "out") for link in _wb(f"{h}.{p}_proj", f"{t}.{p}_proj")]

    links = [Link("model.shared.weight", ("embed.weight",)), Link("final_logits_bias", ("unembed.bias",), "row"),
             Link("model.encoder.embed_positions.weight", ("encoder_positions.table.weight",)),
             Link("model.decoder.embed_positions.weight", ("positions.table.weight",)),
             *_wb("model.encoder.layernorm_embedding", "embed_norm.encoder"),
             *_wb("model.decoder.layernorm_embedding", "embed_norm.decoder")]
    for stack, n_layers in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        for i in range(n_layers):
            h, t = f"model.{stack}.layers.{i}.", f"{stack}.{i}."
            links += [*attention(h + "self_attn", t + "attn"), *_wb(h + "self_attn_layer_norm", t + "norm_attn"),
                      *_wb(h + "fc1", t + "mlp.fc_in"), *_wb(h + "fc2", t + "mlp.fc_out"), *_wb(h + "final_layer_norm", t + "norm_mlp")]
            if stack == "decoder":
                links += [*attention(h + "encoder_attn", t + "cross_attn"), *_wb(h + "encoder_attn_layer_norm", t + "norm_cross")]
    return config, links + _unembed(tied, "lm_head.weight")


# ----------------------------------------------------------------------------- the registry and the loader

@dataclass(frozen=True)
class Architecture:
    """How to read one model type: its map, and the names of its tied and non-weight tensors."""

    build: Callable  # (transformers config, tied) -> (TransformerConfig, [Link])
    embedding: str  # the token embedding
    lm_head: str  # the unembedding: tied when the source lacks it or it equals ``embedding``
    copies: tuple[tuple[str, str], ...] = ()  # (copy, original) pairs of tied tensors stored twice
    ignore: str = r"^$"  # buffers that hold no weights (older checkpoints store some)


ARCHITECTURES = {
    "gpt2": Architecture(_gpt2, "transformer.wte.weight", "lm_head.weight", ignore=r"\.attn\.(bias|masked_bias)$"),
    **{name: Architecture(_llama, "model.embed_tokens.weight", "lm_head.weight", ignore=r"rotary_emb\.inv_freq$")
       for name in ("llama", "mistral", "qwen2")},
    "bert": Architecture(_bert, "bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight",
                         (("cls.predictions.decoder.bias", "cls.predictions.bias"),),
                         r"embeddings\.(position_ids|token_type_ids)$"),
    "t5": Architecture(_t5, "shared.weight", "lm_head.weight",
                       (("encoder.embed_tokens.weight", "shared.weight"), ("decoder.embed_tokens.weight", "shared.weight")),
                       r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$"),
    "bart": Architecture(_bart, "model.shared.weight", "lm_head.weight",
                         (("model.encoder.embed_tokens.weight", "model.shared.weight"),
                          ("model.decoder.embed_tokens.weight", "model.shared.weight"))),
}


def _same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and (a.data_ptr() == b.data_ptr() or torch.equal(a, b))


def _architecture(hf_config) -> Architecture:
    model_type = getattr(hf_config, "model_type", None)
    if model_type not in ARCHITECTURES:
        listed = ", ".join(f"{k} ({v})" for k, v in SUPPORTED.items())
        raise ValueError(f"tfcore.hf cannot convert model_type={model_type!r}; supported: {listed}")
    return ARCHITECTURES[model_type]


def _source(model_or_state_dict, hf_config) -> tuple[dict[str, Tensor], object]:
    """(state dict, transformers config) from a transformers model, or from a state dict and its config."""
    if isinstance(model_or_state_dict, Mapping):
        if hf_config is None or isinstance(hf_config, Mapping):
            raise ValueError("a state dict needs hf_config, the model's transformers config object "
                             "(from a dict: transformers.AutoConfig.for_model(**d))")
        return dict(model_or_state_dict), hf_config
    if not hasattr(model_or_state_dict, "state_dict") or not hasattr(model_or_state_dict, "config"):
        raise TypeError(f"from_hf takes a transformers model or a state dict, got {type(model_or_state_dict).__name__}")
    return dict(model_or_state_dict.state_dict()), hf_config or model_or_state_dict.config


_LLAMA_NAMES = dict(d_model="hidden_size", n_heads="num_attention_heads", n_kv_heads="num_key_value_heads",
                    n_layers="num_hidden_layers", d_ff="intermediate_size", norm_eps="rms_norm_eps",
                    rope_base="rope_theta", max_seq_len="max_position_embeddings")
HF_NAMES = {  # model_type -> {tfcore TransformerConfig field: the transformers config field it comes from}
    "gpt2": dict(d_model="n_embd", n_heads="n_head", n_layers="n_layer", d_ff="n_inner", norm_eps="layer_norm_epsilon",
                 max_seq_len="n_positions"),
    **{name: _LLAMA_NAMES for name in ("llama", "mistral", "qwen2")},
    "bert": dict(d_model="hidden_size", n_heads="num_attention_heads", n_layers="num_hidden_layers",
                 d_ff="intermediate_size", norm_eps="layer_norm_eps", max_seq_len="max_position_embeddings"),
    "t5": dict(n_heads="num_heads", n_layers="num_decoder_layers", n_encoder_layers="num_layers",
               norm_eps="layer_norm_epsilon"),
    "bart": dict(n_heads="decoder_attention_heads", n_layers="decoder_layers", n_encoder_layers="encoder_layers",
                 d_ff="decoder_ffn_dim", max_seq_len="max_position_embeddings"),
}


def _in_hf_names(message: str, model_type: str) -> str:
    """" (in transformers' names: d_model is n_embd, ...)" for the tfcore fields ``message`` names."""
    pairs = [f"{ours} is {theirs}" for ours, theirs in HF_NAMES.get(model_type, {}).items()
             if re.search(rf"(?<![A-Za-z0-9_]){ours}(?![A-Za-z0-9_])", message)]
    return f" (in {model_type}'s config: {', '.join(pairs)})" if pairs else ""


def from_hf(model_or_state_dict, hf_config=None) -> Transformer:
    """A ``transformers`` model (or its state dict with ``hf_config``) -> a tfcore ``Transformer``.

    Architectures: ``SUPPORTED``. Raises ``ValueError`` naming the tensor when a source tensor is
    missing, left unused or of the wrong shape, or a tfcore parameter is left unassigned.
    """
    state, hf_config = _source(model_or_state_dict, hf_config)
    arch = _architecture(hf_config)
    for name, value in state.items():
        require_tensor(name, value)
    for copy, original in arch.copies:  # tied tensors stored under two names: keep one, check the other
        if copy in state and original not in state:
            state[original] = state.pop(copy)
        elif copy in state and not _same(state.pop(copy), state[original]):
            raise ValueError(f"{copy} differs from {original}: tfcore needs them tied (stored twice, equal)")
    if arch.embedding not in state:
        raise ValueError(f"{arch.embedding} is missing from the source (convert a {SUPPORTED[hf_config.model_type]})")
    tied = arch.lm_head not in state or _same(state[arch.lm_head], state[arch.embedding])
    if tied:
        state.pop(arch.lm_head, None)
    try:
        config, links = arch.build(hf_config, tied)
    except ValueError as e:  # a TransformerConfig refused: say it came from hf_config, in tfcore's field names
        if str(e).startswith(hf_config.model_type):  # already phrased in transformers' field names
            raise
        raise ValueError(f"hf_config ({hf_config.model_type}) describes a model tfcore cannot build: {e}"
                         f"{_in_hf_names(str(e), hf_config.model_type)}") from e
    like = state[arch.embedding]
    require_float(arch.embedding, like)
    with torch.device("meta"):  # no memory and no random init for weights about to be overwritten
        model = Transformer(config)
    model = model.to_empty(device=like.device).to(like.dtype)
    if config.tie_weights:
        model.unembed.weight = model.embed.weight  # to_empty gave the two their own storage
    _load(model, state, links, arch.ignore)
    return model.eval()


def _load(model: Transformer, state: dict[str, Tensor], links: list[Link], ignore: str) -> None:
    """Copy every linked tensor into ``model``; refuse a missing, unused or mis-shaped one by name."""
    params = dict(model.named_parameters())  # a tied unembedding is listed once, as embed.weight
    filled: set[str] = set()
    for link in links:
        if link.hf not in state:
            raise ValueError(f"{link.hf} is missing from the source (it would fill tfcore's {', '.join(link.tf)})")
        require_float(link.hf, state[link.hf])
        split, join = LAYOUTS[link.how]
        expected = tuple(join([torch.empty(params[name].shape, device="meta") for name in link.tf]).shape)
        if tuple(state[link.hf].shape) != expected:
            raise ValueError(f"{link.hf} has shape {tuple(state[link.hf].shape)} but tfcore's "
                             f"{', '.join(link.tf)} need {expected}")
        with torch.no_grad():
            for name, piece in zip(link.tf, split(state[link.hf])):
                params[name].copy_(piece)
        filled.update(link.tf)
    unfilled = [name for name in params if name not in filled]
    if unfilled:
        raise ValueError(f"tfcore parameters left unassigned: {', '.join(unfilled)}")
    used = {link.hf for link in links}
    unused = [name for name in state if name not in used and not re.search(ignore, name)]
    if unused:
        raise ValueError(f"source tensors left unused: {', '.join(unused)} (tfcore has no place for them)")


# ----------------------------------------------------------------------------- back to transformers

def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise ImportError('tfcore.hf needs transformers: pip install -e ".[hf]"') from e
    return transformers


def _hf_config(c: TransformerConfig):
    """The transformers config of a GPT-2 or Llama-family model with ``c``'s sizes (checked by ``to_hf``)."""
    tf = _transformers()
    if c.positions == "learned":
        activation = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}.get(c.mlp, "gelu_new")  # else: refused below
        return tf.GPT2LMHeadModel, tf.GPT2Config(
            vocab_size=c.vocab_size, n_positions=c.max_seq_len, n_embd=c.d_model, n_layer=c.n_layers, n_head=c.n_heads,
            n_inner=c.d_ff, activation_function=activation, layer_norm_epsilon=c.norm_eps or DEFAULT_EPS["layer"],
            resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout, tie_word_embeddings=c.tie_weights,
            bos_token_id=None, eos_token_id=None)
    rope = {"rope_type": "llama3" if c.rope_scaling else "default", "rope_theta": c.rope_base, **(c.rope_scaling or {})}
    sizes = dict(vocab_size=c.vocab_size, hidden_size=c.d_model, intermediate_size=c.d_ff, num_hidden_layers=c.n_layers,
                 num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads, max_position_embeddings=c.max_seq_len,
                 rms_norm_eps=c.norm_eps or DEFAULT_EPS["rms"], rope_parameters=rope, attention_dropout=c.dropout,
                 tie_word_embeddings=c.tie_weights, bos_token_id=None, eos_token_id=None)
    if c.bias_of("qkv") and not c.bias_of("out"):  # biases on q, k, v only
        return tf.Qwen2ForCausalLM, tf.Qwen2Config(**sizes)
    return tf.LlamaForCausalLM, tf.LlamaConfig(**sizes, head_dim=c.d_head, attention_bias=c.bias_of("qkv"),
                                               mlp_bias=c.bias_of("mlp"))


def _resolved(c: TransformerConfig) -> dict:
    """The config's fields with every None default replaced by the value it stands for."""
    out = {f.name: getattr(c, f.name) for f in fields(c) if f.name not in ("dropout", "backend")}
    out.update({f"{p}_bias": c.bias_of(p) for p in ("qkv", "out", "mlp", "norm")}, head_dim=c.d_head,
               norm_eps=c.norm_eps or DEFAULT_EPS[c.norm],
               embed_scale=c.embed_scale or (math.sqrt(c.d_model) if c.positions == "sinusoidal" else 1.0))
    return out


def to_hf(model: Transformer):
    """A tfcore GPT-2-style or Llama-style model -> the ``transformers`` model with the same weights and logits.

    GPT-2 (learned positions, LayerNorm, Pre-LN, biases) gives a ``GPT2LMHeadModel``; the Llama
    family (RoPE split halves, RMSNorm, SwiGLU) a ``LlamaForCausalLM``, or a ``Qwen2ForCausalLM``
    when only q, k, v have biases. Returned in eval mode, in ``model``'s dtype and device, with no
    special-token ids in its config (tfcore models have none: set eos_token_id there before
    ``generate``). Any other configuration is refused, naming the fields transformers' model
    cannot express.
    """
    if not isinstance(model, Transformer):
        raise TypeError(f"model must be a tfcore Transformer, got {type(model).__name__}")
    c = model.config
    if c.architecture != "decoder" or c.positions not in ("learned", "rope"):
        raise ValueError(f"to_hf converts GPT-2-style (learned positions) and Llama-style (RoPE) decoders, "
                         f"got architecture={c.architecture!r}, positions={c.positions!r}")
    hf_class, hf_config = _hf_config(c)
    back, links = ARCHITECTURES[hf_config.model_type].build(hf_config, c.tie_weights)
    wanted, got = _resolved(c), _resolved(back)
    differ = [f"{k}={wanted[k]!r} (the {hf_config.model_type} model has {got[k]!r})" for k in wanted if wanted[k] != got[k]]
    if differ:
        raise ValueError(f"to_hf: transformers' {hf_class.__name__} cannot express " + ", ".join(differ))
    params = dict(model.named_parameters())
    state = {link.hf: LAYOUTS[link.how][1]([params[name].detach() for name in link.tf]) for link in links}
    if c.tie_weights:
        state[ARCHITECTURES[hf_config.model_type].lm_head] = params["embed.weight"].detach()
    hf_model = hf_class(hf_config).to(device=model.embed.weight.device, dtype=model.embed.weight.dtype)
    hf_model.load_state_dict(state, strict=True)
    return hf_model.eval()


def gpt2_small_random(seed: int = 0, **overrides):
    """A randomly initialised ``transformers`` GPT-2 small (``overrides``: GPT2Config fields, e.g. n_layer=2).

    For running offline the code path of a real checkpoint: ``from_hf(gpt2_small_random())`` is
    what ``from_hf(GPT2LMHeadModel.from_pretrained("gpt2"))`` is with network access. The global
    random state is left as it was.
    """
    tf = _transformers()
    known = set(tf.GPT2Config().to_dict())
    unknown = sorted(k for k in overrides if k not in known)
    if unknown:  # GPT2Config would keep them as attributes and build the default model
        raise ValueError(f"overrides {', '.join(map(repr, unknown))} are not GPT2Config fields (e.g. n_layer, "
                         "n_embd, n_head, n_positions, vocab_size)")
    config = tf.GPT2Config(**overrides)
    if config.n_embd % config.n_head:
        raise ValueError(f"n_head={config.n_head} must divide n_embd={config.n_embd} (each head gets n_embd / n_head)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return tf.GPT2LMHeadModel(config).eval()
