"""``compare``: train every recipe (or reuse its cached checkpoint) and tabulate robustness.

Trained models are cached under ``results/<method>-<dataset>-<profile>-s<seed>/``: a
finished checkpoint with the same settings is reused instead of retrained (``fit`` with
``resume=True`` finds nothing left to do), and each evaluation is stored next to it under
a name derived from the evaluation settings, so a repeated call only rebuilds the table.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from . import __version__, methods
from .data import load, stratified_indices
from .evaluate import RobustnessReport, evaluate_robustness
from .train import train_model


def run_dir(results: str | Path, method: str, dataset: str, profile: str, seed: int) -> Path:
    """The cache folder of one trained model."""
    tag = dataset.replace("folder:", "folder-").replace("/", "_")
    return Path(results) / f"{method}-{tag}-{profile}-s{seed}"


def evaluation_filename(n_eval: int, eps: Sequence[float], attacks: Sequence[str], seed: int) -> str:
    """Name of the cached evaluation of one model for these evaluation settings."""
    key = json.dumps({"n": n_eval, "eps": [float(e) for e in eps], "attacks": list(attacks), "seed": seed})
    return f"evaluation-{hashlib.sha1(key.encode()).hexdigest()[:10]}.json"


def compare(
    method_keys: Sequence[str] | None = None,
    dataset: str = "mnist-mini",
    profile: str = "quick",
    seed: int = 0,
    n_eval: int = 1000,
    eps: Sequence[float] = (0.1, 0.2, 0.3),
    attacks: Sequence[str] = ("fgsm", "pgd-20"),
    results: str | Path = "results",
    device: str = "cpu",
    progress: bool = True,
) -> list[dict]:
    """Train (or load) each recipe on ``dataset`` and evaluate it on ``n_eval`` test images.

    Returns one row per method: ``{"method", "report", "train_seconds", "epochs", "seed"}``,
    where ``train_seconds`` is the sum of the per-epoch times recorded in the history
    (training plus the per-epoch held-out monitoring).
    """
    keys = list(method_keys) if method_keys else list(methods.RECIPES)
    bundle = load(dataset, seed=seed)
    test = bundle.test.subset(stratified_indices(bundle.test.y, min(n_eval, len(bundle.test)), seed))
    rows = []
    for key in keys:
        model, history = train_model(key, bundle, profile, seed, device=device,
                                     checkpoint_dir=run_dir(results, key, dataset, profile, seed),
                                     resume=True, progress=progress)
        cache = run_dir(results, key, dataset, profile, seed) / evaluation_filename(n_eval, eps, attacks, seed)
        if cache.exists():
            report = RobustnessReport.from_dict(json.loads(cache.read_text()))
        else:
            report = evaluate_robustness(model, test.x, test.y, eps, attacks, seed=seed, progress=progress)
            cache.write_text(json.dumps(report.to_dict(), indent=1))
        rows.append({"method": key, "report": report, "seed": seed, "epochs": len(history),
                     "train_seconds": sum(r["seconds"] for r in history.records)})
    return rows


def markdown_table(rows: list[dict], dataset: str, profile: str, command: str) -> str:
    """The comparison as a markdown document (accuracies in percent)."""
    first: RobustnessReport = rows[0]["report"]
    budgets = list(first.results)
    attacks = [a for a in first.results[budgets[0]] if a != "worst case"]
    header = ["method", "clean"] + [f"{a} {b:g}" for b in budgets for a in attacks]
    header += ["train time", "epochs", "seed"]
    lines = [
        f"# Results: every recipe on {dataset}, `{profile}` profile",
        "",
        f"Produced by `{command}` (robustviz {__version__}, torch {torch.__version__}, "
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads). Accuracy in percent on "
        f"{first.n} stratified test images; eps in [0, 1] pixel units (L-inf); robust accuracy "
        "counts a sample only if it is classified correctly both clean and attacked. Train time "
        "is the sum of the per-epoch wall-clock times, including each epoch's held-out monitoring.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        report: RobustnessReport = row["report"]
        cells = [row["method"], f"{100 * report.clean_acc:.1f}"]
        cells += [f"{100 * report.results[b][a]:.1f}" for b in budgets for a in attacks]
        cells += [f"{row['train_seconds']:.0f} s", str(row["epochs"]), str(row["seed"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Written {time.strftime('%Y-%m-%d')}. These are the numbers this run measured."]
    return "\n".join(lines) + "\n"

