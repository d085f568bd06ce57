"""`tfcore doctor`: say what this machine has, and what stops the course from running."""
from __future__ import annotations  # so that an old Python gets the message, not a crash

import importlib.metadata
import os
import platform
import re
import sys
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parent / "corpus" / "tinyshakespeare.txt.gz"


def _version(dist: str) -> str | None:
    """Installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _at_least(version: str | None, minimum: tuple) -> bool:
    """'2.13.0+cpu' >= (2, 4)? Compares the leading numbers only."""
    nums = tuple(int(n) for n in re.findall(r"\d+", (version or "").split("+")[0])[:3])
    return version is not None and nums >= minimum


def _python_version() -> tuple:
    return tuple(sys.version_info[:3])


def _torch_info() -> dict:
    try:
        import torch
    except ImportError:
        return {"version": None}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"version": torch.__version__, "cuda": torch.version.cuda, "gpu": gpu,
            "threads": torch.get_num_threads()}


def doctor(verbose: bool = True) -> list[str]:
    """Print one line per component, then any problems; return the problems.

    An empty list means the notebooks can run here. Notes (Colab, a CUDA build of
    torch without a visible GPU) are printed but are not problems.
    """
    v = {d: _version(d) for d in ("tfcore", "numpy", "matplotlib", "ipywidgets",
                                  "jupyterlab", "triton")}
    t = _torch_info()
    py_version = _python_version()
    py = ".".join(map(str, py_version))
    torch_line = "not installed"
    if t["version"]:
        build = f"CUDA {t['cuda']} build" if t["cuda"] else "CPU build"
        torch_line = f"{t['version']} ({build})"
    device = f"cuda ({t['gpu']})" if t.get("gpu") else "cpu (no CUDA GPU found)"
    lines = [
        f"Python      {py} ({platform.system()} {platform.machine()})",
        f"tfcore      {v['tfcore'] or 'not installed (importing from the source tree)'}",
        f"torch       {torch_line}",
        f"numpy       {v['numpy'] or 'not installed'}",
        f"matplotlib  {v['matplotlib'] or 'not installed'}",
        f"ipywidgets  {v['ipywidgets'] or 'not installed'}",
        f"jupyterlab  {v['jupyterlab'] or 'not installed (needed for `make lab` only)'}",
        f"triton      {v['triton'] or 'not installed (optional, GPU kernels)'}",
        f"device      {device}",
        f"threads     {t.get('threads', '?')} torch threads, {os.cpu_count()} CPUs",
    ]
    problems, notes = [], []
    if py_version < (3, 10):
        problems.append(f"Python {py} is too old: the course needs Python 3.10 or newer")
    if not t["version"]:
        problems.append("torch is not installed: run `make setup` (or pip install torch)")
    elif not _at_least(t["version"], (2, 4)):
        problems.append(f"torch {t['version']} is too old: the course needs torch 2.4 or newer")
    if not v["numpy"]:
        problems.append("numpy is not installed")
    if not v["matplotlib"]:
        problems.append("matplotlib is not installed: the notebooks draw plots with it")
    if not _at_least(v["ipywidgets"], (8,)):
        problems.append(f"ipywidgets {v['ipywidgets'] or 'is missing'}: the widgets need "
                        "ipywidgets 8 or newer (pip install 'ipywidgets>=8')")
    if not DATA_FILE.exists():
        problems.append(f"corpus file missing: {DATA_FILE} (reinstall tfcore from the repo)")
    if "google.colab" in sys.modules:
        notes.append("running in Google Colab: keep Colab's torch, do not reinstall "
                     "torch on Colab")
    if t.get("cuda") and not t.get("gpu"):
        notes.append("this torch is a CUDA build but no GPU is visible: fine, the "
                     "notebooks run on the CPU")
    if verbose:
        print("\n".join(lines))
        for note in notes:
            print(f"NOTE: {note}")
        for problem in problems:
            print(f"PROBLEM: {problem}")
        if not problems:
            print("All good.")
    return problems
