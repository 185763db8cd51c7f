"""The demo: a standard and an adversarially trained model on mnist-mini, compared.

``run_demo`` trains ``ce`` and ``pgd_at`` (smallcnn, quick profile), evaluates clean,
FGSM and PGD-20 accuracy at eps 0.1, 0.2 and 0.3, and writes to ``out``:

* ``metrics.json``: every accuracy, the training histories and timings;
* ``accuracy_vs_eps.png``: accuracy under attack against eps for both models;
* ``features_pca.png``: 2-D PCA of the features of 300 test images, clean and
  adversarial (PGD-20, eps 0.3);
* ``ce/``, ``pgd_at/``: the checkpoints (a new demo in the same folder replaces them).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from .. import __version__
from ..attacks import pgd
from ..data import load, stratified_indices
from ..evaluate import evaluate_robustness
from ..train import train_model
from ..viz import features_of, plot_accuracy_vs_eps, plot_feature_pca

DEMO_METHODS = ("ce", "pgd_at")
DEMO_EPS = (0.1, 0.2, 0.3)
DEMO_ATTACKS = ("fgsm", "pgd-20")
PCA_POINTS = 300


def run_demo(
    out: str | Path = "results/demo",
    seed: int = 0,
    n_eval: int = 1000,
    device: str = "cpu",
    progress: bool = True,
    epochs: int | None = None,
) -> dict:
    """Train, evaluate and plot; returns the metrics written to ``out/metrics.json``.

    Args:
        out: output folder.
        seed: seed for model initialisation, training and attacks.
        n_eval: test images to evaluate on (a stratified subset of the 2,000).
        device: ``"cpu"`` (default, as in the quick profile) or e.g. ``"cuda"``.
        progress: progress bars.
        epochs: override the recipes' epochs (for a faster smoke run).
    """
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = load("mnist-mini")
    test = bundle.test.subset(stratified_indices(bundle.test.y, n_eval, seed))
    overrides = {"epochs": epochs} if epochs is not None else {}
    trained, reports, timings = {}, {}, {}
    for method in DEMO_METHODS:
        t0 = time.perf_counter()
        model, history = train_model(method, bundle, "quick", seed, device=device,
                                     checkpoint_dir=out / method, progress=progress, overwrite=True, **overrides)
        timings[f"train_{method}_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        reports[method] = evaluate_robustness(model, test.x, test.y, DEMO_EPS, DEMO_ATTACKS,
                                              seed=seed, progress=progress)
        timings[f"evaluate_{method}_s"] = time.perf_counter() - t0
        trained[method] = (model, history)
    plot_accuracy_vs_eps(reports).savefig(out / "accuracy_vs_eps.png", dpi=120)
    panels = {f"{m}: clean (dots) vs PGD-20 at eps 0.3 (crosses)": _pca_panel(trained[m][0], test, seed)
              for m in DEMO_METHODS}
    plot_feature_pca(panels, bundle.classes, "PGD-20, eps 0.3").savefig(out / "features_pca.png", dpi=120)
    timings["total_s"] = time.perf_counter() - started
    metrics = {
        "dataset": bundle.name, "n_eval": n_eval, "seed": seed, "profile": "quick",
        "eps": list(DEMO_EPS), "attacks": list(DEMO_ATTACKS),
        "models": {m: {"report": reports[m].to_dict(), "history": trained[m][1].to_list()}
                   for m in DEMO_METHODS},
        "timings": timings,
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                    "device": device, "robustviz": __version__, "torch": torch.__version__},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def _pca_panel(model, test, seed: int, n_points: int = PCA_POINTS):
    x, y = test.x[:n_points], test.y[:n_points]
    x_adv = pgd(model, x, y, 0.3, steps=20, seed=seed)
    return features_of(model, x), features_of(model, x_adv), y


def demo_table(metrics: dict) -> str:
    """The demo's results as one text table (rows: model x eps)."""
    lines = [f"{'model':<8} {'eps':>5} {'clean':>7} {'FGSM':>7} {'PGD-20':>7}", "-" * 38]
    for method, entry in metrics["models"].items():
        report = entry["report"]
        for eps, row in report["results"].items():
            lines.append(f"{method:<8} {float(eps):>5.2f} {100 * report['clean_acc']:>6.1f}% "
                         f"{100 * row['FGSM']:>6.1f}% {100 * row['PGD-20']:>6.1f}%")
    return "\n".join(lines)

