"""The training loop: learning, history, schedules, checkpoints and exact resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from robustviz import data, methods, models
from robustviz.train import fit, load_checkpoint, make_schedule, train_model
from robustviz.train import loop as fit_module


@pytest.fixture(scope="module")
def tiny_mnist():
    return data.load("mnist-mini", n_train=600, n_test=100, seed=0)


def build(bundle, seed=0):
    return models.build("smallcnn", 10, 1, mean=bundle.mean, std=bundle.std, seed=seed)


def test_training_lowers_the_loss_and_fills_the_history(small_mnist):
    model = build(small_mnist)
    history = fit(model, small_mnist, "ce", epochs=2, val_size=200, progress=False)
    losses = history["loss"]
    assert len(history) == 2 and losses[1] < losses[0]
    assert losses[0] < math.log(10)  # below chance-level cross-entropy after one epoch
    for key in ("epoch", "step", "lr", "loss", "ce", "train_acc", "val_clean_acc", "val_pgd_acc", "seconds"):
        assert key in history.last
    assert history.last["val_clean_acc"] > 0.7
    assert not model.training


@pytest.mark.parametrize("method", ["pgd_at", "fgsm_at", "fgsm_rs"])
def test_adversarial_recipes_train_without_nan(tiny_mnist, method):
    model = build(tiny_mnist)
    history = fit(model, tiny_mnist, method, steps=6, val_size=100, progress=False)
    record = history.last
    assert math.isfinite(record["loss"]) and "adv_ce" in record and record["step"] == 6


def test_steps_override_epochs(tiny_mnist):
    history = fit(build(tiny_mnist), tiny_mnist, "ce", steps=5, batch_size=100, val_size=100, progress=False)
    assert history.last["step"] == 5 and len(history) == 1


def test_eps_ramp_grows_the_training_eps():
    method = methods.standard.AdversarialTraining(eps=0.3, steps=1, eps_ramp=0.5)
    assert method.ramp_factor(methods.Step(index=25, total=100)) == pytest.approx(0.5)
    assert method.ramp_factor(methods.Step(index=90, total=100)) == 1.0


def test_checkpoint_round_trip(tiny_mnist, tmp_path):
    model, _ = train_model("fgsm_rs", tiny_mnist, epochs=1, val_size=100, checkpoint_dir=tmp_path,
                           progress=False, device="cpu")
    loaded, meta = load_checkpoint(tmp_path)
    x = tiny_mnist.test.x
    assert torch.equal(model(x), loaded(x))
    assert meta["method"] == "fgsm_rs" and meta["seed"] == 0 and len(meta["history"]) == 1
    json.loads((tmp_path / "meta.json").read_text())  # plain JSON
    # Everything saved loads under weights_only=True (no pickled code).
    for name in ("model.pt", "train_state.pt"):
        torch.load(tmp_path / name, weights_only=True)


def test_resume_after_interruption_gives_identical_weights(tiny_mnist, tmp_path, monkeypatch):
    settings = dict(epochs=3, val_size=100, batch_size=64, progress=False)
    reference = build(tiny_mnist, seed=1)
    fit(reference, tiny_mnist, "fgsm_rs", seed=4, **settings)

    original_step = fit_module._Run.train_step
    calls = {"n": 0}

    def interrupted_step(self, x, y):
        calls["n"] += 1
        if calls["n"] == 12:  # in the middle of the second epoch (8 steps per epoch)
            raise KeyboardInterrupt
        return original_step(self, x, y)

    monkeypatch.setattr(fit_module._Run, "train_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        fit(build(tiny_mnist, seed=1), tiny_mnist, "fgsm_rs", seed=4, checkpoint_dir=tmp_path, **settings)
    monkeypatch.setattr(fit_module._Run, "train_step", original_step)
    assert json.loads((tmp_path / "meta.json").read_text())["epoch"] == 1

    resumed = build(tiny_mnist, seed=99)  # its own weights are replaced by the checkpoint's
    history = fit(resumed, tiny_mnist, "fgsm_rs", seed=4, checkpoint_dir=tmp_path, resume=True, **settings)
    assert len(history) == 3
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_resumed_run_rolls_back_to_the_same_best_epoch(tmp_path, monkeypatch):
    blobs = data.load("blobs", n_train=300, n_test=20, seed=0)
    settings = dict(epochs=8, val_size=50, rollback=True, lr=0.5, eps=0.1, progress=False, device="cpu")
    reference, history = train_model("ce", blobs, **settings)
    assert history.last["rolled_back_to_epoch"] == 6  # these settings' best held-out epoch is not the last

    original_step = fit_module._Run.train_step
    calls = {"n": 0}

    def interrupted_step(self, x, y):
        calls["n"] += 1
        if calls["n"] == 4 * 6 + 2:  # in epoch 7 (4 steps per epoch), after the best epoch was saved
            raise KeyboardInterrupt
        return original_step(self, x, y)

    monkeypatch.setattr(fit_module._Run, "train_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        train_model("ce", blobs, checkpoint_dir=tmp_path, **settings)
    monkeypatch.setattr(fit_module._Run, "train_step", original_step)
    resumed, resumed_history = train_model("ce", blobs, checkpoint_dir=tmp_path, resume=True, **settings)
    assert resumed_history.last["rolled_back_to_epoch"] == 6
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    stamp = (tmp_path / "meta.json").read_bytes()
    train_model("ce", blobs, checkpoint_dir=tmp_path, resume=True, **settings)  # finished: only read
    assert (tmp_path / "meta.json").read_bytes() == stamp


def test_resume_refuses_a_checkpoint_with_other_settings(tiny_mnist, tmp_path):
    fit(build(tiny_mnist), tiny_mnist, "ce", steps=2, val_size=100, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="different settings"):
        fit(build(tiny_mnist), tiny_mnist, "ce", steps=2, lr=0.5, val_size=100, checkpoint_dir=tmp_path,
            resume=True, progress=False)


def test_bad_training_input_is_rejected(tiny_mnist):
    model = models.build("smallcnn", 5, 1)  # only 5 classes, the data has 10
    with pytest.raises(ValueError, match="labels in"):
        fit(model, tiny_mnist, "ce", steps=1, progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        fit(build(tiny_mnist), tiny_mnist, "magic", progress=False)
    with pytest.raises(ValueError, match="unknown training setting"):
        fit(build(tiny_mnist), tiny_mnist, "ce", epochz=3, progress=False)
    with pytest.raises(ValueError, match="profile"):
        fit(build(tiny_mnist), tiny_mnist, "ce", profile="fast", progress=False)


def test_schedules():
    multistep = make_schedule("multistep", 0.1, 1000, 100, milestones=(5, 8), gamma=0.1)
    assert multistep(0) == 0.1 and multistep(500) == pytest.approx(0.01) and multistep(800) == pytest.approx(0.001)
    cosine = make_schedule("cosine", 1.0, 100, 10)
    assert cosine(0) == 1.0 and cosine(50) == pytest.approx(0.5) and cosine(100) == pytest.approx(0.0)
    onecycle = make_schedule("onecycle", 0.2, 100, 10)
    peak = max(range(100), key=onecycle)
    assert onecycle(peak) == pytest.approx(0.2) and 45 <= peak <= 55  # Wong et al.: the peak at half of training
    assert onecycle(0) < 0.02 and onecycle(99) < 0.01
    with pytest.raises(ValueError, match="schedule"):
        make_schedule("linear", 0.1, 10, 1)


def test_recipe_configs_cover_every_family_and_profile():
    family_eps = {"mnist": 0.3, "cifar": 8 / 255, "toy": 0.05}
    for key, recipe in methods.RECIPES.items():
        for family in methods.FAMILIES:
            for profile in methods.PROFILES:
                config = recipe.config(family, profile)
                method = recipe.build_method(config, default_eps=family_eps[family])
                assert isinstance(method, methods.Method), key
    assert methods.get("fgsm_rs").config("cifar", "full").method_kwargs["step_size"] == pytest.approx(10 / 255)


def test_the_lab_profile_is_everywhere_a_profile_is_chosen():
    from robustviz.app import cli, runs

    assert methods.PROFILES == ("quick", "lab", "full")
    assert cli.PROFILE_CHOICES == methods.PROFILES
    assert set(runs.N_EVAL) == set(methods.PROFILES)
    for family in methods.FAMILIES:
        assert (family, "lab") in methods.BASE_CONFIGS
    assert cli.build_parser().parse_args(["train", "--profile", "lab"]).profile == "lab"
    assert cli.build_parser().parse_args(["compare", "--profile", "lab"]).profile == "lab"


def test_every_recipe_has_its_own_cifar_lab_settings():
    """Lab settings are set per recipe (docs/profiles.md), never inherited unsaid from the base."""
    for key, recipe in methods.RECIPES.items():
        assert ("cifar", "lab") in recipe.overrides, key
        config = recipe.config("cifar", "lab")
        assert config.model in ("preact_resnet18", "resnet18"), key  # sized for ~10 T4 minutes
        assert config.epochs <= 30 and config.method_kwargs.get("steps", 1) <= 5, key


def test_a_star_key_applies_to_every_profile():
    recipe = methods.get("pgd_at")  # ("toy", "*"): 10 attack steps
    assert [recipe.config("toy", p).method_kwargs["steps"] for p in methods.PROFILES] == [10, 10, 10]


def test_shortened_keeps_the_full_settings_and_scales_the_schedule():
    full = methods.get("trades").config("mnist", "full")
    lab = methods.get("trades").config("mnist", "lab")
    assert (lab.epochs, lab.milestones) == (10, (5,))  # full: 100 epochs, x0.1 after epoch 54
    assert lab.updated(epochs=full.epochs, milestones=full.milestones) == full
