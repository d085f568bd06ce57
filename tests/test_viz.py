"""tfcore.viz without a browser: plots and every widget, checked on their data and their text sizes.

Widgets run headless here: setting a control's ``.value`` fires its observers synchronously,
so each check sets a control and then compares the widget's numbers with an independent
computation (a ``capture_attention`` run, ``torch.nn.functional``, rotation matrices, the
formulas of lesson 08), and its PNG bytes with the previous ones. Text sizes are measured on
what matplotlib draws (``drawn_text_px``): at least 9 px as shown in a 1400 px wide window.
"""

import base64
import io
import math
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
    CostCalculator,
    MaskExplorer,
    NeuronExplorer,
    NormExplorer,
    RopeExplorer,
    attention_heatmap,
    build_mask,
    head_entropy_grid,
    mask_gallery,
    mean_head_entropy,
    plot_mask,
    token_label,
)
from tfcore.viz.explorer import VIEWS
from tfcore.viz.figures import DISPLAY_WIDTH_PX, MIN_TEXT_PX, drawn_text_px, heatmap_grid

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


def png_size(png: bytes) -> tuple[int, int]:
    from PIL import Image

    assert png.startswith(b"\x89PNG")
    return Image.open(io.BytesIO(png)).size


def smallest_px(figure, **kw) -> tuple[str, float]:
    """The smallest text a figure draws, as (text, px) at 100 % zoom in a 1400 px window."""
    sizes = drawn_text_px(figure, **kw)
    assert sizes, "the figure draws no text at all"
    return sizes[0]


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
    assert len(labels) == 64  # every token labelled, and every label readable:
    assert min(px for _, px in drawn_text_px(ax.figure, tight=True)) >= MIN_TEXT_PX


@pytest.mark.parametrize("figsize", [(3.5, 3.5), (6, 6), (9.4, 4.8)])
def test_heatmap_labels_never_overlap(figsize):
    """In any figure the labels keep >= 9 px and do not overlap: every k-th token, k chosen when drawn."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=figsize, layout="constrained")
    for ax in axes:
        attention_heatmap(torch.rand(42, 42), "to be, or not to be, that is the question:", ax=ax, mask="causal")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in axes:
        shown = [t for t in ax.get_yticklabels() if t.get_text()]
        boxes = sorted((t.get_window_extent(renderer) for t in shown), key=lambda b: b.y0)
        for low, high in zip(boxes, boxes[1:]):
            assert high.y0 >= low.y0 + 0.9 * shown[0].get_fontsize() * fig.dpi / 72 - 0.5  # a line apart
        step = int(ax.get_yticks()[1] - ax.get_yticks()[0])
        assert len(shown) == len(range(0, 42, step))
        assert (step == 1) == (figsize == (9.4, 4.8))  # lesson 01's size shows every token; smaller ones thin out
    assert smallest_px(fig, tight=True)[1] >= MIN_TEXT_PX


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
    assert ex.query.value == 0 and ex.query.max == len(TEXT) - 1  # the first query: "next" moves forward
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
    assert ex.tokens == list("a dog.") and ex.query.max == 5 and ex.query.value == 0
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
    # a saved notebook shows this picture where the live widget cannot be drawn: the heatmap above the bars
    picture = png_size(base64.b64decode(bundle["image/png"]))
    heatmap, bars = png_size(bytes(ex.image.value)), png_size(bytes(ex.row_image.value))
    assert picture == (max(heatmap[0], bars[0]), heatmap[1] + bars[1])
    assert "text/html" not in bundle  # nbval compares text/html: nothing there that varies
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


# ------------------------------------------------------------------ readable views (issue 19)


def test_explorer_starts_at_a_chosen_query(decoder, tok):
    ex = AttentionExplorer(decoder, tok, TEXT, query=4)
    assert ex.query.value == 4 and f"query 4 {TEXT[4]!r}" in ex._figures[next(k for k in ex._figures if k[0] == "row")][
        1][0].get_title(loc="left")
    np.testing.assert_allclose(ex.selected_row, reference(decoder, tok, TEXT)["decoder.0.attn"][0, 4], atol=1e-6)
    with pytest.raises(ValueError, match=r"query must lie in \[0, T_q=23\)"):
        AttentionExplorer(decoder, tok, TEXT, query=len(TEXT))


def test_all_heads_view_has_token_labels_and_a_colour_bar(decoder, tok):
    ex = AttentionExplorer(decoder, tok, TEXT)
    ex.view.value = "all heads"
    fast, maps = ex._figures[next(k for k in ex._figures if k[0] == "all heads")][:2]
    assert len(maps) == 4 and len(fast.fig.axes) == 5  # four heads and one colour bar
    colour_bar = fast.fig.axes[-1]
    assert colour_bar.get_ylabel() == "attention weight"
    assert all(hm.image.norm is maps[0].image.norm for hm in maps)  # the colour bar holds for every head
    assert maps[0].image.norm.vmax == pytest.approx(max(float(ex.layer_weights[h].max()) for h in range(4)))
    lay = heatmap_grid([token_label(t) for t in TEXT], [token_label(t) for t in TEXT], 4, dpi=ex.dpi,
                       max_px=(940, 430))
    for i, hm in enumerate(maps):
        shows_queries, shows_keys = lay.shows(i, 4)
        queries = [t.get_text() for t in hm.ax.get_yticklabels()] if shows_queries else []
        keys = [t.get_text() for t in hm.ax.get_xticklabels()] if shows_keys else []
        if shows_queries:
            assert queries == [token_label(t) for t in TEXT][::lay.steps[0]]
        if shows_keys:
            assert keys == [token_label(t) for t in TEXT][::lay.steps[1]]
    assert lay.shows(0, 4)[0] and any(lay.shows(i, 4)[1] for i in range(4))
    assert smallest_px(fast)[1] >= MIN_TEXT_PX


@pytest.mark.parametrize("n_tokens", [8, 23, 42, 64])
def test_explorer_views_are_readable_and_fit_the_window(tok, n_tokens):
    """Labels >= 9 px in every view; heatmap and bar chart together leave room for the controls in 1000 px."""
    model = tiny(tok, max_seq_len=64)
    text = ("the cat sat on the mat. " * 3)[:n_tokens]
    ex = AttentionExplorer(model, tok, text)
    for view in ("head", "compare", "all heads"):
        ex.view.value = view
        heatmap, bars = png_size(bytes(ex.image.value)), png_size(bytes(ex.row_image.value))
        assert max(heatmap[0], bars[0]) <= DISPLAY_WIDTH_PX  # shown at its own size, never shrunk
        assert heatmap[1] + bars[1] <= 600, (view, heatmap, bars)  # + about 230 px of controls + status
    for key, entry in ex._figures.items():
        text_, px = smallest_px(entry[0])
        assert px >= MIN_TEXT_PX, (key, text_, px)
    if n_tokens <= 42:  # lesson 01's sentence: every token labelled in the head and compare views
        for key, entry in ex._figures.items():
            if key[0] == "heads":
                assert [t.get_text() for t in entry[1][0].ax.get_yticklabels()] == [token_label(t) for t in text]


def test_drawn_text_px_measures_what_is_shown():
    """The measure itself: points at the figure's dpi, shrunk with a picture wider than the output area."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 2), dpi=100)
    fig.text(0.1, 0.5, "six points", fontsize=6)
    fig.text(0.1, 0.2, "twelve points", fontsize=12)
    assert drawn_text_px(fig) == [("six points", pytest.approx(6 * 100 / 72)),
                                  ("twelve points", pytest.approx(12 * 100 / 72))]
    wide = Figure(figsize=(19.2, 2), dpi=100)  # 1920 px wide: shown at half size in a 960 px output area
    wide.text(0.1, 0.5, "twelve points", fontsize=12)
    assert drawn_text_px(wide) == [("twelve points", pytest.approx(12 * 100 / 72 / 2))]


def _figures_tfcore_draws():
    """(name, figure, options) for every kind of figure tfcore draws, at the sizes the lessons use."""
    import matplotlib.pyplot as plt

    from tfcore.train import LossPlot

    torch.manual_seed(0)
    words = ["the", "cat", "sat", "on", "the", "mat"]
    yield "heatmap 6 words", attention_heatmap(torch.softmax(torch.randn(6, 6), -1), words).figure, {"tight": True}
    yield "heatmap 42 chars", attention_heatmap(torch.rand(42, 42), "x" * 42, mask="causal").figure, {"tight": True}
    yield "heatmap 100 chars", attention_heatmap(torch.rand(100, 100), "y" * 100).figure, {"tight": True}
    yield "plot_mask 8", plot_mask(causal_mask(8)).figure, {"tight": True}
    yield "plot_mask 64", plot_mask(causal_mask(64)).figure, {"tight": True}
    masks = {"causal": causal_mask(8), "padding": padding_mask([5, 8], 8), "sliding": sliding_window_mask(8, 3),
             "prefix-LM": prefix_lm_mask(8, 3), "packed": block_diagonal_mask(torch.tensor([0, 0, 0, 1, 1, 2, 2, 2]))}
    yield "mask_gallery", mask_gallery(masks), {"tight": True}
    weights = {f"decoder.{i}.attn": torch.softmax(torch.randn(1, 4, 16, 16), -1) for i in range(2)}
    yield "head_entropy_grid", head_entropy_grid(weights), {"tight": True}
    plot = LossPlot(display=False)
    from matplotlib.figure import Figure
    captured = {}
    original = Figure.savefig

    def keep(self, *a, **kw):
        captured["fig"] = self
        return original(self, *a, **kw)

    Figure.savefig = keep
    try:
        plot.render([3.0 - 0.01 * i for i in range(100)], [{"step": 50, "val_loss": 2.6}])
    finally:
        Figure.savefig = original
    yield "LossPlot", captured["fig"], {}
    plt.close("all")


def test_every_figure_tfcore_draws_is_readable():
    problems = []
    for name, fig, options in _figures_tfcore_draws():
        text, px = smallest_px(fig, **options)
        if px < MIN_TEXT_PX:
            problems.append(f"{name}: {text!r} is {px:.1f} px")
    assert not problems, problems


def test_every_widget_figure_is_readable(decoder, tok, encdec):
    widgets = [AttentionExplorer(decoder, tok, TEXT), AttentionExplorer(encdec, tok, TARGET, source_text=SOURCE),
               MaskExplorer(t=32), NeuronExplorer(), NormExplorer(), RopeExplorer(), CostCalculator("Llama-2 70B")]
    ex = widgets[0]
    for view in VIEWS:
        ex.view.value = view
    figures = [(f"explorer {key}", entry[0]) for w in widgets[:2] for key, entry in w._figures.items()]
    figures += [(f"mask explorer T={t}", entry[0]) for t, entry in widgets[2]._figures.items()]
    figures += [(type(w).__name__, w._fast) for w in widgets[3:]]
    problems = [f"{name}: {text!r} is {px:.1f} px" for name, fast in figures for text, px in [smallest_px(fast)]
                if px < MIN_TEXT_PX]
    assert not problems, problems
    for w in widgets:  # and no picture is so wide that it is shrunk
        assert png_size(w.picture())[0] <= DISPLAY_WIDTH_PX, type(w).__name__


def test_every_widget_bundle_has_a_picture_and_a_stable_text(decoder, tok):
    for w, text in ((MaskExplorer(), "MaskExplorer(kind='causal', T=12)"),
                    (NeuronExplorer(), "NeuronExplorer(activation='gelu', d_model=8)"),
                    (NormExplorer(), "NormExplorer(d=6)"),
                    (RopeExplorer(), "RopeExplorer(d_head=8, max_pos=48, base=10000)"),
                    (CostCalculator(), "CostCalculator(model='GPT-2 small', T=1024, dtype='bfloat16')")):
        bundle = w._repr_mimebundle_()
        assert bundle["text/plain"] == text
        assert base64.b64decode(bundle["image/png"]) == w.picture() == bytes(w.image.value)
        assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == w.widget.model_id


# ------------------------------------------------------------------ NeuronExplorer (lesson 04)


def _reference_m(kind, ex, x):
    """The unit's activation from torch.nn.functional, with the keys read off the explorer's MLP module."""
    import torch.nn.functional as F

    x = torch.as_tensor(x, dtype=torch.float64)
    if kind == "swiglu":
        module = ex._module("swiglu")
        g = x @ module.w1.weight[0].detach().double()
        u = x @ module.w3.weight[0].detach().double()
        return float(F.silu(g) * u)
    module = ex._module(kind)
    z = x @ module.fc_in.weight[0].detach().double() + float(module.fc_in.bias[0].detach())
    return float({"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh")}[kind](z))


def test_neuron_explorer_numbers_follow_the_input():
    ex = NeuronExplorer()
    e1, e2 = ex.directions.double()
    assert abs(float(e1 @ e2)) < 1e-6 and float(e1.norm()) == pytest.approx(1, abs=1e-6)
    for kind in ("relu", "gelu", "gelu_tanh", "swiglu"):
        before = bytes(ex.image.value)
        ex.activation.value = kind
        assert bytes(ex.image.value) != before, kind
        for along, across in ((1.3, 0.2), (-0.8, 2.0), (2.5, -1.5)):
            before = bytes(ex.image.value)
            ex.along.value, ex.across.value = along, across
            assert bytes(ex.image.value) != before, (kind, along, across)
            x = along * e1 + across * e2
            np.testing.assert_allclose(ex.x.double().numpy(), x.numpy(), atol=1e-6)
            assert ex.m == pytest.approx(_reference_m(kind, ex, x), abs=1e-5), (kind, along, across)
            np.testing.assert_allclose(ex.output, ex.m * ex.value.numpy(), atol=1e-5)  # the unit writes m v
            assert f"m = {ex.m:.3f}" in ex.status.value


def test_neuron_explorer_relu_and_gelu_see_only_the_key_direction():
    ex = NeuronExplorer(activation="gelu", along=1.2, across=-2.0)
    m = ex.m
    ex.across.value = 2.5  # moving across the key leaves k . x unchanged
    assert ex.m == pytest.approx(m, abs=1e-6) and ex.pre["z"] == pytest.approx(1.5 * 1.2 - 0.5, abs=1e-5)
    ex.activation.value = "swiglu"  # a SwiGLU unit's up key has a part across the gate key
    m_swiglu = ex.m
    ex.across.value = -2.5
    assert abs(ex.m - m_swiglu) > 0.1
    ex.activation.value = "relu"
    ex.along.value = -1.0  # z = -2: ReLU is off, and the unit adds nothing
    assert ex.m == 0 and not ex.output.any()


def test_neuron_explorer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="activation must be one of"):
        NeuronExplorer(activation="tanh")
    with pytest.raises(ValueError, match=r"along must lie in \[-3, 3\]"):
        NeuronExplorer(along=4)
    with pytest.raises(ValueError, match="d_model must be at least 2"):
        NeuronExplorer(d_model=1)


# ------------------------------------------------------------------ NormExplorer (lesson 05)


def test_norm_explorer_matches_torch_norms():
    import torch.nn.functional as F

    ex = NormExplorer()
    for i, value in ((0, -2.5), (3, 1.75), (5, 0.0)):
        before = bytes(ex.image.value)
        ex.components[i].value = value
        assert bytes(ex.image.value) != before
        raw = torch.tensor([w.value for w in ex.components], dtype=torch.float64)
        np.testing.assert_allclose(ex.x, raw.numpy())
        np.testing.assert_allclose(ex.layer, F.layer_norm(raw, (6,), eps=1e-5).numpy(), atol=1e-12)
        np.testing.assert_allclose(ex.rms, F.rms_norm(raw, (6,), eps=1e-6).numpy(), atol=1e-12)
        assert f"mean {ex.stats['input']['mean']:.3f}" in ex.status.value
        assert f"RMS {ex.stats['input']['rms']:.3f}" in ex.status.value
    assert "std 1.000" in ex.status.value and "RMS 1.000" in ex.status.value


def test_norm_explorer_shift_and_scale():
    ex = NormExplorer()
    layer, rms = ex.layer.copy(), ex.rms.copy()
    before = bytes(ex.image.value)
    ex.shift.value = 2.0  # a constant added to every component: LayerNorm removes it, RMSNorm does not
    assert bytes(ex.image.value) != before
    np.testing.assert_allclose(ex.x, np.array([w.value for w in ex.components]) + 2.0)
    np.testing.assert_allclose(ex.layer, layer, atol=1e-5)
    assert np.abs(ex.rms - rms).max() > 0.1
    layer, rms = ex.layer.copy(), ex.rms.copy()
    ex.scale.value = 3.0  # both remove the scale
    np.testing.assert_allclose(ex.layer, layer, atol=1e-5)
    np.testing.assert_allclose(ex.rms, rms, atol=1e-5)
    assert ex.stats["input"]["rms"] == pytest.approx(3 * ex.stats["rms"]["rms"] * np.sqrt((ex.x ** 2).mean()) /
                                                     (3 * ex.stats["rms"]["rms"]), rel=1e-9)
    for w in ex.components:  # the zero vector: no division by zero, and no "-0.000" printed
        w.value = 0.0
    ex.shift.value = 0.0
    assert np.isfinite(ex.layer).all() and np.isfinite(ex.rms).all() and "-0.000" not in ex.status.value
    with pytest.raises(ValueError, match=r"values\[1\] must lie in \[-3, 3\]"):
        NormExplorer([0, 5])
    with pytest.raises(ValueError, match="2 to 12 components"):
        NormExplorer([1.0])


# ------------------------------------------------------------------ RopeExplorer (lesson 07)


def _rotate(vec: torch.Tensor, pos: int, base: float) -> torch.Tensor:
    """RoPE by explicit 2 x 2 rotation matrices on pairs (2i, 2i + 1), in float64."""
    d = vec.shape[-1]
    out = vec.clone().double()
    for i in range(d // 2):
        a = pos * base ** (-2 * i / d)
        rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
        out[2 * i: 2 * i + 2] = rot @ vec[2 * i: 2 * i + 2].double()
    return out


def test_rope_explorer_rotates_and_scores_like_rotation_matrices():
    ex = RopeExplorer()
    for m, n in ((6, 2), (30, 7), (0, 48)):
        before = bytes(ex.image.value)
        ex.query_pos.value, ex.key_pos.value = m, n
        assert bytes(ex.image.value) != before
        q_rot, k_rot = _rotate(ex.q, m, 10000.0), _rotate(ex.k, n, 10000.0)
        np.testing.assert_allclose(ex.q_rot, q_rot.numpy(), atol=1e-12)
        np.testing.assert_allclose(ex.k_rot, k_rot.numpy(), atol=1e-12)
        assert ex.score == pytest.approx(float(q_rot @ k_rot) / math.sqrt(8), abs=1e-12)
        assert f"{ex.score:.4f}" in ex.status.value and ex.scores[m, n] == pytest.approx(ex.score, abs=1e-12)


def test_rope_explorer_score_depends_on_the_offset_only():
    ex = RopeExplorer(query_pos=9, key_pos=4)
    score = ex.score
    ex.query_pos.value, ex.key_pos.value = 30, 25  # both moved by 21: the same offset
    assert ex.score == pytest.approx(score, abs=1e-12)
    ex.key_pos.value = 26
    assert abs(ex.score - score) > 1e-3
    s = ex.scores
    for shift in (1, 7, 20):  # every diagonal of the (m, n) grid is constant
        np.testing.assert_allclose(s[shift:, shift:], s[:-shift, :-shift], atol=1e-12)
    before = bytes(ex.image.value)
    ex.pair.value = 2  # another pair is drawn; the score is the same
    assert bytes(ex.image.value) != before and ex.score == pytest.approx(s[30, 26])
    assert "pair 2 (channels 4, 5)" in ex.status.value
    with pytest.raises(ValueError, match="d_head must be even"):
        RopeExplorer(d_head=7)
    with pytest.raises(ValueError, match=r"query_pos must lie in \[0, max_pos=48\]"):
        RopeExplorer(query_pos=49)


# ------------------------------------------------------------------ CostCalculator (lesson 08)


def test_cost_calculator_gpt2_small_by_hand():
    """GPT-2 small at T = 1024, B = 1, bf16, against the formulas written out here."""
    from tfcore.complexity import parameter_count
    from tfcore.model import gpt2_config

    calc = CostCalculator("GPT-2 small")
    d, h, L, T, B, nbytes = 768, 12, 12, 1024, 1, 2
    v = calc.values
    assert v["attention"] == 4 * B * h * T * T * (d // h)
    assert v["projections"] == 2 * B * T * 4 * d * d
    assert v["mlp"] == 2 * B * T * 2 * d * 4 * d
    assert v["forward"] == L * (v["attention"] + v["projections"] + v["mlp"])
    assert v["scores"] == B * h * T * T * nbytes
    assert v["kv_cache"] == 2 * L * B * T * h * (d // h) * nbytes == 36 * 2 ** 20
    assert v["crossover"] == pytest.approx(6 * d)  # T = 6 d for MHA with a 4x GELU MLP
    assert v["parameters"] == parameter_count(gpt2_config())["total"]
    assert "36.0 MiB" in calc.status.value and f"{v['parameters'] / 1e6:,.1f} M" in calc.status.value


def test_cost_calculator_named_models_and_controls():
    from tfcore import complexity as cx

    calc = CostCalculator()
    before = bytes(calc.image.value)
    calc.model.value = "Llama-2 7B"
    assert bytes(calc.image.value) != before and calc.seq_len.value == 4096
    assert calc.values["parameters"] == pytest.approx(6.74e9, rel=2e-3)  # the published size
    assert calc.values["kv_cache"] == 2 * 2 ** 30  # 0.5 MiB per token in bf16 (32 layers, 32 KV heads of 128)
    calc.model.value = "Llama-2 70B"
    c = calc.config
    assert (c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.d_ff) == (8192, 80, 64, 8, 28672)
    assert calc.values["parameters"] == pytest.approx(68.98e9, rel=2e-3)
    assert calc.values["kv_cache"] == cx.kv_cache_bytes(80, 1, 4096, 8, 128, 2)
    before, flops = bytes(calc.image.value), calc.values["forward"]
    calc.dtype.value = "float32"  # memory doubles, FLOPs do not change
    assert calc.values["kv_cache"] == 2 * cx.kv_cache_bytes(80, 1, 4096, 8, 128, 2) and calc.values["forward"] == flops
    assert bytes(calc.image.value) != before
    before = bytes(calc.image.value)
    calc.seq_len.value = 8192
    assert bytes(calc.image.value) != before
    assert calc.values["attention"] == cx.attention_flops(1, 64, 8192, 128)
    assert calc.values["scores"] == cx.score_memory_bytes(1, 64, 8192, 4)
    calc.batch.value = 4
    assert calc.values["kv_cache"] == cx.kv_cache_bytes(80, 4, 8192, 8, 128, 4)
    calc.sizes["n_kv_heads"].value = 64  # an edit makes the model "custom", keeping Llama's other choices
    assert calc.model.value == "custom" and calc.config.n_kv_heads == 64 and calc.config.mlp == "swiglu"
    assert calc.values["kv_cache"] == cx.kv_cache_bytes(80, 4, 8192, 64, 128, 4)
    assert "custom (based on Llama-2 70B)" in calc.status.value
    values, image = dict(calc.values), bytes(calc.image.value)
    calc.sizes["n_kv_heads"].value = 7  # impossible: an error, and the last numbers stay
    assert "multiple of n_kv_heads=7" in calc.error and "multiple of n_kv_heads=7" in calc.status.value
    assert calc.values == values and bytes(calc.image.value) == image
    calc.mlp.value = "gelu_tanh"
    assert calc.error is not None  # still impossible
    calc.sizes["n_kv_heads"].value = 8
    assert calc.error is None and calc.values["mlp"] == cx.mlp_flops(4, 8192, 8192, 28672, "gelu")
    with pytest.raises(ValueError, match="model must be one of"):
        CostCalculator("GPT-5")
    with pytest.raises(ValueError, match="seq_len must be a power of two"):
        CostCalculator(seq_len=1000)


# ------------------------------------------------------------------ Table


def test_table_html_and_text():
    from tfcore.viz import Table

    t = Table(["tool", "healthy", "A"],
              [["leakage test", "ok 0 pairs", "FAIL 276 pairs"], ["loss <x>", "2.572", "2.619"]])
    html_out = t._repr_html_()
    assert html_out.count("<tr>") == 3 and html_out.count("<th style") == 3 and html_out.count("<td style") == 6
    assert "loss &lt;x&gt;" in html_out and "<x>" not in html_out  # escaped
    assert repr(t).splitlines() == ["tool          healthy     A",
                                    "------------  ----------  --------------",
                                    "leakage test  ok 0 pairs  FAIL 276 pairs",
                                    "loss <x>      2.572       2.619"]
    numbers = Table(["d", "params"], [[768, 1], [4096, 12345]], title="sizes")
    assert repr(numbers).splitlines() == ["sizes", "   d  params", "----  ------", " 768       1", "4096   12345"]
    assert '<td style="text-align:right">4096</td>' in numbers._repr_html_() and "<caption>sizes</caption>" in \
        numbers._repr_html_()
    with pytest.raises(ValueError, match=r"rows\[1\] has 1 values but there are 2 columns"):
        Table(["a", "b"], [[1, 2], [3]])
