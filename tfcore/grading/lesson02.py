"""Checks for lesson 02 (masks): ``masks.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson02.py``.
"""

from __future__ import annotations

import torch

from tfcore.grading import Checker, exercise
from tfcore.masks import causal_mask, padding_mask

LESSON = "02_masks"


# ----------------------------------------------------------------------------- masks.causal


@exercise("masks.causal", "causal mask (T, T), True where j <= i", lesson=LESSON)
def _causal(answer, c: Checker) -> None:
    for t in (5, 1, 2, 7, 13):
        case = f"T={t}"
        ref = causal_mask(t)
        out = c.call(answer, t, case=case)
        c.compare(out, ref, case, wrong=[
            ("the mask is inverted: True must mean may attend (j <= i)", lambda: ~ref),
            ("the diagonal is hidden: a token may attend to itself (j <= i, not j < i)",
             lambda: ref & ~torch.eye(t, dtype=torch.bool)),
            ("the mask is transposed: row i is the query and sees the columns j <= i (the lower triangle, torch.tril)",
             lambda: ref.T),
        ], shape_hints={(1, 1, t, t): "return shape (T, T); it broadcasts against (B, h, T, T) scores by itself"})


# ----------------------------------------------------------------------------- masks.padding


@exercise("masks.padding", "key padding mask (B, 1, 1, T) from lengths, True at real tokens", lesson=LESSON)
def _padding(answer, c: Checker) -> None:
    cases = [([3, 5, 1], 5), ([2, 4], 6), ([0, 2], 3), ([7], 7), ([1, 9, 4, 6], 9)]
    for lengths, t in cases:
        case = f"lengths {lengths}, T={t}"
        lengths_t = torch.tensor(lengths)
        ref = padding_mask(lengths_t, t)
        b = len(lengths)
        keep = torch.arange(t)[None, :] < lengths_t[:, None]  # (B, T)
        out = c.call(answer, lengths_t, t, case=case)
        c.compare(out, ref, case, wrong=[
            ("the mask is inverted: True must mean a real token (a key that may be attended)", lambda: ~ref),
            ("off by one: position t is a real token when t < length",
             lambda: (torch.arange(t)[None, :] <= lengths_t[:, None])[:, None, None, :]),
            ("returned shape (B, T): add two axes, (B, 1, 1, T), so that it broadcasts against scores "
             "(B, h, T_q, T_k)", lambda: keep),
            ("the padding axis sits in the query position: the shape is (B, 1, 1, T), masking keys",
             lambda: keep[:, None, :, None]),
        ], shape_hints={
            (b, 1, 1, int(max(lengths))): "the mask needs T columns even when every sequence is shorter than T: "
                                          "use the T argument",
            (b, 1, t): "the shape is (B, 1, 1, T): one axis for the heads and one for the queries",
        })


# ----------------------------------------------------------------------------- masks.combine


@exercise("masks.combine", "causal & key padding by broadcasting: (T, T) & (B, 1, 1, T) -> (B, 1, T, T)", lesson=LESSON)
def _combine(answer, c: Checker) -> None:
    cases = [([3, 5, 1], 5), ([2, 4], 6), ([7], 7), ([0, 2], 3), ([1, 9, 4, 6], 9)]
    for lengths, t in cases:
        case = f"lengths {lengths}, T={t}"
        lengths_t = torch.tensor(lengths)
        b = len(lengths)
        causal = causal_mask(t)  # (T, T)
        keys = padding_mask(lengths_t, t)  # (B, 1, 1, T): True at real keys j < length
        queries = keys.transpose(-1, -2)  # (B, 1, T, 1): True at real queries i < length
        ref = causal & keys  # (B, 1, T, T)
        out = c.call(answer, lengths_t, t, case=case)
        c.compare(out, ref, case, wrong=[
            ("combined with OR: a key is visible only if both masks allow it (logical AND, &)", lambda: causal | keys),
            ("you hid the rows of pad queries (i >= length): those rows are then fully masked, which a plain "
             "softmax turns into NaN (section 5). The padding mask (B, 1, 1, T) hides keys, the last axis, only; "
             "the loss ignores pad queries", lambda: causal & keys & queries),
            ("the causal part is transposed: query i (row) sees keys j <= i (columns), the lower triangle",
             lambda: causal.T & keys),
            ("the causal part is missing: combine the (T, T) causal mask with the padding mask",
             lambda: keys.expand(b, 1, t, t)),
            ("the padding part is missing: combine the causal mask with the (B, 1, 1, T) padding mask",
             lambda: causal.expand(b, 1, t, t)),
            ("the causal part hides the diagonal: a token may attend to itself (j <= i)",
             lambda: (causal & ~torch.eye(t, dtype=torch.bool)) & keys),
        ], shape_hints={
            (b, t, t): "return (B, 1, T, T): keep the head axis of size 1 so that the mask broadcasts against "
                       "scores (B, h, T, T)",
            (b, 1, 1, t): "that is the shape of the padding mask alone: broadcasting it with the causal (T, T) mask "
                          "gives (B, 1, T, T)",
            (t, t): "that is the shape of the causal mask alone: one mask per sequence needs (B, 1, T, T)",
            (b, 1, int(max(lengths)), int(max(lengths))): "use the T argument: the batch is padded to T even when "
                                                          "every sequence is shorter",
        })


# ----------------------------------------------------------------------------- masks.leakage


def _leak_models(c: Checker):
    """A tiny causal decoder and leaky copies of it (same weights): {name: (model_fn, tokens, vocab_size, leaks)}."""
    from tfcore.model import Transformer, TransformerConfig

    v, t = 11, 7
    with torch.random.fork_rng(devices=[]):  # the learner's global RNG is left as it was
        torch.manual_seed(2)
        model = Transformer(TransformerConfig(vocab_size=v, d_model=16, n_layers=1, n_heads=2, max_seq_len=t)).eval()

    def wired(mask: torch.Tensor | None, is_causal: bool):
        def model_fn(tokens: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                x = model.embed_tokens(tokens)
                for block in model.decoder:
                    x = block(x, mask=mask, is_causal=is_causal)
                return model.unembed(model.final_norm(x))

        return model_fn

    causal = causal_mask(t)

    def opened(column: int, rows: range) -> torch.Tensor:
        m = causal.clone()
        m[list(rows), column] = True
        return m

    correct, no_mask = wired(None, True), wired(None, False)

    def tiny(tokens: torch.Tensor) -> torch.Tensor:  # earlier outputs move by about 2e-4 only
        a = correct(tokens)
        return a + 3e-2 * (no_mask(tokens) - a)

    def tokens_with(column: int | None = None, value: int | None = None, batch: int = 2) -> torch.Tensor:
        # ids 1 .. V-2: only the two cases built for it hold 0 or V-1 (a detector that writes a fixed id then
        # misses those, and only those, whatever the draw)
        tok = 1 + (c.rand(batch, t) * (v - 2)).long().clamp(max=v - 3)
        if column is not None:
            tok[:, column] = value
        return tok

    return {
        "causal": (correct, tokens_with(), v, False),
        "no mask": (no_mask, tokens_with(), v, True),
        "one ahead": (wired(torch.ones(t, t, dtype=torch.bool).tril(1), False), tokens_with(batch=1), v, True),
        "last to first": (wired(opened(t - 1, range(0, 1)), False), tokens_with(), v, True),
        "token 0": (wired(opened(3, range(0, 3)), False), tokens_with(3, 0), v, True),
        "token V-1": (wired(opened(4, range(0, 4)), False), tokens_with(4, v - 1), v, True),
        "tiny": (tiny, tokens_with(), v, True),
        "causal, B=3": (correct, tokens_with(batch=3), v, False),
    }


_LEAK_CASES = {
    "causal": ("a correct causal decoder", "you flagged a correct causal model: when token j changes, only the "
               "outputs i < j must stay the same; outputs at and after j may change"),
    "no mask": ("a decoder whose attention has no causal mask", "missed a leak: a model whose attention has no "
                "causal mask went undetected. Change token j, run the model again, and compare the outputs i < j"),
    "one ahead": ("a decoder whose mask lets query i see key i + 1", "missed a model that sees one token ahead "
                  "(j <= i + 1): the output just before the changed position (i = j - 1) must be compared too"),
    "last to first": ("a decoder whose first output sees the last token", "missed a leak from the last position "
                      "into the first output: change every position j, the last one (T - 1) included, and compare "
                      "every earlier output i < j"),
    "token 0": ("a decoder leaking from position 3, where every token is 0", "missed a leak at a position whose "
                "token is 0: the changed token must differ from the original, e.g. (t + 1) % vocab_size, not a "
                "fixed id"),
    "token V-1": ("a decoder leaking from position 4, where every token is vocab_size - 1", "missed a leak at a "
                  "position whose token is vocab_size - 1: the changed token must differ from the original and stay "
                  "a valid id, e.g. (t + 1) % vocab_size"),
    "tiny": ("a decoder with a small leak (earlier outputs move by about 2e-4)", "missed a small leak (earlier "
             "outputs moved by about 2e-4): compare exactly or with a tolerance of 1e-6 at most; float noise does "
             "not change earlier outputs of a causal model"),
    "causal, B=3": ("a correct causal decoder on a batch of 3", "you flagged a correct causal model on a batch of 3 "
                    "sequences: when token j changes, only the outputs i < j must stay the same"),
}


@exercise("masks.leakage", "leakage detector leaks(model_fn, tokens, vocab_size) -> bool", lesson=LESSON)
def _leakage(answer, c: Checker) -> None:
    for name, (model_fn, tokens, vocab_size, leaky) in _leak_models(c).items():
        description, hint = _LEAK_CASES[name]
        case = f"{description}, tokens {tuple(tokens.shape)}"
        out = c.call(answer, model_fn, tokens, vocab_size, case=case)
        c.cases += 1
        if c.boolean(out, case, "True (some output leaks) or False (none does)") != leaky:
            c.fail(hint)


# ----------------------------------------------------------------------------- masks.which_mask

WHICH_MASK = {
    "encoder-only: self-attention": "full",
    "decoder-only: self-attention": "causal",
    "encoder-decoder: encoder self-attention": "full",
    "encoder-decoder: decoder self-attention": "causal",
    "encoder-decoder: cross-attention": "full",
}
_MASK_NAMES = {
    "full": "full", "bidirectional": "full", "none": "full", "no mask": "full", "padding": "full",
    "padding only": "full", "causal": "causal", "look-ahead": "causal", "lower-triangular": "causal",
    "autoregressive": "causal",
}
_WHICH_MASK_HINTS = {
    "encoder-only: self-attention": "an encoder-only model (BERT) reads its whole input at once: every token sees "
                                    "every other (full; only padding is hidden)",
    "decoder-only: self-attention": "a decoder-only model (GPT) predicts token i + 1 from tokens <= i: it needs the "
                                    "causal mask, or it could read the token it must predict",
    "encoder-decoder: encoder self-attention": "the encoder of an encoder-decoder model (T5, the 2017 transformer) "
                                               "reads the whole source at once: full",
    "encoder-decoder: decoder self-attention": "the decoder of an encoder-decoder model generates the target left "
                                               "to right: its self-attention is causal",
    "encoder-decoder: cross-attention": "cross-attention: decoder queries look at encoder keys, and the whole "
                                        "source is known before decoding starts, so every target position sees every "
                                        "(real) source position: full. Causality lives in the decoder's "
                                        "self-attention",
}


@exercise("masks.which_mask", "the mask of each attention in encoder-only, decoder-only and encoder-decoder models",
          lesson=LESSON)
def _which_mask(answer, c: Checker) -> None:
    import difflib

    case = "the five attentions"
    out = c.call(answer, case=case)
    if out is None:
        c.fail(f"{c.name} returned None: is the return statement missing?")
    if not isinstance(out, dict):
        c.fail(f"{c.name} returned a {c.type_name(out)}: return a dict {{attention: 'full' or 'causal'}}")
    expected = list(WHICH_MASK)
    for key in out:
        if key not in WHICH_MASK:
            close = difflib.get_close_matches(str(key), expected, n=1)
            c.fail(f"unknown key {key!r}" + (f": did you mean {close[0]!r}?" if close else "")
                   + f" The keys are {expected}")
    missing = [k for k in expected if k not in out]
    if missing:
        c.fail(f"missing key {missing[0]!r}: the dict needs exactly the keys {expected}")
    for key, want in WHICH_MASK.items():
        c.cases += 1
        value = out[key]
        if not isinstance(value, str):
            c.fail(f"the value of {key!r} is a {c.type_name(value)}: use the string 'full' or 'causal'")
        name = _MASK_NAMES.get(" ".join(value.lower().replace("_", " ").split()))
        if name is None:
            c.fail(f"unknown mask name {value!r} for {key!r}: use 'full' (every key visible) or 'causal' (j <= i)")
        if name != want:
            c.fail(_WHICH_MASK_HINTS[key])


# ----------------------------------------------------------------------------- predictions (lesson notebook)

from tfcore.grading.predictions import predict_choice, predict_integer  # noqa: E402

predict_choice(
    "masks.predict_padding",
    "A batch of right-padded sequences (lengths 7, 4, 2) goes through an encoder and a decoder, each with and "
    "without the padding mask (lengths). Which runs change the outputs at the real positions, compared with "
    "each sequence run alone?",
    lesson=LESSON,
    options={"A": "both models without lengths", "B": "only the encoder without lengths",
             "C": "only the decoder without lengths", "D": "none of them"},
    answer="B",
    why="right padding puts the pads after every real token. A decoder's causal mask already hides every later "
        "key from a query, so no real position can see a pad: the padding mask changes nothing there. An "
        "encoder's queries see every key, pads included, so without the padding mask the pads get weight and "
        "change the real positions' outputs.",
    hint="where do the pads sit relative to the real tokens, and which keys can a real query see with and "
         "without the causal mask?",
)

predict_integer(
    "masks.predict_off_by_one_pairs",
    "A two-layer decoder with T = 10 whose mask lets query i see keys j <= i + 1 in every layer: how many pairs "
    "(i, j) with j > i have output i changing when token j changes?",
    lesson=LESSON, answer=17, unit=" pairs",
    mistakes={9: "9 counts one layer's reach only (the pairs (i, i + 1)); the second layer reaches one step further",
              45: "45 is every pair above the diagonal, as if there were no mask"},
    why="in layer 1 query i reads key i + 1: the 9 pairs (i, i + 1). In layer 2 it reads position i + 1 again, "
        "whose layer-1 output already holds token i + 2: the 8 pairs (i, i + 2). Nothing reaches further, since "
        "each layer adds one step ahead: 9 + 8 = 17 of the 45 pairs above the diagonal.",
    hint="how far ahead can one layer look, how far can two layers look when each reads the other's output, and "
         "how many such pairs fit in 10 positions?",
)
