"""The recipes train what the papers' code trained: input scaling, networks, schedules,
BatchNorm mode while crafting, model selection, ClusTR's warm start, and the loop's hygiene."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from robustviz import data, methods, models
from robustviz.attacks.core import batch_statistics, crafting_batchnorm
from robustviz.evaluate import diagnose
from robustviz.methods import Batch, Step
from robustviz.train import fit, input_statistics, load_checkpoint, make_schedule, train_model

# What each recipe's source code fed its network, per (family, profile). "dataset" = the
# dataset's per-channel mean/std as the first layer; "none" = raw [0, 1] pixels. Quick
# profiles are robustviz's CPU settings ("dataset") unless they copy a source's optimiser
# and learning rate (SAT-Rx).
INPUT_NORM = {
    #               mnist quick, mnist full, cifar quick, cifar full
    "ce":             ("dataset", "none", "dataset", "dataset"),  # no source; Rice et al.'s CIFAR loop
    "pgd_at":         ("dataset", "none", "dataset", "dataset"),  # Madry et al. TF (raw); Rice et al. (normalised)
    "fgsm_at":        ("dataset", "none", "dataset", "dataset"),  # Wong et al. MNIST (raw) / CIFAR (normalised)
    "fgsm_rs":        ("dataset", "none", "dataset", "dataset"),  # the same
    "trades":         ("dataset", "none", "dataset", "none"),     # TRADES MNIST and CIFAR: ToTensor only
    "gce":            ("dataset", "none", "dataset", "dataset"),  # GCE MNIST (Normalize commented out); COT CIFAR
    "gce_at":         ("dataset", "none", "dataset", "dataset"),
    "drp":            ("dataset", "none", "dataset", "none"),     # the DRP release has no Normalize
    "drp_faithful":   ("dataset", "none", "dataset", "none"),
    "clustr":         ("dataset", "dataset", "dataset", "dataset"),  # ClusTR normalises (CIFAR statistics)
    "clustr_qtrades": ("dataset", "dataset", "dataset", "dataset"),
    "adr":            ("dataset", "none", "dataset", "dataset"),  # ADR PyTorch MNIST (raw); TF: per-image
    "sat_r1":         ("none", "none", "dataset", "none"),        # SAT-Rx: mean 0, std 1
    "sat_r2":         ("none", "none", "dataset", "none"),
    "sat_r3":         ("none", "none", "dataset", "none"),
}
CELLS = [("mnist", "quick"), ("mnist", "full"), ("cifar", "quick"), ("cifar", "full")]

# BatchNorm mode of each recipe's training attack in its full profiles, from the cited code.
ATTACK_BN = {
    ("pgd_at", "cifar"): "train",          # Rice et al.: attack_pgd in model.train()
    ("fgsm_at", "cifar"): "train",         # Wong et al.: train_fgsm.py never calls eval()
    ("fgsm_rs", "cifar"): "train",
    ("trades", "cifar"): "eval",           # TRADES calls model.eval() before the attack
    ("adr", "cifar"): "train",             # the TF code keeps BatchNorm in training mode
    ("adr", "mnist"): "eval",              # the PyTorch port crafts in eval mode
    ("clustr_qtrades", "cifar"): "train",  # ClusTR crafts QTRADES in train mode
    ("sat_r1", "cifar"): "eval",           # SAT-Rx crafts in eval mode
    ("sat_r2", "cifar"): "eval",
    ("sat_r3", "cifar"): "eval",
}


def test_the_table_covers_every_recipe():
    assert set(INPUT_NORM) == set(methods.RECIPES)


@pytest.mark.parametrize("key", list(INPUT_NORM))
def test_each_recipe_scales_its_inputs_as_its_source_did(key):
    recipe = methods.get(key)
    assert tuple(recipe.config(f, p).input_norm for f, p in CELLS) == INPUT_NORM[key]


@pytest.mark.parametrize(("key", "family"), list(ATTACK_BN))
def test_each_recipe_crafts_in_the_batchnorm_mode_of_its_source(key, family):
    recipe = methods.get(key)
    method = recipe.build_method(recipe.config(family, "full"), 8 / 255)
    crafter = getattr(method, "attacker", method)  # ADR crafts with its base method
    assert crafter.attack_bn == ATTACK_BN[(key, family)]


def test_input_statistics_follow_the_setting(small_mnist):
    quick = methods.get("sat_r3").config("mnist", "quick")
    assert input_statistics(quick, small_mnist) == ((0.0,), (1.0,))
    assert input_statistics(quick.updated(input_norm="dataset"), small_mnist) == (small_mnist.mean, small_mnist.std)
    with pytest.raises(ValueError, match="input_norm"):
        quick.updated(input_norm="per_image")


def test_lenet_plus_is_the_authors_network():
    model = models.build("lenet_plus", 10, 1)
    fc = [m for m in model.body.modules() if isinstance(m, nn.Linear)][0]
    assert fc.in_features == 64 * 7 * 7 == 3136 and fc.out_features == 1024
    convs = [m for m in model.body.modules() if isinstance(m, nn.Conv2d)]
    assert [c.padding for c in convs] == [(2, 2), (2, 2)] and all(c.bias is not None for c in convs)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_satrx_wide_resnet_has_conv_biases_and_xavier_init():
    model = models.build("wrn28_10_satrx", 10, 3, seed=0)
    convs = [m for m in model.body.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 3 * 4 * 2 + 3 and all(c.bias is not None and not c.bias.any() for c in convs)
    wide = convs[5]  # a 3x3 convolution inside the first stage: Xavier-uniform bound with gain sqrt(2)
    fan_in, fan_out = wide.in_channels * 9, wide.out_channels * 9
    bound = math.sqrt(2) * math.sqrt(6 / (fan_in + fan_out))
    largest = float(wide.weight.detach().abs().max())
    assert 0.9 * bound < largest <= bound
    final_bn = [m for m in model.body.modules() if isinstance(m, nn.BatchNorm2d)][-1]
    assert final_bn.momentum == 0.9
    assert model.features(torch.rand(2, 3, 32, 32)).shape == (2, 640)


def test_a_raw_input_checkpoint_reloads_and_predicts_identically(small_mnist, tmp_path):
    model, _ = train_model("sat_r3", small_mnist, steps=8, val_size=100, checkpoint_dir=tmp_path, progress=False,
                           device="cpu")
    assert float(model.normalize.mean) == 0.0 and float(model.normalize.std) == 1.0
    loaded, meta = load_checkpoint(tmp_path)
    assert meta["config"]["input_norm"] == "none"
    assert float(loaded.normalize.mean) == 0.0 and float(loaded.normalize.std) == 1.0
    x = small_mnist.test.x[:64]
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_fit_warns_when_the_model_scales_inputs_unlike_the_recipe(small_mnist):
    model = models.build("lenet_plus", 10, 1, mean=small_mnist.mean, std=small_mnist.std, seed=0)
    with pytest.warns(UserWarning, match="input_norm='none'"):
        fit(model, small_mnist, "sat_r1", steps=1, val_size=50, progress=False)
    raw = models.build("lenet_plus", 10, 1, mean=(0.0,), std=(1.0,), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fit(raw, small_mnist, "sat_r1", steps=1, val_size=50, progress=False)


def test_fit_returns_with_every_gradient_cleared(small_mnist):
    model = models.build("smallcnn", 10, 1, mean=small_mnist.mean, std=small_mnist.std, seed=0)
    fit(model, small_mnist, "pgd_at", steps=3, val_size=50, progress=False)
    assert all(p.grad is None for p in model.parameters())


def test_sat_recipes_select_the_best_ifgsm_epoch_with_the_authors_schedule():
    for key in ("sat_r1", "sat_r2", "sat_r3"):
        for profile in ("quick", "full"):
            config = methods.get(key).config("mnist", profile)
            assert config.rollback and config.monitor_attack == "ifgsm" and config.monitor_steps == 3
            assert config.schedule == "multistep" and config.gamma == 0.2
            assert config.milestones == methods.singlestep.recipes.step_milestones(config.epochs)
    quick = methods.get("sat_r3").config("mnist", "quick")
    lr_at = make_schedule(quick.schedule, quick.lr, 400, 100, quick.milestones, quick.gamma)
    # /5 after the first quarter-ish of training (0-indexed epoch E/4, integer division), then /25.
    first_drop = quick.milestones[0] * 100
    assert lr_at(first_drop - 1) == quick.lr and lr_at(first_drop) == pytest.approx(quick.lr / 5)
    assert methods.get("sat_r3").config("cifar", "full").model == "wrn28_10_satrx"


def test_ifgsm_monitor_is_pgd_without_random_start(small_mnist, monkeypatch):
    calls = []
    from robustviz.train import loop

    def spy(model, x, y, eps, **kwargs):
        calls.append(kwargs)
        return x

    monkeypatch.setattr(loop, "pgd", spy)
    model = models.build("lenet_plus", 10, 1, mean=(0.0,), std=(1.0,), seed=0)
    fit(model, small_mnist, "ce", steps=1, val_size=50, progress=False, monitor_attack="ifgsm", monitor_steps=3,
        input_norm="none")
    assert calls == [dict(steps=3, step_size=pytest.approx(0.1), random_start=False)]


def test_onecycle_peaks_where_the_source_does():
    assert methods.get("fgsm_rs").config("cifar", "full").warmup_fraction == 0.5  # train_fgsm.py: lr_steps / 2
    assert methods.get("fgsm_at").config("cifar", "full").warmup_fraction == 0.5
    assert methods.get("fgsm_rs").config("mnist", "full").warmup_fraction == 0.4  # train_mnist.py: epochs * 2 // 5
    lr_at = make_schedule("onecycle", 0.2, 1000, 100, warmup_fraction=0.5)
    rates = [lr_at(step) for step in range(1000)]
    assert max(range(1000), key=rates.__getitem__) == 499 and rates[499] == pytest.approx(0.2)


def test_train_mode_crafting_uses_batch_statistics_and_keeps_running_statistics(bn_net):
    bn_net.eval()
    bn_net.bn.running_mean.fill_(3.0)
    before = {k: v.clone() for k, v in bn_net.state_dict().items()}
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        with batch_statistics(bn_net):
            with_batch = bn_net(x)
        with_running = bn_net(x)
        bn_net.bn.train()
        reference = bn_net(x)  # genuine train mode (moves the running statistics; compared below)
    assert torch.allclose(with_batch, reference, atol=1e-6) and not torch.allclose(with_batch, with_running)
    bn_net.load_state_dict(before)
    for key, value in bn_net.state_dict().items():
        assert torch.equal(value, before[key])
    with pytest.raises(ValueError, match="attack_bn"):
        crafting_batchnorm(bn_net, "training")


@pytest.mark.parametrize("attack_bn", ["eval", "train"])
def test_training_attacks_never_move_running_statistics(bn_net, attack_bn):
    method = methods.standard.AdversarialTraining(eps=0.1, steps=2, attack_bn=attack_bn)
    bn_net.train()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 3, (8,))
    before = bn_net.bn.running_mean.clone()
    x_adv = method.craft(bn_net, x, y)
    assert torch.equal(bn_net.bn.running_mean, before) and bn_net.training
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6


def test_adr_base_weights_follow_the_cited_code():
    mnist = methods.get("adr").build_method(methods.get("adr").config("mnist", "full"), 0.3)
    cifar = methods.get("adr").build_method(methods.get("adr").config("cifar", "full"), 8 / 255)
    assert (mnist.alpha, mnist.beta) == (1.0, 1.0)  # the PyTorch port
    assert (cifar.alpha, cifar.beta) == (0.5, 0.5)  # the TF code


# ---- ClusTR: warm start and the pinned QTRADES term ----------------------------------------


def test_clustr_warm_start_trains_cross_entropy_first_then_the_magnet_loss(tmp_path):
    blobs = data.load("blobs", n_train=300, n_test=60, seed=0)
    model, history = train_model("clustr", blobs, epochs=3, val_size=30, progress=False, device="cpu",
                                 checkpoint_dir=tmp_path, method_kwargs=dict(pretrain_epochs=1))
    first, *rest = history.records
    assert "pretrain_ce" in first and "magnet" not in first
    assert all("magnet" in r and "pretrain_ce" not in r for r in rest)
    assert first["pretrain_ce"] < math.log(3)  # it learned something
    resumed, _ = train_model("clustr", blobs, epochs=3, val_size=30, progress=False, device="cpu",
                             checkpoint_dir=tmp_path, resume=True, method_kwargs=dict(pretrain_epochs=1))
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    for profile in ("quick", "full"):
        kwargs = methods.get("clustr").config("cifar", profile).method_kwargs
        assert kwargs.get("pretrain_epochs", 0) == (15 if profile == "full" else 0)


def _qtrades_notes(eps: float) -> tuple[list, list[str]]:
    blobs = data.load("blobs", n_train=300, n_test=60, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, history = train_model("clustr_qtrades", blobs, epochs=3, val_size=30, progress=False, device="cpu",
                                 eps=eps, method_kwargs=dict(step_size=1.25 * eps))
    pinned = [str(w.message) for w in caught if "pinned" in str(w.message)]
    return history.records, pinned


def test_qtrades_warns_once_when_its_consistency_term_is_pinned_at_log_k():
    records, pinned = _qtrades_notes(eps=0.9)
    assert len(pinned) == 1 and "log K = 1.0986" in pinned[0]
    assert any("consistency_pinned" in r.get("notes", ()) for r in records)
    noted = [r for r in records if "consistency_pinned" in r.get("notes", ())]
    assert all(abs(r["consistency"] - math.log(3)) < 1e-3 for r in noted)


def test_qtrades_does_not_warn_while_its_consistency_term_is_active():
    records, pinned = _qtrades_notes(eps=0.01)
    assert pinned == [] and not any(r.get("notes") for r in records)
    assert all(abs(r["consistency"] - math.log(3)) > 0.05 for r in records)


# ---- diagnostics and precision ------------------------------------------------------------


class ZeroGradientNet(nn.Module):
    """Rounds its input: the input gradient is exactly zero everywhere."""

    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(torch.round(x * 4).flatten(1) / 4)


def test_diagnose_says_not_measured_when_no_gradient_is_usable(small_mnist):
    report = diagnose(ZeroGradientNet(), small_mnist.test, eps=0.3, n=40, surrogate=None, strong_attack=(5, 1))
    flag = report.flags["low_local_linearity"]
    assert math.isnan(flag.value) and not flag.raised
    assert "not measured" in str(flag) and report.flags["zero_gradients"].raised
    assert "not measured" in diagnoses_table_row(report, "low_local_linearity")


def diagnoses_table_row(report, flag):
    from robustviz.evaluate import diagnoses_table

    return next(line for line in diagnoses_table({"m": report}).splitlines() if line.startswith(f"| {flag}"))


def test_losses_keep_float64_inputs_in_float64():
    from robustviz.methods.adr.loss import ADRRegularizer
    from robustviz.methods.clustr.loss import qtrades_consistency
    from robustviz.methods.trades.loss import trades_loss

    gen = torch.Generator().manual_seed(0)
    clean, adv = torch.randn(6, 4, generator=gen, dtype=torch.float64), torch.randn(6, 4, generator=gen,
                                                                                        dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    assert trades_loss(clean, adv, y).loss.dtype == torch.float64
    assert qtrades_consistency(clean, adv, "ce").dtype == torch.float64
    z, z_adv = torch.randn(6, 5, generator=gen, dtype=torch.float64), torch.randn(6, 5, generator=gen,
                                                                                      dtype=torch.float64)
    total, _ = ADRRegularizer()(z, z_adv, clean, adv, y)
    assert total.dtype == torch.float64
    half = trades_loss(clean.bfloat16(), adv.bfloat16(), y).loss
    assert half.dtype == torch.float32


def test_step_progress_and_batch_length():
    assert Step(epoch=1, index=25, total=100).progress == 0.25
    assert len(Batch(torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.long))) == 3


def test_results_table_shows_inputs_kept_epoch_footnotes_and_notes():
    from robustviz.app.compare import markdown_table
    from robustviz.evaluate import RobustnessReport
    from robustviz.train import History

    report = RobustnessReport(n=10, clean_acc=0.9, results={0.3: {"FGSM": 0.5, "PGD-20": 0.4, "worst case": 0.4}})
    pinned = {"consistency_pinned": "the consistency term was pinned at log K."}
    records = [dict(epoch=e, loss=1.0 / e, val_clean_acc=0.9, val_pgd_acc=0.1 * e, seconds=1.0) for e in (1, 2, 3)]
    records[0]["notes"] = records[2]["notes"] = pinned
    records[-1]["rolled_back_to_epoch"] = 2
    rows = [{"method": "clustr_qtrades", "report": report, "seed": 0, "epochs": 3, "train_seconds": 3.0,
             "history": History(records), "config": methods.get("sat_r3").config("mnist", "quick"), "ladder": None}]
    text = markdown_table(rows, "mnist-mini", "quick", "robustviz compare", notes="An analysis.")
    row = next(line for line in text.splitlines() if line.startswith("| clustr_qtrades"))
    assert "[1]" in row and "| raw |" in row and "3 (kept 2)" in row
    assert "[1] clustr_qtrades: consistency_pinned in 2 of 3 epochs (1, 3). the consistency term" in text
    assert "| clustr_qtrades | I-FGSM-3 | 90 / 10 · 90 / 20 · 90 / 30 |" in text
    assert text.index("## Notes") < text.index("An analysis.") < text.index("Written")
