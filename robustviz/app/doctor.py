"""``robustviz doctor``: is this environment ready for the course?

Checks, each ``required`` or not:

* Python >= 3.10 and the versions of the packages robustviz uses (required: the core
  dependencies torch, torchvision, numpy, matplotlib, scikit-learn, tqdm, pyautoattack;
  optional, the ``lab`` extra: ipywidgets, umap-learn, openTSNE, jupyterlab);
* the device: CUDA (its name) or the CPU, and the CPU threads torch uses;
* whether interactive widgets can display: ipywidgets plus a front-end for them
  (``jupyterlab_widgets`` for JupyterLab / Notebook 7, ``widgetsnbextension`` for the classic
  Notebook, or Colab's own widget manager);
* where the embedded ``mnist-mini`` dataset is found (and that it loads);
* where trained runs are cached (``robustviz.app.runs.default_results``).

``doctor()`` returns a dict; ``ok`` is ``True`` when every required check passed. The
command prints a table and exits with status 0 when ``ok``, 1 otherwise.

Example:
    >>> report = doctor(verbose=False)  # doctest: +SKIP
    >>> report["ok"], report["device"]["name"]  # doctest: +SKIP
    (True, 'cpu')
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

# (distribution name, import name, required): required = pyproject.toml's core dependencies.
PACKAGES = (
    ("torch", "torch", True),
    ("torchvision", "torchvision", True),
    ("numpy", "numpy", True),
    ("matplotlib", "matplotlib", True),
    ("scikit-learn", "sklearn", True),
    ("tqdm", "tqdm", True),
    ("pyautoattack", "pyautoattack", True),
    ("ipywidgets", "ipywidgets", False),
    ("umap-learn", "umap", False),
    ("openTSNE", "openTSNE", False),
    ("jupyterlab", "jupyterlab", False),
)
WIDGET_FRONTENDS = (("jupyterlab_widgets", "JupyterLab / Notebook 7"), ("widgetsnbextension", "classic Notebook"))
MIN_PYTHON = (3, 10)


def package_version(distribution: str, module: str) -> str | None:
    """The installed version of ``distribution`` (``None`` if it cannot be found or imported)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        if importlib.util.find_spec(module) is None:
            return None
        imported = __import__(module)
        return str(getattr(imported, "__version__", "installed"))


def environment() -> str:
    """``"colab"``, ``"binder"`` or ``"local"``."""
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG"):
        return "colab"
    if any(name.startswith("BINDER_") for name in os.environ):
        return "binder"
    return "local"


def device_report() -> dict:
    """``{"cuda": bool, "name": ..., "torch_threads": int, "cuda_version": ...}``."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "cuda": cuda,
        "name": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda_version": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }


def widgets_report(env: str | None = None) -> dict:
    """Whether ipywidgets is installed and which front-ends can display it."""
    env = env or environment()
    frontends = [label for module, label in WIDGET_FRONTENDS if importlib.util.find_spec(module) is not None]
    if env == "colab":
        frontends.append("Colab (custom widget manager)")
    installed = importlib.util.find_spec("ipywidgets") is not None
    return {"ipywidgets": installed, "frontends": frontends, "ok": installed and bool(frontends)}


def data_report() -> dict:
    """Where ``mnist-mini`` is found and whether it loads."""
    from ..data import default_root, load

    # load("mnist-mini") reads ./data/mnist-mini.npz first, then the repository's data/ folder
    # (an editable install); a plain `pip install .` run from the clone finds it in ./data.
    candidates = [Path("data") / "mnist-mini.npz", default_root() / "mnist-mini.npz"]
    path = next((c for c in candidates if c.exists()), candidates[-1])
    if not path.exists():
        return {"path": str(path), "found": False, "ok": False,
                "error": "mnist-mini.npz is missing: run robustviz from a clone of the repository (it ships "
                         "data/mnist-mini.npz), or install the clone with pip install -e ."}
    try:
        bundle = load("mnist-mini")
    except Exception as err:  # noqa: BLE001 - any failure to load is the finding
        return {"path": str(path), "found": True, "ok": False, "error": f"{type(err).__name__}: {err}"}
    return {"path": str(path), "found": True, "ok": True, "train": len(bundle.train), "test": len(bundle.test)}


def doctor(verbose: bool = True) -> dict:
    """Run every check; print a table if ``verbose``. Returns the report (see the module docstring)."""
    from .. import __version__
    from .runs import default_results

    python_ok = sys.version_info[:2] >= MIN_PYTHON
    versions = {"python": platform.python_version(), "robustviz": __version__}
    missing_required, missing_optional = [], []
    for distribution, module, required in PACKAGES:
        version = package_version(distribution, module)
        versions[distribution] = version
        if version is None:
            (missing_required if required else missing_optional).append(distribution)
    env = environment()
    report = {
        "versions": versions,
        "environment": env,
        "python_ok": python_ok,
        "missing_required": missing_required,
        "missing_optional": missing_optional,
        "device": device_report() if "torch" not in missing_required else {"cuda": False, "name": "unknown"},
        "widgets": widgets_report(env),
        "data": data_report() if not missing_required else {"ok": False, "error": "required packages missing"},
        "results": str(default_results()),
    }
    report["ok"] = bool(python_ok and not missing_required and report["data"]["ok"])
    if verbose:
        print(format_report(report))
    return report


def format_report(report: dict) -> str:
    """The report as aligned text lines with a verdict at the end."""
    lines = ["robustviz doctor", ""]
    for name, version in report["versions"].items():
        required = next((r for d, _, r in PACKAGES if d == name), name in ("python", "robustviz"))
        state = "ok" if version else ("MISSING (required)" if required else "missing (optional)")
        lines.append(f"  {name:<14} {version or '-':<14} {state}")
    if not report["python_ok"]:
        lines.append(f"  python {report['versions']['python']} is too old: robustviz needs >= "
                     f"{'.'.join(map(str, MIN_PYTHON))}")
    device = report["device"]
    lines += ["", f"  environment    {report['environment']}"]
    if device.get("cuda"):
        lines.append(f"  device         cuda: {device['name']} (CUDA {device.get('cuda_version')})")
    else:
        lines.append(f"  device         cpu ({device.get('torch_threads', '?')} torch threads); no CUDA GPU: "
                     "use the quick profile")
    widgets = report["widgets"]
    if widgets["ok"]:
        lines.append(f"  widgets        ipywidgets with {', '.join(widgets['frontends'])}")
    else:
        lines.append("  widgets        not available: the explorers need ipywidgets and a front-end for it "
                     "(pip install ipywidgets jupyterlab_widgets, or the [lab] extra)")
    data = report["data"]
    if data["ok"]:
        lines.append(f"  mnist-mini     {data['path']} ({data['train']:,} train / {data['test']:,} test)")
    else:
        lines.append(f"  mnist-mini     PROBLEM: {data.get('error')}")
    lines.append(f"  results cache  {report['results']}")
    lines += ["", "all required checks passed" if report["ok"] else "some required checks FAILED (see above)"]
    return "\n".join(lines)
