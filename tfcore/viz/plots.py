"""Static plots: attention heatmaps, mask pictures, the mask gallery, entropy per head.

Conventions shared by every picture here (and by the explorer widgets):

- rows are queries ``i``, columns are keys ``j``: a weight matrix ``a`` of shape (T_q, T_k);
- a boolean mask is True where query ``i`` may attend key ``j``; cells it hides are drawn
  hatched grey, so a hidden cell never looks like a visible cell whose weight is 0;
- whitespace tokens are drawn visibly: ``' '`` as ``'␣'``, ``'\\n'`` as ``'⏎'``, ``'\\t'`` as ``'⇥'``;
- NaN weights are drawn in magenta (a fully masked row under ``torch.softmax``).

Nothing here calls ``plt.show()`` or chooses a matplotlib backend: functions that create a
figure do so through ``pyplot`` (so ``plt.show()`` in a notebook shows it), and the widgets
draw on plain ``matplotlib.figure.Figure`` objects that pyplot never sees.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch, Rectangle
from matplotlib.path import Path
from matplotlib.ticker import Formatter, Locator

MASKED_FACE = "#dcdcdc"  # hidden cells: light grey ...
MASKED_HATCH = "#8a8a8a"  # ... with darker diagonal hatching
NAN_COLOUR = "#ff00ff"
HIGHLIGHT = "#e8402a"
_VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "\\r", "": "∅"}


# ---------------------------------------------------------------- tokens and arrays


def token_label(token: str) -> str:
    """How a token is written on an axis: whitespace made visible, ``$`` kept literal.

    >>> token_label(" "), token_label("\\n"), token_label(" the")
    ('␣', '⏎', '␣the')
    """
    token = str(token)
    if token in _VISIBLE:
        return _VISIBLE[token]
    out = []
    for ch in token:
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif not ch.isprintable():
            out.append(repr(ch)[1:-1])  # '\x07' -> \x07
        else:
            out.append(ch)
    return "".join(out).replace("$", r"\$")  # an even number of '$' would start mathtext


def token_labels(tokens: str | Sequence[str] | None, n: int, name: str) -> list[str]:
    """Axis labels for ``n`` positions: a string is one token per character; None gives indices."""
    if tokens is None:
        return [str(i) for i in range(n)]
    tokens = list(tokens)
    if len(tokens) != n:
        raise ValueError(f"{name} has {len(tokens)} tokens but the weights have {n} along that axis")
    return [token_label(t) for t in tokens]


def to_numpy(x, name: str) -> np.ndarray:
    """A tensor (any device, any float dtype) or array-like -> a numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().to("cpu")
        x = x.float() if x.is_floating_point() else x
        x = x.numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} must be a tensor or an array, got {type(x).__name__}") from e


def as_weights(weights, name: str = "weights") -> np.ndarray:
    """(T_q, T_k) float array; anything else raises an error naming the shape."""
    w = to_numpy(weights, name)
    if w.ndim != 2:
        raise ValueError(f"{name} must have shape (T_q, T_k), got {w.shape}: pick one head, "
                         f"e.g. weights[0, head] of a (B, h, T_q, T_k) tensor")
    if w.dtype == bool or not np.issubdtype(w.dtype, np.number):
        raise TypeError(f"{name} must hold numbers, got dtype {w.dtype}")
    return w.astype(np.float64)


def as_mask(mask, t_q: int, t_k: int, name: str = "mask") -> np.ndarray | None:
    """A bool (T_q, T_k) array from None, ``"causal"`` or anything that broadcasts to (T_q, T_k).

    Leading axes of size 1 are dropped (a (1, 1, T_q, T_k) mask is fine); a (B, ...) mask
    with B > 1 must be indexed first. True = the query may attend the key.
    """
    if mask is None:
        return None
    if isinstance(mask, str):
        if mask != "causal":
            raise ValueError(f"{name} must be a bool array, None or 'causal', got {mask!r}")
        i = np.arange(t_q)[:, None] + (t_k - t_q)  # queries aligned to the last key, as in tfcore.masks
        return np.arange(t_k)[None, :] <= i
    m = to_numpy(mask, name)
    if m.dtype != bool:
        raise TypeError(f"{name} must be bool (True = may attend), got dtype {m.dtype}")
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    try:
        return np.broadcast_to(m, (t_q, t_k)).copy()
    except ValueError:
        raise ValueError(f"{name} of shape {m.shape} does not broadcast to the weights' (T_q, T_k) = "
                         f"({t_q}, {t_k})") from None


def masked_path(mask: np.ndarray) -> Path:
    """One compound path covering the hidden (False) cells of a (T_q, T_k) mask in imshow coordinates.

    Each row's runs of hidden cells become one rectangle, so a causal 64 x 64 mask is 63
    rectangles, drawn (and hatched) as a single patch.
    """
    verts, codes = [], []
    for i, row in enumerate(np.asarray(mask, dtype=bool)):
        hidden = np.concatenate(([False], ~row, [False])).astype(np.int8)
        edges = np.flatnonzero(np.diff(hidden))
        for start, stop in zip(edges[::2], edges[1::2]):
            x0, x1, y0, y1 = start - 0.5, stop - 0.5, i - 0.5, i + 0.5
            verts += [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
            codes += [Path.MOVETO, Path.LINETO, Path.LINETO, Path.LINETO, Path.CLOSEPOLY]
    if not verts:
        return Path(np.zeros((1, 2)), [Path.MOVETO])
    return Path(np.array(verts, dtype=float), codes)


def _masked_patch(**kwargs) -> PathPatch:
    return PathPatch(Path(np.zeros((1, 2)), [Path.MOVETO]), facecolor=MASKED_FACE, edgecolor=MASKED_HATCH,
                     hatch="////", linewidth=0, zorder=3, gid="masked-cells", **kwargs)


# ---------------------------------------------------------------- the heatmap


class Heatmap:
    """One attention heatmap on an Axes whose weights, mask, scale and highlighted row can change cheaply.

    ``attention_heatmap`` draws one and forgets it; the explorer widgets keep it and call
    ``update`` when a control moves, which only touches the image data and a few artists.
    """

    def __init__(self, ax: Axes, t_q: int, t_k: int, query_labels: list[str] | None = None,
                 key_labels: list[str] | None = None, cmap="viridis", labels: bool = True,
                 label_size: float | None = None, rotate_keys: bool | None = None,
                 steps: tuple[int, int] | None = None, show: tuple[bool, bool] = (True, True)) -> None:
        self.ax, self.t_q, self.t_k = ax, t_q, t_k
        cmap = _cmap(cmap)
        self.image = ax.imshow(np.zeros((t_q, t_k)), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest",
                               aspect="equal", origin="upper")
        self.image.set_gid("attention-weights")
        self.mask_patch = ax.add_patch(_masked_patch())
        self.mask_patch.set_visible(False)
        self.row_box = ax.add_patch(Rectangle((-0.5, -0.5), t_k, 1, fill=False, edgecolor=HIGHLIGHT,
                                              linewidth=1.6, zorder=4, visible=False, gid="highlight-row"))
        self.mask: np.ndarray | None = None
        ax.set_xlim(-0.5, t_k - 0.5)
        ax.set_ylim(t_q - 0.5, -0.5)
        if labels:
            set_token_ticks(ax, query_labels or token_labels(None, t_q, "query_tokens"),
                            key_labels or token_labels(None, t_k, "key_tokens"), label_size, rotate_keys, steps, show)
        else:
            ax.set_xticks([])
            ax.set_yticks([])

    def artists(self) -> list:
        """What ``update`` changes (the title too): the animated layer of a ``FastFigure``."""
        return [self.image, self.mask_patch, self.row_box, self.ax.title]

    def update(self, weights: np.ndarray, mask: np.ndarray | None = None, vmax: float | None = None,
               row: int | None = None) -> None:
        """New (T_q, T_k) weights, mask (True = may attend), colour-scale top and highlighted query row."""
        w = np.ma.masked_invalid(weights)
        self.image.set_data(w)
        top = vmax if vmax is not None else _data_max(weights)
        self.image.set_clim(0.0, top)
        if mask is not self.mask and not (mask is not None and self.mask is not None
                                          and np.array_equal(mask, self.mask)):
            self.mask = mask
            if mask is None or mask.all():
                self.mask_patch.set_visible(False)
            else:
                self.mask_patch.set_path(masked_path(mask))
                self.mask_patch.set_visible(True)
        self.row_box.set_visible(row is not None)
        if row is not None:
            self.row_box.set_y(row - 0.5)


def _cmap(cmap):
    import matplotlib

    cmap = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    return cmap.with_extremes(bad=NAN_COLOUR)


def _data_max(w: np.ndarray) -> float:
    finite = w[np.isfinite(w)]
    top = float(finite.max()) if finite.size else 1.0
    return top if top > 1e-12 else 1.0


def set_token_ticks(ax: Axes, query_labels: Sequence[str], key_labels: Sequence[str],
                    size: float | None = None, rotate_keys: bool | None = None,
                    steps: tuple[int, int] | None = None, show: tuple[bool, bool] = (True, True)) -> None:
    """Token labels on both axes, at least 9 px tall: every token, or every k-th where the cells are smaller.

    size (points) defaults to the cell's height, at least ``MIN_TEXT_PX`` at the figure's dpi.
    steps (query, key): label every k-th token; by default ``TokenLocator`` picks k when the
    figure is drawn, from the axes' final size (after a constrained layout), so that labels
    never overlap. rotate_keys defaults to rotating multi-character keys wider than a cell.
    show: (query labels, key labels); a hidden axis keeps its ticks.
    """
    from tfcore.viz.figures import MIN_TEXT_PX, label_plan, points, text_width

    t_q, t_k = len(query_labels), len(key_labels)
    fig_w, fig_h = ax.figure.get_size_inches()
    pos = ax.get_position()
    cell = min(pos.width * fig_w / max(t_k, 1), pos.height * fig_h / max(t_q, 1))  # inches, before any layout
    if size is None:
        size = float(np.clip(cell * 72, points(MIN_TEXT_PX, ax.figure.dpi), 11.0))
    if rotate_keys is None:
        rotate_keys = label_plan(query_labels, key_labels, cell, size)[2]
    longest = max(map(len, key_labels), default=0)
    key_room = size if rotate_keys else text_width(key_labels, size) * 72 + (0.25 * size if longest > 1 else 0)
    for axis, labels, room, step in ((ax.yaxis, query_labels, size, steps and steps[0]),
                                     (ax.xaxis, key_labels, key_room, steps and steps[1])):
        axis.set_major_locator(TokenLocator(len(labels), room, step))
        axis.set_major_formatter(TokenFormatter(labels))
    ax.tick_params(axis="x", labelrotation=90 if rotate_keys else 0, length=2, pad=1, labelsize=size,
                   top=False, labeltop=False, bottom=True, labelbottom=show[1])
    ax.tick_params(axis="y", length=2, pad=1, labelsize=size, labelleft=show[0])
    label_pt = max(9.0, points(MIN_TEXT_PX, ax.figure.dpi))
    ax.set_xlabel("key" if show[1] else "", fontsize=label_pt)
    ax.set_ylabel("query" if show[0] else "", fontsize=label_pt)


class TokenLocator(Locator):
    """Ticks at token positions 0, k, 2k, ...: a fixed ``step``, or the smallest k whose labels do not overlap.

    ``room`` (points) is what one label needs along the axis (its height when labels are
    stacked, its width when they stand side by side); k is chosen each time the figure is
    drawn, from the axes' size then, and never labels more than 96 tokens.
    """

    def __init__(self, n: int, room: float, step: int | None = None) -> None:
        self.n, self.room, self.step = n, room, step

    def __call__(self) -> list[int]:
        return _tick_positions(self.n, self.step or self._fitting_step())

    def _fitting_step(self) -> int:
        axes = self.axis.axes
        box = axes.get_window_extent()
        length = box.height if self.axis is axes.yaxis else box.width  # pixels
        cell = length / max(self.n, 1) * 72 / axes.figure.dpi  # points per token
        return max(1, math.ceil(0.9 * self.room / cell - 1e-9)) if cell > 0 else 1


class TokenFormatter(Formatter):
    """Labels token position i with ``labels[i]``; ``relabel`` swaps the list without new tick objects."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)

    def __call__(self, x, pos=None) -> str:
        i = int(round(x))
        return self.labels[i] if 0 <= i < len(self.labels) else ""


def _tick_positions(n: int, step: int = 1) -> list[int]:
    return list(range(0, n, max(1, step, math.ceil(n / 96))))


def relabel(axis, labels: Sequence[str]) -> None:
    """New token labels (same number of tokens) on an axis made by ``set_token_ticks``, or with fixed tick labels."""
    formatter = axis.get_major_formatter()
    if hasattr(formatter, "labels"):
        formatter.labels = list(labels)
    else:
        axis.set_ticklabels([labels[int(round(i))] for i in axis.get_ticklocs()])


def attention_heatmap(
    weights,
    query_tokens: str | Sequence[str] | None = None,
    key_tokens: str | Sequence[str] | None = None,
    mask=None,
    ax: Axes | None = None,
    title: str | None = None,
    cmap="viridis",
    vmax: float | None = None,
    colorbar: bool = True,
    highlight_row: int | None = None,
) -> Axes:
    """Heatmap of one head's attention weights (T_q, T_k) with the tokens on both axes.

    weights: (T_q, T_k) tensor or array; rows (queries) sum to 1 over the keys.
    query_tokens, key_tokens: one string per row/column (a str counts one token per
    character); ``key_tokens`` defaults to ``query_tokens`` (self-attention); None numbers
    the positions. mask: None, ``"causal"``, or a bool array broadcastable to (T_q, T_k),
    True where the query may attend: hidden cells are hatched grey, unlike visible cells
    of weight 0. vmax: top of the colour scale (default: the largest weight).
    highlight_row: outline one query's row. Returns the Axes; never calls ``plt.show()``.

    >>> with capture_attention(model) as w:
    ...     model(tokens)
    >>> attention_heatmap(w["decoder.0.attn"][0, 2], "to be or not", mask="causal"); plt.show()
    """
    w = as_weights(weights)
    t_q, t_k = w.shape
    if key_tokens is None and query_tokens is not None and t_q != t_k:
        raise ValueError(f"weights have T_q={t_q} queries but T_k={t_k} keys: pass key_tokens too "
                         f"(cross-attention: queries from the target, keys from the source)")
    q_labels = token_labels(query_tokens, t_q, "query_tokens")
    k_labels = token_labels(key_tokens if key_tokens is not None else query_tokens, t_k, "key_tokens")
    m = as_mask(mask, t_q, t_k)
    if highlight_row is not None and not 0 <= highlight_row < t_q:
        raise ValueError(f"highlight_row must lie in [0, T_q={t_q}), got {highlight_row}")
    if ax is None:
        import matplotlib.pyplot as plt

        from tfcore.viz.figures import DISPLAY_WIDTH_PX, heatmap_grid

        # small matrices get big cells; 64 tokens still get a readable label each
        dpi = plt.rcParams["figure.dpi"]
        lay = heatmap_grid(q_labels, k_labels, dpi=dpi, max_px=(DISPLAY_WIDTH_PX, 700), colorbar=colorbar,
                           max_cell=0.5, max_label_px=11 * dpi / 72)
        _, ax = plt.subplots(figsize=lay.figsize, layout="constrained")
    hm = Heatmap(ax, t_q, t_k, q_labels, k_labels, cmap)
    hm.update(w, m, vmax, highlight_row)
    if colorbar:
        cb = ax.figure.colorbar(hm.image, ax=ax, fraction=0.046, pad=0.03)
        cb.set_label("attention weight", fontsize=9)
        cb.ax.tick_params(labelsize=8)
    if title is not None:
        ax.set_title(title, fontsize=10)
    return ax


# ---------------------------------------------------------------- masks


MASK_COLOURS = ("#dcdcdc", "#2f6fad")  # hidden (under the hatching), visible


def _mask_2d(mask, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """A mask of shape (T_q, T_k), (1, T_k) or (B, 1, T_q, T_k)-like -> (T_q, T_k) bool, and its shape.

    Leading axes are indexed at 0; a key-only mask (1, T_k) is repeated for T_k queries.
    """
    m = to_numpy(mask, name)
    shape = tuple(m.shape)
    if m.dtype != bool:
        raise TypeError(f"{name} must be bool (True = may attend), got dtype {m.dtype}")
    if m.ndim == 1:
        m = m[None, :]
    while m.ndim > 2:
        m = m[0]
    if m.shape[0] == 1 and m.shape[1] > 1:
        m = np.repeat(m, m.shape[1], axis=0)
    return m, shape


def plot_mask(mask, ax: Axes | None = None, title: str | None = None,
              tokens: str | Sequence[str] | None = None) -> Axes:
    """Picture of one boolean mask: visible cells blue, hidden cells hatched grey. Returns the Axes.

    mask: (T_q, T_k) bool (True = may attend); a (B, 1, T_q, T_k) or (B, 1, 1, T_k) mask
    shows its first batch element (a key padding mask is repeated for every query).
    """
    m, _ = _mask_2d(mask, "mask")
    t_q, t_k = m.shape
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(min(max(2 + 0.2 * t_k, 3), 7), min(max(2 + 0.2 * t_q, 3), 7)),
                             layout="constrained")
    _draw_mask(ax, m, tokens)
    if title is not None:
        ax.set_title(title, fontsize=10)
    return ax


def _draw_mask(ax: Axes, m: np.ndarray, tokens=None) -> None:
    from matplotlib.colors import ListedColormap

    from tfcore.viz.figures import MIN_TEXT_PX, points

    t_q, t_k = m.shape
    ax.imshow(m.astype(float), cmap=ListedColormap(MASK_COLOURS), vmin=0, vmax=1, interpolation="nearest",
              aspect="equal").set_gid("mask")
    patch = ax.add_patch(_masked_patch())
    patch.set_path(masked_path(m))
    patch.set_visible(not m.all())
    ax.set_xlim(-0.5, t_k - 0.5)
    ax.set_ylim(t_q - 0.5, -0.5)
    key_tokens = tokens if tokens is not None and len(tokens) == t_k else None
    query_tokens = tokens if tokens is not None and len(tokens) == t_q else None
    set_token_ticks(ax, token_labels(query_tokens, t_q, "tokens"), token_labels(key_tokens, t_k, "tokens"),
                    size=max(8.0, points(MIN_TEXT_PX, ax.figure.dpi)))


def mask_gallery(masks: Mapping[str, object], ncols: int | None = None, panel_size: float = 2.6,
                 title: str | None = None) -> Figure:
    """Several masks side by side, one panel per entry, titled by its key and shape. Returns the Figure.

    masks: {name: bool mask}, each (T_q, T_k) or broadcastable like (B, 1, T_q, T_k) or
    (B, 1, 1, T_k) (the first batch element is shown). True = may attend: blue; hidden:
    hatched grey. Call ``plt.show()`` afterwards.
    """
    import matplotlib.pyplot as plt

    if not masks:
        raise ValueError("masks is empty: pass {name: mask}")
    items = list(masks.items())
    ncols = min(len(items), 4) if ncols is None else ncols
    nrows = math.ceil(len(items) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows + 0.3),
                             layout="constrained", squeeze=False)
    for ax, (name, mask) in zip(axes.flat, items):
        m, shape = _mask_2d(mask, f"masks[{name!r}]")
        _draw_mask(ax, m)
        ax.set_xlabel("key", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
        batch = ", batch 0" if len(shape) > 2 and shape[0] > 1 else ""
        ax.set_title(f"{name}\n{shape}{batch}", fontsize=9)
    for ax in list(axes.flat)[len(items):]:
        ax.set_visible(False)
    if title is not None:
        fig.suptitle(title, fontsize=11)
    return fig


# ---------------------------------------------------------------- entropy per head


def mean_head_entropy(weights_by_layer: Mapping[str, object]) -> tuple[list[str], np.ndarray]:
    """Mean attention entropy (nats) per (layer, head): H_i = -sum_j a_ij log a_ij averaged over batch and queries.

    weights_by_layer: {layer name: (B, h, T_q, T_k) or (h, T_q, T_k)} as filled by
    ``capture_attention``. Returns the names and a (layers, max heads) array (NaN where a
    layer has fewer heads).
    """
    import torch

    from tfcore.diagnostics import attention_entropy

    if not weights_by_layer:
        raise ValueError("weights_by_layer is empty: fill it with `with capture_attention(model) as w: model(x)`")
    names, rows = [], []
    for name, w in weights_by_layer.items():
        t = torch.as_tensor(to_numpy(w, f"weights_by_layer[{name!r}]"), dtype=torch.float64)
        if t.dim() == 3:
            t = t.unsqueeze(0)
        if t.dim() != 4:
            raise ValueError(f"weights_by_layer[{name!r}] must have shape (B, h, T_q, T_k), got {tuple(t.shape)}")
        names.append(name)
        rows.append(attention_entropy(t).mean(dim=(0, 2)).numpy())
    out = np.full((len(rows), max(len(r) for r in rows)), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return names, out


def head_entropy_grid(weights_by_layer: Mapping[str, object], ax: Axes | None = None, title: str | None = None,
                      annotate: bool = True, cmap="magma") -> Figure:
    """Mean attention entropy per (layer, head) as a grid, with log T_k (a uniform row) per layer.

    Low entropy: a collapsed head that looks at one key; near log T_k: a diffuse head
    (for causal layers a uniform row i has only log(i + 1)). Returns the Figure.
    """
    names, grid = mean_head_entropy(weights_by_layer)
    t_ks = [to_numpy(w, name).shape[-1] for name, w in weights_by_layer.items()]
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(1.6 + 0.55 * grid.shape[1] + 1.8, 1.0 + 0.42 * grid.shape[0]),
                               layout="constrained")
    fig = ax.figure
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(grid.shape[1]), [str(h) for h in range(grid.shape[1])], fontsize=9)
    ax.set_yticks(range(len(names)), [f"{n}  (log T_k = {math.log(t):.2f})" for n, t in zip(names, t_ks)],
                  fontsize=9)
    ax.set_xlabel("head", fontsize=9)
    if annotate:
        top = np.nanmax(grid) if np.isfinite(grid).any() else 1.0
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if v > 0.6 * top else "white")
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cb.set_label("mean entropy (nats)", fontsize=9)
    cb.ax.tick_params(labelsize=8)
    ax.set_title(title if title is not None else "attention entropy per head", fontsize=10)
    return fig
