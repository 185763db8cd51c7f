"""Packaging: dependency lists agree, the quickstart is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}


def requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0].lower()


def conda_dependencies() -> set[str]:
    text = (ROOT / "environment.yml").read_text()
    section = text.split("\ndependencies:", 1)[1]
    names = set()
    for line in section.splitlines():
        match = re.match(r"^\s+-\s+([A-Za-z0-9_.\-]+)", line)
        if match:
            name = requirement_name(match[1])
            names.add(CONDA_TO_PIP.get(name, name))
        elif line.strip() and not line.startswith(" "):
            break  # the next top-level key
    return names - {"python", "pip"}


def test_environment_yml_lists_the_runtime_dependencies():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = {requirement_name(d) for d in pyproject["project"]["dependencies"]}
    assert runtime == conda_dependencies()
    required = {"torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "umap-learn",
                "scikit-learn", "tqdm", "jupyterlab"}
    assert required <= runtime
    dev = {requirement_name(d) for d in pyproject["project"]["optional-dependencies"]["dev"]}
    assert {"pytest", "ruff", "nbclient", "jupytext", "ipykernel"} <= dev


def test_readme_starts_with_the_two_quickstart_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", readme, re.S)
    assert block is not None
    commands = [line.strip() for line in block[1].splitlines() if line.strip() and not line.startswith("#")]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert re.search(r"^lab:", makefile, re.M) and "make lab" in readme
