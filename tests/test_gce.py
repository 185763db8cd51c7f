"""Guided Complement Entropy: the spec's §8 values and properties, and both recipes through ``fit``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robustviz import data, models
from robustviz.methods.gce import RECIPES, GCEAdversarialTraining, GuidedComplementEntropyTraining
from robustviz.methods.gce.loss import (
    complement_distribution,
    guided_complement_entropy,
    guiding_factor,
    normalized_complement_entropy,
)
from robustviz.train import fit

ALPHA = 1 / 3
K = 10
LOG_K_OVER_LOG_K_MINUS_1 = math.log(10) / math.log(9)
RECIPE = {recipe.key: recipe for recipe in RECIPES}


def flat_complement(margin: float, num_classes: int = K, dtype=torch.float64) -> torch.Tensor:
    """Logits ``[1, K]`` with the true class (0) ``margin`` above K-1 equal others."""
    logits = torch.zeros(1, num_classes, dtype=dtype)
    logits[0, 0] = margin
    return logits


def gce_at_margin(margin: float, official: bool = False) -> float:
    """Loss of a flat complement; official values rescaled to the log(K-1) scale of the spec's table."""
    value = float(guided_complement_entropy(flat_complement(margin), torch.tensor([0]), ALPHA, official))
    return value * LOG_K_OVER_LOG_K_MINUS_1 if official else value


def loop_reference(logits: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. (2) one sample at a time, from probabilities, in the minimisable sign (spec §2.5)."""
    values = []
    for z, g in zip(logits.tolist(), y.tolist()):
        exps = [math.exp(v) for v in z]
        probs = [e / sum(exps) for e in exps]
        rest = 1 - probs[g]
        neg_entropy = sum(p / rest * math.log(p / rest) for j, p in enumerate(probs) if j != g)
        values.append(probs[g] ** alpha * neg_entropy / math.log(len(z) - 1))
    return torch.tensor(values, dtype=torch.float64)


def closed_form_gradient(logits: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spec §2.6: the per-sample gradient of the loss with respect to the logits ``[B, K]``."""
    probs = logits.softmax(1)
    p_true = probs.gather(1, y[:, None])
    target = F.one_hot(y, logits.shape[1]).bool()
    q = probs.masked_fill(target, 0.0) / (1 - p_true)
    log_q = torch.log(q.masked_fill(target, 1.0))
    entropy = -(q * log_q).sum(1, keepdim=True)
    normaliser = math.log(logits.shape[1] - 1)
    c = p_true**alpha / normaliser
    others = c * (alpha * probs * entropy + q * (log_q + entropy))
    true = -alpha * p_true**alpha * (1 - p_true) * entropy / normaliser
    return torch.where(target, true, others)


# --- exact values (spec §8.1, 8.2, 8.7, 8.8, 8.11) -------------------------------------------


def test_uniform_logits():
    logits, y = torch.zeros(4, K, dtype=torch.float64), torch.tensor([0, 3, 5, 9])
    assert float(guided_complement_entropy(logits, y)) == pytest.approx(-0.1 ** (1 / 3), abs=1e-12)
    assert float(guided_complement_entropy(logits, y)) == pytest.approx(-0.464159, abs=1e-6)
    assert float(guided_complement_entropy(logits, y, official=True)) == pytest.approx(-0.442920, abs=1e-6)


def test_gradient_at_uniform_logits():
    logits = torch.zeros(1, K, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(guided_complement_entropy(logits, torch.tensor([2])), logits)
    assert float(grad[0, 2]) == pytest.approx(-ALPHA * 0.1**ALPHA * 0.9, abs=1e-12)
    assert float(grad[0, 2]) == pytest.approx(-0.139248, abs=1e-6)
    others = torch.cat([grad[0, :2], grad[0, 3:]])
    assert torch.allclose(others, torch.full_like(others, 0.015472), atol=1e-6)
    assert float(grad.sum()) == pytest.approx(0.0, abs=1e-12)


def test_exact_form_is_monotone_in_the_margin():
    assert gce_at_margin(2) == pytest.approx(-0.76679, abs=1e-5)
    assert gce_at_margin(5) == pytest.approx(-0.98057, abs=1e-5)
    assert gce_at_margin(10) == pytest.approx(-0.99986, abs=1e-5)
    assert gce_at_margin(20) == pytest.approx(-0.9999999938, abs=1e-10)
    values = [gce_at_margin(m) for m in torch.linspace(0, 30, 61).tolist()]
    assert all(later < earlier for earlier, later in zip(values, values[1:]))


def test_official_form_has_a_confidence_ceiling():
    margins = torch.linspace(5, 15, 201).tolist()
    values = [gce_at_margin(m, official=True) for m in margins]
    best = margins[values.index(min(values))]
    assert best == pytest.approx(10.0, abs=0.2)
    assert min(values) == pytest.approx(-0.99973, abs=1e-5)
    assert gce_at_margin(20, official=True) == pytest.approx(-0.289, abs=1e-3)
    assert gce_at_margin(25, official=True) == pytest.approx(-0.005, abs=1e-3)
    # Agrees with the exact form (up to the normaliser) away from the ceiling.
    assert gce_at_margin(2, official=True) == pytest.approx(gce_at_margin(2), abs=1e-6)


def test_peaked_complement_scores_worse_than_flat():
    peaked = flat_complement(10.0)
    peaked[0, 1] = 5.0
    peaked_loss = float(guided_complement_entropy(peaked, torch.tensor([0])))
    assert peaked_loss == pytest.approx(-0.140, abs=1e-3)
    flat = flat_complement(10.0)
    assert float(guided_complement_entropy(flat, torch.tensor([0]))) < -0.999 < peaked_loss


# --- properties (spec §8.3-8.6, 8.9, 8.10) ----------------------------------------------------


def test_range_for_random_logits():
    generator = torch.Generator().manual_seed(0)
    for scale in (0.1, 1.0, 10.0, 100.0):
        logits = scale * torch.randn(256, K, generator=generator)
        y = torch.randint(0, K, (256,), generator=generator)
        for official in (False, True):
            values = guided_complement_entropy(logits, y, official=official, reduction="none")
            assert torch.isfinite(values).all()
            assert values.min() >= -1 - 1e-6 and values.max() <= 0


def test_alpha_zero_is_complement_entropy():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(32, K, generator=generator, dtype=torch.float64)
    y = torch.randint(0, K, (32,), generator=generator)
    # Independent computation: softmax over the K-1 non-target logits.
    neg_entropy = []
    for z, g in zip(logits, y):
        q = torch.cat([z[:g], z[g + 1:]]).softmax(0)
        neg_entropy.append((q * q.log()).sum() / math.log(K - 1))
    expected = torch.stack(neg_entropy).mean()
    assert float(guided_complement_entropy(logits, y, alpha=0.0)) == pytest.approx(float(expected), abs=1e-12)
    assert torch.allclose(normalized_complement_entropy(logits, y), -torch.stack(neg_entropy), atol=1e-12)


def test_alpha_zero_gives_no_gradient_on_the_true_logit():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(8, K, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, K, (8,), generator=generator)
    (grad,) = torch.autograd.grad(guided_complement_entropy(logits, y, alpha=0.0, reduction="sum"), logits)
    assert grad.gather(1, y[:, None]).abs().max() == 0
    assert grad.abs().max() > 1e-3  # the other logits do get a gradient
    # Finite differences on the true logit: q, and so the loss, does not move at all.
    step = 1e-4 * F.one_hot(y, K).to(logits.dtype)
    with torch.no_grad():
        up = guided_complement_entropy(logits + step, y, alpha=0.0, reduction="none")
        down = guided_complement_entropy(logits - step, y, alpha=0.0, reduction="none")
    assert (up - down).abs().max() < 1e-12
    assert torch.allclose(complement_distribution(logits + 5 * step / 1e-4, y), complement_distribution(logits, y))


def test_shift_invariance():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(16, K, generator=generator, dtype=torch.float64)
    y = torch.randint(0, K, (16,), generator=generator)
    for official in (False, True):
        base = guided_complement_entropy(logits, y, official=official, reduction="none")
        shifted = guided_complement_entropy(logits + 7.5, y, official=official, reduction="none")
        assert torch.allclose(base, shifted, atol=1e-9)


def test_closed_form_gradient_matches_autograd():
    generator = torch.Generator().manual_seed(4)
    for alpha in (ALPHA, 0.2, 1.0):
        logits = 3 * torch.randn(16, K, generator=generator, dtype=torch.float64)
        logits.requires_grad_(True)
        y = torch.randint(0, K, (16,), generator=generator)
        (grad,) = torch.autograd.grad(guided_complement_entropy(logits, y, alpha, reduction="sum"), logits)
        assert torch.allclose(grad, closed_form_gradient(logits.detach(), y, alpha), atol=1e-6)
        assert grad.sum(1).abs().max() < 1e-12


def test_autograd_matches_finite_differences():
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(4, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2, 4, 1])
    assert torch.autograd.gradcheck(lambda z: guided_complement_entropy(z, y), (logits,))
    assert torch.autograd.gradcheck(lambda z: guided_complement_entropy(z, y, official=True), (logits,))


def test_reductions():
    generator = torch.Generator().manual_seed(6)
    logits = torch.randn(12, K, generator=generator)
    y = torch.randint(0, K, (12,), generator=generator)
    per_sample = guided_complement_entropy(logits, y, reduction="none")
    assert per_sample.shape == (12,)
    assert torch.allclose(guided_complement_entropy(logits, y, reduction="sum"), per_sample.sum())
    assert torch.allclose(guided_complement_entropy(logits, y), per_sample.sum() / 12)


def test_vectorised_loss_equals_a_per_sample_loop():
    generator = torch.Generator().manual_seed(7)
    for num_classes in (3, 10, 100):
        logits = 4 * torch.randn(20, num_classes, generator=generator, dtype=torch.float64)
        y = torch.randint(0, num_classes, (20,), generator=generator)
        for alpha in (0.0, ALPHA, 2.0):
            expected = loop_reference(logits, y, alpha)
            assert torch.allclose(guided_complement_entropy(logits, y, alpha, reduction="none"), expected, atol=1e-12)


def test_extreme_logits_stay_finite_with_finite_gradients():
    logits = torch.tensor([[200.0, 0, 0, 0], [-200.0, 50, 0, 0], [0, -1e4, -1e4, 3]], requires_grad=True)
    y = torch.tensor([0, 0, 1])
    loss = guided_complement_entropy(logits, y)
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert guiding_factor(logits.detach(), y)[1] < 1e-20  # p_true underflows, the log form does not


def test_half_precision_logits_are_computed_in_float32():
    logits, y = torch.zeros(2, K, dtype=torch.bfloat16), torch.tensor([0, 1])
    loss = guided_complement_entropy(logits, y)
    assert loss.dtype == torch.float32 and float(loss) == pytest.approx(-0.464159, abs=1e-6)


def test_bad_inputs_raise_clear_errors():
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="K >= 3"):
        guided_complement_entropy(torch.zeros(2, 2), y)
    with pytest.raises(ValueError, match="reduction"):
        guided_complement_entropy(torch.zeros(2, K), y, reduction="avg")
    with pytest.raises(ValueError, match="alpha"):
        guided_complement_entropy(torch.zeros(2, K), y, alpha=-0.5)
    with pytest.raises(ValueError, match="labels"):
        guided_complement_entropy(torch.zeros(2, K), torch.tensor([0, K]))
    with pytest.raises(ValueError, match="rows"):
        guided_complement_entropy(torch.zeros(3, K), y)
    with pytest.raises(ValueError, match=r"\[B, K\]"):
        guided_complement_entropy(torch.zeros(K), y)
    with pytest.raises(ValueError, match="inner_loss"):
        GCEAdversarialTraining(eps=0.3, inner_loss="kl")
    with pytest.raises(ValueError, match="at least 3 classes"):
        GuidedComplementEntropyTraining().attach(models.build("mlp", 2, 2))


# --- methods and recipes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_mnist():
    return data.load("mnist-mini", n_train=600, n_test=100, seed=0)


def lenet5(bundle):
    """GCE's own MNIST network; also the cheapest CPU model of the zoo."""
    return models.build("lenet5", 10, 1, mean=bundle.mean, std=bundle.std, seed=0)


def test_recipe_defaults():
    gce, gce_at = RECIPE["gce"], RECIPE["gce_at"]
    official = gce.config("mnist", "full")
    assert (official.model, official.optimizer, official.lr, official.batch_size, official.epochs,
            official.schedule) == ("lenet5", "adam", 1e-3, 64, 20, "constant")
    cifar = gce.config("cifar", "full")
    assert (cifar.model, cifar.lr, cifar.weight_decay, cifar.milestones) == ("preact_resnet18", 0.1, 1e-4, (100, 150))
    assert gce_at.config("mnist", "full").method_kwargs == dict(steps=40, step_size=0.01)
    assert gce_at.config("mnist", "quick").method_kwargs == dict(steps=5, step_size=0.1, eps_ramp=0.3)
    method = gce_at.build_method(gce_at.config("mnist", "quick"), default_eps=0.3)
    assert isinstance(method, GCEAdversarialTraining) and method.eps == 0.3 and method.inner_loss == "ce"


@pytest.mark.parametrize("key, inner_loss", [("gce", None), ("gce_at", "ce"), ("gce_at", "gce")])
def test_recipes_train_through_fit(tiny_mnist, key, inner_loss):
    kwargs = {} if inner_loss is None else dict(method_kwargs=dict(inner_loss=inner_loss, clean_weight=0.5))
    history = fit(lenet5(tiny_mnist), tiny_mnist, RECIPE[key], steps=4, val_size=100, progress=False, **kwargs)
    record = history.last
    assert record["step"] == 4 and math.isfinite(record["loss"]) and -1 <= record["loss"] <= 0
    terms = ("gce", "complement_entropy") if key == "gce" else ("adv_gce", "clean_gce", "eps")
    for term in terms:
        assert math.isfinite(record[term])


def test_inner_gce_attack_raises_the_gce_loss(tiny_mnist):
    model = lenet5(tiny_mnist)
    fit(model, tiny_mnist, RECIPE["gce"], steps=20, val_size=100, progress=False)
    method = GCEAdversarialTraining(eps=0.3, steps=5, step_size=0.1, inner_loss="gce")
    x, y = tiny_mnist.test.x[:64], tiny_mnist.test.y[:64]
    x_adv = method.craft(model, x, y)
    with torch.no_grad():
        assert float(guided_complement_entropy(model(x_adv), y)) > float(guided_complement_entropy(model(x), y))
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6


def test_gce_training_lowers_the_loss_and_flattens_the_complement(tiny_mnist):
    settings = dict(epochs=5, batch_size=32, val_size=100, monitor_steps=1, progress=False)
    gce_model, ce_model = lenet5(tiny_mnist), lenet5(tiny_mnist)
    history = fit(gce_model, tiny_mnist, RECIPE["gce"], **settings)
    fit(ce_model, tiny_mnist, "ce", **settings)
    losses = history["loss"]
    assert losses[-1] < losses[0] - 0.1 and losses[-1] == min(losses)
    assert history.last["val_clean_acc"] > 0.6
    # Spec §8.12: GCE models have flatter wrong-class distributions than cross-entropy ones.
    x, y = tiny_mnist.test.x, tiny_mnist.test.y
    with torch.no_grad():
        gce_flatness = float(normalized_complement_entropy(gce_model(x), y).mean())
        ce_flatness = float(normalized_complement_entropy(ce_model(x), y).mean())
    assert gce_flatness > ce_flatness + 0.1
