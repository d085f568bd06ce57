"""Figures for the widgets: laid out by arithmetic, drawn in two layers, turned into PNG bytes.

A widget redraws when a control moves, so its figures are built once and then only
updated. Two things keep a redraw cheap:

- the layout is computed from the label sizes (no constrained-layout pass): every cell is
  square and the same size in the heatmap and in the bar chart under it, so the bars
  line up with the heatmap's columns; a whole widget fits a 1400 x 1000 browser window;
- ``FastFigure`` draws the static parts (tick labels: most of the work) once into a
  background and on each redraw restores it and draws only the artists that changed.

The figures are plain ``matplotlib.figure.Figure`` objects with an Agg canvas: pyplot never
sees them, so ``plt.show()`` in a notebook does not show them twice.

Readable text: every label is at least ``MIN_TEXT_PX`` (9) pixels tall as shown at 100 % zoom
in a 1400 px wide window, where a notebook's output area is about ``DISPLAY_WIDTH_PX`` wide
and wider pictures are shrunk to fit. ``drawn_text_px(fig)`` measures it for any figure.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
from matplotlib.figure import Figure

TITLE = 0.36  # inches above an axes for a one-line title
MIN_TEXT_PX = 9.0  # the smallest text a learner should have to read, at 100 % zoom
DISPLAY_WIDTH_PX = 960  # JupyterLab's output area in a 1400 px wide window, file browser open: wider pictures shrink


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



# ---------------------------------------------------------------- readable sizes


def points(px: float, dpi: float) -> float:
    """The font size in points whose glyphs are ``px`` pixels tall in a figure drawn at ``dpi``."""
    return px * 72.0 / dpi


def label_plan(query_labels: Sequence[str], key_labels: Sequence[str], cell: float,
               size: float) -> tuple[int, int, bool]:
    """(query step, key step, rotate keys) so that labels of ``size`` points never overlap in cells of ``cell`` inches.

    Query labels are stacked, so each needs a cell at least 0.9 times the font size (single
    characters then never touch); key labels lie side by side, so each needs its width,
    unless rotated (then its height). Every step-th token is labelled: at most 96 per axis,
    and fewer where the cells are small.
    """
    cell_pt = cell * 72
    stacked = max(1, math.ceil(0.9 * size / cell_pt - 1e-9))
    q_step = max(stacked, math.ceil(len(query_labels) / 96))
    cap = math.ceil(len(key_labels) / 96)
    longest = max(map(len, key_labels), default=0)
    widest = text_width(key_labels, size) * 72 + (0.25 * size if longest > 1 else 0)  # a gap between words
    flat = max(1, math.ceil(widest / cell_pt - 1e-9))
    rotate = longest > 1 and stacked < flat
    return q_step, max(stacked if rotate else flat, cap), rotate


@dataclass
class HeatmapGrid:
    """Where ``n`` heatmaps of square cells go (figure fractions), with one colour bar, and their label sizes.

    Panels share their axes: query labels on the left column, key labels under the panels
    with none below. ``left`` and ``bottom`` (inches) are the label blocks, which a bar chart
    over the keys reuses (``row_chart``) so that its bars line up with the first panel's columns.
    """

    figsize: tuple[float, float]
    cell: float  # inches per token
    label_size: float  # points
    steps: tuple[int, int]  # label every steps[0]-th query and steps[1]-th key
    rotate_keys: bool
    rows: int
    cols: int
    axes: list[tuple[float, float, float, float]]  # (left, bottom, width, height), row-major
    colorbar: tuple[float, float, float, float] | None
    left: float
    bottom: float

    def shows(self, i: int, n: int) -> tuple[bool, bool]:
        """(query labels, key labels) for panel ``i`` of ``n``: the left column; panels with none below."""
        r, c = divmod(i, self.cols)
        return c == 0, i + self.cols >= n

    def row_chart(self, height: float = 1.1) -> tuple[tuple[float, float], tuple[float, float, float, float]]:
        """A bar chart over the keys whose columns line up with the first panel's: (figsize, axes rect)."""
        w = self.figsize[0]
        h = self.bottom + height + TITLE
        return (w, h), (self.left / w, self.bottom / h, self.axes[0][2], height / h)


def heatmap_grid(query_labels: Sequence[str], key_labels: Sequence[str], n: int = 1, cols: int | None = None, *,
                 dpi: float = 80, max_px: tuple[float, float] = (940, 440), colorbar: bool = True,
                 cell: float | None = None, max_cell: float = 0.26, max_label_px: float = 13.0) -> HeatmapGrid:
    """Lay out ``n`` heatmaps (T_q, T_k) within ``max_px`` (width, height) pixels at ``dpi``, or with a given ``cell``.

    Cells are square and as large as fits (at most ``max_cell`` inches). Labels are as tall as a
    cell, at least ``MIN_TEXT_PX`` and at most ``max_label_px`` pixels: where cells are smaller
    than the labels, only every k-th token is labelled. ``cols`` defaults to the number of
    columns that gives the largest cells.
    """
    t_q, t_k = len(query_labels), len(key_labels)
    if n < 1 or t_q < 1 or t_k < 1:
        raise ValueError(f"need n >= 1 panels of at least one query and key, got n={n}, T_q={t_q}, T_k={t_k}")
    min_pt, max_pt = points(MIN_TEXT_PX, dpi), points(max_label_px, dpi)
    cbar_block = 0.95 if colorbar else 0.1
    gap = 0.12

    def plan(cols: int, cell: float):
        rows = -(-n // cols)
        size = float(np.clip(cell * 72, min_pt, max(min_pt, max_pt)))
        q_step, k_step, rotate = label_plan(query_labels, key_labels, cell, size)
        q_w = text_width(list(query_labels)[::q_step], size)
        k_w = text_width(list(key_labels)[::k_step], size)
        tick = 4 / 72
        left = max(0.08 + 0.2 + q_w + tick, 0.62)  # "query", the labels; room for a bar chart's "0.00"
        bottom = 0.06 + 0.22 + (k_w if rotate else size * 1.25 / 72) + tick
        return rows, size, (q_step, k_step), rotate, left, bottom

    def fitted(cols: int) -> float:
        c = max_cell if cell is None else cell
        for _ in range(3 if cell is None else 1):  # margins depend on the label size, which depends on the cell
            rows, _, _, _, left, bottom = plan(cols, c)
            if cell is None:
                room_w = (max_px[0] / dpi - left - cbar_block - (cols - 1) * gap) / (cols * t_k)
                room_h = (max_px[1] / dpi - bottom - rows * TITLE) / (rows * t_q)
                c = float(np.clip(min(room_w, room_h), 0.02, max_cell))
        return c

    if cols is None:
        cols = max(range(1, n + 1), key=lambda k: (round(fitted(k), 3), -k))
    cols = min(cols, n)
    cell = fitted(cols)
    rows, size, steps, rotate, left, bottom = plan(cols, cell)
    width, height = cell * t_k, cell * t_q
    fig_w = left + cols * width + (cols - 1) * gap + cbar_block
    fig_h = bottom + rows * (height + TITLE)
    axes = []
    for i in range(n):
        r, c = divmod(i, cols)
        x = left + c * (width + gap)
        y = bottom + (rows - 1 - r) * (height + TITLE)
        axes.append((x / fig_w, y / fig_h, width / fig_w, height / fig_h))
    cbar = ((left + cols * width + (cols - 1) * gap + 0.12) / fig_w, bottom / fig_h, 0.16 / fig_w,
            (rows * height + (rows - 1) * TITLE) / fig_h) if colorbar else None
    return HeatmapGrid((fig_w, fig_h), cell, size, steps, rotate, rows, cols, axes, cbar, left, bottom)


def drawn_text_px(figure, display_width_px: float = DISPLAY_WIDTH_PX, tight: bool = False) -> list[tuple[str, float]]:
    """Every text a figure draws, with its font size in pixels as shown: [(text, px)], smallest first.

    figure: a ``Figure`` (drawn as ``savefig`` at its dpi; ``tight=True`` as the notebook's inline
    backend does) or a ``FastFigure`` (drawn as the widgets draw it, animated layer included).
    The size shown is ``points * dpi / 72``, times ``display_width_px / png width`` when the
    picture is wider than the notebook's output area and so is shrunk to fit.
    """
    from matplotlib.backends.backend_agg import RendererAgg
    from PIL import Image

    drawn: list[tuple[str, float]] = []
    original = RendererAgg.draw_text

    def record(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if s.strip():
            drawn.append((s, prop.get_size_in_points() * self.dpi / 72))
        return original(self, gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    RendererAgg.draw_text = record
    try:
        if isinstance(figure, FastFigure):
            figure.invalidate()
            png = figure.png()
        else:
            buf = io.BytesIO()
            figure.savefig(buf, format="png", dpi=figure.dpi, bbox_inches="tight" if tight else None)
            png = buf.getvalue()
    finally:
        RendererAgg.draw_text = original
    width = Image.open(io.BytesIO(png)).size[0]
    scale = min(1.0, display_width_px / width)
    return sorted(((s, px * scale) for s, px in drawn), key=lambda item: item[1])


# ---------------------------------------------------------------- widgets: images and display


def image_widget(**layout):
    """An ``ipywidgets.Image`` for a figure's PNG, shown at its own size (narrowed, never stretched, to fit)."""
    import ipywidgets as W

    return W.Image(format="png", layout=W.Layout(max_width="100%", height="auto", align_self="flex-start", **layout))


def stack_png(pictures: Sequence[bytes]) -> bytes:
    """PNG pictures one under another, left-aligned on white, as one PNG."""
    from PIL import Image

    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in pictures if p]
    if not images:
        raise ValueError("stack_png needs at least one non-empty PNG")
    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    y = 0
    for image in images:
        out.paste(image, (0, y))
        y += image.height
    buf = io.BytesIO()
    out.save(buf, format="png", optimize=True)
    return buf.getvalue()


def widget_bundle(widget, text: str, picture: bytes, include=None, exclude=None) -> dict:
    """What a notebook stores for a widget: the live view, a PNG picture of it, and a short text.

    JupyterLab draws the live widget (``application/vnd.jupyter.widget-view+json``) while the
    kernel that made it runs; a saved notebook opened later (not trusted, or without the
    widget's state) and a code-hosting site show ``image/png`` instead, so the lesson reads
    well before anything runs. ``text/plain`` is what nbval compares: keep it deterministic.
    """
    import base64

    bundle = dict(widget._repr_mimebundle_(include=include, exclude=exclude) or {})
    bundle["text/plain"] = text
    bundle["image/png"] = base64.b64encode(picture).decode("ascii")
    return bundle


@contextlib.contextmanager
def held(widget: Any) -> Iterator[None]:
    """Change several of ``widget``'s controls without a redraw for each: its observers see
    ``widget._holding`` True and skip, and the caller redraws once afterwards."""
    before, widget._holding = widget._holding, True
    try:
        yield
    finally:
        widget._holding = before
