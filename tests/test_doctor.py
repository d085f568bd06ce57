"""tfcore.doctor: one line per component, problems listed, notes not counted."""
import importlib
import sys
import types

import pytest

# import_module, not `import tfcore.doctor as d`: once tfcore/__init__.py exports the
# function `doctor`, the attribute tfcore.doctor is that function, not the module.
dm = importlib.import_module("tfcore.doctor")

GOOD = {"tfcore": "0.1.0", "numpy": "2.1.0", "matplotlib": "3.9.0",
        "ipywidgets": "8.1.5", "jupyterlab": "4.2.0", "triton": None}
CPU_TORCH = {"version": "2.13.0+cpu", "cuda": None, "gpu": None, "threads": 2}


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A healthy CPU machine; tests change one thing at a time."""
    versions = dict(GOOD)
    torch = dict(CPU_TORCH)
    data = tmp_path / "tinyshakespeare.txt.gz"
    data.write_bytes(b"")
    monkeypatch.setattr(dm, "_version", lambda dist: versions[dist])
    monkeypatch.setattr(dm, "_torch_info", lambda: torch)
    monkeypatch.setattr(dm, "_python_version", lambda: (3, 11, 7))
    monkeypatch.setattr(dm, "DATA_FILE", data)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    return types.SimpleNamespace(versions=versions, torch=torch, data=data)


def test_real_machine_prints_every_line(capsys):
    problems = dm.doctor()
    out = capsys.readouterr().out
    for label in ("Python", "tfcore", "torch", "numpy", "matplotlib", "ipywidgets",
                  "jupyterlab", "triton", "device", "threads"):
        assert any(line.startswith(label) for line in out.splitlines()), label
    assert isinstance(problems, list)
    assert all(f"PROBLEM: {p}" in out for p in problems)
    assert ("All good." in out) == (not problems)


def test_healthy_machine_is_all_good(machine, capsys):
    assert dm.doctor() == []
    out = capsys.readouterr().out
    assert "All good." in out and "PROBLEM" not in out
    assert "device      cpu (no CUDA GPU found)" in out
    assert "triton      not installed (optional, GPU kernels)" in out
    assert "torch       2.13.0+cpu (CPU build)" in out


def test_quiet_prints_nothing(machine, capsys):
    assert dm.doctor(verbose=False) == []
    assert capsys.readouterr().out == ""


def test_old_torch(machine, capsys):
    machine.torch["version"] = "2.3.1+cu121"
    problems = dm.doctor()
    assert problems == ["torch 2.3.1+cu121 is too old: the course needs torch 2.4 or newer"]
    assert f"PROBLEM: {problems[0]}" in capsys.readouterr().out


def test_missing_torch(machine):
    machine.torch.clear()
    machine.torch["version"] = None
    assert any(p.startswith("torch is not installed") for p in dm.doctor(verbose=False))


@pytest.mark.parametrize("version", ["7.8.1", None])
def test_old_or_missing_ipywidgets(machine, version):
    machine.versions["ipywidgets"] = version
    (problem,) = dm.doctor(verbose=False)
    assert "ipywidgets 8 or newer" in problem


def test_missing_matplotlib(machine):
    machine.versions["matplotlib"] = None
    assert dm.doctor(verbose=False) == [
        "matplotlib is not installed: the notebooks draw plots with it"]


def test_old_python(machine, monkeypatch):
    monkeypatch.setattr(dm, "_python_version", lambda: (3, 9, 18))
    (problem,) = dm.doctor(verbose=False)
    assert problem.startswith("Python 3.9.18 is too old")


def test_missing_corpus(machine):
    machine.data.unlink()
    (problem,) = dm.doctor(verbose=False)
    assert problem.startswith("corpus file missing")


def test_colab_is_a_note_not_a_problem(machine, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert dm.doctor() == []
    out = capsys.readouterr().out
    assert "NOTE: running in Google Colab" in out
    assert "do not reinstall torch on Colab" in out


def test_cuda_build_without_gpu_is_fine(machine, capsys):
    machine.torch.update(version="2.13.0+cu128", cuda="12.8", gpu=None)
    assert dm.doctor() == []
    out = capsys.readouterr().out
    assert "torch       2.13.0+cu128 (CUDA 12.8 build)" in out
    assert "NOTE: this torch is a CUDA build but no GPU is visible" in out
    assert "device      cpu (no CUDA GPU found)" in out


def test_gpu_is_named(machine, capsys):
    machine.torch.update(version="2.13.0+cu128", cuda="12.8", gpu="NVIDIA H100 80GB HBM3")
    assert dm.doctor() == []
    out = capsys.readouterr().out
    assert "device      cuda (NVIDIA H100 80GB HBM3)" in out
    assert "NOTE" not in out


@pytest.mark.parametrize("version, minimum, ok", [
    ("2.4.0", (2, 4), True), ("2.13.0+cpu", (2, 4), True), ("2.3.1", (2, 4), False),
    ("10.0", (2, 4), True), ("8.0.0rc1", (8,), True), ("7.99", (8,), False),
    (None, (8,), False),
])
def test_at_least(version, minimum, ok):
    assert dm._at_least(version, minimum) is ok


def test_package_exports_doctor():
    """`tfcore.doctor()` works, whether or not the module tfcore.doctor was imported."""
    import tfcore

    assert isinstance(tfcore.doctor(verbose=False), list)
    assert importlib.import_module("tfcore.doctor") is dm
