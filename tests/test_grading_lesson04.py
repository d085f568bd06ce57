"""Tests-for-tests of lesson 04's checks (mlp.*): see tests/test_grading.py."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from test_grading import Entry, case_params, run_case


def swiglu(x, w1, w2, w3):
    return (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T


def swiglu_linear(x, w1, w2, w3):
    return F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)


def swiglu_einsum(x, w1, w2, w3):
    gate = torch.einsum("...i,fi->...f", x, w1)
    up = torch.einsum("...i,fi->...f", x, w3)
    return torch.einsum("...f,df->...d", gate * torch.sigmoid(gate) * up, w2)


# ----------------------------------------------------------------------------- mlp.ffn


def ffn(x, w1, b1, w2, b2):
    return F.gelu(x @ w1.T + b1) @ w2.T + b2


def ffn_linear(x, w1, b1, w2, b2):
    return F.linear(F.gelu(F.linear(x, w1, b1), approximate="none"), w2, b2)


def ffn_erf(x, w1, b1, w2, b2):
    h = torch.einsum("...i,fi->...f", x, w1) + b1
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
    return torch.einsum("...f,df->...d", h, w2) + b2


# ----------------------------------------------------------------------------- mlp.param_counts


def param_counts(d_model, n_heads, d_ff, mlp="gelu", bias=True):
    attention = 4 * d_model * d_model + (4 * d_model if bias else 0)
    n_mat = 3 if mlp == "swiglu" else 2
    mlp_count = n_mat * d_model * d_ff + ((n_mat - 1) * d_ff + d_model if bias else 0)
    return attention, mlp_count


def param_counts_modules(d_model, n_heads, d_ff, mlp="gelu", bias=True):
    from tfcore.heads import MultiHeadAttention
    from tfcore.mlp import make_mlp

    with torch.device("meta"):  # shapes only, no memory
        attn = MultiHeadAttention(d_model, n_heads, bias=bias)
        ff = make_mlp(mlp, d_model, d_ff, bias=bias)
    return (sum(p.numel() for p in attn.parameters()), sum(p.numel() for p in ff.parameters()))


# ----------------------------------------------------------------------------- mlp.token_independence


def mixes_tokens(f, x):
    with torch.no_grad():
        base = f(x)
        t = x.shape[1]
        for s in range(t):
            x2 = x.clone()
            x2[:, s] += torch.randn(x.shape[0], x.shape[2])
            moved = (f(x2) - base).abs() > 1e-7
            moved[:, s] = False
            if moved.any():
                return True
    return False


def mixes_tokens_jacobian(f, x):
    jac = torch.autograd.functional.jacobian(f, x)  # (B, T, d_out, B, T, d_in)
    norms = jac.abs().sum(dim=(0, 2, 3, 5))  # (T, T): output position, input position
    return bool((norms - torch.diag(norms.diagonal())).max() > 0)


def _mixes_with(positions=None, compare=None, delta=None, atol=1e-7):
    """mixes_tokens with one thing changed, for the wrong answers."""
    def mixes(f, x):
        with torch.no_grad():
            base = f(x)
            t = x.shape[1]
            for s in (positions(t) if positions else range(t)):
                x2 = x.clone()
                x2[:, s] = delta(x2[:, s]) if delta else x2[:, s] + torch.randn(x.shape[0], x.shape[2])
                moved = (f(x2) - base).abs() > atol
                keep = compare(s, t) if compare else [r for r in range(t) if r != s]
                if moved[:, keep].any():
                    return True
        return False

    return mixes


def mixes_in_place(f, x):
    base = f(x).detach()
    x[:, 0] += 1.0
    return bool(((f(x).detach() - base).abs() > 1e-7)[:, 1:].any())


CASES = {
    "mlp.swiglu": Entry(
        solution=swiglu,
        styles={"F.linear": swiglu_linear, "einsum": swiglu_einsum},
        wrong={
            "gate_on_w3": (lambda x, w1, w2, w3: (F.silu(x @ w3.T) * (x @ w1.T)) @ w2.T, "the gate is W1"),
            "sigmoid": (lambda x, w1, w2, w3: (torch.sigmoid(x @ w1.T) * (x @ w3.T)) @ w2.T, "sigmoid instead of silu"),
            "relu": (lambda x, w1, w2, w3: (torch.relu(x @ w1.T) * (x @ w3.T)) @ w2.T, "ReLU instead of SiLU"),
            "untransposed": (lambda x, w1, w2, w3: (F.silu(x @ w1) * (x @ w3)) @ w2, "nn.Linear layout"),
            "silu_of_product": (lambda x, w1, w2, w3: F.silu((x @ w1.T) * (x @ w3.T)) @ w2.T, "silu to the product"),
            "no_down": (lambda x, w1, w2, w3: F.silu(x @ w1.T) * (x @ w3.T), "forgot the down projection"),
        },
    ),

    "mlp.ffn": Entry(
        solution=ffn,
        styles={"F.linear": ffn_linear, "erf_einsum": ffn_erf},
        wrong={
            "tanh": (lambda x, w1, b1, w2, b2: F.gelu(x @ w1.T + b1, approximate="tanh") @ w2.T + b2, "tanh approximation"),
            "relu": (lambda x, w1, b1, w2, b2: torch.relu(x @ w1.T + b1) @ w2.T + b2, "ReLU instead of GELU"),
            "no_b1": (lambda x, w1, b1, w2, b2: F.gelu(x @ w1.T) @ w2.T + b2, "forgot b1"),
            "b1_outside": (lambda x, w1, b1, w2, b2: (F.gelu(x @ w1.T) + b1) @ w2.T + b2, "b1 goes inside"),
            "untransposed": (lambda x, w1, b1, w2, b2: F.gelu(x @ w1 + b1) @ w2 + b2, "nn.Linear layout"),
            "no_activation": (lambda x, w1, b1, w2, b2: (x @ w1.T + b1) @ w2.T + b2, "forgot the activation"),
            "gelu_on_output": (lambda x, w1, b1, w2, b2: F.gelu((x @ w1.T + b1) @ w2.T + b2), "instead of the hidden"),
        },
    ),
    "mlp.param_counts": Entry(
        solution=param_counts,
        styles={"modules": param_counts_modules, "list": lambda *a: list(param_counts(*a))},
        wrong={
            "swapped": (lambda *a: param_counts(*a)[::-1], "swapped"),
            "no_w_o": (lambda d, h, f, m="gelu", b=True: (3 * d * d + (3 * d if b else 0), param_counts(d, h, f, m, b)[1]),
                       "four matrices"),
            "per_head": (lambda d, h, f, m="gelu", b=True: (4 * d * (d // h) + (4 * (d // h) if b else 0),
                                                            param_counts(d, h, f, m, b)[1]), "does not depend on n_heads"),
            "swiglu_two": (lambda d, h, f, m="gelu", b=True: param_counts(d, h, f, "gelu", b), "three matrices"),
            "no_biases": (lambda d, h, f, m="gelu", b=True: param_counts(d, h, f, m, False), "forgot the attention biases"),
            "mlp_no_biases": (lambda d, h, f, m="gelu", b=True: (param_counts(d, h, f, m, b)[0], param_counts(d, h, f, m, False)[1]),
                              "forgot the MLP biases"),
            "eight_d2": (lambda d, h, f, m="gelu", b=True: (param_counts(d, h, f, m, b)[0], 8 * d * d + (5 * d if b else 0)),
                         "8 d_model^2"),
            "floats": (lambda *a: tuple(float(v) for v in param_counts(*a)), "return an int"),
            "one_number": (lambda *a: sum(param_counts(*a)), "return two numbers"),
        },
    ),
    "mlp.token_independence": Entry(
        solution=mixes_tokens,
        styles={"jacobian": mixes_tokens_jacobian, "tensor_result": lambda f, x: torch.tensor(mixes_tokens(f, x))},
        wrong={
            "always_true": (lambda f, x: True, "position-wise MLP mixes tokens"),
            "always_false": (lambda f, x: False, "missed bidirectional self-attention"),
            "compares_own": (_mixes_with(compare=lambda s, t: list(range(t))), "position-wise MLP mixes tokens"),
            "first_only": (_mixes_with(positions=lambda t: [0]), "reads token t + 1"),
            "later_only": (_mixes_with(compare=lambda s, t: list(range(s + 1, t))), "reads token t + 1"),
            "skips_last": (_mixes_with(positions=lambda t: range(t - 1)), "the last one included"),
            "constant_shift_loose": (_mixes_with(delta=lambda col: col + 1.0, atol=1e-4), "removes a constant shift"),
            "loose": (_mixes_with(atol=1e-2), "weak mixing"),
            "in_place": (mixes_in_place, "in place"),
            "bool_tensor": (lambda f, x: torch.zeros(x.shape[1], dtype=torch.bool), "return one True or False"),
        },
    ),
}


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson04_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)


# ----------------------------------------------------------------------------- predictions (see tests/test_grading_predictions.py)

PREDICTION_CASES = {
    "mlp.predict_gpt2_mlp_share": ([45.5, 46, 40, 51, 100 * 2 / 3 * 0.69], [66.7, 2 / 3 * 100, 33.3, 80, 25],
                                   "about 2/3 of the remaining 68 %", "45.53 %"),
    "mlp.predict_causal_changes": ([5, 5.0, 8 - 3], [1, 8, 4, 3, 6], "outputs 3, 4, 5, 6 and 7", "the value is 5"),
    "mlp.predict_unit_promotes": (["A", "a", "(A)", "r", " R "], ["B", "e", "C", "a space", "d", "a newline"],
                                  "continues with 'r' (daughter)", "(A) r"),
}
