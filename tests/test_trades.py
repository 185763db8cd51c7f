"""TRADES: the KL term (exact values, gradients), the KL attack (contract), the recipe (fit)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustviz import data, models
from robustviz.attacks import Attack
from robustviz.attacks.trades import trades_attack
from robustviz.geometry import kl_per_sample
from robustviz.methods import Batch
from robustviz.methods.trades import RECIPES, TRADES
from robustviz.methods.trades.loss import trades_kl, trades_loss
from robustviz.train import fit

RECIPE = RECIPES[0]


def logits_pair(b=5, k=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, generator=gen) * 3, torch.randn(b, k, generator=gen) * 3


def naive_kl(clean_row, adv_row):
    p = [math.exp(v) for v in clean_row]
    q = [math.exp(v) for v in adv_row]
    p = [v / sum(p) for v in p]
    q = [v / sum(q) for v in q]
    return sum(pc * math.log(pc / qc) for pc, qc in zip(p, q))


# --- the KL term ---------------------------------------------------------------------------

def test_kl_matches_a_hand_computation_and_the_official_formula():
    clean, adv = logits_pair()
    expected = [naive_kl(c.tolist(), a.tolist()) for c, a in zip(clean, adv)]
    assert kl_per_sample(clean, adv).tolist() == pytest.approx(expected, rel=1e-5)
    assert float(trades_kl(clean, adv)) == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    # TRADES' code: KLDivLoss(size_average=False)(log_softmax(adv), softmax(clean)) / batch_size
    official = F.kl_div(F.log_softmax(adv, 1), F.softmax(clean, 1), reduction="sum") / clean.shape[0]
    assert torch.allclose(trades_kl(clean, adv), official, rtol=1e-5)


def test_two_class_kl_by_hand():
    # p = softmax(0, 0) = (1/2, 1/2); q = softmax(0, log 3) = (1/4, 3/4)
    clean = torch.tensor([[0.0, 0.0]])
    adv = torch.tensor([[0.0, math.log(3.0)]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert float(trades_kl(clean, adv)) == pytest.approx(expected, rel=1e-6)


def test_kl_is_zero_when_the_adversarial_point_is_the_clean_one():
    clean, _ = logits_pair()
    assert torch.allclose(kl_per_sample(clean, clean), torch.zeros(5), atol=1e-6)
    assert torch.allclose(kl_per_sample(clean, clean + 7.0), torch.zeros(5), atol=1e-5)  # softmax shift
    y = torch.tensor([0, 1, 2, 3, 0])
    parts = trades_loss(clean, clean.clone(), y, beta=6.0)
    assert torch.allclose(parts.loss, F.cross_entropy(clean, y), atol=1e-6)


def test_gradient_flows_to_both_branches_with_the_analytic_values():
    clean, adv = logits_pair()
    clean.requires_grad_(True)
    adv.requires_grad_(True)
    trades_kl(clean, adv).backward()
    b = clean.shape[0]
    p, q = F.softmax(clean.detach(), 1), F.softmax(adv.detach(), 1)
    kl = kl_per_sample(clean.detach(), adv.detach())[:, None]
    # d KL(p || q) / d adv_logits = q - p;  / d clean_logits = p * (log p - log q - KL)
    assert torch.allclose(adv.grad, (q - p) / b, atol=1e-6)
    assert torch.allclose(clean.grad, p * (p.log() - q.log() - kl) / b, atol=1e-6)
    assert clean.grad.abs().sum() > 0 and adv.grad.abs().sum() > 0


def test_trades_loss_is_ce_plus_beta_kl():
    clean, adv = logits_pair()
    y = torch.tensor([3, 1, 0, 2, 2])
    parts = trades_loss(clean, adv, y, beta=2.5)
    assert torch.allclose(parts.natural_ce, F.cross_entropy(clean, y))
    assert torch.allclose(parts.kl, trades_kl(clean, adv))
    assert torch.allclose(parts.loss, parts.natural_ce + 2.5 * parts.kl)


def test_bad_inputs_are_rejected():
    clean, adv = logits_pair()
    y = torch.zeros(5, dtype=torch.long)
    with pytest.raises(ValueError, match="beta"):
        trades_loss(clean, adv, y, beta=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        trades_kl(clean, adv[:3])
    with pytest.raises(ValueError, match="beta"):
        TRADES(eps=0.3, beta=-1.0)
    with pytest.raises(ValueError, match="eps_ramp"):
        TRADES(eps=0.3, eps_ramp=2.0)


# --- the KL attack --------------------------------------------------------------------------

def batch(n=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=gen)
    x[:4] = 0.0  # points on the border of [0, 1] exercise the clipping
    x[4:8] = 1.0
    return x, torch.randint(0, 3, (n,), generator=gen)


@pytest.mark.parametrize("eps", [0.0, 0.03, 0.3])
@pytest.mark.parametrize("steps", [0, 5])
def test_attack_stays_in_ball_and_unit_box(bn_net, eps, steps):
    x, y = batch()
    x_adv = trades_attack(bn_net, x, y, eps, steps=steps, init_std=0.05, seed=0)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("training", [True, False])
def test_attack_restores_modes_and_leaves_batchnorm_alone(bn_net, training):
    x, y = batch()
    bn_net.train(training)
    bn_net.drop.eval()
    stats = (bn_net.bn.running_mean.clone(), bn_net.bn.running_var.clone(),
             int(bn_net.bn.num_batches_tracked))
    trades_attack(bn_net, x, y, 0.1, steps=3, seed=0)
    assert bn_net.training is training
    assert bn_net.bn.training is training and bn_net.drop.training is False
    assert torch.equal(bn_net.bn.running_mean, stats[0])
    assert torch.equal(bn_net.bn.running_var, stats[1])
    assert int(bn_net.bn.num_batches_tracked) == stats[2]
    assert all(p.grad is None for p in bn_net.parameters())


def test_attack_is_seeded_and_keeps_dtype(bn_net):
    x, y = batch()
    a = trades_attack(bn_net, x, y, 0.1, steps=3, seed=7)
    assert torch.equal(a, trades_attack(bn_net, x, y, 0.1, steps=3, seed=7))
    assert not torch.equal(a, trades_attack(bn_net, x, y, 0.1, steps=3, seed=8))
    assert torch.equal(Attack("TRADES-KL-3", trades_attack, dict(eps=0.1, steps=3, seed=7))(bn_net, x, y), a)
    assert trades_attack(bn_net, x.double(), y, 0.1, steps=2, seed=0).dtype == torch.float64


def test_attack_raises_the_kl_above_its_noise_start(bn_net):
    x, y = batch()
    bn_net.eval()
    with torch.no_grad():
        clean = bn_net(x)
        start_kl = kl_per_sample(clean, bn_net(trades_attack(bn_net, x, y, 0.1, steps=0, seed=0)))
        adv_kl = kl_per_sample(clean, bn_net(trades_attack(bn_net, x, y, 0.1, steps=5, seed=0)))
    assert adv_kl.mean() > 10 * start_kl.mean() and adv_kl.mean() > 1e-3


def test_attack_rejects_bad_input(bn_net):
    x, y = batch()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        trades_attack(bn_net, x * 255, y, 0.1)
    with pytest.raises(ValueError, match="pixel units"):
        trades_attack(bn_net, x, y, 8)
    with pytest.raises(ValueError, match="steps"):
        trades_attack(bn_net, x, y, 0.1, steps=-1)


# --- the method and the recipe --------------------------------------------------------------

class Linear(nn.Module):
    num_classes = 3

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_method_loss_is_trades_loss_on_its_own_attack():
    model = Linear()
    x, y = batch()
    method = TRADES(eps=0.1, steps=3, beta=6.0)
    torch.manual_seed(3)
    out = method.loss(model, Batch(x, y))
    torch.manual_seed(3)
    x_adv = trades_attack(model, x, y, 0.1, steps=3, step_size=2.5 * 0.1 / 3)
    expected = trades_loss(model(x), model(x_adv), y, beta=6.0)
    assert torch.equal(out.loss, expected.loss)
    assert set(out.terms) == {"natural_ce", "kl", "eps"}
    assert torch.equal(out.scores, model(x))  # TRADES trains its CE on the clean batch


def test_recipe_defaults():
    mnist_full = RECIPE.config("mnist", "full")
    assert mnist_full.model == "smallcnn" and mnist_full.optimizer == "sgd" and mnist_full.lr == 0.01
    assert mnist_full.method_kwargs == dict(steps=40, step_size=0.01, beta=6.0)
    cifar_full = RECIPE.config("cifar", "full")
    assert cifar_full.model == "wrn34_10" and cifar_full.epochs == 76 and cifar_full.weight_decay == 2e-4
    assert cifar_full.method_kwargs["step_size"] == 2 / 255 and cifar_full.milestones == (74,)
    quick = RECIPE.config("mnist", "quick")
    assert quick.epochs == 5 and quick.method_kwargs["eps_ramp"] == 0.3
    method = RECIPE.build_method(quick, default_eps=0.3)
    assert isinstance(method, TRADES) and method.steps == 5 and method.beta == 6.0


@pytest.fixture(scope="module")
def tiny_mnist():
    return data.load("mnist-mini", n_train=600, n_test=100, seed=0)


def test_recipe_trains_through_fit_with_a_falling_loss(tiny_mnist):
    # LeNet-5 (25x fewer multiply-adds than the recipe's smallcnn) keeps this test fast.
    model = models.build("lenet5", 10, 1, mean=tiny_mnist.mean, std=tiny_mnist.std, seed=0)
    history = fit(model, tiny_mnist, RECIPE, epochs=2, batch_size=100, val_size=100, monitor_steps=2,
                  progress=False)
    first, last = history.to_list()
    for record in (first, last):
        assert all(math.isfinite(record[key]) for key in ("loss", "natural_ce", "kl"))
        assert record["kl"] >= 0
    assert last["loss"] < first["loss"]
    assert last["step"] == 10
