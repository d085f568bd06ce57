"""CostCalculator (lesson 08): FLOPs, score memory and KV cache of a model as its sizes and the length change.

Every number comes from ``tfcore.complexity`` (a multiply-add is 2 FLOPs):

    attention (QK^T, AV) per layer   attention_flops(B, h, T, d_head)           = 4 B h T^2 d_head
    Q, K, V, O projections           projection_flops(B, T, d, h, h_kv)         = 2 B T (2 d^2 + 2 d h_kv d_head)
    MLP                              mlp_flops(B, T, d, d_ff, kind)             = 2 B T (2 or 3) d d_ff
    scores of one layer              score_memory_bytes(B, h, T, bytes)         = B h T^2 bytes
    KV cache of all layers           kv_cache_bytes(L, B, T, h_kv, d_head, bytes) = 2 L B T h_kv d_head bytes
"""

from __future__ import annotations

import html

import numpy as np

from tfcore._checks import require_positive_number
from tfcore.viz.figures import FastFigure, held, image_widget, new_figure, widget_bundle

SMALL = 9  # points (10 px at 80 dpi)
# name: (base config, overrides, context length). Published sizes; GPT-2's vocabulary padded to 50304.
PRESETS = {
    "GPT-2 small": ("gpt2", {}, 1024),
    "GPT-2 XL": ("gpt2", dict(d_model=1600, n_layers=48, n_heads=25), 1024),
    "Llama-2 7B": ("llama", dict(n_kv_heads=32, d_ff=11008), 4096),
    "Llama-2 70B": ("llama", dict(d_model=8192, n_layers=80, n_heads=64, n_kv_heads=8, d_ff=28672), 4096),
    "Llama-3 8B": ("llama", dict(n_kv_heads=8, d_ff=14336, vocab_size=128256, max_seq_len=8192), 8192),
}
CUSTOM = "custom"
DTYPES = {"float32": 4, "bfloat16": 2, "float8": 1}
LENGTHS = [2 ** p for p in range(7, 18)]  # 128 ... 131072
MAX_BATCH = 65536
SIZES = ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff")
PART_COLOURS = {"attention": "#e8402a", "projections": "#2f6fad", "mlp": "#e8892a"}
MEMORY_COLOURS = {"scores": "#e8402a", "kv_cache": "#2f6fad", "weights": "#555555"}


def preset_config(name: str, **overrides):
    """The ``TransformerConfig`` of a named model (``PRESETS``), with overrides."""
    from tfcore.model import gpt2_config, llama_config

    if name not in PRESETS:
        raise ValueError(f"name must be one of {list(PRESETS)}, got {name!r}")
    base, sizes, _ = PRESETS[name]
    return (gpt2_config if base == "gpt2" else llama_config)(**{**sizes, **overrides})


def costs(config, seq_len: int, batch: int, bytes_per_value: int) -> dict[str, float]:
    """What the calculator shows, from ``tfcore.complexity``: FLOPs of one forward pass and memory in bytes.

    Keys: attention, projections, mlp (FLOPs of one layer), layer, forward (all layers; the
    embedding and unembedding left out), crossover (the T where one layer's attention FLOPs
    equal its projections and MLP), parameters, weights, scores (one layer's T x T scores),
    kv_cache (keys and values of every layer).
    """
    from tfcore import complexity as cx

    c = config
    d_head = c.d_model // c.n_heads
    parts = {
        "attention": cx.attention_flops(batch, c.n_heads, seq_len, d_head),
        "projections": cx.projection_flops(batch, seq_len, c.d_model, c.n_heads, c.n_kv_heads),
        "mlp": cx.mlp_flops(batch, seq_len, c.d_model, c.d_ff, c.mlp),
    }
    per_token = cx.projection_flops(1, 1, c.d_model, c.n_heads, c.n_kv_heads) + cx.mlp_flops(1, 1, c.d_model, c.d_ff,
                                                                                            c.mlp)
    parameters = cx.parameter_count(c)["total"]
    return {
        **parts,
        "layer": sum(parts.values()),
        "forward": c.n_layers * sum(parts.values()),
        "crossover": per_token / cx.attention_flops(1, c.n_heads, 1, d_head),  # attention = 4 h d_head T^2 per T
        "parameters": parameters,
        "weights": parameters * bytes_per_value,
        "scores": cx.score_memory_bytes(batch, c.n_heads, seq_len, bytes_per_value),
        "kv_cache": cx.kv_cache_bytes(c.n_layers, batch, seq_len, c.n_kv_heads, d_head, bytes_per_value),
    }


class CostCalculator:
    """Choose a named model (or edit its sizes), a length T, a batch B and a dtype; read its costs.

    Controls: ``model`` (Dropdown over ``PRESETS`` and "custom"), ``d_model``, ``n_layers``,
    ``n_heads``, ``n_kv_heads``, ``d_ff`` (BoundedIntText; editing one makes the model
    "custom", keeping the named model's other choices), ``mlp`` (GELU: 2 matrices, SwiGLU: 3),
    ``seq_len`` (SelectionSlider, 128 to 131072), ``batch`` and ``dtype``.

    Picture: one layer's FLOPs by part against T (attention grows as T^2, the rest as T) and
    memory against T (one layer's scores, the whole KV cache, the weights), with T marked.

    Data: ``config`` (TransformerConfig), ``values`` (``costs(...)``); ``error`` says why a
    combination of sizes is impossible (the last valid numbers stay).
    """

    def __init__(self, model: str = "GPT-2 small", *, seq_len: int | None = None, batch: int = 1,
                 dtype: str = "bfloat16", dpi: float = 80) -> None:
        import ipywidgets as W

        if model not in PRESETS:
            raise ValueError(f"model must be one of {list(PRESETS)}, got {model!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
        seq_len = PRESETS[model][2] if seq_len is None else seq_len
        if seq_len not in LENGTHS:
            raise ValueError(f"seq_len must be a power of two in [{LENGTHS[0]}, {LENGTHS[-1]}], got {seq_len}")
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch must be an integer in [1, {MAX_BATCH}] (the box's range), got {batch!r}")
        require_positive_number("dpi", dpi)
        self.dpi, self.error, self.base = dpi, None, model
        self._holding = False
        self._fast = None
        short = {"description_width": "70px"}
        self.model = W.Dropdown(options=list(PRESETS) + [CUSTOM], value=model, description="model", style=short,
                                layout=W.Layout(width="250px"))
        labels = {"d_model": "d_model", "n_layers": "layers", "n_heads": "heads", "n_kv_heads": "KV heads",
                  "d_ff": "d_ff"}
        self.sizes = {name: W.BoundedIntText(value=1, min=1, max=1_000_000, description=labels[name], style=short,
                                             layout=W.Layout(width="175px")) for name in SIZES}
        self.mlp = W.ToggleButtons(options=[("GELU MLP", "gelu_tanh"), ("SwiGLU", "swiglu")], value="gelu_tanh",
                                   style={"button_width": "90px"},
                                   tooltips=["2 matrices: W1, W2", "3 matrices: W1, W2, W3"])
        self.seq_len = W.SelectionSlider(options=LENGTHS, value=seq_len, description="T", style=short,
                                         layout=W.Layout(width="420px"))
        self.batch = W.BoundedIntText(value=batch, min=1, max=MAX_BATCH, description="batch B", style=short,
                                      layout=W.Layout(width="175px"))
        self.dtype = W.ToggleButtons(options=list(DTYPES), value=dtype, style={"button_width": "80px"},
                                     tooltips=[f"{b} bytes per value" for b in DTYPES.values()])
        self.status = W.HTML()
        self.image = image_widget()
        self.widget = W.VBox([W.HBox([self.model, self.mlp]), W.HBox([self.sizes[n] for n in SIZES]),
                              W.HBox([self.seq_len, self.batch, self.dtype]), self.status, self.image])
        for w, cls in ((self.widget, "tfcore-cost"), (self.model, "tfcore-model"), (self.mlp, "tfcore-mlp"),
                       (self.seq_len, "tfcore-seq-len"), (self.batch, "tfcore-batch"), (self.dtype, "tfcore-dtype"),
                       (self.status, "tfcore-status"), (self.image, "tfcore-cost-image")):
            w.add_class(cls)
        for name, w in self.sizes.items():
            w.add_class(f"tfcore-{name.replace('_', '-')}")
            w.observe(self._on_size, "value")
        self.mlp.observe(self._on_size, "value")
        self.model.observe(self._on_model, "value")
        for w in (self.seq_len, self.batch, self.dtype):
            w.observe(lambda change: self._update(), "value")
        self._load(model)
        self._update()

    # ------------------------------------------------------------ controls


    def _load(self, name: str) -> None:
        """Fill the size fields from a named model (no redraw)."""
        config = preset_config(name)
        with held(self):
            for size in SIZES:
                self.sizes[size].value = getattr(config, size)
            self.mlp.value = "swiglu" if config.mlp == "swiglu" else "gelu_tanh"
        self.base = name

    def _on_model(self, change) -> None:
        if self._holding or change["new"] == CUSTOM:
            return
        self._load(change["new"])
        with held(self):
            self.seq_len.value = PRESETS[change["new"]][2]
        self._update()

    def _on_size(self, change) -> None:
        if self._holding:
            return
        with held(self):
            self.model.value = CUSTOM
        self._update()

    def _config(self):
        """The model the fields describe: the named (or last named) model with these sizes; ValueError if impossible."""
        sizes = {name: int(w.value) for name, w in self.sizes.items()}
        return preset_config(self.base, mlp=self.mlp.value, **sizes)

    def _update(self) -> None:
        try:
            config = self._config()
        except ValueError as e:
            self.error = str(e)
            self.status.value = f'<span style="color:#b00020">&#9888; {html.escape(self.error)}</span>'
            return
        self.error, self.config = None, config
        self.values = costs(config, self.seq_len.value, self.batch.value, DTYPES[self.dtype.value])
        self.image.value = self._draw()
        self.status.value = self._table()

    def _table(self) -> str:
        v, c = self.values, self.config
        name = self.model.value if self.model.value != CUSTOM else f"custom (based on {self.base})"
        rows = [
            ("parameters", f"{v['parameters'] / 1e6:,.1f} M",
             f"vocabulary {c.vocab_size:,}, d_head {c.d_model // c.n_heads}"),
            ("weights", human_bytes(v["weights"]), f"{self.dtype.value}, {DTYPES[self.dtype.value]} bytes per value"),
            ("FLOPs of one layer", human_flops(v["layer"]), f"attention {human_flops(v['attention'])}, "
             f"projections {human_flops(v['projections'])}, MLP {human_flops(v['mlp'])}"),
            ("FLOPs of a forward pass", human_flops(v["forward"]), f"{c.n_layers} layers, B = {self.batch.value}, "
             f"T = {self.seq_len.value:,} (embeddings left out)"),
            ("attention = rest at", f"T = {v['crossover']:,.0f}",
             "beyond it the T² term costs more than the linear layers"),
            ("scores of one layer", human_bytes(v["scores"]), "B h T² values, if materialised (naive attention)"),
            ("KV cache", human_bytes(v["kv_cache"]),
             f"2 L B T h_kv d_head, h_kv = {c.n_kv_heads} of {c.n_heads} heads"),
        ]
        cells = "".join(f"<tr><td style='padding-right:12px'>{html.escape(a)}</td><td style='text-align:right;"
                        f"padding-right:12px'><b>{html.escape(b)}</b></td><td>{html.escape(d)}</td></tr>"
                        for a, b, d in rows)
        return f"<b>{html.escape(name)}</b><table>{cells}</table>"

    # ------------------------------------------------------------ drawing

    def _figure(self):
        fig = new_figure((11.4, 3.4), self.dpi)
        ax_f = fig.add_axes((0.07, 0.16, 0.38, 0.72))
        ax_m = fig.add_axes((0.57, 0.16, 0.38, 0.72))
        lines = {}
        for ax, colours, labels in ((ax_f, PART_COLOURS, {"attention": "attention (T²)", "projections": "projections",
                                                         "mlp": "MLP"}),
                                    (ax_m, MEMORY_COLOURS, {"scores": "scores, one layer (T²)",
                                                            "kv_cache": "KV cache, all layers", "weights": "weights"})):
            for key, colour in colours.items():
                lines[key], = ax.plot(LENGTHS, np.ones(len(LENGTHS)), color=colour, lw=2, label=labels[key])
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlim(LENGTHS[0], LENGTHS[-1])
            ax.set_xticks(LENGTHS[::2], [f"{t // 1024}k" if t >= 1024 else str(t) for t in LENGTHS[::2]])
            ax.minorticks_off()
            ax.set_xlabel("sequence length T", fontsize=SMALL)
            ax.tick_params(labelsize=SMALL)
            ax.legend(fontsize=SMALL, loc="upper left", frameon=False)
            ax.grid(alpha=0.3)
        ax_f.set_ylabel("FLOPs of one layer", fontsize=SMALL)
        ax_m.set_ylabel("bytes", fontsize=SMALL)
        marks = {ax: ax.axvline(LENGTHS[0], color="black", lw=1, ls="--") for ax in (ax_f, ax_m)}
        dots = {key: ax.plot([1], [1], "o", color=colour, ms=7)[0] for ax, colours in
                ((ax_f, PART_COLOURS), (ax_m, MEMORY_COLOURS)) for key, colour in colours.items()}
        cross = ax_f.axvline(LENGTHS[0], color=PART_COLOURS["attention"], lw=1, ls=":")
        for ax in (ax_f, ax_m):
            ax.set_title(" ", fontsize=10)
        animated = [*marks.values(), *dots.values(), ax_f.title, ax_m.title]
        return FastFigure(fig, animated), dict(f=ax_f, m=ax_m, lines=lines, marks=marks, dots=dots, cross=cross,
                                               key=None)

    def _draw(self) -> bytes:
        if self._fast is None:
            self._fast, self._parts = self._figure()
        p, c = self._parts, self.config
        batch, nbytes = self.batch.value, DTYPES[self.dtype.value]
        key = (c, batch, nbytes)
        if p["key"] != key:  # new curves: the static layer changes
            curves = {k: [] for k in (*PART_COLOURS, *MEMORY_COLOURS)}
            for t in LENGTHS:
                for k, v in costs(c, t, batch, nbytes).items():
                    if k in curves:
                        curves[k].append(v)
            for k, ys in curves.items():
                p["lines"][k].set_ydata(ys)
            for ax, keys in ((p["f"], PART_COLOURS), (p["m"], MEMORY_COLOURS)):
                ys = np.concatenate([np.asarray(curves[k], dtype=np.float64) for k in keys])  # ints overflow int64
                ax.set_ylim(ys.min() / 3, ys.max() * 30)  # room above for the legend
            p["cross"].set_xdata([self.values["crossover"]] * 2)
            p["key"] = key
            self._fast.invalidate()
        t, v = self.seq_len.value, self.values
        for ax in (p["f"], p["m"]):
            p["marks"][ax].set_xdata([t, t])
        for k, dot in p["dots"].items():
            dot.set_data([t], [v[k]])
        p["f"].set_title(f"one layer at T = {t:,}: {human_flops(v['layer'])} (dotted: attention = rest)", fontsize=10)
        p["m"].set_title(f"KV cache {human_bytes(v['kv_cache'])}, scores {human_bytes(v['scores'])}", fontsize=10)
        return self._fast.png()

    # ------------------------------------------------------------ display

    def picture(self) -> bytes:
        return bytes(self.image.value)

    def __repr__(self) -> str:
        return f"CostCalculator(model={self.model.value!r}, T={self.seq_len.value}, dtype={self.dtype.value!r})"

    def _repr_mimebundle_(self, include=None, exclude=None):
        return widget_bundle(self.widget, repr(self), self.picture(), include, exclude)


def human_bytes(n: float) -> str:
    """Bytes in binary units, three significant digits: 37748736 -> '36.0 MiB', 1.25 * 2**30 -> '1.25 GiB'."""
    return _scaled(n, (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)), "B")


def human_flops(n: float) -> str:
    """FLOPs in decimal units, three significant digits: 2.9e11 -> '290 GFLOP'."""
    return _scaled(n, (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)), "FLOP")


def _scaled(n: float, units, base: str) -> str:
    for unit, size in units:
        if n >= size:
            v = n / size
            return f"{v:,.{2 if v < 10 else 1 if v < 100 else 0}f} {unit}"
    return f"{n:,.0f} {base}"
