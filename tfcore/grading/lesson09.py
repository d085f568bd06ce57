"""Checks for lesson 09 (training signals): ``training.*``.

Each check is ``f(answer, c)`` registered with ``@exercise``; its tests-for-tests entry
lives in ``tests/test_grading_lesson09.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tfcore.grading import Checker, exercise
from tfcore.losses import lm_loss

LESSON = "09_training"


# ----------------------------------------------------------------------------- training.lm_loss


def _unlikely_target(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, tokens) with the first prediction's target the least likely token: with logits of about 1e4 its
    softmax probability underflows to 0, so log(softmax(...)) gives inf (if every target were the argmax, as on some
    draws, the loss would be 0 both ways and the naive formula would pass)."""
    tokens = tokens.clone()
    tokens[0, 1] = logits[0, 0].argmin()
    return logits, tokens


@exercise("training.lm_loss", "shifted LM loss: mean cross-entropy of tokens[:, 1:] given logits[:, :-1]",
          lesson=LESSON)
def _lm_loss(answer, c: Checker) -> None:
    def tokens(b, t, v):
        return torch.randint(0, v, (b, t), generator=c.gen)

    cases = [
        ("B=2, T=5, V=7", c.randn(2, 5, 7), tokens(2, 5, 7)),
        ("B=1, T=2, V=3 (one prediction)", c.randn(1, 2, 3), tokens(1, 2, 3)),
        ("B=3, T=11, V=13", c.randn(3, 11, 13, scale=2.0), tokens(3, 11, 13)),
        ("logits as a transposed (non-contiguous) view (2, 6, 7)", c.randn(2, 7, 6).transpose(1, 2), tokens(2, 6, 7)),
        ("large logits (about 1e4)", *_unlikely_target(c.randn(2, 4, 5, scale=1e4), tokens(2, 4, 5))),
    ]
    for case, logits, toks in cases:
        ref = lm_loss(logits, toks)
        b, t, v = logits.shape
        out = c.call(answer, logits, toks, case=case,
                     hint="logits[:, :-1] is not contiguous: flatten with .reshape, not .view")
        if isinstance(out, float):
            c.fail(f"{c.name} returned a Python float on {case}: return the 0-d tensor so that loss.backward() "
                   "works (drop .item())")
        flat = logits.reshape(-1, v)
        shifted = logits[:, :-1].reshape(-1, v)
        targets = toks[:, 1:].reshape(-1)
        per_token = F.cross_entropy(shifted, targets, reduction="none")
        c.compare(out, ref, case, dtype="float", atol=1e-5, rtol=1e-5, wrong=[
            ("did not shift: logits[:, :-1] predict tokens[:, 1:]", lambda: F.cross_entropy(flat, toks.reshape(-1))),
            ("shifted the wrong way: logits[:, :-1] predict tokens[:, 1:]",
             lambda: F.cross_entropy(logits[:, 1:].reshape(-1, v), toks[:, :-1].reshape(-1))),
            ("summed the losses: take the mean over the B * (T - 1) predictions", lambda: per_token.sum()),
            ("log base 2 instead of natural log", lambda: ref / math.log(2)),
            ("the loss is negative: cross-entropy is -log p(target)", lambda: -ref),
            ("used the raw logit of the target: take log_softmax over the vocabulary first",
             lambda: -shifted.gather(1, targets[:, None]).mean()),
            ("returned the per-token losses: take their mean", lambda: per_token),
            ("returned the per-token losses: take their mean", lambda: per_token.reshape(b, t - 1)),
            ("returned one loss per sequence: take the mean over every prediction",
             lambda: per_token.reshape(b, t - 1).mean(1)),
            ("return a 0-d tensor, not shape (1,)", lambda: ref.reshape(1)),
        ], nonfinite=("inf/NaN for large logits: use log_softmax or F.cross_entropy (log-sum-exp), "
                      "not log(softmax(...))" if "large" in case else None))

    logits = c.randn(2, 4, 5).requires_grad_(True)
    case = "logits that require grad"
    out = c.call(answer, logits, tokens(2, 4, 5), case=case)
    if not c.has_grad(out):
        c.fail(f"the loss is detached from the graph on {case}: build it with torch operations (no .item(), "
               "no NumPy) so that loss.backward() works")
    c.cases += 1


# ----------------------------------------------------------------------------- training.mlm_mask

_MLM_IGNORE = -100


def _fractions(tokens, inputs, targets, mask_id):
    """(chosen rate, and among chosen: fraction masked, random, unchanged)."""
    chosen = targets != _MLM_IGNORE
    n = max(int(chosen.sum()), 1)
    masked = chosen & (inputs == mask_id)
    same = chosen & (inputs == tokens)
    random = chosen & ~masked & ~same
    return (float(chosen.float().mean()), int(masked.sum()) / n, int(random.sum()) / n, int(same.sum()) / n)


@exercise("training.mlm_mask", "BERT corruption: choose 15% of tokens; 80% -> [MASK], 10% random, 10% kept; "
          "targets -100 elsewhere", lesson=LESSON)
def _mlm_mask(answer, c: Checker) -> None:
    v = 50  # ordinary ids 0..49; the mask id is 50 (random replacements come from 0..49)
    mask_id = v
    tokens = torch.randint(0, v, (200, 401), generator=c.gen)
    case = "tokens (200, 401), mask_id=50, vocab_size=50, p=0.15"

    def run(toks, p, seed, case):
        g = torch.Generator().manual_seed(seed)
        out = c.call(answer, toks, mask_id, v, p=p, generator=g, case=case,
                     hint="the signature is mlm_mask(tokens, mask_id, vocab_size, p=0.15, generator=None)")
        if not (isinstance(out, tuple) and len(out) == 2):
            c.fail(f"{c.name} returned a {c.type_name(out)} on {case}: return the tuple (inputs, targets)")
        inputs, targets = out
        for name, t in (("inputs", inputs), ("targets", targets)):
            if not isinstance(t, torch.Tensor):
                c.fail(f"{name} is a {c.type_name(t)} on {case}: return two tensors (inputs, targets)")
            if t.shape != toks.shape:
                c.fail(f"wrong shape of {name} on {case}: expected {tuple(toks.shape)}, got {tuple(t.shape)}")
            if t.dtype != toks.dtype:
                c.fail(f"wrong dtype of {name} on {case}: expected {toks.dtype} (token ids), got {t.dtype}")
        if (inputs == _MLM_IGNORE).any() and not (targets == _MLM_IGNORE).any():
            c.fail(f"returned (targets, inputs) on {case}: return (inputs, targets)")
        return inputs, targets

    c.cases += 1
    inputs, targets = run(tokens, 0.15, 0, case)
    chosen = targets != _MLM_IGNORE
    if not chosen.any():
        c.fail(f"every target is -100 on {case}: at the chosen positions the target is the original token")
    if chosen.all():
        c.fail(f"no target is -100 on {case}: set targets to -100 (IGNORE_INDEX) at every position that was not "
               "chosen, so that the loss counts only the chosen 15%")
    if not torch.equal(targets[chosen], tokens[chosen]):
        if torch.equal(targets[chosen], inputs[chosen]):
            c.fail(f"the targets hold the corrupted inputs on {case}: they must hold the original tokens "
                   "(the model learns to restore them)")
        c.fail(f"at the chosen positions the targets must equal the original tokens ({case})")
    rate, masked, random, same = _fractions(tokens, inputs, targets, mask_id)
    if abs(rate - 0.12) < 0.01:
        c.fail(f"only {rate:.1%} of positions have a target on {case}: the loss covers every chosen position "
               "(15%), also the 10% replaced by a random token and the 10% left unchanged, not only the [MASK]ed ones")
    if not torch.equal(inputs[~chosen], tokens[~chosen]):
        c.fail(f"inputs differ from the tokens at positions that were not chosen ({case}): only chosen positions "
               "(targets != -100) may change; and every corrupted position needs its target")
    if abs(rate - 0.15) > 0.01:
        c.fail(f"{rate:.1%} of positions were chosen on {case}: choose each with probability p = 15%")
    if masked > 0.97:
        c.fail(f"every chosen position became [MASK] on {case}: of the chosen positions 80% become mask_id, "
               "10% a random token and 10% stay unchanged")
    if abs(masked - 0.8) > 0.02 or abs(random - 0.1) > 0.02 or abs(same - 0.1) > 0.02:
        c.fail(f"of the chosen positions {masked:.1%} became [MASK], {random:.1%} a random token and {same:.1%} "
               f"stayed unchanged on {case}: expected 80% / 10% / 10%")
    swapped = chosen & (inputs != mask_id) & (inputs != tokens)
    ids = inputs[swapped]
    if (ids < 0).any() or (ids >= v).any():
        c.fail(f"random replacements must be ordinary ids in [0, vocab_size={v}) on {case}, got ids from "
               f"{int(ids.min())} to {int(ids.max())}")
    if ids.unique().numel() < v // 2:
        c.fail(f"the random replacements use only {ids.unique().numel()} different ids on {case}: draw each "
               f"uniformly from [0, vocab_size)")

    c.cases += 1
    case2 = "p=0.5 on the same tokens"
    _, t2 = run(tokens, 0.5, 1, case2)
    rate2 = float((t2 != _MLM_IGNORE).float().mean())
    if abs(rate2 - 0.5) > 0.02:
        c.fail(f"{rate2:.1%} of positions were chosen on {case2}: use the argument p, not a fixed 0.15")

    c.cases += 1
    case3 = "two calls with generators seeded alike"
    small = tokens[:4, :37]
    a, b = run(small, 0.15, 123, case3), run(small, 0.15, 123, case3)
    if not (torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])):
        c.fail(f"two calls with generators seeded alike gave different results ({case3}): draw every random "
               "number from `generator` (torch.rand(..., generator=generator), torch.randint(..., generator=generator))")

    c.cases += 1
    case4 = "a transposed (non-contiguous) view, and T=1"
    run(tokens[:9, :7].t(), 0.15, 5, case4)
    run(tokens[:5, :1], 0.15, 6, case4)


# ----------------------------------------------------------------------------- training.tying


def _gpt_count(vocab_size: int, d_model: int, n_layers: int, max_seq_len: int, tie_weights: bool) -> int:
    from tfcore.complexity import parameter_count
    from tfcore.model import TransformerConfig

    cfg = TransformerConfig(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=1,
                            max_seq_len=max_seq_len, tie_weights=tie_weights)
    return parameter_count(cfg)["total"]


@exercise("training.tying", "parameters of a GPT-2-style model with and without weight tying", lesson=LESSON)
def _tying(answer, c: Checker) -> None:
    for vocab, d, layers, t_max in ((65, 64, 2, 64), (101, 24, 3, 17), (7, 8, 1, 5), (50257, 768, 12, 1024)):
        for tie in (True, False):
            case = f"vocab_size={vocab}, d_model={d}, n_layers={layers}, max_seq_len={t_max}, tie_weights={tie}"
            ref = _gpt_count(vocab, d, layers, t_max, tie)
            out = c.call(answer, vocab, d, layers, t_max, tie_weights=tie, case=case,
                         hint="the signature is param_count(vocab_size, d_model, n_layers, max_seq_len, tie_weights=True)")
            vd = vocab * d
            tying = [("with tie_weights=True the unembedding IS the embedding matrix: count that V x d_model "
                      "matrix once", lambda: ref + vd)] if tie else \
                    [("with tie_weights=False the unembedding is a second vocab_size x d_model matrix: count it too",
                      lambda: ref - vd)]
            c.number(out, ref, case, integer=True, wrong=tying + [
                ("the unembedding has no bias (nn.Linear(d_model, vocab_size, bias=False))", lambda: ref + vocab),
                ("forgot the learned position table (max_seq_len x d_model)", lambda: ref - t_max * d),
                ("forgot the biases of the Linear layers: Q, K, V, O have d_model each, the MLP 4 d_model + d_model",
                 lambda: ref - layers * 9 * d),
                ("forgot the LayerNorms: two per block and a final one, each with a gain and a shift (2 d_model)",
                 lambda: ref - (2 * layers + 1) * 2 * d),
                ("a LayerNorm has a gain AND a shift: 2 d_model parameters, not d_model",
                 lambda: ref - (2 * layers + 1) * d),
                ("forgot the final LayerNorm before the unembedding", lambda: ref - 2 * d),
                ("forgot the output projection W_O (d_model x d_model, plus its bias)", lambda: ref - layers * (d * d + d)),
                ("the MLP's hidden width is d_ff = 4 d_model", lambda: ref - layers * (6 * d * d + 3 * d)),
            ])


# ----------------------------------------------------------------------------- training.perplexity


@exercise("training.perplexity", "perplexity of several batches: exp of the token-weighted mean loss (nats)",
          lesson=LESSON)
def _perplexity(answer, c: Checker) -> None:
    cases = [
        ("one batch at chance: loss ln 65, 100 tokens (perplexity 65)", [math.log(65)], [100]),
        ("losses [2.0, 1.0, 3.0], counts [10, 30, 5]", [2.0, 1.0, 3.0], [10, 30, 5]),
        ("a perfect model: loss 0 (perplexity 1)", [0.0], [7]),
        ("equal losses [1.5, 1.5], counts [3, 9]", [1.5, 1.5], [3, 9]),
        ("losses [0.5, 4.0], counts [1000, 10]", [0.5, 4.0], [1000, 10]),
    ]
    for case, losses, counts in cases:
        lt = torch.tensor(losses, dtype=torch.float64)
        ct = torch.tensor(counts)
        total = sum(l * n for l, n in zip(losses, counts))
        n_tok = sum(counts)
        ref = math.exp(total / n_tok)
        out = c.call(answer, lt, ct, case=case, hint="the signature is perplexity(losses, counts)")
        c.number(out, ref, case, rtol=1e-6, wrong=[
            ("weight each batch's loss by its number of tokens: exp(sum(loss_i n_i) / sum(n_i))",
             lambda: math.exp(sum(losses) / len(losses))),
            ("average the losses first and exponentiate once: the mean of per-batch perplexities is too large",
             lambda: sum(math.exp(l) * n for l, n in zip(losses, counts)) / n_tok),
            ("average the losses first and exponentiate once: the mean of per-batch perplexities is too large",
             lambda: sum(math.exp(l) for l in losses) / len(losses)),
            ("the losses are in nats (natural log): perplexity = exp(loss), not 2 ** loss",
             lambda: 2 ** (total / n_tok)),
            ("divide by the total number of tokens: perplexity = exp(mean loss per token), not exp(sum)",
             lambda: math.exp(total)),
            ("return exp(mean loss), not the mean loss itself", lambda: total / n_tok),
        ])


# ----------------------------------------------------------------------------- predictions (lesson notebook)

from tfcore.grading.predictions import predict_choice, predict_integer, predict_number  # noqa: E402


def _fresh_model_loss() -> float:
    """The lesson's fresh model (seed 0) on its batch of 16 windows of 64 characters: the loss the reveal prints."""
    from tfcore.data import random_batch, shakespeare_splits
    from tfcore.model import Transformer, TransformerConfig

    tok, train_ids, _ = shakespeare_splits()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Transformer(TransformerConfig(vocab_size=tok.vocab_size, d_model=64, n_layers=2, n_heads=4,
                                              max_seq_len=64))
    batch = random_batch(train_ids, 16, 63, torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float(lm_loss(model(batch), batch))


def _nucleus_size() -> int:
    """Characters kept by top_p = 0.9 after "To be, or not to b" in the shipped shakespeare-char-cpu model."""
    from tfcore.data import shakespeare_splits
    from tfcore.model import sampling_probs
    from tfcore.train import pretrained

    tok, _, _ = shakespeare_splits()
    model, _ = pretrained("shakespeare-char-cpu")
    with torch.no_grad():
        logits = model(tok.encode("To be, or not to b")[None])[:, -1]
    return int((sampling_probs(logits, top_p=0.9) > 0).sum())


predict_number(
    "training.predict_initial_loss",
    "The loss (nats per character) of a fresh model, every weight drawn with standard deviation 0.02, "
    "over V = 65 characters",
    lesson=LESSON, answer=_fresh_model_loss, abs=0.25, unit=" nats", at_least=(0, "a cross-entropy is never negative"),
    mistakes={math.log2(65): "that is log2 65, in bits: the loss is in nats (natural log)", 65: "65 is the "
              "perplexity, exp(loss); the loss is its log"},
    why="weights of standard deviation 0.02 make every logit close to 0, so the softmax is close to uniform: each "
        "target gets p = 1/65 and the loss is -log(1/65) = ln 65 = 4.17 nats (perplexity 65, chance). The fresh "
        "model scores a little more, 4.195, because its logits are not exactly equal. Log base 2 (6.02 bits) "
        "is a different unit; a loss near 0 would need a model that already knows the text.",
    hint="how large are the logits of a model whose weights are all near 0, what does softmax make of them, and "
         "what is -log of the probability it gives the target?",
)

predict_choice(
    "training.predict_encoder_loss",
    "Trained for next-character prediction without a causal mask (an encoder), the training loss after 60 steps, "
    "against the same model as a decoder",
    lesson=LESSON,
    options={"A": "clearly higher than the decoder's", "B": "about the same", "C": "far lower"},
    answer="C",
    why="without the causal mask, position t attends to every position, including t + 1, whose token is its "
        "target: the model learns to copy it from its input instead of predicting it, and the training loss "
        "falls far below the decoder's (1.82 against 2.69 after 60 steps here). The number is worthless: when "
        "generating, the next token is not in the input yet.",
    hint="what does position t see without a causal mask, and which token is its target?",
)

predict_integer(
    "training.predict_nucleus_size",
    'Nucleus sampling with top_p = 0.9 after "To be, or not to b": how many characters are kept? (the most '
    "likely: e 0.845, r 0.035, o 0.032, l 0.020, y 0.019, i 0.018)",
    lesson=LESSON, answer=_nucleus_size, unit=" characters",
    mistakes={2: "2 stops before the token that crosses p: e and r add up to 0.880 < 0.9", 1: "1 is greedy; e alone "
              "is 0.845 < 0.9"},
    why="top-p keeps the most likely tokens until their probabilities add up to at least p, the token that "
        "crosses p included: e alone is 0.845, e and r 0.880 (still below 0.9), and o brings 0.912, so e, r and "
        "o are kept (3 characters), then renormalised. Stopping before the crossing token (2) leaves less than p; "
        "top-p keeps few tokens where the model is sure (3 here) and many where it is not (14 after 'ROMEO:\\n').",
    hint="add the probabilities from the largest down: at which character does the sum first reach 0.9, and is "
         "that character kept?",
)
