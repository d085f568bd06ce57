"""Generate ``exercises/*.ipynb`` from ``solutions/*.ipynb``: ``python -m tfcore exercises``.

In a solution notebook's code cells, the answer sits between two whole-line markers:

    def softmax(x, dim=-1):
        # BEGIN SOLUTION
        # HINT: subtract the row max before exp
        m = x.amax(dim=dim, keepdim=True)
        ...
        # END SOLUTION

The generator replaces everything from BEGIN to END by ``raise NotImplementedError("<hint>")``
at the marker's indentation (the hint from the optional ``# HINT:`` line right after BEGIN;
default "replace this line with your code"). Markers must sit inside a function: a stub at
the top level of a cell would stop the exercise notebook there. In markdown cells,
``<!-- BEGIN SOLUTION -->`` ... ``<!-- END SOLUTION -->`` (whole lines) become
"*Your answer here.*". Cells tagged ``solution-only`` are left out.

The exercise notebook has no outputs, execution counts or widget state, the kernelspec
``python3``, and in ``metadata.tfcore`` the lesson, the source notebook, a hash of the
solution's cells (sources, not outputs: re-executing a solution does not make its exercise
stale) and a hash of the generated cells. If an existing exercise notebook's cells no longer
match that hash (a learner edited it), regeneration refuses unless ``--force``.

    python -m tfcore exercises            regenerate every exercises/NN_name.ipynb
    python -m tfcore exercises --check    exit 1 listing notebooks that are out of date
    python -m tfcore exercises --force    overwrite edited exercise notebooks too
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

BEGIN = re.compile(r"^(?P<indent>[ \t]*)#\s*BEGIN SOLUTION\s*$")
END = re.compile(r"^[ \t]*#\s*END SOLUTION\s*$")
HINT = re.compile(r"^[ \t]*#\s*HINT:\s*(?P<hint>.*?)\s*$")
MD_BEGIN = re.compile(r"^\s*<!--\s*BEGIN SOLUTION\s*-->\s*$")
MD_END = re.compile(r"^\s*<!--\s*END SOLUTION\s*-->\s*$")
CHECK_CALL = re.compile(r"""\bcheck\(\s*["']([\w.\-]+)["']""")

DEFAULT_HINT = "replace this line with your code"
MD_PLACEHOLDER = "*Your answer here.*"
SOLUTION_ONLY_TAG = "solution-only"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
CELL_METADATA_KEPT = ("tags", "editable", "deletable", "slideshow", "jupyter")  # jupyter: source_hidden


class MarkerError(ValueError):
    """A solution notebook whose markers do not pair up; the message names the notebook and cell."""


# ----------------------------------------------------------------------------- cells


def strip_code(source: str, where: str) -> str:
    """Replace each BEGIN/END SOLUTION block of a code cell by ``raise NotImplementedError(hint)``."""
    out: list[str] = []
    lines = source.split("\n")
    block_start: int | None = None
    for n, line in enumerate(lines, start=1):
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if block_start is not None:
                raise MarkerError(f"{where}, line {n}: nested '# BEGIN SOLUTION' (the block opened on line "
                                  f"{block_start} has no '# END SOLUTION' yet)")
            indent = begin.group("indent")
            if not indent:
                raise MarkerError(f"{where}, line {n}: '# BEGIN SOLUTION' at the top level of the cell: the stub "
                                  "would stop the exercise notebook there; put the answer inside a function")
            block_start = n
            hint_match = HINT.match(lines[n]) if n < len(lines) else None
            hint = hint_match.group("hint") if hint_match and hint_match.group("hint") else DEFAULT_HINT
            out.append(f"{indent}raise NotImplementedError({json.dumps(hint, ensure_ascii=False)})")
        elif end:
            if block_start is None:
                raise MarkerError(f"{where}, line {n}: '# END SOLUTION' without a '# BEGIN SOLUTION' before it")
            block_start = None
        elif block_start is None:
            out.append(line)
    if block_start is not None:
        raise MarkerError(f"{where}, line {block_start}: '# BEGIN SOLUTION' without a matching '# END SOLUTION'")
    return "\n".join(out)


def strip_markdown(source: str, where: str) -> str:
    """Replace each ``<!-- BEGIN SOLUTION -->`` ... ``<!-- END SOLUTION -->`` block by "*Your answer here.*"."""
    out: list[str] = []
    block_start: int | None = None
    for n, line in enumerate(source.split("\n"), start=1):
        if MD_BEGIN.match(line):
            if block_start is not None:
                raise MarkerError(f"{where}, line {n}: nested '<!-- BEGIN SOLUTION -->'")
            block_start = n
            out.append(MD_PLACEHOLDER)
        elif MD_END.match(line):
            if block_start is None:
                raise MarkerError(f"{where}, line {n}: '<!-- END SOLUTION -->' without a '<!-- BEGIN SOLUTION -->'")
            block_start = None
        elif block_start is None:
            out.append(line)
    if block_start is not None:
        raise MarkerError(f"{where}, line {block_start}: '<!-- BEGIN SOLUTION -->' without a matching "
                          "'<!-- END SOLUTION -->'")
    return "\n".join(out)


def solution_lines(nb: nbformat.NotebookNode) -> list[str]:
    """The stripped lines inside the solution blocks of a solution notebook (what must not leak)."""
    lines: list[str] = []
    for cell in nb.cells:
        if cell.cell_type not in ("code", "markdown"):
            continue
        begin, end = (BEGIN, END) if cell.cell_type == "code" else (MD_BEGIN, MD_END)
        inside = False
        for line in cell.source.split("\n"):
            if begin.match(line):
                inside = True
            elif end.match(line):
                inside = False
            elif inside and not (cell.cell_type == "code" and HINT.match(line)):
                lines.append(line.strip())
    return [line for line in lines if line]


def leaked_lines(solution_nb: nbformat.NotebookNode, exercise_nb: nbformat.NotebookNode,
                 min_length: int = 12) -> list[str]:
    """Solution lines (at least ``min_length`` characters, found nowhere else in the solution) that the exercise contains."""
    outside = []
    for cell in solution_nb.cells:
        source = strip_code(cell.source, "") if cell.cell_type == "code" else (
            strip_markdown(cell.source, "") if cell.cell_type == "markdown" else cell.source)
        outside.append(source)
    outside_text = "\n".join(outside)
    exercise_text = "\n".join(cell.source for cell in exercise_nb.cells)
    return [line for line in solution_lines(solution_nb)
            if len(line) >= min_length and line not in outside_text and line in exercise_text]


def check_calls(nb: nbformat.NotebookNode) -> list[str]:
    """The exercise IDs of the ``check("ID", ...)`` calls in the code cells, in order."""
    return [m for cell in nb.cells if cell.cell_type == "code" for m in CHECK_CALL.findall(cell.source)]


# ----------------------------------------------------------------------------- notebooks


def _sha256(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def cells_hash(nb: nbformat.NotebookNode) -> str:
    """A hash of the cells' types and sources: what a learner edits, not outputs or metadata."""
    return _sha256([[cell.cell_type, cell.source] for cell in nb.cells])


def solution_hash(nb: nbformat.NotebookNode) -> str:
    """A hash of the solution cells' types, sources and tags (outputs and execution counts left out)."""
    return _sha256([[c.cell_type, c.source, list(c.get("metadata", {}).get("tags", []))] for c in nb.cells])


def make_exercise(solution: nbformat.NotebookNode, source_name: str) -> nbformat.NotebookNode:
    """The exercise notebook for a solution notebook (``source_name`` like ``"solutions/01_attention.ipynb"``)."""
    cells = []
    for index, cell in enumerate(solution.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_ONLY_TAG in tags:
            continue
        where = f"{source_name}: cell {index} ({cell.cell_type})"
        metadata = {k: copy.deepcopy(v) for k, v in cell.get("metadata", {}).items() if k in CELL_METADATA_KEPT}
        cell_id = cell.get("id") or hashlib.sha1(f"{index}:{cell.source}".encode()).hexdigest()[:8]
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(strip_code(cell.source, where), metadata=metadata)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(strip_markdown(cell.source, where), metadata=metadata)
            if "attachments" in cell:
                new["attachments"] = copy.deepcopy(cell["attachments"])
        else:
            new = nbformat.v4.new_raw_cell(cell.source, metadata=metadata)
        new["id"] = cell_id
        cells.append(new)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.nbformat, nb.nbformat_minor = 4, 5
    lesson = Path(source_name).stem
    nb.metadata = nbformat.from_dict({
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "python"},
        "tfcore": {
            "lesson": lesson,
            "generated_from": Path(source_name).as_posix(),
            "source_sha256": solution_hash(solution),
            "content_sha256": cells_hash(nb),
        },
    })
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    """The notebook as Jupyter writes it (sorted keys, indent 1), with a trailing newline."""
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def was_edited(text: str) -> str | None:
    """Why an existing exercise notebook must not be overwritten (a learner's edits), or None if it may be."""
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as e:  # not JSON, not a notebook
        return f"it is not a readable notebook ({type(e).__name__})"
    stored = nb.get("metadata", {}).get("tfcore", {}).get("content_sha256")
    if not stored:
        return "it was not generated by `python -m tfcore exercises` (no metadata.tfcore.content_sha256)"
    if cells_hash(nb) != stored:
        return "its cells were edited since it was generated"
    return None


@dataclass
class Outcome:
    solution: Path
    exercise: Path
    status: str  # "written", "up to date", "out of date", "refused", "error"
    message: str = ""


def generate(solution_path: Path, exercise_path: Path, check: bool = False, force: bool = False,
             source_name: str | None = None) -> Outcome:
    """Generate (or with ``check``, compare) one exercise notebook."""
    try:
        solution = nbformat.read(str(solution_path), as_version=4)
        text = render(make_exercise(solution, source_name or f"{solution_path.parent.name}/{solution_path.name}"))
    except MarkerError as e:
        return Outcome(solution_path, exercise_path, "error", str(e))
    except Exception as e:
        return Outcome(solution_path, exercise_path, "error", f"{solution_path}: cannot read: {type(e).__name__}: {e}")
    existing = exercise_path.read_text(encoding="utf-8") if exercise_path.exists() else None
    if existing == text:
        return Outcome(solution_path, exercise_path, "up to date")
    if check:
        why = "missing" if existing is None else "differs from what the generator writes now"
        return Outcome(solution_path, exercise_path, "out of date", why)
    if existing is not None and not force:
        reason = was_edited(existing)
        if reason:
            return Outcome(solution_path, exercise_path, "refused",
                           f"{exercise_path}: not overwritten because {reason}. Save your work under another "
                           "name, or pass --force to replace it")
    exercise_path.parent.mkdir(parents=True, exist_ok=True)
    exercise_path.write_text(text, encoding="utf-8")
    return Outcome(solution_path, exercise_path, "written")


def _show(path: Path) -> str:
    """A path relative to the current folder when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _default_root() -> Path:
    """The folder holding solutions/: the current one if it has it, else the repository of this package."""
    here = Path.cwd()
    if (here / "solutions").is_dir():
        return here
    repo = Path(__file__).resolve().parents[1]
    return repo if (repo / "solutions").is_dir() else here


def main(argv: list[str] | None = None) -> int:
    """``python -m tfcore exercises [--check] [--force] [NOTEBOOK...]``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tfcore exercises",
                                     description="Generate exercises/*.ipynb from solutions/*.ipynb.")
    parser.add_argument("notebooks", nargs="*", help="solution notebooks to process (default: all of solutions/)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if an exercise is out of date")
    parser.add_argument("--force", action="store_true", help="overwrite exercise notebooks even if edited")
    parser.add_argument("--solutions", type=Path, help="the solutions folder (default: ./solutions)")
    parser.add_argument("--exercises", type=Path, help="the exercises folder (default: next to solutions/)")
    args = parser.parse_args(argv)

    solutions_dir = args.solutions or _default_root() / "solutions"
    exercises_dir = args.exercises or solutions_dir.parent / "exercises"
    if args.notebooks:
        sources = [Path(n) if Path(n).exists() else solutions_dir / Path(n).name for n in args.notebooks]
    else:
        if not solutions_dir.is_dir():
            print(f"no solutions folder at {solutions_dir}", file=sys.stderr)
            return 2
        sources = sorted(solutions_dir.glob("*.ipynb"))
    missing = [s for s in sources if not s.exists()]
    if missing:
        print(f"no such solution notebook: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2

    failed = False
    for source in sources:
        outcome = generate(source, exercises_dir / source.name, check=args.check, force=args.force,
                           source_name=f"{solutions_dir.name}/{source.name}")
        if outcome.status in ("written", "up to date"):
            print(f"{outcome.status}: {_show(outcome.exercise)}")
        elif outcome.status == "out of date":
            print(f"out of date: {_show(outcome.exercise)} ({outcome.message}): run `python -m tfcore exercises`")
            failed = True
        else:
            print(f"{outcome.status}: {outcome.message}", file=sys.stderr)
            failed = True
    if not args.notebooks and exercises_dir.is_dir():
        names = {s.name for s in sources}
        for orphan in sorted(p for p in exercises_dir.glob("*.ipynb") if p.name not in names):
            print(f"note: {_show(orphan)} has no solution notebook in {_show(solutions_dir)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
