"""The reference transformer: decoder-only, encoder-only or encoder-decoder, from the same blocks.

    tokens (B, T) -> embeddings (+ positions) -> blocks on the residual stream (B, T, d_model)
                  -> final norm -> unembedding -> logits (B, T, vocab_size)

Runs on the CPU by default; move it with ``.to(default_device())`` to use a CUDA GPU.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, replace
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfcore.blocks import PLACEMENTS, Block
from tfcore.heads import BACKENDS, ModelCache, MultiHeadAttention
from tfcore.masks import combine_masks, padding_mask
from tfcore.norms import make_norm
from tfcore.positions import ROPE_LAYOUTS, LearnedPositions, T5RelativeBias, alibi_bias, sinusoidal
from tfcore.threads import intra_op_threads, set_threads, threads_for

ARCHITECTURES = ("decoder", "encoder", "encoder-decoder")
POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "t5", "none")
MLPS = ("gelu", "gelu_tanh", "relu", "swiglu")


@dataclass
class TransformerConfig:
    """Every size and choice of the model. ``d_ff`` defaults to 4 d_model (8/3 d_model for SwiGLU)."""

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
    mlp: str = "gelu"  # "gelu" | "gelu_tanh" | "relu" | "swiglu"
    positions: str = "learned"  # "learned" | "sinusoidal" | "rope" | "alibi" | "t5" | "none"
    rope_base: float = 10000.0
    rope_layout: str = "interleaved"  # "interleaved" | "split_half"
    bias: bool = True
    tie_weights: bool = True
    dropout: float = 0.0
    attention_scale: float | None = None  # None: 1/sqrt(d_head)
    backend: str = "naive"  # "naive" | "sdpa" | "tiled" | "triton"

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model if self.mlp != "swiglu" else 64 * math.ceil(8 * self.d_model / 3 / 64)
        if self.n_encoder_layers is None:
            self.n_encoder_layers = self.n_layers
        self.validate()

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def validate(self) -> None:
        """Refuse a configuration that cannot work, naming the field and the reason."""
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        choices = {"architecture": ARCHITECTURES, "norm": ("layer", "rms"), "placement": PLACEMENTS,
                   "mlp": MLPS, "positions": POSITIONS, "rope_layout": ROPE_LAYOUTS, "backend": BACKENDS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads} (d_head = d_model / n_heads)")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads} (each key/value head serves a whole group)")
        if self.positions == "rope" and self.d_head % 2:
            raise ValueError(f"positions='rope' rotates channel pairs, so d_head={self.d_head} must be even")
        if self.positions == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"positions='sinusoidal' needs an even d_model, got {self.d_model}")
        if self.placement == "parallel" and self.architecture == "encoder-decoder":
            raise ValueError("placement='parallel' cannot hold cross-attention: use 'pre' or 'post' for encoder-decoder")


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
        config.validate()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.positions = LearnedPositions(c.max_seq_len, c.d_model) if c.positions == "learned" else None
        if c.positions == "sinusoidal":
            self.register_buffer("sin_table", sinusoidal(c.max_seq_len, c.d_model), persistent=False)
        self.drop = nn.Dropout(c.dropout)
        has_encoder, has_decoder = c.architecture != "decoder", c.architecture != "encoder"
        self.encoder = nn.ModuleList(self._block(False) for _ in range(c.n_encoder_layers if has_decoder else c.n_layers)) \
            if has_encoder else None
        self.decoder = nn.ModuleList(self._block(c.architecture == "encoder-decoder") for _ in range(c.n_layers)) \
            if has_decoder else None
        self.encoder_norm = make_norm(c.norm, c.d_model, c.bias) if has_encoder and c.placement != "post" else None
        # encoder-only models end with encoder_norm; only a decoder stack needs final_norm
        self.final_norm = make_norm(c.norm, c.d_model, c.bias) if has_decoder and c.placement != "post" else None
        stacks = {"encoder": has_encoder, "decoder": has_decoder}  # one T5 table per stack that exists
        self.t5_bias = nn.ModuleDict({s: T5RelativeBias(c.n_heads, bidirectional=s == "encoder")
                                      for s, present in stacks.items() if present}) \
            if c.positions == "t5" else None
        self.unembed = nn.Linear(c.d_model, c.vocab_size, bias=False)
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
                     c.rope_base if c.positions == "rope" else None, c.rope_layout, cross_attention, c.attention_scale)

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

    def embed_tokens(self, tokens: Tensor, start: int = 0, check_ids: bool = True) -> Tensor:
        """tokens (B, T) at positions start .. start + T - 1 -> the residual stream's first state (B, T, d_model).

        check_ids=False skips the range check of the ids, for ids known to be valid (``generate``
        feeds back the ids it sampled): the check reads two numbers back from the device, which
        on a GPU stalls every decoding step until the step before it has finished.
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape (B, T), got {tuple(tokens.shape)}")
        if tokens.is_floating_point():
            raise TypeError(f"tokens must be integer ids, got dtype {tokens.dtype}")
        t = tokens.shape[1]
        if start + t > self.config.max_seq_len and self.config.positions in ("learned", "sinusoidal"):
            raise ValueError(f"sequence of length {start + t} is longer than max_seq_len={self.config.max_seq_len} "
                             f"(positions={self.config.positions!r} has no entries beyond it)")
        # under torch.compile the read-back would split the graph, so the check is left to the
        # embedding lookup there (an index error on the CPU, an assert on CUDA)
        if check_ids and not torch.compiler.is_compiling():
            self.check_token_ids(tokens)
        x = self.embed(tokens)
        if self.positions is not None:  # rows start .. start + t - 1 of the table (in range: checked above)
            x = x + self.positions.table.weight[start:start + t]
        if self.config.positions == "sinusoidal":
            x = x + self.sin_table[start:start + t]
        return self.drop(x)

    def check_token_ids(self, tokens: Tensor) -> None:
        """Raise unless every id in ``tokens`` lies in [0, vocab_size)."""
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in [0, vocab_size={self.config.vocab_size}), got ids from {low} to {high}")

    def _position_bias(self, stack: str, t_q: int, t_k: int) -> Tensor | None:
        """ALiBi or T5 bias added to the scores: (1, h, T_q, T_k), or None."""
        if self.config.positions == "alibi":
            bias = alibi_bias(self.config.n_heads, t_q, t_k).to(self.embed.weight.device)
            return bias.unsqueeze(0)
        if self.config.positions == "t5":
            return self.t5_bias[stack](t_q, t_k).unsqueeze(0)
        return None

    def encode(self, source: Tensor, source_lengths: Tensor | None = None) -> Tensor:
        """Encoder stack: source tokens (B, T_src) -> states (B, T_src, d_model), every position sees every other."""
        if self.encoder is None:
            raise ValueError("this model has no encoder (architecture='decoder')")
        x = self.embed_tokens(source)
        mask = _with_bias(padding_mask(source_lengths, source.shape[1]) if source_lengths is not None else None,
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
    ) -> Tensor:
        """tokens: (B, T) ids -> logits (B, T, vocab_size).

        lengths: (B,) real lengths of right-padded ``tokens`` (key padding). source,
        source_lengths: the encoder's input for encoder-decoder models (or pass its output
        as ``memory``). mask: an extra bool mask broadcastable to (B, h, T, T_k), ANDed with the
        model's own: in a decoder it can only hide more than the causal mask (e.g. a block-diagonal
        mask for packed sequences); a prefix-LM is an encoder given ``prefix_lm_mask``.
        cache: a ``ModelCache`` for decoding. check_ids: see ``embed_tokens``.
        """
        if self.decoder is None:  # encoder-only: bidirectional stack, then the unembedding
            if cache is not None:
                raise ValueError("an encoder-only model has no KV cache: it sees the whole sequence at once")
            x = self.encode(tokens, lengths) if mask is None else self._masked_encoder(tokens, lengths, mask)
            return self.unembed(x)
        if self.encoder is not None and memory is None:
            if source is None:
                raise ValueError("an encoder-decoder model needs source=(B, T_src) token ids (or memory=encoder output)")
            memory = self.encode(source, source_lengths)
        start = 0 if cache is None else cache.length
        x = self.embed_tokens(tokens, start, check_ids)
        t = tokens.shape[1]
        self_mask = combine_masks(mask, padding_mask(lengths, start + t) if lengths is not None else None)
        self_mask = _with_bias(self_mask, self._position_bias("decoder", t, start + t))
        source_mask = padding_mask(source_lengths, memory.shape[1]) if memory is not None and source_lengths is not None else None
        for n, block in enumerate(self.decoder):
            x = block(x, mask=self_mask, is_causal=True, source=memory, source_mask=source_mask,
                      cache=cache.self_attn[n] if cache else None, cross_cache=cache.cross_attn[n] if cache else None)
        x = self.final_norm(x) if self.final_norm is not None else x
        return self.unembed(x)

    def _masked_encoder(self, tokens: Tensor, lengths: Tensor | None, mask: Tensor) -> Tensor:
        x = self.embed_tokens(tokens)
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
    ) -> Tensor:
        """Sample ``max_new_tokens`` after ``prompt`` (B, T) or (T,); returns (B, T + max_new_tokens).

        temperature 0 means greedy. With ``use_cache`` each step feeds only the newest token
        and reuses the cached keys/values; past ``max_seq_len`` the context is cropped to its
        last half and the cache refilled. On the CPU each step runs on as many of the caller's
        threads as its largest operation is worth (``tfcore.threads``): one for the tiny one-token
        steps of a small model, where more threads only wait on each other. The caller's thread
        count is restored afterwards.
        """
        if self.decoder is None:
            raise ValueError("an encoder-only model does not generate: use architecture='decoder' or 'encoder-decoder'")
        tokens = prompt.unsqueeze(0) if prompt.dim() == 1 else prompt
        limit = self.config.max_seq_len
        if tokens.shape[1] > limit:
            raise ValueError(f"prompt has {tokens.shape[1]} tokens but max_seq_len={limit}")
        if top_k is not None and not 1 <= top_k <= self.config.vocab_size:
            raise ValueError(f"top_k must lie in [1, vocab_size={self.config.vocab_size}], got {top_k}")
        self.check_token_ids(tokens)  # once: every later id is one the model sampled, so no step reads back
        memory = self.encode(source) if self.encoder is not None else None
        cache, fed = None, 0  # fed: how many tokens of `tokens` the cache holds
        threads, widest = torch.get_num_threads(), _widest_linear(self)
        with _decoding_attention_kernels(tokens.device), intra_op_threads():  # the caller's thread count is restored
            for _ in range(max_new_tokens):
                if use_cache and (cache is None or cache.length >= limit):  # first step, or past the context
                    window = tokens[:, -(limit // 2 + 1):] if cache is not None else tokens
                    cache, fed = ModelCache.empty(len(self.decoder), limit), tokens.shape[1] - window.shape[1]
                new = tokens[:, fed:] if use_cache else tokens[:, -limit:]  # (B, T_new): the tokens this step runs
                if tokens.device.type == "cpu":  # a thread pays only for a large operation (tfcore.threads)
                    t_k = new.shape[1] + (cache.length if use_cache else 0)
                    set_threads(threads_for(_largest_operation(self.config, widest, new.numel(), t_k), threads))
                logits = self(new, memory=memory, cache=cache, check_ids=False)
                fed = tokens.shape[1]
                tokens = torch.cat((tokens, sample(logits[:, -1], temperature, top_k, generator)), dim=1)
        return tokens


def _widest_linear(model: nn.Module) -> int:
    """in_features x out_features of the model's largest linear layer: its multiply-adds per token."""
    return max(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def _largest_operation(config: TransformerConfig, widest: int, new_tokens: int, t_k: int) -> int:
    """Multiply-adds of the largest single operation of a forward over ``new_tokens`` tokens (all
    sequences together), each attending ``t_k`` keys: the widest linear layer, or one layer's
    attention (q k^T, then A v, over every head)."""
    return new_tokens * max(widest, 2 * config.n_heads * t_k * config.d_head)


def _decoding_attention_kernels(device: torch.device) -> contextlib.AbstractContextManager:
    """On CUDA, SDPA without its cuDNN kernel while decoding.

    cuDNN's attention builds a plan for every new sequence length, and decoding brings a new
    key length at every step, so each step would pay for a plan; the FlashAttention and
    memory-efficient kernels take any length as it comes.
    """
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def _with_bias(mask: Tensor | None, bias: Tensor | None) -> Tensor | None:
    """Fold a bool mask into an additive position bias (ALiBi, T5): one float mask for the scores."""
    if bias is None:
        return mask
    return bias if mask is None else bias.masked_fill(~mask, float("-inf"))


def sample(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
           generator: torch.Generator | None = None) -> Tensor:
    """Next token ids (B, 1) from last-position logits (B, V); temperature 0 is greedy."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)


@contextlib.contextmanager
def capture_attention(model: Transformer) -> Iterator[dict[str, Tensor]]:
    """Within the block, every forward records each layer's weights (B, h, T_q, T_k) by layer name.

    >>> with capture_attention(model) as weights:
    ...     model(tokens)
    >>> weights["decoder.0.attn"].shape
    """
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
