"""MaskExplorer: pick a mask kind and its parameters; see the mask and what it does to a softmax.

The right panel shows ``softmax(S masked)`` for seeded random scores ``S`` (T, T): every
visible row sums to 1 over the cells the mask keeps, and a row with no visible key gets
zero weights (``tfcore.attention.softmax``; ``torch.softmax`` would give NaN there).
"""

from __future__ import annotations

import html

import numpy as np

from tfcore.viz.figures import FastFigure, heatmap_grid, held, image_widget, new_figure, widget_bundle
from tfcore.viz.plots import MASK_COLOURS, Heatmap, masked_path

KINDS = ("causal", "padding", "sliding window", "prefix-LM", "packed sequences")
FORMULAS = {
    "causal": "M[i, j] = [j ≤ i]: each query sees itself and the past",
    "padding": "M[i, j] = [j < length]: keys past the real length are padding (shape (B, 1, 1, T) in tfcore)",
    "sliding window": "M[i, j] = [|i − j| < window] (and j ≤ i when causal): local attention",
    "prefix-LM": "M[i, j] = [j ≤ i or j < prefix]: a bidirectional prefix, then causal",
    "packed sequences": "M[i, j] = [segment(i) = segment(j)] (and j ≤ i when causal): one block per sequence",
}


def parse_boundaries(text: str, t: int) -> list[int]:
    """'4, 9' -> [4, 9]: positions where a new packed sequence starts, each in [1, T)."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        cuts = sorted({int(p) for p in parts})
    except ValueError:
        raise ValueError(f"segment boundaries must be whole numbers separated by commas, got {text!r}") from None
    bad = [c for c in cuts if not 0 < c < t]
    if bad:
        raise ValueError(f"segment boundaries must lie in [1, T={t}), got {bad}")
    return cuts


def build_mask(kind: str, t: int, *, window: int = 3, prefix: int = 4, length: int | None = None,
               boundaries: list[int] | tuple[int, ...] = (), causal: bool = True) -> np.ndarray:
    """The (T, T) bool mask of one kind, made with ``tfcore.masks`` (True = may attend).

    ``causal`` also applies to padding (causal & padding), sliding window and packed sequences.
    """
    import torch

    from tfcore import masks

    if kind == "causal":
        m = masks.causal_mask(t)
    elif kind == "padding":
        length = t if length is None else length
        m = masks.padding_mask(torch.tensor([length]), t)[0, 0].expand(t, t)  # (1, 1, 1, T) -> (T, T)
        if causal:
            m = masks.combine_masks(m, masks.causal_mask(t))
    elif kind == "sliding window":
        m = masks.sliding_window_mask(t, window, causal=causal)
    elif kind == "prefix-LM":
        m = masks.prefix_lm_mask(t, prefix)
    elif kind == "packed sequences":
        segment = torch.zeros(t, dtype=torch.long)
        for cut in boundaries:
            segment[cut:] += 1
        m = masks.block_diagonal_mask(segment, causal=causal)[0, 0]
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return m.numpy().astype(bool)


class MaskExplorer:
    """Choose a mask kind and its parameters; see the mask beside the weights it produces.

    Controls: ``kind`` (ToggleButtons over ``KINDS``), ``t`` (sequence length), ``window``,
    ``prefix``, ``length`` (real length for padding), ``boundaries`` (Text, e.g. "4, 9": where
    packed sequences start), ``causal`` (Checkbox, for padding, sliding window and packed),
    ``seed`` (the random scores). Only the parameters of the chosen kind are shown.

    Data: ``mask`` (T, T) bool, ``scores`` (T, T), ``weights`` (T, T) =
    ``softmax(scores masked)``; ``widget`` is the VBox, and a bare ``explorer`` displays it.
    """

    def __init__(self, kind: str = "causal", t: int = 12, *, window: int = 3, prefix: int = 4,
                 length: int | None = None, boundaries: str = "4, 9", causal: bool = True, seed: int = 0,
                 max_t: int = 32, dpi: float = 80) -> None:
        import ipywidgets as W

        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not 2 <= t <= max_t:
            raise ValueError(f"t must lie in [2, max_t={max_t}], got {t}")
        self.dpi, self.error = dpi, None
        self._figures: dict[int, tuple] = {}
        self._holding = False
        style = {"description_width": "100px"}
        self.kind = W.ToggleButtons(options=list(KINDS), value=kind, style={"button_width": "140px"},
                                    tooltips=[FORMULAS[k] for k in KINDS])
        self.t = W.IntSlider(value=t, min=2, max=max_t, description="T", style=style)
        self.window = W.IntSlider(value=min(window, t), min=1, max=t, description="window", style=style)
        self.prefix = W.IntSlider(value=min(prefix, t), min=0, max=t, description="prefix length", style=style)
        self.length = W.IntSlider(value=t if length is None else min(length, t), min=0, max=t,
                                  description="length", style=style)
        self.boundaries = W.Text(value=boundaries, description="boundaries", continuous_update=False, style=style,
                                 placeholder="e.g. 4, 9")
        self.causal = W.Checkbox(value=causal, description="causal too", indent=False)
        self.seed = W.IntText(value=seed, description="seed", style=style, layout=W.Layout(width="180px"))
        self.status = W.HTML()
        self.image = image_widget()
        self._params = {"sliding window": [self.window, self.causal], "prefix-LM": [self.prefix],
                        "padding": [self.length, self.causal], "packed sequences": [self.boundaries, self.causal],
                        "causal": []}
        self.widget = W.VBox([self.kind, W.HBox([self.t, self.seed]),
                              W.HBox([self.window, self.prefix, self.length, self.boundaries, self.causal]),
                              self.status, self.image])
        self.widget.add_class("tfcore-mask-explorer")
        self.image.add_class("tfcore-mask-image")
        self.status.add_class("tfcore-status")
        for w in (self.kind, self.t, self.window, self.prefix, self.length, self.boundaries, self.causal, self.seed):
            w.observe(self._on_change, "value")
        self._update()


    def _on_change(self, change) -> None:
        if self._holding:
            return
        if change["owner"] is self.t:
            t = self.t.value
            with held(self):  # the parameters' ranges follow T
                full_length = self.length.value == self.length.max
                for s in (self.window, self.prefix, self.length):
                    s.max = t
                if full_length:
                    self.length.value = t
        self._update()

    def _update(self) -> None:
        import torch

        from tfcore.attention import softmax

        kind, t = self.kind.value, self.t.value
        shown = set(map(id, self._params[kind]))
        for widgets in self._params.values():
            for w in widgets:
                w.layout.display = None if id(w) in shown else "none"
        try:
            cuts = parse_boundaries(self.boundaries.value, t) if kind == "packed sequences" else []
        except ValueError as e:
            self.error = str(e)
            self.status.value = f'<span style="color:#b00020">&#9888; {html.escape(self.error)}</span>'
            return
        self.error = None
        self.mask = build_mask(kind, t, window=self.window.value, prefix=self.prefix.value,
                               length=self.length.value, boundaries=cuts, causal=self.causal.value)
        gen = torch.Generator().manual_seed(int(self.seed.value))
        scores = torch.randn(t, t, generator=gen)
        self.scores = scores.numpy()
        self.weights = softmax(scores.masked_fill(~torch.from_numpy(self.mask), float("-inf"))).numpy()
        self.image.value = self._draw()
        empty = [i for i in range(t) if not self.mask[i].any()]
        note = (f"rows {_ranges(empty)} see no key: tfcore's softmax gives them zero weights "
                f"(torch.softmax would give NaN)") if empty else "every row sums to 1 over its visible keys"
        self.status.value = (f"<b>{kind}</b>: {html.escape(FORMULAS[kind])}<br>{int(self.mask.sum())} of {t * t} "
                             f"cells visible · {note}")

    def _draw(self) -> bytes:
        t = self.t.value
        if t not in self._figures:
            self._figures[t] = self._figure(t)
        fast, mask_image, mask_patch, hm = self._figures[t]
        mask_image.set_data(self.mask.astype(float))
        mask_patch.set_path(masked_path(self.mask))
        mask_patch.set_visible(not self.mask.all())
        mask_image.axes.set_title(f"mask ({self.kind.value})", fontsize=10)
        hm.update(self.weights, self.mask, 1.0)
        hm.ax.set_title(f"softmax of random scores, seed {self.seed.value}", fontsize=10)
        return fast.png()

    def _figure(self, t: int):
        from matplotlib.colors import ListedColormap

        from tfcore.viz.plots import _masked_patch, set_token_ticks

        labels = [str(i) for i in range(t)]
        lay = heatmap_grid(labels, labels, 2, 2, dpi=self.dpi, max_px=(760, 400))
        fig = new_figure(lay.figsize, self.dpi)
        ax_mask, ax_w = (fig.add_axes(rect) for rect in lay.axes)
        mask_image = ax_mask.imshow(np.ones((t, t)), cmap=ListedColormap(MASK_COLOURS), vmin=0, vmax=1,
                                    interpolation="nearest", aspect="equal")
        mask_patch = ax_mask.add_patch(_masked_patch())
        ax_mask.set_xlim(-0.5, t - 0.5)
        ax_mask.set_ylim(t - 0.5, -0.5)
        set_token_ticks(ax_mask, labels, labels, lay.label_size, lay.rotate_keys, lay.steps, lay.shows(0, 2))
        hm = Heatmap(ax_w, t, t, labels, labels, label_size=lay.label_size, rotate_keys=lay.rotate_keys,
                     steps=lay.steps, show=lay.shows(1, 2))
        cb = fig.colorbar(hm.image, cax=fig.add_axes(lay.colorbar))
        cb.set_label("attention weight", fontsize=9)
        cb.ax.tick_params(labelsize=9)
        for ax in (ax_mask, ax_w):
            ax.set_title(" ", fontsize=10)
        return FastFigure(fig, [mask_image, mask_patch, ax_mask.title] + hm.artists()), mask_image, mask_patch, hm

    def __repr__(self) -> str:
        return f"MaskExplorer(kind={self.kind.value!r}, T={self.t.value})"

    def picture(self) -> bytes:
        """PNG of the view as it is now: the mask beside the weights it gives."""
        return bytes(self.image.value)

    def _repr_mimebundle_(self, include=None, exclude=None):
        return widget_bundle(self.widget, repr(self), self.picture(), include, exclude)


def _ranges(rows: list[int]) -> str:
    """[0, 1, 2, 5] -> '0–2, 5'."""
    out, start = [], None
    for i, r in enumerate(rows):
        if start is None:
            start = r
        if i + 1 == len(rows) or rows[i + 1] != r + 1:
            out.append(f"{start}–{r}" if r > start else f"{r}")
            start = None
    return ", ".join(out)
