"""tfcore.data and tfcore.losses: the shifted LM loss by hand, MLM statistics, the corpus, the toy tasks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import single_thread, tiny_model  # noqa: F401 (autouse fixture)
from hypothesis import given, settings
from hypothesis import strategies as st

from tfcore.data import (
    DIGIT_BOS,
    CharTokenizer,
    copy_batch,
    digit_task_batch,
    induction_batch,
    load_shakespeare,
    random_batch,
    shakespeare_splits,
)
from tfcore.losses import IGNORE_INDEX, lm_loss, mlm_loss, mlm_mask, perplexity


@pytest.fixture(scope="module")
def corpus() -> str:
    return load_shakespeare()


def rand(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------------------------
# language-model loss


def test_lm_loss_equals_cross_entropy_on_shifted_tensors():
    logits = rand(3, 6, 11, seed=1)
    tokens = torch.randint(11, (3, 6), generator=torch.Generator().manual_seed(2))
    predictions, targets = logits[:, :-1, :], tokens[:, 1:]  # position t predicts token t + 1
    expected = F.cross_entropy(predictions.transpose(1, 2), targets)  # (B, V, T-1) layout: no reshape
    torch.testing.assert_close(lm_loss(logits, tokens), expected)


def test_lm_loss_against_a_float64_log_softmax_by_hand():
    b, t, v = 2, 5, 7
    logits = rand(b, t, v, seed=3) * 4
    tokens = torch.randint(v, (b, t), generator=torch.Generator().manual_seed(4))
    tokens[1, 3] = IGNORE_INDEX  # target of position 2 is padding: left out
    total, count = 0.0, 0
    for bi in range(b):
        for ti in range(t - 1):
            target = int(tokens[bi, ti + 1])
            if target == IGNORE_INDEX:
                continue
            row = [float(x) for x in logits[bi, ti]]
            m = max(row)
            log_z = m + math.log(sum(math.exp(x - m) for x in row))
            total += log_z - row[target]
            count += 1
    assert count == b * (t - 1) - 1
    assert lm_loss(logits, tokens).item() == pytest.approx(total / count, rel=1e-6)


def test_lm_loss_of_a_perfect_and_a_uniform_model():
    tokens = torch.tensor([[1, 2, 3, 0]])
    perfect = torch.full((1, 4, 5), -1e4)
    for t in range(3):
        perfect[0, t, tokens[0, t + 1]] = 1e4
    assert lm_loss(perfect, tokens).item() == pytest.approx(0.0, abs=1e-6)
    assert lm_loss(torch.zeros(1, 4, 5), tokens).item() == pytest.approx(math.log(5))
    assert perplexity(math.log(5)) == pytest.approx(5.0)


def test_lm_loss_errors():
    with pytest.raises(ValueError, match="tokens has T=4 but logits has T=5"):
        lm_loss(torch.zeros(1, 5, 3), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="T >= 2"):
        lm_loss(torch.zeros(1, 1, 3), torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"logits must have shape \(B, T, V\)"):
        lm_loss(torch.zeros(5, 3), torch.zeros(1, 5, dtype=torch.long))


def test_initial_loss_of_a_fresh_model_is_near_log_vocab():
    model = tiny_model(vocab_size=65, d_model=32, max_seq_len=64)
    tokens = torch.randint(65, (4, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss = lm_loss(model(tokens), tokens).item()
    assert abs(loss - math.log(65)) < 0.1


# ---------------------------------------------------------------------------------------------
# masked-LM


def test_mlm_mask_rates_over_a_large_sample():
    v, mask_id = 50, 50  # mask id outside the ordinary vocabulary
    tokens = torch.randint(v, (200, 500), generator=torch.Generator().manual_seed(0))
    inputs, targets = mlm_mask(tokens, mask_id, v, generator=torch.Generator().manual_seed(1))
    chosen = targets != IGNORE_INDEX
    n = tokens.numel()
    assert abs(chosen.sum().item() / n - 0.15) < 0.005  # 100k tokens: sd of the rate ~ 0.0011
    # targets: the original token where chosen, IGNORE_INDEX elsewhere; inputs untouched elsewhere
    assert torch.equal(targets[chosen], tokens[chosen])
    assert torch.equal(inputs[~chosen], tokens[~chosen])
    n_chosen = chosen.sum().item()
    masked = (inputs[chosen] == mask_id).float().mean().item()
    kept = (inputs[chosen] == tokens[chosen]).float().mean().item()
    other = ((inputs[chosen] != mask_id) & (inputs[chosen] != tokens[chosen])).float().mean().item()
    sd = math.sqrt(0.25 / n_chosen)  # generous: the largest binomial sd for this many draws
    assert abs(masked - 0.8) < 5 * sd
    assert abs(kept - (0.1 + 0.1 / v)) < 5 * sd  # a random replacement equals the original 1 time in v
    assert abs(other - 0.1 * (1 - 1 / v)) < 5 * sd
    assert (inputs[chosen & (inputs != mask_id)] < v).all()


def test_mlm_mask_is_reproducible_with_a_generator():
    tokens = torch.randint(30, (4, 40), generator=torch.Generator().manual_seed(0))
    a = mlm_mask(tokens, 30, 30, generator=torch.Generator().manual_seed(5))
    b = mlm_mask(tokens, 30, 30, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_mlm_loss_counts_only_masked_positions():
    logits = rand(2, 6, 9, seed=7)
    targets = torch.full((2, 6), IGNORE_INDEX)
    targets[0, 1], targets[1, 4], targets[1, 5] = 3, 0, 8
    picked = [(0, 1, 3), (1, 4, 0), (1, 5, 8)]
    expected = sum(-torch.log_softmax(logits[b, t].double(), -1)[y].item() for b, t, y in picked) / 3
    assert mlm_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# corpus and tokenizer


def test_corpus_loads_offline_with_about_1_1m_characters(corpus):
    assert 1_050_000 < len(corpus) < 1_150_000
    assert corpus.startswith("First Citizen:")
    assert len(set(corpus)) == 65


def test_char_tokenizer_round_trip(corpus):
    tok = CharTokenizer.from_text(corpus)
    assert tok.vocab_size == 65 and tok.chars == sorted(tok.chars)
    sample = corpus[10_000:12_000]
    ids = tok.encode(sample)
    assert ids.dtype == torch.long and ids.shape == (2000,)
    assert tok.decode(ids) == sample
    assert tok.decode(ids.tolist()) == sample
    # ids follow sorted character order
    assert tok.encode("\n").item() == 0 and tok.encode("z").item() == 64


@settings(max_examples=25, deadline=None)
@given(text=st.text(alphabet="abcXYZ \n!?", max_size=40))
def test_char_tokenizer_round_trip_any_text(text):
    tok = CharTokenizer.from_text("abcXYZ \n!?")
    assert tok.decode(tok.encode(text)) == text


def test_char_tokenizer_names_unknown_characters():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"outside the vocabulary: \['d', 'é'\]"):
        tok.encode("abdé")


def test_shakespeare_splits(corpus):
    tok, train, val = shakespeare_splits(0.1)
    assert len(train) + len(val) == len(corpus)
    assert len(train) == int(len(corpus) * 0.9)
    assert tok.decode(val[:200]) == corpus[len(train):len(train) + 200]


def test_random_batch_takes_contiguous_windows():
    data = torch.arange(1000)
    batch = random_batch(data, 8, 16, generator=torch.Generator().manual_seed(0))
    assert batch.shape == (8, 17)
    assert torch.equal(batch, batch[:, :1] + torch.arange(17))  # consecutive ids: a real slice of data
    again = random_batch(data, 8, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(batch, again)
    with pytest.raises(ValueError, match="too few for block_size=16"):
        random_batch(torch.arange(10), 2, 16)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        random_batch(data, 0, 16)


# ---------------------------------------------------------------------------------------------
# synthetic tasks


def test_induction_and_copy_batches():
    g = torch.Generator().manual_seed(0)
    x = induction_batch(3, 7, 11, generator=g)
    assert x.shape == (3, 14) and torch.equal(x[:, :7], x[:, 7:]) and int(x.max()) < 11
    c = copy_batch(3, 5, 11, generator=g)
    assert c.shape == (3, 11) and (c[:, 5] == 11).all() and torch.equal(c[:, :5], c[:, 6:])


@pytest.mark.parametrize("task", ["reverse", "sort", "copy"])
def test_digit_task_targets(task):
    source, decoder_input, target = digit_task_batch(task, 16, 7, generator=torch.Generator().manual_seed(0))
    assert source.shape == decoder_input.shape == target.shape == (16, 7)
    assert int(source.min()) >= 0 and int(source.max()) <= 9
    for s, d, y in zip(source.tolist(), decoder_input.tolist(), target.tolist()):
        expected = {"reverse": s[::-1], "sort": sorted(s), "copy": list(s)}[task]
        assert y == expected
        assert d == [DIGIT_BOS] + expected[:-1]  # teacher forcing: BOS then the gold prefix


def test_digit_task_rejects_unknown_task():
    with pytest.raises(ValueError, match="task must be 'reverse', 'sort' or 'copy'"):
        digit_task_batch("add", 2, 3)


# ---------------------------------------------------------------------------------------------
# values that used to give nonsense


def test_lm_loss_takes_int32_ids_and_names_ids_out_of_range():
    logits, tokens = rand(2, 6, 9, seed=1), torch.randint(9, (2, 6), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(lm_loss(logits, tokens.int()), lm_loss(logits, tokens))
    tokens[1, 3] = 9  # == V: the last logit axis has no entry for it
    with pytest.raises(ValueError, match=r"tokens must be ids in \[0, V=9\).*from 9 to 9"):
        lm_loss(logits, tokens)
    tokens[1, 3] = IGNORE_INDEX  # ignore_index is not an id out of range
    assert torch.isfinite(lm_loss(logits, tokens))


def test_perplexity_of_a_cross_entropy_and_its_limits():
    assert perplexity(0.0) == 1.0
    assert perplexity(torch.tensor(math.log(65.0))) == pytest.approx(65.0)  # a 0-d tensor is one number
    assert perplexity(800.0) == math.inf  # beyond float64, not an OverflowError
    for bad in (-1e-3, float("nan")):
        with pytest.raises(ValueError, match="loss must be a cross-entropy, a number >= 0"):
            perplexity(bad)


def test_mlm_mask_keeps_its_own_mask_id_and_extreme_probabilities():
    tokens = torch.randint(10, (8, 50), generator=torch.Generator().manual_seed(0))
    inputs, targets = mlm_mask(tokens, 10, 10, p=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(inputs, tokens) and (targets == IGNORE_INDEX).all()  # p = 0: nothing chosen
    inputs, targets = mlm_mask(tokens, 10, 10, p=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(targets, tokens)  # p = 1: every position chosen
    with pytest.raises(ValueError, match="mask_id=3 must be an id of its own, >= vocab_size=10"):
        mlm_mask(tokens, 3, 10)  # [MASK] would look like the real token 3


def test_char_tokenizer_decode_refuses_ids_outside_the_vocabulary():
    tok = CharTokenizer(list("abc"))
    assert tok.decode([0, 2, 1]) == tok.decode(torch.tensor([0, 2, 1])) == "acb"
    assert tok.decode([]) == ""
    with pytest.raises(ValueError, match=r"ids must lie in \[0, vocab_size=3\), got -1 at position 1"):
        tok.decode([0, -1])  # a negative id used to wrap around to the last character
    with pytest.raises(ValueError, match="chars must not repeat a character"):
        CharTokenizer(list("abca"))


def test_digit_task_needs_at_least_one_digit():
    source, decoder_input, target = digit_task_batch("copy", 3, 1, torch.Generator().manual_seed(0))
    assert source.shape == decoder_input.shape == target.shape == (3, 1)
    assert (decoder_input == DIGIT_BOS).all()
    with pytest.raises(ValueError, match="length must be a positive integer, got 0"):
        digit_task_batch("copy", 3, 0)  # used to return a (B, 1) decoder input for a (B, 0) target



def test_losses_trace_to_one_graph():
    """The CPU id-range check is skipped under torch.compile: a value read would split the graph."""
    import torch._dynamo as dynamo

    logits, tokens = rand(2, 6, 9, seed=1), torch.randint(9, (2, 6), generator=torch.Generator().manual_seed(2))
    for loss in (lm_loss, mlm_loss):
        dynamo.reset()
        explained = dynamo.explain(loss)(logits, tokens)
        assert explained.graph_break_count == 0, [str(b.reason).splitlines()[0] for b in explained.break_reasons]
    dynamo.reset()
