"""AttentionExplorer: every layer and head of a model on one text, behind a few controls.

The model runs once per text (under ``capture_attention``); moving a control only redraws
figures that are kept between redraws, so it takes tens of milliseconds on a laptop CPU.
Figures become PNG bytes in ``ipywidgets.Image`` widgets (no ``Output`` widget, no
``interact``: both misbehave under nbval and in saved notebooks).
"""

from __future__ import annotations

import html
import math

import numpy as np

from tfcore.viz.figures import (
    FastFigure,
    HeatmapGrid,
    heatmap_grid,
    held,
    image_widget,
    new_figure,
    stack_png,
    widget_bundle,
)
from tfcore.viz.plots import (
    HIGHLIGHT,
    MASKED_FACE,
    MASKED_HATCH,
    Heatmap,
    _tick_positions,
    masked_path,
    relabel,
    token_label,
)

VIEWS = ("head", "all heads", "compare")
SERIES_COLOURS = ("#2f6fad", "#e8892a")
SMALL = 9  # points: colour-bar ticks, axis labels (10 px at the widgets' 80 dpi)
# The heatmaps' room in pixels: with the controls above and the bar chart below, the whole
# explorer fits a 1400 x 1000 browser window in JupyterLab (file browser open).
HEATMAP_PX = (940, 430)


def _describe(name: str, causal: bool) -> str:
    if name.endswith("cross_attn"):
        return f"{name}  (cross-attention)"
    return f"{name}  ({'causal ' if causal else ''}self-attention)"


class AttentionExplorer:
    """Interactive view of the attention weights of every layer and head of ``model`` on ``text``.

    model: a ``tfcore`` ``Transformer`` (decoder, encoder or encoder-decoder).
    tokenizer: has ``encode(str) -> (T,) ids`` and ``decode(ids) -> str`` (e.g. ``CharTokenizer``).
    text: the decoder's input (the encoder's for an encoder-only model).
    source_text: the encoder's input of an encoder-decoder model (needed for cross-attention).

    Controls (all ipywidgets, reachable as attributes): ``layer`` (Dropdown of layer names),
    ``head`` (IntSlider), ``view`` ("head", "all heads": every head of the layer as a grid,
    "compare": ``head`` and ``compare_head`` side by side), ``compare_head``, ``query``
    (IntSlider, starting at ``query``, default the first: that query's row is outlined and drawn
    as bars over the keys), ``text`` and ``source`` (Text) with the ``run_button``. ``status``
    explains the view or what went wrong.

    Data for checks: ``weights`` {layer: (h, T_q, T_k) array}, ``selected_weights``
    (T_q, T_k), ``compare_weights``, ``selected_row`` (T_k,), ``query_tokens``,
    ``key_tokens``. ``widget`` is the top-level VBox; a bare ``explorer`` at the end of a
    cell displays it, with a PNG picture of the view as it is then (``picture()``), which a
    saved notebook shows where the live widget cannot be drawn.

    Raises ValueError for what cannot be shown: text longer than ``max_seq_len``,
    characters outside the vocabulary, an encoder-decoder model without ``source_text``, a
    model whose attention layers captured nothing.
    """

    def __init__(self, model, tokenizer, text: str, source_text: str | None = None, *, layer: str | None = None,
                 head: int = 0, query: int = 0, dpi: float = 80, cmap="viridis") -> None:
        self.model, self.tokenizer, self.dpi, self.cmap = model, tokenizer, dpi, cmap
        self.error: str | None = None
        self._figures: dict[tuple, list] = {}  # layout key -> [FastFigure, parts..., tokens shown]
        self._holding = False
        self._capture(text, source_text)
        self._build_widgets(layer, head, query)
        self._render()

    # ------------------------------------------------------------ running the model

    @property
    def architecture(self) -> str:
        return getattr(getattr(self.model, "config", None), "architecture", "decoder")

    def _encode(self, what: str, text) -> tuple[object, list[str]]:
        if not isinstance(text, str) or not text:
            raise ValueError(f"{what} must be a non-empty string, got {text!r}")
        try:
            ids = self.tokenizer.encode(text)
        except ValueError as e:
            raise ValueError(f"{what} {_short(text)} cannot be encoded: {e}") from None
        limit = getattr(getattr(self.model, "config", None), "max_seq_len", None)
        if limit is not None and len(ids) > limit:
            raise ValueError(f"{what} has {len(ids)} tokens but the model's context is max_seq_len={limit}: "
                             f"shorten it to at most {limit}")
        tokens = [self.tokenizer.decode([int(i)]) for i in ids]
        return ids, tokens

    def _capture(self, text: str, source_text: str | None) -> None:
        """Run the model once on the text(s); fill ``weights`` and the token lists, or raise ValueError."""
        import torch

        from tfcore.model import capture_attention

        if not hasattr(self.model, "attention_layers"):
            raise ValueError(f"model must be a tfcore Transformer (with attention_layers()), "
                             f"got {type(self.model).__name__}")
        arch = self.architecture
        if arch == "encoder-decoder" and not source_text:
            raise ValueError("this encoder-decoder model needs source_text= (the encoder's input): cross-attention "
                             "has queries from the target text and keys from the source text")
        if arch != "encoder-decoder" and source_text:
            raise ValueError(f"source_text is only for encoder-decoder models; this model is architecture={arch!r}")
        ids, tokens = self._encode("text", text)
        src_ids, src_tokens = self._encode("source_text", source_text) if source_text else (None, None)
        try:
            device = next(self.model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        was_training = self.model.training
        self.model.eval()  # dropout off: the weights shown are the model's
        try:
            with torch.no_grad(), capture_attention(self.model) as captured:
                x = torch.as_tensor(ids).long().reshape(1, -1).to(device)
                if src_ids is not None:
                    self.model(x, source=torch.as_tensor(src_ids).long().reshape(1, -1).to(device))
                else:
                    self.model(x)
        finally:
            self.model.train(was_training)
        order = [n for n in self.model.attention_layers() if n in captured] + \
                [n for n in captured if n not in self.model.attention_layers()]
        if not order:
            raise ValueError(f"the model ran but its {len(self.model.attention_layers())} attention layers "
                             f"captured no weights: nothing to show")
        weights, labels, masks = {}, {}, {}
        for name in order:
            w = captured[name][0].detach().float().cpu().numpy()  # (h, T_q, T_k), batch element 0
            weights[name] = w
            q = src_tokens if (name.startswith("encoder") and src_tokens is not None) else tokens
            k = src_tokens if name.endswith("cross_attn") else q
            if len(q) != w.shape[1] or len(k) != w.shape[2]:  # an unusual model: number the positions
                q, k = [str(i) for i in range(w.shape[1])], [str(j) for j in range(w.shape[2])]
            labels[name] = (q, k)
            # A causal layer's weights are exactly 0 above the diagonal (softmax of finite scores never is).
            t_q, t_k = w.shape[1:]
            causal = t_q == t_k > 1 and not name.endswith("cross_attn") and not np.triu(w, 1).any()
            masks[name] = np.tril(np.ones((t_q, t_k), dtype=bool)) if causal else None
        self.shown_text, self.shown_source_text = text, source_text
        self.tokens, self.source_tokens = tokens, src_tokens
        self.weights: dict[str, np.ndarray] = weights
        self._labels, self._masks = labels, masks

    def run(self, text: str | None = None, source_text: str | None = None) -> None:
        """Re-run the model on new text (and source text); raises ValueError and keeps the old view if impossible."""
        text = self.text.value if text is None else text
        if source_text is None and self.architecture == "encoder-decoder":
            source_text = self.source.value
        self._capture(text, source_text or None)
        self.error = None
        with held(self):
            self.text.value = text
            self.source.value = source_text or ""
            self._sync_ranges(keep_query=False)
        self._render()

    def _on_run(self, *_):
        try:
            self.run(self.text.value, self.source.value if self.architecture == "encoder-decoder" else None)
        except ValueError as e:
            self.error = str(e)
            self._set_status()

    def _on_text(self, change) -> None:
        """Leaving the text box (or the run button) re-runs the model when the text differs from the one shown."""
        if self._holding:
            return
        source = (self.source.value or None) if self.architecture == "encoder-decoder" else None
        if (self.text.value, source) != (self.shown_text, self.shown_source_text):
            self._on_run()

    # ------------------------------------------------------------ widgets

    def _build_widgets(self, layer: str | None, head: int, query: int) -> None:
        import ipywidgets as W

        names = list(self.weights)
        if layer is not None and layer not in self.weights:
            raise ValueError(f"layer must be one of {names}, got {layer!r}")
        layer = layer or names[0]
        h = self.weights[layer].shape[0]
        if not 0 <= head < h:
            raise ValueError(f"head must lie in [0, {h}), got {head}")
        t_q = self.weights[layer].shape[1]
        if not 0 <= query < t_q:
            raise ValueError(f"query must lie in [0, T_q={t_q}) for layer {layer!r}, got {query}")
        style = {"description_width": "56px"}
        self.layer = W.Dropdown(options=[(_describe(n, self._masks[n] is not None), n) for n in names], value=layer,
                                description="layer", style=style, layout=W.Layout(width="340px"))
        self.view = W.ToggleButtons(options=list(VIEWS), value="head", style={"button_width": "86px"},
                                    tooltips=["one head", "every head of the layer", "two heads side by side"])
        self.head = W.IntSlider(value=head, min=0, max=h - 1, description="head", style=style,
                                continuous_update=True)
        self.compare_head = W.IntSlider(value=1 % h, min=0, max=h - 1, description="vs head",
                                        style=style, disabled=True)
        self.query = W.IntSlider(value=0, min=0, max=1, description="query", style=style,
                                 layout=W.Layout(width="420px"))
        self.query_token = W.Label()
        # Textarea, not Text: a newline in the text stays visible and editable
        self.text = W.Textarea(value=self.shown_text, description="text", continuous_update=False, rows=2,
                               style=style, layout=W.Layout(width="420px"))
        self.source = W.Textarea(value=self.shown_source_text or "", description="source", continuous_update=False,
                                 rows=2, style=style, layout=W.Layout(width="420px"))
        self.run_button = W.Button(description="run", icon="play", tooltip="run the model on the text",
                                   layout=W.Layout(width="80px"))
        self.status = W.HTML()
        self.image, self.row_image = image_widget(), image_widget()
        for w, cls in ((self.layer, "tfcore-layer"), (self.view, "tfcore-view"), (self.head, "tfcore-head"),
                       (self.compare_head, "tfcore-compare-head"), (self.query, "tfcore-query"),
                       (self.text, "tfcore-text"), (self.source, "tfcore-source"), (self.run_button, "tfcore-run"),
                       (self.status, "tfcore-status"), (self.image, "tfcore-heatmap"),
                       (self.row_image, "tfcore-row")):
            w.add_class(cls)
        self._sync_ranges(keep_query=False)
        self.query.value = query
        inputs = [self.text] + ([self.source] if self.architecture == "encoder-decoder" else []) + [self.run_button]
        self.widget = W.VBox([
            W.HBox([self.layer, self.view]),
            W.HBox([self.head, self.compare_head]),
            W.HBox([self.query, self.query_token]),
            W.HBox(inputs),
            self.status,
            self.image,
            self.row_image,
        ])
        self.widget.add_class("tfcore-explorer")
        self.layer.observe(self._on_layer, "value")
        for w in (self.head, self.compare_head, self.query):
            w.observe(self._on_control, "value")
        self.view.observe(self._on_view, "value")
        self.text.observe(self._on_text, "value")
        self.source.observe(self._on_text, "value")
        self.run_button.on_click(self._on_run)


    def _sync_ranges(self, keep_query: bool = True) -> None:
        """Fit the head and query sliders to the selected layer (and the text)."""
        h, t_q, _ = self.weights[self.layer.value].shape
        with held(self):
            for s in (self.head, self.compare_head):
                s.max = max(h - 1, 0)
            self.query.max = t_q - 1
            if not keep_query:
                self.query.value = 0  # the first query: the slider's arrow key steps forward from there
            self.query.value = min(self.query.value, t_q - 1)

    def _on_layer(self, change) -> None:
        if self._holding:
            return
        self._sync_ranges()
        self._render()

    def _on_view(self, change) -> None:
        self.compare_head.disabled = change["new"] != "compare"
        if change["new"] == "compare" and self.compare_head.value == self.head.value and self.head.max > 0:
            with held(self):  # comparing a head with itself shows nothing: start from the next head
                self.compare_head.value = (self.head.value + 1) % (self.head.max + 1)
        if not self._holding:
            self._render()

    def _on_control(self, change) -> None:
        if self._holding:
            return
        if change["owner"] is self.compare_head and self.view.value != "compare":
            return
        self._render()

    # ------------------------------------------------------------ selected data

    @property
    def layer_weights(self) -> np.ndarray:
        """Every head of the selected layer: (h, T_q, T_k)."""
        return self.weights[self.layer.value]

    @property
    def selected_weights(self) -> np.ndarray:
        """The selected head's weights: (T_q, T_k)."""
        return self.weights[self.layer.value][self.head.value]

    @property
    def compare_weights(self) -> np.ndarray | None:
        """The second head's weights (T_q, T_k) in the "compare" view, else None."""
        return self.weights[self.layer.value][self.compare_head.value] if self.view.value == "compare" else None

    @property
    def selected_row(self) -> np.ndarray:
        """The selected query's attention over the keys: (T_k,)."""
        return self.selected_weights[self.query.value]

    @property
    def selected_mask(self) -> np.ndarray | None:
        """The selected layer's mask (T_q, T_k), True = may attend; None when every key is visible."""
        return self._masks[self.layer.value]

    @property
    def query_tokens(self) -> list[str]:
        return self._labels[self.layer.value][0]

    @property
    def key_tokens(self) -> list[str]:
        return self._labels[self.layer.value][1]

    # ------------------------------------------------------------ drawing

    def _render(self) -> None:
        self.image.value = self._render_main()
        self.row_image.value = self._render_row()
        self._set_status()

    def _heads(self) -> list[int]:
        return [self.head.value] + ([self.compare_head.value] if self.view.value == "compare" else [])

    def _render_main(self) -> bytes:
        layer, view = self.layer.value, self.view.value
        q_tokens, k_tokens = self._labels[layer]
        mask, row = self._masks[layer], self.query.value
        w = self.weights[layer]
        heads = list(range(w.shape[0])) if view == "all heads" else self._heads()
        key = (view if view == "all heads" else "heads", len(heads)) + _shape_key(q_tokens, k_tokens)
        entry = self._figure(key, lambda: self._heatmap_figure(len(heads), q_tokens, k_tokens, view == "all heads"))
        fast, maps, frames = entry[:3]
        if self._relabel(entry, q_tokens, k_tokens):
            for hm in maps:
                relabel(hm.ax.yaxis, [token_label(t) for t in q_tokens])
                relabel(hm.ax.xaxis, [token_label(t) for t in k_tokens])
        top = max(_top(w[h]) for h in heads)  # one colour scale for every head shown: the colour bar's
        if top != maps[0].image.norm.vmax:
            fast.invalidate()  # the colour bar is part of the background
        for hm, frame, h, i in zip(maps, frames, heads, range(len(heads))):
            hm.update(w[h], mask, top, row)
            if view == "all heads":
                chosen = h == self.head.value
                hm.ax.set_title(f"head {h}", fontsize=10, color=HIGHLIGHT if chosen else "black",
                                fontweight="bold" if chosen else "normal")
                frame.set_visible(chosen)
            else:
                colour = SERIES_COLOURS[i] if len(heads) > 1 else "black"
                hm.ax.set_title(f"{layer} · head {h}", fontsize=10, color=colour)
        if view == "all heads":
            fast.fig._suptitle.set_text(f"{layer}: every head, one colour scale")
        return fast.png()

    def _render_row(self) -> bytes:
        layer, q = self.layer.value, self.query.value
        q_tokens, k_tokens = self._labels[layer]
        heads = self._heads()
        entry = self._figure(("row", len(heads)) + _shape_key([], k_tokens),
                             lambda: self._row_figure(len(heads), k_tokens))
        fast, (ax, bars, hidden) = entry[:2]
        if self._relabel(entry, [], k_tokens):
            relabel(ax.xaxis, [token_label(t) for t in k_tokens])
        w = self.weights[layer]
        mask = self._masks[layer]
        visible = mask[q] if mask is not None else np.ones(len(k_tokens), dtype=bool)
        for patch, h in zip(bars, heads):
            patch.set_path(_bars_path(w[h, q], patch.offset, patch.width))
        ax.set_ylim(0, _y_top(max(_top(w[h, q]) for h in heads)))
        hidden.set_path(_column_path(visible))
        hidden.set_visible(not visible.all())
        ax.set_title(f"query {q} {token_label(q_tokens[q])!r}: attention over the keys "
                     f"({', '.join(f'head {h}' for h in heads)})", fontsize=10, loc="left")
        return fast.png()

    def _row_details(self) -> str:
        """HTML lines about the selected query's row: top key and entropy per head shown."""
        layer, q = self.layer.value, self.query.value
        _, k_tokens = self._labels[layer]
        mask = self._masks[layer]
        n = int(mask[q].sum()) if mask is not None else len(k_tokens)
        lines = []
        for h, colour in zip(self._heads(), SERIES_COLOURS):
            row = self.weights[layer][h, q]
            j = int(np.nanargmax(row))
            lines.append(f'<span style="color:{colour}">&#9632;</span> head {h}: top key {j} '
                         f'{html.escape(repr(token_label(k_tokens[j])))} ({row[j]:.2f}) · entropy '
                         f'{_entropy(row):.2f} nats (uniform over the {n} visible keys: {math.log(max(n, 1)):.2f})')
        return "<br>".join(lines)

    def _figure(self, key: tuple, build) -> list:
        """The figure kept for one layout (view and sizes): built once, then only updated.

        Returns a list [FastFigure, parts..., labels]: the last item records the tokens on the
        axes, so that a new text of the same length only relabels the axes (``_relabel``).
        """
        if key not in self._figures:
            self._figures[key] = list(build()) + [None]
        return self._figures[key]

    @staticmethod
    def _relabel(entry: list, q_tokens: list[str], k_tokens: list[str]) -> bool:
        """True (and the background invalidated) when the figure shows other tokens than these."""
        labels = (tuple(q_tokens), tuple(k_tokens))
        if entry[-1] is None:
            entry[-1] = labels
            return False
        if entry[-1] == labels:
            return False
        entry[-1] = labels
        entry[0].invalidate()
        return True

    def _layout(self, q_tokens: list[str], k_tokens: list[str], panels: int, cols: int | None = None) -> HeatmapGrid:
        return heatmap_grid([token_label(t) for t in q_tokens], [token_label(t) for t in k_tokens], panels, cols,
                            dpi=self.dpi, max_px=HEATMAP_PX)

    def _heatmap_figure(self, panels: int, q_tokens: list[str], k_tokens: list[str], grid: bool):
        """``panels`` heatmaps sharing one colour bar: side by side ("head", "compare") or in a grid ("all heads")."""
        from matplotlib.patches import Rectangle

        lay = self._layout(q_tokens, k_tokens, panels, None if grid else panels)
        top_pad = 0.3 if grid else 0.0  # room for the suptitle
        figsize = (lay.figsize[0], lay.figsize[1] + top_pad)
        fig = new_figure(figsize, self.dpi)
        shrink = lay.figsize[1] / figsize[1]
        q_labels, k_labels = [token_label(t) for t in q_tokens], [token_label(t) for t in k_tokens]
        maps, frames = [], []
        for i, (x, y, w, h) in enumerate(lay.axes):
            ax = fig.add_axes((x, y * shrink, w, h * shrink))
            maps.append(Heatmap(ax, len(q_tokens), len(k_tokens), q_labels, k_labels, self.cmap,
                                label_size=lay.label_size, rotate_keys=lay.rotate_keys, steps=lay.steps,
                                show=lay.shows(i, panels)))
            frames.append(ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, edgecolor=HIGHLIGHT,
                                                 linewidth=3, clip_on=False, zorder=5, visible=False)))
        x, y, w, h = lay.colorbar
        cb = fig.colorbar(maps[0].image, cax=fig.add_axes((x, y * shrink, w, h * shrink)))
        cb.set_label("attention weight", fontsize=SMALL)
        cb.ax.tick_params(labelsize=SMALL)
        for hm in maps[1:]:  # the colour bar follows the first map; all share its scale
            hm.image.set_norm(maps[0].image.norm)
        animated = [a for hm in maps for a in hm.artists()] + frames
        if grid:
            fig.suptitle(" ", fontsize=11, x=0.02, ha="left", y=1 - 0.06 / figsize[1], va="top")
            animated.append(fig._suptitle)
        return FastFigure(fig, animated), maps, frames

    def _row_figure(self, n_series: int, k_tokens: list[str]):
        from matplotlib.patches import PathPatch
        from matplotlib.path import Path

        t_k = len(k_tokens)
        # the main heatmap's layout for these keys (queries do not move the key axis): columns line up
        lay = self._layout(self._labels[self.layer.value][0], k_tokens, 1)
        figsize, rect = lay.row_chart()
        fig = new_figure(figsize, self.dpi)
        ax = fig.add_axes(rect)
        bw = 0.8 / n_series
        bars = []  # one compound path per series: a single draw call for all the bars
        for s in range(n_series):
            patch = ax.add_patch(PathPatch(_bars_path(np.zeros(t_k), 0, bw), facecolor=SERIES_COLOURS[s],
                                           linewidth=0, zorder=2))
            patch.offset, patch.width = (s - (n_series - 1) / 2) * bw, bw
            bars.append(patch)
        hidden = ax.add_patch(PathPatch(Path(np.zeros((1, 2)), [Path.MOVETO]), facecolor=MASKED_FACE,
                                        edgecolor=MASKED_HATCH, hatch="////", linewidth=0, zorder=0,
                                        transform=ax.get_xaxis_transform(), gid="masked-keys"))
        ax.set_xlim(-0.5, t_k - 0.5)
        ax.set_ylim(0, 1)
        labels = [token_label(t) for t in k_tokens]
        ticks = _tick_positions(t_k, lay.steps[1])
        ax.set_xticks(ticks, [labels[i] for i in ticks], fontsize=lay.label_size, rotation=90 if lay.rotate_keys else 0)
        ax.tick_params(axis="x", length=2, pad=1)
        ax.tick_params(axis="y", labelsize=SMALL, length=2, pad=1)
        ax.set_ylabel("weight", fontsize=SMALL)
        ax.set_xlabel("key", fontsize=SMALL)
        ax.set_title(" ", fontsize=10, loc="left")
        ax.spines[["top", "right"]].set_visible(False)
        animated = [hidden] + bars + [ax._left_title, ax.yaxis]
        return FastFigure(fig, animated), (ax, bars, hidden)

    def _set_status(self) -> None:
        if self.error is not None:
            self.status.value = (f'<span style="color:#b00020">&#9888; {html.escape(self.error)} '
                                 f'(still showing the previous text)</span>')
            return
        layer = self.layer.value
        h, t_q, t_k = self.weights[layer].shape
        q_tok = token_label(self.query_tokens[self.query.value])
        self.query_token.value = f"= {q_tok!r}"
        kind = "cross-attention: queries from the target text, keys from the source text" \
            if layer.endswith("cross_attn") else ("causal self-attention" if self._masks[layer] is not None
                                                  else "self-attention")
        hatched = " · hatched cells are masked" if self._masks[layer] is not None else ""
        self.status.value = (f"<b>{html.escape(layer)}</b> ({kind}) · {h} heads · {t_q} queries × {t_k} keys"
                             f"{hatched}<br>" + self._row_details())

    # ------------------------------------------------------------ display

    def __repr__(self) -> str:
        h = {w.shape[0] for w in self.weights.values()}
        return (f"AttentionExplorer(layers={len(self.weights)}, heads={'/'.join(map(str, sorted(h)))}, "
                f"tokens={len(self.tokens)}" + (f", source_tokens={len(self.source_tokens)}" if self.source_tokens
                                                else "") + ")")

    def picture(self) -> bytes:
        """PNG of the view as it is now: the heatmap(s) above the bar chart of the selected query."""
        return stack_png([bytes(self.image.value), bytes(self.row_image.value)])

    def _repr_mimebundle_(self, include=None, exclude=None):
        return widget_bundle(self.widget, repr(self), self.picture(), include, exclude)


def _bars_path(heights: np.ndarray, offset: float, width: float):
    """Bars of the given heights at x = 0, 1, ... (+ offset) as one compound path."""
    from matplotlib.path import Path

    n = len(heights)
    x0 = np.arange(n) + offset - width / 2
    x1 = x0 + width
    y = np.nan_to_num(np.asarray(heights, dtype=float))
    z = np.zeros(n)
    verts = np.stack([np.stack([x0, z], 1), np.stack([x1, z], 1), np.stack([x1, y], 1), np.stack([x0, y], 1),
                      np.stack([x0, z], 1)], axis=1).reshape(-1, 2)
    codes = np.tile([Path.MOVETO, Path.LINETO, Path.LINETO, Path.LINETO, Path.CLOSEPOLY], n)
    return Path(verts, codes)


def _column_path(visible: np.ndarray):
    """Full-height rectangles (x in data, y in axes coordinates) over the hidden keys."""
    return masked_path(visible[None, :]).transformed(_shift_y())


def _shift_y():
    from matplotlib.transforms import Affine2D

    return Affine2D().translate(0, 0.5)  # masked_path's row 0 spans y in [-0.5, 0.5] -> [0, 1]


def _shape_key(q_tokens: list[str], k_tokens: list[str]) -> tuple:
    """What fixes a figure's layout: the numbers of tokens and the longest label (its margins)."""
    longest = max((len(token_label(t)) for t in list(q_tokens) + list(k_tokens)), default=0)
    return (len(q_tokens), len(k_tokens), min(longest, 12))


def _y_top(value: float) -> float:
    """A rounded top for the bar chart's y axis, so that it (a static part) rarely changes."""
    for top in (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0):
        if value <= top / 1.08:
            return top
    return max(1.0, value * 1.08)


def _top(w: np.ndarray) -> float:
    finite = w[np.isfinite(w)]
    top = float(finite.max()) if finite.size else 1.0
    return top if top > 1e-12 else 1.0


def _entropy(row: np.ndarray) -> float:
    p = row[row > 0]
    return float(-(p * np.log(p)).sum()) + 0.0  # + 0.0: a one-hot row prints 0.00, not -0.00


def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[: n - 1] + "…")
