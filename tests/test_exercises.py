"""tfcore.exercises: generating exercises/*.ipynb from solutions/*.ipynb.

The repository checks at the end run on every solution notebook present: exercises/ is up
to date, no solution text leaks into it, and both notebooks make the same check calls.
"""
from __future__ import annotations

import re
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


# ----------------------------------------------------------------------------- hints and leaks


def test_details_blocks_are_left_out_of_the_visible_text():
    md = ("Task: compute it.\n\n<details><summary>Hint 1: the idea</summary>\n\nsecret idea\n\n</details>\n"
          "between\n<DETAILS open><summary>x</summary>\n<details><summary>inner</summary>\nnested secret\n"
          "</details>\nouter secret\n</Details >\nafter")
    assert ex.without_details(md) == "Task: compute it.\n\n\nbetween\n\nafter"
    assert ex.without_details("<details>never closed\nsecret") == ""  # an unclosed block hides the rest
    nb = new_notebook(cells=[new_markdown_cell(md), new_code_cell('def f(x):\n    raise NotImplementedError("hint")')])
    assert ex.visible_lines(nb) == ["Task: compute it.", "between", "after", "def f(x):",
                                    '    raise NotImplementedError("hint")']


def test_hint_blocks_survive_generation_verbatim():
    task = ("## Exercise\n\nDo it.\n\n<details><summary>Hint 1: the idea</summary>\n\nThink $x^2$.\n\n</details>\n\n"
            "<details><summary>Hint 3: nearly the code</summary>\n\n```python\nreturn x * x\n```\n\n</details>")
    sol = solution_notebook()
    sol.cells.insert(1, new_markdown_cell(task))
    nb = ex.make_exercise(sol, "solutions/01_attention.ipynb")
    assert nb.cells[1].source == task


def _leak_case(solution_code: str, task: str, stub_hint: str = "replace this line", given: str = "x = 1"):
    """A one-exercise solution notebook and its exercise notebook."""
    body = "\n".join(f"    {line}" for line in solution_code.split("\n"))
    sol = new_notebook(cells=[
        new_markdown_cell(task),
        new_code_cell(f"def f(q, k, v, n_heads):\n    # BEGIN SOLUTION\n    # HINT: {stub_hint}\n{body}\n"
                      "    # END SOLUTION"),
        new_code_cell(given),
    ])
    return sol, ex.make_exercise(sol, "solutions/01_attention.ipynb")


SCORES = "scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])"


@pytest.mark.parametrize("where, leaks", [
    ("stub", True),  # the NotImplementedError message is visible
    ("task", True),
    ("comment", True),  # a comment in a given code cell is visible too
    ("hint", False),  # inside <details>: only for those who open it
])
def test_a_solution_line_leaks_wherever_it_is_visible_except_in_a_hint(where, leaks):
    shown = "scores = q @ k.transpose(-2,-1) / sqrt(q.shape[-1])"  # spaces and the module prefix differ
    task = {"task": f"Compute `{shown}`.", "hint": f"Task.\n\n<details><summary>Hint 3: nearly the code</summary>"
            f"\n\n`{shown}`\n\n</details>"}.get(where, "Task.")
    sol, nb = _leak_case(f"{SCORES}\nreturn scores.softmax(-1) @ v", task,
                         stub_hint=shown if where == "stub" else "return the attention output",
                         given=f"# {shown}" if where == "comment" else "x = 1")
    assert ex.leaked_lines(sol, nb) == ([SCORES] if leaks else [])


def test_near_copies_leak_and_what_a_contract_shares_with_the_answer_does_not():
    sol, nb = _leak_case(SCORES, "Task.", stub_hint="scores = q @ k.transpose(-2, -1) / sqrt(d); then the softmax")
    assert ex.leaked_lines(sol, nb) == [SCORES]  # 33 of its 45 characters, in order: 0.73
    contract = ("Write `f(q, k, v, n_heads)`: `q` is `(B, h, T, d)`; return softmax(q k^T / sqrt(d)) v, with "
                "`d = q.shape[-1]`.")
    sol, nb = _leak_case(SCORES, contract)
    score, line, _ = ex.leak_scores(sol, nb)[0]
    assert line == SCORES and score < ex.LEAK_COVERAGE


def test_trivial_and_given_lines_do_not_count():
    for line in ("return out", "b, t, d = q.shape", "else:", "})", "d_head = d // n_heads", "model(tokens)",
                 "with torch.no_grad():", "# the answer is below"):
        assert ex.is_trivial(line), line
    for line in (SCORES, "x = x + attn(ln1(x))", "mean = sum(x) / d", 'answers["a"] = "full"'):
        assert not ex.is_trivial(line), line
    sol, nb = _leak_case("total = n_heads * q.shape[-1] * 2", "Task.", given="total = n_heads * q.shape[-1] * 2")
    assert ex.leaked_lines(sol, nb) == []  # the notebook shows it outside the answer anyway


def test_hint_blocks_have_the_shared_format():
    """``<details><summary>Hint N: ...</summary>``, N = 1, 2, 3 in order, blank lines inside (the markdown renders)."""
    for solution in SOLUTIONS:
        nb = nbformat.read(str(solution), as_version=4)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "markdown" or "<details" not in cell.source:
                continue
            where = f"{solution.name}, cell {index}"
            blocks = HINT_BLOCK.findall(cell.source)
            assert len(blocks) == cell.source.count("<details"), f"{where}: a hint block not in the shared format"
            numbers = [int(n) for n, _ in blocks]
            assert numbers == list(range(1, len(numbers) + 1)), f"{where}: hints numbered {numbers}"
            for n, summary in blocks:
                assert summary == HINT_SUMMARIES[int(n)], f"{where}: hint {n} is titled {summary!r}"


HINT_SUMMARIES = {1: "the idea", 2: "the formula and the shapes, worked through", 3: "nearly the code"}
HINT_BLOCK = re.compile(r"<details><summary>Hint (\d): ([^<]*)</summary>\n\n(?:.|\n)*?\S\n\n</details>")


# ----------------------------------------------------------------------------- whole notebooks


def solution_notebook() -> nbformat.NotebookNode:
    code = new_code_cell(
        "def f(x):\n    # BEGIN SOLUTION\n    # HINT: double it\n"
        "    return x * 2 + torch.zeros_like(x)  # the secret answer\n    # END SOLUTION",
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
    assert meta.role == "exercise"  # how the grader tells exercise notebooks from lessons and solutions
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
    leaky.cells[2].source += "\n# return x*2 + zeros_like(x)"
    assert ex.leaked_lines(sol, ex.make_exercise(leaky, "s/01.ipynb")) == [
        "return x * 2 + torch.zeros_like(x)  # the secret answer"]


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
    assert ex.solution_lines(sol), f"{solution.name} has no solution block"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_no_exercise_shows_a_line_of_its_solution(solution):
    """What a learner sees without opening a hint must not contain a line of the solution.

    Visible: markdown outside ``<details>`` blocks and every code line of the exercise notebook
    (stub messages and docstrings included). A solution line counts as shown when one visible line
    repeats at least ``LEAK_COVERAGE`` = 0.65 of its characters, in order, in runs of at least 3
    tokens, after normalising both (no whitespace, backticks, ``return`` or ``torch.``/``np.``/
    ``math.``/``F.`` prefixes; comments dropped from the solution); the text inside string literals
    does not count (the keys a task prescribes are not its answer). Trivial lines (under 7 tokens:
    ``d = len(x)``, ``model(tokens)``; names only: ``return out``, ``b, t, d = x.shape``, a bracket)
    and lines the notebook shows verbatim in its given code are not counted.

    Why these numbers: before the hints moved into ``<details>``, the stubs and docstrings that
    gave an answer away scored 0.65 to 1.00 (``scores = Q @ K.T / sqrt(d_k)`` for
    ``... / np.sqrt(d_k)``: 1.00; the whole ``2 * n_layers * ...`` product of kv_cache_bytes: 0.98;
    ``x = x + attn(ln1(x))``: 1.00; ``scores = q @ k.transpose(-2, -1) / sqrt(d)``: 0.73), while
    what the rewritten statements share with their answers (a formula in words, a signature,
    shapes) reaches at most 0.56. A run of one or two tokens is a shared name or bracket, not
    copied code. On failure the message lists (score, solution line, visible line).
    """
    sol = nbformat.read(str(solution), as_version=4)
    nb = nbformat.read(str(ROOT / "exercises" / solution.name), as_version=4)
    shown = [(round(score, 2), line, where) for score, line, where in ex.leak_scores(sol, nb)
             if score >= ex.LEAK_COVERAGE]
    assert not shown, (f"exercises/{solution.name} shows solution lines outside its hint blocks "
                       "(score, solution line, visible line): " + "; ".join(map(str, shown)))


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
