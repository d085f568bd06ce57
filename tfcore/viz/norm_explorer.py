"""NormExplorer (lesson 05): LayerNorm and RMSNorm of a vector whose components you drag.

    LayerNorm(x) = (x - mean(x)) / sqrt(var(x) + eps)        RMSNorm(x) = x / sqrt(mean(x^2) + eps)

(gain 1, shift 0). Both remove the vector's scale; only LayerNorm also removes a constant added
to every component. The ``shift`` and ``scale`` sliders make that visible: the input drawn is
``scale * (x + shift)``.
"""

from __future__ import annotations

import numpy as np

from tfcore._checks import require_int, require_number, require_positive_number
from tfcore.viz.figures import FastFigure, image_widget, new_figure, widget_bundle

SMALL = 9  # points (10 px at 80 dpi)
COLOURS = {"input": "#555555", "layer": "#2f6fad", "rms": "#e8892a"}
START = (1.2, -0.4, 2.0, 0.3, -1.1, 0.8)


class NormExplorer:
    """A ``d``-component vector under LayerNorm and RMSNorm (``tfcore.norms``, gain 1, shift 0).

    Controls: ``components`` (one vertical FloatSlider per component, in [-3, 3]), ``shift``
    (added to every component) and ``scale`` (multiplies the result): the normalised input is
    ``x = scale * (components + shift)``.

    Picture: the input with its mean and RMS, LayerNorm(x) and RMSNorm(x), on one scale.

    Data: ``x``, ``layer``, ``rms`` (d,) float64 arrays and ``stats`` (mean, std, RMS of x and
    of both outputs). ``tfcore.norms.layer_norm`` and ``rms_norm`` compute the outputs.
    """

    def __init__(self, values=START, *, shift: float = 0.0, scale: float = 1.0, dpi: float = 80) -> None:
        import ipywidgets as W

        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or getattr(values, "ndim", 1) != 1:
            raise TypeError(f"values must be a sequence of 2 to 12 numbers, got {values!r}")
        if not 2 <= len(values) <= 12:
            raise ValueError(f"values must have 2 to 12 components, got {len(values)}")
        values = [require_number(f"values[{i}]", float(v) if hasattr(v, "item") else v, -3, 3)  # the sliders' range
                  for i, v in enumerate(values)]
        require_number("scale", scale, 0.25, 4)
        require_number("shift", shift, -3, 3)
        require_positive_number("dpi", dpi)
        self.dpi, self.d = dpi, len(values)
        slider = dict(min=-3.0, max=3.0, step=0.05, orientation="vertical", readout_format=".2f",
                      layout=W.Layout(width="56px", height="150px"))
        self.components = [W.FloatSlider(value=v, description=f"x{i}", **slider) for i, v in enumerate(values)]
        style = {"description_width": "60px"}
        self.shift = W.FloatSlider(value=shift, min=-3.0, max=3.0, step=0.05, description="+ shift", style=style)
        self.scale = W.FloatSlider(value=scale, min=0.25, max=4.0, step=0.05, description="× scale", style=style)
        self.status = W.HTML()
        self.image = image_widget()
        self.widget = W.VBox([W.HBox([W.HBox(self.components), W.VBox([self.shift, self.scale],
                                                                        layout=W.Layout(justify_content="center"))]),
                              self.status, self.image])
        for w, cls in ((self.widget, "tfcore-norms"), (self.shift, "tfcore-shift"), (self.scale, "tfcore-scale"),
                       (self.status, "tfcore-status"), (self.image, "tfcore-norm-image")):
            w.add_class(cls)
        for i, w in enumerate(self.components):
            w.add_class("tfcore-component")
            w.add_class(f"tfcore-component-{i}")
        for w in (*self.components, self.shift, self.scale):
            w.observe(lambda change: self._update(), "value")
        self._fast = None
        self._update()

    def _update(self) -> None:
        import torch

        from tfcore.norms import layer_norm, rms_norm

        raw = np.array([w.value for w in self.components], dtype=np.float64)
        self.x = self.scale.value * (raw + self.shift.value)
        x = torch.from_numpy(self.x)
        self.layer = layer_norm(x, None, None).numpy()
        self.rms = rms_norm(x, None).numpy()
        self.stats = {name: {"mean": float(v.mean()), "std": float(v.std()), "rms": float(np.sqrt((v ** 2).mean()))}
                      for name, v in (("input", self.x), ("layer", self.layer), ("rms", self.rms))}
        self.image.value = self._draw()
        s = {name: {k: _fmt(v) for k, v in stats.items()} for name, stats in self.stats.items()}
        self.status.value = (
            f"input x = {self.scale.value:.2f} × (components + {self.shift.value:.2f}): mean {s['input']['mean']}, "
            f"std {s['input']['std']}, RMS {s['input']['rms']}<br>"
            f'<span style="color:{COLOURS["layer"]}">&#9632;</span> LayerNorm: subtract the mean, divide by the std: '
            f"mean {s['layer']['mean']}, std {s['layer']['std']}<br>"
            f'<span style="color:{COLOURS["rms"]}">&#9632;</span> RMSNorm: divide by the RMS only: '
            f"mean {s['rms']['mean']}, RMS {s['rms']['rms']}")

    # ------------------------------------------------------------ drawing

    def _figure(self):
        fig = new_figure((11.4, 3.1), self.dpi)
        idx = np.arange(self.d)
        axes, bars = {}, {}
        for i, (name, title) in enumerate((("input", "input x"), ("layer", "LayerNorm(x)"), ("rms", "RMSNorm(x)"))):
            ax = fig.add_axes((0.05 + i * 0.325, 0.16, 0.27, 0.70))
            bars[name] = ax.bar(idx, np.zeros(self.d), width=0.7, color=COLOURS[name]).patches
            ax.axhline(0, color="grey", lw=0.6)
            ax.set_xticks(idx, [f"x{i}" for i in idx])
            ax.set_xlabel("component", fontsize=SMALL)
            ax.tick_params(labelsize=SMALL)
            ax.set_title(title, fontsize=10)
            axes[name] = ax
        top = 1.1 * np.sqrt(self.d)  # |LayerNorm(x)_i| <= sqrt(d - 1), |RMSNorm(x)_i| <= sqrt(d)
        for name in ("layer", "rms"):
            axes[name].set_ylim(-top, top)
        ax = axes["input"]
        mean = ax.axhline(0, color="#e8402a", lw=1.5, label="mean")
        rms_hi = ax.axhline(0, color="#8a8a8a", lw=1.2, ls="--", label="± RMS")
        rms_lo = ax.axhline(0, color="#8a8a8a", lw=1.2, ls="--")
        ax.legend(fontsize=SMALL, loc="upper left", frameon=False, ncols=2)
        lines = []
        for name in ("layer", "rms"):
            lines.append(axes[name].axhline(0, color="#e8402a", lw=1.5))
        animated = [p for name in bars for p in bars[name]] + [mean, rms_hi, rms_lo, ax.yaxis, *lines]
        return FastFigure(fig, animated), dict(axes=axes, bars=bars, mean=mean, rms=(rms_hi, rms_lo), means=lines)

    def _draw(self) -> bytes:
        if self._fast is None:
            self._fast, self._parts = self._figure()
        p = self._parts
        for name, values in (("input", self.x), ("layer", self.layer), ("rms", self.rms)):
            for bar, h in zip(p["bars"][name], values):
                bar.set_height(h)
        s = self.stats["input"]
        top = _nice_top(max(float(np.abs(self.x).max()), s["rms"]))
        p["axes"]["input"].set_ylim(-top, top)
        p["mean"].set_ydata([s["mean"]] * 2)
        p["rms"][0].set_ydata([s["rms"]] * 2)
        p["rms"][1].set_ydata([-s["rms"]] * 2)
        for line, name in zip(p["means"], ("layer", "rms")):
            line.set_ydata([self.stats[name]["mean"]] * 2)
        return self._fast.png()

    # ------------------------------------------------------------ display

    def picture(self) -> bytes:
        return bytes(self.image.value)

    def __repr__(self) -> str:
        return f"NormExplorer(d={self.d})"

    def _repr_mimebundle_(self, include=None, exclude=None):
        return widget_bundle(self.widget, repr(self), self.picture(), include, exclude)


def _fmt(value: float) -> str:
    """Three decimals, and never "-0.000" for a rounding-level negative."""
    return f"{round(value, 3) + 0.0:.3f}"


def _nice_top(value: float) -> float:
    """A rounded axis top at or above ``value`` (1, 1.5, 2, 3, 5 times a power of ten)."""
    value = max(value * 1.08, 1e-3)
    power = 10 ** np.floor(np.log10(value))
    for m in (1, 1.5, 2, 3, 5, 10):
        if value <= m * power:
            return float(m * power)
    return float(10 * power)
