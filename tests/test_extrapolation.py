"""tfcore.extrapolation: the loss by position against a per-window float64 reference, the windows,
deterministic training, the NTK base by its defining property, and the sweep's format."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tfcore.extrapolation import (
    LengthExperiment,
    held_out_windows,
    length_sweep,
    loss_by_position,
    ntk_base,
    rope_base_curves,
    train_at_length,
)
from tfcore.model import Transformer, TransformerConfig

from helpers import single_thread  # noqa: F401 (autouse fixture: one thread for tiny tensors)

TINY = LengthExperiment(d_model=8, n_layers=1, n_heads=2, train_len=8, eval_len=16, steps=3, batch_size=2,
                        warmup_steps=1, eval_windows=3)
CORPUS = torch.randint(11, (400,), generator=torch.Generator().manual_seed(0))


def random_model(positions: str = "rope", seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(TransformerConfig(vocab_size=11, d_model=16, n_layers=2, n_heads=2, max_seq_len=32,
                                          positions=positions))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)  # attention far from uniform: position schemes matter
    return model.eval()


def reference_curve(model: Transformer, windows: torch.Tensor, length: int) -> torch.Tensor:
    """One window at a time, -log p(target) from a float64 log-softmax, averaged over the windows."""
    rows = []
    for w in windows:
        with torch.no_grad():
            logits = model(w[None, :length])[0].double()  # (length, V)
        logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
        rows.append(torch.stack([-logp[t, w[t + 1]] for t in range(length)]))
    return torch.stack(rows).mean(0)


@pytest.mark.parametrize("positions", ["rope", "alibi", "learned", "none"])
@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_loss_by_position_matches_a_per_window_float64_reference(positions, batch_size):
    model = random_model(positions)
    windows = torch.randint(11, (5, 21), generator=torch.Generator().manual_seed(1))
    curve = loss_by_position(model, windows, batch_size=batch_size)
    assert curve.shape == (20,) and curve.dtype == torch.float32
    torch.testing.assert_close(curve.double(), reference_curve(model, windows, 20), atol=1e-5, rtol=1e-5)
    # a causal model: scoring a shorter prefix gives the first positions of the same curve
    torch.testing.assert_close(loss_by_position(model, windows, 7), curve[:7], atol=1e-5, rtol=1e-5)
    assert not model.training


def test_loss_by_position_refuses_bad_windows_and_lengths():
    model = random_model()
    windows = torch.randint(11, (3, 9))
    with pytest.raises(ValueError, match="windows"):
        loss_by_position(model, windows[0])
    with pytest.raises(TypeError, match="windows"):
        loss_by_position(model, windows.float())
    with pytest.raises(ValueError, match="length=9 needs windows of at least 10 ids, got 9"):
        loss_by_position(model, windows, 9)
    with pytest.raises(ValueError, match="length"):
        loss_by_position(model, windows, 0)
    with pytest.raises(ValueError, match="no rows"):
        loss_by_position(model, windows[:0])
    with pytest.raises(ValueError, match="batch_size"):
        loss_by_position(model, windows, batch_size=0)
    learned = random_model("learned")
    with pytest.raises(ValueError, match="longer than max_seq_len=32"):
        loss_by_position(learned, torch.randint(11, (2, 40)))


def test_held_out_windows_are_slices_of_the_corpus_drawn_from_the_seed():
    corpus = torch.arange(1000)
    exp = LengthExperiment(train_len=8, eval_len=50, eval_windows=7, eval_seed=3)
    windows = held_out_windows(corpus, exp)
    assert windows.shape == (7, 51)
    for w in windows:  # contiguous: consecutive ids of arange
        assert torch.equal(w, torch.arange(int(w[0]), int(w[0]) + 51))
    assert torch.equal(windows, held_out_windows(corpus, exp))
    assert not torch.equal(windows, held_out_windows(corpus, LengthExperiment(train_len=8, eval_len=50, eval_windows=7)))
    with pytest.raises(ValueError, match="val_ids has 51 tokens, too few for windows of eval_len=50"):
        held_out_windows(corpus[:51], exp)
    with pytest.raises(ValueError, match="val_ids"):
        held_out_windows(corpus[None], exp)


@pytest.mark.parametrize("changes, message", [
    (dict(train_len=0), "train_len must be a positive integer"),
    (dict(eval_windows=0), "eval_windows must be a positive integer"),
    (dict(steps=2.5), "steps must be a positive integer"),
    (dict(eval_len=32), "eval_len=32 must be at least train_len=64"),
    (dict(lr=0.0), r"lr must lie in \(0, inf\)"),
    (dict(min_lr=0.1), r"min_lr must lie in \[0, 0.01\]"),
    (dict(eval_seed=-1), "eval_seed must be an integer >= 0"),
])
def test_experiment_settings_are_checked(changes, message):
    with pytest.raises(ValueError, match=message):
        LengthExperiment(**changes)


def test_training_is_deterministic_per_seed_and_the_learned_table_stops_at_the_training_length():
    a, loss_a = train_at_length("rope", 0, TINY, CORPUS, 11)
    b, loss_b = train_at_length("rope", 0, TINY, CORPUS, 11)
    c, loss_c = train_at_length("rope", 1, TINY, CORPUS, 11)
    assert loss_a == loss_b and math.isfinite(loss_a) and loss_c != loss_a
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert not torch.equal(a.embed.weight, c.embed.weight)
    assert not a.training and a.config.max_seq_len == 16 and a.config.positions == "rope"
    learned, _ = train_at_length("learned", 0, TINY, CORPUS, 11)
    assert learned.config.max_seq_len == 8 and learned.positions.table.weight.shape == (8, 8)
    with pytest.raises(ValueError, match="scheme must be one of"):
        train_at_length("rotary", 0, TINY, CORPUS, 11)


@pytest.mark.parametrize("d_head,factor", [(12, 8.0), (64, 4.0), (128, 32.0)])
def test_ntk_base_keeps_the_fastest_pair_and_slows_the_slowest_by_the_factor(d_head, factor):
    new = ntk_base(1e4, factor, d_head)
    theta = lambda base, i: base ** (-2 * i / d_head)  # noqa: E731
    assert theta(new, 0) == theta(1e4, 0) == 1.0
    slowest = d_head // 2 - 1
    assert theta(1e4, slowest) / theta(new, slowest) == pytest.approx(factor, rel=1e-12)
    with pytest.raises(ValueError, match="d_head"):
        ntk_base(1e4, factor, 7)


def test_rope_base_curves_change_only_positions_after_0_and_restore_the_base():
    model = random_model("rope")
    windows = torch.randint(11, (4, 17), generator=torch.Generator().manual_seed(2))
    trained = loss_by_position(model, windows)
    same, other = rope_base_curves(model, windows, [1e4, 50.0])
    torch.testing.assert_close(same, trained)
    torch.testing.assert_close(other[0], trained[0])  # position 0 is turned by angle 0 whatever the base
    assert (other[1:] - trained[1:]).abs().max() > 1e-3
    assert all(layer.rope_base == 1e4 for layer in model.attention_layers().values())
    torch.testing.assert_close(loss_by_position(model, windows), trained)
    with pytest.raises(ValueError, match="positions='rope'"):
        rope_base_curves(random_model("alibi"), windows, [1e4])


def test_length_sweep_format():
    out = length_sweep(CORPUS[:300], CORPUS[300:], 11, ["learned", "rope", "t5", "sinusoidal"], [0, 1], TINY,
                       rope_bases=[1e4, 1e5])
    json.dumps(out)
    assert out["schemes"] == ["learned", "rope", "t5", "sinusoidal"] and out["seeds"] == [0, 1]
    assert out["experiment"]["train_len"] == 8 and out["experiment"]["eval_len"] == 16
    for scheme, length in (("learned", 8), ("rope", 16), ("t5", 16), ("sinusoidal", 16)):
        assert len(out["train_loss"][scheme]) == len(out["cpu_seconds"][scheme]) == len(out["token_rms"][scheme]) == 2
        assert [len(c) for c in out["loss"][scheme]] == [length, length]
    model, _ = train_at_length("t5", 1, TINY, CORPUS[:300], 11)
    assert out["t5_bucket_bias"][1] == [[round(v, 4) for v in row]
                                        for row in model.t5_bias["decoder"].bias.weight.T.tolist()]
    assert len(out["t5_bucket_bias"][0]) == 2 and len(out["t5_bucket_bias"][0][0]) == 32  # (h, n_buckets)
    sinusoidal, _ = train_at_length("sinusoidal", 0, TINY, CORPUS[:300], 11)
    rms = (sinusoidal.embed.weight * math.sqrt(8)).pow(2).mean().sqrt().item()  # the paper's scale, sqrt(d_model)
    assert out["token_rms"]["sinusoidal"][0] == pytest.approx(rms, abs=1e-4)
    assert out["rope_bases"]["bases"] == [1e4, 1e5]
    assert [[len(c) for c in per_base] for per_base in out["rope_bases"]["loss"]] == [[16, 16], [16, 16]]
    assert out["rope_bases"]["loss"][0] == out["loss"]["rope"]  # base 1e4 is the trained one
