"""The training loop (lesson 09): AdamW, warm-up + cosine, clipping, evaluation, checkpoints.

One step, the same on a laptop CPU and on a GPU:

    batch  = sampler(global batch size, data generator)    (B, T+1) windows, or (inputs, targets)
    loss   = cross_entropy(model(inputs), targets)          teacher forcing: targets = inputs shifted by one
    loss.backward(); clip ||g|| to grad_clip
    lr     = lr_at(step, cfg)                               linear warm-up, then cosine down to min_lr
    AdamW step: weight decay on the Linear weight matrices only

``train(model, cfg, train_data, val_data)`` runs it with a ``tqdm.auto`` progress bar (loss and
tokens/s live in the bar, never printed), periodic evaluation on held-out data, samples,
callbacks and atomic checkpoints that resume bit for bit. Ctrl-C (or SIGTERM) ends the current
step, writes a checkpoint if ``out_dir`` is set, and returns a ``TrainResult`` with
``interrupted`` set: the model holds the weights after the last finished step. With
``time_budget`` the schedule follows the clock instead of the step count (``lr_at_time``).

The other pieces, one module each (the names the lessons import from here still work):

    tfcore.optim          lr_at, lr_at_time, param_groups, make_optimizer, Muon
    tfcore.samplers       corpus_sampler, induction_sampler, copy_sampler, digit_sampler
    tfcore.checkpoints    save_checkpoint, latest_checkpoint, save_weights, pretrained
    tfcore.distributed    torchrun / DistributedDataParallel
    tfcore.presets        PRESETS, build(name)
    tfcore.viz.training   LossPlot, ResidualNorms, AttentionEntropy (notebook callbacks)
    tfcore.train_cli      python -m tfcore.train
"""

from __future__ import annotations

import importlib
import json
import math
import os
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from tfcore.checkpoints import (  # noqa: F401  (re-exported: lessons and tests import them from here)
    CHECKPOINT_NAME,
    WEIGHTS_DIR,
    CheckpointError,
    atomic_save,
    config_differences,
    latest_checkpoint,
    load_checkpoint,
    model_config,
    model_from_checkpoint,
    pretrained,
    previous_path,
    rng_states,
    save_checkpoint,
    save_weights,
    set_rng_states,
)
from tfcore.distributed import any_rank, distributed_context, setup_distributed, shard  # noqa: F401
from tfcore.diagnostics import eval_mode
from tfcore.heads import BACKENDS
from tfcore.losses import IGNORE_INDEX
from tfcore.optim import (  # noqa: F401
    Muon,
    Optimizers,
    lr_at,
    lr_at_time,
    make_optimizer,
    orthogonalize,
    param_group_names,
    param_groups,
)
from tfcore.samplers import (  # noqa: F401
    Batch,
    Sampler,
    as_sampler,
    copy_sampler,
    corpus_sampler,
    digit_sampler,
    induction_sampler,
)

OBJECTIVES = ("lm", "mlm", "seq2seq")
ARCHITECTURES = {  # the models each objective trains
    "lm": ("decoder", "encoder"),  # an encoder reads the answer from its input (lesson 09 shows it)
    "mlm": ("encoder",),  # a masked token is predicted from both sides
    "seq2seq": ("encoder-decoder",),
}
LOG_NAME = "log.jsonl"


# ----------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Every knob of a training run. Batch sizes are global (summed over data-parallel ranks)."""

    steps: int = 1000  # optimiser steps in total (a resumed run continues up to this number)
    batch_size: int = 32  # sequences per optimiser step, over all ranks and micro-batches
    block_size: int = 128  # tokens per training sequence (context length)
    grad_accum: int = 1  # micro-batches per step (each batch_size / (grad_accum * world) rows)
    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    min_lr: float = 1e-4  # floor of the cosine
    warmup_steps: int = 100  # linear warm-up from lr / warmup_steps to lr
    lr_decay_steps: int | None = None  # where the cosine reaches min_lr; None: = steps
    weight_decay: float = 0.1  # decoupled (AdamW), on Linear weight matrices only
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    eval_interval: int = 200  # evaluate every this many steps (and at step 0 and at the end); 0: at the end only
    eval_batches: int = 20  # batches of held-out data per evaluation (the same ones every time)
    eval_batch_size: int | None = None  # None: = batch_size
    sample_interval: int = 0  # generate a sample every this many steps; 0: never
    sample_tokens: int = 200
    sample_prompt: str = "\n"
    log_interval: int = 10  # progress-bar and JSON-lines updates
    callback_interval: int = 50  # callbacks run every this many steps (and at the end)
    checkpoint_interval: int = 0  # 0: a checkpoint at the end only (if out_dir is set)
    time_budget: float | None = None  # seconds of training (evaluations included, set-up not): the schedule
    #                                   follows the clock (lr_at_time) and the run stops when they are spent,
    #                                   however many steps that is; None: `steps` steps
    seed: int = 0  # seeds the data generator and the dropout RNG
    objective: str = "lm"  # "lm" (next token) | "mlm" (masked tokens, encoder) | "seq2seq" (encoder-decoder)
    mask_prob: float = 0.15  # mlm: fraction of positions corrupted
    mask_id: int | None = None  # mlm: the [MASK] id; None: the last id of the model's vocabulary
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    dtype: str = "auto"  # autocast: "auto" (bf16 on CUDA, fp32 on CPU) | "float32" | "bfloat16" | "float16"
    compile: bool = False  # torch.compile the model
    fused_adamw: bool | None = None  # None: fused kernel on CUDA, the default one elsewhere
    optimizer: str = "adamw"  # "adamw" | "muon" (Muon on the hidden weight matrices, AdamW on the rest)
    backend: str | None = None  # attention backend to set on the model ("sdpa", ...); None: keep it
    num_threads: int | None = None  # torch.set_num_threads on CPU; None: leave torch's default
    out_dir: str | None = None  # checkpoint and JSON-lines log go here; None: nowhere

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        for name in ("steps", "batch_size", "block_size", "grad_accum", "eval_batches", "log_interval",
                     "callback_interval"):
            _require_int(self, name, 1)
        for name in ("warmup_steps", "eval_interval", "sample_interval", "sample_tokens", "checkpoint_interval"):
            _require_int(self, name, 0)
        for name in ("lr_decay_steps", "eval_batch_size", "num_threads"):
            _require_int(self, name, 1, optional=True)
        _require_int(self, "mask_id", 0, optional=True)
        _require_int(self, "seed", -(2**63))
        _require_number(self, "lr", lambda v: v > 0, "a number > 0")
        _require_number(self, "min_lr", lambda v: 0 <= v <= self.lr, f"a number in [0, lr={self.lr}]")
        _require_number(self, "weight_decay", lambda v: v >= 0, "a number >= 0")
        _require_number(self, "grad_clip", lambda v: v >= 0, "a number >= 0 (0: no clipping)")
        _require_number(self, "eps", lambda v: v > 0, "a number > 0")
        _require_number(self, "mask_prob", lambda v: 0 <= v <= 1, "a probability in [0, 1]")
        _require_number(self, "time_budget", lambda v: v > 0, "a number of seconds > 0, or None", optional=True)
        if len(self.betas) != 2 or not all(_is_number(b) and 0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        for name, allowed in (("objective", OBJECTIVES), ("optimizer", ("adamw", "muon")),
                              ("dtype", ("auto", "float32", "bfloat16", "float16")), ("backend", (None, *BACKENDS))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name, kinds, expected in (("compile", (bool,), "True or False"),
                                      ("fused_adamw", (bool, type(None)), "True, False or None"),
                                      ("sample_prompt", (str,), "a string"),
                                      ("out_dir", (str, os.PathLike, type(None)), "a folder path or None")):
            if not isinstance(getattr(self, name), kinds):
                raise ValueError(f"TrainConfig.{name} must be {expected}, got {getattr(self, name)!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise ValueError(f"TrainConfig.device must be 'auto' or a torch device ('cpu', 'cuda', 'cuda:1', "
                                 f"'mps'), got {self.device!r}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require_int(cfg: TrainConfig, name: str, minimum: int, optional: bool = False) -> None:
    value = getattr(cfg, name)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else "an integer" if minimum < 0 else f"an integer >= {minimum}"
        raise ValueError(f"TrainConfig.{name} must be {kind}{' or None' if optional else ''}, got {value!r}")


def _require_number(cfg: TrainConfig, name: str, ok: Callable[[float], bool], expected: str,
                    optional: bool = False) -> None:
    value = getattr(cfg, name)
    if optional and value is None:
        return
    if not (_is_number(value) and ok(value)):
        raise ValueError(f"TrainConfig.{name} must be {expected}, got {value!r}")


def resolve_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if cfg.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return None if cfg.dtype == "float32" else getattr(torch, cfg.dtype)


# ----------------------------------------------------------------------------- state and result


@dataclass
class TrainState:
    """What callbacks see. ``step`` counts finished optimiser steps."""

    step: int
    model: nn.Module  # the plain model (not the compiled or DDP wrapper)
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig
    loss: float = float("nan")  # the last step's training loss
    lr: float = 0.0
    tokens_seen: int = 0
    losses: list[float] = field(default_factory=list)  # training loss of every step
    evals: list[dict] = field(default_factory=list)  # {"step", "val_loss"}
    samples: list[dict] = field(default_factory=list)  # {"step", "text"}
    train_seconds: float = 0.0  # time spent in training steps (not evaluation or sampling)
    elapsed_seconds: float = 0.0  # seconds in the loop so far, resumed runs included (what time_budget counts)
    rank: int = 0
    world_size: int = 1

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_seen / self.train_seconds if self.train_seconds > 0 else 0.0


Callback = Callable[[TrainState], None]


@dataclass
class TrainResult:
    losses: list[float]  # training loss per step
    evals: list[dict]  # {"step", "val_loss"} at every evaluation
    final_val_loss: float
    tokens_per_s: float  # training tokens per second (over all ranks), evaluation excluded
    steps: int
    wall_seconds: float  # the whole call: steps, evaluation, sampling, checkpoints
    samples: list[dict] = field(default_factory=list)
    checkpoint: str | None = None
    log: str | None = None
    stop_reason: str = "steps"  # "steps" | "time budget" | "SIGINT" | "SIGTERM" | "signal" (on another rank)

    @property
    def interrupted(self) -> bool:
        """True if a signal (Ctrl-C, SIGTERM) ended the run early; the model holds the last finished step."""
        return self.stop_reason not in ("steps", "time budget")


# ----------------------------------------------------------------------------- the loop


def batch_loss(model: nn.Module, batch: Batch) -> tuple[Tensor, int]:
    """Mean cross-entropy over the targets that are not IGNORE_INDEX, and how many input positions there were.

    model(inputs (B, T)) (or ``model(inputs, source=source)``) must return logits (B, T, V).
    """
    try:
        if len(batch) == 3:
            source, inputs, targets = batch
            logits = model(inputs, source=source)
        else:
            inputs, targets = batch
            logits = model(inputs)
    except IndexError as e:  # an embedding lookup past its table (on the CPU; CUDA asserts instead)
        raise ValueError(f"the batch holds token ids from {int(batch[-2].min())} to {int(batch[-2].max())} but the "
                         f"model's embedding has fewer rows: the model's vocabulary must cover every id in "
                         f"train_data and val_data ({e})") from e
    if not isinstance(logits, Tensor) or logits.dim() != 3 or logits.shape[:2] != inputs.shape:
        shown = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"the model must map token ids (B, T) = {tuple(inputs.shape)} to logits (B, T, V), "
                         f"got {shown}")
    if not logits.is_floating_point():
        raise TypeError(f"the model must return floating-point logits (B, T, V), got dtype {logits.dtype}")
    try:
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
    except IndexError as e:  # "Target 11 is out of bounds"
        raise ValueError(f"the batch's targets reach id {int(targets.max())} but the model's logits have "
                         f"V={logits.shape[-1]}: the model's vocabulary must cover every id in train_data and "
                         f"val_data ({e})") from e
    return loss, inputs.numel()


@torch.no_grad()
def evaluate(model: nn.Module, sampler: Sampler, cfg: TrainConfig, device: torch.device,
             amp: torch.dtype | None = None, loss_fn: Callable | None = None) -> float:
    """Mean loss over ``eval_batches`` held-out batches, the same ones at every call (fixed seed).

    Under DDP each rank scores its share of each batch and the means are averaged.
    """
    rank, world = distributed_context()
    loss_fn = loss_fn or batch_loss
    generator = torch.Generator().manual_seed(cfg.seed + 1_000_003)
    batch_size = cfg.eval_batch_size or cfg.batch_size
    total = torch.zeros((), device=device)
    with eval_mode(model):
        for _ in range(cfg.eval_batches):
            batch = tuple(t.to(device) for t in shard(sampler(batch_size, generator), rank, world, 0, 1))
            with _autocast(device, amp):
                total += loss_fn(model, batch)[0].float()
    if world > 1:
        dist.all_reduce(total, op=dist.ReduceOp.AVG)
    return total.item() / cfg.eval_batches


def train(
    model: nn.Module,
    cfg: TrainConfig,
    train_data: Union[Tensor, Sampler],
    val_data: Union[Tensor, Sampler, None] = None,
    callbacks: list[Callback] = (),
    progress: bool = True,
    tokenizer: Any = None,
    resume: bool | str | os.PathLike = False,
    log: Callable[[str], None] | None = None,
    allow_config_change: bool = False,
) -> TrainResult:
    """Train ``model`` in place and return the histories.

    model: a ``tfcore.model.Transformer``, or for ``cfg.objective == "lm"`` any ``nn.Module`` that maps
    token ids (B, T) to logits (B, T, V) (your own GPT: the windows are ``cfg.block_size`` long, so
    keep that within its context; samples and ``cfg.backend`` need a tfcore Transformer).
    train_data, val_data: a 1-D corpus of ids (N,) (random windows, ``cfg.objective`` "lm" or
    "mlm") or a ``Sampler`` ``(batch_size, generator) -> (inputs, targets)`` or ``(source,
    inputs, targets)``. callbacks: called (on rank 0) with a ``TrainState`` every
    ``callback_interval`` steps and after the last. tokenizer: with ``encode``/``decode`` it
    enables samples every ``sample_interval`` steps. resume: True continues from
    ``out_dir/ckpt.pt`` if there is one (or from ``ckpt.prev.pt`` if that one is corrupt); a path
    continues from that file. A checkpoint of another model or training configuration is refused,
    with the fields that differ, unless ``allow_config_change``. log: where to send messages and
    sample texts (e.g. ``print``); nothing is printed otherwise, so a notebook's output stays the
    same from run to run. Ctrl-C stops after the current step (press it twice to abort at once).
    """
    run = _Run(model, cfg, train_data, val_data, callbacks, tokenizer, log, resume, allow_config_change)
    state, optimizer = run.state, run.optimizer
    with run.logger, _progress_bar(cfg, state.step, progress and run.rank == 0) as bar, StopRequests() as stop:
        run.begin()  # score the untrained model; start the clock that a time budget counts
        reason = run.stop_reason(stop)
        while reason is None:
            lr = run.learning_rate()
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = run.train_sampler(cfg.batch_size, run.data_generator)  # the global batch; we keep our rows
            loss = run.forward_backward(batch)  # (): the mean over the micro-batches; gradients accumulated
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            run.count(loss, lr, batch)
            bar.update(1)
            reason = run.stop_reason(stop)
            run.report(bar, reason)  # log, evaluate, sample, callbacks, checkpoint: whichever is due
        run.evaluate()  # the final model is always scored (no-op if that just happened)
    return run.result(reason)


class _Run:
    """Everything one call of ``train`` holds: device, samplers, optimiser, state, log file, checkpoints."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, train_data: Union[Tensor, Sampler],
                 val_data: Union[Tensor, Sampler, None], callbacks: list[Callback], tokenizer: Any,
                 log: Callable[[str], None] | None, resume: bool | str | os.PathLike, allow_config_change: bool):
        self.t_start = time.perf_counter()
        self.rank, self.world = distributed_context()
        _check_run(model, cfg, self.world, tokenizer, callbacks)
        self.model, self.cfg, self.callbacks, self.tokenizer, self.log = model, cfg, list(callbacks), tokenizer, log
        self.device, self.amp = _place(model, cfg)
        self.train_sampler = as_sampler(train_data, cfg, model, "train_data")
        self.val_sampler = as_sampler(val_data, cfg, model, "val_data") if val_data is not None else None
        self.data_generator = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed + self.rank)  # dropout masks differ between ranks
        self.optimizer = make_optimizer(model, cfg, self.device)
        self.state = TrainState(step=0, model=model, optimizer=self.optimizer, cfg=cfg, rank=self.rank,
                                world_size=self.world)
        out = Path(cfg.out_dir) if cfg.out_dir else None
        self.ckpt_path = out / CHECKPOINT_NAME if out else None
        self.log_path = out / LOG_NAME if out else None
        self.previous = "drop"  # the first checkpoint of a fresh run replaces an earlier run's files
        self.elapsed_before = 0.0  # seconds spent by the runs this one resumes
        self.clock_start = self.t_start  # reset by begin()
        if resume:
            self.restore(resume, allow_config_change)
        self.logger = _JsonLog(self.log_path if self.rank == 0 else None)
        self.logger.write(event="start", step=self.state.step, world_size=self.world, device=str(self.device),
                          train_config=asdict(cfg), model_config=model_config(model))
        self.loss_fn, self.step_model = _wrap(model, cfg, self.device, self.world)
        self.pending: list[Tensor] = []  # losses still on the device: read them (a sync) only when needed
        self.segment_start = time.perf_counter()  # start of the current stretch of pure training steps

    def restore(self, resume: bool | str | os.PathLike, allow_config_change: bool) -> None:
        """Continue from a checkpoint: weights, optimiser, step, RNG states, histories."""
        found = self.find_checkpoint(resume)
        if found is None:
            return
        ckpt, source = found
        plain = model_config(self.model) is None  # not a tfcore Transformer: no config to compare
        changes = config_differences(ckpt, None if plain else self.model.config, self.cfg)
        if changes and not allow_config_change:
            raise CheckpointError(
                f"{source} was written by a different model or training configuration (checkpoint -> now): "
                f"{'; '.join(changes)}. Use another out_dir, or allow the change (allow_config_change=True; "
                f"python -m tfcore.train --allow-config-change)")
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{source} does not fit this model or optimiser ({'; '.join(changes)}): {e}") from e
        self.load_progress(ckpt, source)
        self.tell(f"resuming from step {self.state.step} ({source})"
                  + (f" with a changed configuration: {'; '.join(changes)}" if changes else ""))

    def find_checkpoint(self, resume: bool | str | os.PathLike) -> tuple[dict, Path] | None:
        """(checkpoint, its file) for ``resume``: True means out_dir's, a path that file; None: start afresh."""
        explicit = isinstance(resume, (str, os.PathLike))
        if not explicit and self.ckpt_path is None:
            raise ValueError("resume=True continues from out_dir/ckpt.pt, but cfg.out_dir is None: "
                             "set out_dir, or pass the checkpoint's path as resume")
        path = Path(resume) if explicit else self.ckpt_path
        found = latest_checkpoint(path, say=self.say)
        if found is None and explicit:
            raise FileNotFoundError(f"resume={str(path)!r}: no checkpoint there (nor at {previous_path(path)})")
        if found is None:
            self.tell(f"no checkpoint at {path} yet: starting from step 0")
        return found

    def load_progress(self, ckpt: dict, source: Path) -> None:
        """Step, RNG states and histories from ``ckpt``; how the next checkpoint treats the files there."""
        set_rng_states(ckpt["rng"], self.data_generator)
        state, history = self.state, ckpt["history"]
        state.step, state.tokens_seen = ckpt["step"], ckpt["data"]["tokens_seen"]
        state.losses, state.evals = list(history["losses"]), list(history["evals"])
        state.samples = list(history["samples"])
        state.train_seconds = history["train_seconds"]
        self.elapsed_before = state.elapsed_seconds = history.get("elapsed_seconds", history["train_seconds"])
        if self.ckpt_path is not None and source.resolve() == self.ckpt_path.resolve():
            self.previous = "rotate"
        elif self.ckpt_path is not None and source.resolve() == previous_path(self.ckpt_path).resolve():
            self.previous = "keep"  # the latest is unreadable: keep the good one until a new one exists
        if self.rank > 0:  # the checkpoint holds rank 0's dropout RNG: give the others their own again
            torch.manual_seed(self.cfg.seed + self.rank + 7919 * state.step)

    def tell(self, message: str) -> None:
        """News about the run (resuming from step N) for ``log``; nothing without it."""
        if self.rank == 0 and self.log is not None:
            self.log(message)

    def say(self, message: str) -> None:
        """Warnings about the run (a checkpoint fallback): to ``log``, else to stderr."""
        if self.rank == 0:
            (self.log or (lambda m: print(m, file=sys.stderr)))(message)

    def begin(self) -> None:
        """Evaluate at step 0, then start the clock: set-up and the first evaluation take no budget."""
        if self.state.step == 0 and self.cfg.eval_interval:
            self.evaluate()
        self.clock_start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds in training loops so far, those of the runs this one resumes included."""
        return self.elapsed_before + time.perf_counter() - self.clock_start

    def learning_rate(self) -> float:
        """``lr_at(step)``, or with a time budget ``lr_at_time(elapsed seconds)``."""
        if self.cfg.time_budget is None:
            return lr_at(self.state.step, self.cfg)
        return lr_at_time(self.elapsed(), self.cfg)

    def forward_backward(self, batch: Batch) -> Tensor:
        """Forward and backward passes over this rank's micro-batches; the mean loss (), over ranks too."""
        cfg, total = self.cfg, torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum):
            part = shard(batch, self.rank, self.world, micro, cfg.grad_accum)
            part = tuple(t.to(self.device, non_blocking=True) for t in part)
            sync = self.world == 1 or micro == cfg.grad_accum - 1  # DDP: all-reduce on the last micro-batch only
            with (nullcontext() if sync else self.step_model.no_sync()), _autocast(self.device, self.amp):
                loss, _ = self.loss_fn(self.step_model, part)
                (loss / cfg.grad_accum).backward()
            total += loss.detach() / cfg.grad_accum
        if self.world > 1:
            dist.all_reduce(total, op=dist.ReduceOp.AVG)  # the global batch's loss, for the log
        return total

    def count(self, loss: Tensor, lr: float, batch: Batch) -> None:
        """Book a finished step (the loss stays on the device until a report reads it)."""
        state = self.state
        self.pending.append(loss)
        state.step += 1
        state.lr = lr
        state.tokens_seen += batch[0].numel()  # input positions of the global batch

    def stop_reason(self, stop: StopRequests) -> str | None:
        """Why the loop ends here: "steps", "time budget", or a signal's name; None to go on.

        Under DDP the ranks agree on a signal at log steps (one all-reduce), so all stop together.
        """
        cfg, state = self.cfg, self.state
        state.elapsed_seconds = self.elapsed()
        if cfg.time_budget is None and state.step >= cfg.steps:
            return "steps"
        if cfg.time_budget is not None and state.elapsed_seconds >= cfg.time_budget:
            return "time budget"
        if self.world == 1:
            return stop.received
        if state.step % cfg.log_interval == 0 and any_rank(stop.received is not None, self.device):
            return stop.received or "signal"
        return None

    def report(self, bar: Any, reason: str | None) -> None:
        """After a step: log, evaluate, sample, run callbacks, checkpoint, each when due.

        At the end of the run all of them; after a stop request only the log, the callbacks and the
        checkpoint (the final evaluation follows), so that the run stops promptly.
        """
        cfg, step = self.cfg, self.state.step
        end, finished = reason is not None, reason in ("steps", "time budget")
        due = {
            "log": step % cfg.log_interval == 0 or end,
            "eval": cfg.eval_interval and (step % cfg.eval_interval == 0 or finished),
            "sample": cfg.sample_interval and (step % cfg.sample_interval == 0 or finished),
            "callbacks": self.callbacks and (step % cfg.callback_interval == 0 or end),
            "checkpoint": self.ckpt_path and self.rank == 0 and (
                end or (cfg.checkpoint_interval and step % cfg.checkpoint_interval == 0)),
        }
        if not any(due.values()):
            return
        self.flush()
        if due["log"]:
            self.write_log(bar)
        if due["eval"]:
            self.evaluate()
        if due["sample"]:
            self.sample()
        if due["callbacks"] and self.rank == 0:
            for callback in self.callbacks:
                callback(self.state)
        if due["checkpoint"]:
            save_checkpoint(self.ckpt_path, self.state, self.data_generator, previous=self.previous)
            self.previous = "rotate"
        if end:
            self.logger.write(event="stop", step=step, reason=reason, loop_s=self.state.elapsed_seconds)
        if end and not finished:
            saved = f"; checkpoint: {self.ckpt_path}" if due["checkpoint"] else ""
            self.say(f"stopped by {reason} after step {step}: the model holds that step's weights{saved}")
        self.segment_start = time.perf_counter()

    def flush(self) -> None:
        """Wait for the device, record the pending losses, close the timed stretch."""
        state = self.state
        if self.pending:
            state.losses.extend(torch.stack(self.pending).tolist())
            state.loss = state.losses[-1]
            self.pending.clear()
        state.train_seconds += time.perf_counter() - self.segment_start

    def write_log(self, bar: Any) -> None:
        state = self.state
        postfix = dict(loss=f"{state.loss:.3f}", tok_s=f"{state.tokens_per_s:.0f}")
        if self.cfg.time_budget is not None:
            postfix["left_s"] = f"{max(0.0, self.cfg.time_budget - state.elapsed_seconds):.0f}"
        bar.set_postfix(**postfix)
        self.logger.write(event="train", step=state.step, loss=state.loss, lr=state.lr,
                          tokens_per_s=state.tokens_per_s, elapsed_s=time.perf_counter() - self.t_start)

    def evaluate(self) -> None:
        state = self.state
        if self.val_sampler is None or (state.evals and state.evals[-1]["step"] == state.step):
            return
        val = evaluate(self.model, self.val_sampler, self.cfg, self.device, self.amp, self.loss_fn)
        state.evals.append({"step": state.step, "val_loss": val})
        self.logger.write(event="eval", step=state.step, val_loss=val)
        self.segment_start = time.perf_counter()  # evaluation is not training time

    def sample(self) -> None:
        model, cfg, tokenizer = self.model, self.cfg, self.tokenizer
        if self.rank != 0 or tokenizer is None or model_config(model) is None or model.decoder is None \
                or model.encoder is not None:
            return
        prompt = tokenizer.encode(cfg.sample_prompt).to(self.device)
        with eval_mode(model):
            ids = model.generate(prompt, cfg.sample_tokens, temperature=1.0, top_k=None,
                                 generator=torch.Generator(device=self.device).manual_seed(cfg.seed))
        text = tokenizer.decode(ids[0].tolist())
        self.state.samples.append({"step": self.state.step, "text": text})
        self.logger.write(event="sample", step=self.state.step, text=text)
        if self.log is not None:
            self.log(f"--- sample at step {self.state.step} ---\n{text}")

    def result(self, reason: str) -> TrainResult:
        state, primary = self.state, self.rank == 0
        final = state.evals[-1]["val_loss"] if state.evals else float("nan")
        return TrainResult(losses=state.losses, evals=state.evals, final_val_loss=final,
                           tokens_per_s=state.tokens_per_s, steps=state.step,
                           wall_seconds=time.perf_counter() - self.t_start, samples=state.samples,
                           checkpoint=str(self.ckpt_path) if self.ckpt_path and primary else None,
                           log=str(self.log_path) if self.log_path and primary else None, stop_reason=reason)


def _place(model: nn.Module, cfg: TrainConfig) -> tuple[torch.device, torch.dtype | None]:
    """Put the model on ``cfg.device`` in training mode with ``cfg.backend``; (device, autocast dtype)."""
    device = resolve_device(cfg.device)
    if cfg.num_threads and device.type == "cpu":
        torch.set_num_threads(cfg.num_threads)
    if cfg.backend is not None:
        model.set_backend(cfg.backend)
    model.to(device).train()
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for whatever autocast leaves in fp32
    return device, autocast_dtype(cfg, device)


def _wrap(model: nn.Module, cfg: TrainConfig, device: torch.device, world: int) -> tuple[Callable, nn.Module]:
    """(loss function, model to step): compiled if ``cfg.compile``, under DistributedDataParallel if ``world > 1``.

    torch.compile the loss function, not only the model: the cross-entropy over (B*T, V) logits
    then fuses with the unembedding instead of writing fp32 copies of them.
    """
    loss_fn = torch.compile(batch_loss) if cfg.compile else batch_loss
    if world == 1:
        return loss_fn, model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return loss_fn, DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                        find_unused_parameters=_architecture(model) != "decoder")


def _architecture(model: nn.Module) -> str:
    """A tfcore Transformer's architecture; any other module is trained as a decoder (ids -> next-token logits)."""
    return model.config.architecture if model_config(model) is not None else "decoder"


def _check_run(model: nn.Module, cfg: TrainConfig, world: int, tokenizer: Any = None,
               callbacks: list[Callback] = ()) -> None:
    """Refuse a model the objective cannot train, settings it would ignore, and settings this many processes
    cannot share."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module (token ids (B, T) -> logits (B, T, V)), got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"model ({type(model).__name__}) has no trainable parameters")
    if isinstance(callbacks, Callable) or not all(callable(c) for c in callbacks):
        raise TypeError(f"callbacks must be a list of functions of a TrainState, got {callbacks!r}")
    if model_config(model) is None:
        name = type(model).__name__
        if cfg.objective != "lm":
            raise ValueError(f"objective={cfg.objective!r} needs a tfcore Transformer (it reads the architecture and "
                             f"vocabulary from model.config); a {name} is trained with objective='lm' (logits "
                             "(B, T, V) for the next token at every position)")
        if cfg.backend is not None:
            raise ValueError(f"backend={cfg.backend!r} sets the attention backend of a tfcore Transformer; a {name} "
                             "has its own attention: leave backend=None")
        if cfg.sample_interval and tokenizer is not None:
            raise ValueError(f"sample_interval={cfg.sample_interval} samples with a tfcore Transformer's generate; "
                             f"a {name} is not one: set sample_interval=0 (and sample with your own generate)")
    architecture = _architecture(model)
    if architecture not in ARCHITECTURES[cfg.objective]:
        why = (": a causal decoder never sees the tokens after a masked position, so it cannot learn to fill it "
               "in; use objective='lm', or an encoder" if cfg.objective == "mlm" and architecture == "decoder" else "")
        raise ValueError(f"objective={cfg.objective!r} trains a model with architecture "
                         f"{' or '.join(map(repr, ARCHITECTURES[cfg.objective]))}, but this model has "
                         f"architecture={architecture!r}{why}")
    if cfg.batch_size % (world * cfg.grad_accum):
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by world size {world} "
                         f"x grad_accum={cfg.grad_accum}")
    if cfg.time_budget is not None and world > 1:
        raise ValueError("time_budget needs a single process: under torchrun each rank's clock would set its own "
                         "learning rate; use steps")


class StopRequests:
    """``with StopRequests() as stop:`` SIGINT (Ctrl-C) and SIGTERM set ``stop.received`` to the
    signal's name instead of interrupting, so the loop can end the step it is in and stop cleanly.

    A second Ctrl-C raises ``KeyboardInterrupt`` at once, for a step that hangs. Python runs signal
    handlers in the main thread only: elsewhere this does nothing. The previous handlers come back
    on exit.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = self.received or signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()



def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _progress_bar(cfg: TrainConfig, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    total = cfg.steps if cfg.time_budget is None else None  # a time budget: the steps are not known ahead
    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True)


class _JsonLog:
    """One JSON object per line, appended (a resumed run continues the same file); a context manager."""

    def __init__(self, path: Path | None) -> None:
        self.file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")

    def write(self, **record) -> None:
        if self.file is not None:
            self.file.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
            self.file.flush()

    def __enter__(self) -> _JsonLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


# ----------------------------------------------------------------------------- names kept here for the lessons

_MOVED = {  # modules that import this one: loaded on first use, so importing tfcore.train stays light
    "LossPlot": "tfcore.viz.training",
    "ResidualNorms": "tfcore.viz.training",
    "AttentionEntropy": "tfcore.viz.training",
    "Preset": "tfcore.presets",
    "PRESETS": "tfcore.presets",
    "build": "tfcore.presets",
    "main": "tfcore.train_cli",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'tfcore.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_MOVED])


if __name__ == "__main__":  # python -m tfcore.train: the command line lives in tfcore.train_cli
    from tfcore.train_cli import main as _main

    sys.exit(_main())
