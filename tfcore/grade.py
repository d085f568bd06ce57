"""Grade learner notebooks: ``python -m tfcore grade NOTEBOOK|FOLDER... [--json OUT] [--timeout S]``.

Each notebook runs in a fresh ``python3`` kernel (nbclient), from an in-memory copy, with the
notebook's folder as the working directory: the learner's file is only read, never written.
Errors do not stop the run (``allow_errors``); a cell that runs longer than ``--timeout``
seconds is interrupted and the run goes on with the next cell.

The results come from the checks themselves: the grader sets ``TFCORE_GRADE_LOG`` for the
kernel, and every ``tfcore.grading.check(...)`` appends its result to that file as a JSON line,
whatever the notebook prints or displays. An exercise of the notebook's lesson whose check never
reported (its check call deleted, its cell raised or timed out, the kernel died) counts as
failed, with the reason.

A notebook's lesson is its ``metadata.tfcore.lesson`` or the ``NN_`` prefix of its file name.
Folders are searched recursively; ``FOLDER/alice/01_attention.ipynb`` belongs to the student
``alice`` (a notebook directly in FOLDER to FOLDER's own name), and several notebooks end with
a summary table per student. The exit status is 0 only if every exercise passed.

``python -m tfcore progress [FOLDER]`` (default ``exercises/``) grades your exercise notebooks
and shows, per lesson, which exercises pass.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

import tfcore
from tfcore.exercises import CHECK_CALL
from tfcore.grading import LESSONS, LOG_ENV, SYMBOLS, exercises_for_lesson, lesson_key

DEFAULT_TIMEOUT = 60
FAILED, PASSED, NOT_ATTEMPTED = "failed", "passed", "not attempted"
TIMEOUT_ENAME = "CellTimeoutError"


@dataclass
class Row:
    """One exercise of a graded notebook."""

    exercise_id: str
    status: str
    message: str
    in_lesson: bool = True  # False for a check of another lesson found in this notebook (not scored)


@dataclass
class NotebookReport:
    """The grade of one notebook."""

    path: str
    student: str
    lesson: str | None  # "01", or None when neither the file name nor the metadata says
    rows: list[Row] = field(default_factory=list)
    error: str | None = None  # the notebook could not be run as a whole (unreadable, no kernel, ...)

    @property
    def passed(self) -> int:
        return sum(r.status == PASSED for r in self.rows if r.in_lesson)

    @property
    def total(self) -> int:
        return sum(r.in_lesson for r in self.rows)

    @property
    def all_passed(self) -> bool:
        return self.error is None and self.passed == self.total

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lesson_name"] = LESSONS.get(self.lesson or "", None)
        d["score"] = {"passed": self.passed, "total": self.total}
        return d


@dataclass
class _CellEvent:
    index: int
    ok: bool
    ename: str = ""
    evalue: str = ""


class _Abort(Exception):
    """Stop running a notebook whose kernel no longer answers."""


# ----------------------------------------------------------------------------- running one notebook


def _describe_cell(nb, index: int) -> str:
    first = next((line.strip() for line in nb.cells[index].source.splitlines() if line.strip()), "")
    first = first if len(first) <= 50 else first[:47] + "..."
    return f"cell {index + 1} ({first})" if first else f"cell {index + 1}"


def _kernel_env(log_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env[LOG_ENV] = str(log_path)
    env["MPLBACKEND"] = "Agg"  # no figures are needed to grade
    # The kernel imports the same tfcore as the grader, even where tfcore is not installed.
    package_root = str(Path(tfcore.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


def _run(nb, folder: Path, timeout: int, kernel: str, log_path: Path) -> tuple[dict[int, _CellEvent], str | None]:
    """Execute ``nb`` (in place, it is a copy); return the per-cell events and a reason if the run stopped early."""
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    events: dict[int, _CellEvent] = {}
    state = {"timeouts_in_a_row": 0}

    def on_cell_executed(cell, cell_index, execute_reply):
        content = (execute_reply or {}).get("content", {})
        ok = content.get("status") == "ok"
        events[cell_index] = _CellEvent(cell_index, ok, content.get("ename", ""), str(content.get("evalue", "")))
        if content.get("ename") == TIMEOUT_ENAME:
            state["timeouts_in_a_row"] += 1
            if state["timeouts_in_a_row"] >= 2:
                raise _Abort(f"the kernel stopped responding after {_describe_cell(nb, cell_index)} timed out")
        else:
            state["timeouts_in_a_row"] = 0

    quiet = logging.getLogger("tfcore.grade.nbclient")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel,
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": f"the cell did not finish within {timeout} s",
                          "traceback": []},
        record_timing=False,
        startup_timeout=120,
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(folder)}},
        on_cell_executed=on_cell_executed,
        log=quiet,
    )
    try:
        client.execute(env=_kernel_env(log_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except _Abort as e:
        return events, str(e)
    except NoSuchKernel:
        raise
    except DeadKernelError:
        return events, "the kernel died (the process exited or crashed)"
    except Exception as e:  # a kernel that would not start, a broken notebook, ...
        return events, f"the notebook could not be run: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return events, None


def _read_log(log_path: Path) -> list[dict]:
    results = []
    if not log_path.exists():
        return results
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict) and {"exercise_id", "status", "message"} <= set(r) and r["status"] in SYMBOLS:
            results.append(r)
    return results


def _why_missing(exercise_id: str, nb, events: dict[int, _CellEvent], stopped: str | None) -> str:
    """Why the check of ``exercise_id`` never reported."""
    cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and exercise_id in CHECK_CALL.findall(c.source)]
    if not cells:
        return f'the check never ran: there is no check("{exercise_id}", ...) call in the notebook'
    index = cells[-1]
    where = _describe_cell(nb, index)
    event = events.get(index)
    if event is None:
        return f"the check never ran: {where} was not executed" + (f" ({stopped})" if stopped else "")
    if event.ename == TIMEOUT_ENAME:
        return f"the check never ran: {where} did not finish within the time limit"
    if not event.ok:
        value = " ".join(event.evalue.split())[:200]
        earlier = [e for i, e in sorted(events.items()) if i < index and not e.ok]
        before = ""
        if earlier:
            first = earlier[0]
            before = f" (the first error was in {_describe_cell(nb, first.index)}: {first.ename})"
        return f"the check never ran: {where} raised {event.ename}: {value}{before}"
    return f"the check never reported: {where} ran, but no check result arrived (was check redefined?)"


def grade_notebook(path: str | Path, timeout: int = DEFAULT_TIMEOUT, kernel: str = "python3",
                   student: str | None = None) -> NotebookReport:
    """Run one notebook in a fresh kernel and grade the exercises of its lesson. Never raises."""
    path = Path(path)
    report = NotebookReport(str(path), student or path.resolve().parent.name, lesson_key(path.name))
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as e:
        report.error = f"not a readable notebook: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
        report.rows = [Row(i, FAILED, f"the notebook could not be read ({type(e).__name__})")
                       for i in exercises_for_lesson(report.lesson)] if report.lesson else []
        return report
    meta_lesson = nb.get("metadata", {}).get("tfcore", {}).get("lesson")
    if meta_lesson and lesson_key(str(meta_lesson)):
        report.lesson = lesson_key(str(meta_lesson))
    expected = exercises_for_lesson(report.lesson) if report.lesson else []

    with tempfile.TemporaryDirectory(prefix="tfcore-grade-") as tmp:
        log_path = Path(tmp) / "results.jsonl"
        try:
            events, stopped = _run(nb, path.resolve().parent, timeout, kernel, log_path)
        except Exception as e:  # NoSuchKernel and anything else about the kernel itself
            name = type(e).__name__
            reason = (f"the kernel {kernel!r} is not installed (jupyter kernelspec list)" if name == "NoSuchKernel"
                      else f"the notebook could not be run: {name}: {' '.join(str(e).split())[:200]}")
            report.error = reason
            report.rows = [Row(i, FAILED, f"the check never ran: {reason}") for i in expected]
            return report
        results = _read_log(log_path)

    latest = {}
    for r in results:
        latest[r["exercise_id"]] = r  # the last call of a check counts
    for exercise_id in expected:
        r = latest.get(exercise_id)
        if r is None:
            report.rows.append(Row(exercise_id, FAILED, _why_missing(exercise_id, nb, events, stopped)))
        else:
            report.rows.append(Row(exercise_id, r["status"], r["message"]))
    for exercise_id, r in latest.items():
        if exercise_id not in expected:
            report.rows.append(Row(exercise_id, r["status"], r["message"], in_lesson=report.lesson is None))
    if stopped and report.error is None and not report.rows:
        report.error = stopped
    return report


# ----------------------------------------------------------------------------- finding and printing


def find_notebooks(target: Path) -> list[tuple[Path, str]]:
    """(notebook, student) pairs for a notebook path or a folder (searched recursively)."""
    if target.is_file():
        return [(target, target.resolve().parent.name)]
    found = []
    for nb in sorted(target.rglob("*.ipynb")):
        rel = nb.relative_to(target)
        if any(part.startswith(".") for part in rel.parts):  # .ipynb_checkpoints and hidden folders
            continue
        student = rel.parts[0] if len(rel.parts) > 1 else target.resolve().name
        found.append((nb, student))
    return found


def format_report(report: NotebookReport) -> str:
    lesson = LESSONS.get(report.lesson or "", report.lesson) if report.lesson else "unknown (name it NN_name.ipynb)"
    lines = [f"== {report.path}  (student {report.student}, lesson {lesson})"]
    if report.error:
        lines.append(f"  ! {report.error}")
    width = max([len(r.exercise_id) for r in report.rows] + [10])
    for r in report.rows:
        extra = "" if r.in_lesson else "  [not part of this lesson: not scored]"
        lines.append(f"  {SYMBOLS.get(r.status, '?')} {r.exercise_id:<{width}}  {r.status:<13}  {r.message}{extra}")
    if not report.rows and not report.error:
        lines.append("  (no exercises)")
    lines.append(f"  score: {report.passed}/{report.total}")
    return "\n".join(lines)


def format_summary(reports: list[NotebookReport]) -> str:
    """One row per student, one column per lesson: passed/total."""
    lessons = sorted({r.lesson or "??" for r in reports})
    students = sorted({r.student for r in reports})
    table = {(r.student, r.lesson or "??"): r for r in reports}
    width = max([len(s) for s in students] + [7])
    header = f"  {'student':<{width}}  " + "  ".join(f"{k:>7}" for k in lessons) + "    total"
    lines = ["== summary", header]
    for s in students:
        cells, passed, total = [], 0, 0
        for k in lessons:
            r = table.get((s, k))
            if r is None:
                cells.append(f"{'-':>7}")
            else:
                cells.append(f"{f'{r.passed}/{r.total}':>7}")
                passed, total = passed + r.passed, total + r.total
        lines.append(f"  {s:<{width}}  " + "  ".join(cells) + f"  {f'{passed}/{total}':>7}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m tfcore grade``; exit status 0 only if every exercise of every notebook passed."""
    parser = argparse.ArgumentParser(prog="python -m tfcore grade",
                                     description="Run notebooks in a fresh kernel and score their exercises.")
    parser.add_argument("targets", nargs="+", metavar="NOTEBOOK|FOLDER")
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the results as JSON to OUT")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"time limit per cell (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--kernel", default="python3", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    jobs: list[tuple[Path, str]] = []
    for target in map(Path, args.targets):
        if not target.exists():
            print(f"no such notebook or folder: {target}", file=sys.stderr)
            return 2
        jobs += find_notebooks(target)
    if not jobs:
        print("no notebooks found", file=sys.stderr)
        return 2

    reports = []
    for path, student in jobs:
        report = grade_notebook(path, timeout=args.timeout, kernel=args.kernel, student=student)
        reports.append(report)
        print(format_report(report), flush=True)
    if len(reports) > 1:
        print(format_summary(reports))
    ok = all(r.all_passed for r in reports)
    if args.json:
        data = {"notebooks": [r.to_dict() for r in reports], "all_passed": ok,
                "students": {s: {"passed": sum(r.passed for r in reports if r.student == s),
                                 "total": sum(r.total for r in reports if r.student == s)}
                             for s in sorted({r.student for r in reports})}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if ok else 1


# ----------------------------------------------------------------------------- progress


def progress_main(argv: list[str] | None = None) -> int:
    """``python -m tfcore progress [FOLDER]``: which exercises of each lesson pass (default folder exercises/)."""
    parser = argparse.ArgumentParser(prog="python -m tfcore progress",
                                     description="Grade your exercise notebooks and show what passes, per lesson.")
    parser.add_argument("folder", nargs="?", type=Path, default=Path("exercises"))
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, metavar="SECONDS")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"no folder {args.folder}: run this from the course folder, or name the folder", file=sys.stderr)
        return 2

    notebooks: dict[str, Path] = {}
    for nb in sorted(args.folder.glob("*.ipynb")):
        key = lesson_key(nb.name)
        if key and key not in notebooks:
            notebooks[key] = nb
    passed = total = 0
    for key, name in LESSONS.items():
        ids = exercises_for_lesson(key)
        if not ids and key not in notebooks:
            continue
        if key not in notebooks:
            print(f"lesson {name}: 0/{len(ids)}  (no notebook {key}_*.ipynb in {args.folder})")
            total += len(ids)
            continue
        report = grade_notebook(notebooks[key], timeout=args.timeout)
        passed, total = passed + report.passed, total + report.total
        print(f"lesson {name}: {report.passed}/{report.total}  ({notebooks[key]})")
        if report.error:
            print(f"  ! {report.error}")
        width = max([len(r.exercise_id) for r in report.rows] + [10])
        for r in report.rows:
            if r.in_lesson:
                detail = "" if r.status == PASSED else f"  {r.message}"
                print(f"  {SYMBOLS.get(r.status, '?')} {r.exercise_id:<{width}}{detail}")
    print(f"total: {passed}/{total} exercises passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
