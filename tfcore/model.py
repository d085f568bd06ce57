"""The reference transformer: decoder-only, encoder-only or encoder-decoder, from the same blocks.

    tokens (B, T) -> embeddings (+ positions) -> blocks on the residual stream (B, T, d_model)
                  -> final norm -> unembedding -> logits (B, T, vocab_size)

Runs on the CPU by default; move it with ``.to(default_device())`` to use a CUDA GPU.

In modules of their own: the argument checks of ``forward`` and ``generate`` (``tfcore.model_checks``);
temperature, top-k and top-p sampling (``tfcore.sampling``; ``sample`` and ``sampling_probs`` are
re-exported here); each decoding step's CPU thread count (``tfcore.threads``) and CUDA attention
kernels (``tfcore.heads``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Iterator

import torch
from torch import Tensor, nn

from tfcore._checks import require_int, require_number
from tfcore.blocks import PLACEMENTS, Block
from tfcore.heads import BACKENDS, ModelCache, MultiHeadAttention, decoding_attention_kernels
from tfcore.masks import combine_masks, padding_mask
from tfcore.mlp import FUSED_ACTIVATIONS, GATED
from tfcore.model_checks import check_forward_args, check_generate_args, check_lengths, check_token_batch
from tfcore.norms import make_norm
from tfcore.positions import ROPE_LAYOUTS, LearnedPositions, T5RelativeBias, alibi_bias, check_rope_scaling, sinusoidal
from tfcore.sampling import draw, sample, sampling_probs  # noqa: F401 (sample, sampling_probs: re-exported)
from tfcore.threads import intra_op_threads, largest_operation, set_threads, threads_for, widest_linear

ARCHITECTURES = ("decoder", "encoder", "encoder-decoder")
POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "t5", "none")
MLPS = ("gelu", "gelu_tanh", "relu", "swiglu", "geglu", "geglu_tanh")


@dataclass
class TransformerConfig:
    """Every size and choice of the model. ``d_ff`` defaults to 4 d_model (8/3 d_model for gated MLPs).

    The fields after ``backend`` serve real checkpoints (``tfcore.hf``); their defaults change nothing.
    """

    vocab_size: int = 65
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: = n_heads (MHA); 1: MQA; in between: GQA
    d_ff: int | None = None
    max_seq_len: int = 256
    architecture: str = "decoder"  # "decoder" | "encoder" | "encoder-decoder"
    n_encoder_layers: int | None = None  # encoder-decoder only; None: = n_layers
    norm: str = "layer"  # "layer" | "rms"
    placement: str = "pre"  # "pre" | "post" | "parallel"
    mlp: str = "gelu"  # "gelu" | "gelu_tanh" | "relu" | "swiglu" | "geglu" | "geglu_tanh"
    positions: str = "learned"  # "learned" | "sinusoidal" | "rope" | "alibi" | "t5" | "none"
    rope_base: float = 10000.0
    rope_layout: str = "interleaved"  # "interleaved" | "split_half"
    bias: bool = True
    tie_weights: bool = True
    dropout: float = 0.0
    attention_scale: float | None = None  # None: 1/sqrt(d_head)
    backend: str = "naive"  # "naive" | "sdpa" | "tiled" | "triton"
    norm_eps: float | None = None  # None: 1e-5 for LayerNorm, 1e-6 for RMSNorm
    qkv_bias: bool | None = None  # biases of W_Q, W_K, W_V; this and the next three: None means = bias
    out_bias: bool | None = None  # bias of the attention output W_O
    mlp_bias: bool | None = None
    norm_bias: bool | None = None  # LayerNorm's shift
    head_dim: int | None = None  # None: d_model // n_heads
    rope_scaling: dict | None = None  # Llama 3.1's rule: a dict with the keys positions.ROPE_SCALING_KEYS
    embed_scale: float | None = None  # token embeddings times this; None: sqrt(d_model) for sinusoidal, else 1
    embed_norm: bool = False  # a norm right after the embeddings, one per stack (BERT, BART)
    n_token_types: int = 0  # segment embeddings added to the tokens (BERT: 2)
    position_offset: int = 0  # learned positions start at this row of their table (BART: 2)
    shared_positions: bool = True  # encoder-decoder, learned positions: one table for both stacks (BART: False)
    mlm_head: bool = False  # dense + activation + norm before the unembedding (BERT's masked-LM head)
    unembed_bias: bool = False  # a bias added to the logits (BERT, BART)
    output_scale: float = 1.0  # final states times this before the unembedding (T5 v1.0: d_model^-0.5)

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model if self.mlp not in GATED else 64 * math.ceil(8 * self.d_model / 3 / 64)
        if self.n_encoder_layers is None:
            self.n_encoder_layers = self.n_layers
        self.validate()

    @property
    def d_head(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    def bias_of(self, part: str) -> bool:
        """Whether ``part`` ("qkv", "out", "mlp" or "norm") has biases: its own field, else ``bias``."""
        return self.bias if getattr(self, f"{part}_bias") is None else getattr(self, f"{part}_bias")

    def validate(self) -> None:
        """Refuse a configuration that cannot work, naming the field and the reason."""
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_seq_len",
                     "n_encoder_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("bias", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        require_number("dropout", self.dropout, 0, 1, high_open=True)
        require_number("rope_base", self.rope_base, 0, None, low_open=True)
        if self.attention_scale is not None:
            require_number("attention_scale", self.attention_scale, 0, None, low_open=True)
        choices = {"architecture": ARCHITECTURES, "norm": ("layer", "rms"), "placement": PLACEMENTS,
                   "mlp": MLPS, "positions": POSITIONS, "rope_layout": ROPE_LAYOUTS, "backend": BACKENDS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads} (d_head = d_model / n_heads)")
        if self.n_kv_heads > self.n_heads:
            raise ValueError(f"n_kv_heads={self.n_kv_heads} exceeds n_heads={self.n_heads}: each key/value head serves a group of query heads")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads} (each key/value head serves a whole group)")
        if self.positions == "rope" and self.d_head % 2:
            raise ValueError(f"positions='rope' rotates channel pairs, so d_head={self.d_head} must be even")
        if self.positions == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"positions='sinusoidal' needs an even d_model, got {self.d_model}")
        if self.placement == "parallel" and self.architecture == "encoder-decoder":
            raise ValueError("placement='parallel' cannot hold cross-attention: use 'pre' or 'post' for encoder-decoder")
        rules = [(("norm_eps", "embed_scale", "output_scale"), lambda v: v is None or type(v) in (int, float) and v > 0, "a positive number"),
                 (("head_dim",), lambda v: v is None or type(v) is int and v > 0, "a positive integer or None"),
                 (("n_token_types", "position_offset"), lambda v: type(v) is int and v >= 0, "a non-negative integer"),
                 (("qkv_bias", "out_bias", "mlp_bias", "norm_bias"), lambda v: v is None or type(v) is bool, "True, False or None")]
        for names, ok, what in rules:
            for name in names:
                if not ok(getattr(self, name)):
                    raise ValueError(f"{name} must be {what}, got {getattr(self, name)!r}")
        if self.rope_scaling is not None:
            if self.positions != "rope":
                raise ValueError(f"rope_scaling needs positions='rope', got positions={self.positions!r}")
            check_rope_scaling(self.rope_scaling)


def gpt2_config(**overrides) -> TransformerConfig:
    """GPT-2 small: learned positions, LayerNorm, Pre-LN, GELU (tanh), biases, tied unembedding."""
    base = dict(vocab_size=50304, d_model=768, n_layers=12, n_heads=12, max_seq_len=1024, norm="layer",
                placement="pre", mlp="gelu_tanh", positions="learned", bias=True, tie_weights=True)
    return TransformerConfig(**{**base, **overrides})


def llama_config(**overrides) -> TransformerConfig:
    """Llama-style: RoPE (split halves), RMSNorm, Pre-LN, SwiGLU, no biases, GQA, untied unembedding."""
    base = dict(vocab_size=32000, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8, max_seq_len=4096,
                norm="rms", placement="pre", mlp="swiglu", positions="rope", rope_layout="split_half",
                bias=False, tie_weights=False)
    return TransformerConfig(**{**base, **overrides})


def default_device() -> torch.device:
    """A CUDA GPU if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Transformer(nn.Module):
    """The reference model. ``forward(tokens)`` -> logits (B, T, vocab_size).

    decoder: causal self-attention. encoder: bidirectional self-attention.
    encoder-decoder: ``forward(tokens, source=source_tokens)``; tokens are the decoder's inputs.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
        config.validate()
        self.config = c = config
        has_encoder, has_decoder = c.architecture != "decoder", c.architecture != "encoder"
        stacks = [s for s, present in (("encoder", has_encoder), ("decoder", has_decoder)) if present]
        norm = partial(make_norm, c.norm, c.d_model, c.bias_of("norm"), c.norm_eps)
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        # sinusoidal: tokens times sqrt(d_model), the paper's scale, so that the table (entries up to 1) does not swamp them
        self.embed_scale = c.embed_scale or (math.sqrt(c.d_model) if c.positions == "sinusoidal" else 1.0)
        learned, rows = c.positions == "learned", c.max_seq_len + c.position_offset
        self.positions = LearnedPositions(rows, c.d_model) if learned else None
        self.encoder_positions = LearnedPositions(rows, c.d_model) if learned and len(stacks) == 2 and not c.shared_positions else None
        self.token_types = nn.Embedding(c.n_token_types, c.d_model) if c.n_token_types else None
        self.embed_norm = nn.ModuleDict({s: norm() for s in stacks}) if c.embed_norm else None
        if c.positions == "sinusoidal":
            self.register_buffer("sin_table", sinusoidal(c.max_seq_len, c.d_model), persistent=False)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(self._block(False) for _ in range(c.n_encoder_layers if has_decoder else c.n_layers)) \
            if has_encoder else None
        self.decoder = nn.ModuleList(self._block(c.architecture == "encoder-decoder") for _ in range(c.n_layers)) \
            if has_decoder else None
        self.encoder_norm = norm() if has_encoder and c.placement != "post" else None
        # encoder-only models end with encoder_norm; only a decoder stack needs final_norm
        self.final_norm = norm() if has_decoder and c.placement != "post" else None
        self.t5_bias = nn.ModuleDict({s: T5RelativeBias(c.n_heads, bidirectional=s == "encoder") for s in stacks}) \
            if c.positions == "t5" else None  # one table per stack
        self.mlm_dense = nn.Linear(c.d_model, c.d_model, bias=c.bias_of("mlp")) if c.mlm_head else None
        self.mlm_norm = norm() if c.mlm_head else None
        self.unembed = nn.Linear(c.d_model, c.vocab_size, bias=c.unembed_bias)
        if c.tie_weights:
            self.unembed.weight = self.embed.weight  # W_out = W_emb^T: saves vocab_size * d_model parameters
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale the residual writes by 1/sqrt(2 n_layers)
            if name.endswith(("out_proj.weight", "fc_out.weight", "w2.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * c.n_layers))
        self.set_backend(c.backend)

    def _block(self, cross_attention: bool) -> Block:
        c = self.config
        return Block(c.d_model, c.n_heads, c.d_ff, c.n_kv_heads, c.norm, c.placement, c.mlp, c.bias, c.dropout,
                     c.rope_base if c.positions == "rope" else None, c.rope_layout, cross_attention, c.attention_scale,
                     d_head=c.head_dim, norm_eps=c.norm_eps, rope_scaling=c.rope_scaling, qkv_bias=c.qkv_bias,
                     out_bias=c.out_bias, mlp_bias=c.mlp_bias, norm_bias=c.norm_bias)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def set_backend(self, backend: str) -> None:
        """Choose the attention kernel of every layer: "naive", "sdpa", "tiled" or "triton"."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.config.backend = backend
        for m in self.attention_layers().values():
            m.backend = backend

    def attention_layers(self) -> dict[str, MultiHeadAttention]:
        """Every attention module by name, e.g. ``"decoder.0.attn"``, ``"decoder.0.cross_attn"``."""
        return {name: m for name, m in self.named_modules() if isinstance(m, MultiHeadAttention)}

    def embed_tokens(self, tokens: Tensor, start: int = 0, check_ids: bool = True, stack: str | None = None,
                     token_types: Tensor | None = None) -> Tensor:
        """tokens (B, T) at positions start .. start + T - 1 -> the residual stream's first state (B, T, d_model).

        stack: "encoder" or "decoder" (None: the decoder if there is one), for the tables and norms
        each stack has of its own. token_types: (B, T) segment ids (all 0 when None).

        check_ids=False skips the range check of the ids, for ids known to be valid (``generate``
        feeds back the ids it sampled): the check reads two numbers back from the device, which
        on a GPU stalls every decoding step until the step before it has finished.
        """
        check_token_batch("tokens", tokens)
        require_int("start", start, minimum=0)
        t = tokens.shape[1]
        if start + t > self.config.max_seq_len and self.config.positions in ("learned", "sinusoidal"):
            raise ValueError(f"sequence of length {start + t} is longer than max_seq_len={self.config.max_seq_len} "
                             f"(positions={self.config.positions!r} has no entries beyond it)")
        # under torch.compile the read-back would split the graph, so the check is left to the
        # embedding lookup there (an index error on the CPU, an assert on CUDA)
        if check_ids and not torch.compiler.is_compiling():
            self.check_token_ids(tokens, "source" if stack == "encoder" and self.decoder is not None else "tokens")
        if token_types is not None and (self.token_types is None or token_types.shape != tokens.shape):
            raise ValueError(f"token_types must be (B, T) = {tuple(tokens.shape)} and n_token_types > 0, "
                             f"got {tuple(token_types.shape)} and n_token_types={self.config.n_token_types}")
        x = self.embed(tokens) if self.embed_scale == 1.0 else self.embed(tokens) * self.embed_scale
        stack = stack or ("decoder" if self.decoder is not None else "encoder")
        table = self.encoder_positions if stack == "encoder" and self.encoder_positions is not None else self.positions
        if table is not None:  # rows start .. start + t - 1 after the offset (in range: checked above)
            first = start + self.config.position_offset
            x = x + table.table.weight[first:first + t]
        if self.config.positions == "sinusoidal":
            x = x + self.sin_table[start:start + t]
        if self.token_types is not None:
            x = x + (self.token_types.weight[0] if token_types is None else self.token_types(token_types))
        if self.embed_norm is not None:
            x = self.embed_norm[stack](x)
        return self.drop(x)

    def check_token_ids(self, tokens: Tensor, name: str = "tokens") -> None:
        """Raise unless every id in ``tokens`` lies in [0, vocab_size); the message calls them ``name``."""
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= self.config.vocab_size:
            raise ValueError(f"{name} holds ids from {low} to {high}, but token ids must lie in "
                             f"[0, vocab_size={self.config.vocab_size})")

    def _position_bias(self, stack: str, t_q: int, t_k: int) -> Tensor | None:
        """ALiBi or T5 bias added to the scores: (1, h, T_q, T_k), or None."""
        if self.config.positions == "alibi":
            bias = alibi_bias(self.config.n_heads, t_q, t_k).to(self.embed.weight.device)
            return bias.unsqueeze(0)
        if self.config.positions == "t5":
            return self.t5_bias[stack](t_q, t_k).unsqueeze(0)
        return None

    def encode(self, source: Tensor, source_lengths: Tensor | None = None, token_types: Tensor | None = None) -> Tensor:
        """Encoder stack: source tokens (B, T_src) -> states (B, T_src, d_model), every position sees every other."""
        if self.encoder is None:
            raise ValueError("this model has no encoder (architecture='decoder')")
        check_token_batch("source", source)
        name = "source_lengths" if self.decoder is not None else "lengths"  # an encoder-only forward passes lengths
        check_lengths(name, source_lengths, source.shape[0])
        x = self.embed_tokens(source, stack="encoder", token_types=token_types)
        mask = _with_bias(padding_mask(source_lengths, source.shape[1], name=name) if source_lengths is not None else None,
                          self._position_bias("encoder", source.shape[1], source.shape[1]))
        for block in self.encoder:
            x = block(x, mask=mask)
        return self.encoder_norm(x) if self.encoder_norm is not None else x

    def forward(
        self,
        tokens: Tensor,
        lengths: Tensor | None = None,
        source: Tensor | None = None,
        source_lengths: Tensor | None = None,
        mask: Tensor | None = None,
        cache: ModelCache | None = None,
        memory: Tensor | None = None,
        check_ids: bool = True,
        token_types: Tensor | None = None,
    ) -> Tensor:
        """tokens: (B, T) ids -> logits (B, T, vocab_size).

        lengths: (B,) real lengths of right-padded ``tokens`` (key padding). source,
        source_lengths: the encoder's input for encoder-decoder models (or pass its output
        as ``memory``). mask: an extra bool mask, (T, T_k) or 4 axes broadcasting to
        (B, h, T, T_k) (the rule: ``tfcore.masks``), ANDed with the model's own: in a decoder it
        can only hide more than the causal mask (e.g. a block-diagonal mask for packed
        sequences); a prefix-LM is an encoder given ``prefix_lm_mask``.
        cache: a ``ModelCache`` for decoding. check_ids, token_types: see ``embed_tokens``.
        Arguments the architecture has no use for (``source`` for a decoder-only model, ...) are
        refused, not ignored. Checks read shapes only, except the ids' range (see ``check_ids``).
        """
        check_forward_args(self, tokens, lengths, source, source_lengths, mask, cache, memory)
        if self.decoder is None:  # encoder-only: bidirectional stack, then the unembedding
            if cache is not None:
                raise ValueError("an encoder-only model has no KV cache: it sees the whole sequence at once")
            x = self.encode(tokens, lengths, token_types) if mask is None else self._masked_encoder(tokens, lengths, mask, token_types)
            return self._logits(x)
        if self.encoder is not None and memory is None:
            if source is None:
                raise ValueError("an encoder-decoder model needs source=(B, T_src) token ids (or memory=encoder output)")
            memory = self.encode(source, source_lengths)
        start = 0 if cache is None else cache.length
        x = self.embed_tokens(tokens, start, check_ids, token_types=token_types)
        t = tokens.shape[1]
        self_mask = combine_masks(mask, padding_mask(lengths, start + t) if lengths is not None else None)
        self_mask = _with_bias(self_mask, self._position_bias("decoder", t, start + t))
        source_mask = padding_mask(source_lengths, memory.shape[1], name="source_lengths") \
            if memory is not None and source_lengths is not None else None
        for n, block in enumerate(self.decoder):
            x = block(x, mask=self_mask, is_causal=True, source=memory, source_mask=source_mask,
                      cache=cache.self_attn[n] if cache else None, cross_cache=cache.cross_attn[n] if cache else None)
        x = self.final_norm(x) if self.final_norm is not None else x
        return self._logits(x)

    def _logits(self, x: Tensor) -> Tensor:
        """Final states (B, T, d_model) -> logits (B, T, vocab_size): output_scale, MLM head, unembedding."""
        if self.config.output_scale != 1.0:
            x = x * self.config.output_scale
        if self.mlm_dense is not None:
            x = self.mlm_norm(FUSED_ACTIVATIONS[GATED.get(self.config.mlp, self.config.mlp)](self.mlm_dense(x)))
        return self.unembed(x)

    def _masked_encoder(self, tokens: Tensor, lengths: Tensor | None, mask: Tensor, token_types: Tensor | None) -> Tensor:
        x = self.embed_tokens(tokens, stack="encoder", token_types=token_types)
        t = tokens.shape[1]
        full = _with_bias(combine_masks(mask, padding_mask(lengths, t) if lengths is not None else None),
                          self._position_bias("encoder", t, t))
        for block in self.encoder:
            x = block(x, mask=full)
        return self.encoder_norm(x) if self.encoder_norm is not None else x

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        use_cache: bool = True,
        source: Tensor | None = None,
        generator: torch.Generator | None = None,
        top_p: float | None = None,
    ) -> Tensor:
        """Sample ``max_new_tokens`` (>= 0) after ``prompt`` (B, T) or (T,); returns (B, T + max_new_tokens).

        temperature >= 0; 0 means greedy. top_k, top_p: see ``sample``. source: (B, T_src) ids,
        required by an encoder-decoder model and refused by the others. With ``use_cache`` each
        step feeds only the newest token and reuses the cached keys/values; past ``max_seq_len``
        the context is cropped to its last half and the cache refilled. Every argument is checked
        once, before the first step: the steps read nothing back from the device.
        On the CPU each step runs on as many of the caller's threads as its largest operation is
        worth (``tfcore.threads``): one for the tiny one-token steps of a small model, where more
        threads only wait on each other. The caller's thread count is restored afterwards.
        """
        tokens = check_generate_args(self, prompt, max_new_tokens, temperature, top_k, top_p, source)  # (B, T)
        if not isinstance(use_cache, bool):
            raise TypeError(f"use_cache must be True or False, got {use_cache!r}")
        limit = self.config.max_seq_len
        self.check_token_ids(tokens, "prompt")  # once: every later id is one the model sampled, so no step reads back
        memory = self.encode(source) if self.encoder is not None else None
        cache, fed = None, 0  # fed: how many tokens of `tokens` the cache holds
        threads, widest = torch.get_num_threads(), widest_linear(self)
        with decoding_attention_kernels(tokens.device), intra_op_threads():  # the caller's thread count is restored
            for _ in range(max_new_tokens):
                if use_cache and (cache is None or cache.length >= limit):  # first step, or past the context
                    window = tokens[:, -(limit // 2 + 1):] if cache is not None else tokens
                    cache, fed = ModelCache.empty(len(self.decoder), limit), tokens.shape[1] - window.shape[1]
                new = tokens[:, fed:] if use_cache else tokens[:, -limit:]  # (B, T_new): the tokens this step runs
                if tokens.device.type == "cpu":  # a thread pays only for a large operation (tfcore.threads)
                    t_k = new.shape[1] + (cache.length if use_cache else 0)
                    set_threads(threads_for(largest_operation(self.config, widest, new.numel(), t_k), threads))
                logits = self(new, memory=memory, cache=cache, check_ids=False)
                fed = tokens.shape[1]
                tokens = torch.cat((tokens, draw(logits[:, -1], temperature, top_k, top_p, generator)), dim=1)
        return tokens


def _with_bias(mask: Tensor | None, bias: Tensor | None) -> Tensor | None:
    """Fold a bool mask into an additive position bias (ALiBi, T5): one float mask for the scores."""
    if bias is None:
        return mask
    return bias if mask is None else bias.masked_fill(~mask, float("-inf"))


@contextlib.contextmanager
def capture_attention(model: Transformer) -> Iterator[dict[str, Tensor]]:
    """Within the block, every forward records each layer's weights (B, h, T_q, T_k) by layer name.

    >>> with capture_attention(model) as weights:
    ...     model(tokens)
    >>> weights["decoder.0.attn"].shape
    """
    if not callable(getattr(model, "attention_layers", None)):
        raise TypeError(f"model must be a tfcore Transformer (it lists its attention_layers()), got {type(model).__name__}")
    layers = model.attention_layers()
    saved = {name: (m.backend, m.capture_weights) for name, m in layers.items()}
    captured: dict[str, Tensor] = {}
    handles = []
    for name, m in layers.items():
        m.backend, m.capture_weights = "naive", True
        handles.append(m.register_forward_hook(lambda mod, args, out, name=name: captured.__setitem__(name, mod.last_weights)))
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()
        for name, m in layers.items():
            m.backend, m.capture_weights = saved[name]
            m.last_weights = None


def config_dict(config: TransformerConfig) -> dict:
    """The config as a plain dict (for checkpoints and tables)."""
    return asdict(config)


def with_changes(config: TransformerConfig, **changes) -> TransformerConfig:
    """A copy of ``config`` with some fields changed, validated."""
    return replace(config, **changes)
