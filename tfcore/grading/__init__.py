"""Exercise checks: ``check(exercise_id, answer) -> Result``.

A learner calls ``check("attention.softmax", softmax)`` in a notebook and sees one line:

    ✓ attention.softmax: passed (9 cases)
    ✗ attention.sdpa: scores are too large by sqrt(d): did you forget the 1/sqrt(d_head) scale?
    ○ masks.causal: not attempted yet (causal_mask raised NotImplementedError)

A check never raises because of the answer: exceptions in the learner's code, wrong
shapes, dtypes, NaN, a list instead of a tensor all become a failed ``Result`` whose
message names the likely cause. Checks are deterministic (their inputs come from a
generator seeded afresh on every call) and fast.

Adding an exercise (see CONTRIBUTING.md, "Exercises and checks"): in
``tfcore/grading/lessonNN.py`` write

    @exercise("masks.causal", "causal mask (T, T), True where j <= i", lesson=LESSON)
    def _causal(answer, c: Checker):
        for t in (1, 2, 7):
            out = c.call(answer, t, case=f"T={t}")
            c.compare(out, causal_mask(t), f"T={t}", wrong=[("the mask is inverted", lambda: ~causal_mask(t))])

``c.call`` runs the learner's function (its exceptions become a failure, a
``NotImplementedError`` on the first call becomes "not attempted"), ``c.compare``
compares with the reference and, on a mismatch, tries each wrong variant to name the
mistake; ``c.fail(message)`` fails directly and ``c.note(message)`` adds a remark to a pass.

Inline, ``check`` is the learner's feedback only. ``python -m tfcore grade`` decides grades in its
own process: in the kernel it starts (``TFCORE_GRADING=1``), ``check`` just records the answer,
and the grader runs the same check function with the answer as a ``remote.Proxy`` and a
``Checker`` seeded from a secret seed (see ``tfcore/grading/remote.py`` and CONTRIBUTING.md,
"Checks that work through the grader"). A check therefore touches the answer only through
the ``Checker`` (``c.call``, ``c.share``, ``c.monitor``, ``c.module_types``, ...), and judges
results with ``c.compare`` / ``c.number`` / ``c.boolean``.
"""

from __future__ import annotations

import contextlib
import difflib
import html
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

__all__ = [
    "EXERCISES",
    "LESSONS",
    "Checker",
    "Exercise",
    "Result",
    "check",
    "exercise",
    "exercise_info",
    "exercises_for_lesson",
    "lesson_key",
    "predict_choice",
    "predict_integer",
    "predict_number",
    "predictions_for_lesson",
    "PREDICTIONS",
]

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
STATUSES = (PASSED, FAILED, NOT_ATTEMPTED)
SYMBOLS = {PASSED: "✓", FAILED: "✗", NOT_ATTEMPTED: "○"}
GRADING_ENV = "TFCORE_GRADING"  # set to "1" in the grader's kernel: check() records the answer only

# The ten lessons: the two-digit key is what counts (a notebook ``NN_anything.ipynb`` is lesson NN).
LESSONS = {
    "01": "01_attention",
    "02": "02_masks",
    "03": "03_heads",
    "04": "04_mlp",
    "05": "05_norms",
    "06": "06_architectures",
    "07": "07_positions",
    "08": "08_complexity",
    "09": "09_training",
    "10": "10_diagnostics",
}


# ----------------------------------------------------------------------------- results


@dataclass
class Result:
    """The outcome of one check. ``status`` is "passed", "failed" or "not attempted"."""

    exercise_id: str
    status: str
    message: str
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        self.passed = self.status == PASSED

    def __str__(self) -> str:
        return f"{SYMBOLS[self.status]} {self.exercise_id}: {self.message}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour, background = {
            PASSED: ("#2e7d32", "#e8f5e9"),
            FAILED: ("#c62828", "#ffebee"),
            NOT_ATTEMPTED: ("#757575", "#f5f5f5"),
        }[self.status]
        return (
            f'<div class="tfcore-result" style="border-left: 4px solid {colour}; background: {background}; '
            f'padding: 4px 10px; font-family: monospace">'
            f'<span style="color: {colour}; font-weight: bold">{SYMBOLS[self.status]} '
            f"{html.escape(self.exercise_id)}</span>: {html.escape(self.message)}</div>"
        )

    def to_dict(self) -> dict[str, str]:
        """{"exercise_id", "status", "message"}: what the grader reads."""
        return {"exercise_id": self.exercise_id, "status": self.status, "message": self.message}


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Exercise:
    """A registered exercise: its ID, one-line description, lesson notebook and check function.

    kind: "exercise" (a function or value written in the exercise notebook) or "prediction"
    (a "predict, then run" answer in the lesson notebook, see ``tfcore/grading/predictions.py``).
    """

    exercise_id: str
    description: str
    lesson: str  # notebook stem, e.g. "01_attention"
    check: Callable[[Any, "Checker"], None]
    kind: str = "exercise"


_REGISTRY: dict[str, Exercise] = {}
EXERCISES: dict[str, str] = {}  # exercise ID -> one-line description, every registered exercise (not predictions)
PREDICTIONS: dict[str, str] = {}  # prediction ID -> its question


def lesson_key(name: str) -> str | None:
    """"01_attention", "01_attention.ipynb", "path/01_x.ipynb" or "1" -> "01"; None without a number."""
    stem = os.path.basename(str(name))
    m = re.match(r"(\d{1,2})(?:_|\.|$)", stem)
    return f"{int(m.group(1)):02d}" if m else None


def _register(item: Exercise) -> None:
    if lesson_key(item.lesson) is None:
        raise ValueError(f"lesson must start with its two-digit number, e.g. '01_attention', got {item.lesson!r}")
    if item.exercise_id in _REGISTRY:
        raise ValueError(f"exercise {item.exercise_id!r} is registered twice")
    _REGISTRY[item.exercise_id] = item
    (PREDICTIONS if item.kind == "prediction" else EXERCISES)[item.exercise_id] = item.description


def exercise(exercise_id: str, description: str, lesson: str) -> Callable:
    """Register a check function ``f(answer, c: Checker)`` under ``exercise_id``.

    lesson: the lesson notebook's name, e.g. ``"01_attention"`` (its ``NN_`` prefix is the key
    the grader and ``progress`` use).
    """
    if lesson_key(lesson) is None:
        raise ValueError(f"lesson must start with its two-digit number, e.g. '01_attention', got {lesson!r}")

    def register(f: Callable) -> Callable:
        _register(Exercise(exercise_id, description, lesson, f))
        return f

    return register


def exercises_for_lesson(lesson: str, kind: str | None = "exercise") -> list[str]:
    """The IDs of a lesson (``"01"``, ``"01_attention"`` or a notebook path), in registration order.

    kind: "exercise" (the default: what the exercise notebook holds), "prediction" (what the lesson
    notebook holds) or None (both).
    """
    key = lesson_key(lesson)
    return [e.exercise_id for e in _REGISTRY.values()
            if lesson_key(e.lesson) == key and (kind is None or e.kind == kind)]


def predictions_for_lesson(lesson: str) -> list[str]:
    """The prediction IDs of a lesson, in registration order."""
    return exercises_for_lesson(lesson, kind="prediction")


def exercise_info(exercise_id: str) -> Exercise:
    """The registered ``Exercise`` (raises KeyError for an unknown ID)."""
    return _REGISTRY[exercise_id]


# ----------------------------------------------------------------------------- checking


class CheckFailed(Exception):
    """Raised inside a check to fail it with a message."""


class NotAttempted(Exception):
    """Raised inside a check when the answer is still the stub."""


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _clean(text: str, limit: int = 300) -> str:
    """One line, no memory addresses, at most ``limit`` characters: messages must be deterministic."""
    text = _ADDRESS.sub("", " ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shape(x: Any) -> tuple:
    return tuple(x.shape)


def _fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _type_name(x: Any) -> str:
    """What a learner calls the type of ``x`` ("torch.Tensor", "NumPy array", "dict", a kernel object's class)."""
    if remote.is_proxy(x):
        return remote.proxy_type_name(x)
    if isinstance(x, torch.Tensor):
        return "torch.Tensor"
    if isinstance(x, np.ndarray):
        return "NumPy array"
    return type(x).__name__


def _is_callable(x: Any) -> bool:
    return remote.proxy_callable(x) if remote.is_proxy(x) else callable(x)


def _callable_name(fn: Any) -> str:
    if remote.is_proxy(fn):
        return remote.proxy_name(fn) or remote.proxy_type_name(fn)
    return getattr(fn, "__name__", None) or type(fn).__name__


class Checker:
    """What a check function receives besides the answer: runs, compares, fails, notes.

    ``c.gen`` is a ``torch.Generator`` seeded identically on every call; ``c.randn`` and
    ``c.rand`` draw from it, so a check sees the same inputs every time. In the grader the seed
    is secret and ``session`` (a ``remote.Session``) is the kernel that holds the answer.
    """

    def __init__(self, exercise_id: str, seed: int = 0, session: "remote.Session | None" = None) -> None:
        self.exercise_id = exercise_id
        self.cases = 0
        self.notes: list[str] = []
        self.gen = torch.Generator().manual_seed(seed)
        self.session = session
        self._calls = 0
        self._monitor: tuple | None = None
        self.name = "your function"
        self.summary: str | None = None  # a pass message of the check's own (predictions), instead of "passed (N cases)"

    # --- inputs
    def randn(self, *shape: int, scale: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal values (times ``scale``) from the check's own generator."""
        return (torch.randn(*shape, generator=self.gen, dtype=torch.float64) * scale).to(dtype)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform [0, 1) values from the check's own generator."""
        return torch.rand(*shape, generator=self.gen, dtype=torch.float64).to(dtype)

    # --- outcomes
    def fail(self, message: str) -> None:
        """Fail the check now with ``message``."""
        raise CheckFailed(message)

    def note(self, message: str) -> None:
        """A remark shown with a pass (e.g. an accepted convention that differs from tfcore's)."""
        if message not in self.notes:
            self.notes.append(message)

    # --- running the learner's code
    def call(self, fn: Any, *args: Any, case: str, hint: str | None = None, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` with the learner's errors turned into a failure that names ``case``.

        A ``NotImplementedError`` on the first call means "not attempted"; ``hint`` is added to
        the message when the call raises. The inputs are passed as they are (views stay views)
        and must be unchanged afterwards. ``fn`` is the answer, or an object (an attribute, an
        item) obtained from an earlier result; in the grader it runs in the kernel.
        """
        if not _is_callable(fn):
            self.fail(f"expected a function, got {_type_name(fn)}: pass the function itself, e.g. check(ID, my_function)")
        self.name = _callable_name(fn)
        first = self._calls == 0
        self._calls += 1
        if remote.is_proxy(fn):
            return self._call_remote(fn, args, kwargs, case, hint, first)
        snapshots = [remote.snapshot(a) for a in (*args, *kwargs.values())]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with self._monitor[2] if self._monitor is not None else contextlib.nullcontext():
                    out = fn(*args, **kwargs)
        except NotImplementedError as e:
            self._raised("NotImplementedError", _clean(e), True, first, case, hint)
        except (Exception, SystemExit) as e:  # the learner's bug, reported, never raised
            self._raised(type(e).__name__, _clean(e), False, first, case, hint)
        for (name, value), snap in zip(
            [(f"argument {i + 1}", a) for i, a in enumerate(args)] + [(k, v) for k, v in kwargs.items()], snapshots
        ):
            if snap is not None and not remote.unchanged(value, snap):
                self._changed(name, case)
        return out

    def given_code_ran(self) -> None:
        """The calls so far ran code the lesson gives (e.g. the constructor of a class whose methods are the
        exercise): the next call counts as the first, so a ``NotImplementedError`` there means "not attempted"."""
        self._calls = 0

    def _raised(self, ename: str, message: str, not_implemented: bool, first: bool, case: str,
                hint: str | None) -> None:
        if not_implemented:
            if first:
                raise NotAttempted(f"not attempted yet ({self.name} raised NotImplementedError)")
            self.fail(f"{self.name} raised NotImplementedError on {case}: {message or 'no message'}")
        text = f"{self.name} raised {ename} on {case}: {message.rstrip('.')}"
        self.fail(text + (f". Hint: {hint}" if hint else ""))

    def _changed(self, name: str, case: str) -> None:
        self.fail(f"{self.name} changed its input ({name}) in place on {case}: work on a copy "
                  "(x = x - m, not x -= m)")

    def _call_remote(self, fn: Any, args: tuple, kwargs: dict, case: str, hint: str | None, first: bool) -> Any:
        monitor = None if self._monitor is None else self._monitor[:2]
        try:
            reply = self.session.call(fn, args, kwargs, monitor)
        except remote.KernelUnavailable as e:
            if e.kind == "timeout":
                self.fail(f"{self.name} did not return on {case}: the kernel {e.reason}")
            self.fail(f"the kernel {e.reason} while {self.name} ran on {case}")
        if "raised" in reply:
            r = reply["raised"]
            if r["interrupted"]:
                self.fail(f"{self.name} was interrupted on {case} (time limit)")
            self._raised(r["type"], _clean(r["message"]), r["not_implemented"], first, case, hint)
        if self._monitor is not None and "monitor" in reply:
            vars(self._monitor[2]).update({str(k): v for k, v in reply["monitor"].items()})
        if reply["changed"]:
            self._changed(reply["changed"][0], case)
        return reply["value"]

    # --- objects the learner's code receives or returns
    def share(self, module: torch.nn.Module, builder: Any, *args: Any, **kwargs: Any) -> torch.nn.Module:
        """Let the learner's code hold ``module`` itself (to register hooks, deepcopy or train it).

        In the grader the kernel gets its own copy, built as ``builder(*args, **kwargs)`` (a
        module-level ``tfcore`` function or class; plain-data arguments) and loaded with
        ``module``'s state dict, training mode and frozen parameters. Hooks or class changes
        must come from the builder. Returns ``module``. A module that is not shared reaches
        the learner as a function whose calls the grader answers (enough to call it); a
        ``tfcore.model.Transformer`` without hooks is shared automatically (its config, state
        dict, swapped importable submodule classes and plain public attributes).
        """
        if self.session is not None:
            self.session.share(module, builder, args, kwargs)
        return module

    @contextlib.contextmanager
    def monitor(self, cls: type, *args: Any) -> Iterator[Any]:
        """Watch the learner's calls inside the block with ``cls(*args)``, a context manager (e.g. a
        ``TorchFunctionMode``) with a ``report() -> dict`` of plain data; yields an object whose
        attributes are that report after each call. In the grader the monitor runs in the kernel.
        """
        watcher = cls(*args)
        if self.session is None:
            self._monitor = (None, args, watcher)
            try:
                yield watcher
            finally:
                self._monitor = None
        else:
            self._monitor = (remote.path_of(cls), args, watcher)
            try:
                yield watcher
            finally:
                self._monitor = None

    def _inspect(self, obj: Any, what: str) -> Any:
        try:
            if self.session is None:
                return remote.INSPECTIONS[what](obj)
            return self.session.inspect(obj, what)
        except remote.KernelUnavailable as e:
            self.fail(f"the kernel {e.reason} while the check inspected {self.name}'s model")
        except TypeError:  # the same message in both modes
            self.fail(f"expected a model (an nn.Module), got {_type_name(obj)}")

    def module_types(self, obj: Any) -> list[tuple[str, str]]:
        """(name, "module.QualName") of ``obj`` and every submodule (e.g. to refuse nn.MultiheadAttention)."""
        return self._inspect(obj, "module_types")

    def parameter_names(self, obj: Any) -> list[str]:
        """The names of the parameters of ``obj`` (an nn.Module), without its buffers."""
        return self._inspect(obj, "parameter_names")

    def hook_count(self, obj: Any) -> int:
        """How many forward (pre-)hooks are registered on ``obj`` (an nn.Module) and its submodules."""
        return self._inspect(obj, "hook_count")

    def state_dict(self, obj: Any) -> dict[str, torch.Tensor]:
        """A copy of the state dict of ``obj`` as the learner's code left it."""
        return self._inspect(obj, "state_dict")

    def has_grad(self, out: Any) -> bool:
        """True if ``out`` is a tensor attached to an autograd graph (``loss.backward()`` would work)."""
        if not isinstance(out, torch.Tensor):
            return False
        return out.grad_fn is not None or remote.had_grad_fn(out)

    def type_name(self, x: Any) -> str:
        """The type of ``x`` as a learner names it: "torch.Tensor", "NumPy array", "dict", a class name."""
        return _type_name(x)

    # --- comparing
    def tensor(self, out: Any, case: str, kind: str = "tensor") -> torch.Tensor:
        """Fail unless ``out`` is a torch tensor (``kind="tensor"``) or a NumPy array (``"ndarray"``); return it as a tensor."""
        want = torch.Tensor if kind == "tensor" else np.ndarray
        if isinstance(out, want):
            return out.detach().cpu() if kind == "tensor" else torch.from_numpy(np.array(out))
        label = "a torch.Tensor" if kind == "tensor" else "a NumPy array"
        if out is None:
            self.fail(f"{self.name} returned None on {case}: is the return statement missing?")
        if isinstance(out, tuple) and out and all(isinstance(o, (torch.Tensor, np.ndarray)) for o in out):
            self.fail(f"{self.name} returned a tuple of {len(out)} arrays on {case}: return only {label}")
        hint = {"tensor": " (e.g. torch.as_tensor(...))", "ndarray": " (e.g. tensor.numpy())"}[kind]
        self.fail(f"{self.name} returned a {_type_name(out)} on {case}: return {label}{hint}")
        raise AssertionError  # unreachable

    def boolean(self, out: Any, case: str, meaning: str) -> bool:
        """A Python bool, NumPy bool or one-element bool tensor as ``bool``; anything else fails.

        ``meaning`` completes the message "return ...", e.g. "True (f mixes tokens) or False (it does not)".
        """
        if isinstance(out, torch.Tensor) and out.dtype == torch.bool and out.numel() == 1:
            return bool(out.item())
        if isinstance(out, (bool, np.bool_)):
            return bool(out)
        if out is None:
            self.fail(f"{self.name} returned None on {case}: is the return statement missing?")
        if isinstance(out, torch.Tensor) and out.dtype == torch.bool:
            self.fail(f"{self.name} returned a bool tensor of shape {tuple(out.shape)} on {case}: return one True or "
                      "False (e.g. with .any())")
        self.fail(f"{self.name} returned a {_type_name(out)} on {case}: return {meaning}")
        raise AssertionError  # unreachable

    def text(self, out: Any, case: str, meaning: str) -> str:
        """A str result as ``str``; anything else fails. ``meaning`` completes "return ...",
        e.g. "one of the strings ['mask direction', 'softmax axis', 'missing scale']"."""
        if isinstance(out, str):
            return out
        if out is None:
            self.fail(f"{self.name} returned None on {case}: is the return statement missing? Return {meaning}")
        self.fail(f"{self.name} returned a {_type_name(out)} on {case}: return {meaning}")
        raise AssertionError  # unreachable

    def compare(
        self,
        out: Any,
        ref: torch.Tensor | np.ndarray,
        case: str,
        *,
        atol: float = 1e-5,
        rtol: float = 1e-4,
        dtype: str = "same",
        kind: str = "tensor",
        wrong: Iterable[tuple[str, Callable[[], Any]]] = (),
        shape_hints: dict[tuple, str] | None = None,
        nonfinite: str | None = None,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Compare the learner's ``out`` with the reference ``ref`` on one case; fail with the best message.

        dtype: "same" (must equal ref's dtype), "float" (any floating dtype) or "any".
        kind: "tensor" or "ndarray", what the learner must return.
        wrong: ``(hint, variant)`` pairs; ``variant()`` computes a plausible wrong answer on the same
        inputs, and if ``out`` matches it (the closest one, if several do), ``hint`` is the message (checked before the generic
        shape, NaN and value messages, so a hint can name a wrong shape too). A variant may
        return ``(value, rows)`` to be compared only where ``rows`` is True.
        shape_hints: ``{shape: hint}`` for wrong shapes that no variant reproduces.
        nonfinite: the message when ``out`` has NaN/inf where ``ref`` is finite.
        rows: optional bool tensor broadcastable to ``out``: compare only where True.
        Returns ``out`` as a tensor.
        """
        self.cases += 1
        t = self.tensor(out, case, kind)
        ref_t = torch.from_numpy(np.array(ref)) if isinstance(ref, np.ndarray) else ref
        wrong = list(wrong)

        def match_wrong() -> None:
            matches = []  # (distance, order, hint): the closest variant names the mistake, the first on a tie
            for order, (hint, variant) in enumerate(wrong):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        v = variant()
                    v_rows = rows if rows is not None and _shape(v) == _shape(ref_t) else None
                    if isinstance(v, tuple):  # (value, rows): compare only where rows is True
                        v, v_rows = v
                    v = torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else torch.as_tensor(v)
                except Exception:
                    continue
                if _close(t, v, atol, rtol, v_rows):
                    matches.append((_distance(t, v, v_rows), order, hint))
            if matches:
                self.fail(min(matches)[2])

        if _shape(t) != _shape(ref_t):
            match_wrong()
            hint = (shape_hints or {}).get(_shape(t))
            self.fail(f"wrong shape on {case}: expected {_fmt_shape(ref_t.shape)}, got {_fmt_shape(t.shape)}"
                      + (f": {hint}" if hint else ""))
        if dtype == "same" and t.dtype != ref_t.dtype:
            if ref_t.dtype == torch.bool:
                if not t.is_complex() and torch.equal(t.to(torch.bool), ref_t):
                    self.fail(f"right pattern, wrong dtype on {case}: expected torch.bool, got {t.dtype} "
                              "(compare positions with <=, or call .bool())")
                self.fail(f"wrong dtype on {case}: expected torch.bool (True = may attend), got {t.dtype}")
            self.fail(f"wrong dtype on {case}: expected {ref_t.dtype} (the input's dtype), got {t.dtype}")
        if dtype == "float" and not (t.is_floating_point()):
            self.fail(f"wrong dtype on {case}: expected a floating-point tensor, got {t.dtype}")
        if ref_t.dtype == torch.bool or not ref_t.is_floating_point():
            if _close(t, ref_t, 0.0, 0.0, rows):
                return t
            match_wrong()
            diff = t.detach().to(ref_t.dtype) != ref_t
            if rows is not None:
                diff = diff & rows
            first = tuple(int(i) for i in diff.nonzero()[0].tolist()) if diff.any() else ()
            self.fail(f"wrong values on {case}: {int(diff.sum())} of {diff.numel()} entries differ, "
                      f"the first at index {_fmt_shape(first)}")
        bad = ~torch.isfinite(t.detach()) & torch.isfinite(ref_t.detach())
        if rows is not None:
            bad = bad & rows
        if bad.any():
            match_wrong()
            where = tuple(int(i) for i in bad.nonzero()[0].tolist())
            self.fail(nonfinite or f"NaN/inf on {case} at index {_fmt_shape(where)} where the answer is finite")
        if _close(t, ref_t, atol, rtol, rows):
            return t
        match_wrong()
        err = (t.detach().double() - ref_t.detach().double()).abs()
        err = torch.nan_to_num(err, nan=math.inf)
        if rows is not None:
            err = torch.where(rows, err, torch.zeros_like(err))
        where = tuple(int(i) for i in np.unravel_index(int(err.argmax()), tuple(err.shape)))
        self.fail(f"wrong values on {case}: max abs error {float(err.max()):.3g} at index {_fmt_shape(where)}")
        raise AssertionError  # unreachable

    def number(
        self,
        out: Any,
        ref: int | float,
        case: str,
        *,
        integer: bool = False,
        rtol: float = 1e-6,
        atol: float = 0.0,
        wrong: Iterable[tuple[str, Callable[[], Any]]] = (),
    ) -> float:
        """Compare a scalar answer. ``integer``: must be an int (Python or NumPy), compared exactly.

        A 0-d tensor or a NumPy scalar counts as a number when ``integer`` is False.
        """
        self.cases += 1
        if out is None:
            self.fail(f"{self.name} returned None on {case}: is the return statement missing?")
        if isinstance(out, (bool, np.bool_)):
            self.fail(f"{self.name} returned a bool on {case}: return a number")
        raw = out
        if isinstance(out, torch.Tensor):
            if out.numel() != 1:
                self.fail(f"{self.name} returned a tensor of shape {_fmt_shape(out.shape)} on {case}: return one number")
            out = out.detach().reshape(()).item()
        if isinstance(out, (bool, np.bool_)):
            self.fail(f"{self.name} returned a bool on {case}: return a number")
        if not isinstance(out, (int, float, np.integer, np.floating)):
            self.fail(f"{self.name} returned a {_type_name(raw)} on {case}: return a number")
        value = int(out) if isinstance(out, (int, np.integer)) else float(out)
        if isinstance(value, float) and math.isnan(value):
            self.fail(f"{self.name} returned NaN on {case}")
        ok = value == ref if integer else abs(value - ref) <= atol + rtol * abs(ref)
        if ok and integer and isinstance(raw, torch.Tensor):
            self.fail(f"{self.name} returned a tensor on {case}: return a Python int (.item())")
        if ok and integer and not isinstance(raw, (int, np.integer)):
            self.fail(f"{self.name} returned the float {value!r} on {case}: return an int (use // or int(...))")
        if ok:
            return value
        matches = []  # (distance, order, hint): the closest variant names the mistake, the first on a tie
        for order, (hint, variant) in enumerate(wrong):
            try:
                v = variant()
            except Exception:
                continue
            if abs(value - v) <= atol + rtol * abs(v) if not integer else abs(value - v) <= 1e-9 * abs(v):
                matches.append((abs(value - v), order, hint))
        if matches:
            self.fail(min(matches)[2])
        if integer and not isinstance(raw, (int, np.integer)):
            self.fail(f"{self.name} returned a {_type_name(raw)} on {case}: return an int")
        self.fail(f"wrong value on {case}: expected {ref!r}, got {value!r}")
        raise AssertionError  # unreachable


def _distance(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor | None = None) -> float:
    """Largest |a - b| (only where ``rows`` is True), for tensors ``_close`` found alike; NaN in both counts as 0."""
    a, b = a.detach(), b.detach()
    if a.dtype == torch.bool or b.dtype == torch.bool or not a.is_floating_point() or not b.is_floating_point():
        return 0.0
    diff = torch.nan_to_num((a.double() - b.double()).abs(), nan=0.0)
    if rows is not None:
        diff = torch.where(rows, diff, torch.zeros_like(diff))
    return float(diff.max()) if diff.numel() else 0.0


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float, rows: torch.Tensor | None = None) -> bool:
    """Same shape and allclose (NaN equal to NaN), only where ``rows`` is True if given."""
    if _shape(a) != _shape(b):
        return False
    a, b = a.detach(), b.detach()
    if a.dtype == torch.bool or b.dtype == torch.bool or not a.is_floating_point():
        same = a.to(b.dtype) == b
        return bool(same.all() if rows is None else (same | ~rows).all())
    a, b = a.double(), b.double()
    near = torch.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
    return bool(near.all() if rows is None else (near | ~rows).all())


def check(exercise_id: str, answer: Any) -> Result:
    """Check ``answer`` (usually the learner's function) for the exercise ``exercise_id``.

    Returns a ``Result``; shows as one line in a notebook. Never raises. In the grader's kernel
    (``TFCORE_GRADING=1``) it only records the answer: the grader checks it in its own process.
    """
    if os.environ.get(GRADING_ENV) == "1":
        remote.record(exercise_id, answer)
        return Result(str(exercise_id), NOT_ATTEMPTED, "answer recorded for the grader")
    return run_check(exercise_id, answer)


def unknown_exercise(exercise_id: Any) -> Result:
    """The failed result for an ID that is not registered, with the closest registered ID."""
    close = difflib.get_close_matches(str(exercise_id), list(_REGISTRY), n=1)
    hint = f": did you mean {close[0]!r}?" if close else ""
    return Result(str(exercise_id), FAILED, _clean(f"unknown exercise ID {exercise_id!r}{hint}"))


def run_check(exercise_id: str, answer: Any, seed: int = 0, session: "remote.Session | None" = None) -> Result:
    """Run the registered check of ``exercise_id`` on ``answer``; never raises.

    seed: the Checker's generator seed (0 inline; secret in the grader). session: the kernel
    holding the answer when ``answer`` is a ``remote.Proxy`` (the grader).
    """
    if exercise_id not in _REGISTRY:
        return unknown_exercise(exercise_id)
    c = Checker(exercise_id, seed=seed, session=session)
    threads = torch.get_num_threads()
    try:
        # One thread: the inputs are tiny (threads only add overhead on a busy machine), and
        # reductions then sum in one fixed order, so messages are the same on every machine.
        torch.set_num_threads(1)
        _REGISTRY[exercise_id].check(answer, c)
    except NotAttempted as e:
        result = Result(exercise_id, NOT_ATTEMPTED, str(e))
    except CheckFailed as e:
        result = Result(exercise_id, FAILED, _clean(e, limit=1000 if c.summary is not None or
                                                        _REGISTRY[exercise_id].kind == "prediction" else 500))
    except remote.KernelUnavailable as e:
        result = Result(exercise_id, FAILED, _clean(f"the kernel {e.reason} while the check ran", limit=500))
    except Exception as e:  # a strange answer the check did not foresee: still a message, never a traceback
        result = Result(exercise_id, FAILED,
                        f"the check could not evaluate {c.name}'s answer: {type(e).__name__}: {_clean(e)}")
    else:
        cases = f"{c.cases} case{'s' if c.cases != 1 else ''}"
        notes = "".join(f"; note: {n}" for n in c.notes)
        result = Result(exercise_id, PASSED, _clean(c.summary, limit=1000) if c.summary else f"passed ({cases}){notes}")
    finally:
        torch.set_num_threads(threads)
    return result


# The lesson modules register their checks on import (they import the names above).
from tfcore.grading import remote  # noqa: E402  (before the checks: Checker uses it)
from tfcore.grading.predictions import predict_choice, predict_integer, predict_number  # noqa: E402,F401
from tfcore.grading import (  # noqa: E402,F401
    lesson01,
    lesson02,
    lesson03,
    lesson04,
    lesson05,
    lesson06,
    lesson07,
    lesson08,
    lesson09,
    capstone,  # lesson 09's capstone: capstone.*
    lesson10,
)
from tfcore.grading import _name_errors  # noqa: E402,F401  (in IPython: a check run too early names the cell to run)
