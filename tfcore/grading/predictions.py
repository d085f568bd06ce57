"""Graded "predict, then run" questions: register them, check them, read them from a notebook.

A prediction is asked in the LESSON notebook just before the cell that reveals the answer.
Its cell holds the learner's answer, saved unanswered:

    # Predict: ... (the question, in a markdown cell above)
    prediction = None  # your prediction: a number
    check("attention.predict_unscaled_entropy", prediction)

``check`` gives the feedback at once: "not answered yet" (with a nudge) while the value is
None, and for any answer the expected value and the reasoning. Register one in
``tfcore/grading/lessonNN.py`` with one of

    predict_number(ID, question, lesson=LESSON, answer=2.08, rel=0.25, why=..., hint=...,
                   mistakes={3.47: "that is ln 32, ..."}, at_least=(0, "an entropy is never negative"))
    predict_integer(ID, question, lesson=LESSON, answer=4096, why=..., hint=..., mistakes={2048: "..."})
    predict_choice(ID, question, lesson=LESSON, options={"A": ..., "B": ...}, answer="B", why=..., hint=...)

The grader does not run a lesson notebook: it reads each prediction from the notebook's text
(``read_predictions``), so the answer must be typed in the cell, as a number, a short formula
of numbers (``1/3``, ``2**20``, ``math.log(65)``) or a choice's label, assigned to a name
that the ``check`` call then passes (or written in the call itself).
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


def _grading():
    import tfcore.grading as grading

    return grading


@dataclass
class _Value:
    """The right answer, computed once on first use (``answer`` may be a number or a function)."""

    answer: Any

    def get(self) -> Any:
        if callable(self.answer):
            self.answer = self.answer()
        return self.answer


def _show(x: float) -> str:
    """A number as the feedback shows it: 4 significant digits, integers (and numbers from 1000 on) in full."""
    if (float(x).is_integer() or 1000 <= abs(x)) and abs(x) < 1e15:
        return f"{round(x):,}".replace(",", " ")
    return f"{x:.4g}"


def _number(value: Any) -> float | None:
    """A finite real number from an int, float, NumPy scalar, one-element tensor, or a str that reads as a
    number or a formula of numbers ("36", "1/3", "2**20"); None for anything else."""
    import torch

    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype == torch.bool \
            and not value.is_complex():
        value = value.item()
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        value = value.item()
    if isinstance(value, str) and len(value) <= 80:
        try:
            value = literal(ast.parse(value.strip().replace("_", ""), mode="eval").body)
        except (SyntaxError, Unreadable):
            return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def _not_answered(what: str, hint: str, got: Any = None) -> str:
    if got is None:
        head = "not answered yet: replace None with your prediction"
    elif isinstance(got, (float, np.floating)) and not math.isfinite(got):
        head = f"not answered yet: {got!r} is not a finite number; write your prediction"
    else:
        head = f"not answered yet: {got!r} is not {what}; write your prediction"
    return f"{head} ({what}) and run the cell again. Think: {hint}"


def _mistake(x: float, mistakes: dict[float, str], near: Callable[[float, float], bool]) -> str:
    """": <what that answer means>" for the known mistake nearest ``x`` that ``x`` matches, else ""."""
    hits = sorted((builtin_abs(x - m), text) for m, text in mistakes.items() if near(x, m))
    return f": {hits[0][1]}" if hits else ""


def predict_number(prediction_id: str, question: str, *, lesson: str, answer: float | Callable[[], float],
                   rel: float | None = None, abs: float | None = None, why: str, hint: str, unit: str = "",
                   mistakes: dict[float, str] | None = None, at_least: tuple[float, str] | None = None,
                   fraction_of_percent: bool = False) -> None:
    """Register a prediction whose answer is a number, right within a relative or absolute band.

    answer: the value (or a function computing it, called once). rel: the relative tolerance
    (0.25 = within 25 %); abs: the absolute one (give one of the two; default rel=0.1). why:
    the reasoning, shown with every answer. hint: a nudge shown while unanswered (no spoiler).
    unit: appended to numbers in the feedback (e.g. " nats", " bytes"). mistakes: {value: what
    that answer means}, named when a wrong answer lies within the band around it. at_least:
    (bound, why): answers below the bound fail with ``why``, even inside the band (a negative
    entropy). fraction_of_percent: the answer is a percentage, and the same value written as a
    fraction (0.45 for 45 %) is right too.
    """
    if rel is not None and abs is not None:
        raise ValueError("give rel or abs, not both")
    rel = 0.1 if rel is None and abs is None else rel
    value = _Value(answer)
    band = f"within {rel:.0%}" if rel is not None else f"within ±{_show(abs)}{unit}"

    def check(given: Any, c) -> None:
        if given is None:
            raise _grading().NotAttempted(_not_answered("a number", hint))
        x = _number(given)
        if x is None:
            raise _grading().NotAttempted(_not_answered("a number", hint, given))
        ref = float(value.get())

        def near(a: float, b: float) -> bool:
            return builtin_abs(a - b) <= (rel * builtin_abs(b) if rel is not None else abs)

        c.cases += 1
        said = f"you predicted {_show(x)}{unit}, the value is {_show(ref)}{unit}"
        if at_least is not None and x < at_least[0]:
            c.fail(f"{said}: {at_least[1]}. Why: {why}")
        if near(x, ref):
            c.summary = f"right: {said} ({band}). Why: {why}"
        elif fraction_of_percent and 0 < x <= 1 and near(100 * x, ref):
            c.summary = f"right: you predicted {_show(x)} as a fraction, {_show(100 * x)}{unit}; the value is " \
                        f"{_show(ref)}{unit} ({band}). Why: {why}"
        else:
            c.fail(f"{said}{_mistake(x, mistakes or {}, near)} (a prediction {band} passes). Why: {why}")

    _register(prediction_id, question, lesson, check)


builtin_abs = abs


def predict_integer(prediction_id: str, question: str, *, lesson: str, answer: int | Callable[[], int],
                    why: str, hint: str, unit: str = "", mistakes: dict[int, str] | None = None) -> None:
    """Register a prediction whose answer is a whole number, compared exactly (2**20 and 1e6 are accepted forms).

    mistakes: {value: what that answer means}, named when the answer is that value.
    """
    value = _Value(answer)

    def check(given: Any, c) -> None:
        if given is None:
            raise _grading().NotAttempted(_not_answered("a whole number", hint))
        x = _number(given)
        if x is None or not x.is_integer():
            raise _grading().NotAttempted(_not_answered("a whole number", hint, given))
        ref = int(value.get())
        c.cases += 1
        said = f"you predicted {_show(x)}{unit}, the value is {_show(ref)}{unit}"
        if int(x) == ref:
            c.summary = f"right: {said}. Why: {why}"
        else:
            c.fail(f"{said}{_mistake(x, mistakes or {}, lambda a, b: a == b)}. Why: {why}")

    _register(prediction_id, question, lesson, check)


_WHITESPACE = {" ": "a space", "\n": "a newline", "\t": "a tab"}  # a character answered as itself


def _plain(text: str) -> str:
    """An option's text compared loosely: case, spacing, an article in front, closing punctuation."""
    text = " ".join(text.split()).lower().rstrip(".!")
    return re.sub(r"^(a|an|the) ", "", text)


def _label(value: Any, options: dict[str, str]) -> str | None:
    """The option label ``value`` names: a label ("b", "(B)", "B."), an option's text, or both ("B) text",
    "(b): text"); None otherwise, and None when a label and a text name different options."""
    if not isinstance(value, str):
        return None
    value = _WHITESPACE.get(value, value)
    text = " ".join(value.split()).lower()
    bare = text.strip("().: ")
    by_text = {_plain(option): label for label, option in options.items()}
    for label in options:
        if bare == label.lower():
            return label
    if _plain(value) in by_text:
        return by_text[_plain(value)]
    both = re.fullmatch(r"\(?([a-z])\s*[).:\-]\s*(.+)", text) or re.fullmatch(r"\(([a-z])\)\s*(.+)", text)
    if both:
        label = next((k for k in options if k.lower() == both.group(1)), None)
        if label is not None and by_text.get(_plain(both.group(2))) == label:
            return label
    return None


def predict_choice(prediction_id: str, question: str, *, lesson: str, options: dict[str, str], answer: str,
                   why: str, hint: str) -> None:
    """Register a multiple-choice prediction: ``options`` {label: text}, ``answer`` the right label.

    The learner writes the label ("B", case and brackets ignored) or the option's text.
    """
    if answer not in options or len(options) < 2:
        raise ValueError(f"answer must be one of the labels {list(options)}, and there must be two options or more")
    labels = ", ".join(repr(k) for k in options)

    def check(given: Any, c) -> None:
        if given is None:
            raise _grading().NotAttempted(_not_answered(f"one of the labels {labels}", hint))
        label = _label(given, options)
        if label is None:
            raise _grading().NotAttempted(_not_answered(f"one of the labels {labels}", hint, given))
        c.cases += 1
        right = f"({answer}) {options[answer]}"
        if label == answer:
            c.summary = f"right: {right}. Why: {why}"
        else:
            c.fail(f"you chose ({label}) {options[label]}; the answer is {right}. Why: {why}")

    _register(prediction_id, question, lesson, check)


def _register(prediction_id: str, question: str, lesson: str, check: Callable) -> None:
    grading = _grading()
    if not re.fullmatch(r"[a-z_]+\.predict_[a-z0-9_]+", prediction_id):
        raise ValueError(f"a prediction ID reads '<lesson prefix>.predict_<name>', got {prediction_id!r}")
    grading._register(grading.Exercise(prediction_id, " ".join(question.split()), lesson, check, kind="prediction"))


# ----------------------------------------------------------------------------- reading a notebook's text


class Unreadable(ValueError):
    """A prediction that is not typed in the cell (a variable computed elsewhere, a call, ...)."""


_FUNCTIONS = {"log": math.log, "log2": math.log2, "log10": math.log10, "exp": math.exp, "sqrt": math.sqrt,
              "lgamma": math.lgamma, "abs": builtin_abs, "float": float, "int": int, "round": round,
              "tensor": float, "float64": float, "float32": float, "int64": int}  # torch.tensor(36), np.float64(..)
_CONSTANTS = {"pi": math.pi, "e": math.e}
_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
              ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b}


def literal(node: ast.AST) -> Any:
    """The value of a typed answer: a number, str or None, or a short formula of numbers.

    Allowed: + - * / // % **, and log, log2, log10, exp, sqrt, lgamma, abs, float, int, round,
    pi, e (bare or as ``math.`` / ``np.``), and a number wrapped in ``torch.tensor(...)``,
    ``np.float64(...)`` and the like (read as the number). Nothing runs but this arithmetic.
    Raises Unreadable otherwise.
    """
    if isinstance(node, ast.Constant) and (node.value is None or type(node.value) in (int, float, str, bool)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        x = _arith(literal(node.operand))
        return -x if isinstance(node.op, ast.USub) else x
    if isinstance(node, ast.BinOp):
        a, b = _arith(literal(node.left)), _arith(literal(node.right))
        try:
            if isinstance(node.op, ast.Pow):
                if builtin_abs(b) > 256 or builtin_abs(a) > 1e6:
                    raise Unreadable("a power too large")
                return a ** b
            if type(node.op) in _OPERATORS:
                return _OPERATORS[type(node.op)](a, b)
        except (ArithmeticError, ValueError) as e:
            raise Unreadable(f"the formula cannot be computed ({type(e).__name__})") from None
    name = _name(node.func) if isinstance(node, ast.Call) else None
    if name in _FUNCTIONS and not node.keywords and len(node.args) == 1:
        try:
            return _FUNCTIONS[name](_arith(literal(node.args[0])))
        except (ArithmeticError, ValueError) as e:
            raise Unreadable(f"the formula cannot be computed ({type(e).__name__})") from None
    if _name(node) in _CONSTANTS:
        return _CONSTANTS[_name(node)]
    raise Unreadable("not a number or a formula of numbers")


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    modules = ("math", "np", "numpy", "torch")
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
        return node.attr
    return None


def _arith(x: Any) -> float | int:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise Unreadable("a formula may hold numbers only")
    return x


def _parse(source: str) -> ast.Module | None:
    """A cell's code without IPython magics and shell escapes; None if it is not Python."""
    if not isinstance(source, str):
        return None
    lines = ["pass" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a null byte; RecursionError:
        return None  # a formula of thousands of terms (the parser builds its tree recursively)


@dataclass
class Reading:
    """A prediction read from a notebook: ``value`` if readable, else ``error`` (why not); ``cell`` its index."""

    cell: int
    value: Any = None
    error: str | None = None
    source: str = ""


def read_predictions(cells: list, ids: set[str]) -> dict[str, Reading]:
    """Read ``check("ID", answer)`` for every ID in ``ids`` from code cells (nbformat cells), without running them.

    The answer is the call's second argument: typed there, or a name assigned at the top
    level of this cell or an earlier one (the last assignment before the call counts). The
    last call of an ID counts.
    """
    found: dict[str, Reading] = {}
    names: dict[str, ast.AST] = {}
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        tree = _parse(source)
        if tree is None:
            continue
        for statement in tree.body:
            for node in ast.walk(statement):
                if not (isinstance(node, ast.Call) and _callee(node.func) == "check" and node.args
                        and isinstance(node.args[0], ast.Constant) and node.args[0].value in ids):
                    continue
                answer = node.args[1] if len(node.args) > 1 else next(
                    (k.value for k in node.keywords if k.arg == "answer"), None)
                reading = Reading(index)
                if isinstance(answer, ast.Name) and answer.id in names:
                    answer = names[answer.id]
                if answer is None:
                    reading.error = "the check call passes no answer"
                else:
                    reading.source = (ast.get_source_segment(source, answer) or "")[:80]
                    try:
                        reading.value = literal(answer)
                    except Unreadable as e:
                        reading.error = str(e)
                    except RecursionError:
                        reading.error = "a formula nested too deeply"
                found[node.args[0].value] = reading
            targets = statement.targets if isinstance(statement, ast.Assign) else \
                [statement.target] if isinstance(statement, ast.AnnAssign) and statement.value is not None else []
            for target in targets:
                if isinstance(target, ast.Name):
                    names[target.id] = statement.value
    return found


def _callee(func: ast.AST) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None
