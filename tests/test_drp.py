"""DRP (spec methods/drp.md §7.2): prototype constructions P1-P11, losses L1-L2, decision rule
D1-D3, gradient sparsity A5, and the two recipes trained through ``fit``."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from robustviz import data, methods, models
from robustviz.methods.drp import DRP, RECIPES
from robustviz.methods.drp.head import (
    PROTOTYPE_KINDS,
    PrototypeHead,
    cube_prototypes,
    faithful_prototypes,
    make_prototypes,
    max_cosine,
    min_angle,
    pairwise_cosines,
    prototype_geometry,
    prototype_scores,
    self_consistency,
    simplex_bound,
    simplex_prototypes,
    smooth_max_cosine,
    smooth_max_cosine_gradient,
    sphere_prototypes,
    sylvester_hadamard,
)
from robustviz.methods.drp.loss import (
    CosinePrototypeLoss,
    LinfPrototypeLoss,
    cosine_loss,
    linf_distance,
    linf_loss,
    make_drp_loss,
)
from robustviz.train import fit, load_checkpoint

INF = float("inf")
RECIPE = {recipe.key: recipe for recipe in RECIPES}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add overhead on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def seeded():
    """Every test draws its random features from seed 0, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


@pytest.fixture(scope="module")
def tiny_mnist():
    return data.load("mnist-mini", n_train=600, n_test=100, seed=0)


def build_for(recipe, bundle, seed=0):
    config = recipe.config(bundle.family, "quick")
    return models.build(config.model, bundle.num_classes, bundle.in_channels, feat_dim=config.feat_dim,
                        mean=bundle.mean, std=bundle.std, seed=seed)


def off_diagonal(matrix):
    return matrix[~torch.eye(matrix.shape[0], dtype=torch.bool)]


def angles_2d(prototypes):
    angles = torch.atan2(prototypes[:, 1].double(), prototypes[:, 0].double()).sort().values
    gaps = torch.diff(torch.cat([angles, angles[:1] + 2 * math.pi]))
    return torch.rad2deg(gaps)


# ---- P1-P3: shape, determinism, constraints, the Rankin bound -----------------------------------


@pytest.mark.parametrize("kind", PROTOTYPE_KINDS)
def test_p1_shape_dtype_and_determinism(kind):
    first = make_prototypes(kind, 10, 16, seed=3)
    assert first.shape == (10, 16) and first.dtype == torch.float32
    assert torch.equal(first, make_prototypes(kind, 10, 16, seed=3))
    if kind in ("sphere", "faithful"):  # seeded random starts
        assert not torch.equal(first, make_prototypes(kind, 10, 16, seed=4))


def test_p2_sphere_prototypes_have_unit_norm():
    norms = sphere_prototypes(12, 7, seed=0).double().norm(dim=1)
    assert torch.allclose(norms, torch.ones(12, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("num_classes, dim", [(10, 16), (10, 15), (4, 3), (2, 5), (16, 64)])
def test_p2_cube_prototypes_are_unit_linf_vertices_at_distance_two(num_classes, dim):
    cube = cube_prototypes(num_classes, dim)
    assert set(cube.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(cube.abs().amax(dim=1), torch.ones(num_classes))
    assert torch.equal(F.pdist(cube, INF), torch.full((num_classes * (num_classes - 1) // 2,), 2.0))


@pytest.mark.parametrize("kind, num_classes, dim", [
    ("simplex", 10, 9), ("sphere", 10, 9), ("sphere", 12, 3), ("cube", 10, 16), ("faithful", 10, 100),
    ("faithful", 100, 100),
])
def test_p3_no_prototypes_beat_the_simplex_bound(kind, num_classes, dim):
    prototypes = make_prototypes(kind, num_classes, dim, seed=0)
    assert max_cosine(prototypes) >= simplex_bound(num_classes) - 1e-6  # float32 prototypes
    random_units = F.normalize(torch.randn(num_classes, dim, dtype=torch.float64), dim=1)
    assert max_cosine(random_units) >= simplex_bound(num_classes) - 1e-9


# ---- P4-P5: the simplex and the optimiser reaching it --------------------------------------------


@pytest.mark.parametrize("num_classes, dim", [(2, 1), (3, 2), (4, 3), (10, 9), (10, 100), (11, 10)])
def test_p4_closed_form_simplex_has_equal_cosines(num_classes, dim):
    prototypes = simplex_prototypes(num_classes, dim)
    cosines = off_diagonal(pairwise_cosines(prototypes.double()))
    assert torch.allclose(cosines, torch.full_like(cosines, -1 / (num_classes - 1)), atol=1e-6)
    assert torch.allclose(prototypes.norm(dim=1), torch.ones(num_classes), atol=1e-6)


def test_p4_simplex_needs_k_minus_one_dimensions():
    with pytest.raises(ValueError, match="dim >= 9"):
        simplex_prototypes(10, 8)


def test_p5_sphere_optimiser_reaches_the_bound_k10_d100():
    prototypes = sphere_prototypes(10, 100, seed=0)  # t = 20, lr 0.5, 3000 steps
    assert max_cosine(prototypes) <= -0.1110
    assert min_angle(prototypes) >= 96.37


def test_p5_sphere_optimiser_reaches_the_bound_k100_d500():
    prototypes = sphere_prototypes(100, 500, seed=0)
    assert max_cosine(prototypes) <= -0.0100
    assert min_angle(prototypes) >= 90.57


@pytest.mark.parametrize("num_classes, dim", [(2, 2), (3, 2), (4, 3), (10, 9), (10, 16), (100, 100)])
@pytest.mark.parametrize("seed", [0, 1])
def test_sphere_reaches_the_simplex_bound_whenever_k_le_d_plus_1(num_classes, dim, seed):
    """The issue's acceptance: max cosine = -1/(K-1) for K <= d + 1 (incl. K = d, where plain
    gradient descent stalls at 88 degrees, spec §2.6)."""
    prototypes = sphere_prototypes(num_classes, dim, seed=seed)
    assert max_cosine(prototypes.double()) == pytest.approx(simplex_bound(num_classes), abs=1e-5)


def test_sphere_gradient_matches_autograd():
    unit = F.normalize(torch.randn(6, 4, dtype=torch.float64), dim=1).requires_grad_(True)
    (grad,) = torch.autograd.grad(smooth_max_cosine(unit, 20.0), unit)
    tangent = grad - (grad * unit).sum(1, keepdim=True) * unit  # cosines ignore radial moves
    assert torch.allclose(smooth_max_cosine_gradient(unit.detach(), 20.0), tangent, atol=1e-10)


def test_smooth_max_cosine_bounds_the_max_cosine():
    prototypes = torch.randn(8, 5, dtype=torch.float64)
    value, exact = float(smooth_max_cosine(prototypes, 20.0)), max_cosine(prototypes)
    assert exact <= value <= exact + math.log(8 * 7) / 20


# ---- P6-P9: beyond the simplex regime -------------------------------------------------------------


@pytest.mark.parametrize("dim", [4, 10])
def test_p6_cross_polytope_regime_reaches_90_degrees(dim):
    cross_polytope = torch.cat([torch.eye(dim), -torch.eye(dim)])
    assert max_cosine(cross_polytope) == 0.0
    optimised = sphere_prototypes(2 * dim, dim, seed=0).double()
    # K > d + 1 vectors always have a pair with a non-negative inner product (90 degrees is optimal).
    assert -1e-9 <= max_cosine(optimised) <= 1e-4


@pytest.mark.parametrize("num_classes, optimum", [(4, 109.4712), (6, 90.0), (12, 63.4349)])
def test_p7_tammes_known_optima_in_3d(num_classes, optimum):
    assert min_angle(sphere_prototypes(num_classes, 3, seed=0).double()) == pytest.approx(optimum, abs=0.01)


def test_p8_tammes_k10_reaches_a_near_optimal_local_optimum():
    angle = min_angle(sphere_prototypes(10, 3, seed=0).double())
    assert 63.0 <= angle <= 66.15 + 0.01  # the Tammes optimum is 66.15 degrees


@pytest.mark.parametrize("num_classes", [2, 3, 5, 7])
def test_p9_circle_prototypes_are_equally_spaced(num_classes):
    gaps = angles_2d(sphere_prototypes(num_classes, 2, seed=0))
    assert torch.allclose(gaps, torch.full_like(gaps, 360 / num_classes), atol=0.01)


# ---- P10: Hadamard cube codes ---------------------------------------------------------------------


def test_p10_sylvester_rows_are_orthogonal():
    hadamard = sylvester_hadamard(16)
    assert torch.equal(hadamard @ hadamard.T, 16 * torch.eye(16))
    assert torch.equal(hadamard[0], torch.ones(16)) and torch.equal(hadamard[:, 0], torch.ones(16))


def test_p10_dropping_the_ones_column_gives_a_plus_minus_one_simplex():
    codes = cube_prototypes(16, 15, variant="simplex")  # K = 2^4 vectors in {+-1}^15
    assert torch.equal(codes, sylvester_hadamard(16)[:, 1:])
    cosines = off_diagonal(pairwise_cosines(codes.double()))
    assert torch.allclose(cosines, torch.full_like(cosines, -1 / 15), atol=1e-12)  # = -1/(K-1)


@pytest.mark.parametrize("num_classes, dim, cosine", [
    (10, 15, -1 / 15), (10, 30, -1 / 15), (10, 16, 0.0), (10, 32, 0.0), (2, 7, -1.0), (4, 3, -1 / 3),
])
def test_cube_auto_picks_the_most_negative_exact_cosine(num_classes, dim, cosine):
    cosines = off_diagonal(pairwise_cosines(cube_prototypes(num_classes, dim).double()))
    assert torch.allclose(cosines, torch.full_like(cosines, cosine), atol=1e-12)


@pytest.mark.parametrize("num_classes, dim", [(10, 100), (20, 16), (10, 8)])
def test_cube_refuses_dimensions_the_construction_cannot_fill(num_classes, dim):
    with pytest.raises(ValueError, match="Hadamard order"):
        cube_prototypes(num_classes, dim)


# ---- P11: the released generator's known flaw ----------------------------------------------------


def test_faithful_generator_matches_the_released_loop():
    """generate_proto.py: Uniform(-1, 1) start, SGD(lr 0.01, momentum 0.9) on -sum pdist(P, inf)."""
    generator = torch.Generator().manual_seed(5)
    released = (2 * torch.rand(10, 100, generator=generator) - 1).requires_grad_(True)
    optimizer = torch.optim.SGD([released], lr=0.01, momentum=0.9)
    for _ in range(100):
        optimizer.zero_grad()
        (-F.pdist(released, INF).sum()).backward()
        optimizer.step()
    assert torch.allclose(faithful_prototypes(10, 100, seed=5, steps=100), released.detach(), atol=1e-4)


def test_p11_faithful_sum_generator_grows_linearly_with_steps():
    medians = [faithful_prototypes(10, 100, seed=0, steps=steps).abs().amax(dim=1).median() for steps in
               (100, 200, 400)]
    assert 1.7 < medians[1] / medians[0] < 2.3 and 1.7 < medians[2] / medians[1] < 2.3


def test_p11_faithful_sum_generator_collapses_many_classes():
    """K = 100, d = 100, E = 50 (the released script's defaults), instead of d = 500, E = 1000."""
    prototypes = faithful_prototypes(100, 100, seed=0, steps=50)
    assert min_angle(prototypes) < 10.0
    assert self_consistency(prototypes, q=INF) < 1.0  # D1 fails: some prototypes are not their own class
    geometry = prototype_geometry(prototypes, q=INF)
    assert geometry["max_linf_norm"] > 10 * geometry["min_linf_norm"]  # nearly collinear, unequal norms


def test_p11_mean_objective_stays_near_the_random_start():
    start = faithful_prototypes(100, 100, seed=0, steps=0)
    mean = faithful_prototypes(100, 100, seed=0, steps=50, objective="mean")
    assert (mean - start).abs().max() < 0.1 and self_consistency(mean, q=INF) == 1.0


# ---- L1, L2, A5: the losses -----------------------------------------------------------------------


def test_l1_linf_loss_hand_example_and_sparse_gradient():
    features = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], requires_grad=True)
    targets = torch.tensor([[0.0, 0.5, 3.5], [0.9, 0.2, 0.1]])
    loss = linf_loss(features, targets)  # distances 1.5 (coordinate 1) and 0.9 (coordinate 0)
    assert float(loss.detach()) == pytest.approx(1.2)
    (grad,) = torch.autograd.grad(loss, features)
    assert torch.equal(grad, torch.tensor([[0.0, 0.5, 0.0], [-0.5, 0.0, 0.0]]))  # +-1/B, one per row


def test_l1_linf_loss_is_zero_only_at_the_target():
    targets = torch.randn(5, 7)
    assert float(linf_loss(targets, targets)) == 0.0
    assert float(linf_loss(targets + 1e-3, targets)) > 0.0


def test_l1_eps_inside_reproduces_pairwise_distance():
    features, targets = torch.randn(6, 9), torch.randn(6, 9)
    reference = torch.nn.PairwiseDistance(p=INF, eps=1e-6)
    assert torch.allclose(linf_distance(features, targets, eps_inside=1e-6), reference(features, targets))
    assert float(LinfPrototypeLoss(eps_inside=1e-6)(targets, targets)) == pytest.approx(1e-6)


def test_a5_linf_gradient_has_one_nonzero_per_row():
    features = torch.randn(32, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(linf_loss(features, torch.randn(32, 16)), features)
    assert torch.equal((grad != 0).sum(dim=1), torch.ones(32, dtype=torch.long))
    assert torch.equal(grad.abs().sum(dim=1), torch.full((32,), 1 / 32))


def test_l2_cosine_loss_values_and_scale_invariance():
    targets = F.normalize(torch.randn(4, 5), dim=1)
    features = torch.randn(4, 5)
    assert float(cosine_loss(3.0 * targets, targets)) == pytest.approx(0.0, abs=1e-6)
    assert float(cosine_loss(-2.0 * targets, targets)) == pytest.approx(4.0, abs=1e-6)
    scales = torch.tensor([[0.1], [1.0], [7.0], [300.0]])
    assert float(cosine_loss(scales * features, targets)) == pytest.approx(float(cosine_loss(features, targets)))


def test_l2_cosine_is_per_sample_not_across_the_batch():
    """B = 2 hand example. Per sample: cos = (1, 0), loss mean((0, 1)^2) = 0.5. The released
    `power_sum` takes the cosine over the batch axis: columns [1, 1] vs [1, 0] (cos 1/sqrt 2) and
    [0, 0] vs [0, 1] (cos 0), sum (1 - 1/sqrt 2)^2 + 1 = 1.0858, and depends on the scale of one sample."""
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(cosine_loss(features, targets)) == pytest.approx(0.5)
    assert float(CosinePrototypeLoss()(features, targets)) == pytest.approx(0.5)

    def batch_axis_bug(f, t):
        return (1 - F.cosine_similarity(f, t, dim=0)).pow(2).sum()

    assert float(batch_axis_bug(features, targets)) == pytest.approx((1 - 2 ** -0.5) ** 2 + 1)
    rescaled = features * torch.tensor([[10.0], [1.0]])
    assert float(cosine_loss(rescaled, targets)) == pytest.approx(0.5)
    assert float(batch_axis_bug(rescaled, targets)) != pytest.approx(float(batch_axis_bug(features, targets)))


def test_losses_reject_bad_shapes_and_names():
    with pytest.raises(ValueError, match="same shape"):
        linf_loss(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="same shape"):
        cosine_loss(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match="unknown DRP loss"):
        make_drp_loss("mean")
    with pytest.raises(ValueError, match="eps_inside"):
        make_drp_loss("cos", eps_inside=1e-6)


# ---- D1-D3: the decision rule ---------------------------------------------------------------------


@pytest.mark.parametrize("kind, num_classes, dim", [
    ("simplex", 10, 16), ("sphere", 10, 16), ("sphere", 30, 5), ("cube", 10, 16), ("cube", 16, 15),
])
@pytest.mark.parametrize("q", [2.0, INF])
def test_d1_every_prototype_is_classified_as_its_own_class(kind, num_classes, dim, q):
    prototypes = make_prototypes(kind, num_classes, dim, seed=0)
    predictions = PrototypeHead(prototypes, q)(prototypes).argmax(dim=1)
    assert torch.equal(predictions, torch.arange(num_classes))


@pytest.mark.parametrize("q", [2.0, INF])
def test_d2_scores_are_scale_invariant(q):
    head = PrototypeHead(faithful_prototypes(10, 16, seed=0), q)
    z = torch.randn(50, 16)
    for alpha in (1e-3, 0.5, 40.0):
        assert torch.allclose(head(alpha * z), head(z), rtol=1e-5, atol=1e-5)
        assert torch.equal(head(alpha * z).argmax(1), head(z).argmax(1))


@pytest.mark.parametrize("q", [2.0, INF])
def test_d3_equal_norm_prototypes_give_nearest_prototype_after_normalising(q):
    prototypes = sphere_prototypes(10, 6, seed=0)
    z = torch.randn(200, 6)
    nearest = torch.cdist(F.normalize(z, dim=1), prototypes).argmin(dim=1)
    assert torch.equal(PrototypeHead(prototypes, q)(z).argmax(dim=1), nearest)


def test_unequal_norms_bias_the_dot_product_rule():
    """Pitfall 2: z points almost along p_0 but the long p_1 wins the normalised dot product."""
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 10.0]])
    z = torch.tensor([[1.0, 0.2]])
    assert int(prototype_scores(z, prototypes, 2.0).argmax()) == 1
    assert int(torch.cdist(F.normalize(z, dim=1), F.normalize(prototypes, dim=1)).argmin()) == 0


def test_head_holds_prototypes_as_a_buffer_and_checks_inputs():
    prototypes = simplex_prototypes(3, 4)
    head = PrototypeHead(prototypes, INF)
    assert list(head.parameters()) == [] and "prototypes" in head.state_dict()
    assert not head.prototypes.requires_grad and torch.equal(head.prototypes, prototypes)
    assert head.q == INF and head(torch.zeros(2, 4)).abs().max() == 0  # z = 0: no NaN
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        head(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="q must be >= 1"):
        PrototypeHead(prototypes, 0.5)


def test_head_scores_are_float32_under_low_precision_features():
    prototypes = faithful_prototypes(10, 16, seed=0)
    z = torch.randn(8, 16)
    scores = PrototypeHead(prototypes, INF)(z.bfloat16())
    assert scores.dtype == torch.float32
    assert torch.allclose(scores, prototype_scores(z.bfloat16().float(), prototypes, INF))


def test_construction_errors_are_clear():
    with pytest.raises(ValueError, match="unknown prototype kind"):
        make_prototypes("hexagon", 3, 2)
    with pytest.raises(ValueError, match="num_classes"):
        make_prototypes("sphere", 1, 2)
    with pytest.raises(ValueError, match="dim >= 2"):
        sphere_prototypes(2, 1)
    with pytest.raises(ValueError, match="unknown cube variant"):
        cube_prototypes(4, 4, variant="random")
    with pytest.raises(ValueError, match="unknown faithful objective"):
        faithful_prototypes(4, 4, objective="max")


# ---- the method and its recipes -------------------------------------------------------------------


def test_attach_installs_fixed_prototypes_and_needs_linear_features():
    model = models.build("smallcnn", 10, 1, feat_dim=16, seed=0)
    DRP(prototypes="simplex").attach(model)
    assert isinstance(model.head, PrototypeHead) and torch.equal(model.head.prototypes, simplex_prototypes(10, 16))
    assert not any(p is model.head.prototypes for p in model.parameters())
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ValueError, match="not a linear layer"):
        DRP().attach(models.build("smallcnn", 10, 1, seed=0))  # post-ReLU features


def test_faithful_attach_warns_with_its_geometry():
    model = models.build("mlp", 3, 2, feat_dim=2, seed=0)
    with pytest.warns(RuntimeWarning, match="self-consistency"):
        RECIPE["drp_faithful"].build_method(RECIPE["drp_faithful"].config("toy", "quick"), 0.05).attach(model)
    assert model.head.q == INF


@pytest.mark.parametrize("key", ["drp", "drp_faithful"])
@pytest.mark.parametrize("family, profile, classes", [
    ("mnist", "quick", 10), ("mnist", "full", 10), ("cifar", "quick", 10), ("cifar", "full", 10),
    ("toy", "quick", 2), ("toy", "full", 3),
])
def test_every_recipe_config_builds_self_consistent_prototypes(key, family, profile, classes):
    config = RECIPE[key].config(family, profile)
    method = RECIPE[key].build_method(config, default_eps=0.1)
    prototypes = method.make_prototypes(classes, config.feat_dim)
    assert prototypes.shape == (classes, config.feat_dim)
    assert self_consistency(prototypes, method.q) == 1.0
    if key == "drp":
        assert max_cosine(prototypes) == pytest.approx(simplex_bound(classes), abs=1e-5)
    assert (key == "drp_faithful") == (method.q == INF)


@pytest.mark.parametrize("key, term", [("drp", "cos_loss"), ("drp_faithful", "linf_dist")])
def test_recipes_train_through_fit_with_falling_loss_and_fixed_prototypes(tiny_mnist, key, term):
    model = build_for(RECIPE[key], tiny_mnist)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(model, tiny_mnist, RECIPE[key], steps=16, batch_size=100, val_size=100, progress=False)
    geometry_warnings = [w for w in caught if "DRP" in str(w.message)]
    assert len(geometry_warnings) == (1 if key == "drp_faithful" else 0)
    losses = history["loss"]
    assert len(history) == 4 and all(math.isfinite(v) for v in losses)
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])) and history[term] == losses
    if key == "drp":  # the faithful targets have L-inf norms ~30: 16 steps only start the descent
        assert losses[-1] < 0.5 * losses[0] and history.last["train_acc"] > 0.5
    expected = RECIPE[key].build_method(RECIPE[key].config("mnist", "quick"), 0.3).make_prototypes(10, 16)
    assert torch.equal(model.head.prototypes, expected)  # fixed: not trained


def test_checkpoint_round_trip_restores_prototypes_and_predictions(tiny_mnist, tmp_path, monkeypatch):
    recipe = RECIPE["drp"]
    monkeypatch.setitem(methods.RECIPES, recipe.key, recipe)  # load_checkpoint looks recipes up by key
    model = build_for(recipe, tiny_mnist)
    fit(model, tiny_mnist, recipe, steps=3, batch_size=100, val_size=100, checkpoint_dir=tmp_path, progress=False)
    loaded, meta = load_checkpoint(tmp_path)
    assert meta["method"] == "drp" and isinstance(loaded.head, PrototypeHead)
    assert torch.equal(loaded.head.prototypes, model.head.prototypes)
    x = tiny_mnist.test.x
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
