"""Data-parallel training: the few pieces of ``torch.distributed`` the training loop uses.

Start ``python -m tfcore.train`` under ``torchrun --nproc_per_node N``. Every rank draws the same
global batch from the same generator and keeps its slice (rows ``rank::N`` would do as well; we
take a contiguous block), DistributedDataParallel averages the gradients (NCCL on GPUs, Gloo on
CPUs), and only rank 0 logs, samples and writes checkpoints. With equal slices the averaged
gradient is the gradient of the global batch, so N processes follow one process's losses up to
float rounding. A stop request (Ctrl-C, SIGTERM) is agreed between the ranks, so that they all
stop after the same step.

The next step up is FSDP (``torch.distributed.fsdp.fully_shard``): DDP keeps a full copy of the
weights, gradients and AdamW moments (16 bytes per parameter in fp32) on every rank; FSDP shards
all three across ranks and all-gathers each layer's weights just before it runs. Wrapping each
``Block`` and then the whole model is the usual recipe; checkpoints then need
``torch.distributed.checkpoint`` (sharded state dicts) instead of one ``torch.save`` on rank 0.
Not implemented here: the course's models fit on one device many times over.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor


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


def shard(batch: tuple[Tensor, ...], rank: int, world: int, micro: int, n_micro: int) -> tuple[Tensor, ...]:
    """This rank's rows of micro-batch ``micro`` of a global batch: a contiguous block of rows.

    batch: items (B, ...) with B divisible by ``world * n_micro``; returns items (B / (world * n_micro), ...).
    """
    b = batch[0].shape[0]
    rows = b // (world * n_micro)
    start = (rank * n_micro + micro) * rows
    return tuple(t[start : start + rows] for t in batch)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on any rank (one all-reduce; a plain bool alone)."""
    if distributed_context()[1] == 1:
        return flag
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
