"""The attacks beyond FGSM/PGD: exact values on analytic models, names, and strength orderings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustviz.attacks import (
    ATTACK_SPECS,
    Attack,
    NearestCentreScores,
    adaptive_attack,
    autoattack,
    bim,
    decision_views,
    dlr,
    fgsm,
    make_attack,
    margin,
    mifgsm,
    multi_targeted_pgd,
    pgd,
    rfgsm,
    transfer_attack,
)
from robustviz.methods.clustr import ClusterHead


class LinearNet(nn.Module):
    def __init__(self, weight, bias):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)
        self.num_classes = weight.shape[0]

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


def linear_problem(classes=4, shape=(12,), n=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dim = int(torch.tensor(shape).prod())
    model = LinearNet(torch.randn(classes, dim, generator=gen), torch.zeros(classes))
    x = torch.rand(n, *shape, generator=gen)
    return model, x, model(x).argmax(1).detach()


def test_dlr_values_and_invariance_to_affine_rescaling():
    scores = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, 0.5]])
    y = torch.tensor([0, 0])
    # (max_{j != y} s_j - s_y) / (s_pi1 - s_pi3): (1 - 3) / (3 - 0) and (2 - 0) / (2 - 0.5)
    assert torch.allclose(dlr(scores, y), torch.tensor([-2 / 3, 2 / 1.5]))
    assert torch.allclose(dlr(7 * scores + 5, y), dlr(scores, y), atol=1e-6)
    with pytest.raises(ValueError, match="3 classes"):
        dlr(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))


def test_targeted_pgd_reaches_the_target_on_a_linear_model():
    model, x, y = linear_problem()
    target = (y + 1) % 4
    x_adv = pgd(model, x, y, eps=1.0, steps=50, loss="margin", target=target, seed=0)
    assert (model(x_adv).argmax(1) == target).float().mean() > 0.95
    # the untargeted attack goes wherever is easiest, which is rarely the fixed target
    x_untargeted = pgd(model, x, y, eps=1.0, steps=50, loss="margin", seed=0)
    assert (model(x_untargeted).argmax(1) == target).float().mean() < 0.95


def test_bim_is_deterministic_pgd_from_x_with_eps_over_steps():
    model, x, y = linear_problem()
    expected = pgd(model, x, y, 0.1, steps=4, step_size=0.025, random_start=False)
    assert torch.equal(bim(model, x, y, 0.1, steps=4), expected)
    assert torch.equal(make_attack("bim-4", 0.1)(model, x, y), expected)


def test_mifgsm_on_a_linear_model_moves_every_pixel_by_the_full_budget():
    # The CE gradient direction of a linear model changes little; with momentum every
    # coordinate walks eps/T per step in one direction and reaches the corner of the ball.
    model, x, y = linear_problem(classes=2)
    x_adv = mifgsm(model, x, y, 0.05, steps=5)
    inside = ((x - 0.05 > 0) & (x + 0.05 < 1))
    assert torch.allclose((x_adv - x).abs()[inside], torch.full_like(x[inside], 0.05), atol=1e-6)
    assert torch.equal(make_attack("mifgsm-5", 0.05)(model, x, y), x_adv)


def test_rfgsm_takes_the_random_step_then_the_rest_of_the_budget():
    model, x, y = linear_problem(classes=2)
    x_adv = rfgsm(model, x, y, 0.1, alpha=0.04, seed=3)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert torch.equal(Attack("R-FGSM", rfgsm, dict(eps=0.1, alpha=0.04, seed=3))(model, x, y), x_adv)
    assert not torch.equal(x_adv, fgsm(model, x, y, 0.1))
    with pytest.raises(ValueError, match="alpha"):
        rfgsm(model, x, y, 0.1, alpha=0.1)


def test_multi_targeted_never_weaker_than_its_best_single_target():
    model, x, y = linear_problem(classes=5, n=64)
    eps = 0.15
    x_mt = multi_targeted_pgd(model, x, y, eps, steps=10, seed=0)
    broken_mt = model(x_mt).argmax(1) != y
    for k in range(4):
        ranked = model(x).scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)
        x_t = pgd(model, x, y, eps, steps=10, loss="margin", seed=k, target=ranked[:, k])
        broken_t = model(x_t).argmax(1) != y
        assert bool((broken_mt | ~broken_t).all())
    with pytest.raises(ValueError, match="num_targets"):
        multi_targeted_pgd(model, x, y, eps, num_targets=5)
    assert make_attack("mt-pgd-10", eps).name == "MT-PGD-10"


def test_transfer_attack_uses_only_the_surrogate():
    target, x, y = linear_problem(seed=1)
    surrogate, _, _ = linear_problem(seed=2)
    x_adv = transfer_attack(target, x, y, 0.1, surrogate)
    assert torch.equal(x_adv, pgd(surrogate, x, y, 0.1, steps=20, seed=0))
    assert torch.equal(Attack("transfer", transfer_attack, dict(eps=0.1, surrogate=surrogate))(target, x, y), x_adv)
    assert all(p.grad is None for p in target.parameters())


class CentreModel(nn.Module):
    """features = identity on 2-D points, head = ClusTR's cluster head with given centres."""

    def __init__(self, centres, labels, top_l=2):
        super().__init__()
        self.num_classes = int(labels.max()) + 1
        self.head = ClusterHead(2, self.num_classes, clusters_per_class=len(labels) // self.num_classes,
                                top_l=top_l)
        self.head.set_clusters(centres, labels, 0.05)
        self.dummy = nn.Parameter(torch.zeros(()))

    def features(self, x):
        return x.flatten(1) + 0 * self.dummy

    def forward(self, x):
        return self.head(self.features(x))


def test_nearest_centre_view_scores_are_minus_the_squared_distance_to_the_class_nearest_centre():
    centres = torch.tensor([[0.2, 0.2], [0.8, 0.8], [0.2, 0.8], [0.8, 0.2]])
    labels = torch.tensor([0, 0, 1, 1])
    model = CentreModel(centres, labels)
    assert list(decision_views(model)) == ["decision rule", "nearest centre"]
    assert list(decision_views(linear_problem()[0])) == ["decision rule"]
    z = torch.tensor([[0.25, 0.3]])
    scores = NearestCentreScores(model)(z)
    assert torch.allclose(scores, torch.tensor([[-(0.05 ** 2 + 0.1 ** 2), -(0.05 ** 2 + 0.5 ** 2)]]))


def test_adaptive_attack_breaks_the_top_l_vote_where_cross_entropy_pgd_stalls():
    # Top-1 vote: the absent class scores a constant absent_gap below the winner, so the
    # margin of the decision rule is constant and its CE gradient only pulls towards the
    # winner's centre. The margin of the nearest-centre view sees the other class's centre.
    centres = torch.tensor([[0.3, 0.5], [0.1, 0.1], [0.7, 0.5], [0.9, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    model = CentreModel(centres, labels, top_l=1)
    x = torch.tensor([[0.45, 0.5], [0.42, 0.45], [0.55, 0.52], [0.58, 0.5]])
    y = model(x).argmax(1)
    eps = 0.1
    x_ce = pgd(model, x, y, eps, steps=20, random_start=False)
    assert (model(x_ce).argmax(1) == y).all()  # CE only sees "raise the absent class = raise the winner"
    adaptive = make_attack("adaptive-20", eps)(model, x, y)
    assert (model(adaptive).argmax(1) != y).all()
    assert (adaptive - x).abs().max() <= eps + 1e-6
    assert make_attack("adaptive-50x2", eps).name == "adaptive-50x2"


def test_adaptive_attack_runs_every_loss_as_a_cascade():
    model, x, y = linear_problem()
    eps = 0.05
    broken_by_margin = model(pgd(model, x, y, eps, steps=20, loss="margin", seed=0)).argmax(1) != y
    assert 0 < int(broken_by_margin.sum()) < len(y), "the problem needs both broken and robust samples"
    seen = []

    def recording_margin(scores, labels):
        seen.append(scores.shape[0])
        return margin(scores, labels)

    x_adv = adaptive_attack(model, x, y, eps, steps=20, restarts=1, seed=0, losses=("margin", recording_margin))
    # the second run attacks only what the first (the same margin PGD) left unbroken
    assert set(seen) == {int((~broken_by_margin).sum())}
    assert torch.equal(model(x_adv).argmax(1) != y, broken_by_margin)  # a linear model: margin PGD is optimal
    assert (x_adv - x).abs().max() <= eps + 1e-6
    with pytest.raises(ValueError, match="at least one"):
        adaptive_attack(model, x, y, eps, losses=())


def test_make_attack_builds_every_documented_spec():
    expected = {
        "fgsm": "FGSM", "rfgsm": "R-FGSM", "bim-10": "BIM-10", "mifgsm-10": "MI-FGSM-10", "pgd-20": "PGD-20",
        "pgd-100x5": "PGD-100x5", "pgd-50-margin": "PGD-50-margin", "pgd-50-dlr": "PGD-50-dlr",
        "pgd-10-l2": "PGD-10-L2", "mt-pgd-20": "MT-PGD-20", "adaptive-50x2": "adaptive-50x2",
        "autoattack": "AutoAttack-standard", "autoattack-fast": "AutoAttack-fast", "aa-rand": "AutoAttack-rand",
        "autoattack-l2": "AutoAttack-standard-L2",
    }
    for spec, name in expected.items():
        assert make_attack(spec, 0.3).name == name, spec
    assert len(ATTACK_SPECS) == 8
    for bad in ("pgd", "pgd-20-hinge", "bim-10x2", "autoattack-plus", "cw"):
        with pytest.raises(ValueError, match="unknown attack"):
            make_attack(bad, 0.3)


def test_autoattack_checks_its_arguments():
    model, x, y = linear_problem()
    with pytest.raises(ValueError, match="version"):
        autoattack(model, x, y, 0.1, version="plus")
    with pytest.raises(ValueError, match="norm"):
        autoattack(model, x, y, 0.1, norm="l1")
    with pytest.raises(ValueError, match="255"):
        autoattack(model, x, y, 8)


def test_autoattack_breakdown_is_a_cascade_and_matches_the_returned_examples():
    model, x, y = linear_problem(classes=5, shape=(1, 6, 6), n=48)
    result = autoattack(model, x, y, 0.08, version="standard", seed=0)
    assert list(result.breakdown) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    values = [result.clean_acc, *result.breakdown.values()]
    assert values == sorted(values, reverse=True)  # each attack only removes samples
    assert result.clean_acc == 1.0 and result.robust_acc < 1.0
    assert result.robust_acc == pytest.approx(float((model(result.x_adv).argmax(1) == y).float().mean()))
    assert (result.x_adv - x).abs().max() <= 0.08 + 1e-6
    assert "apgd-ce" in result.table()
    callable_form = make_attack("autoattack-fast", 0.08)
    assert torch.equal(callable_form(model, x, y), callable_form.outcome(model, x, y).x_adv)
    assert list(callable_form.outcome(model, x, y).breakdown) == ["apgd-ce", "apgd-t"]
