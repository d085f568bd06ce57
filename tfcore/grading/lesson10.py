"""Checks for lesson 10 (diagnostics): ``diagnostics.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson10.py``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from tfcore.attention import scaled_dot_product_attention, softmax
from tfcore.diagnostics import ATTENTION_BUGS, attention_entropy, mystery_model
from tfcore.grading import Checker, exercise
from tfcore.heads import MultiHeadAttention
from tfcore.masks import causal_mask

LESSON = "10_diagnostics"


# ----------------------------------------------------------------------------- diagnostics.attention_entropy


@exercise("diagnostics.attention_entropy", "entropy of each attention row, natural log, 0 log 0 = 0", lesson=LESSON)
def _attention_entropy(answer, c: Checker) -> None:
    _, causal = scaled_dot_product_attention(*(c.randn(4, 3) for _ in range(3)), is_causal=True, return_weights=True)
    cases = [
        ("random weights (2, 3, 5, 7)", softmax(c.randn(2, 3, 5, 7, scale=2.0))),
        ("uniform rows (2, 4, 4): entropy log 4", torch.full((2, 4, 4), 0.25)),
        ("one-hot rows (the identity, 3 x 3): entropy 0", torch.eye(3)),
        ("causal weights (4, 4), zeros above the diagonal", causal),
        ("T_q=3, T_k=6", softmax(c.randn(3, 6))),
        ("a transposed (non-contiguous) view (2, 4, 5)", softmax(c.randn(2, 5, 4), dim=1).transpose(1, 2)),
    ]
    for case, w in cases:
        ref = attention_entropy(w)
        out = c.call(answer, w, case=case)
        plogp = torch.where(w > 0, w * w.log(), torch.zeros_like(w))
        c.compare(out, ref, case, atol=1e-5, rtol=1e-4, wrong=[
            ("log base 2 instead of natural log", lambda: ref / math.log(2)),
            ("forgot the minus sign: H = -sum a log a is >= 0", lambda: -ref),
            ("summed over the wrong axis: sum over the keys (the last axis)", lambda: -plogp.sum(-2)),
            ("averaged over the keys instead of summing", lambda: -plogp.mean(-1)),
            ("divided by log T_k: return the entropy itself (compare with log T_k separately)",
             lambda: ref / math.log(w.shape[-1]) if w.shape[-1] > 1 else None),
            ("summed over both axes: return one entropy per query row, shape (..., T_q)", lambda: -plogp.sum((-2, -1))),
        ], nonfinite="NaN where a weight is 0: define 0 log 0 = 0 (torch.where, or torch.special.xlogy)")


# ----------------------------------------------------------------------------- models for the checks below


def _tiny_model(seed: int, **overrides):
    """A tiny tfcore model built from its own seed (the learner's global RNG is left untouched)."""
    from tfcore.model import Transformer, TransformerConfig

    base = dict(vocab_size=11, d_model=16, n_layers=2, n_heads=2, max_seq_len=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Transformer(TransformerConfig(**{**base, **overrides})).eval()
        with torch.no_grad():  # non-zero biases and norm shifts, so that every part of a block matters
            for name, p in model.named_parameters():
                if name.endswith("bias") or "norm" in name:
                    p.add_(0.1 * torch.randn_like(p))
    return model


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(now: dict, state: dict) -> bool:
    """``now`` (a state dict, e.g. ``c.state_dict(model)`` after the learner's call) equals ``state``."""
    return all(torch.equal(v, state[k]) for k, v in now.items())


# ----------------------------------------------------------------------------- diagnostics.residual_norms


def _block_io(model, tokens):
    """[(block input, block output)] for every block, in order, from one forward pass."""
    from tfcore.diagnostics import _blocks

    pairs = []
    handles = [b.register_forward_hook(lambda m, a, out: pairs.append((a[0].detach(), out.detach())))
               for b in _blocks(model).values()]
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        for h in handles:
            h.remove()
    return pairs


@exercise("diagnostics.residual_norms", "forward hooks measuring ||F_l(x_l)|| / ||x_l|| for every block",
          lesson=LESSON)
def _residual_norms(answer, c: Checker) -> None:
    from tfcore.diagnostics import residual_norms

    cases = [
        ("a 2-layer Pre-LN decoder, tokens (2, 7)", dict(), (2, 7)),
        ("a 3-layer Post-LN decoder, tokens (3, 5)", dict(n_layers=3, placement="post"), (3, 5)),
        ("a 2-layer encoder (blocks in model.encoder), tokens (2, 6)", dict(architecture="encoder"), (2, 6)),
        ("a 1-layer parallel-block decoder, tokens (1, 1)", dict(n_layers=1, placement="parallel"), (1, 1)),
    ]
    for seed, (case, overrides, shape) in enumerate(cases):
        model = c.share(_tiny_model(seed, **overrides), _tiny_model, seed, **overrides)  # hooks need a real model
        tokens = torch.randint(0, 11, shape, generator=c.gen)
        state = _state(model)
        ref = torch.tensor(list(residual_norms(model, tokens).values()))
        out = c.call(answer, model, tokens, case=case, hint="the signature is residual_norms(model, tokens)")
        if c.hook_count(model):
            c.fail(f"hooks are still registered on the model after {c.name} returned ({case}): keep the handles "
                   "that register_forward_hook returns and call handle.remove() on each (in a finally: block)")
        if not _same_state(c.state_dict(model), state):
            c.fail(f"{c.name} changed the model's weights on {case}: only measure, under torch.no_grad()")
        pairs = _block_io(model, tokens)

        def ratio(f):
            return torch.tensor([float(f(x, y)) for x, y in pairs])

        def per_token():
            return torch.tensor([float(((y - x).norm(dim=-1) / x.norm(dim=-1)).mean()) for x, y in pairs])

        c.compare(out, ref, case, dtype="float", atol=1e-5, rtol=1e-4, wrong=[
            ("divided the norms of the block's output and input: the update is F_l(x) = block(x) - x, "
             "measure ||block(x) - x|| / ||x||", lambda: ratio(lambda x, y: y.norm() / x.norm())),
            ("the ratio is inverted: ||F_l(x_l)|| / ||x_l||, the update over the stream",
             lambda: ratio(lambda x, y: x.norm() / (y - x).norm())),
            ("divide by the norm of the block's input x_l, not of its output",
             lambda: ratio(lambda x, y: (y - x).norm() / y.norm())),
            ("took the mean of per-token ratios: use the norms over the whole batch (all of B, T and d_model)",
             per_token),
            ("listed the blocks in reverse order: block 0 first", lambda: ref.flip(0)),
            ("returned the norm of the update alone: divide it by ||x_l||", lambda: ratio(lambda x, y: (y - x).norm())),
        ], shape_hints={(2 * len(ref),): "one ratio per block, not one per sublayer (attention and MLP)"})


# ----------------------------------------------------------------------------- diagnostics.find_bug

BUGS = ATTENTION_BUGS  # "mask direction", "softmax axis", "missing scale"
_BUG_ALIASES = {
    "mask direction": "mask direction", "wrong mask direction": "mask direction", "mask": "mask direction",
    "transposed mask": "mask direction", "softmax axis": "softmax axis", "wrong softmax axis": "softmax axis",
    "softmax over the wrong axis": "softmax axis", "softmax": "softmax axis", "missing scale": "missing scale",
    "no scale": "missing scale", "scale": "missing scale",
}
_FIND_BUG_MODELS = 6  # each bug twice, in an order drawn from the check's generator
# What tells the true bug apart from the one the learner named: {(true bug, named bug): clue}.
_BUG_CLUES = {
    ("softmax axis", "mask direction"): "both bugs make the model leak; tell them apart by the captured attention: "
                                        "do its rows sum to 1 over the keys? (or: do outputs still depend on "
                                        "earlier tokens, as with a softmax over the queries?)",
    ("softmax axis", "missing scale"): "it fails the leakage test and its attention rows do not sum to 1 over the "
                                       "keys: run the leakage test, then sum the captured rows over the last axis",
    ("mask direction", "softmax axis"): "its attention rows do sum to 1 over the keys, yet it leaks: a transposed "
                                        "mask shows each query the keys at and after it",
    ("mask direction", "missing scale"): "it fails the leakage test (outputs move when a later token changes): "
                                         "run leakage_test on it",
    ("missing scale", "mask direction"): "it passes the leakage test: no output moves when a later token changes",
    ("missing scale", "softmax axis"): "its attention rows sum to 1 over the keys and it passes the leakage test; "
                                       "only its sharper attention (lower entropy) betrays it",
}


def _bug_name(text: str) -> str | None:
    key = " ".join(text.lower().replace("_", " ").replace("-", " ").split())
    return _BUG_ALIASES.get(key)


def _choice(c: Checker, out, case: str, choices: tuple[str, ...]) -> str | None:
    """The learner's string ``out`` read as one of ``choices`` (aliases allowed), or a failure naming the choices."""
    bug = _bug_name(c.text(out, case, f"one of the strings {list(choices)}"))
    if bug is None:
        c.fail(f"{c.name} returned the string {_clip(out)!r} on {case}, which is not one of the bug names "
               f"{list(choices)}")
    return bug


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@exercise("diagnostics.find_bug", "find_bug(model): name the attention bug of a broken decoder (mask direction, "
          "softmax axis or missing scale)", lesson=LESSON)
def _find_bug(answer, c: Checker) -> None:
    bugs = [BUGS[int(i) % len(BUGS)] for i in torch.randperm(_FIND_BUG_MODELS, generator=c.gen)]
    seeds = torch.randint(2**62, (_FIND_BUG_MODELS,), generator=c.gen).tolist()
    verdicts = []
    for n, (bug, seed) in enumerate(zip(bugs, seeds), start=1):
        case = f"mystery model {n} of {_FIND_BUG_MODELS}"
        out = c.call(answer, mystery_model(bug, seed), case=case, hint="the signature is find_bug(model) -> str")
        verdicts.append(_choice(c, out, case, BUGS))
        c.cases += 1
    right = sum(v == b for v, b in zip(verdicts, bugs))
    if right == len(bugs):
        return
    if len(set(verdicts)) == 1:
        c.fail(f"{c.name} named {verdicts[0]!r} for all {len(bugs)} models, but each of the three bugs was among "
               "them: measure each model (leakage test, row sums of the captured attention) and decide from that")
    # the first mistake in the order of BUGS, not of the drawn models: the same confusion gets the same clue
    # whatever the (secret) order
    n, truth, said = min(((n, b, v) for n, (b, v) in enumerate(zip(bugs, verdicts), start=1) if b != v),
                         key=lambda m: (BUGS.index(m[1]), m[0]))
    c.fail(f"{right} of {len(bugs)} right. Mystery model {n} has the {truth!r} bug, not {said!r}: "
           + _BUG_CLUES[(truth, said)])


# ----------------------------------------------------------------------------- diagnostics.checklist


class _SoftmaxOverQueries(MultiHeadAttention):
    """Self-attention whose softmax normalises each column (over the queries) instead of each row."""

    def forward(self, x, source=None, mask=None, is_causal=False, cache=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.d_head).transpose(1, 2)
        k, v = self._keys_values(x, None)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)
        if is_causal:
            scores = scores.masked_fill(~causal_mask(t, device=x.device), float("-inf"))
        weights = softmax(scores, dim=-2)  # the bug: dim=-2 instead of -1
        if self.capture_weights:
            self.last_weights = weights.detach()
        return self.out_proj((weights @ v).transpose(1, 2).reshape(b, t, -1))


def _drop_causal(module, args, kwargs):
    return args, {**kwargs, "is_causal": False}


def _sharp_model(seed: int):
    """A 1-layer tiny decoder whose W_Q, W_K have the usual 1/sqrt(d_model) scale: scores of order 1, so that
    the attention pattern (and any bug in it) visibly moves the output."""
    model = _tiny_model(seed, n_layers=1)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for m in model.attention_layers().values():
            for proj in (m.q_proj, m.k_proj):
                proj.weight.normal_(0.0, 1.0 / math.sqrt(proj.in_features))
    return model


def _checklist_model(kind: str):
    """One model of the checklist exercise: "healthy", "leaky", "columns", "loud" or "dead" (also the kernel's
    builder in the grader: hooks and the swapped attention class come from here)."""
    seed = {"healthy": 10, "leaky": 11, "columns": 12, "loud": 13, "dead": 14}[kind]
    model = _sharp_model(seed)
    if kind == "leaky":
        for m in model.attention_layers().values():
            m.register_forward_pre_hook(_drop_causal, with_kwargs=True)
    if kind == "columns":
        for m in model.attention_layers().values():
            m.__class__ = _SoftmaxOverQueries
    with torch.no_grad():
        if kind == "loud":
            model.final_norm.weight.mul_(100.0)
        if kind == "dead":
            model.final_norm.weight.zero_()
            model.final_norm.bias.zero_()
    if kind == "dead":
        model.final_norm.requires_grad_(False)
    return model


def _checklist_models():
    """(description, model kind, steps, {field: expected}) for the checklist exercise."""
    return [
        ("a healthy decoder", "healthy", 10,
         dict(loss_at_chance=True, causal=True, rows_sum_to_one=True, overfits=True)),
        ("a decoder whose attention ignores the causal mask", "leaky", 1,
         dict(loss_at_chance=True, causal=False, rows_sum_to_one=True)),
        ("a decoder whose softmax normalises over the queries", "columns", 1,
         dict(causal=False, rows_sum_to_one=False)),
        ("a decoder whose logits are 100 times too large", "loud", 1,
         dict(loss_at_chance=False, causal=True, rows_sum_to_one=True)),
        ("a decoder whose final LayerNorm is frozen at gain 0 (constant output)", "dead", 10,
         dict(loss_at_chance=True, causal=True, rows_sum_to_one=True, overfits=False)),
    ]


_FLAG_HINTS = {
    "loss_at_chance": "True when |initial_loss - ln(vocab_size)| < 0.5 (natural log)",
    "causal": "change token j and compare only the outputs at positions i < j (token j may move its own output "
              "and later ones), for every j",
    "rows_sum_to_one": "capture the weights with capture_attention and sum each row over the keys (the last axis)",
    "overfits": "train a copy.deepcopy of the model for `steps` Adam steps (lr 3e-2) on the tokens, then compare "
                "its loss with 0.5 x initial_loss",
}
CHECKLIST_KEYS = ("initial_loss", "loss_at_chance", "causal", "rows_sum_to_one", "grad_norm", "overfits")


def _flag(value, key: str, case: str, c: Checker) -> bool:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype == torch.bool:
        return bool(value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    c.fail(f"result[{key!r}] is a {c.type_name(value)} on {case}: return True or False")
    raise AssertionError


@exercise("diagnostics.checklist", "a debugging checklist function: loss vs ln V, causality, rows, gradients, "
          "overfitting", lesson=LESSON)
def _checklist(answer, c: Checker) -> None:
    from tfcore.diagnostics import gradient_norms
    from tfcore.losses import lm_loss

    for case, kind, steps, expected in _checklist_models():
        model = c.share(_checklist_model(kind), _checklist_model, kind)  # the learner deep-copies and trains it
        tokens = _checklist_tokens(c, model, steps, expected.get("overfits"))
        state, hooks = _state(model), _hook_count(model)
        with torch.no_grad():
            loss0 = lm_loss(model(tokens), tokens)
        grad = math.sqrt(sum(v * v for v in gradient_norms(model, lm_loss(model(tokens), tokens)).values())) \
            if any(p.requires_grad for p in model.parameters()) else 0.0
        out = c.call(answer, model, tokens, 11, steps=steps, case=case,
                     hint="the signature is checklist(model, tokens, vocab_size, steps=10)")
        if not isinstance(out, dict):
            if out is None:
                c.fail(f"{c.name} returned None on {case}: is the return statement missing?")
            c.fail(f"{c.name} returned a {c.type_name(out)} on {case}: return a dict with the keys "
                   f"{list(CHECKLIST_KEYS)}")
        missing = [k for k in CHECKLIST_KEYS if k not in out]
        if missing:
            c.fail(f"the result has no key(s) {missing} on {case}: return a dict with {list(CHECKLIST_KEYS)}")
        if c.hook_count(model) != hooks:
            c.fail(f"hooks are still registered on the model after {c.name} returned ({case}): remove them")
        if not _same_state(c.state_dict(model), state):
            c.fail(f"{c.name} changed the model's weights on {case}: overfit a copy (copy.deepcopy(model)), "
                   "never the model under test")
        c.number(out["initial_loss"], float(loss0), f"{case}: initial_loss", rtol=1e-4, atol=1e-5, wrong=[
            ("initial_loss: shift the targets: logits[:, :-1] predict tokens[:, 1:] (use tfcore.losses.lm_loss)",
             lambda: float(torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()))),
        ])
        c.number(out["grad_norm"], grad, f"{case}: grad_norm", rtol=1e-3, atol=1e-7, wrong=[
            ("grad_norm: the global norm is sqrt(sum of squared entries of every gradient), not the sum of the "
             "per-parameter norms", lambda: _sum_of_norms(model, tokens)),
        ])
        for key, want in expected.items():
            got = _flag(out[key], key, case, c)
            if got != want:
                c.fail(f"result[{key!r}] is {got} for {case}, expected {want}: {_FLAG_HINTS[key]}")
            c.cases += 1


OVERFIT_MARGIN = 0.1  # the reference's final / initial loss stays this far from the 0.5 of the recipe


def _checklist_tokens(c: Checker, model, steps: int, overfits: bool | None) -> torch.Tensor:
    """Random tokens (2, 6) from the check's generator. Where the case expects a verdict on overfitting, the first
    draw on which the recipe (Adam, lr 3e-2, ``steps`` steps on a copy) leaves final / initial loss clearly on the
    expected side of 0.5: below 0.4 for True, above 0.6 for False. On about one draw in six the healthy model ends
    between 0.4 and 0.5 after 10 steps (and on one in twenty above 0.5): there a correct answer's verdict would
    hang on the draw and on rounding, not on the learner's code."""
    from tfcore.diagnostics import overfit_batch
    from tfcore.losses import lm_loss

    for _ in range(32):
        tokens = torch.randint(0, 11, (2, 6), generator=c.gen)
        if overfits is None:
            return tokens
        losses = overfit_batch(model, lambda m: lm_loss(m(tokens), tokens), steps=steps, lr=3e-2)
        ratio = losses[-1] / losses[0]
        if (ratio < 0.5 - OVERFIT_MARGIN) if overfits else (ratio > 0.5 + OVERFIT_MARGIN):
            return tokens
    return tokens  # not reached in practice (32 draws that all land near 0.5)


def _sum_of_norms(model, tokens) -> float:
    from tfcore.losses import lm_loss

    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(lm_loss(model(tokens), tokens), params, allow_unused=True)
    return sum(float(g.norm()) for g in grads if g is not None)


# ----------------------------------------------------------------------------- predictions (lesson notebook)

from tfcore.grading.predictions import predict_choice, predict_number  # noqa: E402


def _causal_uniform_entropy() -> float:
    """Mean entropy (nats) of the 64 rows of a uniform causal attention: mean of log(i + 1) = log(64!) / 64."""
    return sum(math.log(i + 1) for i in range(64)) / 64


predict_number(
    "diagnostics.predict_causal_uniform_entropy",
    "Under a causal mask, a head that spreads every row evenly over the keys it sees, on T = 64 tokens: its "
    "entropy averaged over the 64 rows (without a mask: log 64 = 4.16)",
    lesson=LESSON, answer=_causal_uniform_entropy, abs=0.2, unit=" nats", at_least=(0, "an entropy is never negative"),
    mistakes={math.log(64): "log 64 is the last row's entropy (and every row's without the mask)", math.log(32.5):
              "log 32.5 is the log of the mean key count: the mean of the logs is lower", math.log(64) / 2: "half of "
              "log 64 is not it: the rows' logs are not spread linearly"},
    why="row i sees the i + 1 keys 0..i, so a uniform row there has entropy log(i + 1): 0 for row 0, log 2 for "
        "row 1, ..., log 64 only for the last row. The mean, log(64!) / 64 = 3.21 (about log 64 - 1 by "
        "Stirling), is the reference for a causal head; log 64 = 4.16 would make every causal head look about a "
        "nat sharper than it is. Averaging the key counts first (log 32.5 = 3.48) overestimates it: the mean "
        "of logs is below the log of the mean.",
    hint="row i sees i + 1 keys: what is the entropy of a uniform row over n keys, and what is the mean of that "
         "over the rows? (the log of the mean key count is not the mean of the logs)",
)

predict_choice(
    "diagnostics.predict_missing_scale",
    "Case study: which model has the missing 1/sqrt(d_head) scale?",
    lesson=LESSON,
    options={"A": "model A", "B": "model B", "C": "model C"},
    answer="B",
    why="a missing scale leaves the mask and the softmax axis alone, so the model passes every test of structure: "
        "no leak, rows that sum to 1, the checklist finds nothing. Only the size of the scores changes: 4 times "
        "too large (sqrt(16)), they sharpen every softmax, so B's mean H / H_uniform is the lowest (0.754 against "
        "the healthy 0.945), with a higher loss. A's rows do not sum to 1 (a softmax over the queries); C leaks "
        "while its rows sum to 1 and its entropy exceeds the causal reference (the mask turned over).",
    hint="which bugs change what a query may see, which one changes how rows are normalised, and which one only "
         "changes how large the scores are? Find the model whose structure tests all pass.",
)
