"""Checks for lesson 06 (architectures): ``architectures.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson06.py``.
"""

from __future__ import annotations

import copy
import math

import torch

from tfcore.attention import scaled_dot_product_attention as ref_sdpa
from tfcore.blocks import Block
from tfcore.complexity import parameter_count
from tfcore.grading import Checker, _type_name, exercise
from tfcore.heads import MultiHeadAttention
from tfcore.masks import causal_mask, padding_mask
from tfcore.model import TransformerConfig

LESSON = "06_architectures"


def _no_grad(f):
    def run():
        with torch.no_grad():
            return f()

    return run


# ----------------------------------------------------------------------------- architectures.cross_attention


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.reshape(b, t, h, d // h).transpose(1, 2)


def _cross(x, source, w_q, w_k, w_v, w_o, h, mask=None, *, kv=None, q=None, causal=None, scale=None,
           split=None, out_proj=True, transpose_w=False, invert=False):
    """Cross-attention with one thing changed, for the wrong-answer variants."""
    if transpose_w:
        w_q, w_k, w_v, w_o = w_q.T, w_k.T, w_v.T, w_o.T
    q_in = source if q == "source" else x
    kv_in = x if kv == "x" else source
    b, t_q, d = q_in.shape
    if split == "view":  # (B, T, d) viewed as (B, h, T, d_head) without the transpose
        qh, kh, vh = ((a @ w).reshape(a.shape[0], h, a.shape[1], d // h) for a, w in
                      ((q_in, w_q), (kv_in, w_k), (kv_in, w_v)))
    else:
        hh = 1 if split == "one" else h
        qh, kh, vh = _heads(q_in @ w_q, hh), _heads(kv_in @ w_k, hh), _heads(kv_in @ w_v, hh)
    if mask is not None and invert:
        mask = ~mask
    if causal == "last":
        mask = causal_mask(qh.shape[2], kh.shape[2]) if mask is None else mask & causal_mask(qh.shape[2], kh.shape[2])
    if causal == "first":
        first = torch.ones(qh.shape[2], kh.shape[2], dtype=torch.bool).tril()
        mask = first if mask is None else mask & first
    out = ref_sdpa(qh, kh, vh, mask=mask, scale=scale)
    out = out.transpose(1, 2).reshape(b, t_q, d)
    return out @ w_o if out_proj else out


@exercise("architectures.cross_attention", "multi-head cross-attention: queries from x, keys and values from source",
          lesson=LESSON)
def _cross_attention(answer, c: Checker) -> None:
    cases = [
        ("B=2, T_q=3, T_src=5, d_model=8, 2 heads", 2, 3, 5, 8, 2, None, False),
        ("B=1, T_q=4, T_src=4, d_model=12, 3 heads (T_q = T_src)", 1, 4, 4, 12, 3, None, False),
        ("B=3, T_q=1 (one decoding step), T_src=6, d_model=8, 4 heads", 3, 1, 6, 8, 4, None, False),
        ("B=2, T_q=5, T_src=7, d_model=12, 3 heads, source lengths [7, 3]", 2, 5, 7, 12, 3, [7, 3], False),
        ("B=2, T_q=6, T_src=3, d_model=8, 2 heads, source a transposed view", 2, 6, 3, 8, 2, None, True),
    ]
    for case, b, t_q, t_src, d, h, lengths, transposed in cases:
        x = c.randn(b, t_q, d)
        source = c.randn(b, d, t_src).transpose(1, 2) if transposed else c.randn(b, t_src, d)
        w_q, w_k, w_v, w_o = (c.randn(d, d, scale=d ** -0.5 * s) for s in (2.0, 2.0, 1.0, 1.0))
        mask = padding_mask(torch.tensor(lengths), t_src) if lengths is not None else None
        with torch.random.fork_rng(devices=[]):
            mha = MultiHeadAttention(d, h, bias=False)
        with torch.no_grad():
            for proj, w in ((mha.q_proj, w_q), (mha.k_proj, w_k), (mha.v_proj, w_v), (mha.out_proj, w_o)):
                proj.weight.copy_(w.T)  # nn.Linear computes x @ weight.T
            ref = mha(x, source=source, mask=mask)
        out = c.call(answer, x, source, w_q, w_k, w_v, w_o, h, mask, case=case,
                     hint="q = x @ w_q has shape (B, T_q, d_model); k = source @ w_k and v = source @ w_v have T_src rows")
        args = (x, source, w_q, w_k, w_v, w_o, h, mask)
        d_head = d // h
        wrong = [
            ("keys and values came from x: in cross-attention they come from the source (the encoder output), "
             "k = source @ w_k, v = source @ w_v", lambda: _cross(*args, kv="x")),
            ("queries came from the source and keys/values from x: queries come from the decoder (x), "
             "so the output has x's T_q rows", lambda: _cross(*args, q="source", kv="x")),
            ("a causal mask on cross-attention: every decoder position may see the whole source; only "
             "the decoder's self-attention is causal", lambda: _cross(*args, causal="last")),
            ("a causal mask on cross-attention: every decoder position may see the whole source; only "
             "the decoder's self-attention is causal", lambda: _cross(*args, causal="first")),
            ("the scores were not scaled: divide by sqrt(d_head)", lambda: _cross(*args, scale=1.0)),
            ("scaled by 1/sqrt(d_model): the scale uses each head's width, 1/sqrt(d_head) = 1/sqrt(d_model / n_heads)",
             lambda: _cross(*args, scale=1 / math.sqrt(d))),
            ("one head only: split q, k and v into n_heads heads of d_head = d_model / n_heads channels",
             lambda: _cross(*args, split="one")),
            ("heads split by a bare reshape to (B, h, T, d_head): reshape to (B, T, h, d_head), then "
             "transpose(1, 2)", lambda: _cross(*args, split="view")),
            ("the output projection is missing: merge the heads, then multiply by w_o",
             lambda: _cross(*args, out_proj=False)),
            ("multiplied by the transposed weights: the convention here is q = x @ w_q (w_q is (d_in, d_out))",
             lambda: _cross(*args, transpose_w=True)),
        ]
        if mask is not None:
            wrong += [
                ("the source mask was ignored: padded source positions must get zero weight",
                 lambda: _cross(x, source, w_q, w_k, w_v, w_o, h, None)),
                ("the source mask is inverted: True marks a real source token that may be attended",
                 lambda: _cross(*args, invert=True)),
            ]
        c.compare(out, ref, case, atol=1e-5, rtol=1e-4, wrong=[(hint, _no_grad(f)) for hint, f in wrong],
                  nonfinite="NaN where the answer is finite: is the source mask inverted (True = real token)?")


# ----------------------------------------------------------------------------- architectures.decoder_block


def _random_parameters(c: Checker, module: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("norm_"):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + c.randn(*p.shape, scale=0.3))
            elif name.endswith("bias"):
                p.copy_(c.randn(*p.shape, scale=0.1))
            else:
                p.copy_(c.randn(*p.shape, scale=1.5 * p.shape[-1] ** -0.5))


def _decoder(x, source, sa, ca, mlp, n1, n2, n3, mask=None, *, causal=True, cross="source", order="scm",
             norm_source=False, post=False, added_normed=False):
    """A Pre-LN decoder block with one thing changed, for the wrong-answer variants."""
    def self_part(z):
        return sa(z, is_causal=causal)

    def cross_part(z):
        if cross == "none":
            return torch.zeros_like(z)
        if cross == "x":
            return ca(z, mask=None)
        return ca(z, source=n2(source) if norm_source else source, mask=mask)

    steps = {"s": (self_part, n1), "c": (cross_part, n2), "m": (mlp, n3)}
    for key in order:
        f, n = steps[key]
        if post:
            x = n(x + f(x))
        elif added_normed:
            x = n(x)
            x = x + f(x)
        else:
            x = x + f(n(x))
    return x


@exercise("architectures.decoder_block",
          "Pre-LN decoder block: causal self-attention, cross-attention to the source, MLP", lesson=LESSON)
def _decoder_block(answer, c: Checker) -> None:
    cases = [
        ("B=2, T=4, T_src=6, d_model=12, 3 heads", 2, 4, 6, 12, 3, "layer", "gelu", None),
        ("B=1, T=1 (one decoding step), T_src=5, d_model=8, 2 heads", 1, 1, 5, 8, 2, "layer", "gelu", None),
        ("B=2, T=5, T_src=5, d_model=8, 2 heads (T = T_src)", 2, 5, 5, 8, 2, "layer", "gelu", None),
        ("B=3, T=5, T_src=4, d_model=8, 2 heads, source lengths [4, 2, 3]", 3, 5, 4, 8, 2, "layer", "gelu", [4, 2, 3]),
        ("B=2, T=3, T_src=7, d_model=16, 4 heads, RMSNorm and SwiGLU", 2, 3, 7, 16, 4, "rms", "swiglu", None),
    ]
    for case, b, t, t_src, d, h, norm, mlp, lengths in cases:
        with torch.random.fork_rng(devices=[]):
            blk = Block(d, h, 2 * d + 4, norm=norm, mlp=mlp, placement="pre", cross_attention=True)
        _random_parameters(c, blk)
        blk.eval()
        x, source = c.randn(b, t, d), c.randn(b, t_src, d)
        mask = padding_mask(torch.tensor(lengths), t_src) if lengths is not None else None
        learner = c.share(copy.deepcopy(blk), Block, d, h, 2 * d + 4, norm=norm, mlp=mlp, placement="pre",
                          cross_attention=True)  # in the grader the kernel holds its own copy: real modules
        parts = [learner.attn, learner.cross_attn, learner.mlp, learner.norm_attn, learner.norm_cross, learner.norm_mlp]
        with torch.no_grad():
            ref = blk(x, is_causal=True, source=source, source_mask=mask)
            out = c.call(answer, x, source, *parts, mask, case=case,
                         hint="self_attn(h, is_causal=True), cross_attn(h, source=source, mask=source_mask), mlp(h)")
        sa, ca, m, n1, n2, n3 = parts
        args = (x, source, sa, ca, m, n1, n2, n3, mask)
        wrong = [
            ("the self-attention is not causal: call self_attn(h, is_causal=True), a decoder position must not "
             "see later target tokens", lambda: _decoder(*args, causal=False)),
            ("the cross-attention attended to the decoder stream: pass source=source, so that its keys and "
             "values come from the encoder output", lambda: _decoder(*args, cross="x")),
            ("the cross-attention step is missing: x = x + cross_attn(norm_cross(x), source=source, "
             "mask=source_mask) between self-attention and the MLP", lambda: _decoder(*args, cross="none")),
            ("cross-attention ran before self-attention: the order is self-attention, cross-attention, MLP",
             lambda: _decoder(*args, order="csm")),
            ("the MLP ran before cross-attention: the order is self-attention, cross-attention, MLP",
             lambda: _decoder(*args, order="smc")),
            ("norm_cross was applied to the source too: it normalises the decoder stream (the queries) only; "
             "the encoder output was normalised by the encoder's final norm", lambda: _decoder(*args, norm_source=True)),
            ("the norms are mixed up: norm_self before self-attention, norm_cross before cross-attention, "
             "norm_mlp before the MLP", lambda: _decoder(x, source, sa, ca, m, n1, n3, n2, mask)),
            ("the norms are mixed up: norm_self before self-attention, norm_cross before cross-attention, "
             "norm_mlp before the MLP", lambda: _decoder(x, source, sa, ca, m, n2, n1, n3, mask)),
            ("you wrote Post-LN: this block is Pre-LN, x = x + sublayer(norm(x)) for each of the three",
             lambda: _decoder(*args, post=True)),
            ("the normalised stream was added back: x + sublayer(norm(x)), not norm(x) + sublayer(norm(x))",
             lambda: _decoder(*args, added_normed=True)),
        ]
        if mask is not None:
            wrong.append(("the source mask was ignored: pass mask=source_mask to the cross-attention",
                          lambda: _decoder(x, source, sa, ca, m, n1, n2, n3, None)))
        c.compare(out, ref, case, atol=1e-4, rtol=1e-4, wrong=[(hint, _no_grad(f)) for hint, f in wrong])


# ----------------------------------------------------------------------------- architectures.choose

ARCHITECTURE_CHOICES = ("encoder", "decoder", "encoder-decoder")
MASK_CHOICES = ("bidirectional", "causal", "bidirectional+causal", "prefix-lm")

# task -> (architecture, mask, why, when the architecture is wrong)
CHOOSE_TASKS = {
    "sentiment": ("encoder", "bidirectional",
                  "a label for the whole review: every token may use every other; no text is generated"),
    "ner": ("encoder", "bidirectional",
            "one tag per word, and the tag of a word depends on the words after it too"),
    "fill_mask": ("encoder", "bidirectional",
                  "masked-LM: a hidden word is predicted from both sides of it (BERT)"),
    "story": ("decoder", "causal",
              "text is generated one token at a time, each from the tokens before it (GPT)"),
    "code_completion": ("decoder", "causal",
                        "continuing a file is next-token generation from the left context"),
    "translate": ("encoder-decoder", "bidirectional+causal",
                  "the source sentence is read whole by an encoder, the target generated by a causal decoder "
                  "that cross-attends to it (the 2017 original, T5)"),
    "reverse_digits": ("encoder-decoder", "bidirectional+causal",
                       "the output's first digit is the input's last: the whole input must be read before "
                       "generating, a source-to-target transduction"),
    "prefix_answer": ("decoder", "prefix-lm",
                      "one stack that sees the whole prompt both ways and generates the answer causally: "
                      "a prefix-LM mask"),
}


def _norm_choice(value) -> str | None:
    if not isinstance(value, str):
        return None
    v = value.strip().lower().replace("_", "-").replace(" ", "")
    v = v.replace("-only", "").replace("encoderdecoder", "encoder-decoder")
    v = {"prefixlm": "prefix-lm", "prefix": "prefix-lm", "causal+bidirectional": "bidirectional+causal",
         "full": "bidirectional"}.get(v, v)
    return v


@exercise("architectures.choose", "the architecture and self-attention mask for eight tasks (a dict)", lesson=LESSON)
def _choose(answer, c: Checker) -> None:
    case = "the eight tasks"
    out = c.call(answer, case=case, hint="choose() takes no arguments and returns the dict")
    if not isinstance(out, dict):
        c.fail(f"{c.name} returned a {_type_name(out)}: return a dict {{task: (architecture, mask)}}")
    missing = [k for k in CHOOSE_TASKS if k not in out]
    extra = [k for k in out if k not in CHOOSE_TASKS]
    if missing:
        c.fail(f"the dict lacks the task{'s' if len(missing) > 1 else ''} {', '.join(repr(k) for k in missing)}")
    if extra:
        c.fail(f"unknown task{'s' if len(extra) > 1 else ''} {', '.join(repr(k) for k in extra)}: "
               f"the keys are {', '.join(repr(k) for k in CHOOSE_TASKS)}")
    wrong = []
    for task, (arch, mask, why) in CHOOSE_TASKS.items():
        c.cases += 1
        value = out[task]
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            c.fail(f"out[{task!r}] is a {_type_name(value)}: give a pair (architecture, mask), "
                   f"e.g. ('encoder', 'bidirectional')")
        a, m = (_norm_choice(v) for v in value)
        if a not in ARCHITECTURE_CHOICES:
            c.fail(f"out[{task!r}]: architecture {value[0]!r} is not one of {', '.join(map(repr, ARCHITECTURE_CHOICES))}")
        if m not in MASK_CHOICES:
            c.fail(f"out[{task!r}]: mask {value[1]!r} is not one of {', '.join(map(repr, MASK_CHOICES))}")
        if a != arch:
            wrong.append(f"{task}: not {a!r}: {why}")
        elif m != mask:
            if arch == "encoder-decoder":
                hint = "an encoder-decoder has a bidirectional encoder and a causal decoder: 'bidirectional+causal'"
            elif mask == "prefix-lm":
                hint = "the prompt is seen both ways and the answer causally: that is the prefix-LM mask"
            elif mask == "causal":
                hint = "a generator must not see the tokens it is about to predict: causal"
            else:
                hint = "an encoder lets every token see every other: bidirectional"
            wrong.append(f"{task}: right architecture, wrong mask: {hint}")
    if wrong:
        c.fail(f"{len(wrong)} of {len(CHOOSE_TASKS)} wrong; " + "; ".join(wrong))


# ----------------------------------------------------------------------------- architectures.param_count


def _enc_dec_config(vocab_size, d_model, d_ff, n_enc, n_dec, max_seq_len) -> TransformerConfig:
    return TransformerConfig(vocab_size=vocab_size, d_model=d_model, n_heads=1, d_ff=d_ff, n_layers=n_dec,
                             n_encoder_layers=n_enc, max_seq_len=max_seq_len, architecture="encoder-decoder")


@exercise("architectures.param_count", "parameters of tfcore's encoder-decoder Transformer from its config",
          lesson=LESSON)
def _param_count(answer, c: Checker) -> None:
    cases = [  # the first case tells every listed mistake apart
        (11, 64, 256, 2, 3, 16),
        (50, 32, 64, 3, 1, 20),
        (37000, 512, 2048, 6, 6, 512),
        (7, 4, 8, 1, 1, 3),
        (1000, 48, 200, 1, 4, 100),
    ]
    for v, d, f, n_enc, n_dec, t in cases:
        case = (f"vocab_size={v}, d_model={d}, d_ff={f}, n_encoder_layers={n_enc}, n_decoder_layers={n_dec}, "
                f"max_seq_len={t}")
        ref = parameter_count(_enc_dec_config(v, d, f, n_enc, n_dec, t))["total"]
        out = c.call(answer, v, d, f, n_enc, n_dec, t, case=case)
        attn, mlp, ln = 4 * d * d + 4 * d, 2 * d * f + f + d, 2 * d
        c.number(out, ref, case, integer=True, wrong=[
            ("counted a separate unembedding matrix: tfcore ties it to the token embedding (tie_weights=True), "
             "so it adds nothing", lambda: ref + v * d),
            ("the decoder's cross-attention is missing: each decoder block has a second attention "
             "(4 d^2 + 4 d) and its own LayerNorm", lambda: ref - n_dec * (attn + ln)),
            ("the cross-attention's LayerNorm is missing: each decoder block has three norms (2 d_model each)",
             lambda: ref - n_dec * ln),
            ("the final norms are missing: Pre-LN ends the encoder and the decoder with a LayerNorm each "
             "(2 d_model each)", lambda: ref - 2 * ln),
            ("one final norm too few: both the encoder and the decoder end with a LayerNorm",
             lambda: ref - ln),
            ("counted two position tables: encoder and decoder share one learned table (max_seq_len x d_model)",
             lambda: ref + t * d),
            ("the position table is missing: learned positions add max_seq_len x d_model",
             lambda: ref - t * d),
            ("counted two embedding tables: encoder and decoder share one token embedding",
             lambda: ref + v * d),
            ("the LayerNorms are missing: each has a gain and a shift, 2 d_model",
             lambda: ref - (2 * n_enc + 3 * n_dec + 2) * ln),
            ("a LayerNorm has a gain and a shift: 2 d_model parameters, not d_model",
             lambda: ref - (2 * n_enc + 3 * n_dec + 2) * d),
            ("the biases are missing: every Linear layer here has one (4 d in attention, d_ff + d in the MLP)",
             lambda: ref - (n_enc + 2 * n_dec) * 4 * d - (n_enc + n_dec) * (f + d)),
            ("the attention biases are missing: q, k, v and the output projection each have d_model",
             lambda: ref - (n_enc + 2 * n_dec) * 4 * d),
            ("the MLP biases are missing: d_ff for the first layer and d_model for the second",
             lambda: ref - (n_enc + n_dec) * (f + d)),
            ("the MLP has two matrices, d_model x d_ff and d_ff x d_model: 2 d_model d_ff weights",
             lambda: ref - (n_enc + n_dec) * d * f),
            ("attention has four d_model x d_model matrices (W_Q, W_K, W_V, W_O): 4 d^2 weights",
             lambda: ref - (n_enc + 2 * n_dec) * d * d),
            ("the encoder and decoder layer counts are swapped: the decoder's blocks are the larger ones",
             lambda: parameter_count(_enc_dec_config(v, d, f, n_dec, n_enc, t))["total"]),
        ])


# ----------------------------------------------------------------------------- predictions (lesson notebook)

from tfcore.grading.predictions import predict_choice, predict_integer  # noqa: E402


def _causal_influence_ones() -> int:
    """Ones in the (8, 8) influence matrix of a causal model: output i depends on tokens 0 .. i."""
    return int(causal_mask(8).sum())


def _cross_attention_parameters() -> int:
    """Parameters of tfcore's cross-attention sublayer at d_model = 64, 2 heads (the lesson's models)."""
    return sum(p.numel() for p in MultiHeadAttention(64, 2).parameters())


predict_integer(
    "architectures.predict_causal_influence",
    "A decoder reads 8 tokens. Of the 64 entries of its influence matrix (1 where changing token j moves "
    "output i), how many are 1?",
    lesson=LESSON, answer=_causal_influence_ones,
    mistakes={28: "28 leaves out the diagonal: a token always moves its own output", 64: "64 is an encoder, without "
              "a causal mask", 8: "8 is the diagonal alone"},
    why="output i depends on tokens 0 .. i, its own token included, so row i holds i + 1 ones: 1 + 2 + ... + 8 "
        "= 8 * 9 / 2 = 36, the lower triangle with its diagonal. 28 forgets the diagonal (a token always "
        "moves its own output); 64 is the encoder, where every output depends on every token.",
    hint="row i is output i: which tokens may it depend on, and does it depend on its own token?",
)

predict_choice(
    "architectures.predict_same_parameters",
    "An encoder-only and a decoder-only model with the same sizes (d_model = 64, 2 heads, 2 blocks, learned "
    "positions, tied unembedding): which has more parameters?",
    lesson=LESSON,
    options={"A": "the encoder-only model", "B": "the decoder-only model",
             "C": "neither: they have exactly as many"},
    answer="C",
    why="the causal mask is not a parameter: it is built from the positions when attention runs. Both models "
        "have the same embedding, position table, blocks (attention, MLP and two norms each) and final norm; "
        "only the mask passed to attention differs, so the counts are equal to the last parameter.",
    hint="where does the causal mask come from: is it learned, or built when attention runs?",
)

predict_integer(
    "architectures.predict_cross_attention_parameters",
    "How many parameters has a cross-attention sublayer (W_Q, W_K, W_V, W_O, each d_model x d_model with a "
    "bias, 2 heads) at d_model = 64?",
    lesson=LESSON, answer=_cross_attention_parameters,
    mistakes={16384: "16,384 leaves out the four biases", 33280: "33,280 counts the weights once per head: the heads "
              "split d_model, they add no parameters", 12480: "12,480 leaves out one of the four projections"},
    why="four d x d weight matrices, 4 * 64^2 = 16,384, and four bias vectors of d, 4 * 64 = 256: "
        "4 d^2 + 4 d = 16,640. Cross-attention has the same parameters as self-attention (only its keys and "
        "values read another sequence), and the heads split d_model into 2 x 32 without adding any.",
    hint="count the weights and biases of four d x d linear layers; does the number of heads change them?",
)
