"""Tests-for-tests of lesson 06's checks (architectures.*): see tests/test_grading.py."""
from __future__ import annotations

import math

import pytest
import torch

from test_grading import Entry, case_params, run_case

# ----------------------------------------------------------------------------- architectures.cross_attention


def cross_attention(x, source, w_q, w_k, w_v, w_o, n_heads, source_mask=None):
    b, t_q, d = x.shape
    t_src = source.shape[1]
    d_head = d // n_heads
    q = (x @ w_q).view(b, t_q, n_heads, d_head).transpose(1, 2)
    k = (source @ w_k).reshape(b, t_src, n_heads, d_head).transpose(1, 2)
    v = (source @ w_v).reshape(b, t_src, n_heads, d_head).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)
    if source_mask is not None:
        scores = scores.masked_fill(~source_mask, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return out.transpose(1, 2).reshape(b, t_q, d) @ w_o


def cross_attention_einsum(x, source, w_q, w_k, w_v, w_o, n_heads, source_mask=None):
    b, t_q, d = x.shape
    q = torch.einsum("btd,de->bte", x, w_q).unflatten(-1, (n_heads, -1))
    k = torch.einsum("bsd,de->bse", source, w_k).unflatten(-1, (n_heads, -1))
    v = torch.einsum("bsd,de->bse", source, w_v).unflatten(-1, (n_heads, -1))
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=source_mask)
    return out.transpose(1, 2).reshape(b, t_q, d) @ w_o


def _cross_self(x, source, w_q, w_k, w_v, w_o, n_heads, source_mask=None):
    return cross_attention(x, x, w_q, w_k, w_v, w_o, n_heads, None)


def _cross_causal(x, source, w_q, w_k, w_v, w_o, n_heads, source_mask=None):
    t_q, t_src = x.shape[1], source.shape[1]
    causal = torch.ones(t_q, t_src, dtype=torch.bool).tril()
    mask = causal if source_mask is None else source_mask & causal
    return cross_attention(x, source, w_q, w_k, w_v, w_o, n_heads, mask)


def _cross_d_model_scale(x, source, w_q, w_k, w_v, w_o, n_heads, source_mask=None):
    d = x.shape[-1]
    return cross_attention(x * math.sqrt(n_heads), source, w_q, w_k, w_v, w_o, n_heads, source_mask) \
        if False else _scaled(x, source, w_q, w_k, w_v, w_o, n_heads, source_mask, 1 / math.sqrt(d))


def _scaled(x, source, w_q, w_k, w_v, w_o, n_heads, source_mask, scale):
    b, t_q, d = x.shape
    q = (x @ w_q).view(b, t_q, n_heads, -1).transpose(1, 2)
    k = (source @ w_k).reshape(b, source.shape[1], n_heads, -1).transpose(1, 2)
    v = (source @ w_v).reshape(b, source.shape[1], n_heads, -1).transpose(1, 2)
    s = q @ k.transpose(-2, -1) * scale
    if source_mask is not None:
        s = s.masked_fill(~source_mask, float("-inf"))
    return (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(b, t_q, d) @ w_o


def _cross_no_mask(x, source, w_q, w_k, w_v, w_o, n_heads, source_mask=None):
    return cross_attention(x, source, w_q, w_k, w_v, w_o, n_heads, None)


def _cross_no_out(x, source, w_q, w_k, w_v, w_o, n_heads, source_mask=None):
    eye = torch.eye(x.shape[-1])
    return cross_attention(x, source, w_q, w_k, w_v, eye, n_heads, source_mask)


def _cross_bad_split(x, source, w_q, w_k, w_v, w_o, n_heads, source_mask=None):
    b, t_q, d = x.shape
    t_src = source.shape[1]
    q = (x @ w_q).reshape(b, n_heads, t_q, d // n_heads)
    k = (source @ w_k).reshape(b, n_heads, t_src, d // n_heads)
    v = (source @ w_v).reshape(b, n_heads, t_src, d // n_heads)
    s = q @ k.transpose(-2, -1) / math.sqrt(d // n_heads)
    if source_mask is not None:
        s = s.masked_fill(~source_mask, float("-inf"))
    return (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(b, t_q, d) @ w_o


# ----------------------------------------------------------------------------- architectures.decoder_block


def decoder_block(x, source, self_attn, cross_attn, mlp, norm_self, norm_cross, norm_mlp, source_mask=None):
    x = x + self_attn(norm_self(x), is_causal=True)
    x = x + cross_attn(norm_cross(x), source=source, mask=source_mask)
    return x + mlp(norm_mlp(x))


def decoder_block_loop(x, source, self_attn, cross_attn, mlp, norm_self, norm_cross, norm_mlp, source_mask=None):
    t = x.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    sublayers = [
        (norm_self, lambda h: self_attn(h, mask=causal)),
        (norm_cross, lambda h: cross_attn(h, source=source, mask=source_mask)),
        (norm_mlp, mlp),
    ]
    for norm, f in sublayers:
        x = x + f(norm(x))
    return x


def _dec_not_causal(x, source, sa, ca, mlp, n1, n2, n3, source_mask=None):
    x = x + sa(n1(x))
    x = x + ca(n2(x), source=source, mask=source_mask)
    return x + mlp(n3(x))


def _dec_cross_on_x(x, source, sa, ca, mlp, n1, n2, n3, source_mask=None):
    x = x + sa(n1(x), is_causal=True)
    x = x + ca(n2(x))
    return x + mlp(n3(x))


def _dec_no_cross(x, source, sa, ca, mlp, n1, n2, n3, source_mask=None):
    x = x + sa(n1(x), is_causal=True)
    return x + mlp(n3(x))


def _dec_norm_source(x, source, sa, ca, mlp, n1, n2, n3, source_mask=None):
    x = x + sa(n1(x), is_causal=True)
    x = x + ca(n2(x), source=n2(source), mask=source_mask)
    return x + mlp(n3(x))


def _dec_post(x, source, sa, ca, mlp, n1, n2, n3, source_mask=None):
    x = n1(x + sa(x, is_causal=True))
    x = n2(x + ca(x, source=source, mask=source_mask))
    return n3(x + mlp(x))


def _dec_no_mask(x, source, sa, ca, mlp, n1, n2, n3, source_mask=None):
    return decoder_block(x, source, sa, ca, mlp, n1, n2, n3, None)


# ----------------------------------------------------------------------------- architectures.choose

ANSWERS = {
    "sentiment": ("encoder", "bidirectional"),
    "ner": ("encoder", "bidirectional"),
    "fill_mask": ("encoder", "bidirectional"),
    "story": ("decoder", "causal"),
    "code_completion": ("decoder", "causal"),
    "translate": ("encoder-decoder", "bidirectional+causal"),
    "reverse_digits": ("encoder-decoder", "bidirectional+causal"),
    "prefix_answer": ("decoder", "prefix-lm"),
}


def choose():
    return dict(ANSWERS)


def choose_other_spelling():
    return {task: [arch.replace("-", " ").title() + ("-only" if arch != "encoder-decoder" else ""),
                   mask.replace("+", " + ").upper()] for task, (arch, mask) in ANSWERS.items()}


def _choose_with(**changes):
    def answer():
        out = dict(ANSWERS)
        out.update(changes)
        return {k: v for k, v in out.items() if v is not None}

    return answer


# ----------------------------------------------------------------------------- architectures.param_count


def param_count(vocab_size, d_model, d_ff, n_encoder_layers, n_decoder_layers, max_seq_len):
    d = d_model
    attention = 4 * d * d + 4 * d
    mlp = 2 * d * d_ff + d_ff + d
    norm = 2 * d
    encoder_block = attention + mlp + 2 * norm
    decoder_block = 2 * attention + mlp + 3 * norm
    return (vocab_size * d + max_seq_len * d + n_encoder_layers * encoder_block
            + n_decoder_layers * decoder_block + 2 * norm)


def param_count_by_model(vocab_size, d_model, d_ff, n_encoder_layers, n_decoder_layers, max_seq_len):
    from tfcore.complexity import count_parameters
    from tfcore.model import Transformer, TransformerConfig

    with torch.device("meta"):
        model = Transformer(TransformerConfig(
            vocab_size=vocab_size, d_model=d_model, n_heads=1, d_ff=d_ff, n_layers=n_decoder_layers,
            n_encoder_layers=n_encoder_layers, max_seq_len=max_seq_len, architecture="encoder-decoder"))
    return count_parameters(model)


def _pc(extra):
    return lambda v, d, f, ne, nd, t: param_count(v, d, f, ne, nd, t) + extra(v, d, f, ne, nd, t)


CASES = {
    "architectures.cross_attention": Entry(
        solution=cross_attention,
        styles={"einsum_and_torch_sdpa": cross_attention_einsum},
        wrong={
            "self_attention": (_cross_self, "keys and values came from x"),
            "causal": (_cross_causal, "a causal mask on cross-attention"),
            "d_model_scale": (_cross_d_model_scale, "scaled by 1/sqrt(d_model)"),
            "mask_ignored": (_cross_no_mask, "the source mask was ignored"),
            "no_output_projection": (_cross_no_out, "the output projection is missing"),
            "bad_split": (_cross_bad_split, "heads split by a bare reshape"),
        },
    ),
    "architectures.decoder_block": Entry(
        solution=decoder_block,
        styles={"loop_with_explicit_mask": decoder_block_loop},
        wrong={
            "not_causal": (_dec_not_causal, "the self-attention is not causal"),
            "cross_on_x": (_dec_cross_on_x, "the cross-attention attended to the decoder stream"),
            "no_cross": (_dec_no_cross, "the cross-attention step is missing"),
            "norm_source": (_dec_norm_source, "norm_cross was applied to the source too"),
            "post_ln": (_dec_post, "you wrote Post-LN"),
            "mask_ignored": (_dec_no_mask, "the source mask was ignored"),
        },
    ),
    "architectures.choose": Entry(
        solution=choose,
        styles={"other_spelling": choose_other_spelling},
        wrong={
            "story_encoder": (_choose_with(story=("encoder", "bidirectional")), "story: not 'encoder'"),
            "translate_decoder": (_choose_with(translate=("decoder", "causal")), "translate: not 'decoder'"),
            "causal_encoder_decoder": (_choose_with(reverse_digits=("encoder-decoder", "causal")),
                                       "reverse_digits: right architecture, wrong mask"),
            "prefix_as_causal": (_choose_with(prefix_answer=("decoder", "causal")), "prefix-LM mask"),
            "missing_task": (_choose_with(ner=None), "lacks the task 'ner'"),
            "unknown_mask": (_choose_with(ner=("encoder", "padding")), "mask 'padding' is not one of"),
            "bare_string": (_choose_with(ner="encoder"), "give a pair (architecture, mask)"),
        },
    ),
    "architectures.param_count": Entry(
        solution=param_count,
        styles={"count_a_meta_model": param_count_by_model},
        wrong={
            "untied": (_pc(lambda v, d, f, ne, nd, t: v * d), "counted a separate unembedding matrix"),
            "no_cross": (_pc(lambda v, d, f, ne, nd, t: -nd * (4 * d * d + 6 * d)), "cross-attention is missing"),
            "no_final_norms": (_pc(lambda v, d, f, ne, nd, t: -4 * d), "the final norms are missing"),
            "two_position_tables": (_pc(lambda v, d, f, ne, nd, t: t * d), "counted two position tables"),
            "no_biases": (_pc(lambda v, d, f, ne, nd, t: -(ne + 2 * nd) * 4 * d - (ne + nd) * (f + d)),
                          "the biases are missing"),
            "float": (lambda *a: float(param_count(*a)), "return an int"),
        },
    ),
}


def test_param_count_formula_matches_the_model():
    for args in ((11, 64, 256, 2, 2, 16), (50, 32, 64, 3, 1, 20), (7, 4, 8, 1, 1, 3)):
        assert param_count(*args) == param_count_by_model(*args)


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson06_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)


# ----------------------------------------------------------------------------- predictions (lesson notebook)

# prediction ID -> (right answers, wrong answers, a substring of the reasoning, the value as shown);
# collected by tests/test_grading_predictions.py
PREDICTION_CASES = {
    "architectures.predict_causal_influence": (
        [36, 36.0, 8 * 9 // 2], [28, 64, 32, 8], "8 * 9 / 2 = 36", "the value is 36"),
    "architectures.predict_same_parameters": (
        ["C", "c", "(C)", "neither: they have exactly as many"], ["A", "b", "(B)"],
        "the causal mask is not a parameter", "(C) neither"),
    "architectures.predict_cross_attention_parameters": (
        [16640, 4 * 64 ** 2 + 4 * 64, 16640.0], [16384, 12480, 33280, 8320, 16768],
        "4 d^2 + 4 d = 16,640", "the value is 16 640"),
}


def test_prediction_answers_match_the_lesson_models():
    """The facts behind the answers, measured on the lesson's models: influence and parameter counts."""
    from tfcore.complexity import parameter_count
    from tfcore.diagnostics import influence_matrix
    from tfcore.model import Transformer, TransformerConfig

    sizes = dict(vocab_size=12, d_model=64, n_heads=2, n_layers=2, max_seq_len=16)
    torch.manual_seed(0)
    decoder = Transformer(TransformerConfig(**sizes, architecture="decoder")).eval()
    tokens = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    assert int((influence_matrix(decoder, tokens, vocab_size=10) > 1e-6).sum()) == 36
    counts = {a: parameter_count(TransformerConfig(**sizes, architecture=a)) for a in ("encoder", "decoder")}
    assert counts["encoder"] == counts["decoder"]
    ed = parameter_count(TransformerConfig(**sizes, architecture="encoder-decoder"))
    assert ed["cross_attention"] == 2 * (16640 + 128)  # two decoder blocks: cross_attn and its norm each
