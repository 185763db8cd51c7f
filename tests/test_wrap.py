"""Bring your own model: ``models.wrap`` on torchvision's ResNet-18 and on a plain ``nn.Sequential``,
through attacks, evaluation, extraction, the explorer and ``robustviz evaluate --model``."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from robustviz import models, viz
from robustviz.app.cli import main
from robustviz.attacks import Attack, make_attack, pgd
from robustviz.evaluate import evaluate_robustness
from robustviz.train import fit


def sequential_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def wrapped_cnn(small_mnist):
    """A user's nn.Sequential, wrapped at its 32-unit hidden layer and trained with robustviz's fit (seconds)."""
    model = models.wrap(sequential_cnn(), features="8", mean=small_mnist.mean, std=small_mnist.std)
    fit(model, small_mnist, "ce", epochs=4, optimizer="adam", lr=3e-3, val_size=200, progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def wrapped_resnet():
    torch.manual_seed(0)
    return models.wrap(resnet18(weights=None, num_classes=10), features="avgpool",
                       mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26)).eval()


def colour_images(n: int = 12):
    generator = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 32, 32, generator=generator), torch.arange(n) % 10


def test_wrapped_resnet_computes_what_the_resnet_computes_on_normalised_inputs(wrapped_resnet):
    x, _ = colour_images(4)
    mean, std = torch.tensor((0.49, 0.48, 0.45)).view(1, 3, 1, 1), torch.tensor((0.25, 0.24, 0.26)).view(1, 3, 1, 1)
    with torch.no_grad():
        z = wrapped_resnet.features(x)
        assert z.shape == (4, 512) and wrapped_resnet.feat_dim == 512 and wrapped_resnet.num_classes == 10
        assert torch.allclose(wrapped_resnet(x), wrapped_resnet.net((x - mean) / std), atol=1e-5)
        assert torch.allclose(wrapped_resnet.head(z), wrapped_resnet(x), atol=1e-6)
    # the user's module is shared, not copied: one set of parameters
    count = sum(p.numel() for p in wrapped_resnet.parameters())
    assert count == sum(p.numel() for p in wrapped_resnet.net.parameters())


def test_attacks_and_evaluation_on_the_wrapped_resnet(wrapped_resnet):
    x, y = colour_images()
    running_mean = wrapped_resnet.net.bn1.running_mean.clone()
    wrapped_resnet.train()
    x_adv = Attack("PGD-3", pgd, dict(eps=8 / 255, steps=3, seed=0))(wrapped_resnet, x, y)
    assert wrapped_resnet.training, "the attack restores the caller's mode"
    assert torch.equal(wrapped_resnet.net.bn1.running_mean, running_mean), "attacks never update BatchNorm"
    wrapped_resnet.eval()
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
    report = evaluate_robustness(wrapped_resnet, x, y, eps=(8 / 255,), attacks=("fgsm", "pgd-3"), progress=False)
    assert report.n == len(y) and report.results[8 / 255]["worst case"] <= report.clean_acc


def test_extract_at_a_named_layer_of_the_wrapped_resnet(wrapped_resnet):
    x, y = colour_images()
    feats = viz.extract(wrapped_resnet, (x, y), layer="net.layer3", attack="fgsm", eps=8 / 255, n=None)
    assert feats.clean.shape == (12, 256 * 2 * 2) and feats.adversarial.shape == feats.clean.shape
    assert torch.equal(feats.pred_clean, wrapped_resnet(x).argmax(1))


def test_the_wrapped_sequential_trains_attacks_evaluates_extracts_and_explores(wrapped_cnn, small_mnist):
    x, y = small_mnist.test.x[:200], small_mnist.test.y[:200]
    report = evaluate_robustness(wrapped_cnn, x, y, eps=(0.1,), attacks=("fgsm", "pgd-5"), progress=False)
    assert report.clean_acc > 0.7, "training through the wrapper learns"
    assert report.results[0.1]["PGD-5"] < report.clean_acc
    x_adv = make_attack("fgsm", 0.1)(wrapped_cnn, x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    feats = viz.extract(wrapped_cnn, small_mnist, layer="net.4", attack="fgsm", eps=0.1, n=100)
    assert feats.clean.shape == (100, 16 * 14 * 14)
    ex = viz.explorer({"mine": wrapped_cnn}, small_mnist, attacks=("fgsm",), eps_values=(0.0, 0.1),
                      methods=("pca",), n=60, progress=False)
    assert ex.data.features["mine"][("fgsm", 0.1)].dim == 32
    ex.eps_slider.value = 0.0
    assert len(ex.static_figures()) == 2


def test_a_wrong_layer_name_lists_the_nearest_names():
    with pytest.raises(ValueError, match=r"unknown layer 'layer5'.*'layer4'"):
        models.wrap(resnet18(weights=None), features="layer5")
    with pytest.raises(ValueError, match=r"unknown layer 'avgpol'.*'avgpool'"):
        models.wrap(resnet18(weights=None), features="avgpol")


def test_a_layer_crossed_by_a_skip_connection_is_refused_with_advice():
    with pytest.raises(ValueError, match="skip connection.*avgpool"):
        models.wrap(resnet18(weights=None), features="layer3.0.conv1")


def test_0_255_inputs_and_mismatched_normalisation_say_what_to_do(wrapped_cnn, wrapped_resnet):
    x, y = colour_images(2)
    with pytest.raises(ValueError, match="divide by 255"):
        wrapped_resnet(x * 255)
    with pytest.raises(ValueError, match="divide by 255"):
        evaluate_robustness(wrapped_cnn, torch.rand(3, 1, 28, 28) * 255, torch.zeros(3, dtype=torch.long),
                            eps=(0.1,), attacks=("fgsm",), progress=False)
    with pytest.raises(ValueError, match="divide mean and std by 255"):
        models.wrap(sequential_cnn(), features="8", mean=(33.3,), std=(78.6,))
    with pytest.raises(ValueError, match="one value per channel"):
        models.wrap(resnet18(weights=None), features="avgpool", mean=(0.5,), std=(0.5,))
    with pytest.raises(TypeError, match="nn.Module"):
        models.wrap(lambda x: x, features="0")


ENTRY_POINTS = textwrap.dedent("""
    import torch
    from torch import nn
    from robustviz.models import wrap

    def small():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 28 * 28, 10))
        return wrap(net, features="2", mean=(0.13,), std=(0.31,))

    def unwrapped():
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
""")


def test_cli_evaluates_a_model_from_an_entry_point(tmp_path, monkeypatch, capsys):
    (tmp_path / "user_models.py").write_text(ENTRY_POINTS)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", "user_models:small", "--dataset", "mnist-mini", "--n", "50", "--eps", "0.1",
                 "--attacks", "fgsm", "--device", "cpu", "--json", str(out), "--no-progress"]) == 0
    assert "user_models:small on mnist-mini, 50 test images" in capsys.readouterr().out
    assert json.loads(out.read_text())["n"] == 50


@pytest.mark.parametrize("args, message", [
    (["--model", "user_models", "--dataset", "mnist-mini"], "package.module:function"),
    (["--model", "user_models:smal", "--dataset", "mnist-mini"], "'small'"),
    (["--model", "no_such_module:small", "--dataset", "mnist-mini"], "no module 'no_such_module'"),
    (["--model", "user_models:unwrapped", "--dataset", "mnist-mini"], "robustviz.models.wrap"),
    (["--model", "user_models:small"], "needs --dataset"),
    ([], "a CHECKPOINT folder, or --model"),
])
def test_cli_entry_point_mistakes_are_one_sentence(tmp_path, monkeypatch, capsys, args, message):
    (tmp_path / "user_models.py").write_text(ENTRY_POINTS)
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", *args, "--n", "10", "--no-progress"]) == 2
    assert message in capsys.readouterr().err
