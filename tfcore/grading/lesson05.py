"""Checks for lesson 05 (residuals and normalisation): ``norms.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson05.py``.
"""

from __future__ import annotations

import torch

from tfcore.blocks import Block
from tfcore.grading import Checker, _type_name, exercise
from tfcore.norms import layer_norm, rms_norm

LESSON = "05_norms"

WRONG_AXIS = "normalised over the wrong axis: each token is normalised over its last axis (d_model)"


def _norm_cases(c: Checker) -> list:
    """(case, x, eps or None for the default) for both norms."""
    return [
        ("x (2, 3, 7)", c.randn(2, 3, 7, scale=2.0) + 0.5, None),
        ("a single vector x (5,)", c.randn(5), None),
        ("small-variance x (3, 8) (std 1e-3: eps matters)", 0.5 + c.randn(3, 8, scale=1e-3), None),
        ("tiny x (3, 8) (values about 1e-3: eps matters)", c.randn(3, 8, scale=1e-3), None),
        ("eps=1e-2 passed explicitly", c.randn(4, 6, scale=0.1), 1e-2),
        ("a transposed (non-contiguous) x (2, 5, 6)", c.randn(2, 6, 5).transpose(1, 2), None),
        ("d_model = 1: x (4, 1)", c.randn(4, 1), None),
        ("large mean: x (4, 16) around 1000", 1e3 + c.randn(4, 16), None),
    ]


def _call(answer, c: Checker, case: str, *args, eps):
    hint = "the signature is fixed by the exercise, with eps as a keyword argument"
    if eps is None:
        return c.call(answer, *args, case=case, hint=hint)
    return c.call(answer, *args, eps=eps, case=case, hint=hint)


# ----------------------------------------------------------------------------- norms.layer_norm


# Where float32 itself cannot do better: x - mean cancels most digits when |mean| / std is large. Rounding x
# (to 2^-24 of |x|) moves x_hat by about 2^-24 |mean| / std, times |weight| (up to ~2.5): 3e-8 x 500 x 2.5 = 4e-5
# for mean 0.5, std 1e-3 (F.layer_norm differed from the exact answer by up to 5e-5 over 3,000 draws), and
# 6e-8 x 1000 x 2.5 = 1.5e-4 for mean 1000, std 1. Every wrong variant differs by more than 1e-2 there.
_LN_ATOL = {"small-variance": 2e-4, "large mean": 1e-3}  # by a word of the case's name; else 1e-5


@exercise("norms.layer_norm", "LayerNorm over the last axis: gamma (x - mu) / sqrt(var + eps) + beta", lesson=LESSON)
def _layer_norm(answer, c: Checker) -> None:
    for case, x, eps in _norm_cases(c):
        d = x.shape[-1]
        w, b = 1.0 + c.randn(d, scale=0.5), c.randn(d, scale=0.5)
        e = 1e-5 if eps is None else eps
        ref = layer_norm(x.double(), w.double(), b.double(), e).to(x.dtype)  # exact: float32 would add its own error
        out = _call(answer, c, case, x, w, b, eps=eps)
        mu = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)

        def norm(v, eps_inside=e, eps_outside=0.0, centre=mu):
            return (x - centre) / (torch.sqrt(v + eps_inside) + eps_outside) * w + b

        c.compare(out, ref, case, atol=next((a for k, a in _LN_ATOL.items() if k in case), 1e-5), rtol=1e-4, wrong=[
            ("you used the unbiased variance (dividing by d - 1): LayerNorm uses the biased one "
             "(unbiased=False or correction=0)", lambda: norm(x.var(-1, keepdim=True, unbiased=True))),
            ("eps inside vs outside the sqrt: divide by sqrt(var + eps), not sqrt(var) + eps",
             lambda: norm(var, eps_inside=0.0, eps_outside=e)),
            ("used x.std() (unbiased) with eps outside the sqrt: divide by sqrt(x.var(unbiased=False) + eps)",
             lambda: norm(x.var(-1, keepdim=True, unbiased=True), eps_inside=0.0, eps_outside=e)),
            # before "forgot eps": with eps=1e-2 passed, the default 1e-5 and 0 can lie within the tolerance
            ("ignored the eps argument (used the default 1e-5)", lambda: norm(var, eps_inside=1e-5)),
            ("forgot eps: divide by sqrt(var + eps)", lambda: norm(var, eps_inside=0.0)),
            ("wrong default eps: layer_norm's default is eps=1e-5", lambda: norm(var, eps_inside=1e-6)),
            ("computed the variance as mean(x^2) - mean(x)^2, which cancels catastrophically when the mean "
             "is large: use ((x - mu)^2).mean()", lambda: norm((x * x).mean(-1, keepdim=True) - mu * mu)),
            (WRONG_AXIS, lambda: (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + e) * w + b),
            (WRONG_AXIS, lambda: (x - x.mean(0, keepdim=True)) / torch.sqrt(x.var(0, keepdim=True, unbiased=False) + e) * w + b),
            ("forgot the bias (beta): y = weight * x_hat + bias", lambda: norm(var) - b),
            ("forgot the weight (gamma): y = weight * x_hat + bias", lambda: (x - mu) / torch.sqrt(var + e) + b),
            ("weight and bias swapped: y = weight * x_hat + bias", lambda: (x - mu) / torch.sqrt(var + e) * b + w),
        ], nonfinite=("NaN: with d_model = 1 the unbiased variance divides by d - 1 = 0; LayerNorm uses the "
                      "biased variance" if d == 1 else None))


# ----------------------------------------------------------------------------- norms.rms_norm


@exercise("norms.rms_norm", "RMSNorm over the last axis: gamma x / sqrt(mean(x^2) + eps)", lesson=LESSON)
def _rms_norm(answer, c: Checker) -> None:
    for case, x, eps in _norm_cases(c):
        d = x.shape[-1]
        w = 1.0 + c.randn(d, scale=0.5)
        e = 1e-6 if eps is None else eps
        ref = rms_norm(x, w, e)
        out = _call(answer, c, case, x, w, eps=eps)
        ms = x.pow(2).mean(-1, keepdim=True)

        def norm(v, eps_inside=e, eps_outside=0.0, centre=0.0):
            return (x - centre) / (torch.sqrt(v + eps_inside) + eps_outside) * w

        c.compare(out, ref, case, atol=1e-5, rtol=1e-4, wrong=[
            ("you subtracted the mean: RMSNorm does not centre (that is LayerNorm)",
             lambda: norm(x.var(-1, keepdim=True, unbiased=False), centre=x.mean(-1, keepdim=True))),
            ("divided by the standard deviation: RMSNorm divides by the root mean square sqrt(mean(x^2) + eps)",
             lambda: norm(x.var(-1, keepdim=True, unbiased=False))),
            ("eps inside vs outside the sqrt: divide by sqrt(mean(x^2) + eps), not sqrt(mean(x^2)) + eps",
             lambda: norm(ms, eps_inside=0.0, eps_outside=e)),
            # before "forgot eps": with eps=1e-2 passed, the default 1e-6 and 0 lie within the tolerance
            ("ignored the eps argument (used the default 1e-6)", lambda: norm(ms, eps_inside=1e-6)),
            ("forgot eps: divide by sqrt(mean(x^2) + eps)", lambda: norm(ms, eps_inside=0.0)),
            ("wrong default eps: rms_norm's default is eps=1e-6", lambda: norm(ms, eps_inside=1e-5)),
            ("used the sum of squares instead of the mean: sqrt(mean(x^2) + eps)", lambda: norm(x.pow(2).sum(-1, keepdim=True))),
            (WRONG_AXIS, lambda: x / torch.sqrt(x.pow(2).mean() + e) * w),
            (WRONG_AXIS, lambda: x / torch.sqrt(x.pow(2).mean(0, keepdim=True) + e) * w),
            ("forgot the weight (gamma): y = weight * x / rms", lambda: x / torch.sqrt(ms + e)),
        ])


# ----------------------------------------------------------------------------- norms.by_hand

BY_HAND_KEYS = ("mean", "var", "layer_norm", "rms", "rms_norm")


def _vector(c: Checker, value, case: str, key: str) -> torch.Tensor:
    """A list, tuple, NumPy array or tensor of numbers -> float64 tensor; anything else fails."""
    import numpy as np

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double()
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf":
        return torch.from_numpy(value.astype(np.float64))
    if isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in value):
        return torch.tensor([float(v) for v in value], dtype=torch.float64)
    c.fail(f"out[{key!r}] on {case} is a {_type_name(value)}: give a list of numbers, one per entry of x")
    raise AssertionError  # unreachable


@exercise("norms.by_hand", "LayerNorm and RMSNorm of one vector in plain Python: mean, var, rms and both outputs",
          lesson=LESSON)
def _by_hand(answer, c: Checker) -> None:
    cases = [
        ("x = [2, 4, 4, 4, 5, 5, 7, 9]", [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]),
        ("x = [1, -1, 3]", [1.0, -1.0, 3.0]),
        ("x = [0.5, -2.5] (d = 2)", [0.5, -2.5]),
        ("x = [1000, 1001, 1003, 1004] (large mean)", [1000.0, 1001.0, 1003.0, 1004.0]),
        ("x = [-3, -1, -2, -6, -3] (all negative)", [-3.0, -1.0, -2.0, -6.0, -3.0]),
        ("seven random numbers", [round(v, 4) for v in (1.5 * c.randn(7, dtype=torch.float64)).tolist()]),
    ]
    for case, x in cases:
        out = c.call(answer, list(x), case=case, hint="x is a plain Python list of floats")
        if not isinstance(out, dict):
            c.fail(f"{c.name} returned a {_type_name(out)} on {case}: return a dict with the keys "
                   f"{', '.join(repr(k) for k in BY_HAND_KEYS)}")
        missing = [k for k in BY_HAND_KEYS if k not in out]
        if missing:
            c.fail(f"the dict returned on {case} lacks the key{'s' if len(missing) > 1 else ''} "
                   f"{', '.join(repr(k) for k in missing)}")
        t = torch.tensor(x, dtype=torch.float64)
        mean = float(t.mean())
        var = float(t.var(unbiased=False))
        var_unbiased = float(t.var(unbiased=True))
        ms = float(t.pow(2).mean())
        rms = ms ** 0.5
        tol = dict(rtol=1e-4, atol=1e-6)  # eps = 0 or 1e-5 both pass
        c.number(out["mean"], mean, f"{case}, 'mean'", **tol, wrong=[
            ("'mean' is the sum: divide by the number of entries d", lambda: float(t.sum())),
        ])
        c.number(out["var"], var, f"{case}, 'var'", **tol, wrong=[
            ("'var' divides by d - 1 (the unbiased variance): LayerNorm divides by d", lambda: var_unbiased),
            ("'var' is the standard deviation: var = mean((x - mean)^2), without the square root",
             lambda: var ** 0.5),
            ("'var' is mean(x^2): subtract the mean first, var = mean((x - mean)^2)", lambda: ms),
        ])
        ln = _vector(c, out["layer_norm"], case, "layer_norm")
        c.compare(ln, (t - mean) / var ** 0.5, f"{case}, 'layer_norm'", dtype="float", **tol, wrong=[
            ("'layer_norm' uses the unbiased variance (divide by d - 1): LayerNorm divides by d",
             lambda: (t - mean) / var_unbiased ** 0.5),
            ("'layer_norm' divides by the variance: divide by its square root, the standard deviation",
             lambda: (t - mean) / var),
            ("'layer_norm' is not centred: subtract the mean before dividing by the standard deviation",
             lambda: t / var ** 0.5),
            ("'layer_norm' is only centred: divide (x - mean) by sqrt(var) as well", lambda: t - mean),
            ("'layer_norm' divides by the RMS: LayerNorm divides by the standard deviation sqrt(var)",
             lambda: (t - mean) / rms),
        ], shape_hints={(): "one output per entry of x"})
        c.number(out["rms"], rms, f"{case}, 'rms'", **tol, wrong=[
            ("'rms' is the mean square: take its square root, rms = sqrt(mean(x^2))", lambda: ms),
            ("'rms' is the length of x, sqrt(sum(x^2)): RMS averages the squares, sqrt(mean(x^2))",
             lambda: float(t.pow(2).sum()) ** 0.5),
            ("'rms' is the standard deviation: RMSNorm does not subtract the mean, rms = sqrt(mean(x^2))",
             lambda: var ** 0.5),
        ])
        rn = _vector(c, out["rms_norm"], case, "rms_norm")
        c.compare(rn, t / rms, f"{case}, 'rms_norm'", dtype="float", **tol, wrong=[
            ("'rms_norm' subtracts the mean: RMSNorm does not centre, it is x / rms",
             lambda: (t - mean) / rms),
            ("'rms_norm' is the LayerNorm output: RMSNorm is x / sqrt(mean(x^2)), no centring",
             lambda: (t - mean) / var ** 0.5),
            ("'rms_norm' divides by the length of x: divide by the RMS, sqrt(mean(x^2)) = |x| / sqrt(d)",
             lambda: t / float(t.pow(2).sum()) ** 0.5),
            ("'rms_norm' divides by the mean square: divide by its square root", lambda: t / ms),
        ], shape_hints={(): "one output per entry of x"})


# ----------------------------------------------------------------------------- norms.pre_post


def _random_block(c: Checker, d: int, n_heads: int, d_ff: int, placement: str, norm: str, mlp: str) -> Block:
    """A Block whose every parameter comes from the check's generator (the global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        blk = Block(d, n_heads, d_ff, norm=norm, placement=placement, mlp=mlp, bias=True)
    with torch.no_grad():
        for name, p in blk.named_parameters():
            if name.startswith("norm_"):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + c.randn(*p.shape, scale=0.3))
            elif name.endswith("bias"):
                p.copy_(c.randn(*p.shape, scale=0.1))
            else:
                p.copy_(c.randn(*p.shape, scale=p.shape[-1] ** -0.5))
    return blk.eval()


def _pre(x, attn, mlp, ln1, ln2):
    x = x + attn(ln1(x))
    return x + mlp(ln2(x))


def _post(x, attn, mlp, ln1, ln2):
    x = ln1(x + attn(x))
    return ln2(x + mlp(x))


@exercise("norms.pre_post", "Pre-LN x + F(LN(x)) and Post-LN LN(x + F(x)) blocks from the same parts",
          lesson=LESSON)
def _pre_post(answer, c: Checker) -> None:
    import copy

    cases = [
        ("pre", "layer", "gelu", (2, 5, 12), 3, False, 1.0),
        ("post", "layer", "gelu", (2, 5, 12), 3, False, 1.0),
        ("pre", "rms", "swiglu", (1, 1, 8), 2, False, 1.0),
        ("post", "rms", "swiglu", (3, 4, 8), 2, False, 1.0),
        ("pre", "layer", "gelu", (2, 6, 12), 4, True, 1.0),
        ("post", "layer", "relu", (2, 3, 12), 3, True, 10.0),
        ("pre", "layer", "relu", (1, 4, 16), 4, False, 10.0),
    ]
    for placement, norm, mlp, (b, t, d), h, transposed, scale in cases:
        blk = _random_block(c, d, h, 2 * d + 4, placement, norm, mlp)
        x = c.randn(b, d, t, scale=scale).transpose(1, 2) if transposed else c.randn(b, t, d, scale=scale)
        case = (f"placement={placement!r}, {'RMSNorm' if norm == 'rms' else 'LayerNorm'}, {mlp} MLP, "
                f"x {(b, t, d)}{' (a transposed view)' if transposed else ''}{' of scale 10' if scale != 1 else ''}")
        learner = c.share(copy.deepcopy(blk), Block, d, h, 2 * d + 4, norm=norm, placement=placement, mlp=mlp,
                          bias=True)  # in the grader the kernel holds its own copy: real modules for the learner
        parts = [learner.attn, learner.mlp, learner.norm_attn, learner.norm_mlp]
        a, m, n1, n2 = parts
        with torch.no_grad():
            ref = blk(x)
            out = c.call(answer, x, *parts, placement, case=case,
                         hint="attn, mlp, ln1 and ln2 are modules: call them on a (B, T, d_model) tensor, e.g. attn(h)")

        def no_grad(f):
            def run():
                with torch.no_grad():
                    return f()
            return run

        def added_normed(first, second, n_first, n_second):
            h = n_first(x)
            x1 = h + first(h)
            h2 = n_second(x1)
            return h2 + second(h2)

        if placement == "pre":
            wrong = [
                ("you wrote Post-LN for placement='pre': Pre-LN normalises each sublayer's input, "
                 "x = x + attn(ln1(x)), and never the stream itself", lambda: _post(x, a, m, n1, n2)),
                ("ln1 and ln2 swapped: ln1 normalises the attention input, ln2 the MLP input",
                 lambda: _pre(x, a, m, n2, n1)),
                ("the same norm for both sublayers: ln1 before attention, ln2 before the MLP",
                 lambda: _pre(x, a, m, n1, n1)),
                ("the same norm for both sublayers: ln1 before attention, ln2 before the MLP",
                 lambda: _pre(x, a, m, n2, n2)),
                ("the normalised stream was added back: x + attn(ln1(x)), not ln1(x) + attn(ln1(x)); "
                 "keep x itself on the residual path", lambda: added_normed(a, m, n1, n2)),
                ("the residual connections are missing: x = x + attn(ln1(x)); return x + mlp(ln2(x))",
                 lambda: m(n2(a(n1(x))))),
                ("the MLP's residual connection is missing: return x + mlp(ln2(x))",
                 lambda: m(n2(x + a(n1(x))))),
                ("the MLP ran before attention: attention first, then the MLP",
                 lambda: (lambda x1: x1 + a(n1(x1)))(x + m(n2(x)))),
                ("you wrote a parallel block: the MLP reads the stream after attention has written to it",
                 lambda: x + a(n1(x)) + m(n2(x))),
                ("a final norm at the end of the block: in Pre-LN the final norm belongs to the model "
                 "(once, before the unembedding), not to each block", lambda: n2(_pre(x, a, m, n1, n2))),
            ]
        else:
            wrong = [
                ("you wrote Pre-LN for placement='post': Post-LN normalises after the residual sum, "
                 "x = ln1(x + attn(x))", lambda: _pre(x, a, m, n1, n2)),
                ("ln1 and ln2 swapped: ln1 follows the attention sum, ln2 the MLP sum",
                 lambda: _post(x, a, m, n2, n1)),
                ("the same norm after both sublayers: ln1 after the attention sum, ln2 after the MLP sum",
                 lambda: _post(x, a, m, n1, n1)),
                ("the same norm after both sublayers: ln1 after the attention sum, ln2 after the MLP sum",
                 lambda: _post(x, a, m, n2, n2)),
                ("the norm sits inside the residual branch: Post-LN is ln(x + F(x)), not x + ln(F(x))",
                 lambda: (lambda x1: x1 + n2(m(x1)))(x + n1(a(x)))),
                ("the residual connections are missing: x = ln1(x + attn(x)); return ln2(x + mlp(x))",
                 lambda: n2(m(n1(a(x))))),
                ("the second norm is missing: return ln2(x + mlp(x))",
                 lambda: (lambda x1: x1 + m(x1))(n1(x + a(x)))),
                ("the MLP ran before attention: attention first, then the MLP",
                 lambda: (lambda x1: n1(x1 + a(x1)))(n2(x + m(x)))),
                ("the sublayers read the normalised stream: in Post-LN attention reads x itself, x = ln1(x + attn(x))",
                 lambda: _post(n1(x), a, m, n1, n2)),
            ]
        c.compare(out, ref, case, atol=1e-4, rtol=1e-4, wrong=[(hint, no_grad(f)) for hint, f in wrong])


# ----------------------------------------------------------------------------- predictions (lesson notebook)

from tfcore.grading.predictions import predict_choice, predict_number  # noqa: E402

predict_number(
    "norms.predict_layernorm_norm",
    "A token of d = 8 components goes through LayerNorm with gain 1 and shift 0. What is the Euclidean norm of "
    "the output?",
    lesson=LESSON, answer=8 ** 0.5, abs=0.15, at_least=(0, "a norm is never negative"),
    mistakes={1: "1 is the standard deviation per component, not the norm of the whole vector", 8: "8 is the squared "
              "norm, sum_i y_i^2; the norm is its square root"},
    why="LayerNorm leaves every token with mean 0 and variance (1/d) sum_i y_i^2 = 1, so sum_i y_i^2 = d and "
        "||y|| = sqrt(d) = sqrt(8) = 2.83, whatever the token's scale before. Standard deviation 1 is per "
        "component; the norm adds up all d of them.",
    hint="variance 1 means the mean of the squares is 1 (the mean is 0): what is the sum of the 8 squares?",
)

# the value lesson 05 prints ("Pre-LN, L = 6 over L = 24: ..."); tests/test_grading_lesson05.py reads it from
# the saved notebook, so the two cannot drift apart
DEPTH_RATIO = 2.38

predict_number(
    "norms.predict_depth_ratio",
    "In the paper's setting (Xavier init, embeddings times sqrt(d), final LayerNorm), how many times larger is "
    "Pre-LN's last-layer W2 gradient at 6 layers than at 24?",
    lesson=LESSON, answer=DEPTH_RATIO, abs=0.6,
    mistakes={4: "4 = 24 / 6 would be a gradient falling like 1/L; it falls like 1/sqrt(L)", 1 / 2.38: "that is the "
              "ratio the other way round: the 6-layer gradient is the larger", 1: "1 is Post-LN's behaviour"},
    why="Pre-LN's last block writes into a stream whose size grows like sqrt(L) (every block adds a write of "
        "about the same size), and the final LayerNorm divides the gradient that reaches it by that size. Four "
        "times the depth gives about sqrt(4) = 2 times the size, so the gradient at 6 layers is about twice the "
        "one at 24 (2.38 measured). Post-LN's last layer sits behind one norm of one sublayer sum, whatever L.",
    hint="the final norm divides by the size of x_L; how does ||x_L|| grow with the number of blocks adding "
         "roughly independent writes to it?",
)

predict_choice(
    "norms.predict_which_trains",
    "Two 24-layer models with the same Xavier weights and batches train for 40 AdamW steps at lr 1e-2 with no "
    "warm-up, one Pre-LN and one Post-LN. Which learns the permutation map?",
    lesson=LESSON, options={"A": "both", "B": "only Pre-LN", "C": "only Post-LN", "D": "neither"}, answer="B",
    why="Pre-LN keeps an identity path from the embedding to the final norm, so every block's step changes the "
        "output a little and the top gradient reaches every layer. Post-LN's output is 48 normalised "
        "sublayers composed with no shortcut: AdamW moves every weight by about the learning rate at once, "
        "and without a warm-up the function changes without descending; it stays at chance (ln 16 = 2.77).",
    hint="which placement keeps a path from the embedding to the output that no norm or sublayer sits on?",
)
