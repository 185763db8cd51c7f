"""ADR: the regularisers (exact values, stop-gradients, orientation), the method (base losses,
weights, terms) and the recipe through ``fit`` (spec ``methods/adr.md`` Sec. 8)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustviz import data, models
from robustviz.geometry import kl_per_sample
from robustviz.methods import Batch
from robustviz.methods.adr import ADR, RECIPES
from robustviz.methods.adr.loss import (
    ADRRegularizer,
    adr_terms,
    conditional_entropy,
    entropy,
    global_compactness,
    global_smoothness,
    label_weights,
    local_compactness,
    pairwise_distances,
    vat_consistency,
)
from robustviz.methods.standard import AdversarialTraining
from robustviz.methods.trades import TRADES
from robustviz.train import fit

RECIPE = RECIPES[0]


def features(b=6, k=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, generator=gen), torch.randn(b, k, generator=gen)


def logits(b=6, num_classes=4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, num_classes, generator=gen) * 2, torch.randn(b, num_classes, generator=gen) * 2


# --- label weights --------------------------------------------------------------------------

def test_label_weights_values_and_symmetry():
    y = torch.tensor([0, 1, 0, 2])
    w = label_weights(y, scale=0.99)
    assert torch.equal(w.diagonal(), torch.ones(4))
    assert w[0, 2] == 1.0 and w[2, 0] == 1.0
    assert w[0, 1].item() == pytest.approx(1 - 1 / 0.99) == pytest.approx(-1 / 99)
    assert torch.equal(w, w.T)
    assert torch.allclose(w.unique(), torch.tensor([-1 / 99, 1.0]))


def test_label_weights_match_the_official_normalised_one_hot_formula():
    y = torch.tensor([3, 1, 3, 0, 2])
    onehot = F.one_hot(y, 4).float()
    delta = (onehot[:, None] - onehot[None, :]).abs().sum(-1)
    official = (0.99 - delta / delta.max()) / 0.99
    assert torch.allclose(label_weights(y), official)


def test_label_weights_one_class_batch_and_any_number_of_classes():
    assert torch.equal(label_weights(torch.tensor([7, 7, 7])), torch.ones(3, 3))  # the code gives NaN
    w = label_weights(torch.tensor([0, 57, 999]))  # labels beyond 10 classes
    assert torch.isfinite(w).all() and (w.diagonal() == 1).all() and (w.sum() < 3)
    assert torch.equal(label_weights(torch.tensor([0, 1]), scale=1.0), torch.eye(2))
    with pytest.raises(ValueError, match="scale"):
        label_weights(torch.tensor([0, 1]), scale=1.5)


# --- local compactness ----------------------------------------------------------------------

def test_local_compactness_is_the_mean_absolute_difference():
    z, z_adv = features()
    assert torch.allclose(local_compactness(z, z_adv), (z - z_adv).abs().mean())
    b, k = z.shape
    by_hand = sum(sum(abs(a - c) for a, c in zip(row, row_adv)) / k
                  for row, row_adv in zip(z.tolist(), z_adv.tolist())) / b
    assert float(local_compactness(z, z_adv)) == pytest.approx(by_hand, rel=1e-6)
    assert local_compactness(z, z_adv) >= 0
    assert local_compactness(z, z.clone()) == 0


def test_local_compactness_gradient_reaches_only_the_adversarial_features():
    z, z_adv = features()
    z.requires_grad_(True)
    z_adv.requires_grad_(True)
    local_compactness(z, z_adv).backward()
    assert z.grad is None  # the clean features are a fixed target
    b, k = z.shape
    assert torch.allclose(z_adv.grad, torch.sign(z_adv - z).detach() / (b * k))


# --- global compactness ---------------------------------------------------------------------

def naive_distance_matrix(z, z_adv):
    b, k = z.shape
    return torch.tensor([[sum(abs(z_adv[i, d] - z[j, d]) for d in range(k)).item() / k for j in range(b)]
                         for i in range(b)])


def test_cdist_equals_broadcast_and_loop():
    z, z_adv = features(b=5, k=7)
    distances = pairwise_distances(z, z_adv)
    broadcast = (z[None, :, :] - z_adv[:, None, :]).abs().mean(-1)  # [i, j] = adv i vs clean j
    assert torch.allclose(distances, broadcast, atol=1e-6)
    assert torch.allclose(distances, naive_distance_matrix(z, z_adv), atol=1e-5)


def test_orientation_on_a_hand_built_asymmetric_pair():
    z = torch.tensor([[0.0, 0.0], [4.0, 0.0]])       # clean
    z_adv = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    distances = pairwise_distances(z, z_adv)
    # D[i, j] = |clean_j - adv_i|_1 / 2; its transpose would be [[0.5, 1], [1.5, 3]].
    assert torch.equal(distances, torch.tensor([[0.5, 1.5], [1.0, 3.0]]))
    y = torch.tensor([0, 1])
    loss = global_compactness(z, z_adv, y)
    assert float(loss.detach()) == pytest.approx((0.5 + 3.0 - (1.5 + 1.0) / 99) / 4, rel=1e-6)
    loss.backward()
    # Row 0: w_00 * sign(adv_0 - clean_0) / k + w_01 * sign(adv_0 - clean_1) / k, over b^2.
    assert torch.allclose(z_adv.grad[0], torch.tensor([(1 + 1 / 99) / 8, 0.0]))


def test_global_compactness_special_cases():
    z, z_adv = features()
    assert torch.allclose(global_compactness(z[:1], z_adv[:1], torch.tensor([2])),
                          local_compactness(z[:1], z_adv[:1]))
    same = torch.full((6,), 3)
    assert torch.allclose(global_compactness(z, z_adv, same), pairwise_distances(z, z_adv).mean())
    y = torch.tensor([0, 1, 0, 2, 1, 1])
    w = label_weights(y)
    expected = sum(w[i, j] * naive_distance_matrix(z, z_adv)[i, j] for i in range(6) for j in range(6)) / 36
    assert float(global_compactness(z, z_adv, y)) == pytest.approx(float(expected), rel=1e-5)


def test_global_compactness_is_permutation_invariant_and_detaches_clean():
    z, z_adv = features()
    y = torch.tensor([0, 1, 0, 2, 1, 1])
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert torch.allclose(global_compactness(z, z_adv, y), global_compactness(z[perm], z_adv[perm], y[perm]))
    z.requires_grad_(True)
    z_adv.requires_grad_(True)
    global_compactness(z, z_adv, y).backward()
    assert z.grad is None and z_adv.grad.abs().sum() > 0


def test_detach_clean_false_lets_the_gradient_reach_the_clean_features():
    z, z_adv = features()
    y = torch.tensor([0, 1, 0, 2, 1, 1])
    z.requires_grad_(True)
    z_adv.requires_grad_(True)
    value = local_compactness(z, z_adv, detach_clean=False) + global_compactness(z, z_adv, y, detach_clean=False)
    assert torch.equal(value, local_compactness(z, z_adv) + global_compactness(z, z_adv, y))  # same value
    value.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    z.grad = None
    local_compactness(z, z_adv, detach_clean=False).backward()
    b, k = z.shape
    assert torch.allclose(z.grad, -torch.sign(z_adv - z).detach() / (b * k))


def test_global_compactness_goes_negative_when_only_the_repulsion_is_left():
    z = torch.tensor([[0.0], [10.0]])
    y = torch.tensor([0, 1])
    # Every adversarial point on its own clean point: D = [[0, 10], [10, 0]], and only the
    # different-class pairs (weight -1/99) remain. The repulsion is unbounded (pitfall 10).
    assert float(global_compactness(z, z.clone(), y)) == pytest.approx(-20 / 99 / 4, rel=1e-6)


# --- clustering assumption: entropy and VAT -------------------------------------------------

def test_conditional_entropy_bounds():
    clean, adv = logits(num_classes=5)
    value = conditional_entropy(adv)
    assert 0 <= value <= math.log(5)
    assert float(conditional_entropy(torch.zeros(3, 5))) == pytest.approx(math.log(5), rel=1e-6)
    assert float(conditional_entropy(torch.tensor([[50.0, 0.0, 0.0]]))) == pytest.approx(0.0, abs=1e-12)


def test_conditional_entropy_gradient_is_analytic_not_detached():
    _, adv = logits()
    adv.requires_grad_(True)
    conditional_entropy(adv).backward()
    p = F.softmax(adv.detach(), 1)
    h = entropy(adv.detach())[:, None]
    # dH/dlogit_c = -p_c (log p_c + H), averaged over the batch
    assert torch.allclose(adv.grad, -p * (p.log() + h) / adv.shape[0], atol=1e-6)


def test_vat_is_kl_plus_clean_entropy_with_gradient_q_minus_p():
    clean, adv = logits()
    clean.requires_grad_(True)
    adv.requires_grad_(True)
    value = vat_consistency(clean, adv)
    expected = (kl_per_sample(clean, adv) + entropy(clean)).mean()
    assert torch.allclose(value, expected, atol=1e-6)
    value.backward()
    assert clean.grad is None  # the clean prediction is a fixed target
    p, q = F.softmax(clean.detach(), 1), F.softmax(adv.detach(), 1)
    assert torch.allclose(adv.grad, (q - p) / adv.shape[0], atol=1e-6)
    same = clean.detach().clone().requires_grad_(True)
    vat_consistency(clean, same).backward()
    assert torch.allclose(same.grad, torch.zeros_like(same), atol=1e-7)


def test_x_adv_equal_to_x_gives_zero_lc_and_vat_equal_to_clean_entropy():
    z, _ = features()
    clean, _ = logits()
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    terms = adr_terms(z, z.clone(), clean, clean.clone(), y)
    assert terms.lc == 0
    assert torch.allclose(terms.vat, entropy(clean).mean(), atol=1e-6)


def test_global_smoothness_matches_a_loop_and_detaches_clean():
    clean, adv = logits()
    y = torch.tensor([0, 1, 0, 2, 1, 3])
    w = label_weights(y)
    p, log_q = F.softmax(clean, 1), F.log_softmax(adv, 1)
    loop = sum(w[i, j] * -(p[j] * log_q[i]).sum() for i in range(6) for j in range(6)) / 36
    clean.requires_grad_(True)
    adv.requires_grad_(True)
    value = global_smoothness(clean, adv, y)
    assert torch.allclose(value, loop, atol=1e-6)
    assert torch.allclose(global_smoothness(clean[:1], adv[:1], y[:1]), vat_consistency(clean[:1], adv[:1]))
    value.backward()
    assert clean.grad is None and adv.grad.abs().sum() > 0


def test_regularizer_weights_and_bad_inputs():
    z, z_adv = features()
    clean, adv = logits()
    y = torch.tensor([0, 1, 0, 2, 1, 3])
    total, terms = ADRRegularizer(lambda_lc=2.0, lambda_gc=0.0, lambda_ent=0.5, lambda_vat=1.0,
                                  lambda_gs=3.0)(z, z_adv, clean, adv, y)
    assert torch.allclose(total, 2 * terms.lc + 0.5 * terms.ent + terms.vat + 3 * terms.gs)
    zero, _ = ADRRegularizer(0, 0, 0, 0, 0)(z, z_adv, clean, adv, y)
    assert torch.equal(zero, torch.tensor(0.0))
    with pytest.raises(ValueError, match="same shape"):
        local_compactness(z, z_adv[:3])
    with pytest.raises(ValueError, match="labels"):
        global_compactness(z, z_adv, y[:3])
    with pytest.raises(ValueError, match="scale"):
        ADRRegularizer(scale=0.0)


# --- the method -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_mnist():
    return data.load("mnist-mini", n_train=600, n_test=100, seed=0)


@pytest.fixture
def lenet(tiny_mnist):
    return models.build("lenet5", 10, 1, mean=tiny_mnist.mean, std=tiny_mnist.std, seed=0).train()


def zero_lambdas():
    return dict(lambda_lc=0.0, lambda_gc=0.0, lambda_ent=0.0, lambda_vat=0.0, lambda_gs=0.0)


def test_all_lambdas_zero_gives_exactly_the_pgd_at_loss(lenet, tiny_mnist):
    x, y = tiny_mnist.train.x[:32], tiny_mnist.train.y[:32]
    adr = ADR(eps=0.3, steps=3, step_size=0.1, **zero_lambdas())
    madry = AdversarialTraining(eps=0.3, steps=3, step_size=0.1, clean_weight=0.5)
    torch.manual_seed(5)
    out = adr.loss(lenet, Batch(x, y))
    torch.manual_seed(5)
    reference = madry.loss(lenet, Batch(x, y))
    assert torch.equal(out.loss, reference.loss)
    assert torch.equal(out.scores, reference.scores)  # adversarial scores, like pgd_at
    assert torch.equal(out.terms["adv_ce"], reference.terms["adv_ce"])


def test_all_lambdas_zero_gives_exactly_the_trades_loss(lenet, tiny_mnist):
    x, y = tiny_mnist.train.x[:32], tiny_mnist.train.y[:32]
    adr = ADR(eps=0.3, base="trades", steps=3, step_size=0.1, **zero_lambdas())
    trades = TRADES(eps=0.3, steps=3, step_size=0.1, beta=6.0)
    torch.manual_seed(5)
    out = adr.loss(lenet, Batch(x, y))
    torch.manual_seed(5)
    reference = trades.loss(lenet, Batch(x, y))
    assert torch.equal(out.loss, reference.loss)
    assert torch.equal(out.terms["kl"], reference.terms["kl"])


def test_method_loss_is_base_plus_weighted_terms(lenet, tiny_mnist):
    x, y = tiny_mnist.train.x[:32], tiny_mnist.train.y[:32]
    method = ADR(eps=0.3, steps=2, step_size=0.1, alpha=0.3, beta=0.7, lambda_gs=0.5)
    out = method.loss(lenet, Batch(x, y))
    t = out.terms
    expected = (0.3 * t["clean_ce"] + 0.7 * t["adv_ce"] + t["lc"] + t["gc"] + t["ent"] + t["vat"]
                + 0.5 * t["gs"])
    assert torch.allclose(out.loss.detach(), expected, rtol=1e-5)
    assert {"clean_ce", "adv_ce", "lc", "gc", "ent", "vat", "gs", "vat_kl", "z_norm", "eps"} == set(t)
    assert 0 <= t["vat_kl"] <= t["vat"]  # L_vat = KL + H(p(x)), both parts >= 0
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lenet.parameters())


def test_no_attack_gives_zero_local_compactness_and_vat_equal_to_clean_entropy(lenet, tiny_mnist):
    x, y = tiny_mnist.train.x[:32], tiny_mnist.train.y[:32]
    method = ADR(eps=0.3, steps=0, random_start=False)  # x_adv = x
    out = method.loss(lenet, Batch(x, y))
    assert out.terms["lc"] == 0
    with torch.no_grad():
        clean_entropy = entropy(lenet(x)).mean()
    assert torch.allclose(out.terms["vat"], clean_entropy, atol=1e-6)


def test_bad_method_settings_are_rejected():
    with pytest.raises(ValueError, match="base"):
        ADR(eps=0.3, base="mart")
    with pytest.raises(ValueError, match="alpha"):
        ADR(eps=0.3, base="trades", alpha=0.5)
    with pytest.raises(ValueError, match=">= 0"):
        ADR(eps=0.3, beta=-1.0)
    with pytest.raises(ValueError, match="scale"):
        ADR(eps=0.3, scale=2.0)


def test_recipe_defaults():
    mnist_full = RECIPE.config("mnist", "full")
    assert (mnist_full.model, mnist_full.epochs, mnist_full.optimizer, mnist_full.lr) == ("smallcnn", 100, "sgd", 0.01)
    assert mnist_full.milestones == (55, 75, 90) and mnist_full.method_kwargs == dict(
        steps=40, step_size=0.01, alpha=1.0, beta=1.0, attack_bn="eval")  # the PyTorch port's settings
    cifar_full = RECIPE.config("cifar", "full")
    assert cifar_full.model == "wrn34_10" and cifar_full.method_kwargs["step_size"] == 2 / 255
    method = RECIPE.build_method(cifar_full, default_eps=8 / 255)
    assert method.eps == 8 / 255 and method.attacker.steps == 10
    assert (method.alpha, method.beta) == (0.5, 0.5)
    assert method.regularizer.weights == dict(lc=1.0, gc=1.0, ent=1.0, vat=1.0, gs=0.0)
    assert method.regularizer.detach_clean  # the full profiles are the authors' method
    quick = RECIPE.config("mnist", "quick")
    assert quick.method_kwargs == dict(steps=5, step_size=0.1, eps_ramp=0.3, detach_clean=False)
    assert (quick.optimizer, quick.epochs) == ("adam", 5)


# --- training -------------------------------------------------------------------------------

def two_blobs(n=128, seed=0):
    """A 2-D, two-class toy set in [0, 1]^2 (a stand-in for ``data.load("blobs")``, no sklearn)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    centres = torch.tensor([[0.3, 0.3], [0.7, 0.7]])
    return (centres[y] + 0.08 * torch.randn(n, 2, generator=gen)).clamp(0, 1), y


def test_one_step_on_toy_data_lowers_the_loss_and_keeps_terms_finite():
    x, y = two_blobs()
    model = models.build("mlp", 2, 2, feat_dim=2, mean=(0.5, 0.5), std=(0.25, 0.25), seed=0).train()
    method = RECIPE.build_method(RECIPE.config("toy", "quick"), default_eps=0.05)
    assert model.features(x).shape == (128, 2)  # the 2-d latent layer of the authors' Toy2D net
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    torch.manual_seed(0)
    before = method.loss(model, Batch(x, y))
    assert all(torch.isfinite(v) for v in before.terms.values())
    optimizer.zero_grad()
    before.loss.backward()
    optimizer.step()
    torch.manual_seed(0)
    after = method.loss(model, Batch(x, y))
    assert after.loss < before.loss


class FeatureNet(nn.Module):
    """Not a RobustModel: ADR needs ``features`` and ``head``."""

    num_classes = 3

    def forward(self, x):
        return x.flatten(1)[:, :3]


def test_method_needs_features_and_head():
    x, y = torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 2, 0])
    with pytest.raises(TypeError, match="features"):
        ADR(eps=0.1, steps=1).loss(FeatureNet(), Batch(x, y))


@pytest.mark.parametrize("base", ["pgd_at", "trades"])
def test_recipe_trains_through_fit_and_logs_every_term(tiny_mnist, base):
    model = models.build("lenet5", 10, 1, mean=tiny_mnist.mean, std=tiny_mnist.std, seed=0)
    history = fit(model, tiny_mnist, RECIPE, steps=3, batch_size=64, val_size=100, monitor_steps=1,
                  method_kwargs=dict(base=base, steps=2), progress=False)
    record = history.last
    base_terms = ("clean_ce", "adv_ce") if base == "pgd_at" else ("natural_ce", "kl")
    for name in ("loss", "lc", "gc", "ent", "vat", "gs", "vat_kl", "z_norm", *base_terms):
        assert math.isfinite(record[name]), name
    assert record["step"] == 3


def test_recipe_loss_falls_over_two_epochs(tiny_mnist):
    # LeNet-5 (25x fewer multiply-adds than the recipe's smallcnn) keeps this under ~30 s.
    model = models.build("lenet5", 10, 1, mean=tiny_mnist.mean, std=tiny_mnist.std, seed=0)
    history = fit(model, tiny_mnist, RECIPE, epochs=2, batch_size=25, val_size=100, monitor_steps=2,
                  progress=False)
    first, last = history.to_list()
    assert all(math.isfinite(v) for v in last.values())
    assert last["loss"] < first["loss"]
    assert last["lc"] >= 0 and last["ent"] <= math.log(10)
