"""tfcore.viz without a browser: plots, AttentionExplorer and MaskExplorer, checked on their data.

Widgets run headless here: setting a control's ``.value`` fires its observers synchronously,
so each check sets a control and then compares the explorer's arrays with an independent
``capture_attention`` run, and its PNG bytes with the previous ones.
"""

import os
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
import torch

from tfcore.data import CharTokenizer
from tfcore.diagnostics import attention_entropy
from tfcore.masks import block_diagonal_mask, causal_mask, padding_mask, prefix_lm_mask, sliding_window_mask
from tfcore.model import Transformer, TransformerConfig, capture_attention
from tfcore.viz import (
    AttentionExplorer,
    MaskExplorer,
    attention_heatmap,
    build_mask,
    head_entropy_grid,
    mask_gallery,
    mean_head_entropy,
    plot_mask,
    token_label,
)

ALPHABET = "abcdefghijklmnopqrstuvwxyz .,\n"
TEXT = "the cat sat on the mat."
SOURCE = "ab cd"
TARGET = "dc ba."


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer.from_text(ALPHABET)


def tiny(tok, **kw) -> Transformer:
    torch.manual_seed(0)
    config = dict(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4, max_seq_len=32)
    return Transformer(TransformerConfig(**{**config, **kw})).eval()


@pytest.fixture(scope="module")
def decoder(tok):
    return tiny(tok)


@pytest.fixture(scope="module")
def encdec(tok):
    return tiny(tok, architecture="encoder-decoder", n_layers=1, n_encoder_layers=2)


def reference(model, tok, text, source=None):
    """Weights from a capture_attention run of our own: {name: (h, T_q, T_k)}."""
    with torch.no_grad(), capture_attention(model) as w:
        if source is None:
            model(tok.encode(text)[None])
        else:
            model(tok.encode(text)[None], source=tok.encode(source)[None])
    return {name: t[0].numpy() for name, t in w.items()}


def pixel(ax, x, y):
    """RGB at data point (x, y) of a drawn Axes."""
    fig = ax.figure
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    px, py = ax.transData.transform((x, y))
    return rgba[int(round(rgba.shape[0] - py)), int(round(px)), :3].astype(int)


# ------------------------------------------------------------------ static plots


def test_token_label_shows_whitespace():
    assert [token_label(t) for t in [" ", "\n", "\t", "a", " the", "$"]] == ["␣", "⏎", "⇥", "a", "␣the", r"\$"]


def test_heatmap_labels_are_the_tokens():
    w = torch.softmax(torch.randn(5, 5), dim=-1)
    ax = attention_heatmap(w, "ab c\n", title="t")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "␣", "c", "⏎"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "␣", "c", "⏎"]
    assert len(ax.figure.axes) == 2  # the heatmap and its colour bar
    assert ax.get_title() == "t"
    ax2 = attention_heatmap(w[:2], ["x", "y"], ["k0", "k1", "k2", "k3", "k4"], colorbar=False)
    assert [t.get_text() for t in ax2.get_yticklabels()] == ["x", "y"]
    assert [t.get_text() for t in ax2.get_xticklabels()] == ["k0", "k1", "k2", "k3", "k4"]
    assert len(ax2.figure.axes) == 1


def test_heatmap_masked_cells_differ_from_zero_weight():
    t = 4
    w = torch.softmax(torch.zeros(t, t).masked_fill(~causal_mask(t), float("-inf")), dim=-1)
    w[3] = torch.tensor([0.0, 0.5, 0.5, 0.0])  # (3, 0) and (3, 3): visible cells of weight exactly 0
    zero = np.array(matplotlib.colormaps["viridis"](0.0)[:3]) * 255

    ax = attention_heatmap(w, "abcd", mask=causal_mask(t), vmax=1.0)
    patch = [p for p in ax.patches if p.get_gid() == "masked-cells"]
    assert len(patch) == 1 and patch[0].get_visible()
    hidden, visible_zero = pixel(ax, 3, 0), pixel(ax, 0, 3)  # (x=key, y=query)
    assert np.abs(visible_zero - zero).max() <= 2, "a visible weight of 0 keeps the colour map's 0 colour"
    assert np.abs(hidden - zero).max() > 60, "a hidden cell must not look like a weight of 0"
    assert np.ptp(hidden) <= 12, f"hidden cells are grey, got {hidden}"

    ax = attention_heatmap(w, "abcd", vmax=1.0)  # no mask given: nothing hatched, zeros look like zeros
    assert not any(p.get_gid() == "masked-cells" and p.get_visible() for p in ax.patches)
    assert np.abs(pixel(ax, 3, 0) - zero).max() <= 2
    ax = attention_heatmap(w, "abcd", mask="causal")  # the string form builds the same mask
    assert np.array_equal(ax.patches[0].get_path().vertices, patch[0].get_path().vertices)


def test_heatmap_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(T_q, T_k\)"):
        attention_heatmap(torch.rand(1, 2, 3, 3))
    with pytest.raises(ValueError, match="query_tokens has 2 tokens"):
        attention_heatmap(torch.rand(3, 3), ["a", "b"])
    with pytest.raises(ValueError, match="pass key_tokens too"):
        attention_heatmap(torch.rand(2, 3), ["a", "b"])
    with pytest.raises(TypeError, match="bool"):
        attention_heatmap(torch.rand(3, 3), mask=torch.ones(3, 3))
    with pytest.raises(ValueError, match="does not broadcast"):
        attention_heatmap(torch.rand(3, 3), mask=torch.ones(2, 2, dtype=torch.bool))


def test_heatmap_readable_at_64_tokens():
    ax = attention_heatmap(torch.rand(64, 64), "x" * 64)
    labels = ax.get_xticklabels()
    assert len(labels) == 64 and min(lab.get_fontsize() for lab in labels) >= 5.5


def test_mask_gallery_and_plot_mask():
    masks = {"causal": causal_mask(8), "padding": padding_mask([5, 8], 8), "sliding": sliding_window_mask(8, 3),
             "prefix-LM": prefix_lm_mask(8, 3), "packed": block_diagonal_mask(torch.tensor([0, 0, 0, 1, 1, 2, 2, 2]))}
    fig = mask_gallery(masks)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split("\n")[0] for ax in shown] == list(masks)
    assert "batch 0" in shown[1].get_title()
    padding_image = shown[1].images[0].get_array()
    assert padding_image.shape == (8, 8) and (padding_image[:, :5] == 1).all() and (padding_image[:, 5:] == 0).all()
    ax = plot_mask(causal_mask(5), title="causal")
    assert np.array_equal(ax.images[0].get_array(), np.tril(np.ones((5, 5))))


def test_head_entropy_grid():
    uniform = torch.full((1, 3, 4, 4), 0.25)
    peaked = torch.zeros(2, 2, 4, 6)
    peaked[..., 0] = 1.0
    names, grid = mean_head_entropy({"a": uniform, "b": peaked})
    assert names == ["a", "b"] and grid.shape == (2, 3)
    assert np.allclose(grid[0], np.log(4)) and np.allclose(grid[1, :2], 0) and np.isnan(grid[1, 2])
    w = torch.softmax(torch.randn(2, 3, 5, 5), -1)
    assert np.allclose(mean_head_entropy({"x": w})[1][0], attention_entropy(w).mean(dim=(0, 2)).numpy())
    fig = head_entropy_grid({"a": uniform, "b": peaked})
    assert "log T_k = 1.39" in fig.axes[0].get_yticklabels()[0].get_text()


def test_import_chooses_no_backend():
    code = ("import tfcore.viz, matplotlib, sys; "
            "print(matplotlib.rcParams._get_backend_or_none(), 'matplotlib.pyplot' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["None", "False"]


# ------------------------------------------------------------------ AttentionExplorer


def test_explorer_controls_change_image_and_data(decoder, tok):
    ref = reference(decoder, tok, TEXT)
    ex = AttentionExplorer(decoder, tok, TEXT)
    assert list(ex.weights) == ["decoder.0.attn", "decoder.1.attn"]
    assert ex.selected_weights.shape == (len(TEXT), len(TEXT))
    assert ex.query.value == len(TEXT) - 1 and ex.query.max == len(TEXT) - 1
    assert ex.query_tokens == list(TEXT) == ex.key_tokens
    assert bytes(ex.image.value).startswith(b"\x89PNG") and bytes(ex.row_image.value).startswith(b"\x89PNG")
    np.testing.assert_allclose(ex.selected_weights, ref["decoder.0.attn"][0], atol=1e-6)
    assert np.array_equal(ex.selected_mask, np.tril(np.ones((len(TEXT),) * 2, dtype=bool)))

    before = bytes(ex.image.value)
    ex.layer.value = "decoder.1.attn"
    assert bytes(ex.image.value) != before
    np.testing.assert_allclose(ex.selected_weights, ref["decoder.1.attn"][0], atol=1e-6)
    before, row_before = bytes(ex.image.value), bytes(ex.row_image.value)
    ex.head.value = 2
    assert bytes(ex.image.value) != before and bytes(ex.row_image.value) != row_before
    np.testing.assert_allclose(ex.selected_weights, ref["decoder.1.attn"][2], atol=1e-6)

    before, row_before = bytes(ex.image.value), bytes(ex.row_image.value)
    ex.query.value = 7
    assert bytes(ex.image.value) != before and bytes(ex.row_image.value) != row_before  # outline moved, new bars
    np.testing.assert_allclose(ex.selected_row, ref["decoder.1.attn"][2, 7], atol=1e-6)
    assert ex.selected_row[8:].sum() == 0  # causal: query 7 sees keys 0..7 only
    assert "query 7" in ex.status.value or "top key" in ex.status.value

    before = bytes(ex.image.value)
    ex.view.value = "all heads"
    assert bytes(ex.image.value) != before
    np.testing.assert_allclose(ex.layer_weights, ref["decoder.1.attn"], atol=1e-6)
    before = bytes(ex.image.value)
    ex.head.value = 3  # the grid outlines another head
    assert bytes(ex.image.value) != before

    ex.view.value = "compare"
    assert not ex.compare_head.disabled
    ex.head.value, ex.compare_head.value = 2, 0
    np.testing.assert_allclose(ex.compare_weights, ref["decoder.1.attn"][0], atol=1e-6)
    before, row_before = bytes(ex.image.value), bytes(ex.row_image.value)
    ex.compare_head.value = 3
    assert bytes(ex.image.value) != before and bytes(ex.row_image.value) != row_before
    np.testing.assert_allclose(ex.compare_weights, ref["decoder.1.attn"][3], atol=1e-6)
    np.testing.assert_allclose(ex.selected_weights, ref["decoder.1.attn"][2], atol=1e-6)
    assert "head 2" in ex.status.value and "head 3" in ex.status.value  # both heads' rows described
    maps = ex._figures[next(k for k in ex._figures if k[:2] == ("heads", 2))][1]
    assert [hm.ax.get_title() for hm in maps] == ["decoder.1.attn · head 2", "decoder.1.attn · head 3"]
    np.testing.assert_allclose(maps[1].image.get_array(), ex.compare_weights)
    assert maps[0].image.norm.vmax == maps[1].image.norm.vmax  # one colour scale for both heads
    ex.view.value = "head"
    assert ex.compare_weights is None and ex.compare_head.disabled


def test_explorer_rerun_on_new_text(decoder, tok):
    ex = AttentionExplorer(decoder, tok, TEXT)
    ex.query.value = 3
    before = bytes(ex.image.value)
    ex.text.value = "a dog."  # leaving the edited box re-runs the model
    assert ex.tokens == list("a dog.") and ex.query.max == 5 and ex.query.value == 5
    assert bytes(ex.image.value) != before and ex.error is None
    np.testing.assert_allclose(ex.selected_weights, reference(decoder, tok, "a dog.")["decoder.0.attn"][0], atol=1e-6)
    ex.text.value = "a cat on a mat"  # same layout as no earlier text: relabelled or rebuilt, either way right
    ex.run_button.click()
    assert ex.selected_weights.shape == (14, 14) and ex.query_tokens == list("a cat on a mat")
    ex.run("the end")  # the method behind the button
    assert ex.text.value == "the end" and ex.selected_weights.shape == (7, 7)
    n_figures = len(ex._figures)
    ex.run("one two")  # as long as the last text: the figures are kept and relabelled
    assert len(ex._figures) == n_figures
    maps = ex._figures[next(k for k in ex._figures if k[0] == "heads" and k[2] == 7)][1]
    assert [t.get_text() for t in maps[0].ax.get_xticklabels()] == ["o", "n", "e", "␣", "t", "w", "o"]


def test_explorer_display_and_rerun_errors(decoder, tok):
    ex = AttentionExplorer(decoder, tok, TEXT)
    bundle = ex._repr_mimebundle_()
    assert bundle["text/plain"] == f"AttentionExplorer(layers=2, heads=4, tokens={len(TEXT)})"
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.widget.model_id
    assert ex.image in ex.widget.children and ex.row_image in ex.widget.children
    assert decoder.training is False and all(m.backend == "naive" for m in decoder.attention_layers().values())

    weights, image = ex.selected_weights.copy(), bytes(ex.image.value)
    ex.text.value = "UPPER"
    assert ex.error is not None and "outside the vocabulary" in ex.error
    assert "outside the vocabulary" in ex.status.value
    assert np.array_equal(ex.selected_weights, weights) and bytes(ex.image.value) == image
    ex.text.value = "x" * 40
    assert "max_seq_len=32" in ex.error
    ex.text.value = "ok."
    assert ex.error is None and ex.tokens == list("ok.")
    with pytest.raises(ValueError, match="max_seq_len"):
        ex.run("y" * 33)


def test_cross_attention_explorer(encdec, tok):
    ex = AttentionExplorer(encdec, tok, TARGET, source_text=SOURCE)
    ref = reference(encdec, tok, TARGET, SOURCE)
    assert list(ex.weights) == ["encoder.0.attn", "encoder.1.attn", "decoder.0.attn", "decoder.0.cross_attn"]
    assert ex.layer.value == "encoder.0.attn" and ex.query_tokens == list(SOURCE) == ex.key_tokens
    assert ex.selected_mask is None  # the encoder sees every position
    ex.layer.value = "decoder.0.cross_attn"
    ex.head.value = 1
    assert ex.selected_weights.shape == (len(TARGET), len(SOURCE))
    assert ex.query_tokens == list(TARGET) and ex.key_tokens == list(SOURCE)
    assert ex.query.max == len(TARGET) - 1
    np.testing.assert_allclose(ex.selected_weights, ref["decoder.0.cross_attn"][1], atol=1e-6)
    assert ex.selected_mask is None and "cross-attention" in ex.status.value
    ex.layer.value = "decoder.0.attn"
    assert ex.selected_mask is not None
    ex.source.value = "abc"
    assert ex.source_tokens == list("abc")
    ex.layer.value = "decoder.0.cross_attn"
    assert ex.selected_weights.shape == (len(TARGET), 3)
    assert "source_tokens=3" in repr(ex)


def test_encoder_only_explorer(tok):
    model = tiny(tok, architecture="encoder")
    ex = AttentionExplorer(model, tok, TEXT)
    assert list(ex.weights) == ["encoder.0.attn", "encoder.1.attn"]
    assert ex.selected_mask is None and ex.selected_row.min() > 0  # bidirectional: every key visible


def test_explorer_errors(decoder, encdec, tok):
    with pytest.raises(ValueError, match="max_seq_len=32"):
        AttentionExplorer(decoder, tok, "a" * 33)
    with pytest.raises(ValueError, match=r"outside the vocabulary.*'A'"):
        AttentionExplorer(decoder, tok, "A cat")
    with pytest.raises(ValueError, match="needs source_text"):
        AttentionExplorer(encdec, tok, TARGET)
    with pytest.raises(ValueError, match="only for encoder-decoder"):
        AttentionExplorer(decoder, tok, TEXT, source_text=SOURCE)
    with pytest.raises(ValueError, match="non-empty"):
        AttentionExplorer(decoder, tok, "")
    with pytest.raises(ValueError, match="layer must be one of"):
        AttentionExplorer(decoder, tok, TEXT, layer="decoder.9.attn")

    class Bypass(Transformer):  # a model whose forward never reaches its attention layers
        def forward(self, tokens, **kw):
            return self.unembed(self.embed(tokens))

    torch.manual_seed(0)
    broken = Bypass(TransformerConfig(vocab_size=tok.vocab_size, d_model=16, n_layers=1, n_heads=2, max_seq_len=8))
    with pytest.raises(ValueError, match="captured no weights"):
        AttentionExplorer(broken, tok, "abc")
    with pytest.raises(ValueError, match="tfcore Transformer"):
        AttentionExplorer(torch.nn.Linear(2, 2), tok, "abc")


def test_explorer_restores_training_mode_and_backend(tok):
    model = tiny(tok, backend="sdpa", dropout=0.5).train()
    ex = AttentionExplorer(model, tok, TEXT)
    assert model.training and {m.backend for m in model.attention_layers().values()} == {"sdpa"}
    expected = reference(model.eval(), tok, TEXT)["decoder.0.attn"][0]  # dropout was off while capturing
    np.testing.assert_allclose(ex.selected_weights, expected, atol=1e-6)


# ------------------------------------------------------------------ MaskExplorer


def test_mask_explorer_kinds_match_tfcore_masks():
    ex = MaskExplorer(t=10)
    assert np.array_equal(ex.mask, causal_mask(10).numpy())
    checks = {
        "sliding window": (dict(window=3), sliding_window_mask(10, 3)),
        "prefix-LM": (dict(prefix=4), prefix_lm_mask(10, 4)),
        "padding": (dict(length=6), padding_mask([6], 10)[0, 0].expand(10, 10) & causal_mask(10)),
        "packed sequences": (dict(boundaries="4, 7"),
                             block_diagonal_mask(torch.tensor([0] * 4 + [1] * 3 + [2] * 3))[0, 0]),
    }
    for kind, (params, expected) in checks.items():
        before = bytes(ex.image.value)
        for name, value in params.items():
            getattr(ex, name).value = value
        ex.kind.value = kind
        assert np.array_equal(ex.mask, expected.numpy()), kind
        assert bytes(ex.image.value) != before, kind
        assert ex.widget.children  # displayed controls: only this kind's parameters
        visible = ex.weights[ex.mask.any(1)]
        np.testing.assert_allclose(visible.sum(1), 1.0, atol=1e-6)
        assert (ex.weights[~ex.mask] == 0).all()


def test_mask_explorer_parameters_and_edge_cases():
    ex = MaskExplorer(kind="padding", t=8)
    assert ex.length.layout.display is None and ex.window.layout.display == "none"
    ex.length.value = 0
    assert (ex.weights == 0).all() and "see no key" in ex.status.value  # no NaN: tfcore's softmax
    ex.causal.value = False
    ex.length.value = 3
    assert np.array_equal(ex.mask, np.broadcast_to(np.arange(8) < 3, (8, 8)))
    scores = ex.scores.copy()
    ex.seed.value = 1
    assert not np.array_equal(scores, ex.scores)
    ex.t.value = 12
    assert ex.mask.shape == (12, 12) and ex.window.max == 12
    ex.kind.value = "packed sequences"
    ex.boundaries.value = "3, x"
    assert "whole numbers" in ex.error and "whole numbers" in ex.status.value
    ex.boundaries.value = "20"
    assert "[1, T=12)" in ex.error
    ex.boundaries.value = "6"
    assert ex.error is None and ex.mask[7, 5] == False and ex.mask[7, 6] == True  # noqa: E712
    assert repr(ex) == "MaskExplorer(kind='packed sequences', T=12)"
    assert ex._repr_mimebundle_()["text/plain"] == repr(ex)
    with pytest.raises(ValueError, match="kind must be one of"):
        build_mask("diagonal", 4)
