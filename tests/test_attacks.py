"""Attack invariants (DESIGN.md contract) and exact values on analytic models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustviz._checks import check_eps
from robustviz.attacks import (
    Attack,
    adaptive_attack,
    autoattack,
    bim,
    cross_entropy,
    eval_mode,
    fgsm,
    make_attack,
    margin,
    mifgsm,
    multi_targeted_pgd,
    pgd,
    rfgsm,
    transfer_attack,
)
from robustviz.evaluate import accuracy


def _surrogate():
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))

ATTACKS = {
    "fgsm": lambda m, x, y, eps: fgsm(m, x, y, eps),
    "pgd": lambda m, x, y, eps: pgd(m, x, y, eps, steps=5, seed=0),
    "pgd_restarts": lambda m, x, y, eps: pgd(m, x, y, eps, steps=3, restarts=3, seed=0),
    "pgd_margin": lambda m, x, y, eps: pgd(m, x, y, eps, steps=3, loss="margin", seed=0),
    "pgd_early_stop": lambda m, x, y, eps: pgd(m, x, y, eps, steps=5, seed=0, early_stop=True),
    "pgd_no_start": lambda m, x, y, eps: pgd(m, x, y, eps, steps=3, random_start=False),
    "pgd_dlr": lambda m, x, y, eps: pgd(m, x, y, eps, steps=3, loss="dlr", seed=0),
    "pgd_targeted": lambda m, x, y, eps: pgd(m, x, y, eps, steps=3, loss="margin", seed=0, target=(y + 1) % 3),
    "rfgsm": lambda m, x, y, eps: rfgsm(m, x, y, eps, seed=0),
    "bim": lambda m, x, y, eps: bim(m, x, y, eps, steps=3),
    "mifgsm": lambda m, x, y, eps: mifgsm(m, x, y, eps, steps=3),
    "multi_targeted": lambda m, x, y, eps: multi_targeted_pgd(m, x, y, eps, steps=3, seed=0),
    "adaptive": lambda m, x, y, eps: adaptive_attack(m, x, y, eps, steps=3, restarts=2),
    "transfer": lambda m, x, y, eps: transfer_attack(m, x, y, eps, surrogate=_surrogate()),
    "autoattack": lambda m, x, y, eps: autoattack(m, x, y, eps, version="fast").x_adv,
}


def batch(n=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=gen)
    x[:4] = 0.0  # points on the border of [0, 1] exercise the clipping
    x[4:8] = 1.0
    return x, torch.randint(0, 3, (n,), generator=gen)


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("eps", [0.0, 0.03, 0.3])
def test_linf_attacks_stay_in_ball_and_unit_box(bn_net, name, eps):
    x, y = batch()
    x_adv = ATTACKS[name](bn_net, x, y, eps)
    assert x_adv.shape == x.shape
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_l2_pgd_stays_in_l2_ball(bn_net):
    x, y = batch()
    x_adv = pgd(bn_net, x, y, eps=0.5, steps=5, norm="l2", seed=0)
    norms = (x_adv - x).flatten(1).norm(dim=1)
    assert norms.max() <= 0.5 + 1e-5
    assert norms.max() > 0.1  # it moved
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("name", ATTACKS)
def test_dtype_and_device_kept(bn_net, name):
    x, y = batch()
    x64 = x.double()
    x_adv = ATTACKS[name](bn_net, x64, y, 0.1)
    assert x_adv.dtype == torch.float64 and x_adv.device == x64.device
    assert not x_adv.requires_grad


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", ATTACKS)
def test_mode_restored_and_batchnorm_untouched(bn_net, name, training):
    x, y = batch()
    bn_net.train(training)
    bn_net.drop.eval()  # a mixed-mode model: every submodule's own mode must come back
    stats = (bn_net.bn.running_mean.clone(), bn_net.bn.running_var.clone(),
             int(bn_net.bn.num_batches_tracked))
    ATTACKS[name](bn_net, x, y, 0.1)
    assert bn_net.training is training
    assert bn_net.bn.training is training and bn_net.drop.training is False
    assert torch.equal(bn_net.bn.running_mean, stats[0])
    assert torch.equal(bn_net.bn.running_var, stats[1])
    assert int(bn_net.bn.num_batches_tracked) == stats[2]


def test_attacks_do_not_touch_parameter_gradients(bn_net):
    x, y = batch()
    pgd(bn_net, x, y, 0.1, steps=2)
    assert all(p.grad is None for p in bn_net.parameters())


def test_eval_mode_restores_even_on_error(bn_net):
    bn_net.train()
    with pytest.raises(RuntimeError):
        with eval_mode(bn_net):
            assert not bn_net.training
            raise RuntimeError("boom")
    assert bn_net.training


def test_seeded_pgd_is_deterministic(bn_net):
    x, y = batch()
    a = pgd(bn_net, x, y, 0.1, steps=3, seed=7)
    b = pgd(bn_net, x, y, 0.1, steps=3, seed=7)
    c = pgd(bn_net, x, y, 0.1, steps=3, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_callable_classes_match_functions(bn_net):
    x, y = batch()
    assert torch.equal(make_attack("fgsm", 0.1)(bn_net, x, y), fgsm(bn_net, x, y, 0.1))
    assert torch.equal(Attack("PGD-3", pgd, dict(eps=0.1, steps=3, seed=1))(bn_net, x, y),
                       pgd(bn_net, x, y, 0.1, steps=3, seed=1))
    assert make_attack("pgd-20x5-margin", 0.1).name == "PGD-20x5-margin"


class LinearNet(nn.Module):
    """f(x) = W x + b on flattened inputs."""

    def __init__(self, weight, bias):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        self.num_classes = weight.shape[0]

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


def test_fgsm_on_linear_binary_model_is_the_analytic_worst_case():
    # For two classes the CE input gradient is (1 - p_y)(w_other - w_y): FGSM moves every
    # coordinate by -eps * sign(w_y - w_other), which minimises the linear margin over the box.
    torch.manual_seed(0)
    weight, bias = torch.randn(2, 20, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    model = LinearNet(weight, bias).double()
    x = torch.rand(64, 20, dtype=torch.float64)
    y = torch.randint(0, 2, (64,))
    eps = 0.1
    direction = weight[y] - weight[1 - y]  # [B, D], gradient of the margin z_y - z_other
    expected = torch.clamp(x - eps * direction.sign(), torch.clamp(x - eps, min=0), torch.clamp(x + eps, max=1))
    x_adv = fgsm(model, x, y, eps)
    assert torch.allclose(x_adv, expected)
    margin_adv = ((weight[y] - weight[1 - y]) * x_adv).sum(1)
    # No point of the feasible box has a smaller margin: compare with random feasible points.
    for _ in range(20):
        random_point = torch.clamp(x + eps * (2 * torch.rand_like(x) - 1), 0, 1)
        assert (margin_adv <= ((weight[y] - weight[1 - y]) * random_point).sum(1) + 1e-12).all()


def test_margin_loss_values():
    scores = torch.tensor([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 0])
    assert torch.allclose(margin(scores, y), torch.tensor([-1.0, 3.0]))
    assert torch.allclose(cross_entropy(scores, y), nn.functional.cross_entropy(scores, y, reduction="none"))


def test_pgd_at_least_as_strong_as_fgsm_on_trained_model(trained_cnn, small_mnist):
    x, y = small_mnist.test.x[:300], small_mnist.test.y[:300]
    clean = accuracy(trained_cnn, x, y)
    for eps in (0.1, 0.2):
        acc_fgsm = accuracy(trained_cnn, fgsm(trained_cnn, x, y, eps), y)
        acc_pgd = accuracy(trained_cnn, pgd(trained_cnn, x, y, eps, steps=20, seed=0), y)
        assert acc_pgd <= acc_fgsm <= clean + 1e-9
    assert accuracy(trained_cnn, pgd(trained_cnn, x, y, 0.3, steps=20, seed=0), y) < 0.05


def test_restarts_and_early_stop_never_weaken_pgd(trained_cnn, small_mnist):
    x, y = small_mnist.test.x[:300], small_mnist.test.y[:300]
    broken_once = trained_cnn(pgd(trained_cnn, x, y, 0.1, steps=5, seed=3)).argmax(1) != y
    broken_restarts = trained_cnn(pgd(trained_cnn, x, y, 0.1, steps=5, restarts=3, seed=3)).argmax(1) != y
    broken_early = trained_cnn(pgd(trained_cnn, x, y, 0.1, steps=5, seed=3, early_stop=True)).argmax(1) != y
    assert bool((broken_restarts | ~broken_once).all())  # broken once => broken with restarts
    assert int(broken_early.sum()) >= int(broken_once.sum()) - 1


def test_more_eps_is_never_better(trained_cnn, small_mnist):
    x, y = small_mnist.test.x[:200], small_mnist.test.y[:200]
    accs = [accuracy(trained_cnn, pgd(trained_cnn, x, y, e, steps=10, seed=0), y) for e in (0.0, 0.05, 0.1, 0.2)]
    assert accs == sorted(accs, reverse=True)


@pytest.mark.parametrize("attack", [fgsm, pgd])
def test_eps_in_255_units_is_rejected(bn_net, attack):
    x, y = batch()
    with pytest.raises(ValueError, match="255"):
        attack(bn_net, x, y, 8)


def test_l2_budgets_above_1_are_accepted_up_to_the_diagonal_of_the_box(bn_net):
    x, y = batch()
    dim = x[0].numel()
    x_adv = pgd(bn_net, x, y, 2.0, steps=3, norm="l2", seed=0)  # e.g. MNIST's usual L2 budget
    assert (x_adv - x).flatten(1).norm(dim=1).max() <= 2.0 + 1e-5
    with pytest.raises(ValueError, match="diagonal"):
        pgd(bn_net, x, y, 1.01 * dim ** 0.5, steps=1, norm="l2")
    with pytest.raises(ValueError, match="larger than 1"):
        pgd(bn_net, x, y, 2.0, steps=1, norm="linf")
    assert check_eps(2.0, norm="l2", dim=784) == 2.0
    with pytest.raises(ValueError, match="/255"):
        check_eps(128, norm="l2", dim=784)


@pytest.mark.parametrize("attack", [fgsm, pgd])
def test_images_in_255_range_are_rejected(bn_net, attack):
    x, y = batch()
    with pytest.raises(ValueError, match="divide by 255"):
        attack(bn_net, x * 255, y, 0.1)
    with pytest.raises(ValueError, match="float"):
        attack(bn_net, (x * 255).to(torch.uint8), y, 0.1)


def test_labels_out_of_range_and_shape_mismatch_are_rejected(bn_net):
    x, y = batch()
    with pytest.raises(ValueError, match="labels in"):
        pgd(bn_net, x, torch.full_like(y, 3), 0.1)
    with pytest.raises(ValueError, match="must match"):
        fgsm(bn_net, x, y[:-1], 0.1)
    with pytest.raises(ValueError, match="norm"):
        pgd(bn_net, x, y, 0.1, norm="l1")
    with pytest.raises(ValueError, match="attack loss"):
        pgd(bn_net, x, y, 0.1, loss="hinge")
