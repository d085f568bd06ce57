"""Grade learner notebooks: ``python -m tfcore grade NOTEBOOK|FOLDER... [--json OUT] [--timeout S] ...``.

Scores are decided in the grader's own process, never trusted from the notebook:

- an exercise (or solution) notebook runs, from a copy, in a fresh sandboxed kernel
  (``tfcore.grading.sandbox``: its own folder as cwd and HOME, a scrubbed environment,
  resource limits, no network and a read-only view of the rest where the OS allows it). There,
  ``check(ID, answer)`` only records the answer. After each cell that calls ``check`` (and at
  the end) the grader runs each new answer's check function itself, with a ``Checker`` seeded
  from a secret seed and the answer as a ``remote.Proxy``: the learner's function runs in the
  kernel on the grader's inputs, its outputs come back as plain data, and the grader compares
  them with tfcore's references. What the notebook prints, writes or patches in its kernel
  cannot change a verdict;
- a lesson notebook is not run: its predictions ("predict, then run" answers) are read from
  its text (``tfcore.grading.predictions.read_predictions``) and checked here.

A notebook's lesson is its ``metadata.tfcore.lesson`` or the ``NN_`` prefix of its file name;
its role ("lesson", "exercise" or "solution") is ``metadata.tfcore.role``, else its folder's
name (``notebooks/``, ``exercises/``, ``solutions/``), else what its ``check`` calls hold. An
exercise notebook is scored on the lesson's exercises, a lesson notebook on its predictions.
An expected check that never ran (deleted, its cell raised or timed out, the kernel died)
counts as failed, with the reason. Errors do not stop the run; a cell that runs past
``--timeout`` is interrupted and the run goes on; ``--notebook-timeout`` caps the whole
notebook. The learner's file is only read.

Folders are searched recursively; ``FOLDER/alice/01_attention.ipynb`` belongs to the student
``alice`` (a notebook directly in FOLDER to FOLDER's own name), and several notebooks end with
a summary table per student and lesson (a lesson's exercises and predictions added up). The
exit status is 0 only if every exercise passed.

``python -m tfcore progress [FOLDER]`` (default ``exercises/``) grades your exercise notebooks
and the predictions in the lesson notebooks beside them (``notebooks/``), per lesson.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from tfcore.exercises import CHECK_CALL
from tfcore.grading import (
    LESSONS,
    SYMBOLS,
    exercise_info,
    exercises_for_lesson,
    lesson_key,
    predictions_for_lesson,
    run_check,
    unknown_exercise,
)
from tfcore.grading import remote, sandbox
from tfcore.grading.predictions import read_predictions

DEFAULT_TIMEOUT = 120  # per cell: the capstone's training cell takes 25-50 s on a busy 2-core machine
DEFAULT_NOTEBOOK_TIMEOUT = 600
DEFAULT_MEMORY_MB = 4096
FAILED, PASSED, NOT_ATTEMPTED = "failed", "passed", "not attempted"
TIMEOUT_ENAME = sandbox.TIMEOUT_ENAME
ROLES = ("lesson", "exercise", "solution")
_ROLE_FOLDERS = {"notebooks": "lesson", "exercises": "exercise", "solutions": "solution"}
MAX_FOREIGN = 30  # checks of other lessons (or unknown IDs) reported per notebook, at most
# The grader parses each notebook in its own process: a larger file is refused unread. The course's largest
# notebook, saved with its outputs, is 0.8 MB; the grader runs a notebook again, so its outputs do not count.
MAX_NOTEBOOK_BYTES = 64 * 2 ** 20
MAX_NOTEBOOK_STRUCTURE = 8_000_000  # commas and opening brackets: each becomes a Python object when parsed


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
    role: str = "exercise"  # "lesson" (scored on predictions), "exercise" or "solution" (on exercises)
    seconds: float = 0.0  # wall time to grade it
    protections: dict | None = None  # what isolated its kernel (None: not run, e.g. a lesson notebook)

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
        d["seconds"] = round(self.seconds, 2)
        return d


# ----------------------------------------------------------------------------- which notebook is which


def notebook_role(nb, path: Path) -> str:
    """"lesson", "exercise" or "solution": ``metadata.tfcore.role``, else the folder's name, else the checks it calls."""
    role = nb.get("metadata", {}).get("tfcore", {}).get("role")
    if role in ROLES:
        return role
    folder = _ROLE_FOLDERS.get(Path(path).resolve().parent.name)
    if folder:
        return folder
    if nb.get("metadata", {}).get("tfcore", {}).get("generated_from"):
        return "exercise"
    calls = [c for cell in nb.cells if cell.get("cell_type") == "code" for c in CHECK_CALL.findall(cell.source)]
    kinds = set()
    for c in calls:
        try:
            kinds.add(exercise_info(c).kind)
        except KeyError:
            pass
    return "lesson" if kinds == {"prediction"} else "exercise"


def expected_ids(lesson: str | None, role: str) -> list[str]:
    """What a notebook of this lesson and role is scored on."""
    if not lesson:
        return []
    return predictions_for_lesson(lesson) if role == "lesson" else exercises_for_lesson(lesson)


# ----------------------------------------------------------------------------- running one notebook


def _describe_cell(nb, index: int) -> str:
    first = next((line.strip() for line in nb.cells[index].source.splitlines() if line.strip()), "")
    first = first if len(first) <= 50 else first[:47] + "..."
    return f"cell {index + 1} ({first})" if first else f"cell {index + 1}"


def _seed(secret: bytes, exercise_id: str) -> int:
    return int.from_bytes(hashlib.sha256(secret + exercise_id.encode()).digest()[:8], "big") >> 1


class _Grader:
    """The grades of one running notebook: after each check cell, every new answer the kernel holds."""

    def __init__(self, session: remote.Session) -> None:
        self.session = session
        self.secret = os.urandom(32)  # the Checker's seed: the notebook cannot know the inputs
        self.results: dict[str, tuple[int, object]] = {}  # ID -> (answer version, Result)
        self.foreign = 0  # unknown IDs reported so far (at most MAX_FOREIGN per notebook)

    def grade_new(self) -> None:
        try:
            answers = self.session.answers()
        except remote.KernelUnavailable:
            return
        for exercise_id, version in answers.items():
            known = self.results.get(exercise_id)
            if known is not None and known[0] == version:
                continue
            try:
                exercise_info(exercise_id)
            except KeyError:
                if known is None:
                    if self.foreign >= MAX_FOREIGN:
                        continue
                    self.foreign += 1
                self.results[exercise_id] = (version, unknown_exercise(exercise_id))
                continue
            self.results[exercise_id] = (version, self._grade(exercise_id))

    def _grade(self, exercise_id: str):
        from tfcore.grading import Result

        try:
            self.session.begin()
            found, answer = self.session.answer(exercise_id)
        except remote.KernelUnavailable as e:
            return Result(exercise_id, FAILED, f"the kernel {e.reason} before the check could read the answer")
        if not found:
            return Result(exercise_id, FAILED, "the kernel no longer holds the answer")
        return run_check(exercise_id, answer, seed=_seed(self.secret, exercise_id), session=self.session)


def _why_missing(exercise_id: str, nb, events: dict[int, sandbox.CellEvent], stopped: str | None) -> str:
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
    return f"the check never reported: {where} ran, but the kernel holds no answer for it (was check redefined?)"


def _timed_out_before(exercise_id: str, nb, events: dict[int, sandbox.CellEvent]) -> str | None:
    """The first cell before the check of ``exercise_id`` that the time limit interrupted (a training cell cut
    short explains a loss too high), described; None if there is none."""
    cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and exercise_id in CHECK_CALL.findall(c.source)]
    late = [i for i, e in sorted(events.items()) if e.ename == TIMEOUT_ENAME and cells and i < cells[-1]]
    return _describe_cell(nb, late[0]) if late else None


def _run(nb, path: Path, report: NotebookReport, limits: sandbox.Limits, mode: str, kernel: str,
         hidden: list[str]) -> tuple[dict, dict[int, sandbox.CellEvent], str | None]:
    """Run the notebook in a sandboxed kernel, grading as it goes: (results, cell events, why it stopped early)."""
    from jupyter_client.kernelspec import NoSuchKernel

    root = sandbox.temporary_root()
    k = None
    events: dict[int, sandbox.CellEvent] = {}
    try:
        try:
            k = sandbox.Kernel(root, path, limits, mode=mode, kernel_name=kernel, hidden=hidden)
            report.protections = k.protections.to_dict()
            k.start()
            report.protections = k.protections.to_dict()  # what start() learnt (unshare: read-only or not)
        except NoSuchKernel:
            raise RuntimeError(f"the kernel {kernel!r} is not installed (jupyter kernelspec list)") from None
        except sandbox.KernelStopped as e:
            raise RuntimeError(str(e)) from None
        except ValueError as e:  # a sandbox that does not work here
            raise RuntimeError(str(e)) from None
        k.deadline = time.monotonic() + limits.notebook_timeout
        grader = _Grader(remote.Session(k, timeout=limits.cell_timeout))
        stopped = None
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            try:
                events[index] = k.execute(index, cell.source)
            except sandbox.KernelStopped as e:
                stopped = f"the kernel {e}"
                break
            if "check" in cell.source:
                grader.grade_new()
        if k.alive():
            grader.grade_new()  # answers recorded by cells that did not name check, or whose grading timed out
        return {i: r for i, (_, r) in grader.results.items()}, events, stopped
    finally:
        if k is not None:
            k.close()
        sandbox.cleanup(root)


def _grade_predictions(nb, report: NotebookReport) -> None:
    """A lesson notebook: read each prediction from the text and check it here (nothing runs)."""
    expected = expected_ids(report.lesson, "lesson")
    readings = read_predictions(nb.cells, set(expected))
    for pid in expected:
        reading = readings.get(pid)
        if reading is None:
            report.rows.append(Row(pid, FAILED, f'the prediction was not found: there is no check("{pid}", ...) '
                                                "call in the notebook"))
        elif reading.error:
            shown = f" `{reading.source}`" if reading.source else ""
            report.rows.append(Row(pid, FAILED, f"the prediction in {_describe_cell(nb, reading.cell)} cannot be read"
                                                f"{shown} ({reading.error}): the grader reads it without running the "
                                                "notebook, so type it there as a number, a formula of numbers "
                                                "(1/3, 2**20, math.log(65)) or a choice's label"))
        else:
            result = run_check(pid, reading.value)
            report.rows.append(Row(pid, result.status, result.message))


def linked_part(path: Path, within: Path) -> Path | None:
    """The first symbolic link on the way from the folder ``within`` to ``path`` (``path`` itself included), or
    None. A link in a class folder could make the grader read, for one student, another student's notebook
    (hidden from kernels) or any file the instructor can read, such as a copy of the solutions."""
    try:
        parts = path.relative_to(within).parts
    except ValueError:
        return path if path.is_symlink() else None
    current = within
    for part in parts:
        current = current / part
        if current.is_symlink():
            return current
    return None


class TooLarge(ValueError):
    """A notebook file too large for the grader to parse."""


def _read_notebook(path: Path):
    """The notebook at ``path`` (nbformat 4), refused before parsing when it is too large."""
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise TooLarge(f"{size / 2 ** 20:.0f} MB, more than the {MAX_NOTEBOOK_BYTES / 2 ** 20:.0f} MB the grader "
                       "reads (clear its outputs: the grader runs it again anyway)")
    data = path.read_bytes()
    if remote.structure_count(data) > MAX_NOTEBOOK_STRUCTURE:
        raise TooLarge(f"more than {MAX_NOTEBOOK_STRUCTURE} JSON values")
    return nbformat.reads(data.decode("utf-8"), as_version=4)


def grade_notebook(path: str | Path, timeout: float = DEFAULT_TIMEOUT, kernel: str = "python3",
                   student: str | None = None, notebook_timeout: float = DEFAULT_NOTEBOOK_TIMEOUT,
                   sandbox_mode: str = "auto", memory_mb: int = DEFAULT_MEMORY_MB,
                   hidden: list[str] | None = None, within: Path | None = None) -> NotebookReport:
    """Grade one notebook (run it in a sandboxed kernel, or read a lesson notebook's predictions). Never raises.

    within: the folder being graded (``main`` passes it): a notebook reached through a symbolic link there is
    refused, not followed.
    """
    start = time.monotonic()
    path = Path(path)
    report = NotebookReport(str(path), student or path.resolve().parent.name, lesson_key(path.name))
    link = linked_part(path, Path(within)) if within is not None else None
    if link is not None:
        report.error = (f"refused: {link} is a symbolic link (the grader grades the files inside the graded "
                        "folder, never what a link points to)")
        report.role = _ROLE_FOLDERS.get(path.parent.name, "exercise")
        report.rows = [Row(i, FAILED, "the notebook was not graded: it is reached through a symbolic link")
                       for i in expected_ids(report.lesson, report.role)]
        report.seconds = time.monotonic() - start
        return report
    try:
        nb = _read_notebook(path)
        meta_lesson = nb.get("metadata", {}).get("tfcore", {}).get("lesson")
        role = notebook_role(nb, path)
    except Exception as e:
        report.error = f"not a readable notebook: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
        report.role = _ROLE_FOLDERS.get(path.resolve().parent.name, "exercise")
        report.rows = [Row(i, FAILED, f"the notebook could not be read ({type(e).__name__})")
                       for i in expected_ids(report.lesson, report.role)]
        report.seconds = time.monotonic() - start
        return report
    if meta_lesson and lesson_key(str(meta_lesson)):
        report.lesson = lesson_key(str(meta_lesson))
    report.role = role
    if report.lesson is not None and report.lesson not in LESSONS:  # else 0/0 would read as "all passed"
        where = "its metadata (tfcore.lesson)" if meta_lesson and lesson_key(str(meta_lesson)) else "its file name"
        report.error = (f"there is no lesson {report.lesson}: {where} names it (the lessons are "
                        f"{', '.join(LESSONS)})")
        report.seconds = time.monotonic() - start
        return report
    if role == "lesson":
        try:
            _grade_predictions(nb, report)
        except Exception as e:  # a notebook this malformed must not stop the grading of the others
            report.error = f"the predictions could not be read: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
            report.rows = [Row(i, FAILED, "the predictions could not be read") for i in expected_ids(report.lesson,
                                                                                                    "lesson")]
        report.seconds = time.monotonic() - start
        return report

    expected = expected_ids(report.lesson, role)
    limits = sandbox.Limits(cell_timeout=timeout, notebook_timeout=notebook_timeout, memory_mb=memory_mb)
    try:
        results, events, stopped = _run(nb, path, report, limits, sandbox_mode, kernel, hidden or [])
    except Exception as e:  # no such kernel, a sandbox that does not work, a kernel that would not start
        reason = str(e) if isinstance(e, RuntimeError) else \
            f"the notebook could not be run: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
        report.error = reason
        report.rows = [Row(i, FAILED, f"the check never ran: {reason}") for i in expected]
        report.seconds = time.monotonic() - start
        return report
    for exercise_id in expected:
        r = results.get(exercise_id)
        if r is None:
            report.rows.append(Row(exercise_id, FAILED, _why_missing(exercise_id, nb, events, stopped)))
        else:
            late = _timed_out_before(exercise_id, nb, events) if r.status == FAILED else None
            note = f" (note: {late} did not finish within the time limit of {timeout:g} s per cell)" if late else ""
            report.rows.append(Row(exercise_id, r.status, r.message + note))
    for exercise_id, r in results.items():
        if exercise_id not in expected:
            report.rows.append(Row(exercise_id, r.status, r.message, in_lesson=report.lesson is None))
    if stopped and report.error is None and not report.rows:
        report.error = stopped
    report.seconds = time.monotonic() - start
    return report


# ----------------------------------------------------------------------------- finding and printing


def find_notebooks(target: Path) -> list[tuple[Path, str]]:
    """(notebook, student) pairs for a notebook path or a folder (searched recursively)."""
    if target.is_file() or target.is_symlink() and not target.is_dir():
        return [(target, target.resolve().parent.name)]
    found = []
    for nb in sorted(target.rglob("*.ipynb")):
        rel = nb.relative_to(target)
        if any(part.startswith(".") for part in rel.parts):  # .ipynb_checkpoints and hidden folders
            continue
        student = rel.parts[0] if len(rel.parts) > 1 else target.resolve().name
        found.append((nb, student))
    return found


def hidden_folders(targets: list[Path]) -> list[str]:
    """The graded folders and the folders holding them, to hide from every kernel: all but those holding what
    a kernel needs. The folder above counts too: graded one student (or one notebook) at a time, a kernel
    could otherwise read, and run, the other students' notebooks beside it."""
    needed = sandbox.needed_paths() + [Path(tempfile.gettempdir()).resolve()]
    out = []
    for t in targets:
        folder = (t if t.is_dir() else t.parent).resolve()
        for f in (folder, folder.parent):
            if f == Path(f.anchor) or any(n == f or f in n.parents for n in needed):
                continue
            if str(f) not in out:
                out.append(str(f))
    return [f for f in out if not any(Path(g) in Path(f).parents for g in out)]  # the outermost only


def shown(text: object) -> str:
    """``text`` for a terminal: characters that are not printable (newlines, escape sequences, bidirectional
    overrides) written as escapes, so that no name or message from a notebook can draw a line of the report."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text))


def format_report(report: NotebookReport) -> str:
    lesson = LESSONS.get(report.lesson or "", report.lesson) if report.lesson else "unknown (name it NN_name.ipynb)"
    what = "predictions" if report.role == "lesson" else report.role
    lines = [f"== {shown(report.path)}  (student {shown(report.student)}, lesson {shown(lesson)}, {what})"]
    if report.error:
        lines.append(f"  ! {shown(report.error)}")
    width = max([len(shown(r.exercise_id)) for r in report.rows] + [10])
    for r in report.rows:
        extra = "" if r.in_lesson else "  [not part of this lesson: not scored]"
        lines.append(f"  {SYMBOLS.get(r.status, '?')} {shown(r.exercise_id):<{width}}  {r.status:<13}  "
                     f"{shown(r.message)}{extra}")
    if not report.rows and not report.error:
        lines.append("  (no exercises)")
    lines.append(f"  score: {report.passed}/{report.total}  ({report.seconds:.1f} s)")
    return "\n".join(lines)


def _merged(reports: list[NotebookReport]) -> dict[tuple[str, str], tuple[int, int]]:
    """(student, lesson) -> (passed, total): a lesson's exercise and lesson notebooks added up (the last of each
    role), and the exercises of ``_missing_exercises`` counted as failed."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for (student, lesson, _), r in _last(reports).items():
        p, t = out.get((student, lesson), (0, 0))
        out[(student, lesson)] = (p + r.passed, t + r.total)
    for student, lesson in _missing_exercises(reports):
        p, t = out[(student, lesson)]
        out[(student, lesson)] = (p, t + len(exercises_for_lesson(lesson)))
    return out


def _last(reports: list[NotebookReport]) -> dict[tuple[str, str, str], NotebookReport]:
    last: dict[tuple[str, str, str], NotebookReport] = {}
    for r in reports:
        last[(r.student, r.lesson or "??", "lesson" if r.role == "lesson" else "exercise")] = r
    return last


def _missing_exercises(reports: list[NotebookReport]) -> list[tuple[str, str]]:
    """(student, lesson) pairs graded on a lesson notebook only, for a lesson that other notebooks of this run
    were graded on as exercises. A notebook's role is the learner's to write (``metadata.tfcore.role``): an
    exercise notebook that calls itself a lesson notebook is scored on its predictions alone, and must not
    make the student's lesson look complete."""
    last = _last(reports)
    with_exercises = {lesson for (_, lesson, role) in last if role == "exercise" and lesson in LESSONS}
    return [(student, lesson) for (student, lesson, role) in last if role == "lesson" and lesson in with_exercises
            and (student, lesson, "exercise") not in last]


def format_summary(reports: list[NotebookReport]) -> str:
    """One row per student, one column per lesson: passed/total (exercises and predictions together)."""
    merged = _merged(reports)
    lessons = sorted({lesson for _, lesson in merged})
    students = sorted({s for s, _ in merged})
    width = max([len(shown(s)) for s in students] + [7])
    header = f"  {'student':<{width}}  " + "  ".join(f"{k:>7}" for k in lessons) + "    total"
    lines = ["== summary", header]
    for s in students:
        cells, passed, total = [], 0, 0
        for k in lessons:
            if (s, k) not in merged:
                cells.append(f"{'-':>7}")
            else:
                p, t = merged[(s, k)]
                cells.append(f"{f'{p}/{t}':>7}")
                passed, total = passed + p, total + t
        lines.append(f"  {shown(s):<{width}}  " + "  ".join(cells) + f"  {f'{passed}/{total}':>7}")
    for s, k in _missing_exercises(reports):
        lines.append(f"  note: {shown(s)} has no exercise notebook for lesson {k} (other students do): its "
                     f"{len(exercises_for_lesson(k))} exercises count as failed")
    return "\n".join(lines)


def _add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"time limit per cell, and per call of a check (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--notebook-timeout", type=float, default=DEFAULT_NOTEBOOK_TIMEOUT, metavar="SECONDS",
                        help=f"time limit per notebook, cells and checks together (default {DEFAULT_NOTEBOOK_TIMEOUT})")
    parser.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MB, metavar="MIB",
                        help=f"address-space limit of a notebook's kernel (default {DEFAULT_MEMORY_MB})")
    parser.add_argument("--sandbox", choices=sandbox.MODES, default="auto",
                        help="bwrap (bubblewrap), unshare (Linux namespaces), none, or auto: the strongest that works")
    parser.add_argument("--kernel", default="python3", help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    """``python -m tfcore grade``; exit status 0 only if every exercise of every notebook passed."""
    parser = argparse.ArgumentParser(prog="python -m tfcore grade",
                                     description="Run notebooks in a sandboxed kernel and score their exercises.")
    parser.add_argument("targets", nargs="+", metavar="NOTEBOOK|FOLDER")
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the results as JSON to OUT")
    _add_limits(parser)
    args = parser.parse_args(argv)

    jobs: list[tuple[Path, str, Path]] = []  # (notebook, student, the folder graded)
    targets = [Path(t) for t in args.targets]
    for target in targets:
        if not target.exists() and not target.is_symlink():
            print(f"no such notebook or folder: {target}", file=sys.stderr)
            return 2
        within = target.parent if target.is_symlink() or not target.is_dir() else target
        jobs += [(nb, student, within) for nb, student in find_notebooks(target)]
    if not jobs:
        print("no notebooks found", file=sys.stderr)
        return 2
    try:
        mode = sandbox.choose(args.sandbox)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 2
    hidden = hidden_folders(targets)
    print(f"== protections: {_describe(mode, args, hidden)}", flush=True)

    reports = []
    started = time.monotonic()
    for path, student, within in jobs:
        report = grade_notebook(path, timeout=args.timeout, kernel=args.kernel, student=student,
                                notebook_timeout=args.notebook_timeout, sandbox_mode=mode, memory_mb=args.memory,
                                hidden=hidden, within=within)
        reports.append(report)
        print(format_report(report), flush=True)
    if len(reports) > 1:
        print(format_summary(reports))
    merged = _merged(reports)
    ok = all(r.all_passed for r in reports) and all(p == t for p, t in merged.values())
    if args.json:
        data = {"notebooks": [r.to_dict() for r in reports], "all_passed": ok,
                "students": {s: {"passed": sum(p for (st, _), (p, _) in merged.items() if st == s),
                                 "total": sum(t for (st, _), (_, t) in merged.items() if st == s)}
                             for s in sorted({s for s, _ in merged})},
                "protections": {"sandbox": mode, "description": _describe(mode, args, hidden)},
                "seconds": round(time.monotonic() - started, 2)}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if ok else 1


def _describe(mode: str, args: argparse.Namespace, hidden: list[str]) -> str:
    limits = sandbox.Limits(cell_timeout=args.timeout, notebook_timeout=args.notebook_timeout, memory_mb=args.memory)
    return sandbox.Protections(mode, no_network=mode != "none", read_only_outside=mode != "none",
                               own_process_namespace=mode != "none", hidden_folders=hidden,
                               limits=asdict(limits), process_limit=sandbox.process_limit_works(),
                               home_hidden=mode == "bwrap" and sandbox.grader_home() is not None).describe()


# ----------------------------------------------------------------------------- progress


def _first(folder: Path, key: str) -> Path | None:
    return next((nb for nb in sorted(folder.glob("*.ipynb")) if lesson_key(nb.name) == key), None) \
        if folder.is_dir() else None


def progress_main(argv: list[str] | None = None) -> int:
    """``python -m tfcore progress [FOLDER]``: what passes per lesson, exercises (FOLDER, default exercises/)
    and predictions (the lesson notebooks in ``notebooks/`` beside FOLDER)."""
    parser = argparse.ArgumentParser(prog="python -m tfcore progress",
                                     description="Grade your exercise notebooks and the predictions in your lesson "
                                                 "notebooks, and show what passes, per lesson.")
    parser.add_argument("folder", nargs="?", type=Path, default=Path("exercises"))
    parser.add_argument("--lessons", type=Path, default=None, metavar="FOLDER",
                        help="where the lesson notebooks are (default: notebooks/ beside FOLDER)")
    _add_limits(parser)
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"no folder {args.folder}: run this from the course folder, or name the folder", file=sys.stderr)
        return 2
    beside = args.folder.parent if args.folder.name not in ("", ".", "..") else args.folder.resolve().parent
    lessons_folder = args.lessons or beside / "notebooks"

    passed = total = 0
    for key, name in LESSONS.items():
        exercise_ids, prediction_ids = exercises_for_lesson(key), predictions_for_lesson(key)
        exercise_nb, lesson_nb = _first(args.folder, key), _first(lessons_folder, key) if prediction_ids else None
        if not exercise_ids and not prediction_ids and exercise_nb is None:
            continue
        rows: list[Row] = []
        notes, errors = [], []
        for ids, nb_path, where in ((exercise_ids, exercise_nb, args.folder),
                                    (prediction_ids, lesson_nb, lessons_folder)):
            if not ids and nb_path is None:
                continue
            if nb_path is None:
                notes.append(f"no notebook {key}_*.ipynb in {where}")
                rows += [Row(i, NOT_ATTEMPTED, "no notebook") for i in ids]
                continue
            report = grade_notebook(nb_path, timeout=args.timeout, notebook_timeout=args.notebook_timeout,
                                    sandbox_mode=args.sandbox, memory_mb=args.memory, kernel=args.kernel)
            notes.append(str(nb_path))
            if report.error:
                errors.append(report.error)
            rows += [r for r in report.rows if r.in_lesson]
        p, t = sum(r.status == PASSED for r in rows), len(rows)
        passed, total = passed + p, total + t
        print(f"lesson {name}: {p}/{t}  ({'; '.join(notes)})")
        for e in errors:
            print(f"  ! {shown(e)}")
        width = max([len(r.exercise_id) for r in rows] + [10])
        for r in rows:
            detail = "" if r.status == PASSED or r.message == "no notebook" else f"  {shown(r.message)}"
            print(f"  {SYMBOLS.get(r.status, '?')} {shown(r.exercise_id):<{width}}{detail}")
    print(f"total: {passed}/{total} passed (exercises and predictions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
