"""Packaging: dependency lists agree, the quickstart is what CI runs."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}
# Import name -> distribution name, where they differ.
IMPORT_TO_DIST = {"sklearn": "scikit-learn", "umap": "umap-learn", "PIL": "pillow", "IPython": "ipython"}
# Installed by a core dependency (pillow: by matplotlib and torchvision) or present wherever the import runs
# (IPython: only imported inside a Jupyter kernel, which is IPython's).
PROVIDED = {"pillow", "ipython"}
# What a notebook host (Colab) already has and must keep: never a core dependency.
NOT_CORE = {"jupyterlab", "jupyter", "notebook", "jupyter-server", "jupyterlab-server", "ipykernel", "playwright",
            "pytest", "ruff", "nbclient", "nbformat", "jupytext", "papermill", "ipywidgets"}


def requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0].lower()


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def extra(name: str) -> set[str]:
    """The distributions an extra installs, with its ``robustviz[...]`` references followed."""
    names = set()
    for spec in pyproject()["optional-dependencies"][name]:
        reference = re.fullmatch(r"robustviz\[([a-z,]+)\]", spec.strip())
        if reference:
            for inner in reference[1].split(","):
                names |= extra(inner)
        else:
            names.add(requirement_name(spec))
    return names


def core() -> set[str]:
    return {requirement_name(d) for d in pyproject()["dependencies"]}


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


def test_environment_yml_is_the_core_plus_the_lab_extra():
    """Binder: environment.yml = core + [lab] (flattened); postBuild adds robustviz itself, no deps."""
    assert conda_dependencies() == core() | {name.lower() for name in extra("lab")}
    assert "pip install --no-deps -e ." in (ROOT / "postBuild").read_text()


def test_core_is_what_the_package_needs_and_no_jupyter_or_test_tools():
    runtime = core()
    assert {"torch", "torchvision", "numpy", "matplotlib", "scikit-learn", "tqdm"} <= runtime
    assert not runtime & NOT_CORE, f"core dependencies a notebook host must not get: {runtime & NOT_CORE}"
    for spec in pyproject()["dependencies"]:
        if requirement_name(spec) in ("torch", "torchvision"):  # a lower bound only: Colab's torch is kept
            assert re.fullmatch(r"torch(vision)?>=[0-9.]+", spec.replace(" ", "")), spec
    assert {"jupyterlab", "ipywidgets", "jupytext", "umap-learn", "opentsne"} <= {n.lower() for n in extra("lab")}
    dev = extra("dev")
    assert {"pytest", "ruff", "nbclient", "jupytext", "ipykernel", "playwright", "jupyterlab"} <= dev
    assert extra("all") >= extra("lab") | dev
    makefile = (ROOT / "Makefile").read_text()
    assert 'pip install -e ".[all]"' in makefile  # make demo / make test install everything


def third_party_imports() -> list[tuple[str, int, str, bool]]:
    """(file, line, top-level module, guarded) for every absolute third-party import in robustviz/.

    Guarded: inside a ``try`` whose handlers catch ImportError (or ModuleNotFoundError)."""
    found = []
    for path in sorted((ROOT / "robustviz").rglob("*.py")):
        tree = ast.parse(path.read_text())
        guarded_nodes = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                    isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                    for h in node.handlers):
                guarded_nodes |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in ("robustviz", "__future__"):
                    continue
                found.append((str(path.relative_to(ROOT)), node.lineno, top, id(node) in guarded_nodes))
    return found


def test_every_third_party_import_is_a_core_dependency_or_guarded_and_in_an_extra():
    runtime, extras = core(), {n.lower() for n in extra("all")}
    imports = third_party_imports()
    assert {top for _, _, top, _ in imports} >= {"torch", "numpy", "matplotlib"}  # the scan sees the package
    problems = []
    for file, line, top, guarded in imports:
        dist = IMPORT_TO_DIST.get(top, top).lower()
        if dist in runtime or dist in PROVIDED:
            continue
        if not guarded:
            problems.append(f"{file}:{line} imports {top} ({dist}), not a core dependency and not guarded")
        elif dist not in extras:
            problems.append(f"{file}:{line} imports {top} ({dist}), guarded but in no extra")
    assert not problems, "\n".join(problems)


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


def test_doctor_requires_exactly_the_core_dependencies():
    from robustviz.app.doctor import PACKAGES

    assert {name.lower() for name, _, required in PACKAGES if required} == core()
