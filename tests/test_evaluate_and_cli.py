"""Evaluation reports, the command line, and the demo end to end (small settings)."""

from __future__ import annotations

import json

import pytest
import torch

from robustviz.app.cli import main, parse_settings
from robustviz.app.demo import run_demo
from robustviz.attacks import make_attack
from robustviz.evaluate import evaluate_robustness


def test_report_invariants(trained_cnn, small_mnist):
    x, y = small_mnist.test.x[:200], small_mnist.test.y[:200]
    report = evaluate_robustness(trained_cnn, x, y, eps=(0.05, 0.2), attacks=("fgsm", "pgd-10"),
                                 progress=False)
    assert report.n == 200
    for budget, row in report.results.items():
        assert set(row) == {"FGSM", "PGD-10", "worst case"}
        assert row["worst case"] <= min(row["FGSM"], row["PGD-10"]) <= report.clean_acc
        survived = report.correct[budget]
        assert torch.equal(survived["worst case"], survived["FGSM"] & survived["PGD-10"])
    assert report.results[0.2]["PGD-10"] <= report.results[0.05]["PGD-10"]
    table = report.table("title")
    assert "PGD-10" in table and "0.05" in table and "%" in table
    json.dumps(report.to_dict())


def test_make_attack_specs():
    assert make_attack("fgsm", 0.1).name == "FGSM"
    attack = make_attack("pgd-100x5-margin", 0.1)
    settings = attack.settings
    assert (settings["steps"], settings["restarts"], settings["loss"], settings["norm"]) == (100, 5, "margin", "linf")
    assert make_attack("PGD-20-l2", 0.5).settings["norm"] == "l2"
    with pytest.raises(ValueError, match="unknown attack"):
        make_attack("cw", 0.1)
    with pytest.raises(ValueError, match="255"):
        evaluate_robustness(torch.nn.Linear(2, 2), torch.rand(3, 2), torch.zeros(3, dtype=torch.long), eps=(8,))


def test_cli_list_and_help(capsys):
    assert main(["train", "--list"]) == 0
    listed = capsys.readouterr().out
    for key in ("ce", "pgd_at", "fgsm_at", "fgsm_rs"):
        assert key in listed
    for command in ("demo", "train", "evaluate"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: robustviz" in capsys.readouterr().out


def test_cli_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--method", "fgsm_rs", "--n-train", "600", "--steps", "4", "--set", "val_size=100",
            "--out", str(out), "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    assert "checkpoint:" in capsys.readouterr().out
    result = tmp_path / "eval.json"
    assert main(["evaluate", str(out), "--eps", "0.1", "--attacks", "fgsm", "pgd-5", "--n", "100",
                 "--json", str(result), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "PGD-5" in printed and "fgsm_rs on mnist-mini" in printed
    assert json.loads(result.read_text())["n"] == 100


def test_cli_reports_bad_input_as_an_error(capsys):
    assert main(["train", "--method", "nope", "--no-progress"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["train", "--dataset", "nope", "--no-progress"]) == 2
    assert main(["evaluate", "/nonexistent/checkpoint"]) == 2


def test_parse_settings():
    assert parse_settings(["lr=0.01", "optimizer=sgd", "milestones=[2, 3]"]) == {
        "lr": 0.01, "optimizer": "sgd", "milestones": (2, 3)}
    with pytest.raises(ValueError):
        parse_settings(["lr"])


def test_demo_end_to_end_small(tmp_path):
    metrics = run_demo(tmp_path, n_eval=100, epochs=1, progress=False)
    for name in ("metrics.json", "accuracy_vs_eps.png", "features_pca.png", "ce/model.pt", "pgd_at/meta.json"):
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["models"].keys() == {"ce", "pgd_at"}
    for entry in saved["models"].values():
        assert set(entry["report"]["results"]) == {"0.1", "0.2", "0.3"}
    assert metrics["timings"]["total_s"] > 0


def test_compare_trains_once_then_reuses_the_cache(tmp_path, capsys, monkeypatch):
    from robustviz.app import runs as runs_module  # compare trains through runs.trained

    original = runs_module.train_model

    def short_training(method, bundle, profile, seed, **kwargs):
        return original(method, bundle, profile, seed, steps=3, val_size=100, **kwargs)

    monkeypatch.setattr(runs_module, "train_model", short_training)
    out, cache = tmp_path / "results.md", tmp_path / "cache"
    args = ["compare", "--methods", "ce", "fgsm_rs", "--n-eval", "100", "--eps", "0.1", "--results",
            str(cache), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    first = out.read_text()
    assert "| ce |" in first and "| fgsm_rs |" in first and "PGD-20 0.1" in first
    assert main(args) == 0  # second run: the checkpoints are finished, nothing is retrained
    for method in ("ce", "fgsm_rs"):
        meta = json.loads((cache / f"{method}-mnist-mini-quick-s0" / "meta.json").read_text())
        assert len(meta["history"]) == 1
    capsys.readouterr()


def test_diagnoses_table_puts_models_side_by_side():
    from robustviz.evaluate import Diagnosis, Flag, diagnoses_table

    def diagnosis(value, raised):
        flags = {name: Flag(name, raised, value, 0.1, True, "why") for name in ("zero_gradients", "fgsm_above_clean")}
        return Diagnosis(0.3, flags)

    table = diagnoses_table({"fgsm_at": diagnosis(0.756, True), "pgd_at": diagnosis(0.0, False)}).splitlines()
    assert table[0] == "| flag | fgsm_at | pgd_at |" and table[1] == "|---|---|---|"
    assert table[2] == "| zero_gradients | **RAISED** 0.76 | 0.00 |"
    assert len(table) == 4
    with pytest.raises(ValueError, match="at least one"):
        diagnoses_table({})
