"""The package's design rules, checked: methods are folders nothing else imports, a method keeps
no state between ``batches`` and ``loss``, the settings table is current, and a new method is one
folder plus one line (the example of docs/architecture.md trains)."""

from __future__ import annotations

import ast
import copy
import dataclasses
import re
import sys
import types
from pathlib import Path

import pytest
import torch

from robustviz import data, methods, models, settings
from robustviz.app.cli import main
from robustviz.train import train_model

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "robustviz"
METHOD_KEYS = sorted(folder.__name__.rsplit(".", 1)[1] for folder in methods.METHOD_FOLDERS)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, as an absolute dotted name (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = ".".join(path.relative_to(ROOT).parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parents = parts[: len(parts) - node.level + 1]
                base = ".".join(parents + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_the_method_folders_are_the_registered_ones():
    on_disk = sorted(p.name for p in (PACKAGE / "methods").iterdir() if (p / "__init__.py").exists())
    assert on_disk == METHOD_KEYS
    for key in METHOD_KEYS:
        readme = (PACKAGE / "methods" / key / "README.md").read_text()
        assert readme.startswith("# ") and "Pitfalls" in readme and "arxiv.org" in readme.lower(), key
        assert "recipes.py" in readme and (PACKAGE / "methods" / key / "recipes.py").exists(), key


def test_no_module_outside_a_method_folder_imports_one():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).parts
        if relative[0] == "methods" and (len(relative) == 2 and relative[1] == "__init__.py" or
                                          len(relative) > 2):
            continue  # the registry, and the method folders themselves (which may build on each other)
        for name in imported_modules(path):
            if any(name == f"robustviz.methods.{key}" or name.startswith(f"robustviz.methods.{key}.")
                   for key in METHOD_KEYS):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_the_import_check_sees_relative_imports():
    assert "robustviz.evaluate.core.labels_from_scores" in imported_modules(PACKAGE / "viz" / "extraction.py")
    assert imported_modules(PACKAGE / "methods" / "clustr" / "method.py") >= {"robustviz.methods.clustr.head",
                                                                               "robustviz.attacks"}


def snapshot(value):
    """A comparable copy of an object's state: tensors cloned, objects as their attributes,
    modules left out (the model's own parameters change in training, not in ``loss``)."""
    if torch.is_tensor(value):
        return value.detach().clone()
    if isinstance(value, torch.nn.Module):
        return "<module>"
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [snapshot(v) for v in value]
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return {"<object>": type(value).__name__, **{k: snapshot(v) for k, v in vars(value).items()}}
    return copy.deepcopy(value)


def same(a, b) -> bool:
    if torch.is_tensor(a) or torch.is_tensor(b):
        return (torch.is_tensor(a) and torch.is_tensor(b) and a.shape == b.shape
                and torch.equal(a.nan_to_num(-7.0), b.nan_to_num(-7.0)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("key", list(methods.RECIPES))
def test_a_method_keeps_no_state_between_batches_and_loss(key):
    """Drawing a batch and computing its loss (twice) leave the method exactly as it was:
    per-example results go back only through ``observe``."""
    bundle = data.load("blobs", n_train=96, n_test=16, seed=0)
    recipe = methods.get(key)
    config = recipe.config(bundle.family, "quick")
    method = recipe.build_method(config, bundle.eps)
    model = models.build(config.model, bundle.num_classes, bundle.input_shape[0], feat_dim=config.feat_dim,
                         mean=bundle.mean, std=bundle.std, seed=0)
    method.attach(model)
    method.setup(model, bundle.train)
    loader = data.BatchIterator(bundle.train, batch_size=min(config.batch_size, 48), seed=0)
    before = snapshot(method)
    torch.manual_seed(0)
    batch = next(iter(method.batches(loader, 0)))
    assert same(before, snapshot(method)), f"{key}: batches() changed the method"
    for _ in range(2):
        out = method.loss(model, batch, methods.Step(epoch=method_epoch(method), index=0, total=10))
        assert torch.isfinite(out.loss), key
    assert same(before, snapshot(method)), f"{key}: loss() changed the method"


def method_epoch(method) -> int:
    """An epoch after any warm start the method has (ClusTR's cross-entropy pre-training)."""
    return int(getattr(method, "pretrain_epochs", 0) or 0)


def test_the_settings_table_in_docs_is_current():
    assert (ROOT / "docs" / "settings.md").read_text() == settings.settings_document(), (
        "docs/settings.md is out of date: run `python -m robustviz.settings > docs/settings.md`")


def test_every_setting_has_a_unit_and_show_config_prints_the_resolved_row(capsys):
    assert set(settings.UNITS) == set(settings.TrainConfig().to_dict())
    assert main(["train", "--method", "pgd_at", "--dataset", "cifar10", "--profile", "lab", "--show-config",
                 "--set", "lr=0.05"]) == 0
    out = capsys.readouterr().out
    row = methods.get("pgd_at").config("cifar", "lab", lr=0.05)
    assert re.search(r"^lr\s+0\.05\s+peak learning rate$", out, re.M)
    assert re.search(rf"^epochs\s+{row.epochs}\s+epochs$", out, re.M)
    assert re.search(r"^method_kwargs\.steps\s+2\s", out, re.M)


def example_method_source() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("<!-- example-method -->", 1)[1]
    return block.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_example_method_of_the_architecture_doc_is_one_folder_and_trains(tmp_path, monkeypatch):
    source = example_method_source()
    assert len(source.strip().splitlines()) <= 40
    folder = tmp_path / "logit_pairing"
    folder.mkdir()
    (folder / "__init__.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(methods, "RECIPES", dict(methods.RECIPES))  # leave the registry as it was
    import logit_pairing

    methods.register(logit_pairing)  # the one line
    bundle = data.load("blobs", seed=0)
    model, history = train_model("logit_pairing", bundle, "quick", seed=0, steps=60, val_size=100,
                                 progress=False, device="cpu")
    assert {"adv_ce", "pairing"} <= set(history.last)
    assert history.last["loss"] < history.records[0]["loss"]
    assert history.last["val_clean_acc"] > 0.8
    clash = types.SimpleNamespace(RECIPES=[dataclasses.replace(methods.get("pgd_at"), key="logit_pairing")])
    with pytest.raises(ValueError, match="already registered"):
        methods.register(clash)
    sys.modules.pop("logit_pairing", None)


def test_the_state_check_catches_a_method_that_remembers_its_batch():
    class Remembering(methods.Method):
        def __init__(self):
            self.pending = None

        def batches(self, loader, epoch):
            for batch in super().batches(loader, epoch):
                self.pending = batch.y  # the pattern the rule forbids
                yield batch

    method = Remembering()
    before = snapshot(method)
    next(iter(method.batches(data.BatchIterator(data.load("blobs", n_train=32, seed=0).train, 8, seed=0), 0)))
    assert not same(before, snapshot(method))
