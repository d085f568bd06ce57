"""tfcore.grade: `python -m tfcore grade` and `python -m tfcore progress`.

Notebooks are built with nbformat in tmp_path. Each real run starts a kernel (a few seconds
on 2 cores), so the kernel-running tests each pack several situations into one notebook;
the table, JSON and exit-status logic is tested on canned reports.
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
from tfcore.grading import exercises_for_lesson

ROOT = Path(__file__).resolve().parents[1]


def write_notebook(path: Path, *sources: str, lesson: str | None = None) -> Path:
    cells = [new_markdown_cell("# a learner's notebook")] + [new_code_cell(s) for s in sources]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if lesson:
        nb.metadata["tfcore"] = {"lesson": lesson}
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
        # noise that imitates the channel must not count
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
    assert report.lesson == "01" and report.error is None
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

    text = grade.format_report(report)
    assert "score: 1/4" in text and "not part of this lesson" in text and "fake" not in text


LOG_A_PASS = """with open(os.environ["TFCORE_GRADE_LOG"], "a") as f:
    f.write(json.dumps({"exercise_id": "attention.by_hand", "status": "passed", "message": "ok"}) + "\\n")"""


@pytest.mark.slow
def test_endless_cells_are_interrupted_and_a_dead_kernel_is_reported(tmp_path):
    # No torch here, so that every cell but the endless ones ends well within the 2 s limit.
    nb = write_notebook(
        tmp_path / "work" / "01_attention.ipynb",
        "import json, os, time",
        "time.sleep(1000)",
        LOG_A_PASS,  # runs after the interrupted cell: the run goes on
        'while True:\n    pass\ncheck("attention.softmax", None)',
        "os._exit(1)",
        'check("attention.sdpa", None)',
    )
    report = grade.grade_notebook(nb, timeout=2)
    rows = {r.exercise_id: r for r in report.rows}
    assert rows["attention.by_hand"].status == "passed"
    assert "did not finish within the time limit" in rows["attention.softmax"].message
    assert "was not executed" in rows["attention.sdpa"].message
    assert "kernel died" in rows["attention.sdpa"].message
    assert (report.passed, report.total) == (1, 4)


def test_unreadable_notebook_and_missing_kernel_give_messages_not_tracebacks(tmp_path, capsys):
    broken = tmp_path / "bob" / "01_attention.ipynb"
    broken.parent.mkdir()
    broken.write_text('{"cells": [', encoding="utf-8")
    report = grade.grade_notebook(broken)
    assert report.error.startswith("not a readable notebook")
    assert report.total == 4 and report.passed == 0
    assert all("could not be read" in r.message for r in report.rows)

    fine = write_notebook(tmp_path / "02_masks.ipynb", "print(1)")
    before = digest(fine)
    assert grade.main([str(fine), "--kernel", "no-such-kernel"]) == 1
    out = capsys.readouterr().out
    n_masks = len(exercises_for_lesson("02"))
    assert "the kernel 'no-such-kernel' is not installed" in out and f"score: 0/{n_masks}" in out
    assert "Traceback" not in out
    assert digest(fine) == before


def test_lesson_from_metadata_when_the_name_has_no_number(tmp_path):
    nb = write_notebook(tmp_path / "my_work.ipynb", "x = 1", lesson="02_masks")
    report = grade.grade_notebook(nb, kernel="no-such-kernel")
    assert report.lesson == "02"
    assert [r.exercise_id for r in report.rows] == exercises_for_lesson("02")
    assert report.rows[:2] and [r.exercise_id for r in report.rows[:2]] == ["masks.causal", "masks.padding"]


def _canned(path, student, lesson, statuses, error=None):
    ids = {"01": ["attention.by_hand", "attention.softmax"], "02": ["masks.causal", "masks.padding"]}[lesson]
    return NotebookReport(str(path), student, lesson,
                          [Row(i, s, "passed (3 cases)" if s == "passed" else "a hint") for i, s in zip(ids, statuses)],
                          error)


def test_folders_are_graded_per_student_with_a_summary_and_json(tmp_path, monkeypatch, capsys):
    root = tmp_path / "class"
    for name in ("alice/01_attention.ipynb", "alice/02_masks.ipynb", "bob/01_attention.ipynb",
                 "bob/.ipynb_checkpoints/01_attention-checkpoint.ipynb"):
        write_notebook(root / name, "print(1)")
    canned = {
        ("alice", "01_attention.ipynb"): ["passed", "passed"],
        ("alice", "02_masks.ipynb"): ["passed", "failed"],
        ("bob", "01_attention.ipynb"): ["not attempted", "failed"],
    }
    seen = []

    def fake_grade(path, timeout=60, kernel="python3", student=None):
        seen.append((student, Path(path).name, timeout))
        name = Path(path).name
        return _canned(path, student, name[:2], canned[(student, name)])

    monkeypatch.setattr(grade, "grade_notebook", fake_grade)
    out_json = tmp_path / "grades" / "out.json"
    assert grade.main([str(root), "--json", str(out_json), "--timeout", "7"]) == 1
    assert sorted(seen) == [("alice", "01_attention.ipynb", 7), ("alice", "02_masks.ipynb", 7),
                            ("bob", "01_attention.ipynb", 7)]  # checkpoints skipped
    out = capsys.readouterr().out
    summary = out[out.index("== summary"):].splitlines()
    assert summary[1].split() == ["student", "01", "02", "total"]
    assert summary[2].split() == ["alice", "2/2", "1/2", "3/4"]
    assert summary[3].split() == ["bob", "0/2", "-", "0/2"]
    data = json.loads(out_json.read_text(encoding="utf-8"))
    assert data["all_passed"] is False
    assert data["students"] == {"alice": {"passed": 3, "total": 4}, "bob": {"passed": 0, "total": 2}}
    first = data["notebooks"][0]
    assert first["score"] == {"passed": 2, "total": 2} and first["lesson_name"] == "01_attention"
    assert first["rows"][0] == {"exercise_id": "attention.by_hand", "status": "passed",
                                "message": "passed (3 cases)", "in_lesson": True}


def test_exit_status_is_zero_only_when_everything_passed(tmp_path, monkeypatch, capsys):
    nb = write_notebook(tmp_path / "01_attention.ipynb", "print(1)")
    monkeypatch.setattr(grade, "grade_notebook",
                        lambda path, timeout=60, kernel="python3", student=None:
                        _canned(path, student, "01", ["passed", "passed"]))
    assert grade.main([str(nb)]) == 0
    monkeypatch.setattr(grade, "grade_notebook",
                        lambda path, timeout=60, kernel="python3", student=None:
                        _canned(path, student, "01", ["passed", "passed"], error="the kernel died"))
    assert grade.main([str(nb)]) == 1
    assert grade.main([str(tmp_path / "missing.ipynb")]) == 2
    assert grade.main([str(tmp_path / "empty_dir_that_does_not_exist")]) == 2
    (tmp_path / "empty").mkdir()
    assert grade.main([str(tmp_path / "empty")]) == 2
    capsys.readouterr()


def test_progress_lists_every_lesson(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "exercises"
    write_notebook(folder / "01_attention.ipynb", "print(1)")
    monkeypatch.setattr(grade, "grade_notebook",
                        lambda path, timeout=60, kernel="python3", student=None:
                        _canned(path, student, "01", ["passed", "not attempted"]))
    assert grade.progress_main([str(folder)]) == 0
    out = capsys.readouterr().out
    assert "lesson 01_attention: 1/2" in out
    assert "✓ attention.by_hand" in out and "○ attention.softmax" in out
    assert f"lesson 02_masks: 0/{len(exercises_for_lesson('02'))}  (no notebook 02_*.ipynb" in out
    assert out.strip().splitlines()[-1].startswith("total: 1/")
    assert grade.progress_main([str(tmp_path / "nowhere")]) == 2


def test_cli_entry_points_are_wired():
    from tfcore.__main__ import main

    assert main(["grade", "/definitely/not/here.ipynb"]) == 2
    assert main(["progress", "/definitely/not/here"]) == 2


@pytest.mark.slow
def test_end_to_end_the_solution_passes_and_the_generated_exercise_is_not_attempted(tmp_path, capsys):
    import shutil

    for student, folder in (("alice", "solutions"), ("bob", "exercises")):
        (tmp_path / student).mkdir()
        shutil.copy(ROOT / folder / "01_attention.ipynb", tmp_path / student / "01_attention.ipynb")
    assert grade.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    summary = out[out.index("== summary"):].splitlines()
    assert summary[2].split() == ["alice", "4/4", "4/4"]
    assert summary[3].split() == ["bob", "0/4", "0/4"]
    assert out.count("not attempted yet") == 4
