"""Checks for lesson 04 (feed-forward network): ``mlp.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson04.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tfcore.grading import Checker, exercise
from tfcore.mlp import swiglu

LESSON = "04_mlp"


# ----------------------------------------------------------------------------- mlp.swiglu


@exercise("mlp.swiglu", "SwiGLU: (silu(x W1^T) * (x W3^T)) W2^T", lesson=LESSON)
def _swiglu(answer, c: Checker) -> None:
    cases = [
        ("x (2, 5, 6), d_ff=7", c.randn(2, 5, 6), 7),
        ("x (4, 8), d_ff=11", c.randn(4, 8), 11),
        ("a single token x (5,), d_ff=3", c.randn(5), 3),
        ("x (1, 1, 4), d_ff=12", c.randn(1, 1, 4, scale=3.0), 12),
        ("a transposed (non-contiguous) x (2, 3, 6), d_ff=9", c.randn(6, 3, 2).transpose(0, 2), 9),
    ]
    for case, x, d_ff in cases:
        d = x.shape[-1]
        w1, w3 = c.randn(d_ff, d, scale=0.5), c.randn(d_ff, d, scale=0.5)
        w2 = c.randn(d, d_ff, scale=0.5)
        ref = swiglu(x, w1, w2, w3)
        out = c.call(answer, x, w1, w2, w3, case=case,
                     hint="the weights are in nn.Linear layout (out, in): x @ w1.T, then @ w2.T")
        gate, up = x @ w1.T, x @ w3.T
        c.compare(out, ref, case, atol=1e-5, rtol=1e-4, wrong=[
            ("the gate is W1: silu(x W1^T) * (x W3^T), not silu(x W3^T) * (x W1^T)", lambda: (F.silu(up) * gate) @ w2.T),
            ("used sigmoid instead of silu: silu(z) = z * sigmoid(z)", lambda: (torch.sigmoid(gate) * up) @ w2.T),
            ("used ReLU instead of SiLU: silu(z) = z * sigmoid(z)", lambda: (torch.relu(gate) * up) @ w2.T),
            ("used GELU instead of SiLU: silu(z) = z * sigmoid(z)", lambda: (F.gelu(gate) * up) @ w2.T),
            ("applied silu to the product: only the gate x W1^T goes through silu", lambda: F.silu(gate * up) @ w2.T),
            ("dropped the up projection: multiply silu(x W1^T) by x W3^T", lambda: F.silu(gate) @ w2.T),
            ("forgot the down projection W2: the output must have d_model channels", lambda: F.silu(gate) * up),
        ])


# ----------------------------------------------------------------------------- mlp.ffn


def _ffn_ref(x, w1, b1, w2, b2, act=None):
    from tfcore.mlp import gelu

    act = gelu if act is None else act
    return F.linear(act(F.linear(x, w1, b1)), w2, b2)


@exercise("mlp.ffn", "position-wise MLP with exact GELU: gelu(x W1^T + b1) W2^T + b2", lesson=LESSON)
def _ffn(answer, c: Checker) -> None:
    from tfcore.mlp import gelu

    cases = [
        ("x (2, 5, 6), d_ff=10", c.randn(2, 5, 6), 10),
        ("x (4, 8), d_ff=12", c.randn(4, 8), 12),
        ("a single token x (5,), d_ff=7", c.randn(5), 7),
        ("x (1, 3, 4) with large values, d_ff=9", c.randn(1, 3, 4, scale=3.0), 9),
        ("a transposed (non-contiguous) x (2, 3, 6), d_ff=11", c.randn(6, 3, 2).transpose(0, 2), 11),
    ]
    for case, x, d_ff in cases:
        d = x.shape[-1]
        w1, b1 = c.randn(d_ff, d, scale=0.7), c.randn(d_ff, scale=0.5)
        w2, b2 = c.randn(d, d_ff, scale=0.7), c.randn(d, scale=0.5)
        ref = _ffn_ref(x, w1, b1, w2, b2)
        out = c.call(answer, x, w1, b1, w2, b2, case=case,
                     hint="the weights are in nn.Linear layout (out, in): x @ w1.T + b1, then @ w2.T + b2")
        h = x @ w1.T
        c.compare(out, ref, case, atol=1e-5, rtol=1e-4, wrong=[
            ("used the tanh approximation of GELU: this exercise asks for the exact GELU, "
             "x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2))) (F.gelu's default)",
             lambda: _ffn_ref(x, w1, b1, w2, b2, lambda z: gelu(z, "tanh"))),
            ("used ReLU instead of GELU", lambda: _ffn_ref(x, w1, b1, w2, b2, torch.relu)),
            ("used SiLU instead of GELU: GELU is x * Phi(x), with the normal CDF Phi, not x * sigmoid(x)",
             lambda: _ffn_ref(x, w1, b1, w2, b2, F.silu)),
            ("forgot the activation: without it the two layers collapse into one linear map",
             lambda: _ffn_ref(x, w1, b1, w2, b2, lambda z: z)),
            ("applied GELU to the output too (or only): GELU acts on the hidden layer, "
             "W2 phi(W1 x + b1) + b2 is linear at the end", lambda: gelu(_ffn_ref(x, w1, b1, w2, b2))),
            ("applied GELU to the output instead of the hidden layer: gelu(x W1^T + b1) W2^T + b2",
             lambda: gelu(F.linear(F.linear(x, w1, b1), w2, b2))),
            ("b1 goes inside the activation: gelu(x W1^T + b1), not gelu(x W1^T) + b1",
             lambda: (gelu(h) + b1) @ w2.T + b2),
            ("forgot b1", lambda: gelu(h) @ w2.T + b2),
            ("forgot b2", lambda: gelu(h + b1) @ w2.T),
            ("forgot both biases", lambda: gelu(h) @ w2.T),
        ])


# ----------------------------------------------------------------------------- mlp.param_counts


def _pair(out, c: Checker, case: str) -> tuple:
    if out is None:
        c.fail(f"{c.name} returned None on {case}: is the return statement missing?")
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        what = f"a {c.type_name(out)} of length {len(out)}" if isinstance(out, (tuple, list)) else \
            f"a {c.type_name(out)}"
        c.fail(f"{c.name} returned {what} on {case}: return two numbers, (attention, mlp)")
    bad = [x for x in out if isinstance(x, bool) or not isinstance(x, int)]
    if bad:
        c.fail(f"{c.name} returned a {c.type_name(out)} holding a {c.type_name(bad[0])} on {case}: "
               "return an int for each of (attention, mlp)")
    return tuple(out)


@exercise("mlp.param_counts", "parameters of one MHA layer and one MLP: (attention, mlp) for GELU or SwiGLU",
          lesson=LESSON)
def _param_counts(answer, c: Checker) -> None:
    from tfcore.complexity import attention_params, mlp_params

    cases = [
        (768, 12, 3072, "gelu", True),
        (768, 12, 3072, "gelu", False),
        (768, 12, 2048, "swiglu", False),
        (10, 5, 7, "gelu", True),
        (24, 4, 64, "swiglu", True),
        (4096, 32, 11008, "swiglu", False),
        (6, 1, 24, "gelu", True),
    ]
    for d, h, f, kind, bias in cases:
        case = f"d_model={d}, n_heads={h}, d_ff={f}, mlp={kind!r}, bias={bias}"
        attn, mlp = attention_params(d, h, None, bias), mlp_params(d, f, kind, bias)
        out = c.call(answer, d, h, f, kind, bias, case=case)
        a_out, m_out = _pair(out, c, case)
        if attn != mlp and _as_int(a_out) == mlp and _as_int(m_out) == attn:
            c.fail(f"the two numbers are swapped on {case}: return (attention, mlp)")
        d_head = d // h
        c.number(a_out, attn, case + " (attention)", integer=True, wrong=[
            ("attention has four matrices, W_Q, W_K, W_V and the output projection W_O: 4 d_model^2 weights",
             lambda: 3 * d * d + (3 * d if bias else 0)),
            ("the attention count does not depend on n_heads: h heads of d_head = d_model / h columns each "
             "fill whole d_model x d_model matrices", lambda: 4 * d * d_head + (4 * d_head if bias else 0)),
            ("the attention count does not depend on n_heads: h heads of d_head = d_model / h columns each "
             "fill whole d_model x d_model matrices", lambda: 4 * d * d * h + (4 * d * h if bias else 0)),
        ] + ([("forgot the attention biases: with bias=True each of the four projections has d_model",
                lambda: 4 * d * d)] if bias else
              [("counted attention biases although bias=False", lambda: 4 * d * d + 4 * d)]))
        c.number(m_out, mlp, case + " (mlp)", integer=True, wrong=_mlp_count_mistakes(d, f, kind, bias))


def _mlp_count_mistakes(d: int, f: int, kind: str, bias: bool) -> list:
    """(hint, variant) pairs of plausible wrong MLP counts for one case."""
    n_mat = 3 if kind == "swiglu" else 2
    wrong = []
    if kind == "swiglu":
        three = "SwiGLU has three matrices (gate W1, up W3, down W2): 3 d_model d_ff weights"
        wrong += [(three, lambda: 2 * d * f + ((f + d) if bias else 0)),
                  (three, lambda: 2 * d * f + ((2 * f + d) if bias else 0))]
    else:
        two = "the GELU MLP has two matrices (W1, W2), not three: 2 d_model d_ff weights"
        wrong += [(two, lambda: 3 * d * f + ((2 * f + d) if bias else 0)),
                  (two, lambda: 3 * d * f + ((f + d) if bias else 0))]
    if bias:
        wrong += [
            ("forgot the MLP biases: d_ff for each matrix into the hidden layer, d_model for the one out of it",
             lambda: n_mat * d * f),
            ("the MLP biases: W1 has d_ff outputs and W2 has d_model; you swapped them",
             lambda: n_mat * d * f + (n_mat - 1) * d + f),
            ("the MLP biases: d_ff after W1 (and after W3 for SwiGLU), d_model after W2; not d_model each",
             lambda: n_mat * d * f + n_mat * d),
        ]
        if kind == "swiglu":
            wrong.append(("SwiGLU's up projection W3 has a bias too (d_ff): gate and up each have d_ff, down has "
                          "d_model", lambda: 3 * d * f + f + d))
    else:
        wrong.append(("counted MLP biases although bias=False", lambda: n_mat * d * f + (n_mat - 1) * f + d))
    if f != 4 * d:
        eight = "used 8 d_model^2 (the count at d_ff = 4 d_model) instead of the given d_ff"
        wrong += [(eight, lambda: 8 * d * d + (5 * d if bias else 0)), (eight, lambda: 8 * d * d + (f + d if bias else 0))]
    return wrong


def _as_int(v):
    try:
        return int(v) if float(v) == int(v) else None
    except (TypeError, ValueError, OverflowError):
        return None


# ----------------------------------------------------------------------------- mlp.token_independence


class _TokenFunction(torch.nn.Module):
    """The functions x (B, T, d=8) -> (B, T, d_out) of mlp.token_independence, one per ``kind``.

    A module (not a closure) so that the grader can rebuild it in the learner's kernel, where a
    learner's check may differentiate through it; every kind holds the same seeded parts.
    """

    def __init__(self, kind: str, d: int = 8) -> None:
        from tfcore.heads import MultiHeadAttention
        from tfcore.mlp import MLP

        super().__init__()
        self.kind = kind
        with torch.random.fork_rng(devices=[]):  # the learner's global RNG is left as it was
            torch.manual_seed(4)
            self.mlp = MLP(d, 4 * d)
            self.narrow = torch.nn.Linear(d, 5)
            self.attn = MultiHeadAttention(d, 2)
            self.norm = torch.nn.LayerNorm(d)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mlp, attn, norm = self.mlp, self.attn, self.norm
        if self.kind in ("MLP", "MLP, B=3"):
            return mlp(x)
        if self.kind in ("attention", "attention, T=1"):
            return attn(x)
        if self.kind == "causal attention":
            return attn(x, is_causal=True)
        if self.kind == "LayerNorm":
            return norm(x)
        if self.kind == "attention after LayerNorm":
            return attn(norm(x))
        if self.kind == "shift from next":  # output t reads token t + 1 (no wrap-around): only earlier outputs change
            y = mlp(x)
            return torch.cat((y[:, :-1] + 0.5 * x[:, 1:], y[:, -1:]), dim=1)
        if self.kind == "last into first":  # only output 0 reads the last token
            y = mlp(x)
            return torch.cat((y[:, :1] + 0.5 * x[:, -1:], y[:, 1:]), dim=1)
        if self.kind == "weak":  # every output reads its left neighbour with weight 1e-4
            return mlp(x) + 1e-4 * x.roll(1, dims=1)
        if self.kind == "narrow":
            return self.narrow(x)
        raise ValueError(f"unknown kind {self.kind!r}")


def _token_functions(c: Checker) -> dict:
    """{name: (f, x, mixes)}: token-wise and token-mixing functions of x (B, T, d) -> (B, T, d_out)."""
    d = 8
    shapes = {"MLP": ((2, 6, d), False), "attention": ((2, 6, d), True), "causal attention": ((1, 7, d), True),
              "LayerNorm": ((2, 5, d), False), "attention after LayerNorm": ((2, 5, d), True),
              "shift from next": ((2, 6, d), True), "last into first": ((2, 6, d), True), "weak": ((2, 6, d), True),
              "MLP, B=3": ((3, 4, d), False), "narrow": ((2, 5, d), False), "attention, T=1": ((2, 1, d), False)}
    return {name: (c.share(_TokenFunction(name), _TokenFunction, name), c.randn(*shape), mixes)
            for name, (shape, mixes) in shapes.items()}


_TOKEN_CASES = {
    "MLP": ("a position-wise MLP", "you said a position-wise MLP mixes tokens: output t changes when token t "
            "changes, of course; only the outputs at the other positions s != t count"),
    "attention": ("bidirectional self-attention", "missed bidirectional self-attention: change one token, run f "
                  "again and compare the outputs at every other position"),
    "causal attention": ("causal self-attention", "missed causal self-attention: after changing token t, compare "
                         "the outputs at the positions after t too"),
    "LayerNorm": ("a LayerNorm over the channels", "you said a LayerNorm mixes tokens: it normalises each token "
                  "over its own channels; only changes at positions s != t count"),
    "attention after LayerNorm": ("attention after a LayerNorm", "missed attention after a LayerNorm: a LayerNorm "
                                  "removes a constant shift (or a rescaling) of a token, so perturb it with a random "
                                  "vector, not by adding a constant or multiplying"),
    "shift from next": ("a function whose output t reads token t + 1", "missed a function whose output t reads token "
                        "t + 1: perturb every position (not only the first), and compare every other output, the "
                        "earlier ones included"),
    "last into first": ("a function whose first output reads the last token", "missed a function whose first "
                        "output reads the last token: perturb every position, the last one included"),
    "weak": ("a function mixing neighbours with weight 1e-4", "missed a weak mixing (weight 1e-4): perturb by "
             "about 1 and use a tight tolerance (1e-6 or exact): float noise does not move other positions of a "
             "token-wise function"),
    "MLP, B=3": ("a position-wise MLP on a batch of 3", "you said a position-wise MLP mixes tokens on a batch of 3: "
                 "change token t in every sequence and compare only positions s != t"),
    "narrow": ("a token-wise Linear(8, 5) (output has 5 channels)", "you said a token-wise Linear(8, 5) mixes tokens: "
               "the output may have another channel count than the input"),
    "attention, T=1": ("self-attention on sequences of one token", "with one token per sequence there is nothing to "
                       "mix: return False when T = 1"),
}


@exercise("mlp.token_independence", "mixes_tokens(f, x) -> bool: does some output position depend on another input "
          "position?", lesson=LESSON)
def _token_independence(answer, c: Checker) -> None:
    for name, (f, x, mixes) in _token_functions(c).items():
        description, hint = _TOKEN_CASES[name]
        case = f"{description}, x {tuple(x.shape)}"
        out = c.call(answer, f, x, case=case)
        c.cases += 1
        if c.boolean(out, case, "True (f mixes tokens) or False (it does not)") != mixes:
            c.fail(hint)


# ----------------------------------------------------------------------------- predictions (lesson notebook)

from tfcore.grading.predictions import predict_choice, predict_integer, predict_number  # noqa: E402


def _gpt2_mlp_share() -> float:
    """Percent of GPT-2 small's parameters in its 12 MLPs, as lesson 04's section 4 counts them."""
    from tfcore.complexity import mlp_params, parameter_count
    from tfcore.model import gpt2_config

    cfg = gpt2_config()
    return 100 * cfg.n_layers * mlp_params(cfg.d_model, cfg.d_ff) / parameter_count(cfg)["total"]


predict_number(
    "mlp.predict_gpt2_mlp_share",
    "What percentage of all of GPT-2 small's parameters (124.5 M, embeddings included) sit in its 12 MLPs?",
    lesson=LESSON, answer=_gpt2_mlp_share, abs=6.0, unit=" %", fraction_of_percent=True,
    mistakes={200 / 3: "two thirds is the MLP's share inside a block: the embedding holds almost a third of the model"},
    why="inside a block the MLP holds 8d^2 of the 12d^2 weights, two thirds. But the model is more than its "
        "blocks: the token embedding (50,304 x 768 = 38.6 M, shared with the unembedding) is almost a third of "
        "the whole, so the MLPs' 56.7 M are about 2/3 of the remaining 68 %, 45 %.",
    hint="two thirds of each block, but how much of the model is not in the blocks at all? (vocabulary x d_model)",
)

predict_integer(
    "mlp.predict_causal_changes",
    "Token 3 of an 8-token sequence (positions 0-7) is changed. How many of causal self-attention's 8 output "
    "positions change?",
    lesson=LESSON, answer=5,
    mistakes={4: "4 leaves out output 3 itself: a position reads its own token", 3: "3 counts outputs 0-2, which "
              "cannot see token 3", 8: "8 is attention without a causal mask", 1: "1 is the MLP, which reads only its "
              "own position"},
    why="under a causal mask output t reads tokens 0..t. Token 3 is read by outputs 3, 4, 5, 6 and 7, so five "
        "outputs move; outputs 0, 1 and 2 cannot see it. The MLP would change only output 3, and attention "
        "without a mask all 8.",
    hint="which outputs may read token 3 when output t sees tokens 0..t only?",
)

predict_choice(
    "mlp.predict_unit_promotes",
    "Unit 265 of block 3 of the Shakespeare model fires most at positions whose text ends in 'daughte'. Which "
    "character does its value vector raise most in the logits?",
    lesson=LESSON, options={"A": "r", "B": "e", "C": "a space", "D": "a newline"}, answer="A",
    why="the key detects the context and the value writes a prediction for the next character. After "
        "'daughte' the text continues with 'r' (daughter), so a unit that fires there is useful if its value "
        "raises 'r': it does (+0.46, the largest entry of its row). 'e' is the character it has just read, "
        "not the one to predict.",
    hint="the model's output at a position predicts the next character: what comes after 'daughte'?",
)
