"""tfcore.grading: the check framework, and the harness for the tests-for-tests.

Every registered exercise has an entry in a ``CASES`` table in
``tests/test_grading_lessonNN.py``: its solution must pass, a stub raising
NotImplementedError must read "not attempted", each wrong answer must fail with the
expected hint, and each correct answer in another style must pass.
``test_every_exercise_has_tests`` fails when an exercise has no entry.
"""
from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

import tfcore.grading as grading
from tfcore.grading import EXERCISES, Result, check

HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- the harness


@dataclass
class Entry:
    """Tests-for-tests of one exercise.

    solution: a correct answer. styles: {name: another correct answer, written differently}.
    wrong: {name: (wrong answer, a substring the failure message must contain)}.
    notes: substrings the solution's pass message must contain (e.g. a note).
    """

    solution: Callable
    styles: dict[str, Any] = field(default_factory=dict)
    wrong: dict[str, tuple[Any, str]] = field(default_factory=dict)
    style_notes: dict[str, str] = field(default_factory=dict)


def case_params(cases: dict[str, Entry]) -> list:
    """pytest parameters (exercise_id, kind, name) for every solution, stub, style and wrong answer."""
    params = []
    for exercise_id, entry in cases.items():
        params.append(pytest.param(exercise_id, "solution", "", id=f"{exercise_id}-solution"))
        params.append(pytest.param(exercise_id, "stub", "", id=f"{exercise_id}-stub"))
        params += [pytest.param(exercise_id, "style", n, id=f"{exercise_id}-style-{n}") for n in entry.styles]
        params += [pytest.param(exercise_id, "wrong", n, id=f"{exercise_id}-wrong-{n}") for n in entry.wrong]
    return params


def _stub(*args, **kwargs):
    raise NotImplementedError("replace this line with your code")


def run_case(cases: dict[str, Entry], exercise_id: str, kind: str, name: str) -> Result:
    """Run one tests-for-tests case and assert its expected outcome."""
    entry = cases[exercise_id]
    if kind == "solution":
        result = check(exercise_id, entry.solution)
        assert result.status == "passed", str(result)
    elif kind == "stub":
        result = check(exercise_id, _stub)
        assert result.status == "not attempted", str(result)
        assert "not attempted" in result.message
    elif kind == "style":
        result = check(exercise_id, entry.styles[name])
        assert result.status == "passed", str(result)
        if name in entry.style_notes:
            assert entry.style_notes[name] in result.message, str(result)
    else:
        answer, hint = entry.wrong[name]
        result = check(exercise_id, answer)
        assert result.status == "failed", f"{name} passed: {result}"
        assert hint in result.message, f"{name}: expected {hint!r} in the message, got: {result}"
    assert result.exercise_id == exercise_id
    return result


def all_cases() -> dict[str, Entry]:
    """The union of the CASES tables of tests/test_grading_lesson*.py."""
    merged: dict[str, Entry] = {}
    for path in sorted(HERE.glob("test_grading_lesson*.py")):
        module = importlib.import_module(path.stem)
        for exercise_id, entry in module.CASES.items():
            assert exercise_id not in merged, f"{exercise_id} has entries in two files"
            merged[exercise_id] = entry
    return merged


# ----------------------------------------------------------------------------- coverage of the tables


def test_every_exercise_has_tests():
    cases = all_cases()
    missing = sorted(set(EXERCISES) - set(cases))
    assert not missing, f"exercises without a tests-for-tests entry in tests/test_grading_lessonNN.py: {missing}"
    stale = sorted(set(cases) - set(EXERCISES))
    assert not stale, f"tests-for-tests entries for unregistered exercises: {stale}"
    for exercise_id, entry in cases.items():
        assert len(entry.wrong) >= 3, f"{exercise_id}: at least three wrong answers, got {len(entry.wrong)}"
        assert len(entry.styles) >= 1, f"{exercise_id}: at least one correct answer in another style"


CONTRACT_IDS = {
    "attention.softmax": "01", "attention.sdpa": "01", "masks.causal": "02", "masks.padding": "02",
    "heads.split": "03", "heads.merge": "03", "heads.repeat_kv": "03", "mlp.swiglu": "04",
    "norms.layer_norm": "05", "norms.rms_norm": "05", "positions.sinusoidal": "07", "positions.rope": "07",
    "complexity.kv_cache_bytes": "08", "complexity.attention_flops": "08", "training.lm_loss": "09",
    "diagnostics.attention_entropy": "10",
}


def test_contract_ids_are_registered_in_their_lessons():
    for exercise_id, lesson in CONTRACT_IDS.items():
        assert exercise_id in EXERCISES, exercise_id
        info = grading.exercise_info(exercise_id)
        assert grading.lesson_key(info.lesson) == lesson, (exercise_id, info.lesson)
        assert exercise_id in grading.exercises_for_lesson(lesson)
        module = importlib.import_module(f"tfcore.grading.lesson{lesson}")
        assert info.check.__module__ == module.__name__


def test_exercises_is_id_to_description():
    assert EXERCISES and all(isinstance(k, str) and isinstance(v, str) and v for k, v in EXERCISES.items())
    assert all(len(v.splitlines()) == 1 for v in EXERCISES.values())
    for exercise_id in EXERCISES:
        assert grading.lesson_key(grading.exercise_info(exercise_id).lesson) in grading.LESSONS


def test_lesson_key():
    assert grading.lesson_key("01_attention") == "01"
    assert grading.lesson_key("exercises/10_diagnostics.ipynb") == "10"
    assert grading.lesson_key("7") == "07"
    assert grading.lesson_key("attention.ipynb") is None


def test_registering_twice_or_without_lesson_number_fails():
    with pytest.raises(ValueError, match="twice"):
        grading.exercise("attention.softmax", "again", lesson="01_attention")(lambda a, c: None)
    with pytest.raises(ValueError, match="two-digit"):
        grading.exercise("x.y", "no lesson number", lesson="attention")


# ----------------------------------------------------------------------------- results and rendering


def test_result_rendering_is_short_and_deterministic():
    from tfcore.attention import softmax

    a, b = check("attention.softmax", softmax), check("attention.softmax", softmax)
    assert a == b and str(a) == repr(a) == str(b)
    assert str(a).startswith("✓ attention.softmax: passed (") and str(a).endswith(" cases)")
    assert a._repr_html_() == b._repr_html_()
    assert "0x" not in a._repr_html_() and "attention.softmax" in a._repr_html_()
    failed = Result("attention.sdpa", "failed", "scores <too> large")
    assert str(failed) == "✗ attention.sdpa: scores <too> large"
    assert "scores &lt;too&gt; large" in failed._repr_html_()
    assert not failed.passed and a.passed
    assert str(Result("masks.causal", "not attempted", "not attempted yet")).startswith("○ masks.causal")
    with pytest.raises(ValueError):
        Result("x", "maybe", "")


def test_unknown_exercise_is_a_failed_result_with_a_suggestion():
    result = check("attention.sofmax", lambda x: x)
    assert result.status == "failed" and "did you mean 'attention.softmax'" in result.message


def test_there_is_no_result_channel_a_notebook_could_write(tmp_path, monkeypatch):
    """The grader reads no result from the kernel (see tests/test_grading_remote.py): check() writes nothing."""
    from tfcore.attention import softmax

    monkeypatch.setenv("TFCORE_GRADE_LOG", str(tmp_path / "log.jsonl"))  # the old channel is gone
    assert check("attention.softmax", softmax).passed
    assert not (tmp_path / "log.jsonl").exists()
    assert not hasattr(grading, "LOG_ENV")


def test_check_keeps_thread_count_and_global_rng():
    from tfcore.attention import softmax

    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check("attention.softmax", softmax)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


# ----------------------------------------------------------------------------- robustness, every exercise


def _solutions() -> dict[str, Callable]:
    return {exercise_id: entry.solution for exercise_id, entry in all_cases().items()}


def _failed_without_exception(exercise_id: str, answer: Any, *substrings: str) -> Result:
    result = check(exercise_id, answer)  # never raises
    assert result.status == "failed", str(result)
    assert result.message and "\n" not in result.message
    for s in substrings:
        assert s in result.message, f"expected {s!r} in: {result}"
    return result


def _transform(solution: Callable, f: Callable[[Any], Any]) -> Callable:
    def answer(*args, **kwargs):
        return f(solution(*args, **kwargs))

    return answer


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_answers_that_raise_are_reported(exercise_id):
    def boom(*args, **kwargs):
        raise ValueError("boom at 0x7f00deadbeef")

    result = _failed_without_exception(exercise_id, boom, "ValueError", "boom")
    assert "0x7f" not in result.message  # addresses are removed: messages stay deterministic


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_strange_returns_are_reported(exercise_id):
    solution = _solutions()[exercise_id]
    _failed_without_exception(exercise_id, lambda *a, **k: None, "None")
    _failed_without_exception(exercise_id, lambda *a, **k: [1.0, 2.0], "list")
    _failed_without_exception(exercise_id, lambda *a, **k: "text", "str")
    _failed_without_exception(exercise_id, 42, "expected a function")
    _failed_without_exception(exercise_id, lambda: 0)  # wrong signature: TypeError, reported

    def nan_like(out):
        if isinstance(out, torch.Tensor):
            return torch.full_like(out, math.nan, dtype=torch.float32 if out.dtype == torch.bool else out.dtype)
        if isinstance(out, np.ndarray):
            return np.full_like(out, np.nan)
        return math.nan

    _failed_without_exception(exercise_id, _transform(solution, nan_like))

    def wrong_dtype(out):
        if isinstance(out, torch.Tensor):
            return out.float() if out.dtype == torch.bool else out.long()
        if isinstance(out, np.ndarray):
            return out.astype(np.int64)
        return float(out) + 0.5

    _failed_without_exception(exercise_id, _transform(solution, wrong_dtype))

    def wrong_shape(out):
        if isinstance(out, (torch.Tensor, np.ndarray)):
            return out[None]
        return [out]

    _failed_without_exception(exercise_id, _transform(solution, wrong_shape))


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_tensor_answers_instead_of_numbers_and_back(exercise_id):
    solution = _solutions()[exercise_id]

    def to_other(out):
        if isinstance(out, torch.Tensor):
            return out.detach().numpy() if out.dim() else [out.item()]
        if isinstance(out, np.ndarray):
            return torch.from_numpy(out)
        return out.encode() if isinstance(out, str) else str(out)  # a string answer comes back as bytes

    _failed_without_exception(exercise_id, _transform(solution, to_other))


def test_in_place_changes_of_the_input_are_reported():
    def softmax_in_place(x, dim=-1):
        x -= x.amax(dim=dim, keepdim=True)
        x.exp_()
        return x / x.sum(dim=dim, keepdim=True)

    _failed_without_exception("attention.softmax", softmax_in_place, "in place")


def test_not_implemented_after_a_first_success_is_a_failure():
    from tfcore.attention import softmax

    def partial(x, dim=-1):
        if x.dim() > 1:
            raise NotImplementedError("only vectors so far")
        return softmax(x, dim)

    _failed_without_exception("attention.softmax", partial, "NotImplementedError", "only vectors so far")


def test_a_bug_in_a_check_is_a_failed_result_not_a_traceback(monkeypatch):
    def broken_check(answer, c):
        raise KeyError("the check itself is broken")

    info = grading.exercise_info("masks.causal")
    monkeypatch.setitem(grading._REGISTRY, "masks.causal", grading.Exercise(
        info.exercise_id, info.description, info.lesson, broken_check))
    result = check("masks.causal", lambda t: t)
    assert result.status == "failed" and "could not evaluate" in result.message


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_checks_are_fast_and_deterministic(exercise_id):
    solution = _solutions()[exercise_id]
    check(exercise_id, solution)  # first call: imports and warm-up
    start = time.process_time()
    result = check(exercise_id, solution)
    assert time.process_time() - start < 0.5, f"{exercise_id} took too long"
    assert result.passed and str(result) == str(check(exercise_id, solution))
