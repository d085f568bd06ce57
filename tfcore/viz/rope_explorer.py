"""RopeExplorer (lesson 07): RoPE turns a query and a key by their positions; their score depends on the offset only.

RoPE rotates channel pair i of a vector at position p by the angle ``p * theta_i``,
``theta_i = base^(-2i/d)``. The query at position m and the key at position n are turned by
``m theta_i`` and ``n theta_i``, so the angle between them changes by ``(m - n) theta_i``, and

    score(m, n) = rope(q, m) . rope(k, n) / sqrt(d)

is the same for every pair of positions with the same offset ``m - n``.
"""

from __future__ import annotations

import html
import math

import numpy as np

from tfcore._checks import require_int, require_number, require_positive_number
from tfcore.viz.figures import FastFigure, image_widget, new_figure, widget_bundle

SMALL = 9  # points (10 px at 80 dpi)
Q_COLOUR, K_COLOUR = "#2f6fad", "#e8892a"


class RopeExplorer:
    """A query and a key vector (``d_head`` channels, drawn from ``seed``) under ``tfcore.positions.rope``.

    Controls: ``query_pos`` (m) and ``key_pos`` (n), IntSliders in [0, max_pos]; ``pair``
    (ToggleButtons): which channel pair (2i, 2i+1) the left panel draws (interleaved layout).

    Picture: the chosen pair of the query and the key before (faint) and after rotation; the
    score for every (m, n), constant along each diagonal m - n = const, with (m, n) marked;
    and the score against the offset m - n, where all T^2 pairs fall on one curve.

    Data: ``q_rot``, ``k_rot`` (d_head,) the rotated vectors, ``score`` (float) and
    ``scores`` (max_pos + 1, max_pos + 1): score[m, n] for every pair of positions.
    """

    def __init__(self, query_pos: int = 5, key_pos: int = 2, *, d_head: int = 8, max_pos: int = 48,
                 base: float = 10000.0, seed: int = 0, dpi: float = 80) -> None:
        import ipywidgets as W
        import torch

        from tfcore.positions import rope

        if isinstance(d_head, bool) or not isinstance(d_head, int) or d_head < 2 or d_head % 2:
            raise ValueError(f"d_head must be even and at least 2, an integer (RoPE turns channel pairs), "
                             f"got {d_head!r}")
        require_int("max_pos", max_pos, minimum=1)
        for name, v in (("query_pos", query_pos), ("key_pos", key_pos)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= max_pos:
                raise ValueError(f"{name} must lie in [0, max_pos={max_pos}], an integer, got {v!r}")
        require_positive_number("base", base)
        require_int("seed", seed)
        require_positive_number("dpi", dpi)
        self.dpi, self.d_head, self.max_pos, self.base = dpi, d_head, max_pos, base
        g = torch.Generator().manual_seed(seed)
        self.q, self.k = torch.randn(2, d_head, generator=g, dtype=torch.float64)
        positions = torch.arange(max_pos + 1)
        self.q_all = rope(self.q.expand(max_pos + 1, d_head), positions, base)  # (P, d): q at every position
        self.k_all = rope(self.k.expand(max_pos + 1, d_head), positions, base)
        self.scores = (self.q_all @ self.k_all.T / math.sqrt(d_head)).numpy()  # (P, P): [m, n]
        self.thetas = [base ** (-2 * i / d_head) for i in range(d_head // 2)]

        style = {"description_width": "90px"}
        self.query_pos = W.IntSlider(value=query_pos, min=0, max=max_pos, description="query pos m", style=style,
                                     layout=W.Layout(width="420px"))
        self.key_pos = W.IntSlider(value=key_pos, min=0, max=max_pos, description="key pos n", style=style,
                                   layout=W.Layout(width="420px"))
        self.pair = W.ToggleButtons(options=[(f"pair {i}: θ = {t:.3g}", i) for i, t in enumerate(self.thetas)],
                                    value=0, style={"button_width": "150px"})
        self.status = W.HTML()
        self.image = image_widget()
        self.widget = W.VBox([W.HBox([self.query_pos, self.key_pos]), self.pair, self.status, self.image])
        for w, cls in ((self.widget, "tfcore-rope"), (self.query_pos, "tfcore-query-pos"),
                       (self.key_pos, "tfcore-key-pos"), (self.pair, "tfcore-pair"), (self.status, "tfcore-status"),
                       (self.image, "tfcore-rope-image")):
            w.add_class(cls)
        for w in (self.query_pos, self.key_pos, self.pair):
            w.observe(lambda change: self._update(), "value")
        self._fast = None
        self._update()

    def _update(self) -> None:
        import torch

        from tfcore.positions import rope

        m, n, i = self.query_pos.value, self.key_pos.value, self.pair.value
        self.q_rot = rope(self.q[None], torch.tensor([m]), self.base)[0].numpy()
        self.k_rot = rope(self.k[None], torch.tensor([n]), self.base)[0].numpy()
        self.score = float(self.q_rot @ self.k_rot / math.sqrt(self.d_head))
        same = [(m + s, n + s) for s in (-min(m, n), self.max_pos - max(m, n)) if s]  # the diagonal's two ends
        self.image.value = self._draw()
        others = "; ".join(f"score({a}, {b}) = {self.scores[a, b]:.4f}" for a, b in same)
        turn = (m - n) * self.thetas[i]
        self.status.value = (
            f"query at m = {m}, key at n = {n}, offset m − n = {m - n}: <b>score = q_m·k_n / √{self.d_head} = "
            f"{self.score:.4f}</b>" + (f" · same offset elsewhere: {html.escape(others)}" if others else "") +
            f"<br>pair {i} (channels {2 * i}, {2 * i + 1}) turns by θ = {self.thetas[i]:.4g} rad per position: "
            f"the query by {m * self.thetas[i]:.3f}, the key by {n * self.thetas[i]:.3f}, "
            f"the angle between them by (m − n)θ = {turn:.3f} rad")

    # ------------------------------------------------------------ drawing

    def _figure(self):
        from matplotlib.patches import FancyArrowPatch

        fig = new_figure((11.6, 3.6), self.dpi)
        ax_pair = fig.add_axes((0.02, 0.15, 0.24, 0.70))
        ax_grid = fig.add_axes((0.33, 0.15, 0.24, 0.70))
        cax = fig.add_axes((0.58, 0.15, 0.01, 0.70))
        ax_off = fig.add_axes((0.68, 0.15, 0.30, 0.70))
        top = 1.15 * max(float(np.hypot(*self.q.numpy().reshape(-1, 2).T).max()),
                         float(np.hypot(*self.k.numpy().reshape(-1, 2).T).max()))
        ax_pair.set_xlim(-top, top)
        ax_pair.set_ylim(-top, top)
        ax_pair.set_aspect("equal")
        ax_pair.axhline(0, color="grey", lw=0.5)
        ax_pair.axvline(0, color="grey", lw=0.5)
        ax_pair.tick_params(labelsize=SMALL)
        arrows = {}
        for name, colour, alpha, lw in (("q0", Q_COLOUR, 0.3, 1.5), ("k0", K_COLOUR, 0.3, 1.5),
                                        ("q", Q_COLOUR, 1.0, 2.5), ("k", K_COLOUR, 1.0, 2.5)):
            arrows[name] = ax_pair.add_patch(FancyArrowPatch((0, 0), (1, 0), arrowstyle="-|>", mutation_scale=14,
                                                             color=colour, alpha=alpha, lw=lw))
        arrows["q"].set_label("query q_m")
        arrows["k"].set_label("key k_n")
        ax_pair.legend(handles=[arrows["q"], arrows["k"]], fontsize=SMALL, loc="lower left", frameon=False)
        ax_pair.set_title(" ", fontsize=10)

        lim = float(np.abs(self.scores).max())
        grid = ax_grid.imshow(self.scores, cmap="RdBu_r", vmin=-lim, vmax=lim, origin="upper", interpolation="nearest")
        diagonal, = ax_grid.plot([0, 0], [0, 0], color="black", lw=1.6, ls="--")
        dot_grid, = ax_grid.plot([0], [0], "o", mfc="none", mec="black", mew=2, ms=9)
        ax_grid.set_xlabel("key position n", fontsize=SMALL)
        ax_grid.set_ylabel("query position m", fontsize=SMALL)
        ax_grid.set_title("score(m, n) for every m, n", fontsize=10)
        ax_grid.tick_params(labelsize=SMALL)
        cb = fig.colorbar(grid, cax=cax)
        cb.ax.tick_params(labelsize=SMALL)

        p = self.max_pos
        m_idx, n_idx = np.meshgrid(np.arange(p + 1), np.arange(p + 1), indexing="ij")
        offsets = np.arange(-p, p + 1)
        by_offset = [self.scores[max(o, 0), max(-o, 0)] for o in offsets]  # score(m, n) at one (m, n) per offset
        ax_off.plot(offsets, by_offset, color="#cfcfcf", lw=1, zorder=1)
        ax_off.plot((m_idx - n_idx).ravel(), self.scores.ravel(), ".", color="#555555", ms=3, zorder=2)
        dot_off, = ax_off.plot([0], [0], "o", color="#e8402a", ms=9, zorder=3)
        ax_off.axhline(0, color="grey", lw=0.5)
        ax_off.set_xlim(-p - 1, p + 1)
        ax_off.set_xlabel("offset m − n (red: this m, n)", fontsize=SMALL)
        ax_off.set_ylabel("score", fontsize=SMALL)
        ax_off.set_title(f"all {(p + 1) ** 2} (m, n) against m − n: one curve", fontsize=10)
        ax_off.tick_params(labelsize=SMALL)
        animated = [*arrows.values(), ax_pair.title, diagonal, dot_grid, dot_off]
        return FastFigure(fig, animated), dict(pair=ax_pair, arrows=arrows, diagonal=diagonal, dot_grid=dot_grid,
                                               dot_off=dot_off)

    def _draw(self) -> bytes:
        if self._fast is None:
            self._fast, self._parts = self._figure()
        p = self._parts
        m, n, i = self.query_pos.value, self.key_pos.value, self.pair.value
        pair = slice(2 * i, 2 * i + 2)
        for name, vec in (("q0", self.q.numpy()), ("k0", self.k.numpy()), ("q", self.q_rot), ("k", self.k_rot)):
            p["arrows"][name].set_positions((0, 0), tuple(vec[pair]))
        p["pair"].set_title(f"pair {i}: q turned by {m}θ, k by {n}θ", fontsize=10)
        lo, hi = -min(m, n), self.max_pos - max(m, n)  # the diagonal m - n = const through (m, n)
        p["diagonal"].set_data([n + lo, n + hi], [m + lo, m + hi])
        p["dot_grid"].set_data([n], [m])
        p["dot_off"].set_data([m - n], [self.score])
        return self._fast.png()

    # ------------------------------------------------------------ display

    def picture(self) -> bytes:
        return bytes(self.image.value)

    def __repr__(self) -> str:
        return f"RopeExplorer(d_head={self.d_head}, max_pos={self.max_pos}, base={self.base:g})"

    def _repr_mimebundle_(self, include=None, exclude=None):
        return widget_bundle(self.widget, repr(self), self.picture(), include, exclude)
