"""Collapsed hints in a real JupyterLab: ``<details>`` blocks of an exercise notebook render closed, open on a click.

Uses the JupyterLab + Playwright + Debian chromium harness of tests/test_browser.py (skipped the same
way when chromium or playwright is missing). It opens a copy of exercises/05_norms.ipynb and checks,
in the rendered markdown: every hint block is a closed ``<details>`` whose summary reads
"Hint N: ..."; the hint's text is hidden until its summary is clicked; then its formulas are typeset
by MathJax and its code block is a ``<pre>``. A screenshot goes to tests/browser/out/hints.png.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
import pytest

from test_browser import CHROMIUM, CHROMIUM_FLAGS, OUT, ROOT, Lab, _requirements

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = ROOT / "exercises" / "05_norms.ipynb"
DEADLINE_S = 120


def test_hints_render_collapsed_and_open_on_click(tmp_path):
    sync_playwright = _requirements()
    start = time.monotonic()

    def left() -> float:
        return max(1000.0, 1000 * (DEADLINE_S - (time.monotonic() - start)))

    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    expected = sum(c.source.count("<details>") for c in nb.cells if c.cell_type == "markdown")
    assert expected >= 4
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    lab = Lab(root, tmp_path)
    try:
        lab.wait_ready(timeout=40)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 12000})
                page.goto(f"{lab.base}/lab/tree/{NOTEBOOK.name}?token={lab.token}", timeout=left())
                details = page.locator(".jp-RenderedMarkdown details")
                page.wait_for_function(f"() => document.querySelectorAll('.jp-RenderedMarkdown details').length"
                                       f" >= {expected}", timeout=left())
                assert details.count() == expected
                summaries = page.locator(".jp-RenderedMarkdown details > summary").all_inner_texts()
                assert all(s.startswith(("Hint 1: ", "Hint 2: ", "Hint 3: ")) for s in summaries), summaries
                assert all(d.get_attribute("open") is None for d in details.all())  # collapsed by default

                second = details.nth(1)  # exercise 1's "Hint 2: the formula ...": prose, formulas
                paragraph = second.locator("p").first
                assert not paragraph.is_visible()
                second.locator("summary").click()
                paragraph.wait_for(state="visible", timeout=left())
                assert second.get_attribute("open") is not None
                page.wait_for_function("el => el.querySelector('mjx-container') !== null",
                                       arg=second.element_handle(), timeout=left())
                third = details.nth(2)  # "Hint 3: nearly the code": a code block
                third.locator("summary").click()
                third.locator("pre").wait_for(state="visible", timeout=left())
                assert "math.sqrt" in third.locator("pre").inner_text()
                cell = page.locator(".jp-MarkdownCell").filter(has=page.locator("details")).first
                cell.scroll_into_view_if_needed()
                shot = tmp_path / "hints.png"
                cell.screenshot(path=str(shot))
                OUT.mkdir(exist_ok=True)
                shutil.copy(shot, OUT / shot.name)
            finally:
                browser.close()
    finally:
        lab.stop()
