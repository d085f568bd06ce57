"""Tests-for-tests of the capstone checks (capstone.*, lesson 09): see tests/test_grading.py.

The learner-style GPTs below are written here, independently of tfcore: a plain solution, the
same model in other styles (einsum attention, a loop over heads, one fused qkv Linear, a tied
head module with a mask buffer, a KV cache), and the plausible mistakes each check must name.
A mistake is switched on by a class attribute ``BUG`` (in the blocks listed in ``BUG_BLOCKS``).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from test_grading import Entry, case_params, run_case

from tfcore.capstone import shipped_gpt_args, shipped_state_dict


# ----------------------------------------------------------------------------- the learner's GPT


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, bug=None):
        super().__init__()
        self.n_heads, self.bug = n_heads, bug
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        B, T, d = x.shape
        h, bug = self.n_heads, self.bug

        def split(z):
            if bug == "split_view":
                return z.reshape(B, h, T, d // h)
            return z.view(B, T, h, d // h).transpose(1, 2)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        if bug == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif bug == "tfcore_sdpa":
            from tfcore.attention import scaled_dot_product_attention

            out = scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scale = {"no_scale": 1.0, "scale_d_model": d ** -0.5, "scale_d_head": 1 / (d // h),
                     "fixed_d_head": 32 ** -0.5}.get(bug, (d // h) ** -0.5)
            scores = q @ k.transpose(-2, -1) * scale
            lower = torch.tril(torch.ones(T, T, dtype=torch.bool))
            if bug == "no_mask":
                weights = scores.softmax(-1)
            elif bug == "mask_inverted":  # hides j <= i, keeps the future
                weights = scores.masked_fill(lower, float("-inf")).softmax(-1)
            elif bug == "mask_inverted_finite":  # the same with a large negative number instead of -inf
                weights = scores.masked_fill(lower, -1e9).softmax(-1)
            elif bug == "mask_triu":
                weights = scores.masked_fill(~torch.triu(torch.ones(T, T, dtype=torch.bool)), float("-inf")).softmax(-1)
            elif bug == "mask_after_softmax":
                weights = scores.softmax(-1) * lower
            elif bug == "mask_off_by_one":  # sees one token ahead
                weights = scores.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
            elif bug == "mask_no_self":  # hides the diagonal: the first query sees nothing
                weights = scores.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool), -1), float("-inf")).softmax(-1)
            elif bug == "dropout_always":  # F.dropout's training=True default: drops in eval mode too
                weights = F.dropout(scores.masked_fill(~lower, float("-inf")).softmax(-1), 0.1)
            elif bug == "softmax_queries":
                weights = scores.masked_fill(~lower, float("-inf")).softmax(-2)
            else:
                weights = scores.masked_fill(~lower, float("-inf")).softmax(-1)
            out = weights @ v
        merged = out.reshape(B, T, d) if bug == "merge_view" else out.transpose(1, 2).reshape(B, T, d)
        return merged if bug == "no_out_proj" else self.out_proj(merged)


class MLP(nn.Module):
    def __init__(self, d_model, bug=None):
        super().__init__()
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.fc2 = nn.Linear(4 * d_model, d_model)
        self.act = {"gelu_tanh": nn.GELU("tanh"), "relu": nn.ReLU(), "no_activation": nn.Identity()}.get(bug, nn.GELU())

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, d_model, n_heads, bug=None):
        super().__init__()
        self.bug = bug
        eps = {"ln_eps_1e-6": 1e-6, "ln_eps_1e-12": 1e-12}.get(bug, 1e-5)
        self.ln1 = nn.LayerNorm(d_model, eps=eps)
        self.attn = CausalSelfAttention(d_model, n_heads, bug)
        self.ln2 = nn.LayerNorm(d_model, eps=eps)
        self.mlp = MLP(d_model, bug)

    def forward(self, x):
        if self.bug == "post_ln":
            x = self.ln1(x + self.attn(x))
            return self.ln2(x + self.mlp(x))
        if self.bug == "parallel":
            return x + self.attn(self.ln1(x)) + self.mlp(self.ln2(x))
        if self.bug == "no_residual":
            return self.mlp(self.ln2(self.attn(self.ln1(x))))
        if self.bug == "no_residual_attn":
            x = self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))
        if self.bug == "no_residual_mlp":
            return self.mlp(self.ln2(x + self.attn(self.ln1(x))))
        if self.bug == "ln_unbiased":  # LayerNorm by hand with torch.var's default (divides by d - 1)
            def ln(norm, h):
                return norm.weight * (h - h.mean(-1, keepdim=True)) / torch.sqrt(h.var(-1, keepdim=True) + 1e-5) + norm.bias
            x = x + self.attn(ln(self.ln1, x))
            return x + self.mlp(ln(self.ln2, x))
        x = x + self.attn(self.ln1(x))
        return x + self.mlp((self.ln1 if self.bug == "ln1_twice" else self.ln2)(x))


class GPT(nn.Module):
    BUG = None  # a mistake, for the wrong answers below
    BUG_BLOCKS = None  # the blocks that have it (None: all)

    def __init__(self, vocab_size, d_model, n_layers, n_heads, max_seq_len):
        super().__init__()
        self.max_seq_len = max_seq_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_seq_len, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, self.BUG if self.BUG_BLOCKS is None or i in self.BUG_BLOCKS else None)
            for i in range(n_layers))
        if self.BUG == "shared_blocks":
            self.blocks = nn.ModuleList([Block(d_model, n_heads)] * n_layers)
        self.ln_f = nn.LayerNorm(d_model, eps={"ln_f_eps_1e-3": 1e-3, "ln_f_eps_0.1": 0.1}.get(self.BUG, 1e-5))

    def embed(self, tokens):
        x = self.tok_emb(tokens)
        pos = self.pos_emb(torch.arange(tokens.shape[1]))
        if self.BUG == "embedding_dropout_always":
            x = F.dropout(x, 0.1)
        if self.BUG == "positions_twice":
            return x + pos + pos
        if self.BUG == "no_positions":
            return x
        if self.BUG == "scaled_embedding":
            return x * math.sqrt(x.shape[-1]) + pos
        return x + pos

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        x = x if self.BUG == "no_final_norm" else self.ln_f(x)
        logits = x @ self.tok_emb.weight.T
        if self.BUG == "probabilities":
            return logits.softmax(-1)
        if self.BUG == "last_only":
            return logits[:, -1]
        return logits

    @torch.no_grad()
    def generate(self, prompt, max_new_tokens, temperature=1.0, generator=None):
        tokens = prompt
        for _ in range(max_new_tokens):
            logits = self(tokens[:, -self.max_seq_len:])[:, -1]
            if temperature == 0:
                new = logits.argmax(dim=-1, keepdim=True)
            else:
                new = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator)
            tokens = torch.cat([tokens, new], dim=1)
        return tokens


def with_bug(bug, blocks=None, base=GPT):
    return type(f"GPT_{bug}", (base,), {"BUG": bug, "BUG_BLOCKS": blocks})


# ----------------------------------------------------------------------------- correct answers in other styles


class EinsumAttention(CausalSelfAttention):
    def forward(self, x):
        B, T, d = x.shape
        h = self.n_heads
        q, k, v = (p(x).reshape(B, T, h, d // h) for p in (self.q_proj, self.k_proj, self.v_proj))
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // h)
        future = torch.arange(T)[None, :] > torch.arange(T)[:, None]
        weights = torch.softmax(scores.masked_fill(future, -1e9), dim=-1)
        return self.out_proj(torch.einsum("bhqk,bkhd->bqhd", weights, v).reshape(B, T, d))


class LoopAttention(CausalSelfAttention):
    def forward(self, x):
        B, T, d = x.shape
        dh = d // self.n_heads
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        mask = torch.full((T, T), float("-inf")).triu(1)
        heads = []
        for i in range(self.n_heads):
            part = slice(i * dh, (i + 1) * dh)
            scores = q[..., part] @ k[..., part].transpose(1, 2) / dh ** 0.5 + mask
            heads.append(torch.softmax(scores, dim=-1) @ v[..., part])
        return self.out_proj(torch.cat(heads, dim=-1))


class AdditiveMaskAttention(CausalSelfAttention):
    """A -1e4 additive mask: exp(-1e4) underflows to exactly 0 in float32, so it is as causal as -inf."""

    def forward(self, x):
        B, T, d = x.shape
        h = self.n_heads
        q, k, v = (p(x).view(B, T, h, d // h).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // h) + torch.full((T, T), -1e4).triu(1)
        return self.out_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, d))


class ErfMLP(MLP):
    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(0.5 * h * (1 + torch.erf(h / math.sqrt(2))))


class SequentialGPT(GPT):
    """blocks as nn.Sequential; position ids and the attention scale kept as buffers."""

    def __init__(self, vocab_size, d_model, n_layers, n_heads, max_seq_len):
        super().__init__(vocab_size, d_model, n_layers, n_heads, max_seq_len)
        self.blocks = nn.Sequential(*self.blocks)
        self.register_buffer("position_ids", torch.arange(max_seq_len))
        for block in self.blocks:
            block.mlp = ErfMLP(d_model)
            block.attn.register_buffer("scale", torch.tensor((d_model // n_heads) ** -0.5))

    def forward(self, tokens):
        x = self.tok_emb(tokens) + self.pos_emb(self.position_ids[: tokens.shape[1]])
        return self.ln_f(self.blocks(x)) @ self.tok_emb.weight.T


class Float64GPT(GPT):
    def __init__(self, vocab_size, d_model, n_layers, n_heads, max_seq_len):
        super().__init__(vocab_size, d_model, n_layers, n_heads, max_seq_len)
        self.double()


def attention_style(attention_class):
    class StyledBlock(Block):
        def __init__(self, d_model, n_heads, bug=None):
            super().__init__(d_model, n_heads, bug)
            self.attn = attention_class(d_model, n_heads)

    class StyledGPT(GPT):
        def __init__(self, vocab_size, d_model, n_layers, n_heads, max_seq_len):
            super().__init__(vocab_size, d_model, n_layers, n_heads, max_seq_len)
            self.blocks = nn.ModuleList(StyledBlock(d_model, n_heads) for _ in range(n_layers))

    return StyledGPT


class FusedAttention(nn.Module):
    """GPT-2's layout: one Linear for q, k and v, and a causal-mask buffer."""

    def __init__(self, d_model, n_heads, max_seq_len):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.register_buffer("mask", torch.tril(torch.ones(max_seq_len, max_seq_len)).view(1, 1, max_seq_len, max_seq_len))

    def forward(self, x):
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (z.view(B, T, self.n_heads, -1).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
        scores = scores.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        return self.out_proj((scores.softmax(-1) @ v).transpose(1, 2).contiguous().view(B, T, d))


class FusedGPT(GPT):
    """Fused qkv, a mask buffer, a tied head module, and generation with a KV-free loop of its own."""

    def __init__(self, vocab_size, d_model, n_layers, n_heads, max_seq_len):
        super().__init__(vocab_size, d_model, n_layers, n_heads, max_seq_len)
        for block in self.blocks:
            block.attn = FusedAttention(d_model, n_heads, max_seq_len)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    @torch.no_grad()
    def generate(self, prompt, max_new_tokens, temperature=1.0, generator=None):
        out = prompt.clone()
        for _ in range(max_new_tokens):
            last = self(out[:, max(0, out.shape[1] - self.max_seq_len):])[:, -1, :]
            if temperature > 0:
                probs = F.softmax(last / temperature, dim=-1)
                new = torch.multinomial(probs, num_samples=1, generator=generator)
            else:
                new = torch.argmax(last, dim=-1, keepdim=True)
            out = torch.cat((out, new), dim=1)
        return out


class CachedGPT(GPT):
    """Generation with a KV cache while the text fits the context; a sliding window after that."""

    def forward(self, tokens, cache=None):
        start = 0 if cache is None or not cache[0] else cache[0][0].shape[2]
        x = self.tok_emb(tokens) + self.pos_emb(torch.arange(start, start + tokens.shape[1]))
        for n, block in enumerate(self.blocks):
            a = block.attn
            h = block.ln1(x)
            B, T, d = h.shape
            q, k, v = (p(h).view(B, T, a.n_heads, -1).transpose(1, 2) for p in (a.q_proj, a.k_proj, a.v_proj))
            if cache is not None:
                if cache[n]:
                    k, v = torch.cat([cache[n][0], k], 2), torch.cat([cache[n][1], v], 2)
                cache[n] = (k, v)
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            allowed = torch.arange(k.shape[2])[None, :] <= torch.arange(start, start + T)[:, None]
            out = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
            x = x + a.out_proj(out.transpose(1, 2).reshape(B, T, d))
            x = x + block.mlp(block.ln2(x))
        return self.ln_f(x) @ self.tok_emb.weight.T

    @torch.no_grad()
    def generate(self, prompt, max_new_tokens, temperature=1.0, generator=None):
        tokens, cache = prompt, [None] * len(self.blocks)
        logits = self(tokens, cache)[:, -1]
        for _ in range(max_new_tokens):
            if temperature == 0:
                new = logits.argmax(-1, keepdim=True)
            else:
                new = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)
            tokens = torch.cat([tokens, new], dim=1)
            if tokens.shape[1] <= self.max_seq_len:
                logits = self(new, cache)[:, -1]
            else:
                logits = self(tokens[:, -self.max_seq_len:])[:, -1]
        return tokens


# ----------------------------------------------------------------------------- wrong GPTs beyond a flag


class UntiedGPT(GPT):
    def __init__(self, vocab_size, d_model, n_layers, n_heads, max_seq_len):
        super().__init__(vocab_size, d_model, n_layers, n_heads, max_seq_len)
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


class TorchMHAGPT(GPT):
    def __init__(self, vocab_size, d_model, n_layers, n_heads, max_seq_len):
        super().__init__(vocab_size, d_model, n_layers, n_heads, max_seq_len)
        for block in self.blocks:
            block.attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)


class TfcoreAttentionGPT(GPT):
    def __init__(self, vocab_size, d_model, n_layers, n_heads, max_seq_len):
        from tfcore.heads import MultiHeadAttention

        super().__init__(vocab_size, d_model, n_layers, n_heads, max_seq_len)
        for block in self.blocks:
            block.attn = MultiHeadAttention(d_model, n_heads)


class GPT2NamesGPT(GPT):
    def __init__(self, vocab_size, d_model, n_layers, n_heads, max_seq_len):
        super().__init__(vocab_size, d_model, n_layers, n_heads, max_seq_len)
        for block in self.blocks:
            block.mlp.c_fc, block.mlp.c_proj = block.mlp.fc1, block.mlp.fc2
            del block.mlp.fc1, block.mlp.fc2


class TransposedMLP(nn.Module):
    def __init__(self, d_model):
        super().__init__()
        self.fc1 = nn.Module()
        self.fc1.weight = nn.Parameter(torch.randn(d_model, 4 * d_model) * 0.02)  # (in, out): x @ W
        self.fc1.bias = nn.Parameter(torch.zeros(4 * d_model))
        self.fc2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x):
        return self.fc2(F.gelu(x @ self.fc1.weight + self.fc1.bias))


class TransposedGPT(GPT):
    def __init__(self, vocab_size, d_model, n_layers, n_heads, max_seq_len):
        super().__init__(vocab_size, d_model, n_layers, n_heads, max_seq_len)
        for block in self.blocks:
            block.mlp = TransposedMLP(d_model)


class PositionParameterGPT(GPT):
    def __init__(self, vocab_size, d_model, n_layers, n_heads, max_seq_len):
        super().__init__(vocab_size, d_model, n_layers, n_heads, max_seq_len)
        del self.pos_emb
        self.pos_table = nn.Parameter(torch.zeros(max_seq_len, d_model))


class MaskArgumentBlock(Block):
    def forward(self, x, mask):
        return super().forward(x)


class BlocksWithMaskArgument(GPT):
    """Builds the mask once in GPT.forward and passes it to every block: block(x) alone then fails."""

    def __init__(self, vocab_size, d_model, n_layers, n_heads, max_seq_len):
        super().__init__(vocab_size, d_model, n_layers, n_heads, max_seq_len)
        self.blocks = nn.ModuleList(MaskArgumentBlock(d_model, n_heads) for _ in range(n_layers))

    def forward(self, tokens):
        mask = torch.tril(torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool))
        x = self.embed(tokens) * 1.01  # and its output differs, so the check probes the blocks
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x) @ self.tok_emb.weight.T


# ----------------------------------------------------------------------------- generate: wrong samplers


def sampler(pick):
    """A GPT whose generate draws each new token with pick(logits (B, V), temperature, generator) -> (B, 1)."""
    class Sampler(GPT):
        @torch.no_grad()
        def generate(self, prompt, max_new_tokens, temperature=1.0, generator=None):
            tokens = prompt
            for _ in range(max_new_tokens):
                logits = self(tokens[:, -self.max_seq_len:])
                tokens = torch.cat([tokens, pick(logits, temperature, generator)], dim=1)
            return tokens

    return Sampler


def _draw(logits, generator):
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)


def _greedy_or(draw):
    def pick(logits, temperature, generator):
        if temperature == 0:
            return logits[:, -1].argmax(-1, keepdim=True)
        return draw(logits, temperature, generator)
    return pick


WRONG_SAMPLERS = {
    "temperature_ignored": (_greedy_or(lambda lg, t, g: _draw(lg[:, -1], g)), "do not follow softmax(logits / temperature)"),
    "temperature_multiplied": (_greedy_or(lambda lg, t, g: _draw(lg[:, -1] * t, g)), "do not follow"),
    "first_position": (lambda lg, t, g: lg[:, 0].argmax(-1, keepdim=True) if t == 0 else _draw(lg[:, 0] / t, g),
                       "from the logits at the LAST position"),
    "always_greedy": (lambda lg, t, g: lg[:, -1].argmax(-1, keepdim=True), "do not follow"),
    "one_draw_for_all_rows": (_greedy_or(lambda lg, t, g: _draw(lg[:1, -1] / t, g).expand(lg.shape[0], 1)),
                              "do not follow"),
    "global_rng": (_greedy_or(lambda lg, t, g: torch.multinomial(torch.softmax(lg[:, -1] / t, -1), 1)),
                   "generators seeded alike"),
    "divides_by_zero": (lambda lg, t, g: _draw(lg[:, -1] / t, g), "RuntimeError"),
}


class NoCropGPT(GPT):
    @torch.no_grad()
    def generate(self, prompt, max_new_tokens, temperature=1.0, generator=None):
        tokens = prompt
        for _ in range(max_new_tokens):
            logits = self(tokens)[:, -1]
            new = logits.argmax(-1, keepdim=True) if temperature == 0 else torch.multinomial(
                torch.softmax(logits / temperature, -1), 1, generator=generator)
            tokens = torch.cat([tokens, new], 1)
        return tokens


class FirstWindowGPT(GPT):
    @torch.no_grad()
    def generate(self, prompt, max_new_tokens, temperature=1.0, generator=None):
        tokens = prompt
        for _ in range(max_new_tokens):
            logits = self(tokens[:, :self.max_seq_len])[:, -1]
            new = logits.argmax(-1, keepdim=True) if temperature == 0 else torch.multinomial(
                torch.softmax(logits / temperature, -1), 1, generator=generator)
            tokens = torch.cat([tokens, new], 1)
        return tokens


class NewTokensOnlyGPT(GPT):
    @torch.no_grad()
    def generate(self, prompt, max_new_tokens, temperature=1.0, generator=None):
        return GPT.generate(self, prompt, max_new_tokens, temperature, generator)[:, prompt.shape[1]:]


class StubGenerateGPT(GPT):
    def generate(self, prompt, max_new_tokens, temperature=1.0, generator=None):
        raise NotImplementedError("sample max_new_tokens tokens, one at a time")


# ----------------------------------------------------------------------------- train: trained models


def loaded(cls=GPT, **state_kwargs):
    """An instance of cls holding the shipped (trained) weights: a model trained as the lesson asks."""
    model = cls(**shipped_gpt_args())
    state = shipped_state_dict(**state_kwargs)
    if cls is FusedGPT:
        state = {**state, **{k: v for k, v in model.state_dict().items() if k.endswith("mask")},
                 "head.weight": state["tok_emb.weight"]}
    state = {**{k: v for k, v in model.state_dict().items() if k not in state}, **state}  # its own buffers
    model.load_state_dict(state)
    return model.eval()


def fresh(seed=0):
    torch.manual_seed(seed)
    return GPT(**shipped_gpt_args())


class NextTokenCheat(nn.Module):
    """Reads the next token from its input: a near-zero loss, and it sees the future."""

    def forward(self, tokens):
        nxt = torch.roll(tokens, -1, dims=1)
        return F.one_hot(nxt, 65).float() * 20.0


class DropoutGPT(GPT):
    """Dropout in training mode changes every output: the check must call eval() before probing."""

    def __init__(self, vocab_size, d_model, n_layers, n_heads, max_seq_len):
        super().__init__(vocab_size, d_model, n_layers, n_heads, max_seq_len)
        self.drop = nn.Dropout(0.1)

    def embed(self, tokens):
        return self.drop(super().embed(tokens))


def trained_dropout_model():
    model = DropoutGPT(**shipped_gpt_args())
    model.load_state_dict(shipped_state_dict())
    return model.train()


def trained_sdpa_model():
    return loaded(with_bug("sdpa"))


CASES = {
    "capstone.forward": Entry(
        solution=GPT,
        styles={"einsum": attention_style(EinsumAttention), "loop_over_heads": attention_style(LoopAttention),
                "fused_qkv_tied_head_mask_buffer": FusedGPT, "kv_cache": CachedGPT,
                "additive_mask_minus_1e4": attention_style(AdditiveMaskAttention),
                "sequential_erf_formula_buffers": SequentialGPT, "float64": Float64GPT},
        wrong={
            "no_scale": (with_bug("no_scale"), "block 0 is the first block whose output differs from tfcore's "
                                               "(3 held-out windows of 17 characters): the attention scores are "
                                               "not scaled"),
            "no_scale_in_block_2": (with_bug("no_scale", blocks={2}), "block 2 is the first block"),
            "scale_d_model": (with_bug("scale_d_model"), "1/sqrt(d_model)"),
            "scale_d_head": (with_bug("scale_d_head"), "divided by d_head"),
            "post_ln": (with_bug("post_ln"), "Post-LN"),
            "no_mask": (with_bug("no_mask"), "no causal mask"),
            "mask_inverted": (with_bug("mask_inverted"), "the causal mask is inverted"),
            "mask_inverted_finite": (with_bug("mask_inverted_finite"), "the causal mask is inverted"),
            "mask_triu": (with_bug("mask_triu"), "torch.tril, not torch.triu"),
            "mask_after_softmax": (with_bug("mask_after_softmax"), "applied after the softmax"),
            "mask_sees_next_token": (with_bug("mask_off_by_one"), "lets query i see key i + 1"),
            "mask_hides_diagonal": (with_bug("mask_no_self"), "the causal mask hides the diagonal"),
            "mask_missing_in_last_block": (with_bug("no_mask", blocks={3}), "block 3 is the first block whose "
                                                                            "output differs from tfcore's (3 held-out "
                                                                            "windows of 17 characters): no causal mask"),
            "attention_dropout_in_eval": (with_bug("dropout_always"), "usually dropout: F.dropout(x, p) drops in eval"),
            "embedding_dropout_in_eval": (with_bug("embedding_dropout_always"), "usually dropout"),
            "no_residual_attn": (with_bug("no_residual_attn"), "residual connection around the attention is missing"),
            "no_residual_mlp": (with_bug("no_residual_mlp"), "residual connection around the MLP is missing"),
            "ln_eps_1e-6": (with_bug("ln_eps_1e-6"), "the LayerNorms use eps = 1e-6"),
            "ln_eps_1e-12": (with_bug("ln_eps_1e-12"), "the LayerNorms use eps = 1e-12"),
            "ln_unbiased_variance": (with_bug("ln_unbiased"), "divides by the unbiased variance"),
            "ln_f_eps_1e-3": (with_bug("ln_f_eps_1e-3"), "the blocks agree with tfcore's, but the final LayerNorm "
                                                         "ln_f uses eps = 1e-3"),
            "ln_f_eps_0.1": (with_bug("ln_f_eps_0.1"), "ln_f uses eps = 0.1"),
            "tfcore_functional_attention": (with_bug("tfcore_sdpa"), "calls tfcore.attention.scaled_dot_product_attention"),
            "softmax_queries": (with_bug("softmax_queries"), "softmax runs over the queries"),
            "split_view": (with_bug("split_view"), "heads are split by reshaping"),
            "merge_view": (with_bug("merge_view"), "heads are merged by reshaping"),
            "no_out_proj": (with_bug("no_out_proj"), "out_proj is not applied"),
            "parallel": (with_bug("parallel"), "both read the block's input"),
            "no_residual": (with_bug("no_residual"), "residual connections are missing"),
            "ln1_twice": (with_bug("ln1_twice"), "the MLP reads ln1(x)"),
            "gelu_tanh": (with_bug("gelu_tanh"), "tanh approximation of GELU"),
            "relu": (with_bug("relu"), "uses ReLU"),
            "no_activation": (with_bug("no_activation"), "no activation between fc1 and fc2"),
            "shared_blocks": (with_bug("shared_blocks"), "share one set of weights"),
            "positions_twice": (with_bug("positions_twice"), "position embeddings are added twice"),
            "no_positions": (with_bug("no_positions"), "position embeddings are missing"),
            "scaled_embedding": (with_bug("scaled_embedding"), "multiplied by sqrt(d_model)"),
            "no_final_norm": (with_bug("no_final_norm"), "final LayerNorm ln_f is missing"),
            "probabilities": (with_bug("probabilities"), "returns probabilities"),
            "last_position_only": (with_bug("last_only"), "not only the last"),
            "untied_head": (UntiedGPT, "head.weight (65, 128) is an unembedding of its own"),
            "torch_mha": (TorchMHAGPT, "uses torch.nn.MultiheadAttention (at 'blocks.0.attn')"),
            "tfcore_attention": (TfcoreAttentionGPT, "uses tfcore.heads.MultiHeadAttention"),
            "sdpa": (with_bug("sdpa"), "calls torch.nn.functional.scaled_dot_product_attention"),
            "gpt2_names": (GPT2NamesGPT, "no parameter blocks.0.mlp.fc1.weight (512, 128) (is blocks.0.mlp.c_fc.weight"),
            "transposed_weight": (TransposedGPT, "nn.Linear(in, out) stores its weight as (out, in)"),
            "position_parameter": (PositionParameterGPT, "no parameter pos_emb.weight"),
            "blocks_need_a_mask": (BlocksWithMaskArgument, "each block is called as block(x)"),
        },
    ),
    "capstone.generate": Entry(
        solution=GPT,
        styles={"fused_qkv_tied_head_mask_buffer": FusedGPT, "kv_cache": CachedGPT,
                "einsum": attention_style(EinsumAttention), "float64": Float64GPT,
                "sequential_erf_formula_buffers": SequentialGPT},
        wrong={
            **{name: (sampler(pick), hint) for name, (pick, hint) in WRONG_SAMPLERS.items()},
            "no_crop": (NoCropGPT, "feed the model at most its last max_seq_len tokens"),
            "first_window": (FirstWindowGPT, "LAST 64 tokens"),
            "new_tokens_only": (NewTokensOnlyGPT, "returned only the new tokens"),
            "stub_generate": (StubGenerateGPT, "NotImplementedError"),
            "wrong_forward": (with_bug("no_scale"), "make capstone.forward pass first"),
            "sdpa": (with_bug("sdpa"), "calls torch.nn.functional.scaled_dot_product_attention"),
            "tfcore_functional_attention": (with_bug("tfcore_sdpa"), "calls tfcore.attention.scaled_dot_product_attention"),
            "torch_mha": (TorchMHAGPT, "torch.nn.MultiheadAttention"),
            "fixed_d_head": (with_bug("fixed_d_head"), "does your code fix a size of the shipped model"),
        },
    ),
    "capstone.train": Entry(
        solution=loaded(),
        styles={"fused_qkv_tied_head_mask_buffer": loaded(FusedGPT, fused_qkv=True),
                "loop_over_heads": loaded(attention_style(LoopAttention)),
                "dropout_left_in_training_mode": trained_dropout_model(), "float64": loaded(Float64GPT),
                "sequential_erf_formula_buffers": loaded(SequentialGPT)},
        wrong={
            "untrained": (fresh(), "measured by the check: a correct model reaches"),
            "no_mask": (loaded(with_bug("no_mask")), "your model sees future tokens: changing the tokens from position"),
            "mask_off_by_one": (loaded(with_bug("mask_off_by_one")), "your model sees future tokens"),
            "mask_inverted_finite": (loaded(with_bug("mask_inverted_finite")), "your model sees future tokens"),
            "next_token_cheat": (NextTokenCheat(), "your model sees future tokens"),
            "no_mask_in_last_block": (loaded(with_bug("no_mask", blocks={3})), "your model sees future tokens"),
            "attention_dropout_in_eval": (loaded(with_bug("dropout_always")), "usually dropout"),
            "tfcore_functional_attention": (loaded(with_bug("tfcore_sdpa")),
                                            "calls tfcore.attention.scaled_dot_product_attention"),
            "probabilities": (loaded(with_bug("probabilities")), "returns probabilities"),
            "sdpa": (trained_sdpa_model(), "calls torch.nn.functional.scaled_dot_product_attention"),
            "class_not_model": (GPT, "GPT raised TypeError"),
        },
    ),
}


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_capstone_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)


# ----------------------------------------------------------------------------- the checks' own promises


def test_the_first_differing_block_is_named_and_the_others_pass():
    from tfcore.grading import check

    for block in (0, 3):
        result = check("capstone.forward", with_bug("gelu_tanh", blocks={block}))
        assert f"block {block} is the first block whose output differs" in result.message, result


def test_a_stub_generate_after_a_working_model_is_a_failure_naming_the_stub():
    from tfcore.grading import check

    result = check("capstone.generate", StubGenerateGPT)
    assert result.status == "failed" and "sample max_new_tokens tokens" in result.message


def test_sampling_bound_cannot_flake_for_a_correct_sampler():
    """Over many seeds a correct sampler's largest CDF gap stays far inside the bound (false alarm < 1e-9)."""
    from tfcore.grading.capstone import SAMPLE_ROWS, _dkw_gap, _tiny

    tiny, prompt = _tiny()
    with torch.no_grad():
        probs = torch.softmax(tiny(prompt)[0, -1].double() / 0.7, -1)
    gaps = []
    for seed in range(200):
        draws = torch.multinomial(probs.float(), SAMPLE_ROWS, replacement=True, generator=torch.Generator().manual_seed(seed))
        gap, bound = _dkw_gap(draws, probs)
        gaps.append(gap)
    assert max(gaps) < 0.6 * bound, (max(gaps), bound)
    # and each wrong sampler's true distance is more than twice the bound: detected whatever the seed
    flat = torch.softmax(tiny(prompt)[0, -1].double().detach(), -1)
    order = probs.argsort(descending=True)
    distance = float((probs[order].cumsum(0) - flat[order].cumsum(0)).abs().max())
    assert distance > 2 * bound, (distance, bound)


class StubForwardGPT(GPT):
    """The exercise notebook as generated: the constructors are given, forward is still the stub."""

    def forward(self, tokens):
        raise NotImplementedError("token embeddings plus positions, the blocks, the final LayerNorm, the tied unembedding")


def test_the_exercise_as_generated_reads_not_attempted_inline_and_through_the_wall():
    from test_grading_remote import through_the_wall
    from tfcore.grading import check

    for exercise_id, answer in (("capstone.forward", StubForwardGPT), ("capstone.generate", StubForwardGPT),
                                ("capstone.train", StubForwardGPT(**shipped_gpt_args()))):
        for result in (check(exercise_id, answer), through_the_wall(exercise_id, answer)):
            assert result.status == "not attempted", result
            assert "not attempted yet (StubForwardGPT raised NotImplementedError)" in result.message, result
