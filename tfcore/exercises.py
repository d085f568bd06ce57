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
"*Your answer here.*". Cells tagged ``solution-only`` are left out. Markdown is copied as it is,
so collapsed hints survive: ``<details><summary>Hint 1: the idea</summary>`` ... ``</details>``
(a blank line after ``<summary>`` and before ``</details>``, so that the markdown inside renders).

What a learner sees without opening a hint (markdown outside ``<details>`` blocks, every code
line, stub messages included) must not give the answer away: ``leaked_lines`` lists the
solution lines it reproduces (see its docstring for the rule).

The exercise notebook has no outputs, execution counts or widget state, the kernelspec
``python3``, and in ``metadata.tfcore`` its role (``"exercise"``, how the grader tells it from a
lesson or a solution), the lesson, the source notebook, a hash of the solution's cells
(sources, not outputs: re-executing a solution does not make its exercise stale) and a hash
of the generated cells. If an existing exercise notebook's cells no longer match that hash (a
learner edited it), regeneration refuses unless ``--force``.

    python -m tfcore exercises            regenerate every exercises/NN_name.ipynb
    python -m tfcore exercises --check    exit 1 listing notebooks that are out of date
    python -m tfcore exercises --force    overwrite edited exercise notebooks too
"""

from __future__ import annotations

import argparse
import copy
import difflib
import hashlib
import io
import json
import re
import sys
import tokenize
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


LEAK_COVERAGE = 0.65  # a solution line leaks when a visible line repeats this share of it (see leaked_lines)
LEAK_MIN_TOKENS = 7  # shorter solution lines (``d = len(x)``, ``model(tokens)``) are too trivial to count
LEAK_MIN_RUN = 3  # matching runs of fewer tokens are coincidences (a shared name, "(x")
_TOKEN = re.compile(r"\w+|\S")
_LITERAL = re.compile(r"\"[^\"]*\"|'[^']*'")
_MODULE_PREFIX = re.compile(r"\b(?:torch|np|numpy|math|F)\.")
_RETURN = re.compile(r"\breturn\b")
_NAMES = r"[\w.]+(?:\s*,\s*[\w.]+)*"
_NAMES_ONLY = re.compile(rf"^(?:return\s+)?(?:{_NAMES})?(?:\s*=\s*{_NAMES})?\s*[:,]?$|^[\s()\[\]{{}},:]*$")
_DETAILS_OPEN = re.compile(r"<details\b[^>]*>", re.IGNORECASE)
_DETAILS_CLOSE = re.compile(r"</details\s*>", re.IGNORECASE)


def without_details(markdown: str) -> str:
    """The markdown without its ``<details>`` ... ``</details>`` blocks (nested ones too): what shows collapsed."""
    out, depth, pos = [], 0, 0
    tags = sorted([(m.start(), m.end(), +1) for m in _DETAILS_OPEN.finditer(markdown)]
                  + [(m.start(), m.end(), -1) for m in _DETAILS_CLOSE.finditer(markdown)])
    for begin, end, step in tags:
        if depth == 0 and step > 0:
            out.append(markdown[pos:begin])
        depth = max(depth + step, 0)
        if depth == 0:
            pos = end
    if depth == 0:
        out.append(markdown[pos:])
    return "".join(out)


def visible_lines(nb: nbformat.NotebookNode) -> list[str]:
    """What a learner reads without opening a hint: markdown outside ``<details>`` and every code line."""
    lines: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            lines += without_details(cell.source).split("\n")
        elif cell.cell_type == "code":
            lines += cell.source.split("\n")
    return [line for line in lines if line.strip()]


def _without_comment(line: str) -> str:
    """A code line without its trailing ``# comment`` (a ``#`` inside a string literal is kept)."""
    try:
        for token in tokenize.generate_tokens(io.StringIO(line).readline):
            if token.type == tokenize.COMMENT:
                return line[:token.start[1]]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return line


def _normalise(text: str) -> str:
    """No whitespace, backticks, ``return`` or prefixes ``torch.``, ``np.``, ``math.``, ``F.``: code and prose alike."""
    return re.sub(r"\s+", "", _RETURN.sub("", _MODULE_PREFIX.sub("", text.replace("`", ""))))


def is_trivial(line: str) -> bool:
    """A solution line too plain to give anything away: under LEAK_MIN_TOKENS tokens, or names only.

    Names only: ``return out``, ``a, b = x.shape``, ``else:``, a lone bracket. Comments are dropped first.
    """
    code = _without_comment(line).strip()
    return len(_tokens(code)) < LEAK_MIN_TOKENS or bool(_NAMES_ONLY.match(code))


def _tokens(text: str) -> list[str]:
    """Names and numbers whole, every other character alone: ``x @ w.T`` -> x, @, w, ., T."""
    return _TOKEN.findall(_normalise(text))


def _weights(text: str) -> list[int]:
    """The weight of each of ``_tokens(text)``: its length, but 0 inside a string literal (quotes count 1).

    A literal's text is a name the task prescribes (the keys of a dict, the bug names), not code.
    """
    text = _normalise(text)
    quoted = [False] * len(text)
    for m in _LITERAL.finditer(text):
        quoted[m.start() + 1:m.end() - 1] = [True] * (m.end() - m.start() - 2)
    return [0 if quoted[m.start()] else len(m.group()) for m in _TOKEN.finditer(text)]


def coverage(line: list[str], weights: list[int], visible: list[str]) -> float:
    """The weighted share of ``line`` (tokens) that ``visible`` repeats in order, in runs of >= LEAK_MIN_RUN tokens.

    A run of one or two tokens (a shared name, ``(x``) is a coincidence and does not count.
    """
    matcher = difflib.SequenceMatcher(None, line, visible, autojunk=False)
    matched = sum(sum(weights[b.a:b.a + b.size]) for b in matcher.get_matching_blocks() if b.size >= LEAK_MIN_RUN)
    return matched / max(sum(weights), 1)


def leaked_lines(solution_nb: nbformat.NotebookNode, exercise_nb: nbformat.NotebookNode,
                 threshold: float = LEAK_COVERAGE) -> list[str]:
    """The solution lines that the exercise notebook's visible text reproduces (as written in the solution).

    Visible text: markdown outside ``<details>`` blocks and every code line (stub messages and
    docstrings included). Both sides are normalised (no whitespace, backticks, ``return``, or
    ``torch.``/``np.``/``math.``/``F.`` prefixes; comments dropped from solution lines) and cut into
    tokens (names, numbers, single characters). A solution line leaks when one visible line repeats
    at least ``threshold`` of its characters, in order, in runs of at least 3 tokens, the text inside
    string literals not counting (dict keys and names a task prescribes are not the answer). So
    ``scores = q @ k.transpose(-2, -1) / sqrt(d)`` in a stub gives away
    ``scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])`` (0.73). Not counted: trivial lines
    (``is_trivial``), and lines the solution notebook shows verbatim in its given code.

    Why 0.65: in the course's notebooks before the hints moved into ``<details>``, the stubs and
    docstrings that gave an answer away scored 0.65 to 1.0, while what the rewritten statements share
    with their answers (a formula in words, a signature, shapes) stays at or below 0.56.
    ``leak_scores`` lists every score.
    """
    return [raw for score, raw, _ in leak_scores(solution_nb, exercise_nb) if score >= threshold]


def leak_scores(solution_nb: nbformat.NotebookNode, exercise_nb: nbformat.NotebookNode) -> list[tuple[float, str, str]]:
    """(best coverage, solution line, the visible line reaching it) for every countable solution line, best first."""
    given = {_normalise(_without_comment(line))
             for cell in solution_nb.cells if cell.cell_type == "code"
             for line in strip_code(cell.source, "").split("\n") if line.strip()}
    visible = [(_tokens(line), line.strip()) for line in visible_lines(exercise_nb)]
    scores = []
    for raw in solution_lines(solution_nb):
        if is_trivial(raw):
            continue
        line = _normalise(_without_comment(raw))
        if line in given:
            continue
        tokens, weights = _tokens(line), _weights(line)
        best = max(((coverage(tokens, weights, t), v) for t, v in visible), default=(0.0, ""))
        scores.append((best[0], raw, best[1]))
    return sorted(scores, key=lambda s: -s[0])


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
            "role": "exercise",
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
