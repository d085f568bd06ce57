"""Figures for the widgets: laid out by arithmetic, drawn in two layers, turned into PNG bytes.

A widget redraws when a control moves, so its figures are built once and then only
updated. Two things keep a redraw cheap:

- the layout is computed from the label sizes (no constrained-layout pass): every cell is
  square and the same size in the heatmap and in the bar chart under it, so the bars
  line up with the heatmap's columns;
- ``FastFigure`` draws the static parts (tick labels: most of the work) once into a
  background and on each redraw restores it and draws only the artists that changed.

The figures are plain ``matplotlib.figure.Figure`` objects with an Agg canvas: pyplot never
sees them, so ``plt.show()`` in a notebook does not show them twice.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

TITLE = 0.36  # inches above an axes for a one-line title


def new_figure(figsize: tuple[float, float], dpi: float = 80) -> Figure:
    """A figure pyplot does not track (never shown by ``plt.show``), with an Agg canvas attached."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # importing a canvas is not matplotlib.use

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


class FastFigure:
    """A figure drawn in two layers: static parts once, ``animated`` artists on every ``png()``.

    Tick labels are most of the cost of drawing a heatmap of 64 tokens; they never change
    when a control moves, so they are drawn once into a background that each redraw
    restores before drawing the images, patches and titles that did change (blitting).
    Call ``invalidate()`` after changing a static part (tick labels, a colour bar's scale).
    """

    def __init__(self, fig: Figure, animated: Sequence) -> None:
        self.fig, self.animated = fig, list(animated)
        for a in self.animated:
            a.set_animated(True)
        self._background = None

    def invalidate(self) -> None:
        self._background = None

    def png(self) -> bytes:
        """The figure as PNG bytes (RGB, fast zlib level)."""
        from PIL import Image

        canvas = self.fig.canvas
        if self._background is None:
            canvas.draw()
            self._background = canvas.copy_from_bbox(self.fig.bbox)
        else:
            canvas.restore_region(self._background)
        for a in self.animated:
            if a.get_visible():
                self.fig.draw_artist(a)
        w, h = canvas.get_width_height(physical=True)
        image = Image.frombuffer("RGBA", (w, h), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
        buf = io.BytesIO()
        image.save(buf, format="png", compress_level=1)
        return buf.getvalue()


def text_width(labels: Sequence[str], size: float) -> float:
    """Width in inches of the widest label at ``size`` points (DejaVu Sans, matplotlib's default)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    prop = FontProperties(size=size)
    widest = 0.0
    for label in set(labels):
        if label:
            w, _, _ = text_to_path.get_text_width_height_descent(label.replace(r"\$", "$"), prop, ismath=False)
            widest = max(widest, w)
    return widest / 72


@dataclass
class HeatmapLayout:
    """Where everything goes (inches, from the figure's bottom-left) for ``panels`` heatmaps side by side."""

    figsize: tuple[float, float]
    cell: float  # inches per token
    label_size: float  # points
    rotate_keys: bool
    axes: list[tuple[float, float, float, float]]  # (left, bottom, width, height) in figure fractions
    colorbar: tuple[float, float, float, float] | None
    left: float  # the first panel's left edge (inches), shared with the bar chart below
    bottom: float  # the x axis' label block (inches)

    def row_chart(self, height: float = 1.45) -> tuple[tuple[float, float], tuple[float, float, float, float]]:
        """A bar chart over the keys whose columns line up with the first heatmap's: (figsize, axes rect)."""
        w = self.figsize[0]
        h = self.bottom + height + TITLE
        return (w, h), (self.left / w, self.bottom / h, self.axes[0][2] * w / w, height / h)


def heatmap_layout(query_labels: Sequence[str], key_labels: Sequence[str], panels: int = 1,
                   colorbar: bool = True, cell: float | None = None) -> HeatmapLayout:
    """Square cells, labels sized to the cells (5.5 to 11 pt), margins measured from the labels."""
    t_q, t_k = len(query_labels), len(key_labels)
    if cell is None:
        cell = float(np.clip((7.5 if panels == 1 else 5.0) / max(t_q, t_k), 0.06, 0.26))
    size = float(np.clip(0.95 * cell * 72, 5.5, 11.0))
    q_w, k_w = text_width(query_labels, size), text_width(key_labels, size)
    step = max(1, -(-t_k // 96))
    rotate = max(map(len, key_labels), default=0) > 1 and k_w > 0.9 * cell * step  # one character: never
    tick = 4 / 72  # tick length and pad
    left = max(0.08 + 0.2 + q_w + tick, 0.62)  # axis label "query", the labels; room for a bar chart's "0.00"
    bottom = 0.06 + 0.22 + (k_w if rotate else size * 1.25 / 72) + tick
    width, height = cell * t_k, cell * t_q
    cbar_block = 0.95 if colorbar else 0.1
    fig_w = panels * (left + width) + (panels - 1) * 0.1 + cbar_block
    fig_h = bottom + height + TITLE
    axes = [((left + p * (left + width + 0.1)) / fig_w, bottom / fig_h, width / fig_w, height / fig_h)
            for p in range(panels)]
    cbar = ((panels * (left + width) + (panels - 1) * 0.1 + 0.12) / fig_w, bottom / fig_h, 0.16 / fig_w,
            height / fig_h) if colorbar else None
    return HeatmapLayout((fig_w, fig_h), cell, size, rotate, axes, cbar, left, bottom)


def grid_layout(n: int, t_q: int, t_k: int, panel: float = 2.1, cols: int | None = None):
    """(figsize, axes rects) for ``n`` small unlabelled heatmaps in a grid under a suptitle."""
    cols = cols or min(n, 4)
    rows = -(-n // cols)
    w = panel
    h = panel * float(np.clip(t_q / t_k, 0.3, 3.0))
    gap_x, title, top, pad = 0.15, 0.3, 0.35, 0.1
    fig_w = 2 * pad + cols * w + (cols - 1) * gap_x
    fig_h = top + rows * (h + title) + pad
    rects = []
    for i in range(n):
        r, c = divmod(i, cols)
        x = pad + c * (w + gap_x)
        y = fig_h - top - (r + 1) * (h + title) + 0.02
        rects.append((x / fig_w, y / fig_h, w / fig_w, h / fig_h))
    return (fig_w, fig_h), rects
