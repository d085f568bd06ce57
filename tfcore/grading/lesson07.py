"""Checks for lesson 07 (positional information): ``positions.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson07.py``.
"""

from __future__ import annotations

import torch

from tfcore.grading import Checker, exercise
from tfcore.positions import rope, sinusoidal

LESSON = "07_positions"


def _table(t: int, d: int, exponent, first_pos: int = 0, layout: str = "interleaved", swap: bool = False):
    """A sinusoidal-like table whose column frequencies come from ``exponent(i) -> power of 10000``."""
    pos = torch.arange(first_pos, first_pos + t, dtype=torch.float64)[:, None]
    cols = torch.arange(d, dtype=torch.float64)
    angle = pos / 10000.0 ** exponent(cols)
    sin, cos = torch.sin(angle), torch.cos(angle)
    if swap:
        sin, cos = cos, sin
    if layout == "halves":
        half = d // 2
        return torch.cat((sin[:, 0:d:2][:, :half], cos[:, 0:d:2][:, :half]), dim=1)
    return torch.where(cols.long() % 2 == 0, sin, cos)


# ----------------------------------------------------------------------------- positions.sinusoidal


@exercise("positions.sinusoidal", "the sinusoidal table (T, d): sin in column 2i, cos in 2i+1", lesson=LESSON)
def _sinusoidal(answer, c: Checker) -> None:
    for t, d in ((5, 8), (1, 2), (7, 6), (16, 16), (50, 64)):
        case = f"T={t}, d={d}"
        ref = sinusoidal(t, d)
        out = c.call(answer, t, d, case=case)

        def pair(cols):  # 2i for both columns of pair i
            return (cols - cols % 2) / d

        c.compare(out, ref, case, dtype="float", atol=1e-4, rtol=1e-4, wrong=[
            ("cos/sin columns swapped: column 2i is sin, column 2i+1 is cos", lambda: _table(t, d, pair, swap=True)),
            ("sin in the first half and cos in the second: interleave them (column 2i sin, column 2i+1 cos)",
             lambda: _table(t, d, pair, layout="halves")),
            ("frequencies off: the exponent is 2i/d with i counting pairs (so it is the even column index / d)",
             lambda: _table(t, d, lambda cols: (cols // 2) / d)),
            ("columns 2i and 2i+1 must share one frequency: use the even column index 2i in both",
             lambda: _table(t, d, lambda cols: cols / d)),
            ("positions start at 0: row 0 is sin(0) = 0, cos(0) = 1", lambda: _table(t, d, pair, first_pos=1)),
            ("returned (d, T): rows are positions, shape (T, d)", lambda: ref.T),
        ])


# ----------------------------------------------------------------------------- positions.rope


def _rope_variant(x, positions, base, exponent_scale=2.0, swap=False, sign=1.0, layout="interleaved"):
    d = x.shape[-1]
    inv_freq = base ** (-exponent_scale * torch.arange(d // 2, dtype=torch.float64) / d)
    angle = (positions.double()[:, None] * inv_freq).to(x.dtype)
    cos, sin = angle.cos(), sign * angle.sin()
    if swap:
        cos, sin = sin, cos
    a, b = x[..., 0::2], x[..., 1::2]
    ra, rb = a * cos - b * sin, a * sin + b * cos
    if layout == "concat":
        return torch.cat((ra, rb), dim=-1)
    return torch.stack((ra, rb), dim=-1).flatten(-2)


@exercise("positions.rope", "RoPE on interleaved pairs (x[2i], x[2i+1]), angle pos * base^(-2i/d)", lesson=LESSON)
def _rope(answer, c: Checker) -> None:
    cases = [
        ("x (1, 1, 4, 8), positions 0..3", c.randn(1, 1, 4, 8), torch.arange(4), None),
        ("x (2, 3, 5, 6), positions 3..7", c.randn(2, 3, 5, 6), torch.arange(3, 8), None),
        ("x (7, 4), positions [0, 5, 2, 9, 11, 1, 3]", c.randn(7, 4), torch.tensor([0, 5, 2, 9, 11, 1, 3]), None),
        ("T = 1: x (2, 1, 1, 8), position 17", c.randn(2, 1, 1, 8), torch.tensor([17]), None),
        ("base=500 passed explicitly, x (1, 2, 4, 8)", c.randn(1, 2, 4, 8), torch.arange(4), 500.0),
        ("a transposed (non-contiguous) x (2, 5, 8)", c.randn(2, 8, 5).transpose(-1, -2), torch.arange(5), None),
    ]
    for case, x, positions, base in cases:
        b = 10000.0 if base is None else base
        ref = rope(x, positions, b)
        if base is None:
            out = c.call(answer, x, positions, case=case)
        else:
            out = c.call(answer, x, positions, base=base, case=case, hint="the signature is rope(x, positions, base=10000.0)")
        t = x.shape[-2]
        c.compare(out, ref, case, atol=1e-5, rtol=1e-4, wrong=[
            ("rotated the split halves instead of interleaved pairs: pair i is (x[2i], x[2i+1])",
             lambda: rope(x, positions, b, layout="split_half")),
            ("rotated the wrong way: (a, b) -> (a cos - b sin, a sin + b cos)",
             lambda: _rope_variant(x, positions, b, sign=-1.0)),
            ("cos/sin swapped: (a, b) -> (a cos - b sin, a sin + b cos)",
             lambda: _rope_variant(x, positions, b, swap=True)),
            ("frequencies off: theta_i = base^(-2i/d), with i counting pairs",
             lambda: _rope_variant(x, positions, b, exponent_scale=1.0)),
            ("ignored the positions argument (used 0 .. T-1)", lambda: rope(x, torch.arange(t), b)),
            ("ignored the base argument (used 10000)", lambda: rope(x, positions, 10000.0)),
            ("put the rotated pairs back in the wrong order: keep them interleaved (stack on a new last axis, "
             "then flatten)", lambda: _rope_variant(x, positions, b, layout="concat")),
        ])


# ----------------------------------------------------------------------------- positions.alibi

import math  # noqa: E402

from tfcore.positions import alibi_bias, alibi_slopes  # noqa: E402


def _geometric_slopes(n: int, first: int = 1) -> torch.Tensor:
    """2^(-8 h / n) for h = first .. first + n - 1, for any n (no power-of-two rule)."""
    return torch.tensor([2.0 ** (-8.0 * h / n) for h in range(first, first + n)])


@exercise("positions.alibi", "ALiBi: geometric head slopes (h,) and the bias -m_h |i - j| (h, T, T)", lesson=LESSON)
def _alibi(answer, c: Checker) -> None:
    for n, t in ((8, 5), (4, 1), (1, 3), (16, 4), (12, 6), (6, 7)):
        case = f"n_heads={n}, T={t}"
        out = c.call(answer, n, t, case=case)
        if not isinstance(out, tuple):
            what = "None: is the return statement missing?" if out is None else \
                f"a {c.type_name(out)}: return a tuple (slopes, bias)"
            c.fail(f"{c.name} returned {what} on {case}")
        if len(out) != 2:
            c.fail(f"{c.name} returned a tuple of {len(out)} items on {case}: return (slopes, bias)")
        slopes, bias = out
        ref_slopes = alibi_slopes(n)
        p = 2 ** int(math.log2(n))
        c.compare(slopes, ref_slopes, f"{case} (slopes)", dtype="float", atol=1e-6, rtol=1e-5, wrong=[
            ("slopes in reverse order: head 1 gets the steepest slope, m_1 = 2^(-8/n)",
             lambda: ref_slopes.flip(0)),
            ("h counts from 1: m_h = 2^(-8h/n) for h = 1..n, so 8 heads start at 1/2, not 1",
             lambda: _geometric_slopes(n, first=0)),
            ("the exponent depends on the number of heads: m_h = 2^(-8h/n), not 2^(-h)",
             lambda: torch.tensor([2.0 ** -h for h in range(1, n + 1)])),
            (f"{n} heads is not a power of two: take the {p} slopes of 2^(-8h/{p}), then every other slope of "
             f"the next power of two, 2^(-8h/{2 * p}) for h = 1, 3, 5, ...", lambda: _geometric_slopes(n)),
            (f"{n} heads is not a power of two: keep the {p} slopes of 2^(-8h/{p}) first, then the extra ones "
             "after them (do not sort)", lambda: ref_slopes.sort(descending=True).values),
        ])
        ref = alibi_bias(n, t)
        i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
        m = ref_slopes[:, None, None]
        c.compare(bias, ref, f"{case} (bias)", dtype="float", atol=1e-6, rtol=1e-5, wrong=[
            ("the bias has the wrong sign: ALiBi subtracts m_h |i - j| (a penalty that grows with distance)",
             lambda: -ref),
            ("use the distance |i - j|: -m_h (i - j) is positive for keys after the query",
             lambda: -m * (i - j).float()),
            ("use the distance |i - j|: -m_h (j - i) is positive for keys before the query",
             lambda: -m * (j - i).float()),
            ("the heads go first: bias has shape (n_heads, T, T)", lambda: ref.permute(1, 2, 0)),
            ("the bias is per head: multiply the distance by each head's slope", lambda: -(i - j).abs().float()),
        ], shape_hints={(t, t): "one (T, T) matrix per head: the bias has shape (n_heads, T, T)"})


# ----------------------------------------------------------------------------- positions.equivariance

from tfcore.model import Transformer, TransformerConfig  # noqa: E402


def _equivariance_model(c: Checker, positions: str, architecture: str, seed: int) -> Transformer:
    """A tiny model in eval mode whose matrices are drawn large (std 0.3) from the check's generator."""
    with torch.random.fork_rng(devices=[]):  # building a model draws from the global RNG: leave it untouched
        torch.manual_seed(seed)
        model = Transformer(TransformerConfig(vocab_size=11, d_model=16, n_layers=1, n_heads=2, max_seq_len=16,
                                              architecture=architecture, positions=positions)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(c.randn(*p.shape, scale=0.3))
    return model


def _telling_model(c: Checker, model: Transformer, tokens: torch.Tensor, perm: torch.Tensor, positions: str,
                   architecture: str) -> Transformer:
    """The model, or one drawn afresh, on which each wrong answer gives a value of its own (2% apart from the
    right one and from each other), and the difference f(P x) - P f(x) has its largest magnitude on the negative
    side (so that the signed max falls short). Negating the last LayerNorm's gain and shift negates the logits
    (the unembedding has no bias), and so the difference. Random weights give a near tie about once in 50 draws:
    then a wrong answer would get another's message, or pass this case."""
    inverse = torch.argsort(perm)
    for _ in range(20):
        with torch.no_grad():
            diff = model(tokens[:, perm]) - model(tokens)[:, perm]
            if float(diff.max()) > float(-diff.min()):
                last_norm = model.final_norm if model.final_norm is not None else model.encoder_norm
                last_norm.weight.neg_()
                last_norm.bias.neg_()
        values = [_gap(model, tokens, perm), _gap(model, tokens, torch.arange(len(perm)), perm),
                  _gap(model, tokens, inverse, perm), _gap(model, tokens, perm, reduce="mean"),
                  _gap(model, tokens, perm, absolute=False)]
        if all(abs(a - b) > 0.02 * max(abs(a), abs(b)) for i, a in enumerate(values) for b in values[i + 1:]):
            return model
        model = _equivariance_model(c, positions, architecture, seed=0)  # a near tie: other weights
    return model


def _gap(model, tokens: torch.Tensor, out_perm: torch.Tensor, in_perm: torch.Tensor | None = None,
         reduce: str = "max", absolute: bool = True) -> float:
    in_perm = out_perm if in_perm is None else in_perm
    with torch.no_grad():
        diff = model(tokens[:, in_perm]) - model(tokens)[:, out_perm]
    diff = diff.abs() if absolute else diff
    return float(diff.max() if reduce == "max" else diff.mean())


@exercise("positions.equivariance", "max |f(P x) - P f(x)| of a model on token ids: ~0 without positions",
          lesson=LESSON)
def _equivariance(answer, c: Checker) -> None:
    g = torch.Generator().manual_seed(7)
    cases = [
        ("an encoder with RoPE, T=6", "rope", "encoder", 1, 6),  # first: the wrong answers give distinct values
        ("an encoder without positions, T=6", "none", "encoder", 1, 6),
        ("an encoder with a learned table, batch 2, T=7", "learned", "encoder", 2, 7),
        ("an encoder without positions, batch 3, T=9", "none", "encoder", 3, 9),
        ("an encoder with ALiBi, T=5", "alibi", "encoder", 1, 5),
        ("a causal decoder without positions, T=6", "none", "decoder", 1, 6),
    ]
    for n, (case, positions, architecture, batch, t) in enumerate(cases):
        tokens = torch.randint(11, (batch, t), generator=g)
        perm = torch.randperm(t, generator=g)
        # no fixed point (there P, P^-1 and no permutation agree) and not its own inverse: P and P^-1 must differ
        while bool((perm == torch.arange(t)).any()) or torch.equal(perm[perm], torch.arange(t)):
            perm = torch.randperm(t, generator=g)
        model = _equivariance_model(c, positions, architecture, seed=n)
        if n == 0:
            model = _telling_model(c, model, tokens, perm, positions, architecture)
        ref = _gap(model, tokens, perm)
        out = c.call(answer, model, tokens, perm, case=case,
                     hint="the signature is equivariance_gap(model, tokens, perm); model(tokens) gives (B, T, V)")
        inverse = torch.argsort(perm)
        c.number(out, ref, case, rtol=1e-3, atol=1e-4, wrong=[
            ("P f(x) is f(x) permuted the same way: compare f(x[:, perm]) with f(x)[:, perm]",
             lambda: _gap(model, tokens, torch.arange(t), perm)),
            ("permuted the output with the inverse permutation: P f(x) is f(x)[:, perm], the same perm as the input",
             lambda: _gap(model, tokens, inverse, perm)),
            ("return the largest absolute difference (max), not the mean", lambda: _gap(model, tokens, perm, reduce="mean")),
            ("take the absolute value before the max: a large negative difference counts too",
             lambda: _gap(model, tokens, perm, absolute=False)),
        ])


# ----------------------------------------------------------------------------- predictions (lesson notebook)

from tfcore.grading.predictions import predict_choice, predict_integer, predict_number  # noqa: E402

predict_integer(
    "positions.predict_gpt2_table",
    "GPT-2 small learns a position table with T_max = 1024 rows of d_model = 768. How many parameters does the "
    "table hold?",
    lesson=LESSON, answer=1024 * 768, unit=" parameters",
    mistakes={786000: "close: the count is exact, 1024 x 768", 768: "768 is one row; the table has 1024",
              1024: "1024 is the number of rows; each holds d_model = 768 numbers"},
    why="the table has one learned row of d_model numbers per position: 1024 x 768 = 786 432 parameters, 0.6 % of "
        "GPT-2 small's 124 M. It is the same size however long the training texts are, and it holds no row for "
        "position 1024 or beyond.",
    hint="one row per position, one number per channel of the residual stream.",
)

predict_number(
    "positions.predict_slowest_wavelength",
    "In the sinusoidal table with d = 64, pair i turns at the frequency 10000^(-2i/d). How many positions does the "
    "slowest pair take to complete one turn?",
    lesson=LESSON, answer=2 * math.pi * 10000 ** (62 / 64), rel=0.05, unit=" positions",
    mistakes={10000 ** (62 / 64): "that is 10000^(62/64) without the 2 pi: a turn takes 2 pi / omega positions",
              2 * math.pi * 10000: "2 pi 10000 uses i = d/2; the last pair is i = d/2 - 1 = 31", 10000: "10000 is "
              "the base, not a wavelength"},
    why="one turn takes 2 pi / omega_i = 2 pi 10000^(2i/d) positions, longest for the last pair, i = d/2 - 1 = 31: "
        "2 pi 10000^(62/64) = 2 pi x 7499 = 47 117. The exponent is (d - 2)/d, not 1, so it stays below "
        "2 pi 10000 = 62 832, the limit as d grows.",
    hint="a turn is 2 pi radians; which i is the last pair, and what is 2i/d for it?",
)

predict_choice(
    "positions.predict_flattest_beyond",
    "Six decoders, trained on windows of 64 characters, are scored at positions 64 to 511. Which one's loss there "
    "stays closest to its own loss inside the training length?",
    lesson=LESSON,
    options={"A": "sinusoidal", "B": "RoPE", "C": "ALiBi", "D": "T5 buckets", "E": "no positions"},
    answer="C",
    why="ALiBi subtracts m_h (i - j) from the scores, a rule that is the same at every distance: a key further back "
        "than any seen in training only gets a larger penalty, and the model already handles far keys by "
        "giving them little weight. Sinusoidal positions and RoPE feed it vectors or angles it never saw; T5's "
        "buckets for offsets beyond those of training were never trained; without positions nothing new appears "
        "either, but each query meets more keys than in training, and the loss rises a little.",
    hint="for each scheme, does a position or an offset beyond 63 give the model something it never saw in "
         "training?",
)
