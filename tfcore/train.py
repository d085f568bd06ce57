"""The training loop (lesson 09): AdamW, warm-up + cosine, clipping, evaluation, checkpoints.

One step, the same on a laptop CPU and on a GPU:

    batch  = sampler(global batch size, data generator)    (B, T+1) windows, or (inputs, targets)
    loss   = cross_entropy(model(inputs), targets)          teacher forcing: targets = inputs shifted by one
    loss.backward(); clip ||g|| to grad_clip
    lr     = lr_at(step, cfg)                               linear warm-up, then cosine down to min_lr
    AdamW step: weight decay on the Linear weight matrices only

``train(model, cfg, train_data, val_data)`` runs it with a ``tqdm.auto`` progress bar (loss and
tokens/s live in the bar, never printed), periodic evaluation on held-out data, samples,
callbacks (``LossPlot``, ``ResidualNorms``, ``AttentionEntropy``) and atomic checkpoints that
resume bit for bit. ``PRESETS`` hold tested configurations; ``python -m tfcore.train --preset
shakespeare-char-cpu`` runs one from the shell.

Data-parallel training: start the same command under ``torchrun --nproc_per_node N``. Every rank
draws the same global batch from the same generator and keeps its slice (rows ``rank::N`` would
do as well; we take a contiguous block), DistributedDataParallel averages the gradients (NCCL on
GPUs, Gloo on CPUs), and only rank 0 logs, samples and writes checkpoints. With equal slices the
averaged gradient is the gradient of the global batch, so N processes follow one process's
losses up to float rounding.

The next step up is FSDP (``torch.distributed.fsdp.fully_shard``): DDP keeps a full copy of the
weights, gradients and AdamW moments (16 bytes per parameter in fp32) on every rank; FSDP shards
all three across ranks and all-gathers each layer's weights just before it runs. Wrapping each
``Block`` and then the whole model is the usual recipe; checkpoints then need
``torch.distributed.checkpoint`` (sharded state dicts) instead of one ``torch.save`` on rank 0.
Not implemented here: the course's models fit on one device many times over.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from tfcore.data import copy_batch, digit_task_batch, induction_batch, shakespeare_splits
from tfcore.diagnostics import moving_average
from tfcore.losses import IGNORE_INDEX, mlm_mask
from tfcore.model import Transformer, TransformerConfig

OBJECTIVES = ("lm", "mlm", "seq2seq")
CHECKPOINT_NAME = "ckpt.pt"
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
    eval_interval: int = 200  # evaluate every this many steps (and at step 0 and at the end)
    eval_batches: int = 20  # batches of held-out data per evaluation (the same ones every time)
    eval_batch_size: int | None = None  # None: = batch_size
    sample_interval: int = 0  # generate a sample every this many steps; 0: never
    sample_tokens: int = 200
    sample_prompt: str = "\n"
    log_interval: int = 10  # progress-bar and JSON-lines updates
    callback_interval: int = 50  # callbacks run every this many steps (and at the end)
    checkpoint_interval: int = 0  # 0: a checkpoint at the end only (if out_dir is set)
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
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr={self.min_lr} must lie in [0, lr={self.lr}]")
        if self.optimizer not in ("adamw", "muon"):
            raise ValueError(f"optimizer must be 'adamw' or 'muon', got {self.optimizer!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be 'auto', 'float32', 'bfloat16' or 'float16', got {self.dtype!r}")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of optimiser step ``step`` (0-based): a pure function of the step.

    Linear warm-up ``lr * (step + 1) / warmup_steps`` (step 0 already learns a little), then a
    half cosine from ``lr`` down to ``min_lr`` at ``lr_decay_steps`` (default ``steps``), then flat.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = cfg.lr_decay_steps if cfg.lr_decay_steps is not None else cfg.steps
    if step >= decay_steps:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / max(1, decay_steps - cfg.warmup_steps)  # 0 -> 1
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay the weight matrices of ``nn.Linear`` layers, nothing else.

    Not decayed: biases, norm gains (decay would pull them to 0 instead of 1), embedding and
    position tables, T5 bias tables (lookup rows: a rare token's row would shrink whenever any
    batch runs). With tied weights the unembedding *is* the token embedding, so it is not decayed.
    """
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay_ids = {id(m.weight) for m in model.modules()
                 if isinstance(m, nn.Linear) and id(m.weight) not in embedding_ids}
    decay, no_decay = [], []
    for p in model.parameters():  # parameters() lists a tied tensor once
        if p.requires_grad:
            (decay if id(p) in decay_ids else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def param_group_names(model: nn.Module) -> tuple[list[str], list[str]]:
    """(names with decay, names without), for checking ``param_groups`` by eye."""
    ids = {id(p) for p in param_groups(model, 1.0)[0]["params"]}
    named = list(model.named_parameters())
    return [n for n, p in named if id(p) in ids], [n for n, p in named if id(p) not in ids]


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer | "Optimizers":
    """AdamW over ``param_groups``; or, with ``cfg.optimizer == "muon"``, Muon for the hidden
    weight matrices and AdamW for everything else (embeddings, norms, biases, an untied unembedding).

    Muon orthogonalises each matrix's momentum (Newton-Schulz) before the update, scaled to the
    size of an AdamW update, so one ``lr`` and one schedule serve both.
    """
    fused = cfg.fused_adamw if cfg.fused_adamw is not None else device.type == "cuda"
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr_at(0, cfg), betas=cfg.betas, eps=cfg.eps, fused=fused or None)
    head = getattr(model, "unembed", None)
    hidden = [p for p in groups[0]["params"] if head is None or p is not head.weight]
    rest = [p for p in groups[0]["params"] if head is not None and p is head.weight]
    muon = Muon(hidden, lr=lr_at(0, cfg), weight_decay=cfg.weight_decay)
    adamw = torch.optim.AdamW([{"params": rest, "weight_decay": cfg.weight_decay}, groups[1]], lr=lr_at(0, cfg),
                              betas=cfg.betas, eps=cfg.eps, fused=fused or None)
    return Optimizers(muon, adamw)


def orthogonalize(g: Tensor, steps: int = 5) -> Tensor:
    """Approximately U V^T for g = U S V^T (m, n): a quintic Newton-Schulz iteration.

    Normalised so every singular value is at most 1, each step pushes them towards 1 (the
    coefficients trade exactness, S' ~ 0.7..1.2, for speed). bf16 on GPUs; fp32 elsewhere, where
    bf16 matmuls are emulated and slow.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.to(torch.bfloat16 if g.is_cuda else torch.float32)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T  # iterate on the smaller Gram matrix
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for 2-D weight matrices: Nesterov momentum, then an orthogonalised update.

    ``W <- W (1 - lr wd) - lr * 0.2 sqrt(max(m, n)) * orthogonalize(g + mu * buf)``; the factor
    gives the update the RMS of a typical AdamW step, so AdamW's lr and schedule carry over.
    """

    def __init__(self, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.95, ns_steps: int = 5):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.dim() != 2:
                    raise ValueError(f"Muon updates matrices only, got a parameter of shape {tuple(p.shape)}")
                state = self.state[p]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(p)
                buf = state["momentum"].mul_(mu).add_(p.grad)
                update = orthogonalize(p.grad.add(buf, alpha=mu), group["ns_steps"])
                p.mul_(1 - lr * wd).add_(update, alpha=-lr * 0.2 * math.sqrt(max(p.shape)))


class Optimizers:
    """Several optimisers stepped as one (Muon + AdamW); ``param_groups`` lists all their groups."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)


# ----------------------------------------------------------------------------- data

Batch = tuple[Tensor, ...]  # (inputs, targets) or (source, inputs, targets), every item (B, ...)
Sampler = Callable[[int, torch.Generator], Batch]  # (global batch size, generator) -> batch


def corpus_sampler(data: Tensor, block_size: int, objective: str = "lm", mask_id: int | None = None,
                   mask_prob: float = 0.15) -> Sampler:
    """Random windows of a 1-D corpus of ids (N,).

    "lm": windows of ``block_size + 1``; inputs = the first T ids, targets = the last T (shifted).
    "mlm": windows of ``block_size``, corrupted by ``mlm_mask`` with ids below ``mask_id``.
    """
    if data.dim() != 1:
        raise ValueError(f"data must be a 1-D tensor of ids (N,), got shape {tuple(data.shape)}")
    if len(data) <= block_size + 1:
        raise ValueError(f"data has {len(data)} tokens, too few for block_size={block_size}")
    if objective == "mlm" and mask_id is None:
        raise ValueError("objective='mlm' needs mask_id")
    offsets = torch.arange(block_size + 1)

    def sample(batch_size: int, generator: torch.Generator) -> Batch:
        starts = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
        windows = data[starts[:, None] + offsets]  # (B, T + 1), the same draws as data.random_batch
        if objective == "mlm":
            return mlm_mask(windows[:, :-1], mask_id, mask_id, mask_prob, generator)
        return windows[:, :-1], windows[:, 1:]

    return sample


def induction_sampler(half_len: int, vocab_size: int, min_half_len: int | None = None) -> Sampler:
    """``induction_batch`` as an LM task scored on the repeated half only (the first half is noise).

    With ``min_half_len`` (copies of varying length, see ``induction_batch``) only the tokens that
    can be copied are scored: the second copy after its first token.
    """

    def sample(batch_size: int, generator: torch.Generator) -> Batch:
        if min_half_len is None:
            tokens = induction_batch(batch_size, half_len, vocab_size, generator)
            targets = tokens[:, 1:].clone()
            targets[:, : half_len - 1] = IGNORE_INDEX  # positions whose next token is still random
            return tokens[:, :-1], targets
        tokens, lengths = induction_batch(batch_size, half_len, vocab_size, generator, min_half_len, True)
        targets = tokens[:, 1:].clone()
        first_scored = 2 * half_len - lengths + 1  # token index of the second copy's second token
        targets[torch.arange(1, 2 * half_len)[None, :] < first_scored[:, None]] = IGNORE_INDEX
        return tokens[:, :-1], targets

    return sample


def copy_sampler(length: int, vocab_size: int) -> Sampler:
    """``copy_batch`` (sequence, separator, sequence) scored on the copy after the separator.

    The separator has id ``vocab_size``: give the model ``vocab_size + 1`` ids.
    """

    def sample(batch_size: int, generator: torch.Generator) -> Batch:
        tokens = copy_batch(batch_size, length, vocab_size, generator)
        targets = tokens[:, 1:].clone()
        targets[:, :length] = IGNORE_INDEX
        return tokens[:, :-1], targets

    return sample


def digit_sampler(task: str, length: int) -> Sampler:
    """``digit_task_batch`` for encoder-decoder models: (source, decoder input, target), vocab 11."""

    def sample(batch_size: int, generator: torch.Generator) -> Batch:
        return digit_task_batch(task, batch_size, length, generator)

    return sample


def as_sampler(data: Union[Tensor, Sampler], cfg: TrainConfig, model: Transformer) -> Sampler:
    """A corpus tensor becomes ``corpus_sampler``; a sampler passes through."""
    if callable(data) and not isinstance(data, Tensor):
        return data
    mask_id = cfg.mask_id if cfg.mask_id is not None else model.config.vocab_size - 1
    if cfg.objective == "seq2seq":
        raise ValueError("objective='seq2seq' needs a sampler returning (source, inputs, targets), e.g. digit_sampler")
    return corpus_sampler(data, cfg.block_size, cfg.objective, mask_id, cfg.mask_prob)


def batch_loss(model: nn.Module, batch: Batch) -> tuple[Tensor, int]:
    """Mean cross-entropy over the targets that are not IGNORE_INDEX, and how many there were."""
    if len(batch) == 3:
        source, inputs, targets = batch
        logits = model(inputs, source=source)
    else:
        inputs, targets = batch
        logits = model(inputs)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
    return loss, inputs.numel()


# ----------------------------------------------------------------------------- state, callbacks, result


@dataclass
class TrainState:
    """What callbacks see. ``step`` counts finished optimiser steps."""

    step: int
    model: Transformer  # the plain model (not the compiled or DDP wrapper)
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig
    loss: float = float("nan")  # the last step's training loss
    lr: float = 0.0
    tokens_seen: int = 0
    losses: list[float] = field(default_factory=list)  # training loss of every step
    evals: list[dict] = field(default_factory=list)  # {"step", "val_loss"}
    samples: list[dict] = field(default_factory=list)  # {"step", "text"}
    train_seconds: float = 0.0  # time spent in training steps (not evaluation or sampling)
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
    """Records ``||F_l(x)|| / ||x||`` per layer on a fixed probe batch: how much each block writes.

    F_l(x) = block(x) - x is the block's update to the residual stream. Kept in
    ``history[layer_name]`` as a list of (step, ratio).
    """

    def __init__(self, probe: Tensor) -> None:
        self.probe = probe
        self.history: dict[str, list[tuple[int, float]]] = {}

    def __call__(self, state: TrainState) -> None:
        model = state.model
        ratios: dict[str, float] = {}
        handles = []
        for stack in ("encoder", "decoder"):
            for i, block in enumerate(getattr(model, stack) or []):
                def hook(mod, args, out, name=f"{stack}.{i}"):
                    x = args[0]
                    ratios[name] = float((out - x).norm() / x.norm())
                handles.append(block.register_forward_hook(hook))
        try:
            with _eval_mode(model):
                model(self.probe.to(model.embed.weight.device))
        finally:
            for h in handles:
                h.remove()
        for name, r in ratios.items():
            self.history.setdefault(name, []).append((state.step, r))


class AttentionEntropy:
    """Records the mean attention entropy of every head (nats) on a fixed probe batch.

    ``history[layer_name]`` is a list of (step, (h,) tensor); compare with ln T for uniform attention.
    """

    def __init__(self, probe: Tensor) -> None:
        self.probe = probe
        self.history: dict[str, list[tuple[int, Tensor]]] = {}

    def __call__(self, state: TrainState) -> None:
        from tfcore.diagnostics import attention_entropy
        from tfcore.model import capture_attention

        model = state.model
        with _eval_mode(model), capture_attention(model) as weights:
            model(self.probe.to(model.embed.weight.device))
        for name, w in weights.items():  # w: (B, h, T_q, T_k)
            self.history.setdefault(name, []).append((state.step, attention_entropy(w).mean(dim=(0, 2)).cpu()))


class _eval_mode:
    """``with _eval_mode(model):`` eval mode and no gradients inside, the previous mode after."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.no_grad = model, torch.no_grad()

    def __enter__(self) -> None:
        self.was_training = self.model.training
        self.model.eval()
        self.no_grad.__enter__()

    def __exit__(self, *exc) -> None:
        self.no_grad.__exit__(*exc)
        self.model.train(self.was_training)


# ----------------------------------------------------------------------------- checkpoints


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a half-written file at ``path``.

    Write a temporary file in the same directory, flush it to disk (fsync), then ``os.replace``
    it over ``path``: a rename within one file system is atomic, so a crash or Ctrl-C at any
    moment leaves either the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
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


def save_checkpoint(path: str | os.PathLike, state: TrainState, data_generator: torch.Generator) -> None:
    """Model, optimiser, step (the schedule is ``lr_at(step)``), every RNG state and the histories."""
    atomic_save({
        "format": 1,
        "step": state.step,
        "model": state.model.state_dict(),
        "model_config": asdict(state.model.config),
        "optimizer": state.optimizer.state_dict(),
        "train_config": asdict(state.cfg),
        "rng": rng_states(data_generator),
        "data": {"tokens_seen": state.tokens_seen, "batches_drawn": state.step * state.cfg.grad_accum},
        "history": {"losses": state.losses, "evals": state.evals, "samples": state.samples,
                    "train_seconds": state.train_seconds},
    }, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by ``save_checkpoint`` (plain tensors and Python values only)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def model_from_checkpoint(path: str | os.PathLike) -> Transformer:
    """Rebuild the model a checkpoint was taken from, weights included."""
    return _model_from(load_checkpoint(path))


def _model_from(saved: dict) -> Transformer:
    """A Transformer built from a saved ``model_config`` with the saved ``model`` weights."""
    model = Transformer(TransformerConfig(**saved["model_config"]))
    model.load_state_dict(saved["model"])
    return model


WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # trained models shipped with the package


def save_weights(path: str | os.PathLike, model: Transformer, preset: str, result: "TrainResult") -> None:
    """Write a trained model for ``pretrained``: config, fp32 weights and the run's loss history."""
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
    record = torch.load(path, map_location="cpu", weights_only=True)
    model = _model_from(record).eval()
    del record["model_config"], record["model"]
    return model, record


# ----------------------------------------------------------------------------- the loop


def distributed_context() -> tuple[int, int]:
    """(rank, world size); (0, 1) without ``torch.distributed``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup_distributed() -> bool:
    """Under torchrun (WORLD_SIZE > 1): join the process group, NCCL on GPUs, Gloo on CPUs."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_available() and dist.is_initialized()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


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


def _share(batch: Batch, rank: int, world: int, micro: int, n_micro: int) -> Batch:
    """This rank's rows of micro-batch ``micro`` of a global batch: a contiguous block of rows."""
    b = batch[0].shape[0]
    rows = b // (world * n_micro)
    start = (rank * n_micro + micro) * rows
    return tuple(t[start : start + rows] for t in batch)


@torch.no_grad()
def evaluate(model: nn.Module, sampler: Sampler, cfg: TrainConfig, device: torch.device,
             amp: torch.dtype | None = None, loss_fn: Callable = None) -> float:
    """Mean loss over ``eval_batches`` held-out batches, the same ones at every call (fixed seed).

    Under DDP each rank scores its share of each batch and the means are averaged.
    """
    rank, world = distributed_context()
    loss_fn = loss_fn or batch_loss
    generator = torch.Generator().manual_seed(cfg.seed + 1_000_003)
    batch_size = cfg.eval_batch_size or cfg.batch_size
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device)
    for _ in range(cfg.eval_batches):
        batch = tuple(t.to(device) for t in _share(sampler(batch_size, generator), rank, world, 0, 1))
        with _autocast(device, amp):
            total += loss_fn(model, batch)[0].float()
    model.train(was_training)
    if world > 1:
        dist.all_reduce(total, op=dist.ReduceOp.AVG)
    return total.item() / cfg.eval_batches


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def train(
    model: Transformer,
    cfg: TrainConfig,
    train_data: Union[Tensor, Sampler],
    val_data: Union[Tensor, Sampler, None] = None,
    callbacks: list[Callback] = (),
    progress: bool = True,
    tokenizer: Any = None,
    resume: bool | str = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place and return the histories.

    train_data, val_data: a 1-D corpus of ids (N,) (random windows, ``cfg.objective`` "lm" or
    "mlm") or a ``Sampler`` ``(batch_size, generator) -> (inputs, targets)`` or ``(source,
    inputs, targets)``. callbacks: called (on rank 0) with a ``TrainState`` every
    ``callback_interval`` steps and after the last. tokenizer: with ``encode``/``decode`` it enables samples every
    ``sample_interval`` steps. resume: True continues from ``out_dir/ckpt.pt`` if it exists; a
    path continues from that file. log: where to send sample texts as they come (e.g. ``print``);
    nothing is printed otherwise, so a notebook's output stays the same from run to run.
    """
    t_start = time.perf_counter()
    rank, world = distributed_context()
    if cfg.batch_size % (world * cfg.grad_accum):
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by world size {world} x grad_accum={cfg.grad_accum}")
    device = resolve_device(cfg.device)
    if cfg.num_threads and device.type == "cpu":
        torch.set_num_threads(cfg.num_threads)
    if cfg.backend is not None:
        model.set_backend(cfg.backend)
    model.to(device).train()
    amp = autocast_dtype(cfg, device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for whatever autocast leaves in fp32

    train_sampler = as_sampler(train_data, cfg, model)
    val_sampler = as_sampler(val_data, cfg, model) if val_data is not None else None
    data_generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed + rank)  # dropout masks differ between ranks
    optimizer = make_optimizer(model, cfg, device)
    state = TrainState(step=0, model=model, optimizer=optimizer, cfg=cfg, rank=rank, world_size=world)

    out_dir = Path(cfg.out_dir) if cfg.out_dir else None
    ckpt_path = out_dir / CHECKPOINT_NAME if out_dir else None
    log_path = out_dir / LOG_NAME if out_dir else None
    resume_path = Path(resume) if isinstance(resume, (str, os.PathLike)) else (ckpt_path if resume else None)
    if resume_path is not None and resume_path.exists():
        _restore(resume_path, state, data_generator, device)
        if rank > 0:  # the checkpoint holds rank 0's dropout RNG: give the others their own again
            torch.manual_seed(cfg.seed + rank + 7919 * state.step)
    logger = _JsonLog(log_path if rank == 0 else None)
    logger.write(event="start", step=state.step, world_size=world, device=str(device), train_config=asdict(cfg),
                 model_config=asdict(model.config))

    # torch.compile the loss function, not only the model: the cross-entropy over (B*T, V) logits
    # then fuses with the unembedding instead of writing fp32 copies of them.
    loss_fn = torch.compile(batch_loss) if cfg.compile else batch_loss
    step_model: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        step_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                         find_unused_parameters=model.config.architecture != "decoder")

    def run_eval() -> None:
        if val_sampler is None or (state.evals and state.evals[-1]["step"] == state.step):
            return
        val = evaluate(model, val_sampler, cfg, device, amp, loss_fn)
        state.evals.append({"step": state.step, "val_loss": val})
        logger.write(event="eval", step=state.step, val_loss=val)

    def run_sample() -> None:
        if rank != 0 or tokenizer is None or model.decoder is None or model.encoder is not None:
            return
        prompt = tokenizer.encode(cfg.sample_prompt).to(device)
        with _eval_mode(model):
            ids = model.generate(prompt, cfg.sample_tokens, temperature=1.0, top_k=None,
                                 generator=torch.Generator(device=device).manual_seed(cfg.seed))
        text = tokenizer.decode(ids[0].tolist())
        state.samples.append({"step": state.step, "text": text})
        logger.write(event="sample", step=state.step, text=text)
        if log is not None:
            log(f"--- sample at step {state.step} ---\n{text}")

    def run_callbacks() -> None:
        if rank == 0:
            for cb in callbacks:
                cb(state)

    pending: list[Tensor] = []  # losses still on the device: read them (a sync) only when needed
    segment_start = time.perf_counter()  # start of the current stretch of pure training steps

    def flush() -> None:
        """Wait for the device, record the pending losses, close the timed stretch."""
        if pending:
            state.losses.extend(torch.stack(pending).tolist())
            state.loss = state.losses[-1]
            pending.clear()
        state.train_seconds += time.perf_counter() - segment_start

    bar = _progress_bar(cfg.steps, state.step, progress and rank == 0)
    try:
        if state.step == 0 and cfg.eval_interval:
            run_eval()
        segment_start = time.perf_counter()
        while state.step < cfg.steps:
            lr = lr_at(state.step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = train_sampler(cfg.batch_size, data_generator)  # the global batch; we keep our rows
            step_loss = torch.zeros((), device=device)
            for micro in range(cfg.grad_accum):
                part = tuple(t.to(device, non_blocking=True) for t in _share(batch, rank, world, micro, cfg.grad_accum))
                sync = world == 1 or micro == cfg.grad_accum - 1  # DDP: all-reduce on the last micro-batch only
                with (nullcontext() if sync else step_model.no_sync()), _autocast(device, amp):
                    loss, _ = loss_fn(step_model, part)
                    (loss / cfg.grad_accum).backward()
                step_loss += loss.detach() / cfg.grad_accum
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if world > 1:
                dist.all_reduce(step_loss, op=dist.ReduceOp.AVG)  # the global batch's loss, for the log
            pending.append(step_loss)
            state.step += 1
            state.lr = lr
            state.tokens_seen += batch[0].numel()  # input positions of the global batch
            bar.update(1)

            last = state.step == cfg.steps
            due = {
                "log": state.step % cfg.log_interval == 0 or last,
                "eval": cfg.eval_interval and (state.step % cfg.eval_interval == 0 or last),
                "sample": cfg.sample_interval and (state.step % cfg.sample_interval == 0 or last),
                "callbacks": callbacks and (state.step % cfg.callback_interval == 0 or last),
                "checkpoint": ckpt_path and rank == 0 and (
                    last or (cfg.checkpoint_interval and state.step % cfg.checkpoint_interval == 0)),
            }
            if not any(due.values()):
                continue
            flush()
            if due["log"]:
                bar.set_postfix(loss=f"{state.loss:.3f}", tok_s=f"{state.tokens_per_s:.0f}")
                logger.write(event="train", step=state.step, loss=state.loss, lr=lr,
                             tokens_per_s=state.tokens_per_s, elapsed_s=time.perf_counter() - t_start)
            if due["eval"]:
                run_eval()
            if due["sample"]:
                run_sample()
            if due["callbacks"]:
                run_callbacks()
            if due["checkpoint"]:
                save_checkpoint(ckpt_path, state, data_generator)
            segment_start = time.perf_counter()
    finally:
        bar.close()
        logger.close()
    run_eval()  # the final model is always scored (no-op if that just happened)
    final = state.evals[-1]["val_loss"] if state.evals else float("nan")
    return TrainResult(losses=state.losses, evals=state.evals, final_val_loss=final, tokens_per_s=state.tokens_per_s,
                       steps=state.step, wall_seconds=time.perf_counter() - t_start, samples=state.samples,
                       checkpoint=str(ckpt_path) if ckpt_path and rank == 0 else None,
                       log=str(log_path) if log_path and rank == 0 else None)


def _restore(path: Path, state: TrainState, data_generator: torch.Generator, device: torch.device) -> None:
    ckpt = load_checkpoint(path, map_location="cpu")
    saved = TransformerConfig(**ckpt["model_config"])
    saved.backend = state.model.config.backend  # the kernel choice does not change the weights
    if saved != state.model.config:
        raise ValueError(f"checkpoint {path} holds a different model: {ckpt['model_config']}")
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_states(ckpt["rng"], data_generator)
    state.step = ckpt["step"]
    state.tokens_seen = ckpt["data"]["tokens_seen"]
    history = ckpt["history"]
    state.losses, state.evals, state.samples = list(history["losses"]), list(history["evals"]), list(history["samples"])
    state.train_seconds = history["train_seconds"]


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True)


class _JsonLog:
    """One JSON object per line, appended (a resumed run continues the same file)."""

    def __init__(self, path: Path | None) -> None:
        self.file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")

    def write(self, **record) -> None:
        if self.file is not None:
            self.file.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


# ----------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """A tested pairing of model, training configuration and data."""

    description: str
    model: dict  # TransformerConfig fields; vocab_size is filled in from the data unless given
    train: TrainConfig
    data: str = "shakespeare"  # "shakespeare" | "induction" | "copy" | "digits-reverse"
    data_options: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    # Tuned for a 2-core CPU (benchmarks/train_cpu.py): val 1.55 in 130 s on an idle 2-core Intel Xeon
    # (2,800 steps: 1.53 in 149 s; 2,400 leaves room for a slower CPU). Small batches (16 x 64 tokens)
    # and many steps beat 32 x 128 at the same budget (1.77 vs 2.16 at 1.5M tokens). Muon beats AdamW
    # per step (2,800 steps: 1.53 vs 1.65) but costs more per step on the CPU (Newton-Schulz). Slower
    # CPUs take longer: an AMD EPYC machine ran AdamW at 7.9k tokens/s against 18.7k here (before the
    # fused norms and GELU, which took this machine from 20k to 30k tokens/s in a bare training step).
    "shakespeare-char-cpu": Preset(
        "character-level Shakespeare in ~3 minutes on a 2-core CPU",
        dict(d_model=128, n_layers=4, n_heads=4, max_seq_len=64, dropout=0.0, backend="sdpa"),
        TrainConfig(steps=2400, batch_size=16, block_size=64, lr=3e-3, min_lr=1e-4, warmup_steps=50,
                    weight_decay=0.1, eval_interval=800, eval_batches=10, sample_interval=0, optimizer="muon",
                    backend="sdpa"),
    ),
    # Lesson 09's live demo: ~15 s on a 2-core CPU.
    "shakespeare-char-tiny": Preset(
        "a tiny character-level GPT for a live notebook demo (~15 s on 2 CPU cores)",
        dict(d_model=64, n_layers=2, n_heads=4, max_seq_len=64, backend="sdpa"),
        TrainConfig(steps=300, batch_size=16, block_size=64, lr=3e-3, min_lr=3e-4, warmup_steps=30,
                    eval_interval=100, eval_batches=8, callback_interval=20, backend="sdpa"),
    ),
    # A tiny masked-LM (encoder) on the same corpus, for lesson 09.
    "shakespeare-mlm-tiny": Preset(
        "a tiny masked-LM (bidirectional encoder) on character-level Shakespeare",
        dict(architecture="encoder", d_model=64, n_layers=2, n_heads=4, max_seq_len=64, backend="sdpa"),
        TrainConfig(steps=300, batch_size=16, block_size=64, lr=3e-3, min_lr=3e-4, warmup_steps=30,
                    eval_interval=100, eval_batches=8, objective="mlm", backend="sdpa"),
    ),
    # Lesson 03 (its weights ship in tfcore/weights: tfcore.train.pretrained("induction-tiny")).
    # Repeated random segments whose length varies per row (min_half_len): no fixed offset to learn
    # instead of induction. Rotary positions: "one token back" is the same rotation at every position.
    # Measured: the copy loss sits near ln 64 until step ~550, then drops to 0.2 by step 800 (0.091 at
    # 2,000), 208 s on one thread. With learned positions the same model was still on its plateau at
    # step 1,750, and with learned positions and copies of one fixed length it learned the offset instead.
    # One thread: on a busy 2-core machine two threads made each step ~10x slower.
    "induction-tiny": Preset(
        "a 2-layer RoPE model learning to copy repeated random segments (induction heads)",
        dict(d_model=64, n_layers=2, n_heads=4, max_seq_len=64, positions="rope", backend="sdpa"),
        TrainConfig(steps=2000, batch_size=64, block_size=63, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                    eval_interval=100, eval_batches=4, weight_decay=0.0, betas=(0.9, 0.98), backend="sdpa",
                    num_threads=1),
        data="induction", data_options=dict(half_len=32, vocab_size=64, min_half_len=8),
    ),
    # GPT-2 small (124M) on a GPU: bf16 autocast, torch.compile, fused AdamW, PyTorch's SDPA.
    # The bundled corpus is characters (65 ids of 50304): a shape and speed check, not GPT-2 training.
    "gpt2-small-gpu": Preset(
        "GPT-2 small shape on one CUDA GPU (bf16, compiled, fused AdamW)",
        dict(vocab_size=50304, d_model=768, n_layers=12, n_heads=12, max_seq_len=1024, mlp="gelu_tanh",
             backend="sdpa"),
        TrainConfig(steps=5000, batch_size=12, block_size=1024, grad_accum=1, lr=6e-4, min_lr=6e-5,
                    warmup_steps=200, weight_decay=0.1, eval_interval=500, eval_batches=20, log_interval=10,
                    device="auto", dtype="auto", compile=True, fused_adamw=True, backend="sdpa"),
    ),
}


def build(preset: str | Preset, **overrides) -> tuple[Transformer, TrainConfig, Any, Any, Any]:
    """(model, cfg, train_data, val_data, tokenizer) for a preset; overrides replace TrainConfig fields.

    The model is initialised from ``torch.manual_seed(cfg.seed)``.
    """
    p = PRESETS[preset] if isinstance(preset, str) else preset
    cfg = replace(p.train, **overrides)
    model_fields = dict(p.model)
    tokenizer = None
    if p.data == "shakespeare":
        tokenizer, train_data, val_data = shakespeare_splits()
        extra = 1 if cfg.objective == "mlm" else 0  # the [MASK] id after the characters
        model_fields.setdefault("vocab_size", tokenizer.vocab_size + extra)
    elif p.data == "induction":
        train_data = val_data = induction_sampler(**p.data_options)
        model_fields.setdefault("vocab_size", p.data_options["vocab_size"])
    elif p.data == "copy":
        train_data = val_data = copy_sampler(**p.data_options)
        model_fields.setdefault("vocab_size", p.data_options["vocab_size"] + 1)
    elif p.data.startswith("digits-"):
        train_data = val_data = digit_sampler(p.data[len("digits-"):], **p.data_options)
        model_fields.setdefault("vocab_size", 11)
    else:
        raise ValueError(f"unknown data {p.data!r}")
    torch.manual_seed(cfg.seed)
    model = Transformer(TransformerConfig(**model_fields))
    return model, cfg, train_data, val_data, tokenizer


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfcore.train", description="Train a preset (torchrun for DDP).")
    parser.add_argument("--preset", default="shakespeare-char-cpu", choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, help="total optimiser steps (a resumed run continues up to this)")
    parser.add_argument("--out-dir", help="checkpoint and log folder (default: runs/PRESET)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT_DIR/ckpt.pt")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--save-weights", metavar="PATH",
                        help="after training, save the model (config, fp32 weights, loss history) for pretrained()")
    args = parser.parse_args(argv)

    setup_distributed()
    rank, world = distributed_context()
    overrides: dict[str, Any] = {"out_dir": args.out_dir or os.path.join("runs", args.preset)}
    for name in ("steps", "device", "seed", "compile"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    model, cfg, train_data, val_data, tokenizer = build(args.preset, **overrides)
    out = Path(cfg.out_dir)
    say = print if rank == 0 else (lambda *a, **k: None)
    say(f"preset {args.preset}: {PRESETS[args.preset].description}")
    say(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; "
        f"{cfg.steps} steps of {cfg.batch_size} x {cfg.block_size} tokens on {world} process(es)")
    say(f"checkpoint: {out / CHECKPOINT_NAME}")
    say(f"log (JSON lines): {out / LOG_NAME}")
    if args.resume and (out / CHECKPOINT_NAME).exists():
        say(f"resuming from step {load_checkpoint(out / CHECKPOINT_NAME)['step']}")
    result = train(model, cfg, train_data, val_data, progress=not args.no_progress, tokenizer=tokenizer,
                   resume=args.resume, log=say)
    say(f"done: {result.steps} steps, final val loss {result.final_val_loss:.4f}, "
        f"{result.tokens_per_s:.0f} tokens/s, {result.wall_seconds:.1f} s")
    if args.save_weights and rank == 0:
        Path(args.save_weights).parent.mkdir(parents=True, exist_ok=True)
        save_weights(args.save_weights, model, args.preset, result)
        say(f"weights (for tfcore.train.pretrained): {args.save_weights}")
    if world > 1:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
