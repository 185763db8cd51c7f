"""``compare``: train every recipe (or reuse its cached checkpoint) and tabulate robustness.

Trained models are cached under ``<results>/<method>-<dataset>-<profile>-s<seed>/`` (the
run cache of ``robustviz.app.runs``; ``results`` defaults to ``runs.default_results()``): a
finished checkpoint of the same run is reused instead of retrained (``fit`` with
``resume=True`` finds nothing left to do), a checkpoint of another run in that folder (other
data, settings or seed) is refused with a sentence, and each evaluation is stored next to it
under a name derived from the evaluation settings, so a repeated call only rebuilds the table.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch

from .. import __version__, distributed, methods
from ..data import load, stratified_indices
from ..evaluate import LadderReport, RobustnessReport, evaluate_robustness, ladder
from .runs import default_results, run_path, trained


def run_dir(results: str | Path | None, method: str, dataset: str, profile: str, seed: int) -> Path:
    """The cache folder of one recipe's default run on the whole training set (``runs.run_path``)."""
    return run_path(method, dataset, profile, seed, results=results)


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
    results: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    ladder_level: str | None = None,
    ladder_n: int = 500,
    root: str | Path | None = "data",
    download: bool = False,
) -> list[dict]:
    """Train (or load) each recipe on ``dataset`` and evaluate it on ``n_eval`` test images.

    With ``ladder_level`` (``"quick"``, ``"standard"``, ``"full"``) every model also climbs the
    attack ladder at the largest eps on the first ``ladder_n`` of those images (cached too).

    Returns one row per method: ``{"method", "report", "train_seconds", "epochs", "seed",
    "history", "config", "ladder"}``, where ``train_seconds`` is the sum of the per-epoch times
    recorded in the history (training plus the per-epoch held-out monitoring), ``config`` the
    recipe's ``TrainConfig`` and ``ladder`` a ``LadderReport`` or ``None``.

    ``results`` is the run cache (default ``runs.default_results()``); ``root`` and ``download``
    go to ``robustviz.data.load``.
    """
    keys = list(method_keys) if method_keys else list(methods.RECIPES)
    for key in keys:
        methods.get(key)  # an unknown key fails now, not after the first recipes have trained
    results = default_results() if results is None else Path(results)
    bundle = load(dataset, root=root, download=download, seed=seed)
    test = bundle.test.subset(stratified_indices(bundle.test.y, min(n_eval, len(bundle.test)), seed))
    rows = []
    for key in keys:
        directory = run_dir(results, key, dataset, profile, seed)
        model, history = trained(key, dataset, profile, seed, results=results, progress=progress, device=device,
                                 data=bundle)
        report = cached(directory / evaluation_filename(n_eval, eps, attacks, seed), RobustnessReport,
                        partial(evaluate_robustness, model, test.x, test.y, eps, attacks, seed=seed, progress=progress))
        climbed = None
        if ladder_level is not None:
            key_json = json.dumps({"level": ladder_level, "n": ladder_n, "eps": max(eps), "seed": seed,
                                   "test": n_eval})
            name = f"ladder-{hashlib.sha1(key_json.encode()).hexdigest()[:10]}.json"
            climbed = cached(directory / name, LadderReport, partial(
                ladder, model, (test.x, test.y), max(eps), level=ladder_level, n=ladder_n, seed=seed,
                progress=progress))
        rows.append({"method": key, "report": report, "seed": seed, "epochs": len(history),
                     "train_seconds": sum(r["seconds"] for r in history.records), "history": history,
                     "config": methods.get(key).config(bundle.family, profile), "ladder": climbed})
    return rows


def cached(path: Path, kind: type, compute):
    """The report stored at ``path`` (``kind.from_dict``), else ``compute()``, stored there by rank 0.

    Under torchrun every rank takes rank 0's branch, and rank 0 alone reads and writes the file.
    """
    if distributed.agree(path.exists()):
        return read_cached(path, kind)
    report = compute()
    if distributed.is_main():
        path.write_text(json.dumps(report.to_dict(), indent=1))
    return report


def read_cached(path: Path, kind: type):
    """``kind.from_dict`` of the JSON file ``path``; under torchrun read by rank 0 and sent to every rank."""
    return distributed.broadcast_object(distributed.run_on_main(lambda: kind.from_dict(json.loads(path.read_text()))))


def markdown_table(rows: list[dict], dataset: str, profile: str, command: str, notes: str | None = None) -> str:
    """The comparison as a markdown document (accuracies in percent).

    Sections: the robustness table (with footnotes for the notes a method left in its
    history), the attack ladder when the rows have one, the held-out accuracy of every epoch
    (``held_out_table``), and ``notes`` (hand-written markdown, e.g. an analysis of the
    numbers) under "Notes".
    """
    first: RobustnessReport = rows[0]["report"]
    budgets = list(first.results)
    attacks = [a for a in first.results[budgets[0]] if a != "worst case"]
    header = ["method", "clean"] + [f"{a} {b:g}" for b in budgets for a in attacks]
    header += ["inputs", "train time", "epochs", "loss first -> last epoch", "seed"]
    lines = [
        f"# Results: every recipe on {dataset}, `{profile}` profile",
        "",
        f"Produced by `{command}` (robustviz {__version__}, torch {torch.__version__}, "
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads). Accuracy in percent on "
        f"{first.n} stratified test images; eps in [0, 1] pixel units (L-inf); robust accuracy "
        "counts a sample only if it is classified correctly both clean and attacked. Train time "
        "is the sum of the per-epoch wall-clock times, including each epoch's held-out monitoring. "
        "*inputs*: what the network sees, raw [0, 1] pixels or pixels normalised with the dataset's mean/std "
        "(each recipe as its source code did); *epochs*: trained epochs, and the epoch kept where the recipe "
        "selects its best epoch on held-out data.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    footnotes: list[str] = []
    for row in rows:
        report: RobustnessReport = row["report"]
        run_notes = _epoch_notes(row.get("history"))
        marks = "".join(f" [{len(footnotes) + i + 1}]" for i in range(len(run_notes)))
        footnotes += [f"[{len(footnotes) + i + 1}] {row['method']}: {text}"
                      for i, text in enumerate(run_notes.values())]
        cells = [row["method"] + marks, f"{100 * report.clean_acc:.1f}"]
        cells += [f"{100 * report.results[b][a]:.1f}" for b in budgets for a in attacks]
        cells += [_inputs(row.get("config")), f"{row['train_seconds']:.0f} s", _epochs(row),
                  _loss_trend(row.get("history")), str(row["seed"])]
        lines.append("| " + " | ".join(cells) + " |")
    if footnotes:
        lines += ["", *footnotes]
    ladders = [row for row in rows if row.get("ladder") is not None]
    if ladders:
        lines += ["", *ladder_table(ladders)]
    if any(row.get("history") is not None for row in rows):
        lines += ["", *held_out_table(rows)]
    if notes:
        lines += ["", "## Notes", "", notes.strip()]
    lines += ["", f"Written {time.strftime('%Y-%m-%d')}. These are the numbers this run measured."]
    return "\n".join(lines) + "\n"


def _inputs(config) -> str:
    if config is None:
        return ""
    return "raw" if config.input_norm == "none" else "mean/std"


def _epochs(row: dict) -> str:
    history = row.get("history")
    kept = history.last.get("rolled_back_to_epoch") if history is not None and len(history) else None
    return f"{row['epochs']} (kept {kept})" if kept else str(row["epochs"])


def _epoch_notes(history) -> dict[str, str]:
    """``{code: footnote}`` for every note the method left in ``history`` (``Method.epoch_notes``):
    in how many epochs it applied, then the first epoch's sentence."""
    if history is None:
        return {}
    epochs: dict[str, list[int]] = {}
    first: dict[str, str] = {}
    for record in history.records:
        for code, sentence in record.get("notes", {}).items():
            epochs.setdefault(code, []).append(record.get("epoch"))
            first.setdefault(code, sentence)
    return {code: f"{code} in {len(found)} of {len(history)} epochs ({', '.join(map(str, found))}). {first[code]}"
            for code, found in epochs.items()}


def _loss_trend(history) -> str:
    if history is None or not len(history):
        return ""
    losses = history["loss"]
    return f"{losses[0]:.3g} -> {losses[-1]:.3g}"


def held_out_table(rows: list[dict]) -> list[str]:
    """Markdown lines: clean and robust accuracy on the held-out batch after every epoch."""
    lines = [
        "## Held-out accuracy during training",
        "",
        "After every epoch `fit` measures the accuracy on a held-out batch of training images, clean and "
        "under the recipe's monitor attack (PGD-10 from a random start, or I-FGSM-3 for the SAT recipes, "
        "which keep their best epoch by it), in percent: clean / robust per epoch.",
        "",
        "| method | monitor | held-out clean / robust accuracy by epoch |",
        "|---|---|---|",
    ]
    for row in rows:
        history, config = row.get("history"), row.get("config")
        if history is None:
            continue
        monitor = "" if config is None else (
            f"I-FGSM-{config.monitor_steps}" if config.monitor_attack == "ifgsm" else f"PGD-{config.monitor_steps}")
        epochs = " · ".join(f"{100 * r['val_clean_acc']:.0f} / {100 * r['val_pgd_acc']:.0f}" for r in history.records)
        lines.append(f"| {row['method']} | {monitor} | {epochs} |")
    return lines


def ladder_table(rows: list[dict]) -> list[str]:
    """Markdown lines: every recipe's attack ladder side by side (accuracy per attack, worst case)."""
    first: LadderReport = rows[0]["ladder"]
    attacks = [r.attack for r in first.rows]
    lines = [
        f"## Attack ladder at eps = {first.eps:g} ({first.n} of the test images)",
        "",
        "Accuracy in percent under each attack on its own; *worst case* is the per-sample worst case over "
        "all of them (a sample counts only if it survived every attack), an upper bound of the true robust "
        "accuracy, not a certified one; *gap* is PGD-20 minus the worst case, "
        "the robustness that PGD-20 alone would have over-reported. `adaptive` is margin and cross-entropy "
        "PGD on every view of the method's own decision rule (for ClusTR also the hard nearest-centre "
        "rule); AutoAttack `fast` is APGD-CE + APGD-T (no FAB-T, no Square), `standard` the full "
        "RobustBench ensemble. *seconds* is the time of the whole ladder for that model.",
        "",
        "| method | clean | " + " | ".join(attacks) + " | worst case | gap | seconds |",
        "|" + "---|" * (len(attacks) + 5),
    ]
    for row in rows:
        report: LadderReport = row["ladder"]
        cells = [row["method"], f"{100 * report.clean_acc:.1f}"] + [f"{100 * r.accuracy:.1f}" for r in report.rows]
        cells += [f"**{100 * report.worst_case:.1f}**", f"{100 * report.rows[-1].gap:+.1f}",
                  f"{sum(r.seconds for r in report.rows):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines

