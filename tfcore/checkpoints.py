"""Checkpoints that survive a crash, and the trained weights shipped with the package.

A checkpoint (``save_checkpoint``) holds everything a run needs to continue bit for bit: the
model, the optimiser, the step (the schedule is a function of it), every random generator's state
and the histories. It is written atomically (``atomic_save``: a temporary file, fsync, rename),
and the checkpoint it replaces is kept beside it as ``ckpt.prev.pt``. ``latest_checkpoint``
reads ``ckpt.pt`` and falls back to ``ckpt.prev.pt``, saying so, if the latest is truncated or
corrupt. ``config_differences`` lists what a resumed run would change.

Weights (``save_weights``, ``pretrained``) are smaller: the model's config, fp32 weights and the
loss history of the run that made them, for lessons that start from a trained model.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from tfcore.model import Transformer, TransformerConfig

if TYPE_CHECKING:
    from tfcore.train import TrainConfig, TrainResult, TrainState

CHECKPOINT_NAME = "ckpt.pt"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # trained models shipped with the package

# TrainConfig fields that say where and how a run executes and what it reports, not what it learns:
# a resumed run may change them. ``steps`` only says where to stop, unless a time budget makes it
# set the schedule's fractions; where the cosine ends (``lr_decay_steps``, default ``steps``) counts.
FREE_ON_RESUME = frozenset({
    "steps", "grad_accum", "eval_interval", "eval_batches", "eval_batch_size", "sample_interval", "sample_tokens",
    "sample_prompt", "log_interval", "callback_interval", "checkpoint_interval", "device", "compile", "fused_adamw",
    "backend", "num_threads", "out_dir",
})
_REQUIRED = ("step", "model", "model_config", "optimizer", "train_config", "rng", "data", "history")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, or from a different model or configuration."""


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint before ``path`` is kept: ``ckpt.pt`` -> ``ckpt.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def atomic_save(obj: Any, path: str | os.PathLike, previous: str | os.PathLike | None = None) -> None:
    """``torch.save`` that never leaves a half-written file at ``path``.

    Write a temporary file in the same directory, flush it to disk (fsync), then ``os.replace``
    it over ``path``: a rename within one file system is atomic, so a crash or Ctrl-C at any
    moment leaves either the old file or the new one. With ``previous``, the old file is first
    renamed to ``previous`` (a crash between the two renames leaves it there, and no ``path``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the renames themselves durable
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def rng_states(data_generator: torch.Generator) -> dict:
    """Every random number generator a run draws from (as tensors and plain Python values)."""
    states = {"torch": torch.get_rng_state(), "python": random.getstate(), "data": data_generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        states["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached)
    except ImportError:
        pass
    return states


def set_rng_states(states: dict, data_generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(_as_tuple(states["python"]))
    data_generator.set_state(states["data"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "numpy" in states:
        import numpy as np

        kind, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: str | os.PathLike, state: TrainState, data_generator: torch.Generator,
                    previous: str = "rotate") -> None:
    """Model, optimiser, step (the schedule is ``lr_at(step)``), every RNG state and the histories.

    previous: what becomes of the checkpoint already at ``path``. "rotate" keeps it as
    ``ckpt.prev.pt``; "keep" overwrites it and leaves ``ckpt.prev.pt`` alone (the run resumed from
    there because ``path`` was corrupt); "drop" overwrites it and removes a ``ckpt.prev.pt`` left by
    an earlier run (the first checkpoint of a fresh run).
    """
    if previous not in ("rotate", "keep", "drop"):
        raise ValueError(f"previous must be 'rotate', 'keep' or 'drop', got {previous!r}")
    prev = previous_path(path)
    atomic_save({
        "format": 2,
        "step": state.step,
        "model": state.model.state_dict(),
        "model_config": model_config(state.model),
        "optimizer": state.optimizer.state_dict(),
        "train_config": asdict(state.cfg),
        "rng": rng_states(data_generator),
        "data": {"tokens_seen": state.tokens_seen, "batches_drawn": state.step * state.cfg.grad_accum},
        "history": {"losses": state.losses, "evals": state.evals, "samples": state.samples,
                    "train_seconds": state.train_seconds, "elapsed_seconds": state.elapsed_seconds},
    }, path, previous=prev if previous == "rotate" else None)
    if previous == "drop":
        prev.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by ``save_checkpoint`` (plain tensors and Python values only).

    A file torch cannot read raises ``CheckpointError`` naming it; ``read_checkpoint`` also checks
    that the file holds a training checkpoint."""
    if not Path(path).exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated zip, garbage bytes, a file of another kind: all the same to us
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path} is truncated or corrupt ({type(e).__name__}: {reason[:200]})") from e


def read_checkpoint(path: str | os.PathLike) -> dict:
    """``load_checkpoint``, or a ``CheckpointError`` naming the file and what is wrong with it."""
    try:
        ckpt = load_checkpoint(path)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path} is missing") from e
    missing = [k for k in _REQUIRED if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not a training checkpoint (no {', '.join(missing)})")
    return ckpt


def latest_checkpoint(path: str | os.PathLike, say: Callable[[str], None] = print) -> tuple[dict, Path] | None:
    """(checkpoint, the file it came from) for ``path`` or, if that is missing or unreadable, the
    previous one beside it (``say`` tells which and why); None if neither file exists.

    Raises ``CheckpointError`` naming both files if ``path`` is unreadable and no previous
    checkpoint can stand in for it.
    """
    path, prev = Path(path), previous_path(path)
    if not path.exists() and not prev.exists():
        return None
    try:
        if path.exists():
            return read_checkpoint(path), path
        problem = f"{path} is missing (a crash between writing and renaming?)"
    except CheckpointError as e:
        problem = str(e)
    if not prev.exists():
        raise CheckpointError(f"{problem}, and there is no previous checkpoint {prev} to fall back on: "
                              f"delete {path} to start afresh")
    try:
        ckpt = read_checkpoint(prev)
    except CheckpointError as e:
        raise CheckpointError(f"{problem}, and the previous checkpoint is no better: {e}") from e
    say(f"{problem}; resuming from the previous checkpoint {prev} (step {ckpt['step']})")
    return ckpt, prev


def model_config(model: torch.nn.Module) -> dict | None:
    """A tfcore ``Transformer``'s config as a dict; None for any other module (its shapes are its config)."""
    config = getattr(model, "config", None)
    return asdict(config) if isinstance(model, Transformer) and isinstance(config, TransformerConfig) else None


def config_differences(ckpt: dict, model_config: TransformerConfig | None, cfg: TrainConfig) -> list[str]:
    """What a run resumed from ``ckpt`` with ``model_config`` and ``cfg`` would change, as
    ``"model.d_model: 32 -> 64"`` (checkpoint -> now). Not counted: the attention backend and the
    TrainConfig fields in ``FREE_ON_RESUME`` (where and how the run executes and what it reports).
    model_config None: a model that is not a tfcore ``Transformer`` (loading its state dict checks
    its shapes).
    """
    saved = ckpt["model_config"]
    if model_config is None or saved is None:
        changes = [] if model_config is None and saved is None else [
            "model: " + " -> ".join("a tfcore Transformer" if c is not None else "another nn.Module"
                                    for c in (saved, model_config))]
    else:
        saved_model = _known_fields(type(model_config), saved)
        changes = [f"model.{k}: {saved_model[k]!r} -> {v!r}" for k, v in asdict(model_config).items()
                   if k != "backend" and saved_model[k] != v]
    then, now = _known_fields(type(cfg), ckpt["train_config"]), asdict(cfg)
    free = FREE_ON_RESUME if then["time_budget"] is None and now["time_budget"] is None else FREE_ON_RESUME - {"steps"}
    by_steps = then["lr_decay_steps"] is None and now["lr_decay_steps"] is None
    for c in (then, now):  # where the cosine ends is what counts: a longer run may keep the same schedule
        c["lr_decay_steps"] = c["lr_decay_steps"] or c["steps"]
    for k, v in now.items():
        if k not in free and then[k] != v and not (k == "lr_decay_steps" and by_steps and "steps" not in free):
            name = ("steps (where the cosine reaches min_lr)" if by_steps else
                    "lr_decay_steps (where the cosine reaches min_lr; None: steps)") if k == "lr_decay_steps" else k
            changes.append(f"train.{name}: {then[k]!r} -> {v!r}")
    return changes


def _known_fields(cls: type, saved: dict) -> dict:
    """``saved`` as ``cls`` would hold it now: defaults for fields added since, unknown ones dropped."""
    names = {f.name for f in fields(cls)}
    return asdict(cls(**{k: v for k, v in saved.items() if k in names}))


def model_from_checkpoint(path: str | os.PathLike) -> Transformer:
    """Rebuild the model a checkpoint was taken from, weights included."""
    return _model_from(load_checkpoint(path), path)


def _model_from(saved: dict, path: str | os.PathLike) -> Transformer:
    """A Transformer built from a saved ``model_config`` with the saved ``model`` weights (read from ``path``)."""
    if not isinstance(saved, dict) or "model" not in saved or "model_config" not in saved:
        raise CheckpointError(f"{path} holds no model_config and model: it is not a file written by "
                              "save_checkpoint or save_weights (a bare state_dict? load it into your model)")
    if saved["model_config"] is None:
        raise CheckpointError(f"{path} holds a model that is not a tfcore Transformer: build that model "
                              "yourself and load the checkpoint's 'model' state dict into it")
    model = Transformer(TransformerConfig(**saved["model_config"]))
    model.load_state_dict(saved["model"])
    return model


def save_weights(path: str | os.PathLike, model: Transformer, preset: str, result: TrainResult) -> None:
    """Write a trained model for ``pretrained``: config, fp32 weights and the run's loss history."""
    if not isinstance(model, Transformer):
        raise TypeError(f"model must be a tfcore Transformer (pretrained() rebuilds it from its config), "
                        f"got {type(model).__name__}")
    atomic_save({
        "preset": preset,
        "model_config": asdict(model.config),
        "model": {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()},
        "losses": list(result.losses),
        "evals": list(result.evals),
        "steps": result.steps,
        "torch": str(torch.__version__),
    }, path)


def pretrained(name_or_path: str | os.PathLike) -> tuple[Transformer, dict]:
    """A model trained ahead of time and shipped in ``tfcore/weights`` (or any ``save_weights`` file).

    Returns (model in eval mode on the CPU, record) where the record holds the preset's name,
    ``losses`` (training loss per step) and ``evals`` ({"step", "val_loss"}) of the run that made it.
    Rebuild a shipped file with ``python -m tfcore.train --preset NAME --save-weights tfcore/weights/NAME.pt``.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = WEIGHTS_DIR / f"{name_or_path}.pt"
    if not path.exists():
        shipped = sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))
        raise FileNotFoundError(f"no weights at {path}; shipped: {shipped}")
    record = load_checkpoint(path)
    model = _model_from(record, path).eval()
    del record["model_config"], record["model"]
    return model, record
