"""Optimisers and the learning-rate schedule of the training loop (lesson 09).

- ``lr_at(step, cfg)``: linear warm-up, then a half cosine down to ``min_lr``; ``lr_at_time`` is the
  same curve stretched over a time budget instead of a number of steps.
- ``param_groups``: AdamW's weight decay on the ``nn.Linear`` weight matrices only.
- ``make_optimizer``: AdamW, or Muon (orthogonalised momentum) for the hidden matrices with AdamW
  for the rest, stepped together as ``Optimizers``.

``cfg`` is a ``tfcore.train.TrainConfig``; only its fields are read here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from tfcore.train import TrainConfig


def lr_at(step: float, cfg: TrainConfig) -> float:
    """The learning rate of optimiser step ``step`` (0-based): a pure function of the step.

    Linear warm-up ``lr * (step + 1) / warmup_steps`` (step 0 already learns a little), then a
    half cosine from ``lr`` down to ``min_lr`` at ``lr_decay_steps`` (default ``steps``), then flat.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)  # min: a fractional step (lr_at_time) in the last one
    decay_steps = cfg.lr_decay_steps if cfg.lr_decay_steps is not None else cfg.steps
    if step >= decay_steps:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / max(1, decay_steps - cfg.warmup_steps)  # 0 -> 1
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def lr_at_time(seconds: float, cfg: TrainConfig) -> float:
    """The learning rate after ``seconds`` of a run with ``cfg.time_budget``: ``lr_at`` on a clock.

    The step schedule stretched over the budget: ``seconds`` count as step
    ``steps * seconds / time_budget``, so warm-up takes ``warmup_steps / steps`` of the budget and
    the cosine reaches ``min_lr`` at ``lr_decay_steps / steps`` of it (default: at the end),
    however many steps the machine manages. On a GPU the clock is the CPU's, which runs ahead of
    the device by the work it has queued.
    """
    return lr_at(cfg.steps * seconds / cfg.time_budget, cfg)


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


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer | Optimizers:
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
