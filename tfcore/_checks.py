"""Small input checks shared by every module: errors that name the argument and the axis.

Conventions: a tensor of the wrong kind (not a tensor, wrong dtype) raises ``TypeError``; a wrong
shape, size or value, and any bad scalar argument (an int, float or choice), raise ``ValueError``.
Every check reads shapes and Python numbers only, never tensor values, so none of them waits for
a GPU. The attention-mask rule lives in ``tfcore.masks.check_mask``.
"""

from __future__ import annotations

import math
from typing import Collection

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
        raise ValueError(f"{name} must have shape {layout} ({_axes(ndim)}), got {tuple(x.shape)}")


def require_min_ndim(name: str, x: Tensor, ndim: int, layout: str) -> None:
    """Raise unless ``x`` has at least ``ndim`` axes."""
    require_tensor(name, x)
    if x.dim() < ndim:
        raise ValueError(f"{name} must have shape {layout} (at least {_axes(ndim)}), got {tuple(x.shape)}")


def _axes(n: int) -> str:
    return "1 axis" if n == 1 else f"{n} axes"


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


def require_int(name: str, value: object, minimum: int | None = None) -> int:
    """Raise unless ``value`` is an int (not a bool) and, if given, at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def require_number(name: str, value: object, low: float | None = None, high: float | None = None,
                   low_open: bool = False, high_open: bool = False) -> float:
    """Raise unless ``value`` is a finite real number in the interval from ``low`` to ``high``.

    ``low_open``/``high_open`` exclude the bound itself: ``require_number("p", p, 0, 1, low_open=True)``
    accepts (0, 1]. NaN and +-inf are always refused; the message names the interval.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "-inf" if low is None else f"{low:g}"
        right = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{left}, {right}{')' if high_open or high is None else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


def require_positive_number(name: str, value: object) -> float:
    """Raise unless ``value`` is a finite number > 0 (a scale, a RoPE base, ...)."""
    return require_number(name, value, 0, None, low_open=True)


def require_choice(name: str, value: object, choices: Collection[str]) -> str:
    """Raise unless ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def require_integer_dtype(name: str, x: Tensor, what: str = "integers") -> None:
    """Raise unless ``x`` holds integers (bool does not count)."""
    require_tensor(name, x)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold {what}, got dtype {x.dtype}")


def require_nonempty(name: str, x: Tensor, axes: str) -> None:
    """Raise if an axis of ``x`` has size 0; ``axes`` names them, e.g. ``"(B, T)"``."""
    if 0 not in x.shape:
        return
    names = [a.strip() for a in axes.strip("()").split(",")]
    for axis, size in zip(reversed(names), reversed(tuple(x.shape))):
        if size == 0:
            raise ValueError(f"{name} has {axis}=0: it needs at least one entry on that axis, got shape {tuple(x.shape)}")

