"""tfcore.grade: `python -m tfcore grade` and `python -m tfcore progress`.

Notebooks are built with nbformat in tmp_path. Each real run starts a sandboxed kernel (a few
seconds on 2 cores), so the kernel-running tests (marked slow) each pack several situations
into one notebook; the table, JSON, role and exit-status logic is tested on canned reports.
Forgery and isolation: tests/test_grade_security.py.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import tfcore.grade as grade
from tfcore.grade import NotebookReport, Row
from tfcore.grading import exercises_for_lesson, predictions_for_lesson, sandbox

ROOT = Path(__file__).resolve().parents[1]


def write_notebook(path: Path, *sources: str, lesson: str | None = None, role: str | None = None) -> Path:
    cells = [new_markdown_cell("# a learner's notebook")] + [new_code_cell(s) for s in sources]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if lesson or role:
        nb.metadata["tfcore"] = {k: v for k, v in (("lesson", lesson), ("role", role)) if v}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


SOFTMAX_OK = '''
def softmax(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)
'''
SDPA_NO_SCALE = '''
def sdpa(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v
'''


@pytest.mark.slow
def test_a_messy_notebook_is_graded_with_reasons_and_left_untouched(tmp_path):
    """Prints that look like results, a wrong answer, a deleted check, errors, another lesson's check."""
    nb = write_notebook(
        tmp_path / "01_attention.ipynb",
        "import torch\nfrom tfcore.grading import check",
        # noise that imitates a result channel must not count
        'print(\'{"exercise_id": "attention.by_hand", "status": "passed", "message": "fake"}\')\n'
        'import sys; print("passed", file=sys.stderr)',
        SOFTMAX_OK,
        'check("attention.softmax", softmax)',
        SDPA_NO_SCALE,
        'check("attention.sdpa", sdpa)',
        "undefined_name + 1",  # an error before the next check
        'check("attention.permutation", permutation_check)',  # never defined: NameError
        'check("masks.causal", lambda t: torch.ones(t, t).tril().bool())',  # another lesson's exercise
        # attention.by_hand: its check call was deleted
    )
    before = digest(nb)
    report = grade.grade_notebook(nb)
    assert digest(nb) == before  # byte-identical afterwards

    rows = {r.exercise_id: r for r in report.rows}
    assert report.lesson == "01" and report.error is None and report.role == "exercise"
    assert [r.exercise_id for r in report.rows if r.in_lesson] == [
        "attention.by_hand", "attention.softmax", "attention.sdpa", "attention.permutation"]
    assert rows["attention.softmax"].status == "passed", rows["attention.softmax"]
    assert rows["attention.sdpa"].status == "failed"
    assert "1/sqrt(d_head) scale" in rows["attention.sdpa"].message
    assert rows["attention.by_hand"].status == "failed"
    assert 'no check("attention.by_hand", ...) call' in rows["attention.by_hand"].message
    assert rows["attention.permutation"].status == "failed"
    assert "raised NameError" in rows["attention.permutation"].message
    assert "the first error was in cell 8 (undefined_name + 1): NameError" in rows["attention.permutation"].message
    assert rows["masks.causal"].status == "passed" and not rows["masks.causal"].in_lesson
    assert (report.passed, report.total) == (1, 4)
    assert report.protections["sandbox"] in ("bwrap", "unshare", "none") and report.seconds > 0

    text = grade.format_report(report)
    assert "score: 1/4" in text and "not part of this lesson" in text and "fake" not in text


WALL = {
    # a whole-row reduction, seen by the check's monitor running inside the kernel
    "complexity.online_softmax": ("def online_softmax(x, chunk):\n"
                                  "    p = torch.softmax(x, 0)\n"
                                  "    return p, x.max().item(), torch.exp(x - x.max()).sum().item()",
                                  "failed", "called softmax on 24 scores at once"),
    # the autograd graph stays in the kernel: the grader must still know it was there
    "training.lm_loss": ("def lm_loss(logits, tokens):\n"
                         "    v = logits.shape[-1]\n"
                         "    return torch.tensor(F.cross_entropy(logits[:, :-1].reshape(-1, v), "
                         "tokens[:, 1:].reshape(-1)).item())",
                         "failed", "detached from the graph"),
    # hooks left on the check's model, which the kernel rebuilt for real
    "diagnostics.residual_norms": ("def residual_norms(model, tokens):\n"
                                   "    ratios = []\n"
                                   "    blocks = list(model.encoder or []) + list(model.decoder or [])\n"
                                   "    for b in blocks:\n"
                                   "        b.register_forward_hook(lambda m, a, o: ratios.append("
                                   "(o - a[0]).norm() / a[0].norm()))\n"
                                   "    with torch.no_grad():\n"
                                   "        model(tokens)\n"
                                   "    return torch.stack(ratios[-len(blocks):])",
                                   "failed", "hooks are still registered"),
    # differentiating through the check's function: a real module in the kernel
    "mlp.token_independence": ("def mixes(f, x):\n"
                               "    jac = torch.autograd.functional.jacobian(f, x)\n"
                               "    t = x.shape[1]\n"
                               "    off = ~torch.eye(t, dtype=torch.bool)[None, :, None, None, :, None]\n"
                               "    return bool((jac.abs() * off).amax() > 0)",
                               "passed", "passed (11 cases)"),
    # the check's model_fn: the learner's calls go back to the grader (callbacks)
    "masks.leakage": ("def leaks(model_fn, tokens, vocab_size):\n"
                      "    base = model_fn(tokens)\n"
                      "    for j in range(tokens.shape[1]):\n"
                      "        t2 = tokens.clone(); t2[:, j] = (t2[:, j] + 1) % vocab_size\n"
                      "        if not torch.equal(model_fn(t2)[:, :j], base[:, :j]):\n"
                      "            return True\n"
                      "    return False",
                      "passed", "passed (8 cases)"),
}


@pytest.mark.slow
def test_checks_that_reach_inside_the_kernel_work_through_the_wall(tmp_path):
    """Monitors, autograd flags, hooks on shared models, callbacks: a notebook without a lesson number
    is scored on every check it calls."""
    cells = ["import torch\nimport torch.nn.functional as F\nfrom tfcore.grading import check"]
    for exercise_id, (source, _, _) in WALL.items():
        name = source.split("(")[0].removeprefix("def ")
        cells += [source, f'check("{exercise_id}", {name})']
    report = grade.grade_notebook(write_notebook(tmp_path / "work.ipynb", *cells))
    rows = {r.exercise_id: r for r in report.rows}
    assert set(rows) == set(WALL)
    for exercise_id, (_, status, message) in WALL.items():
        assert rows[exercise_id].status == status and message in rows[exercise_id].message, rows[exercise_id]


@pytest.mark.slow
def test_endless_and_greedy_cells_are_stopped_and_a_dead_kernel_is_reported(tmp_path):
    nb = write_notebook(
        tmp_path / "work" / "01_attention.ipynb",
        "import torch\nfrom tfcore.grading import check",
        SOFTMAX_OK,
        "while True:\n    pass",  # interrupted after --timeout
        'check("attention.softmax", softmax)',  # the run goes on after the interrupted cell
        "hog = []\nwhile True:\n    hog.append(bytearray(10 ** 8))",  # stopped by the memory limit
        "del hog",
        'check("attention.permutation", lambda attn, x, perm: 0.0)',  # graded while the kernel lives
        "import os; os._exit(1)",
        'check("attention.sdpa", None)',
    )
    report = grade.grade_notebook(nb, timeout=8, memory_mb=2500)
    rows = {r.exercise_id: r for r in report.rows}
    assert rows["attention.softmax"].status == "passed"
    assert rows["attention.permutation"].status == "failed" and "wrong value" in rows["attention.permutation"].message
    # a failure after an interrupted cell says so (a training cell cut short explains a loss too high)
    assert "(note: cell 4 (while True:) did not finish within the time limit of 8 s per cell)" \
        in rows["attention.permutation"].message
    assert "note:" not in rows["attention.softmax"].message  # a pass needs no excuse
    assert "was not executed" in rows["attention.sdpa"].message and "kernel died" in rows["attention.sdpa"].message
    assert (report.passed, report.total) == (1, 4)


@pytest.mark.slow
def test_the_whole_notebook_has_a_time_limit_and_a_stuck_kernel_is_killed(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox.Kernel, "GRACE", 1.0)
    # No torch: every cell but the slow ones ends at once.
    slow = write_notebook(tmp_path / "a" / "01_attention.ipynb", "import time",
                          *["time.sleep(1.5)"] * 6, 'check("attention.softmax", None)')
    report = grade.grade_notebook(slow, timeout=5, notebook_timeout=5)
    assert report.seconds < 12
    message = {r.exercise_id: r for r in report.rows}["attention.softmax"].message
    assert "was not executed (the kernel ran out of its time limit for the whole notebook (5 s))" in message
    stuck = write_notebook(tmp_path / "b" / "01_attention.ipynb",
                           "import signal", "signal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
                           'check("attention.softmax", None)')
    report = grade.grade_notebook(stuck, timeout=2)
    assert report.seconds < 12
    assert "stopped responding" in {r.exercise_id: r for r in report.rows}["attention.softmax"].message


def test_unreadable_notebook_and_missing_kernel_give_messages_not_tracebacks(tmp_path, capsys):
    broken = tmp_path / "bob" / "01_attention.ipynb"
    broken.parent.mkdir()
    broken.write_text('{"cells": [', encoding="utf-8")
    report = grade.grade_notebook(broken)
    assert report.error.startswith("not a readable notebook")
    assert report.total == len(exercises_for_lesson("01")) and report.passed == 0
    assert all("could not be read" in r.message for r in report.rows)

    fine = write_notebook(tmp_path / "02_masks.ipynb", "print(1)")
    before = digest(fine)
    assert grade.main([str(fine), "--kernel", "no-such-kernel"]) == 1
    out = capsys.readouterr().out
    n_masks = len(exercises_for_lesson("02"))
    assert "the kernel 'no-such-kernel' is not installed" in out and f"score: 0/{n_masks}" in out
    assert "Traceback" not in out and out.startswith("== protections: sandbox ")
    assert digest(fine) == before


def test_lesson_from_metadata_when_the_name_has_no_number(tmp_path):
    nb = write_notebook(tmp_path / "my_work.ipynb", "x = 1", lesson="02_masks")
    report = grade.grade_notebook(nb, kernel="no-such-kernel")
    assert report.lesson == "02"
    assert [r.exercise_id for r in report.rows] == exercises_for_lesson("02")
    assert report.rows[:2] and [r.exercise_id for r in report.rows[:2]] == ["masks.causal", "masks.padding"]


def test_a_notebooks_role_comes_from_metadata_its_folder_or_its_checks(tmp_path):
    def role(path, *sources, **meta):
        nb = nbformat.read(str(write_notebook(tmp_path / path, *sources, **meta)), as_version=4)
        return grade.notebook_role(nb, tmp_path / path)

    pid = predictions_for_lesson("01")[0]
    assert role("x/01_a.ipynb", role="lesson") == "lesson"
    assert role("notebooks/01_a.ipynb") == "lesson"
    assert role("exercises/01_a.ipynb") == "exercise"
    assert role("solutions/01_a.ipynb") == "solution"
    assert role("alice/01_a.ipynb", f'check("{pid}", 1.0)') == "lesson"  # predictions only
    assert role("bob/01_a.ipynb", f'check("{pid}", 1.0)', 'check("attention.softmax", f)') == "exercise"
    assert role("carol/01_a.ipynb", "x = 1") == "exercise"
    assert grade.expected_ids("01", "lesson") == predictions_for_lesson("01")
    assert grade.expected_ids("01", "solution") == exercises_for_lesson("01")


def test_a_lesson_notebook_is_scored_on_its_predictions_without_running(tmp_path, monkeypatch):
    monkeypatch.setattr(grade, "_run", lambda *a, **k: pytest.fail("a lesson notebook must not be run"))
    entropy, rows_sum = "attention.predict_unscaled_entropy", "attention.predict_rows_sum"
    nb = write_notebook(tmp_path / "notebooks" / "01_attention.ipynb",
                        "import torch\nraise RuntimeError('never runs')",
                        f'prediction = 0.2  # my guess\ncheck("{entropy}", prediction)',
                        f'check("{rows_sum}", "C")',
                        'check("attention.softmax", softmax)')  # an exercise: not this notebook's business
    report = grade.grade_notebook(nb)
    rows = {r.exercise_id: r for r in report.rows}
    assert report.role == "lesson" and set(rows) == set(predictions_for_lesson("01")) and report.protections is None
    assert all(r.status == "failed" for pid, r in rows.items() if pid not in (entropy, rows_sum))  # no cell
    assert rows[entropy].status == "passed" and "Why:" in rows[entropy].message
    assert rows[rows_sum].status == "failed" and "the answer is (A)" in rows[rows_sum].message
    assert "predictions" in grade.format_report(report)


def _canned(path, student, lesson, statuses, error=None, role="exercise"):
    ids = {"01": ["attention.by_hand", "attention.softmax"], "02": ["masks.causal", "masks.padding"],
           "01p": ["attention.predict_a", "attention.predict_b"]}[lesson + ("p" if role == "lesson" else "")]
    return NotebookReport(str(path), student, lesson,
                          [Row(i, s, "passed (3 cases)" if s == "passed" else "a hint") for i, s in zip(ids, statuses)],
                          error, role=role, seconds=1.0)


def test_folders_are_graded_per_student_with_a_summary_and_json(tmp_path, monkeypatch, capsys):
    root = tmp_path / "class"
    for name in ("alice/01_attention.ipynb", "alice/02_masks.ipynb", "bob/01_attention.ipynb",
                 "bob/lessons/01_attention.ipynb", "bob/.ipynb_checkpoints/01_attention-checkpoint.ipynb"):
        write_notebook(root / name, "print(1)")
    canned = {
        ("alice", "01_attention.ipynb"): ["passed", "passed"],
        ("alice", "02_masks.ipynb"): ["passed", "failed"],
        ("bob", "01_attention.ipynb"): ["not attempted", "failed"],
    }
    seen = []

    def fake_grade(path, timeout=60, kernel="python3", student=None, notebook_timeout=600, **kwargs):
        seen.append((student, Path(path).relative_to(root).as_posix(), timeout, notebook_timeout))
        name = Path(path).name
        if Path(path).parent.name == "lessons":  # bob's lesson notebook: predictions
            return _canned(path, student, "01", ["passed", "failed"], role="lesson")
        return _canned(path, student, name[:2], canned[(student, name)])

    monkeypatch.setattr(grade, "grade_notebook", fake_grade)
    out_json = tmp_path / "grades" / "out.json"
    assert grade.main([str(root), "--json", str(out_json), "--timeout", "7", "--notebook-timeout", "30"]) == 1
    assert sorted(seen) == [("alice", "alice/01_attention.ipynb", 7, 30), ("alice", "alice/02_masks.ipynb", 7, 30),
                            ("bob", "bob/01_attention.ipynb", 7, 30),
                            ("bob", "bob/lessons/01_attention.ipynb", 7, 30)]  # checkpoints skipped
    out = capsys.readouterr().out
    summary = out[out.index("== summary"):].splitlines()
    assert summary[1].split() == ["student", "01", "02", "total"]
    assert summary[2].split() == ["alice", "2/2", "1/2", "3/4"]
    assert summary[3].split() == ["bob", "1/4", "-", "1/4"]  # exercises and predictions of lesson 01 together
    data = json.loads(out_json.read_text(encoding="utf-8"))
    assert data["all_passed"] is False
    assert data["students"] == {"alice": {"passed": 3, "total": 4}, "bob": {"passed": 1, "total": 4}}
    assert data["protections"]["sandbox"] in ("bwrap", "unshare", "none") and data["seconds"] >= 0
    first = data["notebooks"][0]
    assert first["score"] == {"passed": 2, "total": 2} and first["lesson_name"] == "01_attention"
    assert first["rows"][0] == {"exercise_id": "attention.by_hand", "status": "passed",
                                "message": "passed (3 cases)", "in_lesson": True}
    assert first["role"] == "exercise" and first["seconds"] == 1.0 and "protections" in first


def test_exit_status_is_zero_only_when_everything_passed(tmp_path, monkeypatch, capsys):
    nb = write_notebook(tmp_path / "01_attention.ipynb", "print(1)")
    monkeypatch.setattr(grade, "grade_notebook",
                        lambda path, student=None, **kw: _canned(path, student, "01", ["passed", "passed"]))
    assert grade.main([str(nb)]) == 0
    monkeypatch.setattr(grade, "grade_notebook",
                        lambda path, student=None, **kw:
                        _canned(path, student, "01", ["passed", "passed"], error="the kernel died"))
    assert grade.main([str(nb)]) == 1
    assert grade.main([str(tmp_path / "missing.ipynb")]) == 2
    assert grade.main([str(tmp_path / "empty_dir_that_does_not_exist")]) == 2
    (tmp_path / "empty").mkdir()
    assert grade.main([str(tmp_path / "empty")]) == 2
    capsys.readouterr()


def test_progress_lists_every_lesson_with_its_predictions(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "exercises"
    write_notebook(folder / "01_attention.ipynb", "print(1)")
    lesson = write_notebook(tmp_path / "notebooks" / "01_attention.ipynb",
                            'check("attention.predict_rows_sum", "A")')
    real = grade.grade_notebook

    def fake_grade(path, student=None, **kw):
        if Path(path) == lesson:
            return real(path, student=student, **kw)  # read, never run
        return _canned(path, student, "01", ["passed", "not attempted"])

    monkeypatch.setattr(grade, "grade_notebook", fake_grade)
    assert grade.progress_main([str(folder)]) == 0
    out = capsys.readouterr().out
    n = len(predictions_for_lesson("01"))
    assert f"lesson 01_attention: 2/{2 + n}" in out and str(lesson) in out
    assert "✓ attention.by_hand" in out and "○ attention.softmax" in out and "✓ attention.predict_rows_sum" in out
    assert "✗ attention.predict_unscaled_entropy  the prediction was not found" in out
    n_masks = len(exercises_for_lesson("02")) + len(predictions_for_lesson("02"))
    assert f"lesson 02_masks: 0/{n_masks}  (no notebook 02_*.ipynb in {folder}" in out
    assert out.strip().splitlines()[-1].startswith("total: 2/")
    assert grade.progress_main([str(tmp_path / "nowhere")]) == 2


def test_cli_entry_points_are_wired():
    from tfcore.__main__ import main

    assert main(["grade", "/definitely/not/here.ipynb"]) == 2
    assert main(["progress", "/definitely/not/here"]) == 2


def _merged(folder: Path, out: Path) -> Path:
    """Every code cell of every notebook in ``folder``, in one notebook without a lesson number."""
    cells = []
    for path in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        cells += [c.source for c in nb.cells if c.cell_type == "code"]
    return write_notebook(out, *cells)


@pytest.mark.slow
def test_end_to_end_every_solution_passes_and_every_fresh_exercise_is_not_attempted(tmp_path, capsys):
    """All ten solution notebooks in one kernel (alice), all ten exercise notebooks in another (bob)."""
    from tfcore.grading import EXERCISES

    _merged(ROOT / "solutions", tmp_path / "class" / "alice" / "all.ipynb")
    _merged(ROOT / "exercises", tmp_path / "class" / "bob" / "all.ipynb")
    out_json = tmp_path / "out.json"
    assert grade.main([str(tmp_path / "class"), "--json", str(out_json)]) == 1
    capsys.readouterr()
    data = json.loads(out_json.read_text(encoding="utf-8"))
    alice, bob = data["notebooks"]
    assert {r["exercise_id"] for r in alice["rows"]} == set(EXERCISES)
    assert [r for r in alice["rows"] if r["status"] != "passed"] == []
    assert {r["exercise_id"] for r in bob["rows"]} == set(EXERCISES)
    assert all(r["status"] == "not attempted" and "not attempted yet" in r["message"] for r in bob["rows"])
