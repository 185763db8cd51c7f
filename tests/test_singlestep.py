"""SAT-R1/R2/R3 (Vivek & Babu 2020): losses, sample generators, methods and recipes (spec §9)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustviz import data, models
from robustviz.methods import Batch
from robustviz.methods.singlestep import RECIPES, SATR1, SATR2, SATR3
from robustviz.methods.singlestep.loss import (
    SATR1Loss,
    SATR2Loss,
    SATR3Loss,
    logit_sqdist,
    r3_hinge,
    sat_r1_loss,
    sat_r2_loss,
    sat_r3_loss,
)
from robustviz.methods.singlestep.method import (
    fgsm_sample,
    ifgsm_sample,
    random_corner,
    sat_r1_samples,
    sat_r2_samples,
    sat_r3_samples,
)
from robustviz.methods.singlestep.recipes import step_milestones
from robustviz.methods.standard import AdversarialTraining
from robustviz.train import fit, input_statistics, make_schedule

RECIPE = {recipe.key: recipe for recipe in RECIPES}


def linf(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def graph_node_names(tensor: torch.Tensor) -> list[str]:
    """Names of every autograd node reachable from ``tensor``."""
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(child for child, _ in node.next_functions)
    return [type(node).__name__ for node in seen]


class LinearLogistic(nn.Module):
    """A 2-class linear model in float64 on ``[B, 1, 4, 4]`` inputs: logits ``W x + b``."""

    num_classes = 2

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], 2).double()
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class Recorder(nn.Module):
    """Wraps a model and records every forward call: (training, rows, input requires_grad)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.num_classes = inner.num_classes
        self.calls: list[tuple[bool, int, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, x.shape[0], x.requires_grad))
        return self.inner(x)


def dyadic_inputs(batch: int = 6, seed: int = 0) -> torch.Tensor:
    """float64 inputs on the grid k/64 inside [0.3, 0.7]: the attacks' arithmetic is exact."""
    ints = torch.randint(20, 45, (batch, 1, 4, 4), generator=seeded(seed))
    return ints.double() / 64


def random_weights(scale: float, seed: int = 1) -> torch.Tensor:
    return scale * torch.randn(2, 16, generator=seeded(seed), dtype=torch.float64)


@pytest.fixture
def images():
    """Uniform images on the 8x8 grid of ``TinyBNNet``: many pixels are clipped at 0 or 1."""
    return torch.rand(12, 1, 8, 8, generator=seeded(3)), torch.randint(0, 3, (12,), generator=seeded(4))


@pytest.fixture
def lenet():
    return models.build("lenet_plus", 10, 1, seed=0)


@pytest.fixture
def mnist_batch():
    return torch.rand(8, 1, 28, 28, generator=seeded(5)), torch.randint(0, 10, (8,), generator=seeded(6))


@pytest.fixture(scope="module")
def tiny_mnist():
    return data.load("mnist-mini", n_train=600, n_test=100, seed=0)


# --- the losses: reductions, shapes and exact values -----------------------------------


def test_logit_sqdist_sums_over_classes_and_averages_over_samples():
    a = torch.zeros(2, 3)
    b = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    assert float(logit_sqdist(a, b)) == pytest.approx((1 + 4 + 9) / 2)
    x, y = torch.randn(5, 4), torch.randn(5, 4)
    naive = sum(sum((x[i, k] - y[i, k]) ** 2 for k in range(4)) for i in range(5)) / 5
    assert float(logit_sqdist(x, y)) == pytest.approx(float(naive), rel=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        logit_sqdist(torch.zeros(2, 3), torch.zeros(3, 3))


def test_r1_cross_entropy_uses_exactly_the_B_fgsm_rows():
    batch, classes = 5, 4
    scores, y = torch.randn(batch + 1, classes), torch.randint(0, classes, (batch,))
    loss, parts = sat_r1_loss(scores, y, lam=0.0)
    assert float(loss) == pytest.approx(float(F.cross_entropy(scores[:batch], y)))
    moved = scores.clone()
    moved[batch] += 5.0  # the I-FGSM row only enters the regulariser
    loss_moved, parts_moved = sat_r1_loss(moved, y, lam=0.5)
    assert float(parts_moved["fgsm_ce"]) == pytest.approx(float(parts["fgsm_ce"]))
    expected_r1 = float(((moved[batch - 1] - moved[batch]) ** 2).sum())
    assert float(parts_moved["r1"]) == pytest.approx(expected_r1, rel=1e-6)
    assert float(loss_moved) == pytest.approx(float(parts["fgsm_ce"]) + 0.5 * expected_r1, rel=1e-6)
    with pytest.raises(ValueError, match="rows"):
        sat_r1_loss(scores[:batch], y, lam=0.2)


def test_r1_with_several_multistep_samples_pairs_the_last_images():
    batch, n = 6, 3
    scores, y = torch.randn(batch + n, 4), torch.randint(0, 4, (batch,))
    _, parts = sat_r1_loss(scores, y, lam=1.0, n_multistep=n)
    assert float(parts["r1"]) == pytest.approx(float(logit_sqdist(scores[batch - n:batch], scores[batch:])))


def test_r2_cross_entropy_uses_only_the_fgsm_half():
    batch = 4
    scores, y = torch.randn(2 * batch, 3), torch.randint(0, 3, (batch,))
    loss, parts = sat_r2_loss(scores, y, lam=2.0)
    assert float(parts["fgsm_ce"]) == pytest.approx(float(F.cross_entropy(scores[:batch], y)))
    assert float(parts["r2"]) == pytest.approx(float(logit_sqdist(scores[:batch], scores[batch:])))
    assert float(loss) == pytest.approx(float(parts["fgsm_ce"] + 2.0 * parts["r2"]))
    moved = scores.clone()
    moved[batch:] -= 3.0
    assert float(sat_r2_loss(moved, y, lam=2.0)[1]["fgsm_ce"]) == pytest.approx(float(parts["fgsm_ce"]))
    with pytest.raises(ValueError, match="2B"):
        sat_r2_loss(torch.randn(2 * batch + 1, 3), y, lam=1.0)


def test_r3_returns_ce_hi_when_lambda_is_zero_and_hinges_on_batch_means():
    y = torch.tensor([0, 1])
    # Sample 0: small-step loss far above its full-step loss; sample 1: the reverse.
    lo = torch.tensor([[-4.0, 4.0], [0.0, 6.0]])
    hi = torch.tensor([[0.0, 0.0], [3.0, -3.0]])
    scores = torch.cat([lo, hi])
    ce_lo, ce_hi = F.cross_entropy(lo, y), F.cross_entropy(hi, y)
    loss0, parts = sat_r3_loss(scores, y, lam=0.0, tau=0.6)
    assert float(loss0) == pytest.approx(float(ce_hi))
    loss1, parts = sat_r3_loss(scores, y, lam=1.0, tau=0.6)
    hinge = max(0.0, float(ce_lo) - 0.6 * float(ce_hi))
    assert float(parts["r3_hinge"]) == pytest.approx(hinge)
    assert float(loss1) == pytest.approx(float(ce_hi) + hinge)
    per_sample = F.relu(F.cross_entropy(lo, y, reduction="none") - 0.6 * F.cross_entropy(hi, y, reduction="none"))
    assert float(per_sample.mean()) != pytest.approx(hinge, abs=1e-3)  # the batch-mean hinge is not this
    assert float(r3_hinge(torch.tensor(0.2), torch.tensor(1.0), 0.4)) == 0.0


def test_loss_gradients_match_finite_differences():
    torch.manual_seed(0)
    y = torch.tensor([0, 2, 1])
    r1_scores = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    r2_scores = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    r3_scores = torch.randn(6, 3, dtype=torch.float64)
    r3_scores[:3] *= 0.1  # keep away from the hinge's kink
    r3_scores.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: sat_r1_loss(s, y, lam=0.7)[0], (r1_scores,))
    assert torch.autograd.gradcheck(lambda s: sat_r2_loss(s, y, lam=3.0)[0], (r2_scores,))
    assert torch.autograd.gradcheck(lambda s: sat_r3_loss(s, y, lam=1.0, tau=0.4)[0], (r3_scores,))


def test_loss_modules_wrap_the_functions():
    y = torch.tensor([1, 0, 2])
    scores = torch.randn(6, 3)
    assert torch.equal(SATR2Loss(lam=3.0)(scores, y), sat_r2_loss(scores, y, 3.0)[0])
    assert torch.equal(SATR3Loss(lam=1.0, tau=0.6)(scores, y), sat_r3_loss(scores, y, 1.0, 0.6)[0])
    assert torch.equal(SATR1Loss(lam=0.2, n_multistep=3)(scores, y), sat_r1_loss(scores, y, 0.2, 3)[0])


# --- config guards ----------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(lam=2.0, tau=0.6), "lam \\* tau < 1"),
    (dict(lam=1.0, tau=1.0), "lam \\* tau < 1"),
    (dict(eps_lo=0.3), "eps_lo < eps"),
    (dict(eps_lo=0.5), "eps_lo < eps"),
    (dict(eps_lo=0.0), "eps_lo < eps"),
    (dict(lam=-1.0, tau=0.4), "lam must be >= 0"),
    (dict(alpha=2.0), "alpha"),
])
def test_sat_r3_config_guards(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SATR3(eps=0.3, **kwargs)


def test_other_config_guards(bn_net, images):
    x, y = images
    with pytest.raises(ValueError, match="lam \\* tau < 1"):
        SATR3Loss(lam=2.5, tau=0.4)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        SATR1(eps=0.3, lam=-0.1)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        SATR2(eps=0.3, lam=float("nan"))
    with pytest.raises(ValueError, match="steps"):
        SATR1(eps=0.3, steps=0)
    with pytest.raises(ValueError, match="n_multistep"):
        SATR1(eps=0.3, n_multistep=0)
    with pytest.raises(ValueError, match="8/255"):
        SATR2(eps=8)
    with pytest.raises(ValueError, match="eps_lo < eps_hi"):
        sat_r3_samples(bn_net, x, y, eps_lo=0.1, eps_hi=0.1, alpha=0.01)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sat_r2_samples(bn_net, x * 255, y, eps=0.1, alpha=0.01)


# --- sample generators: bounds, structure -----------------------------------------------


def test_fgsm_and_ifgsm_stay_in_the_ball_and_in_the_image_range(bn_net, images):
    x, y = images
    for x_adv in (fgsm_sample(bn_net, x, y, 0.1), ifgsm_sample(bn_net, x, y, 0.1, steps=7)):
        assert linf(x_adv, x) <= 0.1 + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert x_adv.dtype == x.dtype and not x_adv.requires_grad
    x_fgsm, x_ifgsm = sat_r1_samples(bn_net, x, y, 0.1, steps=3, n_multistep=2)
    assert x_fgsm.shape == x.shape and x_ifgsm.shape == (2, *x.shape[1:])
    assert linf(x_ifgsm, x[-2:]) <= 0.1 + 1e-6


def test_ifgsm_is_k_steps_of_eps_over_k(bn_net, images):
    """The authors' loop: K signed steps of eps / K, each clipped to [0, 1] only (spec §2)."""
    x, y = images
    x_ref = x.clone()
    bn_net.eval()
    for _ in range(4):
        x_ref.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(bn_net(x_ref), y, reduction="sum"), x_ref)
        x_ref = (x_ref.detach() + (0.1 / 4) * grad.sign()).clamp(0.0, 1.0)
    assert torch.allclose(ifgsm_sample(bn_net.train(), x, y, 0.1, steps=4), x_ref, atol=1e-6)
    assert torch.equal(ifgsm_sample(bn_net, x, y, 0.1, steps=1), fgsm_sample(bn_net, x, y, 0.1))


def test_r2_samples_reach_eps_plus_alpha_unless_projected(bn_net, images):
    x, y = images
    eps, alpha = 0.1, 0.03
    x_fgsm, x_rfgsm = sat_r2_samples(bn_net, x, y, eps, alpha, generator=seeded())
    assert linf(x_fgsm, x) <= eps + 1e-6
    assert eps + 1e-3 < linf(x_rfgsm, x) <= eps + alpha + 1e-6  # the authors' samples leave the ball
    assert x_rfgsm.min() >= 0 and x_rfgsm.max() <= 1
    _, x_projected = sat_r2_samples(bn_net, x, y, eps, alpha, project=True, generator=seeded())
    assert linf(x_projected, x) <= eps + 1e-6
    assert x_projected.min() >= 0 and x_projected.max() <= 1


def test_r2_fgsm_half_equals_per_sample_fgsm(bn_net, images):
    """One eval-mode pass over 2B samples gives every sample its own gradient (spec §3.2)."""
    x, y = images
    x_fgsm, _ = sat_r2_samples(bn_net, x, y, 0.1, 0.03, generator=seeded())
    assert torch.allclose(x_fgsm, fgsm_sample(bn_net, x, y, 0.1), atol=1e-7)


def test_r3_samples_share_one_ray_and_respect_their_bounds(bn_net, images):
    x, y = images
    eps_lo, eps_hi, alpha = 0.03, 0.1, 0.02
    x_lo, x_hi = sat_r3_samples(bn_net, x, y, eps_lo, eps_hi, alpha, generator=seeded())
    assert linf(x_lo, x) <= eps_lo + alpha + 1e-6 and linf(x_hi, x) <= eps_hi + alpha + 1e-6
    assert linf(x_hi, x) > eps_hi + 1e-3
    _, x_hi_p = sat_r3_samples(bn_net, x, y, eps_lo, eps_hi, alpha, project=True, generator=seeded())
    x_lo_p, _ = sat_r3_samples(bn_net, x, y, eps_lo, eps_hi, alpha, project=True, generator=seeded())
    assert linf(x_lo_p, x) <= eps_lo + 1e-6 and linf(x_hi_p, x) <= eps_hi + 1e-6
    # Interior inputs (no clipping): both samples sit on one ray x_r + t * g.
    x_mid = 0.3 + 0.4 * x
    x_lo, x_hi = sat_r3_samples(bn_net, x_mid, y, eps_lo, eps_hi, alpha, generator=seeded())
    gap = (x_hi - x_lo).abs()
    assert torch.allclose(gap, torch.full_like(gap, eps_hi - eps_lo), atol=1e-6)
    x_r = random_corner(x_mid, alpha, seeded())
    assert torch.allclose(x_lo, x_r + eps_lo * (x_hi - x_lo).sign(), atol=1e-6)


def test_random_corner_is_an_unclipped_sign_of_gaussian_noise():
    x = torch.tensor([[0.0, 1.0, 0.5, 0.995]])
    corner = random_corner(x, 0.01, seeded(7))
    expected = x + 0.01 * torch.randn(x.shape, generator=seeded(7)).sign()
    assert torch.equal(corner, expected)
    assert torch.allclose((corner - x).abs(), torch.full_like(x, 0.01))
    assert not torch.equal(corner, random_corner(x, 0.01, seeded(8)))


def test_r2_takes_its_gradient_at_the_unclipped_corner_and_r3_clips_it():
    """At x = 0 with an ascent direction of +1 everywhere, the two start points differ (spec §2)."""
    weight = torch.stack([torch.ones(16), -torch.ones(16)]).double()  # label 1: sign(grad) = +1
    model = LinearLogistic(weight, torch.zeros(2, dtype=torch.float64))
    x, y = torch.zeros(4, 1, 4, 4, dtype=torch.float64), torch.ones(4, dtype=torch.long)
    eps, alpha = 1 / 16, 1 / 32
    s = torch.randn(x.shape, generator=seeded(4), dtype=torch.float64).sign()
    _, x_rfgsm = sat_r2_samples(model, x, y, eps, alpha, generator=seeded(4))
    assert torch.equal(x_rfgsm, eps + alpha * s)  # from x_r = alpha * s, negative where s = -1
    _, x_hi = sat_r3_samples(model, x, y, eps / 2, eps, alpha, generator=seeded(4))
    assert torch.equal(x_hi, eps + (alpha * s).clamp(min=0))  # from clip(x_r)


# --- linear-model identities (spec §9) --------------------------------------------------


def test_linear_model_ifgsm_equals_fgsm_and_r1_is_zero():
    model = LinearLogistic(random_weights(1.0), torch.zeros(2, dtype=torch.float64))
    x, y = dyadic_inputs(), torch.tensor([0, 1, 0, 1, 1, 0])
    eps = 1 / 16  # steps of eps / 4 = 1/64: every iterate is exact in float64
    x_fgsm = fgsm_sample(model, x, y, eps)
    assert torch.equal(ifgsm_sample(model, x, y, eps, steps=4), x_fgsm)
    assert torch.equal((x_fgsm - x).abs(), torch.full_like(x, eps))  # no clipping happened
    out = SATR1(eps=eps, steps=4, lam=0.2).loss(model, Batch(x, y))
    assert float(out.terms["r1"]) == pytest.approx(0.0, abs=1e-24)
    assert out.loss.item() == pytest.approx(out.terms["fgsm_ce"].item(), rel=1e-12)


def test_linear_model_r2_equals_the_squared_norm_of_W_alpha_s():
    weight = random_weights(1.0)
    model = LinearLogistic(weight, torch.tensor([0.3, -0.2], dtype=torch.float64))
    x, y = dyadic_inputs(), torch.tensor([1, 1, 0, 0, 1, 0])
    eps, alpha = 1 / 16, 1 / 32
    x_fgsm, x_rfgsm = sat_r2_samples(model, x, y, eps, alpha, generator=seeded(11))
    s = torch.randn(x.shape, generator=seeded(11), dtype=torch.float64).sign()
    assert torch.equal(x_rfgsm - x_fgsm, alpha * s)  # same gradient sign at x and x_r
    _, parts = sat_r2_loss(model(torch.cat([x_fgsm, x_rfgsm])).detach(), y, lam=1.0)
    analytic = (alpha * s.flatten(1) @ weight.T).pow(2).sum(1).mean()
    assert float(parts["r2"]) == pytest.approx(float(analytic), rel=1e-10)


def r3_closed_form(weight, bias, x, y, s, alpha, eps_lo, eps_hi, tau):
    """CE(t) = softplus(c t - m) along the ray: c = ||w_y - w_o||_1, m the margin at x_r."""
    x_r = (x + alpha * s).flatten(1)
    direction = weight[y] - weight[1 - y]  # [B, d], w_y - w_other
    margin = (direction * x_r).sum(1) + bias[y] - bias[1 - y]
    c = direction.abs().sum(1)
    ce_lo = F.softplus(c * eps_lo - margin).mean()
    ce_hi = F.softplus(c * eps_hi - margin).mean()
    return ce_lo, ce_hi, max(0.0, float(ce_lo - tau * ce_hi))


@pytest.mark.parametrize("confident", [False, True])
def test_linear_model_r3_hinge_matches_the_softplus_closed_form(confident):
    eps_lo, eps_hi, alpha, tau = 1 / 32, 3 / 32, 1 / 64, 0.4
    x = dyadic_inputs()
    if confident:  # large c and margin: CE grows exponentially along the ray, ratio << tau
        weight = torch.stack([-1.5 * torch.ones(16), 1.5 * torch.ones(16)]).double()
        bias = torch.tensor([2.5, -2.5], dtype=torch.float64)
        y = torch.ones(6, dtype=torch.long)
    else:  # a weak model near its boundary: CE nearly flat along the ray, ratio near 1
        weight, bias = random_weights(0.05), torch.zeros(2, dtype=torch.float64)
        y = torch.tensor([0, 1, 1, 0, 1, 0])
    model = LinearLogistic(weight, bias)
    x_lo, x_hi = sat_r3_samples(model, x, y, eps_lo, eps_hi, alpha, generator=seeded(2))
    loss, parts = sat_r3_loss(model(torch.cat([x_lo, x_hi])).detach(), y, lam=1.0, tau=tau)
    s = torch.randn(x.shape, generator=seeded(2), dtype=torch.float64).sign()
    ce_lo, ce_hi, hinge = r3_closed_form(weight, bias, x, y, s, alpha, eps_lo, eps_hi, tau)
    assert float(parts["ce_lo"]) == pytest.approx(float(ce_lo), rel=1e-9)
    assert float(parts["ce_hi"]) == pytest.approx(float(ce_hi), rel=1e-9)
    assert float(parts["r3_hinge"]) == pytest.approx(hinge, rel=1e-9, abs=1e-15)
    if confident:
        assert float(ce_lo / ce_hi) < tau and float(parts["r3_hinge"]) == 0.0
        assert loss.item() == parts["ce_hi"].item()
    else:
        assert float(ce_lo / ce_hi) > tau and hinge > 0


# --- methods: degenerate cases, gradient flow, modes, determinism -----------------------


def one_sgd_step(model: nn.Module, method, x, y, seed: int = 0) -> torch.Tensor:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    torch.manual_seed(seed)
    out = method.loss(model, Batch(x, y))
    optimizer.zero_grad()
    out.loss.backward()
    optimizer.step()
    return out.loss.detach()


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("method", [SATR1(eps=0.3, steps=5, lam=0.0), SATR2(eps=0.3, alpha=0.01, lam=0.0)])
def test_lambda_zero_is_plain_fgsm_at_without_batchnorm(lenet, mnist_batch, method):
    x, y = mnist_batch
    baseline = AdversarialTraining(eps=0.3, steps=1, step_size=0.3, random_start=False)
    twin = copy.deepcopy(lenet)
    loss_sat = one_sgd_step(lenet, method, x, y)
    loss_fgsm = one_sgd_step(twin, baseline, x, y)
    assert float(loss_sat) == pytest.approx(float(loss_fgsm), rel=1e-5)
    assert torch.allclose(flat_params(lenet), flat_params(twin), atol=1e-6)


def test_lambda_zero_differs_from_fgsm_at_with_batchnorm(bn_net, images):
    """The extra I-FGSM row changes the BN batch statistics (spec pitfall 5)."""
    x, y = images
    bn_net.drop.p = 0.0  # only BatchNorm can make the two updates differ
    twin = copy.deepcopy(bn_net)
    one_sgd_step(bn_net, SATR1(eps=0.1, steps=3, lam=0.0), x, y)
    one_sgd_step(twin, AdversarialTraining(eps=0.1, steps=1, step_size=0.1, random_start=False), x, y)
    assert (flat_params(bn_net) - flat_params(twin)).abs().max() > 1e-5


def test_r3_lambda_zero_is_random_step_plus_fgsm_at_eps_hi(lenet, mnist_batch):
    x, y = mnist_batch
    method = SATR3(eps=0.3, eps_lo=0.1, alpha=0.01, lam=0.0, tau=0.4)
    lenet.train()
    torch.manual_seed(0)
    out = method.loss(lenet, Batch(x, y))
    torch.manual_seed(0)
    _, x_hi = sat_r3_samples(lenet, x, y, 0.1, 0.3, 0.01)
    assert out.loss.item() == pytest.approx(F.cross_entropy(lenet(x_hi), y).item(), rel=1e-5)


@pytest.mark.parametrize("method, rows", [
    (SATR1(eps=0.1, steps=3, lam=0.2), lambda b: b + 1),
    (SATR2(eps=0.1, alpha=0.02, lam=5.0), lambda b: 2 * b),
    (SATR3(eps=0.1, eps_lo=0.03, alpha=0.02, lam=1.0, tau=0.4), lambda b: 2 * b),
])
def test_one_train_forward_on_constant_adversarial_inputs(bn_net, images, method, rows):
    x, y = images
    model = Recorder(bn_net).train()
    out = method.loss(model, Batch(x, y))
    train_calls = [call for call in model.calls if call[0]]
    assert train_calls == [(True, rows(len(y)), False)]  # one pass, inputs carry no grad
    assert all(requires_grad for training, _, requires_grad in model.calls if not training)
    assert out.scores.shape == (len(y), 3) and out.loss.requires_grad
    assert all(module.training for module in model.modules())


@pytest.mark.parametrize("method", [
    SATR1(eps=0.3, steps=3, lam=0.2), SATR2(eps=0.3, alpha=0.01, lam=5.0),
    SATR3(eps=0.3, eps_lo=0.1, alpha=0.01, lam=1.0, tau=0.4),
])
def test_no_second_order_graph(lenet, mnist_batch, method):
    """The loss graph holds one forward pass of the network and no backward-of-backward node."""
    x, y = mnist_batch
    lenet.train()
    out = method.loss(lenet, Batch(x, y))
    names = graph_node_names(out.loss)
    assert sum("Convolution" in name for name in names) == 2  # LeNet+ has two conv layers
    assert not any("BackwardBackward" in name for name in names)
    assert names.count("AccumulateGrad") == len(list(lenet.parameters()))


def test_r1_regulariser_gradient_flows_through_both_logit_branches(lenet, mnist_batch):
    x, y = mnist_batch
    batch = len(y)
    x_fgsm, x_ifgsm = sat_r1_samples(lenet, x, y, 0.3, steps=10)
    lenet.train()
    scores = lenet(torch.cat([x_fgsm, x_ifgsm]))
    scores.retain_grad()
    _, parts = sat_r1_loss(scores, y, lam=0.2)
    assert parts["r1"].item() > 0
    parts["r1"].backward()  # the regulariser alone, CE masked out
    assert scores.grad[: batch - 1].abs().max() == 0
    assert scores.grad[batch - 1].abs().max() > 0 and scores.grad[batch].abs().max() > 0
    assert torch.allclose(scores.grad[batch - 1], -scores.grad[batch])
    grads = {name: p.grad for name, p in lenet.named_parameters()}
    assert all(grads[name].abs().max() > 0 for name in grads if name != "head.bias")
    assert grads["head.bias"].abs().max() < 1e-6  # a shared bias cancels in a logit difference


def test_r2_and_r3_regularisers_reach_both_halves(bn_net, images):
    x, y = images
    batch = len(y)
    x_fgsm, x_rfgsm = sat_r2_samples(bn_net, x, y, 0.1, 0.02)
    scores = bn_net.train()(torch.cat([x_fgsm, x_rfgsm]))
    scores.retain_grad()
    sat_r2_loss(scores, y, lam=1.0)[1]["r2"].backward()
    assert scores.grad[:batch].abs().sum(1).min() > 0 and scores.grad[batch:].abs().sum(1).min() > 0
    assert torch.allclose(scores.grad[:batch], -scores.grad[batch:])
    x_lo, x_hi = sat_r3_samples(bn_net, x, y, 0.03, 0.1, 0.02)
    scores = bn_net(torch.cat([x_lo, x_hi]))
    scores.retain_grad()
    hinge = sat_r3_loss(scores, y, lam=1.0, tau=0.4)[1]["r3_hinge"]
    assert hinge.item() > 0  # an untrained net is flat along the ray
    hinge.backward()
    assert scores.grad[:batch].abs().max() > 0 and scores.grad[batch:].abs().max() > 0


def test_generation_keeps_modes_and_batchnorm_statistics(bn_net, images):
    x, y = images
    bn_net.train()
    bn_net.drop.eval()  # mixed modes must come back exactly as they were
    stats = {k: v.clone() for k, v in bn_net.bn.state_dict().items()}
    sat_r1_samples(bn_net, x, y, 0.1, steps=3)
    sat_r2_samples(bn_net, x, y, 0.1, 0.02)
    sat_r3_samples(bn_net, x, y, 0.03, 0.1, 0.02)
    assert bn_net.training and bn_net.bn.training and bn_net.conv.training and not bn_net.drop.training
    for key, value in bn_net.bn.state_dict().items():
        assert torch.equal(value, stats[key]), key
    SATR2(eps=0.1, alpha=0.02, lam=5.0).loss(bn_net, Batch(x, y))
    assert int(bn_net.bn.num_batches_tracked) == int(stats["num_batches_tracked"]) + 1  # the update pass only


@pytest.mark.parametrize("make", [
    lambda: SATR1(eps=0.1, steps=3), lambda: SATR2(eps=0.1, alpha=0.02, lam=5.0),
    lambda: SATR3(eps=0.1, eps_lo=0.03, alpha=0.02, tau=0.4),
])
def test_same_seed_same_samples_and_losses(lenet, mnist_batch, make):
    x, y = mnist_batch
    lenet.train()
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        out = make().loss(lenet, Batch(x, y))
        runs.append((out.loss.item(), {k: float(v) for k, v in out.terms.items()}))
    assert runs[0] == runs[1]
    first, second = (sat_r2_samples(lenet, x, y, 0.3, 0.01, generator=seeded(9)) for _ in range(2))
    assert torch.equal(first[1], second[1])


# --- recipes and fit --------------------------------------------------------------------


def authors_lr_per_epoch(epochs: int, base_lr: float) -> list[float]:
    """The authors' ``step_lr_scheduling``, called after each epoch with Python 2 division."""
    lr, rates = base_lr, []
    for epoch in range(epochs):
        rates.append(lr)
        if epoch == 3 * epochs // 4:
            lr = base_lr / 125
        elif epoch == 2 * epochs // 4:
            lr = base_lr / 25
        elif epoch == epochs // 4:
            lr = base_lr / 5
    return rates


@pytest.mark.parametrize("epochs", [20, 100, 7])
def test_step_milestones_reproduce_the_authors_schedule(epochs):
    lr_at = make_schedule("multistep", 0.05, epochs * 3, 3, step_milestones(epochs), gamma=0.2)
    ours = [lr_at(3 * epoch) for epoch in range(epochs)]
    assert ours == pytest.approx(authors_lr_per_epoch(epochs, 0.05), rel=1e-12)


def test_recipes_hold_the_authors_settings():
    assert [recipe.key for recipe in RECIPES] == ["sat_r1", "sat_r2", "sat_r3"]
    for key, lr in (("sat_r1", 0.01), ("sat_r2", 0.01), ("sat_r3", 0.05)):
        mnist = RECIPE[key].config("mnist", "full")
        assert (mnist.model, mnist.batch_size, mnist.epochs, mnist.optimizer, mnist.lr) == (
            "lenet_plus", 32, 20, "sgd", lr)
        assert (mnist.weight_decay, mnist.momentum, mnist.gamma, mnist.milestones) == (5e-4, 0.9, 0.2, (6, 11, 16))
        cifar = RECIPE[key].config("cifar", "full")
        assert (cifar.model, cifar.batch_size, cifar.epochs, cifar.lr, cifar.augment) == (
            "wrn28_10_satrx", 64, 100, 0.1, "crop_flip")
        assert cifar.milestones == (26, 51, 76) and cifar.schedule == "multistep"
    r1 = RECIPE["sat_r1"].build_method(RECIPE["sat_r1"].config("mnist", "full"), 0.3)
    assert (r1.eps, r1.steps, r1.lam, r1.n_multistep) == (0.3, 10, 0.2, 1)
    r2 = RECIPE["sat_r2"].build_method(RECIPE["sat_r2"].config("cifar", "full"), 8 / 255)
    assert (r2.alpha, r2.lam, r2.project) == (2 / 255, 25.0, False)
    r3 = RECIPE["sat_r3"].build_method(RECIPE["sat_r3"].config("mnist", "quick"), 0.3)
    assert (r3.eps, r3.eps_lo, r3.alpha, r3.lam, r3.tau) == (0.3, 0.1, 0.01, 1.0, 0.4)
    r3 = RECIPE["sat_r3"].build_method(RECIPE["sat_r3"].config("cifar", "quick"), 8 / 255)
    assert (r3.eps_lo, r3.tau) == (2 / 255, 0.6)
    toy = RECIPE["sat_r3"].build_method(RECIPE["sat_r3"].config("toy", "quick"), 0.05)
    assert toy.eps_lo == pytest.approx(0.0125) and toy.lam * toy.tau < 1


def build_for(recipe, bundle):
    config = recipe.config(bundle.family, "quick")
    mean, std = input_statistics(config, bundle)
    return models.build(config.model, 10, 1, mean=mean, std=std, seed=0)


@pytest.mark.parametrize("key, terms", [
    ("sat_r1", ("fgsm_ce", "r1")),
    ("sat_r2", ("fgsm_ce", "r2")),
    ("sat_r3", ("ce_lo", "ce_hi", "r3_hinge", "r3_active")),
])
def test_each_recipe_trains_through_fit(tiny_mnist, key, terms):
    recipe = RECIPE[key]
    history = fit(build_for(recipe, tiny_mnist), tiny_mnist, recipe, steps=2, val_size=100, monitor_steps=2,
                  progress=False)
    record = history.last
    assert record["step"] == 2 and math.isfinite(record["loss"])
    assert all(math.isfinite(record[name]) for name in terms)


def test_sat_r3_quick_run_lowers_the_loss(tiny_mnist):
    """Two epochs of 16 steps of the quick profile (LeNet+, SGD lr 0.05, batch 32)."""
    recipe = RECIPE["sat_r3"]
    history = fit(build_for(recipe, tiny_mnist), tiny_mnist, recipe, epochs=2, val_size=100, monitor_steps=2,
                  progress=False)
    losses = history["loss"]
    assert losses[-1] < losses[0] - 0.2, losses
    assert history.last["train_acc"] > history.to_list()[0]["train_acc"]
