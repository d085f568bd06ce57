"""NeuronExplorer (lesson 04): one hidden unit of an MLP, its activation and what it adds, as the input moves.

A unit of ``FFN(x) = sum_i phi(k_i . x + b_i) v_i`` reads the input through its key ``k`` (a row
of W_1) and writes ``m v`` (its value, a column of W_2, times its activation ``m``). A SwiGLU
unit computes ``m = SiLU(k_g . x) (k_u . x)`` from a gate key and an up key. The input moves in
the plane of two directions: ``along`` the (gate) key and ``across`` it; a ReLU or GELU unit only
sees the first, a SwiGLU unit sees both.
"""

from __future__ import annotations

import html

import numpy as np

from tfcore._checks import require_int, require_number, require_positive_number
from tfcore.viz.figures import FastFigure, image_widget, new_figure, widget_bundle

CHOICES = ("relu", "gelu", "gelu_tanh", "swiglu")
NAMES = {"relu": "ReLU", "gelu": "GELU", "gelu_tanh": "GELU (tanh)", "swiglu": "SwiGLU"}
FORMULAS = {
    "relu": "m = max(0, k·x + b)",
    "gelu": "m = z Φ(z), z = k·x + b",
    "gelu_tanh": "m = z/2 (1 + tanh(√(2/π) (z + 0.044715 z³))), z = k·x + b",
    "swiglu": "m = SiLU(k_g·x) · (k_u·x)",
}
SPAN = 3.0  # the sliders' range: the input moves in [-SPAN, SPAN] along and across the key
SMALL = 9  # points (10 px at 80 dpi)


class NeuronExplorer:
    """One hidden unit of a tfcore MLP (or SwiGLU) with ``d_model`` inputs, drawn from ``seed``.

    Controls: ``activation`` (ToggleButtons over ``CHOICES``), ``along`` and ``across``
    (FloatSliders: the input ``x = along * e1 + across * e2``, with ``e1`` the unit (gate) key
    direction and ``e2`` a unit direction orthogonal to it, in the plane of the up key).

    Picture: the activation ``m`` as ``along`` moves (``across`` fixed), ``m`` over the whole
    plane with the input marked, and the output ``m v`` the unit adds, beside its value ``v``.

    Data: ``x`` (d_model,), ``pre`` ({"z": k.x + b} or {"gate": k_g.x, "up": k_u.x}), ``m``
    (float) and ``output`` (d_model,), all computed by ``tfcore.mlp`` (the output by an
    ``MLP``/``SwiGLU`` module with this one hidden unit).
    """

    def __init__(self, activation: str = "gelu", along: float = 1.0, across: float = 0.5, *, d_model: int = 8,
                 seed: int = 0, dpi: float = 80) -> None:
        import ipywidgets as W
        import torch

        if activation not in CHOICES:
            raise ValueError(f"activation must be one of {CHOICES}, got {activation!r}")
        for name, v in (("along", along), ("across", across)):
            require_number(name, v, -SPAN, SPAN)
        if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 2:
            raise ValueError(f"d_model must be at least 2, an integer (the input moves in a plane), got {d_model!r}")
        require_int("seed", seed)
        require_positive_number("dpi", dpi)
        self.dpi, self.d_model = dpi, d_model
        g = torch.Generator().manual_seed(seed)
        e = torch.linalg.qr(torch.randn(d_model, 2, generator=g, dtype=torch.float64))[0].T.float()  # (2, d)
        self.directions = e  # e1: along the key, e2: across it
        self.key, self.bias = 1.5 * e[0], -0.5  # k = 1.5 e1: z = 1.5 along - 0.5
        self.gate_key, self.up_key = 1.5 * e[0], 0.3 * e[0] + 0.4 * e[1]  # SwiGLU: k_g . x = 1.5 along
        v = torch.randn(d_model, generator=g)
        self.value = v / v.norm()
        self._modules: dict[str, object] = {}
        self._planes: dict[str, np.ndarray] = {}

        style = {"description_width": "60px"}
        self.activation = W.ToggleButtons(options=[(NAMES[c], c) for c in CHOICES], value=activation,
                                          style={"button_width": "112px"}, tooltips=[FORMULAS[c] for c in CHOICES])
        self.along = W.FloatSlider(value=along, min=-SPAN, max=SPAN, step=0.05, description="along k",
                                   style=style, layout=W.Layout(width="380px"))
        self.across = W.FloatSlider(value=across, min=-SPAN, max=SPAN, step=0.05, description="across k",
                                    style=style, layout=W.Layout(width="380px"))
        self.status = W.HTML()
        self.image = image_widget()
        self.widget = W.VBox([self.activation, W.HBox([self.along, self.across]), self.status, self.image])
        for w, cls in ((self.widget, "tfcore-neuron"), (self.activation, "tfcore-activation"),
                       (self.along, "tfcore-along"), (self.across, "tfcore-across"), (self.status, "tfcore-status"),
                       (self.image, "tfcore-neuron-image")):
            w.add_class(cls)
        for w in (self.activation, self.along, self.across):
            w.observe(lambda change: self._update(), "value")
        self._fast = None
        self._update()

    # ------------------------------------------------------------ computing (tfcore.mlp)

    def _module(self, kind: str):
        """A tfcore MLP (or SwiGLU) with one hidden unit holding this key, bias and value."""
        import torch

        from tfcore.mlp import MLP, SwiGLU

        if kind not in self._modules:
            with torch.no_grad():
                if kind == "swiglu":
                    m = SwiGLU(self.d_model, 1, bias=False)
                    m.w1.weight.copy_(self.gate_key[None])
                    m.w3.weight.copy_(self.up_key[None])
                    m.w2.weight.copy_(self.value[:, None])
                else:
                    m = MLP(self.d_model, 1, activation=kind)
                    m.fc_in.weight.copy_(self.key[None])
                    m.fc_in.bias.fill_(self.bias)
                    m.fc_out.weight.copy_(self.value[:, None])
                    m.fc_out.bias.zero_()
            self._modules[kind] = m.eval()
        return self._modules[kind]

    def activations(self, kind: str, x):
        """The unit's activation m for inputs x (..., d_model) -> (...): tfcore.mlp's activation functions."""
        from tfcore.mlp import ACTIVATIONS

        if kind == "swiglu":
            return ACTIVATIONS["silu"](x @ self.gate_key) * (x @ self.up_key)
        return ACTIVATIONS[kind](x @ self.key + self.bias)

    def _inputs(self, along, across):
        """x = along e1 + across e2 for arrays of coordinates: (...) -> (..., d_model)."""
        import torch

        a = torch.as_tensor(along, dtype=torch.float32)[..., None]
        c = torch.as_tensor(across, dtype=torch.float32)[..., None]
        return a * self.directions[0] + c * self.directions[1]

    def _plane(self, kind: str) -> np.ndarray:
        if kind not in self._planes:
            grid = np.linspace(-SPAN, SPAN, 61)
            a, c = np.meshgrid(grid, grid)  # rows: across, columns: along
            self._planes[kind] = self.activations(kind, self._inputs(a, c)).numpy()
        return self._planes[kind]

    # ------------------------------------------------------------ controls

    def _update(self) -> None:
        import torch

        kind = self.activation.value
        self.x = self._inputs(self.along.value, self.across.value)
        with torch.no_grad():
            self.output = self._module(kind)(self.x).numpy()
        self.m = float(self.activations(kind, self.x))
        if kind == "swiglu":
            self.pre = {"gate": float(self.x @ self.gate_key), "up": float(self.x @ self.up_key)}
        else:
            self.pre = {"z": float(self.x @ self.key + self.bias)}
        self.image.value = self._draw()
        pre = ", ".join(f"{k} = {v:.3f}" for k, v in self.pre.items())
        self.status.value = (f"<b>{NAMES[kind]}</b>: {html.escape(FORMULAS[kind])} · input along = "
                             f"{self.along.value:.2f}, across = {self.across.value:.2f}: {pre} · "
                             f"<b>m = {self.m:.3f}</b><br>output = m v adds {self.m:.3f} × the value v "
                             f"(|v| = 1) to the residual stream: |output| = {np.linalg.norm(self.output):.3f}")

    # ------------------------------------------------------------ drawing

    def _figure(self):
        from matplotlib.colors import TwoSlopeNorm

        fig = new_figure((11.4, 3.3), self.dpi)
        ax_line = fig.add_axes((0.055, 0.17, 0.25, 0.68))
        ax_plane = fig.add_axes((0.39, 0.17, 0.20, 0.68))
        cax = fig.add_axes((0.60, 0.17, 0.01, 0.68))
        ax_out = fig.add_axes((0.70, 0.17, 0.28, 0.68))
        grid = np.linspace(-SPAN, SPAN, 61)
        curve, = ax_line.plot(grid, np.zeros_like(grid), color="#2f6fad", lw=2)
        dot_line, = ax_line.plot([0], [0], "o", color="#e8402a", ms=8, zorder=5)
        ax_line.axhline(0, color="grey", lw=0.6)
        ax_line.set_xlim(-SPAN, SPAN)
        ax_line.set_xlabel("input along the key", fontsize=SMALL)
        ax_line.set_ylabel("activation m", fontsize=SMALL)
        plane = ax_plane.imshow(np.zeros((61, 61)), origin="lower", extent=(-SPAN, SPAN, -SPAN, SPAN),
                                cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -1.0, 1.0), interpolation="bilinear")
        dot_plane, = ax_plane.plot([0], [0], "o", color="black", mfc="#e8402a", ms=8)
        ax_plane.set_xlabel("along the key", fontsize=SMALL)
        ax_plane.set_ylabel("across", fontsize=SMALL)
        ax_plane.set_title("m over the input plane", fontsize=10)
        cb = fig.colorbar(plane, cax=cax)
        cb.ax.tick_params(labelsize=SMALL)
        idx = np.arange(self.d_model)
        values = ax_out.bar(idx, self.value.numpy(), width=0.8, fill=False, edgecolor="#555555", lw=1.2,
                            label="value v")
        bars = ax_out.bar(idx, np.zeros(self.d_model), width=0.5, color="#e8892a", label="output m v")
        ax_out.axhline(0, color="grey", lw=0.6)
        ax_out.set_xticks(idx)
        ax_out.set_xlabel("output channel", fontsize=SMALL)
        ax_out.legend(fontsize=SMALL, loc="upper right", frameon=False, ncols=2)
        for ax in (ax_line, ax_plane, ax_out):
            ax.tick_params(labelsize=SMALL)
            ax.set_title(" ", fontsize=10)
        # the plane is static; the output panel's scale follows the curve shown, so its axis is redrawn too
        animated = [curve, dot_line, dot_plane, *values.patches, *bars.patches, ax_out.yaxis, ax_line.title,
                    ax_out.title]
        return FastFigure(fig, animated), dict(line=ax_line, curve=curve, dot_line=dot_line, plane=plane,
                                               dot_plane=dot_plane, out=ax_out, bars=bars.patches, kind=None)

    def _draw(self) -> bytes:
        if self._fast is None:
            self._fast, self._parts = self._figure()
        p, kind = self._parts, self.activation.value
        grid = np.linspace(-SPAN, SPAN, 61)
        if p["kind"] != kind:  # new activation: new plane, new axis limits (static parts)
            values = self._plane(kind)
            top = float(np.abs(values).max())
            p["plane"].set_data(values)
            p["plane"].set_norm(_centred(values))
            low = min(float(values.min()), 0.0)
            p["line"].set_ylim(low - 0.08 * (top - low), top * 1.08 + 0.05)
            p["kind"] = kind
            self._fast.invalidate()
        curve = self.activations(kind, self._inputs(grid, np.full_like(grid, self.across.value))).numpy()
        p["curve"].set_ydata(curve)
        out_top = 1.1 * max(float(np.abs(curve).max()), abs(self.m), 0.5) * float(np.abs(self.value.numpy()).max())
        p["out"].set_ylim(-out_top, out_top)  # the largest output along this line fills the panel
        p["dot_line"].set_data([self.along.value], [self.m])
        p["dot_plane"].set_data([self.along.value], [self.across.value])
        for bar, h in zip(p["bars"], self.output):
            bar.set_height(h)
        across = f" (across = {self.across.value:.2f})" if kind == "swiglu" else " (across does not matter)"
        p["line"].set_title(f"{NAMES[kind]} unit as the input moves{across}", fontsize=10)
        p["out"].set_title(f"what it adds: m v, m = {self.m:.3f}", fontsize=10)
        return self._fast.png()

    # ------------------------------------------------------------ display

    def picture(self) -> bytes:
        return bytes(self.image.value)

    def __repr__(self) -> str:
        return f"NeuronExplorer(activation={self.activation.value!r}, d_model={self.d_model})"

    def _repr_mimebundle_(self, include=None, exclude=None):
        return widget_bundle(self.widget, repr(self), self.picture(), include, exclude)


def _centred(values: np.ndarray):
    """A colour scale with white at 0 that covers the values (ReLU's plane has no negative part)."""
    from matplotlib.colors import TwoSlopeNorm

    top = max(float(values.max()), 1e-6)
    return TwoSlopeNorm(0.0, min(float(values.min()), -1e-3 * top), top)
