"""Length extrapolation (lesson 07): train a small decoder on windows of one length, then score it
position by position on longer held-out windows.

    exp = LengthExperiment()                       # 2 layers, d_model 48; T = 64 in training, 512 after
    model, loss = train_at_length("rope", 0, exp, train_ids, vocab_size)
    windows = held_out_windows(val_ids, exp)       # (N, 513) held-out ids
    curve = loss_by_position(model, windows)       # (512,): mean cross-entropy at each position

``length_sweep`` runs every scheme with several seeds; ``benchmarks/positions_length.py`` calls it
and writes the curves to JSON for the lesson. A run is deterministic for a given seed on a given
machine and thread count (torch's CPU kernels may round differently elsewhere).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from tfcore._checks import (
    require_int,
    require_integer_dtype,
    require_ndim,
    require_number,
    require_positive_int,
    require_positive_number,
)
from tfcore.diagnostics import eval_mode
from tfcore.model import POSITIONS, Transformer, TransformerConfig
from tfcore.train import TrainConfig, train


@dataclass(frozen=True)
class LengthExperiment:
    """One setting of the experiment: the model, its training, and the held-out evaluation."""

    d_model: int = 48
    n_layers: int = 2
    n_heads: int = 4
    train_len: int = 64  # tokens per training window
    eval_len: int = 512  # tokens per held-out window
    steps: int = 600
    batch_size: int = 16
    lr: float = 1e-2
    min_lr: float = 1e-3
    warmup_steps: int = 50
    eval_windows: int = 64  # held-out windows
    eval_seed: int = 1  # picks where the held-out windows start

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "train_len", "eval_len", "steps", "batch_size",
                     "warmup_steps", "eval_windows"):
            require_positive_int(name, getattr(self, name))
        require_int("eval_seed", self.eval_seed, minimum=0)
        require_positive_number("lr", self.lr)
        require_number("min_lr", self.min_lr, 0, self.lr)
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={self.d_model} (d_head = d_model / n_heads)")
        if self.eval_len < self.train_len:
            raise ValueError(f"eval_len={self.eval_len} must be at least train_len={self.train_len}")

    def model_config(self, scheme: str, vocab_size: int) -> TransformerConfig:
        """A learned table gets exactly ``train_len`` rows; the other schemes run up to ``eval_len``.
        Attention through ``sdpa``: on a CPU it scores 512 tokens several times faster than ``naive``."""
        return TransformerConfig(vocab_size=vocab_size, d_model=self.d_model, n_layers=self.n_layers,
                                 n_heads=self.n_heads, positions=scheme, backend="sdpa",
                                 max_seq_len=self.train_len if scheme == "learned" else self.eval_len)

    def train_config(self, seed: int) -> TrainConfig:
        """The seed also picks the training windows (the same order for every scheme)."""
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, block_size=self.train_len, lr=self.lr,
                           min_lr=self.min_lr, warmup_steps=self.warmup_steps, eval_interval=0, seed=seed)


def train_at_length(scheme: str, seed: int, exp: LengthExperiment, train_ids: Tensor,
                    vocab_size: int) -> tuple[Transformer, float]:
    """Build the ``scheme`` model from ``seed`` and train it on windows of ``exp.train_len`` ids of the
    corpus ``train_ids`` (N,). Returns the model (in eval mode) and its training loss, the mean of the
    last 20 steps."""
    if scheme not in POSITIONS:
        raise ValueError(f"scheme must be one of {POSITIONS}, got {scheme!r}")
    require_positive_int("vocab_size", vocab_size)
    _require_experiment(exp)
    torch.manual_seed(seed)
    model = Transformer(exp.model_config(scheme, vocab_size))
    result = train(model, exp.train_config(seed), train_ids, progress=False)
    tail = result.losses[-20:]
    return model.eval(), sum(tail) / len(tail)


def _require_experiment(exp: object) -> None:
    if not isinstance(exp, LengthExperiment):
        raise TypeError(f"exp must be a LengthExperiment, got {type(exp).__name__}")


def held_out_windows(val_ids: Tensor, exp: LengthExperiment) -> Tensor:
    """``exp.eval_windows`` windows of ``exp.eval_len + 1`` ids of the corpus ``val_ids`` (N,), at starts
    drawn from ``exp.eval_seed``: (eval_windows, eval_len + 1). Inputs ``[:, :-1]``, targets ``[:, 1:]``."""
    _require_experiment(exp)
    require_ndim("val_ids", val_ids, 1, "(N,)")
    require_integer_dtype("val_ids", val_ids, "token ids")
    if len(val_ids) <= exp.eval_len + 1:
        raise ValueError(f"val_ids has {len(val_ids)} tokens, too few for windows of eval_len={exp.eval_len}")
    g = torch.Generator().manual_seed(exp.eval_seed)
    starts = torch.randint(len(val_ids) - exp.eval_len - 1, (exp.eval_windows,), generator=g).tolist()
    return torch.stack([val_ids[s:s + exp.eval_len + 1] for s in starts])


@torch.no_grad()
def loss_by_position(model: Transformer, windows: Tensor, length: int | None = None, batch_size: int = 8) -> Tensor:
    """Mean next-token cross-entropy (nats) at each position 0 .. length - 1 over the windows: (length,).

    windows: (N, T + 1) token ids; the model reads ``windows[:, :length]`` and is scored against
    ``windows[:, 1:length + 1]``. length: None means T. batch_size: windows per forward pass (the
    scores of one pass take batch_size * heads * length^2 numbers).
    """
    if not isinstance(model, Transformer) or model.decoder is None or model.encoder is not None:
        what = f"architecture={model.config.architecture!r}" if isinstance(model, Transformer) else type(model).__name__
        raise ValueError(f"model must be a tfcore decoder (next-token logits at every position), got {what}")
    require_ndim("windows", windows, 2, "(N, T + 1)")
    require_integer_dtype("windows", windows, "token ids")
    require_positive_int("batch_size", batch_size)
    if windows.shape[0] == 0:
        raise ValueError("windows has no rows (N = 0): nothing to score")
    if windows.shape[1] < 2:
        raise ValueError(f"windows has T + 1 = {windows.shape[1]} ids per row: it needs at least 2 "
                         "(an input and its target)")
    length = windows.shape[1] - 1 if length is None else require_positive_int("length", length)
    if length > windows.shape[1] - 1:
        raise ValueError(f"length={length} needs windows of at least {length + 1} ids, got {windows.shape[1]}")
    limit = model.config.max_seq_len
    if length > limit and model.config.positions in ("learned", "sinusoidal"):
        raise ValueError(f"length={length} (the windows' T unless given) is longer than max_seq_len={limit} "
                         f"(positions={model.config.positions!r} has no entries beyond it)")
    model.check_token_ids(windows, "windows")
    total = torch.zeros(length, dtype=torch.float64)
    with eval_mode(model):
        for chunk in windows.split(batch_size):
            logits = model(chunk[:, :length])  # (b, length, V)
            losses = F.cross_entropy(logits.transpose(1, 2).float(), chunk[:, 1:length + 1], reduction="none")
            total += losses.double().sum(0)
    return (total / len(windows)).float()


def ntk_base(base: float, factor: float, d_head: int) -> float:
    """NTK-aware RoPE base for contexts ``factor`` times longer: ``base * factor^(d / (d - 2))``, which keeps
    the fastest pair as it is and slows the slowest one by ``factor``."""
    require_positive_number("base", base)
    require_positive_number("factor", factor)
    require_positive_int("d_head", d_head)
    if d_head < 4 or d_head % 2:
        raise ValueError(f"d_head must be even and at least 4, got {d_head}")
    return base * factor ** (d_head / (d_head - 2))


def rope_base_curves(model: Transformer, windows: Tensor, bases: Sequence[float]) -> list[Tensor]:
    """Loss by position (T,) of a RoPE model with every attention layer's base set to each of ``bases``
    in turn, without retraining; the model's own base is put back afterwards."""
    if not isinstance(model, Transformer):
        raise TypeError(f"model must be a tfcore Transformer, got {type(model).__name__}")
    if model.config.positions != "rope":
        raise ValueError(f"model must use positions='rope', got {model.config.positions!r}")
    bases = _positive_numbers("bases", bases)
    layers = list(model.attention_layers().values())
    trained = [layer.rope_base for layer in layers]
    curves = []
    try:
        for base in bases:
            for layer in layers:
                layer.rope_base = float(base)
            curves.append(loss_by_position(model, windows))
    finally:
        for layer, b in zip(layers, trained):
            layer.rope_base = b
    return curves


def _positive_numbers(name: str, values: Sequence[float]) -> list[float]:
    """``values`` as a list of numbers > 0, or an error naming ``name`` and the offending entry."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    values = list(values)
    for i, v in enumerate(values):
        require_positive_number(f"{name}[{i}]", v)
    return values


def _names(name: str, values: Sequence[str], allowed: Sequence[str]) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a list of names from {tuple(allowed)}, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} is empty: give at least one of {tuple(allowed)}")
    for v in values:
        if v not in allowed:
            raise ValueError(f"{name} must hold names from {tuple(allowed)}, got {v!r}")
    return values


def _seeds(seeds: Sequence[int]) -> list[int]:
    if not isinstance(seeds, Iterable):
        raise TypeError(f"seeds must be a list of integers, got {type(seeds).__name__}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    for i, s in enumerate(seeds):
        require_int(f"seeds[{i}]", s)
    return seeds


def length_sweep(train_ids: Tensor, val_ids: Tensor, vocab_size: int, schemes: Sequence[str],
                 seeds: Sequence[int], exp: LengthExperiment = LengthExperiment(),
                 rope_bases: Sequence[float] = (), log: Callable[[str], None] | None = None) -> dict:
    """Train every scheme with every seed and score it on the same held-out windows.

    Returns a JSON-ready dict: ``experiment`` (the settings), ``schemes``, ``seeds``,
    ``train_loss[scheme]`` (one number per seed), ``loss[scheme]`` (per seed, the loss at each
    position: ``exp.train_len`` numbers for "learned", ``exp.eval_len`` for the others),
    ``token_rms[scheme]`` (per seed, the root mean square of the token embeddings after training,
    times the model's ``embed_scale``), ``cpu_seconds[scheme]`` (per seed, training and scoring);
    with "t5" among the schemes ``t5_bucket_bias`` (per seed, the learned bias (h, n_buckets)); with
    ``rope_bases`` and "rope" ``rope_bases = {"bases": [...], "loss": [per base, per seed, per position]}``.
    """
    schemes, seeds = _names("schemes", schemes, POSITIONS), _seeds(seeds)
    rope_bases = _positive_numbers("rope_bases", rope_bases)
    windows = held_out_windows(val_ids, exp)
    out: dict = {"experiment": asdict(exp), "schemes": list(schemes), "seeds": list(seeds),
                 "train_loss": {}, "loss": {}, "token_rms": {}, "cpu_seconds": {}}
    base_curves: list[list[list[float]]] = [[] for _ in rope_bases]
    for scheme in schemes:
        for key in ("train_loss", "loss", "token_rms", "cpu_seconds"):
            out[key][scheme] = []
        for seed in seeds:
            start = time.process_time()
            model, train_loss = train_at_length(scheme, seed, exp, train_ids, vocab_size)
            length = exp.train_len if scheme == "learned" else exp.eval_len
            curve = loss_by_position(model, windows, length)
            if scheme == "rope":
                for kept, c in zip(base_curves, rope_base_curves(model, windows, rope_bases)):
                    kept.append([round(v, 4) for v in c.tolist()])
            if scheme == "t5":
                bias = model.t5_bias["decoder"].bias.weight.T  # (h, n_buckets)
                out.setdefault("t5_bucket_bias", []).append([[round(v, 4) for v in row] for row in bias.tolist()])
            seconds = time.process_time() - start
            rms = model.embed.weight.detach().pow(2).mean().sqrt().item() * model.embed_scale
            out["token_rms"][scheme].append(round(rms, 4))
            out["train_loss"][scheme].append(round(train_loss, 4))
            out["loss"][scheme].append([round(v, 4) for v in curve.tolist()])
            out["cpu_seconds"][scheme].append(round(seconds, 2))
            if log:
                beyond = f", {curve[exp.train_len:].mean():.3f} beyond" if length > exp.train_len else ""
                log(f"{scheme:10s} seed {seed}: training loss {train_loss:.3f}, held-out loss "
                    f"{curve[:exp.train_len].mean():.3f} inside{beyond} ({seconds:.1f} s CPU)")
    if rope_bases and "rope" in schemes:
        out["rope_bases"] = {"bases": [float(b) for b in rope_bases], "loss": base_curves}
    return out
