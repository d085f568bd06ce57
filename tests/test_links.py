"""Every relative link in the course's notebooks and pages points to a file that exists (issue 15 §1.9).

Scanned: the markdown cells of every notebook in notebooks/, solutions/ and exercises/, and
README.md and CONTRIBUTING.md. A link is a markdown link or image (``[text](target)``,
``![alt](target)``, ``[name]: target``) or an HTML ``href``/``src`` attribute. Web links
(``https:``, ``mailto:`` ...) and links to an anchor of the same page (``#section``) are not
followed; the anchor of a link to another file (``file.ipynb#section``) is dropped and only the
file is checked. Code (fenced blocks and inline spans) holds no links.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_FOLDERS = ("notebooks", "solutions", "exercises")
PAGES = ("README.md", "CONTRIBUTING.md")

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.DOTALL)
_INLINE = re.compile(r"!?\[[^\]]*\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+[\"'(][^)]*)?\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.MULTILINE)
_HTML = re.compile(r"\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def link_targets(markdown: str) -> list[str]:
    """The link targets written in ``markdown``, in order, outside code."""
    text = _FENCE.sub("", markdown)
    text = _CODE_SPAN.sub("code", text)  # `[link text in code](target)` stays a link
    found = [m.group(1) for pattern in (_INLINE, _REFERENCE, _HTML) for m in pattern.finditer(text)]
    return [t[1:-1] if t.startswith("<") and t.endswith(">") else t for t in found]


def local_file(target: str) -> str | None:
    """The file part of a relative link, or None for a web link or an anchor on the same page."""
    if _SCHEME.match(target) or target.startswith(("#", "//")):
        return None
    path = unquote(target.split("#", 1)[0].split("?", 1)[0])
    return path or None


def documents() -> list[tuple[Path, str]]:
    """(file, its markdown) for the pages and for every markdown cell of every notebook."""
    docs = [(ROOT / page, (ROOT / page).read_text(encoding="utf-8")) for page in PAGES]
    for folder in NOTEBOOK_FOLDERS:
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            docs += [(path, cell.source) for cell in nb.cells if cell.cell_type == "markdown"]
    return docs


def broken_links(docs: list[tuple[Path, str]], root: Path = ROOT) -> list[str]:
    """'file: target' (file relative to ``root``) for every relative link whose file does not exist.

    A target is resolved from the folder of the file that holds the link."""
    broken = []
    for path, markdown in docs:
        for target in link_targets(markdown):
            file = local_file(target)
            if file is not None and not (path.parent / file).exists():
                broken.append(f"{path.relative_to(root)}: {target}")
    return broken


def test_the_documents_are_found():
    notebooks = {path for path, _ in documents() if path.suffix == ".ipynb"}
    for folder in NOTEBOOK_FOLDERS:
        assert any(p.parent.name == folder for p in notebooks), f"no notebooks found in {folder}/"
    assert sum(len(link_targets(md)) for _, md in documents()) >= 20, "too few links found: is the parser broken?"


def test_every_relative_link_points_to_a_file_that_exists():
    broken = broken_links(documents())
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


@pytest.mark.parametrize("markdown, targets", [
    ("**Next:** [02 Masks](02_masks.ipynb): how to hide keys", ["02_masks.ipynb"]),
    ("[`../exercises/01_attention.ipynb`](../exercises/01_attention.ipynb)", ["../exercises/01_attention.ipynb"]),
    ('![a figure](img/fig.png "the title") and [spaced](<a b.md>)', ["img/fig.png", "a b.md"]),
    ("[ref]: ../README.md\n<a href='x.ipynb#top'>x</a> <img src=\"p.svg\">", ["../README.md", "x.ipynb#top", "p.svg"]),
    ("code is no link: `a[i](j)` and\n```python\nx = d[k](v)\n```\n", []),
])
def test_link_targets_are_read_from_markdown(markdown, targets):
    assert sorted(link_targets(markdown)) == sorted(targets)


@pytest.mark.parametrize("target, file", [
    ("03_heads.ipynb", "03_heads.ipynb"), ("../README.md#setup", "../README.md"), ("a%20b.md", "a b.md"),
    ("https://pytorch.org", None), ("mailto:x@y.z", None), ("#section-7", None),
])
def test_web_links_and_same_page_anchors_are_not_followed(target, file):
    assert local_file(target) == file


def test_a_link_to_a_missing_file_is_reported(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "03_heads.ipynb").write_text("{}")
    page = tmp_path / "notebooks" / "02_masks.ipynb"
    docs = [(page, "[03 Heads](03_heads.ipynb), [old name](03_multihead.ipynb), [web](https://x.org/a.ipynb)")]
    assert broken_links(docs, tmp_path) == ["notebooks/02_masks.ipynb: 03_multihead.ipynb"]
