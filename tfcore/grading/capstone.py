"""Checks for the capstone of lesson 09 (your own GPT): ``capstone.*``.

The learner's ``GPT(vocab_size, d_model, n_layers, n_heads, max_seq_len)`` follows the parameter
table of ``tfcore.capstone``; the checks copy the shipped ``shakespeare-char-cpu`` model into it and
compare it with ``tfcore.Transformer``:

- ``capstone.forward`` (answer: the class ``GPT``): logits equal tfcore's on held-out text; on a
  mismatch, each block is run on tfcore's input to name the first block that differs and the
  likely cause (variants of the block computed with tfcore's functions).
- ``capstone.generate`` (answer: the class ``GPT``): ``model.generate(prompt, max_new_tokens,
  temperature=1.0, generator=None)`` continues greedily as tfcore does (temperature 0), and its
  samples follow softmax(logits / temperature) (a bound that a correct sampler breaks with
  probability below 1e-8, whatever the seed).
- ``capstone.train`` (answer: the trained model): the check measures the validation loss itself
  and runs a leakage test first (a model that sees the future fails, however low its loss).

Every check refuses ``nn.MultiheadAttention``, ``F.scaled_dot_product_attention``, tfcore's model
classes and tfcore's attention functions (seen from the frames above each torch call) inside the
learner's model. Their tests-for-tests live in ``tests/test_grading_lesson09_capstone.py``.
"""

from __future__ import annotations

import difflib
import math
import os
import sys
from functools import lru_cache
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from tfcore.capstone import gpt_args, parameter_table, shipped_model, to_gpt
from tfcore.grading import Checker, exercise
from tfcore.heads import merge_heads, split_heads
from tfcore.losses import lm_loss
from tfcore.masks import causal_mask
from tfcore.mlp import gelu
from tfcore.model import Transformer, TransformerConfig
from tfcore.norms import layer_norm

LESSON = "09_training"

# Inside the learner's model: module classes (by "module.QualName" prefix) and functions refused.
FORBIDDEN_MODULES = {
    "torch.nn.modules.activation.MultiheadAttention": "torch.nn.MultiheadAttention",
    "torch.nn.modules.transformer.": "a torch.nn.Transformer layer",
    "tfcore.": "a tfcore class",
}
FORBIDDEN_FUNCTIONS = {
    "scaled_dot_product_attention": "torch.nn.functional.scaled_dot_product_attention",
    "multi_head_attention_forward": "torch.nn.functional.multi_head_attention_forward",
    "_native_multi_head_attention": "torch._native_multi_head_attention (nn.MultiheadAttention's fast path)",
    # tfcore's attention functions: seen from the Python frames above each torch call they make
    "tfcore.attention.scaled_dot_product_attention": "tfcore.attention.scaled_dot_product_attention",
    "tfcore.heads.attend": "tfcore.heads.attend",
    "tfcore.flash.naive_attention": "tfcore.flash.naive_attention",
    "tfcore.flash.flash_attention": "tfcore.flash.flash_attention",
    "tfcore.flash.flash_attention_steps": "tfcore.flash.flash_attention_steps",
    "tfcore.triton_flash.triton_attention": "tfcore.triton_flash.triton_attention",
}
_TFCORE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # .../tfcore/
_GRADING_DIR = os.path.join(_TFCORE_DIR, "grading") + os.sep
ATOL, RTOL = 1e-4, 1e-4  # logits agree to ~1e-5 in float32 (measured 1.3e-5); every variant differs by > 0.01
TIE = 2e-3  # a greedy step whose top two logits are closer than this may go either way

# capstone.train: what a correct small GPT reaches in the lesson's budget, and what no causal model reaches.
TRAIN_MAX_VAL_LOSS = 2.3  # measured: 2.01-2.06 after the lesson's 800 steps (3 seeds); bigram 2.48
TRAIN_MIN_HONEST_LOSS = 1.0


# ----------------------------------------------------------------------------- watching the learner's model


class WatchFunctions(TorchFunctionMode):
    """Records which of ``names`` (torch functions, by ``__name__``) run inside the block.

    The monitor of ``c.monitor``: in the grader it runs in the kernel, around the learner's call.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names, self.seen = tuple(names), []

    def __enter__(self):
        self.seen = []
        return super().__enter__()

    def report(self) -> dict:
        """What ``c.monitor`` brings back from the kernel: {"seen": sorted names}."""
        return {"seen": sorted(self.seen)}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.names and name not in self.seen:
            self.seen.append(name)
        caller = _tfcore_caller(sys._getframe(1), self.names)
        if caller is not None and caller not in self.seen:
            self.seen.append(caller)
        return func(*args, **(kwargs or {}))


def _tfcore_caller(frame: Any, names: tuple[str, ...], depth: int = 40) -> str | None:
    """The first of ``names`` ("tfcore.<module>.<function>") running in a frame at or above ``frame``.

    The frames above a torch call, up to the grader's own (which called the learner's code): a torch
    call made inside, e.g., tfcore.attention.scaled_dot_product_attention names that function.
    """
    while frame is not None and depth > 0:
        path = frame.f_code.co_filename
        if path.startswith(_GRADING_DIR):
            return None
        if path.startswith(_TFCORE_DIR):
            module = path[len(_TFCORE_DIR):-3].replace(os.sep, ".")
            name = f"tfcore.{module}.{frame.f_code.co_name}"
            if name in names:
                return name
        frame, depth = frame.f_back, depth - 1
    return None


def _call_watching(c: Checker, fn: Any, *args: Any, case: str, hint: str | None = None,
                   **kwargs: Any) -> Any:
    """``c.call(fn, *args, **kwargs)``; fails if it called one of ``FORBIDDEN_FUNCTIONS``."""
    with c.monitor(WatchFunctions, tuple(FORBIDDEN_FUNCTIONS)) as watch:
        out = c.call(fn, *args, case=case, hint=hint, **kwargs)
    seen = [str(s) for s in (watch.seen if isinstance(watch.seen, (list, tuple)) else ()) if s in FORBIDDEN_FUNCTIONS]
    if seen:
        names = ", ".join(FORBIDDEN_FUNCTIONS[s] for s in sorted(seen))
        c.fail(f"your model calls {names} on {case}: compute the attention yourself (scores, scale, causal mask, "
               "softmax over the keys, weighted sum of the values)")
    return out


def _refuse_forbidden_modules(c: Checker, model: Any) -> None:
    for name, qualname in c.module_types(model):
        for prefix, what in FORBIDDEN_MODULES.items():
            if qualname.startswith(prefix):
                where = f"at {name!r}" if name else "as the model itself"
                shown = qualname if what == "a tfcore class" else what
                c.fail(f"your model uses {shown} ({where}): build it from your own parts (nn.Linear, nn.Embedding, "
                       "nn.LayerNorm and your own attention), without tfcore's or PyTorch's attention modules")


def _forward(c: Checker, model: Any, tokens: Tensor, case: str) -> Any:
    return _call_watching(c, model, tokens, case=case,
                          hint="the model is called as model(tokens) with tokens (B, T) int64 and returns "
                               "logits (B, T, vocab_size)")


# ----------------------------------------------------------------------------- the reference


@lru_cache(maxsize=1)
def _reference() -> tuple[Transformer, dict[str, int], Tensor, Any]:
    """(the shipped model, its GPT arguments, held-out ids, the tokenizer); cached, never changed."""
    from tfcore.data import shakespeare_splits

    model = shipped_model()
    for p in model.parameters():
        p.requires_grad_(False)
    tok, _, val_ids = shakespeare_splits()
    return model, gpt_args(model.config), val_ids, tok


@lru_cache(maxsize=2)
def _shipped_state(fused_qkv: bool) -> dict[str, Tensor]:
    return to_gpt(_reference()[0], fused_qkv=fused_qkv)


def _held_out(c: Checker, batch: int, length: int) -> Tensor:
    """Random windows (B, T) of held-out text, from the check's generator."""
    val_ids = _reference()[2]
    starts = torch.randint(0, len(val_ids) - length, (batch,), generator=c.gen)
    return torch.stack([val_ids[s:s + length] for s in starts.tolist()])


def _block_params(state: dict[str, Tensor], i: int) -> dict[str, Tensor]:
    prefix = f"blocks.{i}."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _attention(p: dict[str, Tensor], x: Tensor, n_heads: int, bug: str | None) -> Tensor | tuple[Tensor, Tensor]:
    """Causal multi-head self-attention from the capstone parameters; ``bug`` injects one mistake.

    x: (B, T, d_model) -> (B, T, d_model).
    """
    b, t, d = x.shape
    d_head = d // n_heads
    q, k, v = (F.linear(x, p[f"attn.{n}.weight"], p[f"attn.{n}.bias"]) for n in ("q_proj", "k_proj", "v_proj"))
    if bug == "split_view":  # (B, T, d) read as (B, h, T, d_head) without the transpose
        q, k, v = (z.reshape(b, n_heads, t, d_head) for z in (q, k, v))
    else:
        q, k, v = (split_heads(z, n_heads) for z in (q, k, v))  # (B, h, T, d_head)
    scale = {"no_scale": 1.0, "scale_d_model": d ** -0.5, "scale_d_head": 1.0 / d_head}.get(bug, d_head ** -0.5)
    scores = q @ k.transpose(-2, -1) * scale  # (B, h, T, T)
    causal = causal_mask(t)
    allowed = {"no_mask": torch.ones_like(causal), "mask_inverted": ~causal, "mask_upper": causal.T,
               "mask_next": torch.ones_like(causal).tril(1), "mask_no_self": causal.tril(-1)}.get(bug, causal)
    if bug == "mask_after_softmax":
        weights = torch.softmax(scores, dim=-1) * causal
    else:
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-2 if bug == "softmax_queries" else -1)
    out = weights @ v  # (B, h, T, d_head)
    merged = out.reshape(b, t, d) if bug == "merge_view" else merge_heads(out)
    if bug == "no_out_proj":
        return merged
    return F.linear(merged, p["attn.out_proj.weight"], p["attn.out_proj.bias"])


def _block(p: dict[str, Tensor], x: Tensor, n_heads: int, bug: str | None = None) -> Tensor:
    """One Pre-LN block (x: (B, T, d_model) -> (B, T, d_model)) with an optional injected ``bug``."""
    def ln(name: str, h: Tensor) -> Tensor:
        if bug == "ln_unbiased":  # a LayerNorm written by hand with torch.var's default (divides by d - 1)
            mu, var = h.mean(-1, keepdim=True), h.var(-1, keepdim=True)
            return p[f"{name}.weight"] * (h - mu) / torch.sqrt(var + 1e-5) + p[f"{name}.bias"]
        eps = {"ln_eps_1e-6": 1e-6, "ln_eps_1e-12": 1e-12, "ln_eps_1e-3": 1e-3}.get(bug, 1e-5)
        return layer_norm(h, p[f"{name}.weight"], p[f"{name}.bias"], eps)

    activation = {"gelu_tanh": lambda h: gelu(h, "tanh"), "relu": torch.relu, "no_activation": lambda h: h}.get(
        bug, lambda h: gelu(h, "none"))

    def attn(h: Tensor) -> Tensor:
        return _attention(p, h, n_heads, bug)

    def mlp(h: Tensor) -> Tensor:
        return F.linear(activation(F.linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"])), p["mlp.fc2.weight"],
                        p["mlp.fc2.bias"])

    if bug == "post_ln":
        x = ln("ln1", x + attn(x))
        return ln("ln2", x + mlp(x))
    if bug == "parallel":
        return x + attn(ln("ln1", x)) + mlp(ln("ln2", x))
    if bug == "no_residual":
        return mlp(ln("ln2", attn(ln("ln1", x))))
    x = (0 if bug == "no_residual_attn" else x) + attn(ln("ln1", x))
    return (0 if bug == "no_residual_mlp" else x) + mlp(ln("ln1" if bug == "ln1_twice" else "ln2", x))


# The plausible mistakes inside one block: (bug, message). Each message follows "block {i}: ".
BLOCK_BUGS = (
    ("no_scale", "the attention scores are not scaled: multiply q k^T by 1/sqrt(d_head) before the softmax"),
    ("scale_d_model", "the scores are scaled by 1/sqrt(d_model): the scale is 1/sqrt(d_head), d_head = d_model / n_heads"),
    ("scale_d_head", "the scores are divided by d_head: the scale is 1/sqrt(d_head)"),
    ("no_mask", "no causal mask: query i must not see keys j > i (the future); hide them with -inf before the softmax"),
    ("mask_inverted", "the causal mask is inverted: it hides the keys j <= i that query i may see and keeps the "
                      "future ones (keep j <= i, e.g. with torch.tril)"),
    ("mask_upper", "the causal mask keeps keys j >= i (the upper triangle): query i may see keys j <= i (torch.tril, "
                   "not torch.triu)"),
    ("mask_next", "the causal mask lets query i see key i + 1, one step into the future: keep the keys j <= i "
                  "(torch.tril(..., diagonal=0), or hide triu(..., diagonal=1))"),
    ("mask_no_self", "the causal mask hides the diagonal, so query i cannot see its own key and the first query "
                     "sees none (NaN): keep the keys j <= i, diagonal included (torch.tril(..., diagonal=0))"),
    ("mask_after_softmax", "the mask is applied after the softmax, so each row no longer sums to 1: fill the hidden "
                           "scores with -inf before the softmax"),
    ("softmax_queries", "the softmax runs over the queries axis: normalise each query's scores over the keys (the "
                        "last axis)"),
    ("split_view", "the heads are split by reshaping (B, T, d_model) straight to (B, h, T, d_head), which mixes "
                   "positions: view it as (B, T, h, d_head), then swap the T and h axes"),
    ("merge_view", "the heads are merged by reshaping (B, h, T, d_head) straight to (B, T, d_model), which mixes "
                   "positions: swap the h and T axes back first"),
    ("no_out_proj", "the attention's output projection out_proj is not applied to the merged heads"),
    ("post_ln", "it is a Post-LN block (x = LN(x + f(x))): the capstone GPT is Pre-LN, x = x + f(LN(x))"),
    ("parallel", "attention and MLP both read the block's input: the MLP reads x after the attention's update, "
                 "x = x + attn(ln1(x)); then x = x + mlp(ln2(x))"),
    ("no_residual", "the residual connections are missing: add each sublayer's output to x"),
    ("no_residual_attn", "the residual connection around the attention is missing: x = x + attn(ln1(x))"),
    ("no_residual_mlp", "the residual connection around the MLP is missing: x = x + mlp(ln2(x))"),
    ("ln_eps_1e-6", "the LayerNorms use eps = 1e-6: the capstone GPT's is 1e-5 (nn.LayerNorm's default)"),
    ("ln_eps_1e-12", "the LayerNorms use eps = 1e-12: the capstone GPT's is 1e-5 (nn.LayerNorm's default)"),
    ("ln_eps_1e-3", "the LayerNorms use eps = 1e-3: the capstone GPT's is 1e-5 (nn.LayerNorm's default)"),
    ("ln_unbiased", "the LayerNorm divides by the unbiased variance (torch.var divides by d - 1 by default): "
                    "LayerNorm's variance divides by d (var(..., unbiased=False), or nn.LayerNorm)"),
    ("ln1_twice", "the MLP reads ln1(x): it has its own LayerNorm, ln2"),
    ("gelu_tanh", "the MLP uses the tanh approximation of GELU: the shipped model uses the exact GELU, "
                  "x Phi(x) with the erf (F.gelu's default, nn.GELU())"),
    ("relu", "the MLP uses ReLU: the capstone GPT uses the exact GELU"),
    ("no_activation", "the MLP has no activation between fc1 and fc2: apply the exact GELU"),
)


def _embed(state: dict[str, Tensor], tokens: Tensor, bug: str | None = None) -> Tensor:
    """Token embedding plus learned positions: (B, T) -> (B, T, d_model), with an optional ``bug``."""
    e = state["tok_emb.weight"][tokens]
    pos = state["pos_emb.weight"][: tokens.shape[1]]
    if bug == "positions_twice":
        return e + 2 * pos
    if bug == "no_positions":
        return e
    if bug == "scaled_embedding":
        return e * math.sqrt(e.shape[-1]) + pos
    return e + pos


def _head(state: dict[str, Tensor], x: Tensor, bug: str | None = None) -> Tensor:
    """Final LayerNorm and tied unembedding: (B, T, d_model) -> logits (B, T, V)."""
    eps = FINAL_NORM_EPS.get(bug or "", 1e-5)
    h = x if bug == "no_final_norm" else layer_norm(x, state["ln_f.weight"], state["ln_f.bias"], eps)
    logits = h @ state["tok_emb.weight"].T
    if bug == "probabilities":
        return torch.softmax(logits, dim=-1)
    if bug == "log_probabilities":
        return torch.log_softmax(logits, dim=-1)
    return logits


# Another eps in ln_f alone: 1e-6 or 1e-12 move the logits by less than the tolerance (they pass: the
# model computes the same function to float32 precision); these do not.
FINAL_NORM_EPS = {"ln_f_eps_1e-3": 1e-3, "ln_f_eps_0.1": 0.1}

MODEL_BUGS = (
    ("positions_twice", "the position embeddings are added twice: add pos_emb once, to the token embeddings"),
    ("no_positions", "the position embeddings are missing: x = tok_emb(tokens) + pos_emb(positions 0 .. T-1)"),
    ("scaled_embedding", "the token embeddings are multiplied by sqrt(d_model): the capstone GPT adds them to the "
                         "positions unscaled"),
    ("no_final_norm", "the final LayerNorm ln_f is missing before the unembedding"),
    *((bug, f"the final LayerNorm ln_f uses eps = {bug.rsplit('_', 1)[1]}: the capstone GPT's is 1e-5 "
            "(nn.LayerNorm's default)") for bug in FINAL_NORM_EPS),
    ("probabilities", "the model returns probabilities: return the logits (no softmax at the end)"),
    ("log_probabilities", "the model returns log-probabilities: return the logits (no log_softmax at the end)"),
)


def _reference_forward(state: dict[str, Tensor], tokens: Tensor, n_heads: int, n_layers: int,
                       bug: str | None = None) -> Tensor:
    x = _embed(state, tokens, bug)
    for i in range(n_layers):
        x = _block(_block_params(state, i), x, n_heads)
    return _head(state, x, bug)


# ----------------------------------------------------------------------------- building and loading


def _shown(args: dict[str, int]) -> str:
    """``"GPT(vocab_size=65, d_model=128, ...)"``: how a case names the model it built."""
    return f"GPT({', '.join(f'{k}={v}' for k, v in args.items())})"


def _build(c: Checker, answer: Any, args: dict[str, int]) -> Any:
    """The learner's model ``answer(**args)``, refused if it holds a forbidden module."""
    case = _shown(args)
    model = c.call(answer, **args, case=case,
                   hint="the signature is GPT(vocab_size, d_model, n_layers, n_heads, max_seq_len)")
    _refuse_forbidden_modules(c, model)
    return model


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _load(c: Checker, model: Any, args: dict[str, int], state_for: Callable[[bool], dict[str, Tensor]],
          what: str) -> None:
    """Check the learner's parameter names and shapes against the table, then load ``state_for(fused)``.

    Accepted beyond the table: a fused ``attn.qkv`` projection instead of q/k/v, an unembedding
    module whose weight is tied to ``tok_emb.weight``, and buffers (a causal mask, position ids, a
    scale: they keep the values the learner's constructor gave them).
    """
    theirs = c.call(model.state_dict, case="model.state_dict()")
    shapes = {str(k): tuple(c.tensor(v, f"state_dict()[{k!r}]").shape) for k, v in theirs.items()}
    fused = any(k.endswith("attn.qkv.weight") for k in shapes)
    table = parameter_table(**args, fused_qkv=fused)
    vocab, d = args["vocab_size"], args["d_model"]
    state = dict(state_for(fused))
    missing = [k for k in table if k not in shapes]
    extra = [k for k in shapes if k not in table]
    parameters = set(c.parameter_names(model)) if extra else set()
    for name in list(extra):
        if shapes[name] == (vocab, d) and "tok_emb.weight" in shapes:
            same = bool(torch.equal(c.tensor(theirs[name], name), c.tensor(theirs["tok_emb.weight"], "tok_emb")))
            if not same:
                c.fail(f"{name} {_fmt(shapes[name])} is an unembedding of its own: the capstone GPT ties it to the "
                       "token embedding (logits = h @ tok_emb.weight.T, no separate matrix; or set "
                       f"{name.rsplit('.', 1)[0]}.weight = tok_emb.weight)")
            state[name] = state["tok_emb.weight"]
            extra.remove(name)
        elif name not in parameters:  # a buffer (a causal mask, position ids, ...): the learner's own values
            state[name] = c.tensor(theirs[name], name)
            extra.remove(name)
    for name in missing:
        close = difflib.get_close_matches(name, extra, n=1, cutoff=0.6)
        guess = f" (is {close[0]} {_fmt(shapes[close[0]])} meant to be it?)" if close else ""
        c.fail(f"your model has no parameter {name} {_fmt(table[name])}{guess}: name and shape every parameter as "
               "the table says")
    if extra:
        c.fail(f"your model has a parameter the table does not list: {extra[0]} {_fmt(shapes[extra[0]])}")
    for name, shape in table.items():
        if shapes[name] != shape:
            why = " (nn.Linear(in, out) stores its weight as (out, in))" if shapes[name] == shape[::-1] else ""
            c.fail(f"{name} has shape {_fmt(shapes[name])}, the table says {_fmt(shape)}{why}")
    c.call(model.load_state_dict, state, case=f"model.load_state_dict({what})")
    c.call(model.eval, case="model.eval()")


# ----------------------------------------------------------------------------- capstone.forward


def _diagnose(c: Checker, model: Any, tokens: Tensor, out: Any, ref: Tensor, case: str) -> None:
    """Name the first block whose output differs from tfcore's (each block run on tfcore's input), then the
    model-level mistakes; fails with the best message."""
    _, args, _, _ = _reference()
    state = _shipped_state(False)
    n_heads, n_layers = args["n_heads"], args["n_layers"]
    x = _embed(state, tokens)
    dtype = out.dtype if isinstance(out, Tensor) and out.is_floating_point() else x.dtype  # a float64 model: float64 x
    for i in range(n_layers):
        p = _block_params(state, i)
        want = _block(p, x, n_heads)
        block_case = f"block {i} on tfcore's input for {case}"
        got = c.call(model.blocks[i], x.to(dtype), case=block_case,
                     hint="each block is called as block(x) with x (B, T, d_model) and returns (B, T, d_model)")
        got_t = c.tensor(got, block_case)
        if got_t.shape == want.shape and torch.allclose(got_t.double(), want.double(), atol=ATOL, rtol=RTOL):
            x = want
            continue
        first = f"block {i} is the first block whose output differs from tfcore's ({case})"
        wrong = []
        for bug, message in BLOCK_BUGS:
            def variant(bug=bug):
                value = _block(p, x, n_heads, bug)
                if bug in ("mask_inverted", "mask_no_self"):  # a query that sees no key: NaN, zeros or uniform there
                    keep = torch.ones(x.shape[1], dtype=torch.bool)
                    keep[-1 if bug == "mask_inverted" else 0] = False
                    return value, keep[None, :, None].expand_as(value)
                return value
            wrong.append((f"{first}: {message}", variant))
        for j in range(n_layers):
            if j != i:
                wrong.append((f"{first}: it computes what block {j} computes, so your blocks share one set of "
                              "weights: build n_layers separate blocks (a list comprehension, not [Block(...)] * n)",
                              lambda j=j: _block(_block_params(state, j), x, n_heads)))
        c.compare(got_t, want, f"block {i}'s output, the first that differs from tfcore's ({case})", dtype="float",
                  atol=ATOL, rtol=RTOL, wrong=wrong, nonfinite=f"{first}: NaN/inf in its output")
        c.fail(first)  # not reached: compare has failed with the best message
    wrong = [(f"the blocks agree with tfcore's, but {message} ({case})",
              lambda bug=bug: _reference_forward(state, tokens, n_heads, n_layers, bug)) for bug, message in MODEL_BUGS]
    v, d = args["vocab_size"], args["d_model"]
    c.compare(out, ref, case, dtype="float", atol=ATOL, rtol=RTOL, wrong=wrong, shape_hints={
        (tokens.shape[0], v): "return the logits at every position (B, T, vocab_size), not only the last",
        tuple(tokens.shape) + (d,): "the unembedding is missing: logits = ln_f(x) @ tok_emb.weight.T",
    })
    c.fail(f"the blocks agree with tfcore's but the logits do not ({case}): check the embedding "
           "(tok_emb(tokens) + pos_emb(positions 0 .. T-1)), the final LayerNorm and the tied unembedding")


def _require_deterministic(c: Checker, model: Any, tokens: Tensor, first: Tensor, case: str) -> None:
    """Fail if a second forward pass on the same tokens (in eval mode) gives other logits: dropout left on."""
    again = c.tensor(_forward(c, model, tokens, case + ", a second time"), case)
    if again.shape == first.shape and not torch.equal(torch.nan_to_num(again), torch.nan_to_num(first)):
        c.fail(f"your model gives other logits when it runs twice on the same tokens ({case}) after model.eval(): "
               "something random is still on, usually dropout: F.dropout(x, p) drops in eval mode too unless "
               "you pass training=self.training (nn.Dropout follows eval() by itself). The capstone GPT has no "
               "dropout")


def _forward_cases(c: Checker) -> list[tuple[str, Tensor]]:
    t_max = _reference()[1]["max_seq_len"]
    return [
        ("3 held-out windows of 17 characters", _held_out(c, 3, 17)),
        ("one character (T=1)", _held_out(c, 1, 1)),
        (f"2 windows of the full context (T={t_max})", _held_out(c, 2, t_max)),
        ("5 windows of 37 characters", _held_out(c, 5, 37)),
    ]


@exercise("capstone.forward", "your GPT holds the shipped Shakespeare model: logits equal tfcore.Transformer's",
          lesson=LESSON)
def _capstone_forward(answer, c: Checker) -> None:
    ref_model, args, _, _ = _reference()
    model = _build(c, answer, args)
    _load(c, model, args, _shipped_state, "the shipped weights")
    c.given_code_ran()  # the constructors are given: an unwritten forward means "not attempted"
    for case, tokens in _forward_cases(c):
        out = _forward(c, model, tokens, case)
        with torch.no_grad():
            ref = ref_model(tokens)
        t = c.tensor(out, case)
        if t.shape == ref.shape and torch.allclose(t.double(), ref.double(), atol=ATOL, rtol=RTOL):
            c.compare(t, ref, case, dtype="float", atol=ATOL, rtol=RTOL)  # float64 logits are fine too
            continue
        _require_deterministic(c, model, tokens, t, case)
        with torch.no_grad():
            _diagnose(c, model, tokens, out, ref, case)


# ----------------------------------------------------------------------------- capstone.generate

SAMPLE_ROWS = 4096
SAMPLE_FALSE_ALARM = 1e-9  # per comparison of distributions; four comparisons per check


@lru_cache(maxsize=1)
def _tiny() -> tuple[Transformer, Tensor]:
    """A small random decoder whose next-token distributions are far from uniform, and a prompt (1, 3)."""
    config = TransformerConfig(vocab_size=65, d_model=16, n_layers=1, n_heads=2, max_seq_len=8)
    model = Transformer(config).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            gain = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            p.copy_(torch.randn(p.shape, generator=g) * (0.8 if p.dim() > 1 else 0.1) + gain)
    return model, torch.tensor([[3, 17, 41]])


def _dkw_gap(samples: Tensor, probs: Tensor) -> tuple[float, float]:
    """(largest gap between the empirical and the exact CDF, the gap a correct sampler exceeds w.p. < SAMPLE_FALSE_ALARM).

    The tokens are ordered by decreasing exact probability (fixed before sampling), so the CDF
    is the mass of the k most likely tokens: too sharp or too flat a distribution shows there.
    Dvoretzky-Kiefer-Wolfowitz (Massart's constant): P(sup |F_n - F| > eps) <= 2 exp(-2 n eps^2).
    """
    n = samples.numel()
    order = probs.argsort(descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    counts = torch.bincount(rank[samples.flatten()], minlength=len(order)).double()
    gap = float((counts.cumsum(0) / n - probs[order].double().cumsum(0)).abs().max())
    return gap, math.sqrt(math.log(2 / SAMPLE_FALSE_ALARM) / (2 * n))


def _token_text(tok: Any, ids: list[int]) -> str:
    return repr(tok.decode(ids))


GENERATE_HINT = ("the signature is generate(self, prompt, max_new_tokens, temperature=1.0, generator=None); "
                 "temperature=0 means greedy (the argmax, no division); feed the model at most its last "
                 "max_seq_len tokens")


def _generated(c: Checker, model: Any, prompt: Tensor, n_new: int, case: str, **kwargs: Any) -> Tensor:
    """Run model.generate and check the contract: (B, T + n_new) integer ids that start with the prompt."""
    out = _call_watching(c, model.generate, prompt, n_new, case=case, hint=GENERATE_HINT, **kwargs)
    t = c.tensor(out, case)
    want = (prompt.shape[0], prompt.shape[1] + n_new)
    if tuple(t.shape) == (prompt.shape[0], n_new):
        c.fail(f"generate returned only the new tokens on {case}: return the prompt followed by them, "
               f"{_fmt(want)}")
    if t.dim() == 3:
        c.fail(f"generate returned a tensor of shape {_fmt(tuple(t.shape))} on {case}: return token ids "
               f"{_fmt(want)}, not logits or probabilities")
    if tuple(t.shape) != want:
        c.fail(f"generate returned shape {_fmt(tuple(t.shape))} on {case}: expected {_fmt(want)}, the prompt "
               f"(B, T) followed by max_new_tokens={n_new} new tokens")
    if t.is_floating_point() or t.dtype == torch.bool:
        c.fail(f"generate returned dtype {t.dtype} on {case}: token ids are integers (torch.long)")
    if not torch.equal(t[:, : prompt.shape[1]], prompt):
        c.fail(f"the output does not start with the prompt on {case}: append each new token to the ids")
    c.cases += 1
    return t


def _greedy(model: Transformer, prompt: Tensor, n_new: int) -> tuple[Tensor, Tensor]:
    """tfcore's greedy continuation with a sliding window of max_seq_len, and each step's top-two logit gap."""
    tokens, gaps = prompt, []
    limit = model.config.max_seq_len
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(tokens[:, -limit:])[:, -1]
            top = logits.topk(2, dim=-1).values
            gaps.append(top[:, 0] - top[:, 1])
            tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    return tokens, torch.stack(gaps, dim=1)


def _check_greedy(c: Checker, model: Any, ref_model: Transformer, prompt: Tensor, n_new: int, case: str) -> None:
    tok = _reference()[3]
    out = _generated(c, model, prompt, n_new, case, temperature=0.0)
    ref, gaps = _greedy(ref_model, prompt, n_new)
    t0 = prompt.shape[1]
    limit = ref_model.config.max_seq_len
    for row in range(prompt.shape[0]):
        differ = (out[row, t0:] != ref[row, t0:]).nonzero()
        if not len(differ):
            continue
        k = int(differ[0])
        if float(gaps[row, k]) < TIE:  # a near tie: either token is right, and the texts part there
            c.note("a greedy step met a near tie between two characters; compared up to it")
            continue
        said = f"new token {k} of row {row} on {case}: yours {_token_text(tok, [int(out[row, t0 + k])])}, " \
               f"tfcore's {_token_text(tok, [int(ref[row, t0 + k])])}"
        context = ref[row : row + 1, : t0 + k]
        with torch.no_grad():
            first_window = ref_model(context[:, :limit])[:, -1].argmax(-1)
            first_position = ref_model(context[:, -limit:])[:, 0].argmax(-1)
        if t0 + k > limit and int(out[row, t0 + k]) == int(first_window):
            c.fail(f"greedy continuation differs at {said}: past max_seq_len={limit} tokens, feed the model the "
                   f"LAST {limit} tokens (tokens[:, -max_seq_len:]), not the first")
        if int(out[row, t0 + k]) == int(first_position) and t0 + k > 1:
            c.fail(f"greedy continuation differs at {said}: the next token comes from the logits at the LAST "
                   "position, logits[:, -1]")
        c.fail(f"greedy continuation differs from tfcore's at {said}: with temperature=0 take the argmax of the "
               "last position's logits, append it, repeat")


def _check_sampling(c: Checker, answer: Any, temperature: float) -> None:
    tiny, prompt = _tiny()
    args = gpt_args(tiny.config)
    built = _shown(args)
    case = f"{SAMPLE_ROWS} rows of one 3-token prompt, a small random {built}, temperature={temperature}"
    model = _build(c, answer, args)
    _load(c, model, args, lambda fused: to_gpt(tiny, fused_qkv=fused), "a small random model's weights")
    logits = c.tensor(_forward(c, model, prompt, f"the prompt, {built}"), "the forward pass")
    with torch.no_grad():
        ref = tiny(prompt)
    if logits.shape != ref.shape or not torch.allclose(logits.double(), ref.double(), atol=ATOL, rtol=RTOL):
        c.fail(f"your {built} computes other logits than tfcore's model of that size, though the shipped size "
               "works: does your code fix a size of the shipped model (128 channels, 4 heads, d_head = 32)? "
               "Take every size from the constructor's arguments")
    seed = int(torch.randint(0, 2**62, (1,), generator=c.gen))
    rows = prompt.expand(SAMPLE_ROWS, -1).contiguous()
    out = _generated(c, model, rows, 2, case, temperature=temperature,
                     generator=torch.Generator().manual_seed(seed))
    v = args["vocab_size"]
    with torch.no_grad():
        p1 = torch.softmax(tiny(prompt)[0, -1].double() / temperature, dim=-1)  # (V,)
        after = torch.cat([prompt.expand(v, -1), torch.arange(v)[:, None]], dim=1)  # (V, 4): prompt + each token
        p2 = (p1[:, None] * torch.softmax(tiny(after)[:, -1].double() / temperature, dim=-1)).sum(0)
    for step, probs in ((1, p1), (2, p2)):
        gap, bound = _dkw_gap(out[:, 2 + step], probs)
        if gap > bound:
            top = int(probs.argmax())
            share = float((out[:, 2 + step] == top).double().mean())
            c.fail(f"your samples do not follow softmax(logits / temperature) on {case}: new token {step}: "
                   f"the most likely token should come {float(probs[top]):.1%} of the time, it came {share:.1%} "
                   f"(the cumulative frequencies are off by {gap:.3f}; a correct sampler stays within {bound:.3f} "
                   "but once in 10^9 runs). Divide the last position's logits by the temperature, softmax, draw "
                   "one token per row with the generator")
    again = _generated(c, model, rows[:64], 2, case + ", 64 rows, the same seed twice", temperature=temperature,
                       generator=torch.Generator().manual_seed(seed))
    twice = _generated(c, model, rows[:64], 2, case + ", 64 rows, the same seed twice", temperature=temperature,
                       generator=torch.Generator().manual_seed(seed))
    if not torch.equal(again, twice):
        c.fail("two calls with generators seeded alike gave different samples: draw every random number from "
               "`generator` (pass it to torch.multinomial)")


@exercise("capstone.generate", "your GPT's generate: greedy equals tfcore's continuation; samples follow "
          "softmax(logits / temperature)", lesson=LESSON)
def _capstone_generate(answer, c: Checker) -> None:
    ref_model, args, _, _ = _reference()
    model = _build(c, answer, args)
    _load(c, model, args, _shipped_state, "the shipped weights")
    c.given_code_ran()  # the constructors are given: an unwritten forward means "not attempted"
    tokens = _held_out(c, 2, 16)
    logits = c.tensor(_forward(c, model, tokens, "2 held-out windows of 16 characters"), "the forward pass")
    with torch.no_grad():
        ref = ref_model(tokens)
    if logits.shape != ref.shape or not torch.allclose(logits.double(), ref.double(), atol=ATOL, rtol=RTOL):
        c.fail("your GPT's logits differ from tfcore's with the shipped weights: make capstone.forward pass first")
    t_max = args["max_seq_len"]
    _check_greedy(c, model, ref_model, _held_out(c, 2, t_max - 14), 20,
                  f"greedy, 2 held-out prompts of {t_max - 14} characters, 20 new tokens (past max_seq_len={t_max})")
    _check_greedy(c, model, ref_model, _held_out(c, 1, 1), 8, "greedy, a one-character prompt, 8 new tokens")
    for temperature in (0.7, 1.5):
        _check_sampling(c, answer, temperature)


# ----------------------------------------------------------------------------- capstone.train

VAL_WINDOWS, VAL_LENGTH = 48, 64


@lru_cache(maxsize=1)
def _bigram_loss() -> float:
    """Validation loss of a bigram table (add-one counts of the training text): what context length 1 buys."""
    from tfcore.data import shakespeare_splits

    tok, train_ids, val_ids = shakespeare_splits()
    v = tok.vocab_size
    counts = torch.ones(v, v).index_put_((train_ids[:-1], train_ids[1:]), torch.ones(len(train_ids) - 1),
                                         accumulate=True)
    return float(-(counts / counts.sum(1, keepdim=True)).log()[val_ids[:-1], val_ids[1:]].mean())


def _logits(c: Checker, out: Any, shape: tuple[int, int, int], case: str) -> Tensor:
    """Fail unless ``out`` is a float tensor of logits of ``shape`` without NaN/inf; return it."""
    return c.compare(out, torch.zeros(shape), case, dtype="float", atol=math.inf, rtol=0.0,
                     nonfinite=f"the logits have NaN/inf on {case}: the training diverged (lower the learning rate) "
                               "or a mask hides every key of some query")


@exercise("capstone.train", f"your GPT trained from scratch: validation loss below {TRAIN_MAX_VAL_LOSS} "
          "(measured by the check), and causal", lesson=LESSON)
def _capstone_train(answer, c: Checker) -> None:
    vocab = _reference()[1]["vocab_size"]
    tokens = _held_out(c, 4, VAL_LENGTH)
    case = f"4 held-out windows of {VAL_LENGTH} characters"
    shape = (4, VAL_LENGTH, vocab)
    _logits(c, _forward(c, answer, tokens, case), shape, case)
    _refuse_forbidden_modules(c, answer)
    c.call(answer.eval, case="model.eval()")
    before = _logits(c, _forward(c, answer, tokens, case), shape, case)
    _require_deterministic(c, answer, tokens, before, case)  # else the leakage test would blame the mask
    # The leakage test first: changing the tokens from position j on may change only the logits at j and after.
    cuts = [VAL_LENGTH - 1, 1] + torch.randint(2, VAL_LENGTH - 1, (2,), generator=c.gen).tolist()
    for j in cuts:
        changed = tokens.clone()
        shift = torch.randint(1, vocab, changed[:, j:].shape, generator=c.gen)
        changed[:, j:] = (changed[:, j:] + shift) % vocab
        probe = f"the same windows with the tokens from position {j} on changed"
        after = _logits(c, _forward(c, answer, changed, probe), shape, probe)
        moved = ((after[:, :j] - before[:, :j]).abs().amax(dim=(0, 2)) > 1e-5).nonzero()
        if len(moved):
            i = int(moved[0])
            c.fail(f"your model sees future tokens: changing the tokens from position {j} on changed its logits at "
                   f"position {i} < {j}. Each query may attend only to keys at its own position and before "
                   "(a causal mask in every attention layer); a loss measured on such a model means nothing")
    windows = _held_out(c, VAL_WINDOWS, VAL_LENGTH)
    case = f"{VAL_WINDOWS} held-out windows of {VAL_LENGTH} characters"
    logits = _logits(c, _forward(c, answer, windows, case), (VAL_WINDOWS, VAL_LENGTH, vocab), case)
    if bool((logits >= 0).all()) and torch.allclose(logits.double().sum(-1), torch.ones((), dtype=torch.float64),
                                                     atol=1e-3):
        c.fail(f"your model returns probabilities on {case}: return the logits (the loss takes their log_softmax)")
    loss = float(lm_loss(logits.float(), windows))
    if loss < TRAIN_MIN_HONEST_LOSS:
        c.fail(f"your model sees future tokens: a validation loss of {loss:.3f} nats per character is far below "
               "what a causal character model of this text reaches (the shipped model, trained for 2,400 steps: "
               "about 1.55): check the causal mask")
    if loss > TRAIN_MAX_VAL_LOSS:
        c.fail(f"validation loss {loss:.3f} nats per character on {case}, measured by the check: a correct model "
               f"reaches {TRAIN_MAX_VAL_LOSS} within the lesson's budget (chance: ln {vocab} = {math.log(vocab):.2f}; "
               f"a bigram table of the text: {_bigram_loss():.2f}). Train it longer, or check the initialisation "
               "(weights N(0, 0.02^2), biases 0), the learning rate, and that the optimiser holds every parameter")
    c.note(f"validation loss {loss:.2f} nats per character (perplexity {math.exp(loss):.1f})")
