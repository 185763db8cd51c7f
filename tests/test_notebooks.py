"""The notebook course: jupytext pairs in sync, committed without outputs, the parameters cell,
the structure every notebook shares, README links, ``robustviz doctor``, the run cache, and
(slow) every notebook executed end to end in the quick profile on the CPU.

The execution test runs each notebook with nbclient in a kernel of this Python (``python3``)
with the working directory ``notebooks/`` (as JupyterLab does). Trained runs go to a cache
shared by the whole test session (``$ROBUSTVIZ_RESULTS`` if set, else a fresh temporary
folder), so the course runs cold like on a clean clone, and later notebooks reuse the runs of
earlier ones. Executed notebooks and each one's wall-clock time are written to
``test-artifacts/notebooks/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
jupytext = pytest.importorskip("jupytext")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "test-artifacts" / "notebooks"
COURSE = [
    "00_tour", "01_attacks", "02_adversarial_training", "03_complement_entropy", "04_repulsive_prototypes",
    "05_clustering_magnet", "06_compactness", "07_single_step_regularizers", "08_honest_evaluation",
    "09_feature_space_explorer", "10_trades_tradeoff",
]
REPOSITORY = "robustviz-org/robustviz"
COLAB = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/"
IMAGE = "image/png"
MIN_CLAIMS = 5  # claim checks (robustviz.app.claims.expect) per notebook
WIDGET = "application/vnd.jupyter.widget-view+json"


def sources() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def read_pair(name: str):
    """``(the notebook read from the .py source, the committed .ipynb)``."""
    return jupytext.read(NOTEBOOKS / f"{name}.py"), nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def tags(cell) -> list[str]:
    return list(cell.metadata.get("tags", []))


# ---- the course and its files -------------------------------------------------------------


def test_the_course_has_every_notebook_as_a_pair():
    assert [path.stem for path in sources()] == COURSE
    for name in COURSE:
        assert (NOTEBOOKS / f"{name}.ipynb").exists(), f"{name}.ipynb is missing: run jupytext --sync notebooks/*.py"


@pytest.mark.parametrize("name", COURSE)
def test_ipynb_is_in_sync_with_its_py_source(name):
    source, committed = read_pair(name)
    assert len(source.cells) == len(committed.cells), f"{name}: run jupytext --sync notebooks/{name}.py"
    for index, (a, b) in enumerate(zip(source.cells, committed.cells)):
        where = f"{name}.ipynb cell {index}: out of sync with {name}.py (run jupytext --sync notebooks/{name}.py)"
        assert (a.cell_type, a.source) == (b.cell_type, b.source), where
        assert tags(a) == tags(b), where
        assert a.metadata.get("jupyter", {}) == b.metadata.get("jupyter", {}), where
    assert committed.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("name", COURSE)
def test_committed_ipynb_has_no_outputs(name):
    committed = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    for index, cell in enumerate(committed.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}.ipynb cell {index} has outputs"


@pytest.mark.parametrize("name", COURSE)
def test_parameters_cell_defaults_to_the_quick_profile(name):
    source, _ = read_pair(name)
    cells = [cell for cell in source.cells if "parameters" in tags(cell)]
    assert len(cells) == 1, f"{name}: exactly one cell tagged 'parameters' (papermill injects after it)"
    text = cells[0].source
    for line in ('PROFILE = "quick"', "SEED = 0", 'DATASET = "mnist-mini"', "N_TRAIN = None"):
        assert line in text, f"{name}: the parameters cell must set {line}"
    setup = [cell for cell in source.cells if "runs.setup(PROFILE, SEED, DATASET, N_TRAIN)" in cell.source]
    assert setup, f"{name}: the parameters must reach runs.setup (which applies ROBUSTVIZ_* overrides)"


@pytest.mark.parametrize("name", COURSE)
def test_every_notebook_has_the_course_structure(name):
    source, _ = read_pair(name)
    first = source.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {name[:2]} ·")
    assert "**Learning objectives.**" in first.source
    assert f"{COLAB}notebooks/{name}.ipynb" in first.source, f"{name}: Colab badge"
    code = [cell for cell in source.cells if cell.cell_type == "code"]
    assert "colab" in tags(code[0]) and '"google.colab" in sys.modules' in code[0].source
    assert "parameters" in tags(code[1])
    markdown = "\n".join(cell.source for cell in source.cells if cell.cell_type == "markdown")
    assert "$$" in markdown, f"{name}: the method's formulas"
    assert "## Exercises" in markdown and "## Summary" in markdown
    exercises = next(cell for cell in source.cells if cell.source.startswith("## Exercises"))
    count = len(re.findall(r"^\d\. ", exercises.source, flags=re.MULTILINE))
    assert 2 <= count <= 4, f"{name}: 2-4 exercises, found {count}"
    solutions = [cell for cell in source.cells if "solution" in tags(cell)]
    assert len(solutions) >= count, f"{name}: a solution per exercise"
    for cell in solutions:
        assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, f"{name}: solutions are collapsed"
    assert [cell for cell in code if "plot" in tags(cell)], f"{name}: at least one plot"


@pytest.mark.parametrize("name", COURSE)
def test_plot_cells_end_in_what_they_show(name):
    """A figure object is shown only as the cell's last expression (or through ``display``): a
    statement after the plot call hides it."""
    import ast

    source, _ = read_pair(name)
    for cell in source.cells:
        if cell.cell_type == "code" and "plot" in tags(cell) and "display(" not in cell.source:
            code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
            last = ast.parse(code).body[-1]
            shown = ast.unparse(last.value) if isinstance(last, ast.Expr) else ""
            assert "plot" in shown or "figure" in shown, f"{name}: a plot cell must end with its figure:\n{cell.source}"


@pytest.mark.parametrize("name", COURSE)
def test_plotting_cells_are_tagged(name):
    """Every code cell that calls a plot function is tagged ``plot`` (checked for an image when run)."""
    source, _ = read_pair(name)
    for cell in source.cells:
        if cell.cell_type == "code" and re.search(r"\bplot_\w+\(", cell.source):
            assert {"plot", "widget"} & set(tags(cell)), f"{name}: untagged plotting cell:\n{cell.source[:200]}"


def test_readme_links_point_at_real_files():
    readme = (ROOT / "README.md").read_text()
    colab = re.findall(rf"{re.escape(COLAB)}([^)\s]+)", readme)
    binder = re.findall(rf"https://mybinder\.org/v2/gh/{re.escape(REPOSITORY)}/main(?:\?[^)\s]*)?", readme)
    assert colab, "the README needs a Colab badge"
    assert binder, "the README needs a Binder badge"
    for path in colab:
        assert (ROOT / path).is_file(), f"README Colab link to a missing file: {path}"
    for link in binder:
        target = re.search(r"urlpath=(?:lab/tree/)?([^&)\s]+)", link)
        if target:
            assert (ROOT / target[1]).exists(), f"README Binder link to a missing path: {target[1]}"
    assert (ROOT / "environment.yml").is_file() and (ROOT / "postBuild").is_file()
    for name in COURSE:
        first = jupytext.read(NOTEBOOKS / f"{name}.py").cells[0].source
        for path in re.findall(rf"{re.escape(COLAB)}([^)\s]+)", first):
            assert (ROOT / path).is_file(), f"{name}: Colab link to a missing file: {path}"


# ---- robustviz doctor ---------------------------------------------------------------------


def test_doctor_reports_versions_device_widgets_and_data(capsys):
    from robustviz.app.doctor import doctor

    report = doctor(verbose=True)
    printed = capsys.readouterr().out
    assert report["ok"] is True
    for name in ("python", "robustviz", "torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "umap-learn",
                 "scikit-learn", "pyautoattack"):
        assert name in report["versions"] and name in printed
    assert report["versions"]["torch"] and report["versions"]["robustviz"]
    assert set(report["device"]) >= {"cuda", "name"}
    assert isinstance(report["widgets"]["ok"], bool)
    assert report["data"]["found"] and report["data"]["train"] == 8000
    assert "all required checks passed" in printed


def test_doctor_command_exit_status_and_json(capsys):
    from robustviz.app.cli import main

    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["data"]["ok"] is True


def test_doctor_fails_without_the_dataset(monkeypatch, tmp_path, capsys):
    from robustviz.app import doctor as doctor_module

    monkeypatch.setattr("robustviz.data.default_root", lambda: tmp_path)
    monkeypatch.chdir(tmp_path)  # no ./data/mnist-mini.npz either (load() looks there first)
    report = doctor_module.doctor(verbose=True)
    assert report["ok"] is False and report["data"]["found"] is False
    assert "FAILED" in capsys.readouterr().out


# ---- the run cache ------------------------------------------------------------------------


def test_run_names_match_compare_for_full_data_and_differ_otherwise(tmp_path):
    from robustviz.app.compare import run_dir
    from robustviz.app.runs import run_name, run_path

    for method, dataset in (("pgd_at", "mnist-mini"), ("ce", "folder:/data/x"), ("drp", "blobs")):
        assert run_path(method, dataset, "quick", 3, results=tmp_path) == run_dir(tmp_path, method, dataset, "quick", 3)
    base = run_name("pgd_at", "mnist-mini", "quick", 0)
    small = run_name("pgd_at", "mnist-mini", "quick", 0, n_train=2000)
    assert small == base + "-n2000"
    a = run_name("pgd_at", "mnist-mini", "quick", 0, 2000, {"val_size": 200})
    b = run_name("pgd_at", "mnist-mini", "quick", 0, 2000, {"val_size": 200, "epochs": 2})
    c = run_name("pgd_at", "mnist-mini", "quick", 0, 2000, {"epochs": 2, "val_size": 200})
    assert len({base, small, a, b}) == 4 and b == c
    assert run_name("ce", "mnist-mini", "quick", 0, overrides={"method_kwargs": {"alpha": 1.0}}) != \
        run_name("ce", "mnist-mini", "quick", 0, overrides={"method_kwargs": {"alpha": 0.5}})


def test_results_default_to_the_checkout_whatever_the_working_directory(monkeypatch, tmp_path):
    from robustviz.app.runs import default_results

    monkeypatch.delenv("ROBUSTVIZ_RESULTS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_results() == ROOT / "results"
    monkeypatch.setenv("ROBUSTVIZ_RESULTS", str(tmp_path / "cache"))
    assert default_results() == tmp_path / "cache"


def test_setup_applies_profile_defaults_and_environment_overrides(monkeypatch, tmp_path):
    from robustviz.app.runs import setup

    for name in ("PROFILE", "SEED", "DATASET", "N_TRAIN", "RESULTS", "DEVICE"):
        monkeypatch.delenv(f"ROBUSTVIZ_{name}", raising=False)
    quick = setup(results=tmp_path, verbose=False)
    assert (quick.profile, quick.n_train, quick.n_eval) == ("quick", None, 500)
    assert quick.path("pgd_at") == tmp_path / "pgd_at-mnist-mini-quick-s0", "the runs of robustviz compare"
    assert quick.path("pgd_at", n_train=2000, epochs=2).name.startswith("pgd_at-mnist-mini-quick-s0-n2000-x")
    full = setup("full", results=tmp_path, verbose=False)
    assert (full.n_train, full.n_eval) == (None, 2000)
    assert full.path("pgd_at") == tmp_path / "pgd_at-mnist-mini-full-s0"
    assert full.pick(1, 2) == 2 and quick.pick(1, 2) == 1
    monkeypatch.setenv("ROBUSTVIZ_PROFILE", "full")
    monkeypatch.setenv("ROBUSTVIZ_SEED", "3")
    monkeypatch.setenv("ROBUSTVIZ_N_TRAIN", "500")
    monkeypatch.setenv("ROBUSTVIZ_DEVICE", "cpu")
    env = setup("quick", 0, results=tmp_path, verbose=False)
    assert (env.profile, env.seed, env.n_train, str(env.device)) == ("full", 3, 500, "cpu")
    monkeypatch.setenv("ROBUSTVIZ_N_TRAIN", "all")
    assert setup(results=tmp_path, verbose=False).n_train is None
    monkeypatch.setenv("ROBUSTVIZ_PROFILE", "fast")
    with pytest.raises(ValueError, match="profile"):
        setup(verbose=False)


def test_trained_trains_once_then_loads_the_cached_run(tmp_path):
    import torch

    from robustviz.app.runs import is_finished, run_path, setup, trained

    model, history = trained("ce", "blobs", results=tmp_path, progress=False, device="cpu", epochs=2)
    directory = run_path("ce", "blobs", results=tmp_path, epochs=2)
    assert is_finished(directory) and len(history) == 2 and not model.training
    stored = json.loads((directory / "run.json").read_text())
    assert stored["overrides"] == {"epochs": 2} and stored["config"]["epochs"] == 2  # the resolved row
    stamp = (directory / "model.pt").stat().st_mtime_ns
    again, again_history = trained("ce", "blobs", results=tmp_path, progress=False, device="cpu", epochs=2)
    assert (directory / "model.pt").stat().st_mtime_ns == stamp, "a finished run must not be retrained"
    assert again_history.records == history.records
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    course = setup(dataset="blobs", n_train=300, results=tmp_path, device="cpu", verbose=False)
    assert course.finished(["ce", "drp"], epochs=2) == []
    course.train("ce", progress=False, epochs=2)
    assert course.finished(["ce", "drp"], epochs=2) == ["ce"] and course.finished(["ce"]) == []
    assert course.path("ce", epochs=2).name.startswith("ce-blobs-quick-s0-n300-x")


def test_trained_refuses_a_cached_run_of_another_training_set(tmp_path):
    from robustviz.app.runs import run_path, trained

    trained("ce", "blobs", n_train=300, results=tmp_path, progress=False, device="cpu", epochs=1)
    shutil.copytree(run_path("ce", "blobs", n_train=300, results=tmp_path, epochs=1),
                    run_path("ce", "blobs", results=tmp_path, epochs=1))
    with pytest.raises(ValueError, match="300 training samples"):
        trained("ce", "blobs", results=tmp_path, progress=False, device="cpu", epochs=1)


# ---- executing the course -----------------------------------------------------------------


@pytest.fixture(scope="session")
def course_cache(tmp_path_factory):
    """One results folder for the whole course run (cold at the start, like a clean clone)."""
    return os.environ.get("ROBUSTVIZ_RESULTS") or str(tmp_path_factory.mktemp("course-results"))


def execute(name: str, results: str, timeout: int = 1800):
    """Run one notebook in the quick profile with strict claim checks (a claim of the lesson
    that does not hold in its own outputs raises); returns ``(executed notebook, seconds)``."""
    from nbclient import NotebookClient

    from robustviz.app.claims import STRICT_ENV

    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    saved = {key: os.environ.get(key) for key in ("ROBUSTVIZ_RESULTS", "ROBUSTVIZ_PROFILE", STRICT_ENV)}
    os.environ.update({"ROBUSTVIZ_RESULTS": results, "ROBUSTVIZ_PROFILE": "quick", STRICT_ENV: "1"})
    started = time.perf_counter()
    try:
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook, time.perf_counter() - started


def claims_checked(notebook) -> list[str]:
    """Every claim check the executed notebook printed (``robustviz.app.claims.expect``), in order."""
    from robustviz.app.claims import FAIL, PASS

    lines = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            text = output.get("text", "") if output.get("output_type") == "stream" else ""
            lines += [line for line in text.splitlines() if line.startswith((PASS, FAIL))]
    return lines


def output_types(cell) -> set[str]:
    found = set()
    for output in cell.get("outputs", []):
        found.update(output.get("data", {}))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("name", COURSE)
def test_notebook_runs_in_the_quick_profile(name, course_cache):
    notebook, seconds = execute(name, course_cache)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, ARTIFACTS / f"{name}.ipynb")
    times = ARTIFACTS / "times.json"
    recorded = json.loads(times.read_text()) if times.exists() else {}
    recorded[name] = round(seconds, 1)
    times.write_text(json.dumps(recorded, indent=1))
    claims = claims_checked(notebook)
    recorded_claims = ARTIFACTS / "claims.json"
    all_claims = json.loads(recorded_claims.read_text()) if recorded_claims.exists() else {}
    all_claims[name] = claims
    recorded_claims.write_text(json.dumps(all_claims, indent=1, ensure_ascii=False))
    print(f"\n{name}: {len(claims)} claim checks\n" + "\n".join(claims))
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        errors = [output for output in cell.outputs if output.get("output_type") == "error"]
        assert not errors, (f"{name} cell {index} raised {errors[0].get('ename')}: "
                            f"{errors[0].get('evalue', '')[:1000]}")
        if "plot" in tags(cell):
            assert IMAGE in output_types(cell), f"{name} cell {index} should plot but shows no image:\n{cell.source}"
        if "widget" in tags(cell):
            assert {IMAGE, WIDGET} & output_types(cell), f"{name} cell {index} should show a widget:\n{cell.source}"
    assert len(claims) >= MIN_CLAIMS, f"{name}: {len(claims)} claim checks, the course asks for at least {MIN_CLAIMS}"


def test_student_notebooks_have_no_solution(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("student_notebooks", ROOT / "scripts" / "student_notebooks.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    written = script.main(["--out", str(tmp_path)])
    assert [path.stem for path in written] == COURSE
    for name in COURSE:
        source, _ = read_pair(name)
        solutions = [cell.source for cell in source.cells if "solution" in tags(cell)]
        student = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
        text = "\n".join(cell.source for cell in student.cells)
        assert solutions and not any("solution" in tags(cell) for cell in student.cells)
        for solution in solutions:
            assert solution.strip() not in text, f"{name}: solution code left in the student version"
        assert "## Exercises" in text and script.NOTE in text
        assert "## Self-check" in text, f"{name}: the self-check questions stay in the student version"
