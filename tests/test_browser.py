"""The explorer widgets in a real browser: JupyterLab driven through Playwright and Debian's chromium.

Starts ``jupyter lab`` on 127.0.0.1 (random free port, a token, a temporary root holding a
copy of tests/browser/explorer.ipynb), opens the notebook in headless chromium, runs every
cell, and checks that the AttentionExplorer and MaskExplorer render, that moving the head
slider, the layer dropdown and the view buttons changes the heatmap, and that no widget
failed to display. Screenshots go to pytest's tmp_path; the last ones are copied to
tests/browser/out/ (git-ignored) for a human to look at.

Needs ``/usr/bin/chromium`` (``make browser-deps``, or ``apt-get install chromium``) and the
``playwright`` Python package (never ``playwright install``: no browser download).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "tests" / "browser" / "explorer.ipynb"
OUT = ROOT / "tests" / "browser" / "out"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-default-apps", "--disable-extensions", "--disable-sync",
                  "--no-first-run", "--mute-audio"]
DEADLINE_S = 150  # a hard cap for every wait; on an idle 2-core machine the test takes about 40 s


def _requirements():
    if not CHROMIUM.exists():
        pytest.skip("CHROMIUM NOT INSTALLED: /usr/bin/chromium is missing, so the browser test cannot run. "
                    "Install Debian's chromium: `make browser-deps` or `sudo apt-get install -y chromium`")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("PLAYWRIGHT NOT INSTALLED: pip install playwright (the Python package only; "
                    "do not run `playwright install`, the test drives /usr/bin/chromium)")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server in its own process group, always stopped (kernels first) by ``stop``."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.port, self.token = _free_port(), uuid.uuid4().hex
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "JUPYTER_PATH")}
        env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                   JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
                   JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
                   JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"), IPYTHONDIR=str(tmp / "ipython"),
                   JUPYTER_PLATFORM_DIRS="1")
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
               "--ServerApp.open_browser=False"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        # Only what the test needs: no language servers, terminals or classic-notebook shim (faster start).
        (tmp / "config").mkdir(exist_ok=True)
        (tmp / "config" / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {
            "jpserver_extensions": {"jupyter_lsp": False, "jupyter_server_terminals": False, "notebook_shim": False},
            "terminals_enabled": False}}))
        # No "get notified about Jupyter news?" toast over the screenshots.
        settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
        self.log_path = tmp / "jupyter.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=root,
                                     start_new_session=True)

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            body = r.read()
        return json.loads(body) if body else None

    def wait_ready(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                self.api("/api/status")
                return
            except OSError:
                time.sleep(0.25)
        raise TimeoutError(f"jupyter lab did not answer within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        try:  # kernels run in their own sessions: ask the server to shut them down first
            for kernel in self.api("/api/kernels") or []:
                self.api(f"/api/kernels/{kernel['id']}", method="DELETE")
        except Exception:
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the process group this test started
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.log.close()


KERNEL_IDLE_AND_ALL_RUN = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    if (!panel || !panel.sessionContext || !panel.content) return false;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    if (!kernel || kernel.status !== 'idle') return false;
    return panel.content.widgets.every(c => c.model.type !== 'code' || c.model.executionCount !== null);
}"""

KERNEL_IDLE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const ctx = panel && panel.sessionContext;
    return !!(ctx && ctx.session && ctx.session.kernel && ctx.session.kernel.status === 'idle'
              && !ctx.session.kernel.hasPendingInput && ctx.isReady);
}"""


def test_explorer_in_jupyterlab(tmp_path):
    sync_playwright = _requirements()
    start = time.monotonic()

    def left() -> float:  # milliseconds left of the whole test's budget
        return max(1000.0, 1000 * (DEADLINE_S - (time.monotonic() - start)))

    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    lab = Lab(root, tmp_path)
    shots: list[Path] = []
    marks: dict[str, float] = {}

    def mark(what: str) -> None:  # printed at the end: where the time went
        marks[what] = round(time.monotonic() - start, 1)

    try:
        lab.wait_ready(timeout=40)
        mark("server up")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 2000})
                console_errors: list[str] = []
                page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
                page.goto(f"{lab.base}/lab/tree/{NOTEBOOK.name}?token={lab.token}", timeout=left())
                page.wait_for_function(KERNEL_IDLE, timeout=left())
                mark("lab loaded, kernel idle")
                page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
                page.wait_for_function(KERNEL_IDLE_AND_ALL_RUN, timeout=left(), polling=250)
                mark("cells run")

                heatmap, status = page.locator("img.tfcore-heatmap"), page.locator(".tfcore-status")
                heatmap.wait_for(state="visible", timeout=left())
                assert page.locator("img.tfcore-row").is_visible()
                assert page.locator("img.tfcore-mask-image").is_visible()
                assert page.locator(".tfcore-explorer .widget-slider").count() >= 3  # head, vs head, query
                assert page.locator(".tfcore-explorer .widget-dropdown select").count() == 1  # layer
                assert page.locator(".tfcore-head .widget-readout").inner_text().strip() == "0"
                assert "decoder.0.attn" in page.locator(".tfcore-status").inner_text()
                shots.append(_shot(page, tmp_path / "explorer-initial.png"))

                def changed(action, what: str) -> None:
                    """Do something; wait for a new heatmap and a new status line (the explorer sets it last)."""
                    before = [heatmap.get_attribute("src"), status.inner_text()]
                    action()
                    try:
                        page.wait_for_function(
                            """([src, text]) => document.querySelector('img.tfcore-heatmap').src !== src
                                && document.querySelector('.tfcore-status').innerText !== text""",
                            arg=before, timeout=min(left(), 45000))
                    except Exception as e:
                        now = [heatmap.get_attribute("src"), status.inner_text()]
                        raise AssertionError(f"the heatmap or the status did not change after {what}: "
                                             f"before {before}, now {now}") from e

                # The head slider, from the keyboard: focus its handle and press the right arrow.
                def head_right():
                    handle = page.locator(".tfcore-head .noUi-handle")
                    handle.focus()
                    page.keyboard.press("ArrowRight")

                changed(head_right, "moving the head slider")
                assert page.locator(".tfcore-head .widget-readout").inner_text().strip() == "1"
                changed(lambda: page.locator(".tfcore-layer select").select_option(index=1),
                        "choosing another layer")
                page.wait_for_function(
                    "() => document.querySelector('.tfcore-status').innerText.includes('decoder.1.attn')",
                    timeout=min(left(), 45000))
                changed(lambda: page.locator(".tfcore-view button", has_text="compare").click(),
                        "the compare view")
                assert page.locator(".tfcore-compare-head .widget-readout").inner_text().strip() == "2"
                assert "head 1" in status.inner_text() and "head 2" in status.inner_text()
                shots.append(_shot(page, tmp_path / "explorer.png"))
                changed(lambda: page.locator(".tfcore-view button", has_text="all heads").click(),
                        "the all-heads view")
                shots.append(_shot(page, tmp_path / "explorer-all-heads.png"))

                mask_image = page.locator("img.tfcore-mask-image")
                before = mask_image.get_attribute("src")
                page.locator(".tfcore-mask-explorer button", has_text="prefix-LM").click()
                page.wait_for_function("old => document.querySelector('img.tfcore-mask-image').src !== old",
                                       arg=before, timeout=min(left(), 45000))
                mask_shot = tmp_path / "mask-explorer.png"
                page.locator(".tfcore-mask-explorer").scroll_into_view_if_needed()
                page.locator(".tfcore-mask-explorer").screenshot(path=str(mask_shot))
                shots.append(mask_shot)

                html = page.content()
                assert "Error displaying widget" not in html
                assert "Traceback" not in page.locator(".jp-OutputArea").all_inner_texts().__str__()
                mark("controls checked")
                widget_errors = [e for e in console_errors if "widget" in e.lower()]
                assert not widget_errors, widget_errors
            finally:
                browser.close()
    finally:
        lab.stop()
        mark("server stopped")
        print("browser test timings (s since start):", marks)
        OUT.mkdir(exist_ok=True)
        for shot in shots:
            shutil.copy(shot, OUT / shot.name)


def _shot(page, path: Path) -> Path:
    """A screenshot of the explorer's whole output (beyond the viewport if need be)."""
    explorer = page.locator(".tfcore-explorer")
    explorer.scroll_into_view_if_needed()
    explorer.screenshot(path=str(path))
    return path
