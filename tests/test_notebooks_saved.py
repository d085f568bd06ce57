"""Lesson and solution notebooks are saved executed: nbval only compares outputs that were saved.

A code cell saved without running has no outputs, so nbval would pass it whatever it now prints.
Cells tagged ``nbval-skip`` are exempt: nbval never runs them (lesson 03's GPT-2 download, which needs
network access, is one; it is also tagged ``skip-execution`` so that ``nbconvert --execute`` skips it).
"""

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAVED_EXECUTED = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))


@pytest.mark.parametrize("path", SAVED_EXECUTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_is_saved_executed(path):
    nb = nbformat.read(path, as_version=4)
    never_run = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()
                 and c.get("execution_count") is None and "nbval-skip" not in c.metadata.get("tags", [])]
    assert not never_run, (f"{path.name}: code cells {never_run} were saved without running; "
                           f"re-run it with `jupyter nbconvert --to notebook --execute --inplace {path}`")
