"""The README's commands work as written, from the course folder, in a new terminal after `make lab`.

Every line of README.md's ``sh`` code blocks is run by bash in a copy of the course folder
(links to the real files; ``.venv`` links to the environment running these tests), with no
virtual environment on PATH, as in a terminal opened beside JupyterLab. ``source
.venv/bin/activate`` in a block activates it for the block's later lines. To stay cheap:

- ``make TARGET ...`` runs as ``make -n TARGET ...`` (the recipe is printed, not run);
- ``python -m pytest ...`` gets ``--collect-only -q`` (the tests are collected, not run);
- ``tfcore grade`` / ``progress`` run for real, on tiny notebooks that stand in for the
  copy's ``exercises/`` and for the instructors' ``path/to/class/`` (one kernel each);
- ``conda`` lines are skipped: CI has no conda (test_environment.py checks environment.yml).

A command no rule knows fails the test, so a new command in the README gets checked too.
The Makefile's choice of PyTorch build and extras is checked with ``make -n`` below.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV = Path(sys.prefix)  # the environment `make setup` made (in CI, ROOT/.venv)
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
LINUX_X86 = platform.system() == "Linux" and platform.machine() == "x86_64"


def readme_commands(text: str) -> list[tuple[int, str]]:
    """(block number, command) for each line of the ``sh`` code blocks; backslash continuations joined."""
    commands, block = [], 0
    for match in re.finditer(r"^```(sh|bash|shell)\n(.*?)^```", text, flags=re.M | re.S):
        block += 1
        for line in match.group(2).replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+", " ", line).strip()
            if line and not line.startswith("#"):
                commands.append((block, line))
    return commands


COMMANDS = readme_commands(README.read_text())


def test_readme_has_the_commands_a_learner_needs():
    lines = [c for _, c in COMMANDS]
    assert "make lab" in lines and "make test" in lines
    assert any(" -m tfcore grade exercises/" in c for c in lines) and any(c.endswith(" -m tfcore progress")
                                                                          for c in lines)
    assert any(" -m pytest " in c for c in lines)


def _fresh_terminal() -> dict[str, str]:
    """This process's environment without any virtual environment on PATH (PYTHONPATH kept)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "MPLBACKEND")}
    venvs = {str(VENV), str(ROOT / ".venv"), os.environ.get("VIRTUAL_ENV", str(VENV))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and not any(p == v or p.startswith(v + os.sep) for v in venvs))
    return env


def _tiny_notebook(path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    path.parent.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                               "language": "python"}})
    nb.cells = [new_code_cell("answer = 42")]
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A copy of the course folder: links to everything, tiny notebooks where the README's commands grade."""
    root = tmp_path_factory.mktemp("course")
    for entry in ROOT.iterdir():
        if entry.name not in (".venv", "exercises", ".git"):
            (root / entry.name).symlink_to(entry)
    (root / ".venv").symlink_to(VENV)
    for name in sorted(p.name for p in (ROOT / "exercises").glob("*.ipynb"))[:1]:  # the lesson the README grades
        _tiny_notebook(root / "exercises" / name)
    _tiny_notebook(root / "path" / "to" / "class" / "student" / "01_attention.ipynb")
    return root


def _run(command: str, cwd: Path, activated: bool, timeout: float = 300) -> subprocess.CompletedProcess:
    script = ("source .venv/bin/activate\n" if activated else "") + command
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=_fresh_terminal(), capture_output=True, text=True,
                          timeout=timeout)


def _explain(command: str, out: subprocess.CompletedProcess) -> str:
    tail = (out.stdout + out.stderr)[-2500:]
    return (f"README command `{command}` failed in a new terminal (no virtual environment active), exit status "
            f"{out.returncode}:\n{tail}\nWrite `.venv/bin/python ...`, or `source .venv/bin/activate` first.")


def _check(command: str, course: Path, activated: bool) -> None:
    """Run one README command the cheap way its rule says, and check what it printed."""
    words = command.split()
    program = re.sub(r"^(\.venv/bin/)", "", words[0])
    if words[0] == "conda":
        pytest.skip("conda is not available in CI; tests/test_environment.py checks environment.yml statically")
    if words[0] == "make":
        out = _run("make -n " + " ".join(words[1:]), course, activated, timeout=60)
        assert out.returncode == 0, _explain(command, out)
        target = words[1] if len(words) > 1 and "=" not in words[1] else "lab"
        expected = {"lab": "jupyter lab", "test": " -m pytest ", "setup": "pip install"}.get(target, "")
        assert expected in out.stdout, f"`make -n {' '.join(words[1:])}` did not print {expected!r}:\n{out.stdout}"
        for assignment in (w for w in words[2:] if w.startswith("TORCH_INDEX=")):
            assert f'--extra-index-url "{assignment.split("=", 1)[1]}"' in out.stdout, out.stdout
        if "GPU=1" in words:
            assert '".[test,gpu]"' in out.stdout, out.stdout
        return
    if program not in ("python", "python3") or words[1:2] != ["-m"]:
        raise AssertionError(f"README shows `{command}`, which this test does not know how to check: add a rule "
                             f"to tests/test_readme.py")
    module = words[2]
    if module == "pytest":
        out = _run(command + " --collect-only -q", course, activated)
        assert out.returncode == 0 and re.search(r"\d+ tests? collected", out.stdout), _explain(command, out)
    elif module == "tfcore" and words[3] == "doctor":
        out = _run(command, course, activated, timeout=120)
        assert out.returncode == 0 and "torch" in out.stdout, _explain(command, out)
    elif module == "tfcore" and words[3] == "grade":
        out = _run(command, course, activated)
        # exit status 1: not every exercise passed (the stand-in notebooks answer none)
        assert out.returncode in (0, 1) and "score: 0/" in out.stdout, _explain(command, out)
        assert "Traceback" not in out.stdout + out.stderr, _explain(command, out)
        if "--json" in words:
            report = json.loads((course / words[words.index("--json") + 1]).read_text())
            assert report, "the --json file is empty"
    elif module == "tfcore" and words[3] == "progress":
        out = _run(command, course, activated)
        assert out.returncode == 0 and "total: 0/" in out.stdout, _explain(command, out)
    else:
        raise AssertionError(f"README shows `{command}`, which this test does not know how to check: add a rule")


@pytest.mark.slow
def test_readme_commands_run_as_written(course):
    """Each block in order, as a learner would type it; the first failure is reported with its output."""
    blocks: dict[int, list[str]] = {}
    for block, command in COMMANDS:
        blocks.setdefault(block, []).append(command)
    skipped = []
    for block, commands in blocks.items():
        activated = False
        for command in commands:
            if command == "source .venv/bin/activate":
                assert (course / ".venv" / "bin" / "activate").is_file()
                activated = True
                continue
            try:
                _check(command, course, activated)
            except pytest.skip.Exception as e:
                skipped.append(f"{command}: {e}")
    print("not run here:", skipped)


def test_a_bare_python_without_the_environment_is_caught(course):
    """The test itself: a bare `python -m tfcore grade` with no environment active must not pass (issue 19)."""
    if shutil.which("python", path=_fresh_terminal()["PATH"]):
        out = _run("python -c 'import sys; print(sys.prefix)'", course, activated=False)
        assert out.stdout.strip() != str(VENV), "the fresh terminal still runs the course's environment"
    out = _run(".venv/bin/python -c 'import nbformat, tfcore'", course, activated=False)
    assert out.returncode == 0, out.stderr


# ------------------------------------------------------------------ the Makefile's setup choices


def _setup_recipe(tmp_path: Path, *args: str, nvidia_smi: int | None = None) -> str:
    """What `make -n setup ARGS` would run, in an empty folder with the Makefile (no .venv yet)."""
    work = tmp_path / "make"
    work.mkdir(exist_ok=True)
    for name in ("Makefile", "pyproject.toml"):
        if not (work / name).exists():
            shutil.copy(ROOT / name, work / name)
    env = dict(os.environ)
    if nvidia_smi is not None:  # a stand-in nvidia-smi that finds (0) or does not find (1) a GPU
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\nexit {nvidia_smi}\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    out = subprocess.run(["make", "-n", "setup", *args], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_setup_installs_the_gpu_extra_only_with_a_gpu(tmp_path):
    assert '-e ".[test]"' in _setup_recipe(tmp_path, "GPU=0")
    assert '-e ".[test,gpu]"' in _setup_recipe(tmp_path, "GPU=1")
    assert '-e ".[test,gpu]"' in _setup_recipe(tmp_path, nvidia_smi=0)  # GPU=auto, nvidia-smi finds one
    assert '-e ".[test]"' in _setup_recipe(tmp_path, nvidia_smi=1)


def test_setup_takes_the_cpu_build_where_it_applies(tmp_path):
    cpu = _setup_recipe(tmp_path, "GPU=0")
    assert (f'pip install "torch==2.13.0" --no-deps --extra-index-url "{CPU_INDEX}"' in cpu) == LINUX_X86
    assert cpu.index('pip install "torch') < cpu.index('pip install -e ".[test]"')  # then torch's dependencies
    assert "--extra-index-url" not in _setup_recipe(tmp_path, "GPU=1")  # PyPI's CUDA build
    assert "--extra-index-url" not in _setup_recipe(tmp_path, "GPU=0", "TORCH_INDEX=")  # pip's own sources only
    other = "https://download.pytorch.org/whl/cu128"
    assert f'--extra-index-url "{other}"' in _setup_recipe(tmp_path, "GPU=1", f"TORCH_INDEX={other}")
    assert 'pip install "torch==2.12.0"' in _setup_recipe(tmp_path, "GPU=0", "TORCH=torch==2.12.0")


def test_setup_runs_again_when_its_options_change(tmp_path):
    """The stamp records the options: same options, nothing to do; GPU=1 later, the gpu extra is installed."""
    recipe = _setup_recipe(tmp_path, "GPU=0")
    stamp_line = next(line for line in recipe.splitlines() if line.startswith("echo '"))
    work = tmp_path / "make"
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / ".venv" / "bin" / "python").write_text("")
    (work / ".venv" / "bin" / "python").chmod(0o755)
    os.utime(work / "pyproject.toml", (1, 1))  # older than the stamp
    (work / ".venv" / ".installed").write_text(stamp_line.split("'")[1] + "\n")
    assert "pip install" not in _setup_recipe(tmp_path, "GPU=0")
    assert '-e ".[test,gpu]"' in _setup_recipe(tmp_path, "GPU=1")
