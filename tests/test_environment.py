"""environment.yml (conda) and pyproject.toml (pip) must name the same packages.

CI cannot reach conda, so the two files are compared statically. conda's package
list must equal pyproject's runtime dependencies (conda `pytorch` is pip `torch`);
the test tools come in through environment.yml's pip line `-e .[test]`.
"""
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}
CONDA_ONLY = {"python", "pip"}  # the interpreter and installer, not dependencies


def split_requirement(req: str) -> tuple[str, str]:
    """'ipywidgets>=8' -> ('ipywidgets', '>=8'); 'pytorch=2.4' -> ('pytorch', '==2.4')."""
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(\[[^\]]*\])?\s*(.*)$", req)
    if not m:
        raise ValueError(f"cannot parse requirement {req!r}")
    name = m.group(1).lower().replace("_", "-")
    spec = m.group(3).split(";")[0].replace(" ", "")
    if re.fullmatch(r"=[^=].*", spec):  # conda's single '=' means ==
        spec = "=" + spec
    return name, spec


def parse_environment_yml(text: str) -> dict:
    """Parse environment.yml: {'name', 'channels', 'conda': [...], 'pip': [...]}.

    Uses PyYAML when it is installed; otherwise a line-based reader that handles
    exactly the layout of this file (top-level keys, '- item' lists, one nested
    '- pip:' list).
    """
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        data = yaml.safe_load(text)
        conda, pip = [], []
        for dep in data.get("dependencies", []):
            if isinstance(dep, dict):
                pip.extend(dep.get("pip", []))
            else:
                conda.append(str(dep))
        return {"name": data.get("name"), "channels": data.get("channels", []),
                "conda": conda, "pip": pip}

    out = {"name": None, "channels": [], "conda": [], "pip": []}
    section, in_pip, pip_indent = None, False, 0
    for raw in text.splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        item = line.strip()
        if indent == 0:
            key, _, value = item.partition(":")
            section, in_pip = key.strip(), False
            if key.strip() == "name":
                out["name"] = value.strip()
            continue
        if not item.startswith("- "):
            raise ValueError(f"unexpected line in environment.yml: {raw!r}")
        value = item[2:].strip()
        if in_pip and indent > pip_indent:
            out["pip"].append(value)
            continue
        in_pip = False
        if section == "channels":
            out["channels"].append(value)
        elif section == "dependencies" and value == "pip:":
            in_pip, pip_indent = True, indent
        elif section == "dependencies":
            out["conda"].append(value)
    return out


def conda_packages(env: dict) -> dict[str, str]:
    """conda dependencies as {pip name: version spec}, without python and pip."""
    pkgs = {}
    for dep in env["conda"]:
        name, spec = split_requirement(dep)
        if name not in CONDA_ONLY:
            pkgs[CONDA_TO_PIP.get(name, name)] = spec
    return pkgs


def pyproject_packages(project: dict) -> dict[str, str]:
    return dict(split_requirement(r) for r in project["dependencies"])


def mismatches(pip_pkgs: dict[str, str], conda_pkgs: dict[str, str]) -> list[str]:
    """Human-readable differences between the two package sets (empty when equal)."""
    problems = []
    for name in sorted(set(pip_pkgs) - set(conda_pkgs)):
        problems.append(f"{name} is in pyproject.toml but missing from environment.yml")
    for name in sorted(set(conda_pkgs) - set(pip_pkgs)):
        problems.append(f"{name} is in environment.yml but missing from pyproject.toml")
    for name in sorted(set(pip_pkgs) & set(conda_pkgs)):
        if pip_pkgs[name] != conda_pkgs[name]:
            problems.append(f"{name}: pyproject.toml says {pip_pkgs[name] or 'any'}, "
                            f"environment.yml says {conda_pkgs[name] or 'any'}")
    return problems


@pytest.fixture(scope="module")
def project():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


@pytest.fixture(scope="module")
def env():
    return parse_environment_yml((ROOT / "environment.yml").read_text())


def test_same_packages(project, env):
    problems = mismatches(pyproject_packages(project), conda_packages(env))
    assert not problems, "\n".join(problems)


def test_conda_forge_only_python_311(env):
    assert env["name"] == "tfcore"
    assert env["channels"] == ["conda-forge"]
    assert "python=3.11" in env["conda"]


def test_pip_section_installs_package_with_test_extra(env, project):
    assert env["pip"] == ["-e .[test]"]
    assert "test" in project["optional-dependencies"]


def test_line_parser_matches_yaml_layout(monkeypatch):
    """The fallback parser (no PyYAML) reads the real file as PyYAML would."""
    text = (ROOT / "environment.yml").read_text()
    with_yaml = parse_environment_yml(text)
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` fail
    without_yaml = parse_environment_yml(text)
    assert "pytorch>=2.4" in without_yaml["conda"] and "python=3.11" in without_yaml["conda"]
    assert without_yaml["pip"] == ["-e .[test]"]
    assert without_yaml == with_yaml


def test_comparison_can_fail():
    """A package dropped from either side, or a differing bound, is reported."""
    pip_side = {"numpy": "", "torch": ">=2.4", "tqdm": ""}
    text = ("name: x\nchannels:\n  - conda-forge\ndependencies:\n"
            "  - python=3.11\n  - numpy\n  - pytorch>=2.3\n  - scipy\n"
            "  - pip:\n      - -e .[test]\n")
    conda_side = conda_packages(parse_environment_yml(text))
    problems = mismatches(pip_side, conda_side)
    assert any(p.startswith("tqdm is in pyproject.toml") for p in problems)
    assert any(p.startswith("scipy is in environment.yml") for p in problems)
    assert any(p.startswith("torch: pyproject.toml says >=2.4") for p in problems)
    assert mismatches(pip_side, dict(pip_side)) == []
