"""tfcore.exercises: generating exercises/*.ipynb from solutions/*.ipynb.

The repository checks at the end run on every solution notebook present: exercises/ is up
to date, no solution text leaks into it, and both notebooks make the same check calls.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tfcore import exercises as ex
from tfcore.grading import EXERCISES, exercises_for_lesson

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


# ----------------------------------------------------------------------------- markers in one cell


def test_a_block_becomes_a_stub_with_the_hint_at_the_marker_indentation():
    source = "\n".join([
        "def f(x):",
        '    """Doc."""',
        "    # BEGIN SOLUTION",
        "    # HINT: use \"x * 2\", not x + x",
        "    y = x * 2",
        "    return y",
        "    # END SOLUTION",
        "",
        "class A:",
        "    def g(self):",
        "        #   BEGIN SOLUTION   ",
        "        return 1",
        "        # END SOLUTION",
    ])
    assert ex.strip_code(source, "nb: cell 1") == "\n".join([
        "def f(x):",
        '    """Doc."""',
        '    raise NotImplementedError("use \\"x * 2\\", not x + x")',
        "",
        "class A:",
        "    def g(self):",
        '        raise NotImplementedError("replace this line with your code")',
    ])


def test_markers_match_whole_lines_only():
    source = 'def f():\n    s = "# BEGIN SOLUTION"  # BEGIN SOLUTION\n    return s'
    assert ex.strip_code(source, "x") == source


@pytest.mark.parametrize("source, message", [
    ("def f():\n    # BEGIN SOLUTION\n    return 1", "line 2: '# BEGIN SOLUTION' without a matching '# END SOLUTION'"),
    ("def f():\n    # BEGIN SOLUTION\n    # BEGIN SOLUTION\n    # END SOLUTION", "line 3: nested"),
    ("def f():\n    return 1\n    # END SOLUTION", "line 3: '# END SOLUTION' without a '# BEGIN SOLUTION'"),
    ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION", "top level"),
])
def test_broken_markers_fail_loudly_naming_notebook_and_cell(source, message):
    with pytest.raises(ex.MarkerError) as info:
        ex.strip_code(source, "solutions/01_x.ipynb: cell 4 (code)")
    assert str(info.value).startswith("solutions/01_x.ipynb: cell 4 (code), line ")
    assert message in str(info.value)


def test_markdown_answers_are_dropped():
    source = "Which mask?\n<!-- BEGIN SOLUTION -->\nThe causal one.\n<!-- END SOLUTION -->\nNext."
    assert ex.strip_markdown(source, "x") == "Which mask?\n*Your answer here.*\nNext."
    with pytest.raises(ex.MarkerError, match="without a matching"):
        ex.strip_markdown("<!-- BEGIN SOLUTION -->\nsecret", "x")
    with pytest.raises(ex.MarkerError, match="without a '<!-- BEGIN SOLUTION -->'"):
        ex.strip_markdown("<!-- END SOLUTION -->", "x")


# ----------------------------------------------------------------------------- whole notebooks


def solution_notebook() -> nbformat.NotebookNode:
    code = new_code_cell(
        "def f(x):\n    # BEGIN SOLUTION\n    # HINT: double it\n    return x * 2 + 0  # the secret answer\n"
        "    # END SOLUTION",
        execution_count=3, outputs=[new_output("stream", name="stdout", text="hi\n")],
        metadata={"tags": ["nbval-ignore-output"], "scrolled": True, "execution": {"iopub.status.busy": "x"}},
    )
    check = new_code_cell('check("attention.softmax", f)', execution_count=4,
                          outputs=[new_output("execute_result", data={"text/plain": "✓ passed"}, execution_count=4)])
    cells = [new_markdown_cell("# Title\n<!-- BEGIN SOLUTION -->\nwritten answer\n<!-- END SOLUTION -->"),
             code, check, new_code_cell("print('only for instructors')", metadata={"tags": ["solution-only"]})]
    nb = new_notebook(cells=cells)
    nb.metadata = {"kernelspec": {"name": "other-kernel", "display_name": "X", "language": "python"},
                   "language_info": {"name": "python", "version": "3.11.7"},
                   "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}}}
    return nb


def test_the_exercise_notebook_is_clean_and_marked():
    sol = solution_notebook()
    nb = ex.make_exercise(sol, "solutions/01_attention.ipynb")
    assert len(nb.cells) == 3  # the solution-only cell is gone
    assert [c.id for c in nb.cells] == [c.id for c in sol.cells[:3]]
    assert nb.cells[0].source == "# Title\n*Your answer here.*"
    assert nb.cells[1].source == 'def f(x):\n    raise NotImplementedError("double it")'
    for cell in nb.cells[1:]:
        assert cell.outputs == [] and cell.execution_count is None
    assert nb.cells[1].metadata == {"tags": ["nbval-ignore-output"]}
    assert "widgets" not in nb.metadata
    assert nb.metadata.kernelspec.name == "python3"
    meta = nb.metadata.tfcore
    assert meta.lesson == "01_attention" and meta.generated_from == "solutions/01_attention.ipynb"
    assert meta.source_sha256 == ex.solution_hash(sol) and meta.content_sha256 == ex.cells_hash(nb)
    assert ex.leaked_lines(sol, nb) == []
    assert ex.check_calls(nb) == ex.check_calls(sol) == ["attention.softmax"]
    nbformat.validate(nb)


def test_output_is_deterministic_and_ignores_solution_outputs():
    sol = solution_notebook()
    text = ex.render(ex.make_exercise(sol, "solutions/01_attention.ipynb"))
    assert text.endswith("}\n") and text.startswith('{\n "cells": [')
    rerun = solution_notebook()
    for a, b in zip(rerun.cells, sol.cells):
        a["id"] = b["id"]  # the same notebook, saved again
        if a.cell_type == "code":
            a.execution_count, a.outputs = 99, []
    assert ex.render(ex.make_exercise(rerun, "solutions/01_attention.ipynb")) == text
    leaky = solution_notebook()
    leaky.cells[2].source += "\n# return x * 2 + 0  # the secret answer"
    assert ex.leaked_lines(sol, ex.make_exercise(leaky, "s/01.ipynb")) == ["return x * 2 + 0  # the secret answer"]


@pytest.fixture
def course(tmp_path):
    (tmp_path / "solutions").mkdir()
    nbformat.write(solution_notebook(), str(tmp_path / "solutions" / "01_attention.ipynb"))
    return tmp_path


def run(course, *args):
    return ex.main(["--solutions", str(course / "solutions"), "--exercises", str(course / "exercises"), *args])


def test_generate_check_and_refuse_to_overwrite_a_learners_edits(course, capsys):
    target = course / "exercises" / "01_attention.ipynb"
    assert run(course, "--check") == 1
    assert "out of date" in capsys.readouterr().out
    assert run(course) == 0 and target.exists()
    first = target.read_bytes()
    assert run(course) == 0 and target.read_bytes() == first
    assert run(course, "--check") == 0
    assert "up to date" in capsys.readouterr().out

    # The solution changes: regenerating an unedited exercise notebook just works.
    sol = nbformat.read(str(course / "solutions" / "01_attention.ipynb"), as_version=4)
    sol.cells[0].source = "# A new title"
    nbformat.write(sol, str(course / "solutions" / "01_attention.ipynb"))
    assert run(course, "--check") == 1
    assert run(course) == 0 and target.read_bytes() != first

    # A learner edits and runs the exercise notebook; then the solution changes again.
    nb = nbformat.read(str(target), as_version=4)
    nb.cells[1].source = "def f(x):\n    return 2 * x  # my answer"
    nb.cells[1].outputs = [new_output("stream", name="stdout", text="done\n")]
    nbformat.write(nb, str(target))
    edited = target.read_bytes()
    sol.cells[0].source = "# Another title"
    nbformat.write(sol, str(course / "solutions" / "01_attention.ipynb"))
    capsys.readouterr()
    assert run(course) == 1 and target.read_bytes() == edited
    err = capsys.readouterr().err
    assert "not overwritten because its cells were edited" in err and "--force" in err
    assert run(course, "--force") == 0 and b"my answer" not in target.read_bytes()

    # Only running a notebook (outputs, counts) is not an edit of its cells.
    nb = nbformat.read(str(target), as_version=4)
    nb.cells[2].outputs = [new_output("stream", name="stdout", text="○ not attempted\n")]
    nb.cells[2].execution_count = 1
    nbformat.write(nb, str(target))
    assert run(course, "--check") == 1 and run(course) == 0 and run(course, "--check") == 0

    # Not a notebook at all, or not generated by us: refused unless --force.
    target.write_text("{ not json", encoding="utf-8")
    assert run(course) == 1 and "not a readable notebook" in capsys.readouterr().err
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), str(target))
    assert run(course) == 1 and "not generated by" in capsys.readouterr().err
    assert run(course, "--force") == 0 and run(course, "--check") == 0


def test_marker_errors_and_missing_notebooks_give_a_status_not_a_traceback(course, capsys):
    sol = solution_notebook()
    sol.cells[1].source = "def f(x):\n    # BEGIN SOLUTION\n    return x"
    nbformat.write(sol, str(course / "solutions" / "02_masks.ipynb"))
    assert run(course) == 1
    err = capsys.readouterr().err
    assert "solutions/02_masks.ipynb: cell 1 (code), line 2: '# BEGIN SOLUTION' without a matching" in err
    assert (course / "exercises" / "01_attention.ipynb").exists()  # the good notebook is still written
    assert not (course / "exercises" / "02_masks.ipynb").exists()
    assert run(course, "01_attention.ipynb") == 0
    assert run(course, "09_nothing.ipynb") == 2
    assert ex.main(["--solutions", str(course / "none")]) == 2


def test_command_line_entry_point(course, monkeypatch, capsys):
    from tfcore.__main__ import main

    monkeypatch.chdir(course)
    assert main(["exercises"]) == 0
    assert "written: exercises/01_attention.ipynb" in capsys.readouterr().out
    assert main(["exercises", "--check"]) == 0


# ----------------------------------------------------------------------------- the repository's notebooks


def test_there_is_at_least_one_solution_notebook():
    assert SOLUTIONS, "solutions/ holds no notebook"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_exercises_are_up_to_date_and_leak_nothing(solution):
    exercise = ROOT / "exercises" / solution.name
    outcome = ex.generate(solution, exercise, check=True, source_name=f"solutions/{solution.name}")
    assert outcome.status == "up to date", f"{exercise}: {outcome.message}: run `python -m tfcore exercises`"
    sol = nbformat.read(str(solution), as_version=4)
    nb = nbformat.read(str(exercise), as_version=4)
    assert ex.leaked_lines(sol, nb) == []
    assert ex.solution_lines(sol), f"{solution.name} has no solution block"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_exercises_make_the_same_checks_as_their_solutions(solution):
    sol = nbformat.read(str(solution), as_version=4)
    nb = nbformat.read(str(ROOT / "exercises" / solution.name), as_version=4)
    calls = ex.check_calls(sol)
    assert calls == ex.check_calls(nb)
    assert len(calls) == len(set(calls)), f"{solution.name} checks an exercise twice"
    unknown = [c for c in calls if c not in EXERCISES]
    assert not unknown, f"{solution.name} checks unregistered exercise IDs {unknown}"
    registered = exercises_for_lesson(solution.name)
    assert sorted(calls) == sorted(registered), (
        f"{solution.name}: the lesson's registered exercises {registered} and the notebook's checks {calls} differ")
