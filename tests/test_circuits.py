"""tfcore.diagnostics, the induction circuit (lesson 03): scores from attention weights against loops, and
scores from the weights alone against explicit float64 matrix products and against the layer's own forward
pass; the uniform-attention entropy reference under a causal mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import single_thread, tiny_model  # noqa: F401 (autouse fixture)

from tfcore.diagnostics import (
    attention_entropy, composition_score, composition_scores, induction_scores, norm_matrix, ov_copying_scores,
    ov_matrix, previous_token_scores, qk_matrix, random_composition_scores, random_ov_copying_scores,
    uniform_attention_entropy,
)
from tfcore.norms import LayerNorm, RMSNorm


def _causal_softmax(b: int, h: int, t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, h, t, t, generator=g, dtype=torch.float64) * 2
    return torch.softmax(scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), -math.inf), dim=-1)


# ----------------------------------------------------------------------------- scores from attention weights


def test_previous_token_and_induction_scores_against_loops():
    w = _causal_softmax(3, 2, 10)
    period = 4
    for head in range(2):
        prev = [w[b, head, t, t - 1].item() for b in range(3) for t in range(1, 10)]
        ind = [w[b, head, t, t - period + 1].item() for b in range(3) for t in range(period, 10)]
        assert previous_token_scores(w)[head].item() == pytest.approx(sum(prev) / len(prev), rel=1e-12)
        assert induction_scores(w, period)[head].item() == pytest.approx(sum(ind) / len(ind), rel=1e-12)


def test_ideal_heads_score_one_and_zero():
    t, period = 12, 5
    prev_head = torch.zeros(1, 1, t, t)
    prev_head[0, 0, 0, 0] = 1.0
    prev_head[0, 0, torch.arange(1, t), torch.arange(t - 1)] = 1.0
    induction_head = torch.eye(t)[None, None].clone()
    q = torch.arange(period, t)
    induction_head[0, 0, q] = 0.0
    induction_head[0, 0, q, q - period + 1] = 1.0
    both = torch.cat((prev_head, induction_head), dim=1)
    assert previous_token_scores(both).tolist() == pytest.approx([1.0, 0.0])
    assert induction_scores(both, period).tolist() == pytest.approx([0.0, 1.0])


@pytest.mark.parametrize("call, match", [
    (lambda: previous_token_scores(torch.rand(2, 3, 4)), r"\(B, h, T, T\)"),
    (lambda: previous_token_scores(torch.rand(1, 2, 3, 5)), "T_q=3 and T_k=5"),
    (lambda: induction_scores(torch.rand(1, 2, 6, 6), 6), "period must be smaller than T=6"),
    (lambda: induction_scores(torch.rand(1, 2, 6, 6), 0), "period must be an integer >= 1"),
])
def test_attention_scores_refuse_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- weights: the layer's own forward pass


def _unbiased(model):
    """Zero every bias (attention, norms): the circuit matrices leave biases out."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    return model


@pytest.mark.parametrize("overrides", [
    dict(positions="rope"),
    dict(positions="rope", rope_layout="split_half", n_kv_heads=2, norm="rms"),
    dict(positions="learned", n_kv_heads=1),
])
def test_qk_and_ov_matrices_reproduce_the_layers_scores_and_outputs(overrides):
    """softmax(x_m^T W_QK(m - n) x_n / (s_m s_n sqrt(d_head))) are the layer's weights, and
    sum_n a_mn W_OV x_n / s_n is one head's output, where s is the norm's division (float64)."""
    model = _unbiased(tiny_model(seed=3, **overrides)).double()
    block = model.decoder[1]
    layer, norm = block.attn, block.norm_attn
    n = norm_matrix(norm, 16)
    t = 7
    x = torch.randn(1, t, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    centred = x - x.mean(-1, keepdim=True) if isinstance(norm, LayerNorm) else x
    s = (centred.pow(2).mean(-1) + norm.eps).sqrt()[0]  # (T,) the norm's division per position
    layer.capture_weights = True
    with torch.no_grad():
        normed = norm(x)
        layer(normed, is_causal=True)
        weights = layer.last_weights[0]  # (h, T, T)
        for head in range(layer.n_heads):
            scores = torch.full((t, t), -math.inf, dtype=torch.float64)
            for m in range(t):
                for k in range(m + 1):
                    scores[m, k] = x[0, m] @ qk_matrix(layer, head, n, offset=m - k) @ x[0, k] / (s[m] * s[k])
            expected = torch.softmax(scores / math.sqrt(layer.d_head), dim=-1)
            torch.testing.assert_close(weights[head], expected, rtol=1e-10, atol=1e-12)

            only = torch.zeros(layer.n_heads, dtype=torch.float64)
            only[head] = 1.0
            layer.head_mask = only
            out = layer(normed, is_causal=True)[0]  # (T, d): this head's contribution alone
            layer.head_mask = None
            values = (ov_matrix(layer, head, n) @ (x[0] / s[:, None]).T).T  # (T, d): W_OV x_n / s_n
            torch.testing.assert_close(out, weights[head] @ values, rtol=1e-10, atol=1e-12)
    layer.capture_weights = False


@pytest.mark.parametrize("norm", [LayerNorm(6), RMSNorm(6)])
def test_norm_matrix_is_the_norm_up_to_its_division(norm):
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 6))
        if getattr(norm, "bias", None) is not None:
            norm.bias.fill_(0.3)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    centred = x - x.mean(-1, keepdim=True) if isinstance(norm, LayerNorm) else x
    s = (centred.pow(2).mean(-1, keepdim=True) + norm.eps).sqrt()
    bias = norm.bias.double() if getattr(norm, "bias", None) is not None else 0.0
    with torch.no_grad():
        torch.testing.assert_close((x @ norm_matrix(norm, 6).T) / s, norm.double()(x) - bias, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- composition: explicit products


def _explicit_composition(model, writer: int, reader: int, kind: str) -> torch.Tensor:
    """The Frobenius-norm formula of Elhage et al. (2021), written out with slices, in float64."""
    d, h = model.config.d_model, model.config.n_heads
    dh, rep = d // h, h // model.config.n_kv_heads

    def n_of(block):
        g = block.norm_attn.weight.detach().double()
        centre = torch.eye(d, dtype=torch.float64) - torch.ones(d, d, dtype=torch.float64) / d
        return torch.diag(g) @ (centre if isinstance(block.norm_attn, LayerNorm) else torch.eye(d, dtype=torch.float64))

    def w(block, head):
        a = block.attn
        rows, kv = slice(head * dh, (head + 1) * dh), slice((head // rep) * dh, (head // rep + 1) * dh)
        return (a.q_proj.weight.detach().double()[rows], a.k_proj.weight.detach().double()[kv],
                a.v_proj.weight.detach().double()[kv], a.out_proj.weight.detach().double()[:, rows])

    bw, br = model.decoder[writer], model.decoder[reader]
    nw, nr = n_of(bw), n_of(br)
    out = torch.zeros(h, h, dtype=torch.float64)
    for i in range(h):
        _, _, wv, wo = w(bw, i)
        ov = wo @ wv @ nw
        for j in range(h):
            rq, rk, rv, ro = w(br, j)
            qk = nr.T @ rq.T @ rk @ nr
            m = {"k": qk, "q": qk.T, "v": ro @ rv @ nr}[kind]
            out[i, j] = (m @ ov).pow(2).sum().sqrt() / (m.pow(2).sum().sqrt() * ov.pow(2).sum().sqrt())
    return out


@pytest.mark.parametrize("kind", ["k", "q", "v"])
@pytest.mark.parametrize("overrides", [dict(), dict(norm="rms", n_kv_heads=2, positions="rope")])
def test_composition_scores_against_explicit_products(kind, overrides):
    model = tiny_model(seed=5, n_layers=3, **overrides)
    got = composition_scores(model, "decoder.0.attn", "decoder.2.attn", kind=kind)
    assert got.shape == (4, 4) and got.dtype == torch.float64
    torch.testing.assert_close(got, _explicit_composition(model, 0, 2, kind), rtol=1e-12, atol=0)
    assert ((got > 0) & (got <= 1)).all()


def test_composition_score_bounds_and_extremes():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 8, generator=g, dtype=torch.float64)
    basis = torch.eye(8, dtype=torch.float64)
    first, last = basis[:, :1] @ basis[:1], basis[:, 7:] @ basis[7:]  # projections on e_0 and on e_7
    reads_first, writes_first, writes_last = first, first, last
    assert composition_score(reads_first, writes_first).item() == pytest.approx(1.0)  # reads exactly what is written
    assert composition_score(reads_first, writes_last).item() == 0.0  # reads nothing of it
    assert composition_score(3.0 * a, a / 7).item() == pytest.approx(composition_score(a, a).item())  # scale-free


def test_random_composition_baseline_is_about_one_over_sqrt_d():
    for d, dh in ((32, 8), (64, 16)):
        for kind in ("k", "v"):
            scores = random_composition_scores(d, dh, kind=kind, samples=1000, seed=1)
            assert scores.shape == (1000,)
            assert scores.mean().item() == pytest.approx(1 / math.sqrt(d), rel=0.03)
    assert torch.equal(random_composition_scores(16, 4, seed=2), random_composition_scores(16, 4, seed=2))


def test_a_trained_previous_token_head_composes_with_the_induction_heads_keys():
    """The shipped induction-tiny model: layer 0's previous-token head (0) K-composes with every layer-1 head
    far above the random baseline; its Q-composition stays near the baseline."""
    from tfcore.train import pretrained

    model, _ = pretrained("induction-tiny")
    base = random_composition_scores(64, 16, samples=500)
    k = composition_scores(model, "decoder.0.attn", "decoder.1.attn", "k")
    q = composition_scores(model, "decoder.0.attn", "decoder.1.attn", "q")
    assert (k[0] > base.mean() + 10 * base.std()).all()
    assert (q[0] < base.mean() + 2 * base.std()).all()
    copying = ov_copying_scores(model, "decoder.1.attn")
    assert (copying > 0.8).all()


# ----------------------------------------------------------------------------- OV copying score


def test_ov_copying_scores_against_the_full_vocab_by_vocab_circuit():
    for overrides in (dict(), dict(norm="rms", tie_weights=False, n_kv_heads=2)):
        model = tiny_model(seed=7, **overrides)
        d = model.config.d_model
        dh = d // model.config.n_heads
        e = model.embed.weight.detach().double()  # (V, d)
        u = model.unembed.weight.detach().double()  # (V, d)
        n1, nf = norm_matrix(model.decoder[1].norm_attn, d), norm_matrix(model.final_norm, d)
        rep = model.config.n_heads // model.config.n_kv_heads
        got = ov_copying_scores(model, "decoder.1.attn")
        for head in range(4):
            a = model.decoder[1].attn
            wv = a.v_proj.weight.detach().double()[(head // rep) * dh:(head // rep + 1) * dh]
            wo = a.out_proj.weight.detach().double()[:, head * dh:(head + 1) * dh]
            circuit = u @ nf @ wo @ wv @ n1 @ e.T  # (V, V): column s = logits added when attending to token s
            eig = torch.linalg.eigvals(circuit)
            assert got[head].item() == pytest.approx((eig.sum().real / eig.abs().sum()).item(), abs=1e-9)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_head_that_writes_back_what_it_reads_copies(sign):
    """Tied embeddings, unit gains: W_O = +-W_V^T makes the circuit +-(W_V P E^T)^T (W_V P E^T): score +-1."""
    model = tiny_model(seed=2)
    with torch.no_grad():
        for norm in (model.decoder[0].norm_attn, model.final_norm):
            norm.weight.fill_(1.0)
        a = model.decoder[0].attn
        a.out_proj.weight.copy_(sign * a.v_proj.weight.T)
    assert ov_copying_scores(model, "decoder.0.attn").tolist() == pytest.approx([sign] * 4, abs=1e-9)


def test_random_ov_copying_baseline_is_near_zero():
    model = tiny_model(seed=1)
    scores = random_ov_copying_scores(model, "decoder.1.attn", samples=400, seed=0)
    assert scores.shape == (400,) and abs(scores.mean().item()) < 4 * scores.std().item() / math.sqrt(400)
    assert torch.equal(scores, random_ov_copying_scores(model, "decoder.1.attn", samples=400, seed=0))


@pytest.mark.parametrize("call, error, match", [
    (lambda m: composition_scores(m, "decoder.0.attn", "decoder.1.attn", kind="o"), ValueError, "kind"),
    (lambda m: composition_scores(m, "decoder.1.attn", "decoder.0.attn"), ValueError, "must come after"),
    (lambda m: composition_scores(m, "decoder.0.attn", "decoder.9.attn"), KeyError, "no attention layer"),
    (lambda m: qk_matrix(m.decoder[0].attn, 4), ValueError, "head index 4 out of range"),
    (lambda m: qk_matrix(m.decoder[0].attn, 0, offset=-1), ValueError, "offset"),
    (lambda m: norm_matrix(torch.nn.Linear(3, 3), 3), TypeError, "LayerNorm or RMSNorm"),
    (lambda m: random_composition_scores(0, 4), ValueError, "d_model"),
])
def test_circuit_scores_refuse_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call(tiny_model())


def test_circuit_scores_refuse_post_ln_and_cross_attention():
    with pytest.raises(ValueError, match="Post-LN"):
        composition_scores(tiny_model(placement="post"), "decoder.0.attn", "decoder.1.attn")
    with pytest.raises(ValueError, match="cross-attention"):
        ov_copying_scores(tiny_model(architecture="encoder-decoder"), "decoder.0.cross_attn")


# ----------------------------------------------------------------------------- entropy of uniform attention


def test_uniform_attention_entropy_under_a_causal_mask():
    ref = uniform_attention_entropy(64, 64, causal=True)
    assert ref.tolist() == pytest.approx([math.log(i + 1) for i in range(64)])
    assert ref.mean().item() == pytest.approx(math.lgamma(65) / 64) and round(ref.mean().item(), 2) == 3.21
    assert uniform_attention_entropy(3, 5).tolist() == pytest.approx([math.log(5)] * 3)
    assert uniform_attention_entropy(3, 5, causal=True).tolist() == pytest.approx([math.log(3), math.log(4),
                                                                                    math.log(5)])
    uniform_causal = torch.ones(4, 6).tril(2)
    uniform_causal /= uniform_causal.sum(-1, keepdim=True)
    torch.testing.assert_close(attention_entropy(uniform_causal).double(), uniform_attention_entropy(4, 6, True))
    with pytest.raises(ValueError, match="t_q=5 > t_k=3"):
        uniform_attention_entropy(5, 3, causal=True)


def test_head_entropy_grid_shows_the_causal_reference():
    from tfcore.viz import head_entropy_grid

    causal = torch.ones(64, 64).tril()
    causal = (causal / causal.sum(-1, keepdim=True)).expand(1, 2, 64, 64)
    full = torch.full((1, 2, 64, 64), 1 / 64)
    fig = head_entropy_grid({"causal": causal, "full": full, "last rows": causal[:, :, 40:]})
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0].endswith("(uniform causal = 3.21)") and labels[1].endswith("(log T_k = 4.16)")
    last = float(uniform_attention_entropy(24, 64, causal=True).mean())
    assert labels[2].endswith(f"(uniform causal = {last:.2f})")
    forced = head_entropy_grid({"causal": causal}, causal=False)
    assert forced.axes[0].get_yticklabels()[0].get_text().endswith("(log T_k = 4.16)")
    assert np.isclose(float(attention_entropy(causal.double()).mean()), math.lgamma(65) / 64)
