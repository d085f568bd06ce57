"""Small input checks shared by every module: errors that name the argument and the axis."""

from __future__ import annotations

import torch
from torch import Tensor


def require_tensor(name: str, x: object) -> Tensor:
    """Raise ``TypeError`` unless ``x`` is a tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def require_ndim(name: str, x: Tensor, ndim: int, layout: str) -> None:
    """Raise unless ``x`` has exactly ``ndim`` axes; ``layout`` names them, e.g. ``"(B, T, d_model)"``."""
    require_tensor(name, x)
    if x.dim() != ndim:
        raise ValueError(f"{name} must have shape {layout} ({ndim} axes), got {tuple(x.shape)}")


def require_min_ndim(name: str, x: Tensor, ndim: int, layout: str) -> None:
    """Raise unless ``x`` has at least ``ndim`` axes."""
    require_tensor(name, x)
    if x.dim() < ndim:
        raise ValueError(f"{name} must have shape {layout} (at least {ndim} axes), got {tuple(x.shape)}")


def require_same_size(name_a: str, a: int, name_b: str, b: int, axis: str) -> None:
    """Raise ``"k has d_head=32 but q has d_head=64"`` style errors."""
    if a != b:
        raise ValueError(f"{name_a} has {axis}={a} but {name_b} has {axis}={b}")


def require_float(name: str, x: Tensor) -> None:
    """Raise unless ``x`` holds floating-point numbers."""
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def require_same_device_dtype(names: tuple[str, ...], tensors: tuple[Tensor, ...]) -> None:
    """Raise if the tensors do not share one device and one dtype."""
    first_name, first = names[0], tensors[0]
    for name, t in zip(names[1:], tensors[1:]):
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}")
        if t.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but {first_name} has dtype {first.dtype}")


def require_positive_int(name: str, value: object) -> int:
    """Raise unless ``value`` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def broadcast_shape(name: str, shape: torch.Size, target: torch.Size, target_layout: str) -> None:
    """Raise unless ``shape`` broadcasts to ``target`` without changing it (sizes equal or 1, right-aligned)."""
    fits = len(shape) <= len(target) and all(
        s in (1, t) for s, t in zip(reversed(tuple(shape)), reversed(tuple(target)))
    )
    if not fits:
        raise ValueError(
            f"{name} of shape {tuple(shape)} does not broadcast to the scores' shape "
            f"{tuple(target)} {target_layout}"
        )
