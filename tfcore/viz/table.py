"""Table: rows of results that a notebook shows as an HTML table, whose cells wrap in place (no wrapped print lines)."""

from __future__ import annotations

import html
from typing import Sequence


class Table:
    """A small table for a notebook cell's output: HTML in JupyterLab, aligned text elsewhere.

    columns: the header, one string per column. rows: each a sequence with one value per column
    (strings are shown as they are, numbers with ``str``). The last expression of a cell displays
    it; both forms are deterministic, so nbval can compare them (format numbers before passing
    them in). Columns after the first are right-aligned when every value in them is a number.
    """

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence], title: str | None = None) -> None:
        if isinstance(columns, str) or not isinstance(columns, Sequence) or not columns:
            raise ValueError(f"columns must be a non-empty list of headers (one string per column), got {columns!r}")
        if isinstance(rows, str) or not isinstance(rows, Sequence) or \
                any(isinstance(r, str) or not isinstance(r, Sequence) for r in rows):
            raise TypeError(f"rows must be a list of rows, each a list of values, got {rows!r}")
        self.columns = [str(c) for c in columns]
        self.rows = [list(r) for r in rows]
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"rows[{i}] has {len(row)} values but there are {len(self.columns)} columns")
        self.title = title
        self.numeric = [bool(self.rows) and all(isinstance(r[j], (int, float)) for r in self.rows)
                        for j in range(len(self.columns))]

    def _cells(self) -> list[list[str]]:
        return [[str(v) for v in row] for row in self.rows]

    def _repr_html_(self) -> str:
        def cell(tag: str, text: str, j: int) -> str:
            align = "right" if self.numeric[j] else "left"
            return f'<{tag} style="text-align:{align}">{html.escape(text)}</{tag}>'

        head = "".join(cell("th", c, j) for j, c in enumerate(self.columns))
        body = "".join("<tr>" + "".join(cell("td", v, j) for j, v in enumerate(row)) + "</tr>" for row in self._cells())
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        cells = [self.columns] + self._cells()
        widths = [max(len(r[j]) for r in cells) for j in range(len(self.columns))]
        lines = [("  ".join(v.rjust(w) if self.numeric[j] else v.ljust(w) for j, (v, w) in
                            enumerate(zip(r, widths)))).rstrip() for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(([self.title] if self.title else []) + lines)
