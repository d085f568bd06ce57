"""Every notebook names the kernel `make setup` installs, exactly as the kernel names itself (issue 19).

JupyterLab compares a notebook's saved ``metadata.kernelspec`` with the kernel it starts; when the
display name differs ("Python 3" against "Python 3 (ipykernel)") it rewrites the metadata, and the
notebook opens with the "unsaved changes" dot. So every notebook in notebooks/, solutions/,
exercises/ and tests/browser/ must carry the installed ``python3`` kernel's name, display name and
language.

To fix the saved metadata (only the ``kernelspec`` field changes; outputs and ids stay):

    .venv/bin/python tests/test_notebook_kernels.py --fix [NOTEBOOK...]

then regenerate the exercise notebooks (``python -m tfcore exercises``) if solutions changed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("notebooks", "solutions", "exercises", "tests/browser")
NOTEBOOKS = sorted(p for folder in FOLDERS for p in (ROOT / folder).glob("*.ipynb"))


def installed_kernelspec() -> dict[str, str]:
    """name, display_name and language of the ``python3`` kernel of this environment (ipykernel's own spec)."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    return {"name": "python3", "display_name": spec.display_name, "language": spec.language}


def fix_kernelspecs(paths, kernelspec: dict[str, str] | None = None) -> list[Path]:
    """Set ``metadata.kernelspec`` of each notebook to the installed kernel's; returns the files changed.

    The file is rewritten as Jupyter writes it (nbformat's JSON: one-space indent, sorted keys),
    so only the kernelspec lines change in a notebook Jupyter saved.
    """
    import nbformat

    kernelspec = kernelspec or installed_kernelspec()
    changed = []
    for path in map(Path, paths):
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if dict(nb.metadata.get("kernelspec", {})) != kernelspec:
            nb.metadata["kernelspec"] = dict(kernelspec)
            nbformat.write(nb, path)
            changed.append(path)
    return changed


def test_the_notebooks_are_found():
    assert len([p for p in NOTEBOOKS if p.parent.name == "notebooks"]) >= 10


def test_exercise_generator_writes_the_installed_kernelspec():
    from tfcore.exercises import KERNELSPEC

    assert KERNELSPEC == installed_kernelspec()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_names_the_installed_kernel(path):
    saved = json.loads(path.read_text())["metadata"].get("kernelspec")
    expected = installed_kernelspec()
    assert saved == expected, (f"{path.relative_to(ROOT)} has kernelspec {saved}, the installed kernel is {expected}: "
                               f"JupyterLab would mark it changed on opening. Fix it with "
                               f"`.venv/bin/python tests/test_notebook_kernels.py --fix {path.relative_to(ROOT)}`")


def test_fix_changes_only_the_kernelspec(tmp_path):
    source = next(p for p in NOTEBOOKS if p.parent.name == "notebooks")
    copy = tmp_path / source.name
    nb = json.loads(source.read_text())
    nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    copy.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    assert fix_kernelspecs([copy]) == [copy]
    fixed = json.loads(copy.read_text())
    assert fixed["metadata"]["kernelspec"] == installed_kernelspec()
    fixed["metadata"]["kernelspec"] = nb["metadata"]["kernelspec"]
    assert fixed == nb  # cells, outputs and the rest of the metadata untouched
    assert fix_kernelspecs([copy]) == []  # already right: not rewritten


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] != "--fix":
        sys.exit(__doc__)
    changed = fix_kernelspecs(args[1:] or NOTEBOOKS)
    print("\n".join(f"fixed {p.relative_to(ROOT) if p.is_absolute() and ROOT in p.parents else p}" for p in changed)
          or "every notebook already names the installed kernel")
