"""tfcore.diagnostics, lesson 10 part: residual norms, head ablation, entropy per head, whole-model
mask tests, gradient norms, overfitting one batch and the debugging checklist.

References are computed here by hand (explicit block calls, copies of the model with weights
edited), never by the functions under test.
"""

from __future__ import annotations

import copy
import math
import types

import pytest
import torch
from helpers import random_tokens, single_thread, tiny_model  # noqa: F401 (autouse fixture)

from tfcore.attention import softmax
from tfcore.diagnostics import (
    ChecklistReport,
    CheckItem,
    ResidualNormRecorder,
    ablate_heads,
    classify_heads,
    debugging_checklist,
    gradient_norms,
    head_ablation_effects,
    head_entropy,
    head_means,
    influence_matrix,
    leakage_test,
    normalised_entropy,
    overfit_batch,
    padding_leakage,
    residual_norms,
)
from tfcore.losses import lm_loss
from tfcore.masks import causal_mask

V = 19


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_weights(model, snap):
    return all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------
# residual norms


@pytest.mark.parametrize("arch", ["decoder", "encoder", "encoder-decoder"])
def test_residual_norms_match_explicit_block_calls(arch):
    model = tiny_model(architecture=arch)
    tokens = random_tokens(2, 7, V)
    source = random_tokens(2, 5, V, seed=1) if arch == "encoder-decoder" else None
    ratios = residual_norms(model, tokens, source=source)
    expected = {}
    with torch.no_grad():
        if model.encoder is not None:
            x = model.embed_tokens(source if source is not None else tokens)
            for i, block in enumerate(model.encoder):
                y = block(x)
                expected[f"encoder.{i}"] = float((y - x).norm() / x.norm())
                x = y
            memory = model.encoder_norm(x)
        if model.decoder is not None:
            x = model.embed_tokens(tokens)
            for i, block in enumerate(model.decoder):
                y = block(x, is_causal=True, source=memory if model.encoder is not None else None)
                expected[f"decoder.{i}"] = float((y - x).norm() / x.norm())
                x = y
    assert list(ratios) == list(expected)  # encoder first, then decoder, in order
    for name in expected:
        assert ratios[name] == pytest.approx(expected[name], rel=1e-5)
    assert no_hooks(model)


def test_recorder_keeps_a_history_and_removes_its_hooks_even_after_an_error():
    model = tiny_model()
    tokens = random_tokens(2, 6, V)
    with ResidualNormRecorder(model) as rec, torch.no_grad():
        model(tokens)
        model(tokens[:, :3])
    assert [len(v) for v in rec.history.values()] == [2, 2]
    assert rec.last == {n: v[-1] for n, v in rec.history.items()}
    assert no_hooks(model)
    with pytest.raises(ValueError):
        with ResidualNormRecorder(model):
            model(torch.full((1, 3), V + 5))  # out-of-vocabulary ids raise inside the forward
    assert no_hooks(model)


def test_residual_norms_restore_training_mode():
    model = tiny_model().train()
    residual_norms(model, random_tokens(1, 5, V))
    assert model.training


# ---------------------------------------------------------------------------------------------
# head ablation


def test_zero_ablation_equals_removing_the_heads_columns_of_w_o():
    model = tiny_model()
    tokens = random_tokens(2, 7, V)
    ref = copy.deepcopy(model)
    d_head = ref.config.d_head
    with torch.no_grad():
        ref.decoder[1].attn.out_proj.weight[:, 2 * d_head: 3 * d_head] = 0  # head 2 of layer 1 writes nothing
        expected = ref(tokens)
        with ablate_heads(model, {"decoder.1.attn": [2]}):
            out = model(tokens)
        plain = model(tokens)
    torch.testing.assert_close(out, expected)
    assert model.decoder[1].attn.head_mask is None  # restored
    assert not torch.allclose(plain, out)


def test_mean_ablation_equals_zero_ablation_plus_the_mean_as_a_bias():
    model = tiny_model()
    tokens, reference = random_tokens(2, 7, V), random_tokens(3, 9, V, seed=5)
    means = head_means(model, reference)
    assert means["decoder.0.attn"].shape == (4, model.config.d_head)
    ref = copy.deepcopy(model)
    layer = ref.decoder[0].attn
    d_head = ref.config.d_head
    with torch.no_grad():
        cols = layer.out_proj.weight[:, d_head: 2 * d_head].clone()
        layer.out_proj.weight[:, d_head: 2 * d_head] = 0
        layer.out_proj.bias += cols @ means["decoder.0.attn"][1]
        expected = ref(tokens)
        with ablate_heads(model, [("decoder.0.attn", 1)], mode="mean", reference=reference):
            out = model(tokens)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert no_hooks(model)


def test_ablate_heads_validates_its_arguments():
    model = tiny_model()
    with pytest.raises(KeyError, match="no attention layer 'decoder.7.attn'"):
        with ablate_heads(model, {"decoder.7.attn": [0]}):
            pass
    with pytest.raises(ValueError, match="out of range"):
        with ablate_heads(model, {"decoder.0.attn": [4]}):
            pass
    with pytest.raises(ValueError, match="mode='mean' needs"):
        with ablate_heads(model, {"decoder.0.attn": [0]}, mode="mean"):
            pass


def test_head_ablation_effects_is_zero_for_a_head_that_writes_nothing():
    model = tiny_model()
    with torch.no_grad():
        d_head = model.config.d_head
        model.decoder[0].attn.out_proj.weight[:, :d_head] = 0  # head 0 of layer 0 is already dead
    tokens = random_tokens(3, 8, V)
    base, effects = head_ablation_effects(model, tokens)
    with torch.no_grad():
        assert base == pytest.approx(float(lm_loss(model(tokens), tokens)), rel=1e-6)
    assert set(effects) == {"decoder.0.attn", "decoder.1.attn"}
    assert effects["decoder.0.attn"].shape == (4,)
    assert effects["decoder.0.attn"][0] == 0
    assert (effects["decoder.1.attn"] != 0).all()
    _, mean_effects = head_ablation_effects(model, tokens, mode="mean")
    assert mean_effects["decoder.1.attn"].shape == (4,)
    with pytest.raises(ValueError, match="encoder-only model needs loss_fn"):
        head_ablation_effects(tiny_model(architecture="encoder"), tokens)


# ---------------------------------------------------------------------------------------------
# entropy per head


def test_normalised_entropy_of_uniform_and_one_hot_rows():
    t = 6
    visible = causal_mask(t).float()
    uniform_causal = visible / visible.sum(-1, keepdim=True)
    n = normalised_entropy(uniform_causal, causal=True)
    assert math.isnan(n[0]) and torch.allclose(n[1:], torch.ones(t - 1))
    assert torch.allclose(normalised_entropy(torch.full((3, 5), 0.2)), torch.ones(3))
    assert torch.allclose(normalised_entropy(torch.eye(4)), torch.zeros(4))


def test_head_entropy_and_classification():
    model = tiny_model()
    result = head_entropy(model, random_tokens(2, 8, V))
    assert set(result) == {"decoder.0.attn", "decoder.1.attn"}
    for r in result.values():
        assert r["entropy"].shape == (4,) and r["normalised"].shape == (4,) and r["weights"].shape == (2, 4, 8, 8)
        assert ((r["normalised"] > 0) & (r["normalised"] <= 1 + 1e-5)).all()
    kinds = classify_heads({"a": torch.tensor([0.1, 0.5, 0.95]), "b": torch.tensor([0.3])})
    assert kinds == {"collapsed": [("a", 0, pytest.approx(0.1))], "diffuse": [("a", 2, pytest.approx(0.95))]}


# ---------------------------------------------------------------------------------------------
# whole-model mask tests


def drop_causal(model):
    def pre(module, args, kwargs):
        return args, {**kwargs, "is_causal": False}

    return [m.register_forward_pre_hook(pre, with_kwargs=True)
            for n, m in model.attention_layers().items() if n.endswith(".attn")]


def test_leakage_test_on_decoder_leaky_decoder_and_encoder():
    model = tiny_model()
    tokens = random_tokens(2, 6, V, seed=3)
    assert leakage_test(model, tokens, V) == {j: [] for j in range(1, 6)}
    handles = drop_causal(model)
    try:
        assert leakage_test(model, tokens, V, positions=[3, 5]) == {3: [0, 1, 2], 5: [0, 1, 2, 3, 4]}
    finally:
        for h in handles:
            h.remove()
    enc = tiny_model(architecture="encoder")
    assert leakage_test(enc, tokens, V)[4] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"position must lie in \[0, T=6\)"):
        leakage_test(model, tokens, V, positions=[6])


def test_influence_matrix_is_lower_triangular_for_a_decoder_and_full_for_an_encoder():
    tokens = random_tokens(2, 6, V, seed=4)
    m = influence_matrix(tiny_model(), tokens, V)
    assert m.shape == (6, 6)
    assert (m.triu(diagonal=1) == 0).all() and (m.diagonal() > 0).all()
    assert (m.tril(diagonal=-1)[torch.ones(6, 6, dtype=torch.bool).tril(-1)] > 0).all()
    enc = influence_matrix(tiny_model(architecture="encoder"), tokens, V)
    assert (enc > 0).all()
    leaks = leakage_test(tiny_model(architecture="encoder"), tokens, V)
    assert all(leaks[j] == [i for i in range(j) if enc[i, j] > 1e-5] for j in leaks)


def test_padding_leakage_finds_an_ignored_padding_mask():
    enc = tiny_model(architecture="encoder")
    tokens = random_tokens(2, 7, V)
    lengths = torch.tensor([5, 3])
    assert padding_leakage(enc, tokens, lengths, V) == []
    original = enc.forward
    enc.forward = types.MethodType(lambda self, t, lengths=None, **kw: original(t, **kw), enc)  # drops lengths
    moved = padding_leakage(enc, tokens, lengths, V)
    assert moved and all(i < int(lengths[b]) for b, i in moved)


# ---------------------------------------------------------------------------------------------
# gradients and overfitting


def test_gradient_norms_match_backward_and_leave_grad_alone():
    model = tiny_model()
    tokens = random_tokens(2, 6, V)
    norms = gradient_norms(model, lm_loss(model(tokens), tokens))
    assert all(p.grad is None for p in model.parameters())
    assert list(norms) == ["embed", "positions", "decoder.0", "decoder.1", "final_norm"]  # unembed is tied to embed
    lm_loss(model(tokens), tokens).backward()
    block0 = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.decoder[0].parameters()))
    assert norms["decoder.0"] == pytest.approx(block0, rel=1e-6)
    assert norms["embed"] == pytest.approx(float(model.embed.weight.grad.norm()), rel=1e-5)
    untied = tiny_model(tie_weights=False)
    assert "unembed" in gradient_norms(untied, lm_loss(untied(tokens), tokens))


def test_overfit_batch_learns_on_a_copy():
    model = tiny_model()
    tokens = random_tokens(2, 8, V)
    snap = snapshot(model)
    losses = overfit_batch(model, lambda m: lm_loss(m(tokens), tokens), steps=30, lr=1e-2)
    assert len(losses) == 31 and losses[-1] < 0.5 * losses[0]
    assert same_weights(model, snap)


# ---------------------------------------------------------------------------------------------
# the checklist


def rows_over_queries(model):
    """Patch every self-attention layer to normalise over the queries (dim=-2): a classic bug."""
    for layer in model.attention_layers().values():
        def forward(self, x, source=None, mask=None, is_causal=False, cache=None):
            b, t, _ = x.shape
            q, k, v = (p(x).view(b, t, self.n_heads, self.d_head).transpose(1, 2)
                       for p in (self.q_proj, self.k_proj, self.v_proj))
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)
            if is_causal:
                scores = scores.masked_fill(~causal_mask(t), float("-inf"))
            w = softmax(scores, dim=-2)
            if self.capture_weights:
                self.last_weights = w.detach()
            return self.out_proj((w @ v).transpose(1, 2).reshape(b, t, -1))

        layer.forward = types.MethodType(forward, layer)
    return model


def statuses(report):
    return {i.name: i.status for i in report.items}


@pytest.mark.slow
def test_checklist_passes_a_healthy_decoder_and_leaves_it_untouched():
    model = tiny_model().train()
    snap = snapshot(model)
    report = debugging_checklist(model, random_tokens(4, 12, V), V, steps=40, lr=1e-2)
    assert report.ok, str(report)
    assert statuses(report) == {"initial loss": "pass", "overfit one batch": "pass", "leakage": "pass",
                                "padding": "pass", "attention rows": "pass", "gradient norms": "pass",
                                "attention entropy": "info", "residual norms": "info"}
    assert same_weights(model, snap) and model.training and no_hooks(model)
    assert all(p.grad is None for p in model.parameters())
    text = str(report)
    assert text.splitlines()[0].startswith("debugging checklist: decoder, 2 layers, 4 heads")
    assert text.endswith("=> no failures") and text == repr(report)
    html = report._repr_html_()
    assert "<table" in html and "0x" not in html and html == report._repr_html_()
    d = report.to_dict()
    assert d["ok"] and [i["name"] for i in d["items"]] == [i.name for i in report.items]
    assert isinstance(d["items"][1]["details"]["losses"], list)
    assert report["leakage"].status == "pass"
    with pytest.raises(KeyError, match="no check named 'x'"):
        report["x"]


@pytest.mark.slow
def test_checklist_flags_a_leaky_decoder():
    model = tiny_model()
    handles = drop_causal(model)
    try:
        report = debugging_checklist(model, random_tokens(4, 12, V), V, steps=5)
    finally:
        for h in handles:
            h.remove()
    assert not report.ok and "leakage" in report.failed
    assert "output depends on later tokens" in report["leakage"].summary


@pytest.mark.slow
def test_checklist_flags_softmax_over_the_wrong_axis():
    model = rows_over_queries(tiny_model())
    report = debugging_checklist(model, random_tokens(4, 12, V), V, steps=5)
    assert statuses(report)["attention rows"] == "fail"
    assert "does not normalise over the keys" in report["attention rows"].summary
    assert statuses(report)["leakage"] == "fail"  # normalising over queries mixes in later queries


@pytest.mark.slow
def test_checklist_flags_an_overconfident_init_and_a_frozen_model():
    model = tiny_model()
    with torch.no_grad():
        model.final_norm.weight.mul_(100.0)  # logits 100 times too large
    report = debugging_checklist(model, random_tokens(4, 12, V), V, steps=5)
    assert report["initial loss"].status == "fail" and "above chance" in report["initial loss"].summary
    frozen = tiny_model().requires_grad_(False)
    report = debugging_checklist(frozen, random_tokens(4, 12, V), V, steps=5)
    assert {"overfit one batch", "gradient norms"} <= set(report.failed)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["encoder", "encoder-decoder"])
def test_checklist_runs_on_encoders_and_encoder_decoders(arch):
    model = tiny_model(architecture=arch)
    source = random_tokens(4, 9, V, seed=2) if arch == "encoder-decoder" else None
    report = debugging_checklist(model, random_tokens(4, 12, V), V, source=source, steps=40, lr=1e-2)
    assert report.ok, str(report)
    names = [i.name for i in report.items]
    assert names[:3] == ["initial loss", "overfit one batch", "leakage"]
    if arch == "encoder":
        assert "bidirectional" in report["leakage"].summary
        assert list(report["residual norms"].details["ratios"]) == ["encoder.0", "encoder.1"]
    else:
        assert list(report["residual norms"].details["ratios"]) == ["encoder.0", "encoder.1", "decoder.0", "decoder.1"]


def test_checklist_argument_errors():
    with pytest.raises(ValueError, match="needs source="):
        debugging_checklist(tiny_model(architecture="encoder-decoder"), random_tokens(2, 6, V), V)
    with pytest.raises(ValueError, match=r"batch must have shape \(B, T\)"):
        debugging_checklist(tiny_model(), random_tokens(2, 6, V)[0], V)
    with pytest.raises(ValueError, match="status must be one of"):
        CheckItem("x", "maybe", "")
    report = ChecklistReport("m", [CheckItem("a", "pass", "fine"), CheckItem("b", "fail", "broken"),
                                   CheckItem("c", "warn", "hmm")])
    assert not report.ok and report.failed == ["b"] and report.warnings == ["c"]
    assert str(report).splitlines()[-1] == "  => FAILED: b; warnings: c"
