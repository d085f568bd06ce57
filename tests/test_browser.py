"""The widgets in a real browser: JupyterLab driven through Playwright and Debian's chromium.

Starts one ``jupyter lab`` for the module on 127.0.0.1 (random free port, a token, a temporary
root holding copies of the notebooks in tests/browser/), opens each notebook in headless
chromium at 1400 x 1000 (the size issue 19 was judged at), runs every cell and drives the
widgets' controls:

- explorer.ipynb: the AttentionExplorer (head slider, query slider from the first query,
  layer dropdown, the three views; the widget fits the window) and the MaskExplorer;
- lessons.ipynb: every control of the widgets of lessons 04, 05, 07 and 08;
- a notebook saved with the widgets' display data but no widget state, opened without
  running: each output shows the widget's static picture, not its text.

Each control must change the widget's picture and its status line, and no widget may fail to
display. Screenshots go to pytest's tmp_path; the last ones are copied to tests/browser/out/
(git-ignored) for a human to look at.

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
BROWSER = ROOT / "tests" / "browser"
NOTEBOOKS = ("explorer.ipynb", "lessons.ipynb")
OUT = ROOT / "tests" / "browser" / "out"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-default-apps", "--disable-extensions", "--disable-sync",
                  "--no-first-run", "--mute-audio"]
DEADLINE_S = 150  # a hard cap for every wait of one test; on an idle 2-core machine each takes 15-40 s
VIEWPORT = {"width": 1400, "height": 1000}


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


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One JupyterLab server for the module, serving copies of the notebooks in tests/browser/."""
    _requirements()
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    root.mkdir()
    for name in NOTEBOOKS:
        shutil.copy(BROWSER / name, root / name)
    server = Lab(root, tmp)
    try:
        server.wait_ready(timeout=40)
        server.root = root
        yield server
    finally:
        server.stop()


class Session:
    """One notebook open in chromium, with a deadline, timing marks and a screenshot list."""

    def __init__(self, playwright, lab: Lab, name: str, tmp_path: Path, run: bool = True) -> None:
        self.start, self.tmp, self.shots, self.marks = time.monotonic(), tmp_path, [], {}
        self.browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        self.page = page = self.browser.new_page(viewport=VIEWPORT)
        self.console_errors: list[str] = []
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        # ?reset: a fresh workspace, so that notebooks an earlier test opened are not reopened beside this one
        page.goto(f"{lab.base}/lab/tree/{name}?reset&token={lab.token}", timeout=self.left())
        if run:
            page.wait_for_function(KERNEL_IDLE, timeout=self.left())
            self.mark("lab loaded, kernel idle")
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_function(KERNEL_IDLE_AND_ALL_RUN, timeout=self.left(), polling=250)
            self.mark("cells run")

    def left(self) -> float:  # milliseconds left of the test's budget
        return max(1000.0, 1000 * (DEADLINE_S - (time.monotonic() - self.start)))

    def mark(self, what: str) -> None:  # printed at the end: where the time went
        self.marks[what] = round(time.monotonic() - self.start, 1)

    def changed(self, scope: str, action, what: str, image: str = "img") -> None:
        """Do something; wait until the picture and the status line inside ``scope`` both change."""
        page = self.page
        image_sel, status_sel = f"{scope} {image}", f"{scope} .tfcore-status"
        before = [page.locator(image_sel).first.get_attribute("src"), page.locator(status_sel).first.inner_text()]
        action()
        try:
            page.wait_for_function(
                """([img, status, src, text]) => document.querySelector(img).src !== src
                    && document.querySelector(status).innerText !== text""",
                arg=[image_sel, status_sel] + before, timeout=min(self.left(), 45000))
        except Exception as e:
            now = [page.locator(image_sel).first.get_attribute("src"), page.locator(status_sel).first.inner_text()]
            raise AssertionError(f"the picture or the status of {scope} did not change after {what}: "
                                 f"before {before[1]!r}, now {now[1]!r}") from e

    def key(self, slider: str, key: str) -> None:
        """Focus a slider's handle and press a key (ArrowRight, ArrowUp, ...)."""
        handle = self.page.locator(f"{slider} .noUi-handle")
        handle.focus()
        self.page.keyboard.press(key)

    def readout(self, slider: str) -> str:
        return self.page.locator(f"{slider} .widget-readout").inner_text().strip()

    def shot(self, selector: str, name: str) -> None:
        element = self.page.locator(selector)
        element.scroll_into_view_if_needed()
        path = self.tmp / name
        element.screenshot(path=str(path))
        self.shots.append(path)

    def check_no_widget_errors(self) -> None:
        assert "Error displaying widget" not in self.page.content()
        assert "Traceback" not in str(self.page.locator(".jp-OutputArea").all_inner_texts())
        widget_errors = [e for e in self.console_errors if "widget" in e.lower()]
        assert not widget_errors, widget_errors

    def close(self, test: str) -> None:
        self.browser.close()
        self.mark("done")
        print(f"{test} timings (s since start):", self.marks)
        OUT.mkdir(exist_ok=True)
        for shot in self.shots:
            shutil.copy(shot, OUT / shot.name)


def _notebook_height(page) -> float:
    """The height of the notebook's scrolling area: the window less JupyterLab's menus, toolbar and status bar."""
    return page.evaluate("() => document.querySelector('.jp-NotebookPanel-notebook').getBoundingClientRect().height")


def test_explorer_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        s = Session(p, lab, "explorer.ipynb", tmp_path)
        page = s.page
        try:
            explorer = ".tfcore-explorer"
            page.locator("img.tfcore-heatmap").wait_for(state="visible", timeout=s.left())
            assert page.locator("img.tfcore-row").is_visible()
            assert page.locator("img.tfcore-mask-image").is_visible()
            assert page.locator(".tfcore-explorer .widget-slider").count() >= 3  # head, vs head, query
            assert page.locator(".tfcore-explorer .widget-dropdown select").count() == 1  # layer
            assert s.readout(".tfcore-head") == "0" and s.readout(".tfcore-query") == "0"  # the first query
            assert "decoder.0.attn" in page.locator(".tfcore-explorer .tfcore-status").inner_text()
            room = _notebook_height(page)
            s.shot(explorer, "explorer-initial.png")

            s.changed(explorer, lambda: s.key(".tfcore-head", "ArrowRight"), "moving the head slider",
                      "img.tfcore-heatmap")
            assert s.readout(".tfcore-head") == "1"
            s.changed(explorer, lambda: s.key(".tfcore-query", "ArrowRight"), "the query slider's next step",
                      "img.tfcore-row")
            assert s.readout(".tfcore-query") == "1"
            s.changed(explorer, lambda: page.locator(".tfcore-layer select").select_option(index=1),
                      "choosing another layer", "img.tfcore-heatmap")
            page.wait_for_function(
                "() => document.querySelector('.tfcore-explorer .tfcore-status').innerText.includes('decoder.1.attn')",
                timeout=min(s.left(), 45000))
            height = page.locator(explorer).bounding_box()["height"]
            assert height <= room, f"head view: the explorer is {height:.0f} px tall, the notebook shows {room:.0f}"
            s.changed(explorer, lambda: page.locator(".tfcore-view button", has_text="compare").click(),
                      "the compare view", "img.tfcore-heatmap")
            assert s.readout(".tfcore-compare-head") == "2"
            status = page.locator(".tfcore-explorer .tfcore-status").inner_text()
            assert "head 1" in status and "head 2" in status
            height = page.locator(explorer).bounding_box()["height"]
            assert height <= room, f"compare view: the explorer is {height:.0f} px tall, the notebook shows {room:.0f}"
            s.shot(explorer, "explorer.png")
            heatmap = page.locator("img.tfcore-heatmap")
            before = heatmap.get_attribute("src")
            page.locator(".tfcore-view button", has_text="all heads").click()
            page.wait_for_function("old => document.querySelector('img.tfcore-heatmap').src !== old", arg=before,
                                   timeout=min(s.left(), 45000))
            s.shot(explorer, "explorer-all-heads.png")
            natural, shown = page.evaluate("""() => { const i = document.querySelector('img.tfcore-heatmap');
                return [i.naturalWidth, i.getBoundingClientRect().width]; }""")
            assert shown == pytest.approx(natural, abs=1), "pictures are shown at their own size, not stretched"

            s.changed(".tfcore-mask-explorer",
                      lambda: page.locator(".tfcore-mask-explorer button", has_text="prefix-LM").click(),
                      "the prefix-LM mask", "img.tfcore-mask-image")
            s.shot(".tfcore-mask-explorer", "mask-explorer.png")
            s.check_no_widget_errors()
            s.mark("controls checked")
        finally:
            s.close("explorer")


def test_lesson_widgets_in_jupyterlab(lab, tmp_path):
    """Every control of the widgets of lessons 04, 05, 07 and 08 redraws its picture and its numbers."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        s = Session(p, lab, "lessons.ipynb", tmp_path)
        page = s.page
        try:
            room = _notebook_height(page)
            for scope in (".tfcore-neuron", ".tfcore-norms", ".tfcore-rope", ".tfcore-cost"):
                page.locator(f"{scope} img").wait_for(state="visible", timeout=s.left())

            w = ".tfcore-neuron"  # 04: one MLP unit
            s.shot(w, "neuron-initial.png")
            s.changed(w, lambda: s.key(".tfcore-along", "ArrowRight"), "moving the input along the key")
            assert s.readout(".tfcore-along") == "1.05"
            s.changed(w, lambda: page.locator(f"{w} button", has_text="SwiGLU").click(), "choosing SwiGLU")
            s.changed(w, lambda: s.key(".tfcore-across", "ArrowLeft"), "moving the input across the key")
            assert "SwiGLU" in page.locator(f"{w} .tfcore-status").inner_text()
            s.shot(w, "neuron.png")

            w = ".tfcore-norms"  # 05: LayerNorm and RMSNorm
            s.shot(w, "norms-initial.png")
            s.changed(w, lambda: s.key(".tfcore-component-2", "ArrowUp"), "dragging a component up")
            assert s.readout(".tfcore-component-2") == "2.05"
            s.changed(w, lambda: s.key(".tfcore-shift", "ArrowRight"), "the shift slider")
            s.changed(w, lambda: s.key(".tfcore-scale", "ArrowRight"), "the scale slider")
            s.shot(w, "norms.png")

            w = ".tfcore-rope"  # 07: RoPE
            s.shot(w, "rope-initial.png")
            s.changed(w, lambda: s.key(".tfcore-query-pos", "ArrowRight"), "moving the query position")
            assert "offset m − n = 4" in page.locator(f"{w} .tfcore-status").inner_text()
            s.changed(w, lambda: s.key(".tfcore-key-pos", "ArrowRight"), "moving the key position")
            assert "offset m − n = 3" in page.locator(f"{w} .tfcore-status").inner_text()
            s.changed(w, lambda: page.locator(f"{w} .tfcore-pair button").nth(1).click(), "another channel pair")
            s.shot(w, "rope.png")

            w = ".tfcore-cost"  # 08: the cost calculator
            s.shot(w, "cost-initial.png")
            s.changed(w, lambda: page.locator(".tfcore-model select").select_option("Llama-2 7B"), "a named model")
            assert "6,738.4 M" in page.locator(f"{w} .tfcore-status").inner_text()
            s.changed(w, lambda: s.key(".tfcore-seq-len", "ArrowRight"), "a longer sequence")
            assert s.readout(".tfcore-seq-len") == "8192"

            def type_into(box: str, text: str) -> None:
                page.locator(box).fill(text)
                page.locator(box).press("Enter")

            s.changed(w, lambda: type_into(".tfcore-n-kv-heads input", "8"), "fewer KV heads")
            assert "custom (based on Llama-2 7B)" in page.locator(f"{w} .tfcore-status").inner_text()
            s.changed(w, lambda: page.locator(f"{w} .tfcore-dtype button", has_text="float32").click(), "float32")
            s.changed(w, lambda: page.locator(f"{w} .tfcore-mlp button", has_text="GELU").click(), "a GELU MLP")
            s.changed(w, lambda: type_into(".tfcore-batch input", "2"), "batch 2")
            s.shot(w, "cost.png")
            for scope in (".tfcore-neuron", ".tfcore-norms", ".tfcore-rope", ".tfcore-cost"):
                height = page.locator(scope).bounding_box()["height"]
                assert height <= room, f"{scope} is {height:.0f} px tall, the notebook shows {room:.0f}"
            s.check_no_widget_errors()
            s.mark("controls checked")
        finally:
            s.close("lesson widgets")


def test_saved_notebook_shows_static_pictures(lab, tmp_path):
    """Opened without running and without widget state, each widget output shows its picture, not its text."""
    import nbformat
    import torch
    from nbformat.v4 import new_code_cell, new_notebook, new_output
    from playwright.sync_api import sync_playwright

    from tfcore.data import CharTokenizer
    from tfcore.model import Transformer, TransformerConfig
    from tfcore.viz import AttentionExplorer, CostCalculator, MaskExplorer, NeuronExplorer, NormExplorer, RopeExplorer

    torch.manual_seed(0)
    tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz .,\n")
    model = Transformer(TransformerConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4))
    widgets = [AttentionExplorer(model, tok, "the cat sat on the mat."), MaskExplorer(), NeuronExplorer(),
               NormExplorer(), RopeExplorer(), CostCalculator()]
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                               "language": "python"}})
    for i, w in enumerate(widgets):  # as a kernel would have saved them, minus the widget state
        cell = new_code_cell(f"{type(w).__name__}(...)", execution_count=i + 1)
        cell.outputs = [new_output("execute_result", data=w._repr_mimebundle_(), execution_count=i + 1)]
        nb.cells.append(cell)
    nbformat.write(nb, lab.root / "saved.ipynb")

    with sync_playwright() as p:
        s = Session(p, lab, "saved.ipynb", tmp_path, run=False)
        page = s.page
        try:
            outputs = page.locator(".jp-OutputArea-output")
            page.wait_for_function(f"() => document.querySelectorAll('.jp-OutputArea-output img').length >= "
                                   f"{len(widgets)}", timeout=s.left())
            assert outputs.count() == len(widgets)
            for i, w in enumerate(widgets):
                out = outputs.nth(i)
                assert out.locator("img").count() == 1, f"output {i}: no picture"
                assert out.locator("img").evaluate("i => i.naturalWidth") > 100
                assert type(w).__name__ + "(" not in out.inner_text()
            s.shot(".jp-OutputArea-output >> nth=0", "saved-explorer.png")
            assert "Error displaying widget" not in page.content()
        finally:
            s.close("saved notebook")
