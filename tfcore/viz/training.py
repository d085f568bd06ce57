"""Notebook callbacks for ``tfcore.train.train``: a live loss curve and two probes of the model.

Each is called with the loop's ``TrainState`` every ``callback_interval`` steps and after the last:

- ``LossPlot()``: an ``ipywidgets.Image`` whose PNG is redrawn (training loss, its moving
  average, validation loss);
- ``ResidualNorms(probe)``: ``||F_l(x)|| / ||x||`` per block on a fixed probe batch (B, T);
- ``AttentionEntropy(probe)``: the mean attention entropy of every head, (h,) per layer.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from torch import Tensor

from tfcore.diagnostics import head_entropy, moving_average, residual_norms

if TYPE_CHECKING:
    from tfcore.train import TrainState


class LossPlot:
    """A live loss curve in a notebook: an ``ipywidgets.Image`` whose PNG is redrawn by the callback.

    ``plot = LossPlot(); train(..., callbacks=[plot])``. The widget is displayed when the plot
    is created (empty, so the saved output never changes); outside a notebook it is just kept.
    """

    def __init__(self, display: bool = True, width: float = 6.0, height: float = 3.0, smooth: int = 20) -> None:
        import ipywidgets

        self.widget = ipywidgets.Image(format="png")
        self.size, self.smooth = (width, height), smooth
        if display:
            from IPython.display import display as show

            show(self.widget)

    def __call__(self, state: TrainState) -> None:
        self.widget.value = self.render(state.losses, state.evals)

    def render(self, losses: list[float], evals: list[dict]) -> bytes:
        """The PNG of a loss curve: losses (one per step), evals ({"step", "val_loss"} dicts)."""
        from matplotlib.figure import Figure  # no pyplot: no global figure, no backend choice

        fig = Figure(figsize=self.size, dpi=80)
        ax = fig.add_subplot()
        if losses:
            ax.plot(range(1, len(losses) + 1), losses, color="tab:blue", alpha=0.3, lw=0.8)
            k = min(self.smooth, len(losses))
            ax.plot(range(k, len(losses) + 1), moving_average(losses, k).tolist(), color="tab:blue", label="train")
        if evals:
            ax.plot([e["step"] for e in evals], [e["val_loss"] for e in evals], "o-", color="tab:orange", label="val")
        ax.set(xlabel="step", ylabel="loss (nats / token)")
        ax.grid(alpha=0.3)
        if losses or evals:
            ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()


class ResidualNorms:
    """Records ``||F_l(x)|| / ||x||`` per block on a fixed probe batch (B, T): how much each block writes.

    F_l(x) = block(x) - x is the block's update to the residual stream (``diagnostics.residual_norms``).
    Kept in ``history[block_name]`` as a list of (step, ratio).
    """

    def __init__(self, probe: Tensor) -> None:
        self.probe = probe
        self.history: dict[str, list[tuple[int, float]]] = {}

    def __call__(self, state: TrainState) -> None:
        model = state.model
        for name, ratio in residual_norms(model, self.probe.to(model.embed.weight.device)).items():
            self.history.setdefault(name, []).append((state.step, ratio))


class AttentionEntropy:
    """Records the mean attention entropy of every head (nats) on a fixed probe batch (B, T).

    ``history[layer_name]`` is a list of (step, (h,) tensor); compare with ln T for uniform attention.
    """

    def __init__(self, probe: Tensor) -> None:
        self.probe = probe
        self.history: dict[str, list[tuple[int, Tensor]]] = {}

    def __call__(self, state: TrainState) -> None:
        model = state.model
        for name, layer in head_entropy(model, self.probe.to(model.embed.weight.device)).items():
            self.history.setdefault(name, []).append((state.step, layer["entropy"].cpu()))
