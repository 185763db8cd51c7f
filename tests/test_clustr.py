"""ClusTR: the Magnet loss, the cluster index and sampler, the head, QTRADES and the certificate.

Spec: ``methods/clustr.md`` §7.2 (tests 1-6, 9-12 and 14; 7 and 8 as the certificate tests).
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from robustviz import data, models
from robustviz.data import BatchIterator, Split
from robustviz.evaluate.certificate import (
    feature_radius,
    hypothesis_margin,
    input_radius,
    linf_radius,
)
from robustviz.geometry import nearest_centre_class
from robustviz.methods import Batch
from robustviz.methods.clustr import RECIPES, ClusterHead, ClusTR, ClusTRQTrades, PaperScores
from robustviz.methods.clustr.loss import magnet_loss, qtrades_consistency
from robustviz.methods.clustr.sampler import (
    ClusterIndex,
    build_cluster_index,
    nearest_impostors,
    neighbourhood_batch,
    seed_distribution,
)
from robustviz.models import RobustModel, features_of
from robustviz.train import fit
from robustviz.train import loop as fit_module
from robustviz.train.checkpoint import load_state

CLUSTR, CLUSTR_QTRADES = RECIPES


# ---- Magnet loss (§2.2; tests 1-3) -----------------------------------------------------------


def naive_magnet(z, cluster, y, alpha, eps=1e-8):
    """The §2.2 formula, one example at a time, in plain Python floats."""
    z = z.double().tolist()
    cluster, y = cluster.tolist(), y.tolist()
    groups = sorted(set(cluster))
    dim = len(z[0])
    means = {m: [sum(z[n][k] for n in range(len(z)) if cluster[n] == m) / cluster.count(m) for k in range(dim)]
             for m in groups}
    group_class = {cluster[n]: y[n] for n in range(len(z))}

    def sq(a, b):
        return sum((u - v) ** 2 for u, v in zip(a, b))

    var = sum(sq(z[n], means[cluster[n]]) for n in range(len(z))) / (len(z) - 1)
    losses = []
    for n in range(len(z)):
        num = math.exp(-sq(z[n], means[cluster[n]]) / (2 * var) - alpha)
        den = sum(math.exp(-sq(z[n], means[m]) / (2 * var)) for m in groups if group_class[m] != y[n])
        losses.append(max(0.0, -math.log(num / (den + eps) + eps)))
    return losses, var


def random_batch(seed, groups=((0, 3), (0, 4), (1, 3), (2, 5), (1, 2)), dim=5, spread=2.0):
    """Embeddings of batch clusters given as (class, size) pairs."""
    gen = torch.Generator().manual_seed(seed)
    z, cluster, y = [], [], []
    for m, (cls, size) in enumerate(groups):
        centre = spread * torch.randn(dim, generator=gen, dtype=torch.float64)
        z.append(centre + torch.randn(size, dim, generator=gen, dtype=torch.float64))
        cluster += [m] * size
        y += [cls] * size
    return torch.cat(z), torch.tensor(cluster), torch.tensor(y)


@pytest.mark.parametrize("seed, alpha", [(0, 1.0), (1, 0.0), (2, 12.5), (3, 0.5)])
def test_magnet_loss_equals_a_naive_loop(seed, alpha):
    z, cluster, y = random_batch(seed)
    out = magnet_loss(z, cluster, y, alpha=alpha)
    expected, var = naive_magnet(z, cluster, y, alpha)
    assert torch.allclose(out.per_example, torch.tensor(expected, dtype=torch.float64), atol=1e-10)
    assert float(out.variance) == pytest.approx(var, rel=1e-12)
    assert float(out.loss) == pytest.approx(sum(expected) / len(expected), rel=1e-10)


def test_magnet_gradients_match_finite_differences():
    z, cluster, y = random_batch(4, spread=0.7)
    z.requires_grad_(True)
    assert bool((magnet_loss(z, cluster, y, alpha=5.0).per_example > 0).all())  # away from the hinge
    assert torch.autograd.gradcheck(lambda t: magnet_loss(t, cluster, y, alpha=5.0).loss, (z,))


def test_magnet_hand_toy_formula_hinge_and_alpha_shift():
    # Two 1-D clusters of two points: class 0 at {0, 1} (mean 0.5), class 1 at {1.5, 2.5} (mean 2).
    z = torch.tensor([[0.0], [1.0], [1.5], [2.5]], dtype=torch.float64)
    cluster = y = torch.tensor([0, 0, 1, 1])
    out = magnet_loss(z, cluster, y, alpha=8.0)
    assert float(out.variance) == pytest.approx(1 / 3)  # four squared distances of 0.25, N - 1 = 3
    # Example 0: own term 0.25 / (2/3) = 0.375, impostor term 4 / (2/3) = 6.
    assert float(out.per_example[0]) == pytest.approx(0.375 + 8.0 - 6.0, abs=1e-5)  # eps shifts it by 4e-6
    assert float(out.per_example[0]) == pytest.approx(-math.log(math.exp(-8.375) / (math.exp(-6) + 1e-8) + 1e-8))
    # Well separated clusters meet the margin: the hinge gives exactly 0.
    far = torch.tensor([[0.0], [1.0], [30.0], [31.0]], dtype=torch.float64)
    assert torch.equal(magnet_loss(far, cluster, y, alpha=1.0).per_example, torch.zeros(4, dtype=torch.float64))
    # Raising alpha by delta raises every unhinged loss by delta, up to eps / ratio (< 2e-5 here).
    shifted = magnet_loss(z, cluster, y, alpha=8.7).per_example
    assert bool((out.per_example > 0).all())
    assert torch.allclose(shifted - out.per_example, torch.full_like(shifted, 0.7), rtol=0, atol=2e-5)


def test_variance_definition_and_scale_invariance():
    z, cluster, y = random_batch(5)
    out = magnet_loss(z, cluster, y, alpha=1.0)
    own = (z - out.cluster_means[cluster]).pow(2).sum()
    assert float(out.variance) == pytest.approx(float(own) / (z.shape[0] - 1), rel=1e-12)
    scaled = magnet_loss(3.7 * z, cluster, y, alpha=1.0)
    assert float(scaled.variance) == pytest.approx(3.7**2 * float(out.variance), rel=1e-12)
    assert torch.allclose(scaled.per_example, out.per_example, atol=1e-10)


def test_denominator_ignores_same_class_clusters_and_barely_feels_far_impostors():
    z, cluster, y = random_batch(6, groups=((0, 3), (1, 3), (1, 4)), dim=3, spread=1.0)
    out = magnet_loss(z, cluster, y, alpha=1.0)
    # A far cluster of class 0 whose spread equals sigma^2 per point leaves sigma^2 unchanged.
    sigma = float(out.variance) ** 0.5
    far_centre = torch.tensor([500.0, 0.0, 0.0], dtype=torch.float64)
    offsets = torch.tensor([[sigma, 0, 0], [-sigma, 0, 0]], dtype=torch.float64)
    z2 = torch.cat([z, far_centre + offsets])
    cluster2, y2 = torch.cat([cluster, torch.tensor([3, 3])]), torch.cat([y, torch.tensor([0, 0])])
    out2 = magnet_loss(z2, cluster2, y2, alpha=1.0)
    assert float(out2.variance) == pytest.approx(float(out.variance), rel=1e-12)
    same_class = y == 0  # the far cluster is their sibling: excluded from their denominator
    assert torch.allclose(out2.per_example[:10][same_class], out.per_example[same_class], atol=1e-12)
    # For the class-1 examples it is an impostor, adding at most exp(-d^2 / 2 sigma^2) / denominator.
    other = ~same_class
    d2 = (z[other] - far_centre).pow(2).sum(1)
    bound = torch.exp(-d2 / (2 * out.variance)) / 1e-8
    change = (out2.per_example[:10][other] - out.per_example[other]).abs()
    assert bool((change <= bound + 1e-12).all()) and float(change.max()) < 1e-12


def test_magnet_loss_stays_finite_where_the_exp_formula_underflows():
    z, cluster, y = random_batch(7, groups=((0, 3), (1, 3)), dim=4, spread=0.0)
    z = z.float()
    z[3:] += 1e4  # impostors 1e4 away: exp(-d^2 / 2 sigma^2) is exactly 0 in float32
    z.requires_grad_(True)
    out = magnet_loss(z, cluster, y, alpha=12.5)
    out.loss.backward()
    assert torch.isfinite(out.per_example).all() and torch.isfinite(z.grad).all()


def test_magnet_loss_rejects_bad_input():
    z, cluster, y = random_batch(8)
    with pytest.raises(ValueError, match="same class"):
        magnet_loss(z, cluster, torch.roll(y, 1))
    with pytest.raises(ValueError, match="at least 2"):
        magnet_loss(z[:1], cluster[:1], y[:1])
    with pytest.raises(ValueError, match="every cluster present"):
        magnet_loss(z, cluster * 2, y)
    with pytest.raises(ValueError, match="floor"):
        magnet_loss(z, cluster, y, floor=0.0)


# ---- cluster index (§2.3; test 5) -----------------------------------------------------------


def blob_data(seed=0, classes=3, per_class=40, dim=4):
    gen = torch.Generator().manual_seed(seed)
    centres = 6 * torch.randn(classes, dim, generator=gen)
    y = torch.arange(classes).repeat_interleave(per_class)
    z = centres[y] + torch.randn(len(y), dim, generator=gen)
    return z, y


def test_cluster_index_is_per_class_with_global_ids_and_variance():
    z, y = blob_data()
    index = build_cluster_index(z, y, num_classes=3, clusters_per_class=2, n_init=2, max_iter=30, seed=1)
    assert index.centres.shape == (6, 4) and torch.equal(index.centre_labels, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert torch.equal(index.centre_labels[index.assignments], y)  # never crosses classes
    assert torch.equal(index.assignments // 2, y)  # global id c * K + k
    # Each example sits at its nearest own-class centre; sigma^2 = sum ||r - mu||^2 / (N - 1).
    for n in range(len(y)):
        own = index.centres[2 * int(y[n]) : 2 * int(y[n]) + 2]
        assert int(index.assignments[n]) == 2 * int(y[n]) + int((own - z[n]).pow(2).sum(1).argmin())
    expected = (z - index.centres[index.assignments]).pow(2).sum() / (len(y) - 1)
    assert index.variance == pytest.approx(float(expected), rel=1e-5)
    members = torch.cat([index.members(k) for k in range(6)]).sort().values
    assert torch.equal(members, torch.arange(len(y)))
    again = build_cluster_index(z, y, num_classes=3, clusters_per_class=2, n_init=2, max_iter=30, seed=1)
    assert torch.equal(again.centres, index.centres)  # seeded k-means
    with pytest.raises(ValueError, match="at least clusters_per_class"):
        build_cluster_index(z[:41], y[:41], num_classes=3, clusters_per_class=2)


def bn_dropout_model():
    body = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Dropout(0.5))
    return RobustModel(body, 8, 3, mean=(0.5, 0.5), std=(0.25, 0.25))


def test_embeddings_for_the_index_use_eval_mode_and_restore_the_mode():
    torch.manual_seed(0)
    model = bn_dropout_model().train()
    x = torch.rand(50, 2)
    running = model.body[1].running_mean.clone()
    z = features_of(model, x, batch_size=16)
    assert model.training and torch.equal(model.body[1].running_mean, running)
    model.eval()
    assert torch.allclose(z, model.features(x))


# ---- neighbourhood sampling (§2.4; test 4) ---------------------------------------------------


def toy_index(classes=3, k=2, sizes=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    sizes = sizes or [10] * (classes * k)
    centres = torch.randn(classes * k, 2, generator=gen)
    assignments = torch.arange(classes * k).repeat_interleave(torch.tensor(sizes))
    labels = torch.arange(classes).repeat_interleave(k)
    return ClusterIndex(centres, labels, assignments, 1.0, k)


def test_batches_have_m_groups_of_at_most_d_distinct_members_with_nearest_impostors():
    index = toy_index(classes=4, k=2, sizes=[10, 3, 10, 10, 8, 10, 10, 10])
    losses = torch.full((index.assignments.shape[0],), float("nan"))
    torch.manual_seed(0)
    for _ in range(30):
        indices, groups = neighbourhood_batch(index, losses, clusters_per_batch=4, examples_per_cluster=5)
        assert torch.equal(groups, torch.sort(groups).values) and int(groups.max()) == 3  # 4 contiguous groups
        clusters = []
        for g in range(4):
            members = indices[groups == g]
            assert 1 <= members.numel() <= 5 and members.unique().numel() == members.numel()
            ids = index.assignments[members].unique()
            assert ids.numel() == 1
            clusters.append(int(ids))
            assert members.numel() == min(5, int(index.cluster_sizes()[ids]))
        seed, impostors = clusters[0], clusters[1:]
        others = [j for j in range(8) if index.centre_labels[j] != index.centre_labels[seed]]
        by_distance = sorted(others, key=lambda j: float((index.centres[j] - index.centres[seed]).pow(2).sum()))
        assert impostors == by_distance[:3]
    assert torch.equal(nearest_impostors(index, 0, 100), nearest_impostors(index, 0, 6))  # capped at 6


def test_seed_distribution_follows_the_mean_observed_loss():
    index = toy_index()
    losses = torch.full((60,), float("nan"))
    assert torch.allclose(seed_distribution(index, losses), torch.full((6,), 1 / 6, dtype=torch.float64))
    mean_loss = torch.tensor([1.0, 2.0, 3.0, 0.5, 4.0, 1.5])
    losses = mean_loss.repeat_interleave(10).clone()
    losses[0], losses[1] = 0.0, 2.0  # cluster 0 still averages 1.0
    losses[12] = float("nan")  # unobserved members do not count
    probs = seed_distribution(index, losses)
    assert torch.allclose(probs, (mean_loss / mean_loss.sum()).double())
    # A cluster with no observed member gets the average of the observed cluster means.
    losses[50:60] = float("nan")
    probs = seed_distribution(index, losses)
    weights = mean_loss.clone().double()
    weights[5] = mean_loss[:5].mean()
    assert torch.allclose(probs, weights / weights.sum())


@pytest.mark.parametrize("observed", [True, False])
def test_seed_draws_pass_a_chi_square_test(observed):
    index = toy_index()
    mean_loss = torch.tensor([1.0, 2.0, 3.0, 0.5, 4.0, 1.5])
    losses = mean_loss.repeat_interleave(10) if observed else torch.full((60,), float("nan"))
    expected = (mean_loss / mean_loss.sum() if observed else torch.full((6,), 1 / 6)).double().numpy()
    torch.manual_seed(1)
    draws = 2000
    seeds = [int(index.assignments[neighbourhood_batch(index, losses, 2, 1)[0][0]]) for _ in range(draws)]
    counts = np.bincount(seeds, minlength=6)
    assert chisquare(counts, expected / expected.sum() * draws).pvalue > 1e-3


# ---- the head (§2.5; tests 6 and 14) ---------------------------------------------------------


def toy_head(classes=4, k=3, dim=5, top_l=6, variance=2.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    head = ClusterHead(dim, classes, k, top_l=top_l).double()
    head.set_clusters(torch.randn(classes * k, dim, generator=gen, dtype=torch.float64),
                      torch.arange(classes).repeat_interleave(k), variance)
    z = torch.randn(64, dim, generator=gen, dtype=torch.float64)
    return head, z


def test_log_scores_are_the_log_of_the_paper_scores():
    head, z = toy_head(top_l=5)
    scores, log_scores = head.class_scores(z), head(z)
    present = scores > 0
    assert torch.allclose(log_scores[present], scores[present].log())
    assert bool((log_scores[~present] < log_scores[present].min()).all()) and torch.isfinite(log_scores).all()
    assert torch.equal(log_scores.argmax(1), scores.argmax(1))
    assert torch.allclose(log_scores.softmax(1), head.paper_scores(z), atol=1e-15)


def test_soft_rule_becomes_the_hard_rule_and_ignores_centre_order():
    head, z = toy_head()
    hard = head.nearest_class(z)
    assert torch.equal(hard, nearest_centre_class(z, head.centres, head.centre_labels))
    head.top_l = 1
    assert torch.equal(head(z).argmax(1), hard)
    head.top_l = 6
    head.set_clusters(head.centres, head.centre_labels, 1e-4)  # sigma -> 0
    assert torch.equal(head(z).argmax(1), hard)
    head, z = toy_head()
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    shuffled = ClusterHead(5, 4, 3, top_l=6).double()
    shuffled.set_clusters(head.centres[perm], head.centre_labels[perm], 2.0)
    assert torch.allclose(shuffled(z), head(z), atol=1e-12)
    head.top_l = 12  # L = C * K is the official --not-normalize (every centre votes)
    assert torch.allclose(head.paper_scores(z), head.paper_scores(z, all_centres=True))


def test_underflowing_scores_warn_while_log_scores_keep_finite_gradients():
    head, _ = toy_head(variance=0.5)
    z = (head.centres.mean(0) + 40.0).repeat(3, 1).requires_grad_(True)
    assert bool((-head.log_kernel(z) > 110).all())  # d^2 / 2 sigma^2 > 110 from every centre
    with pytest.warns(RuntimeWarning, match="equal to 0"):
        assert torch.equal(head.float().class_scores(z.float()), torch.zeros(3, 4))
    head = head.double()
    scores = head(z)
    assert torch.isfinite(scores).all()
    torch.nn.functional.cross_entropy(scores, torch.tensor([0, 1, 2])).backward()
    assert torch.isfinite(z.grad).all() and float(z.grad.abs().sum()) > 0


# ---- certificate (§2.6; tests 7-11) ----------------------------------------------------------


def random_problem(rng, classes=3, k=3, dim=2):
    centres = rng.normal(size=(classes * k, dim))
    labels = np.repeat(np.arange(classes), k)
    z = rng.uniform(-2, 2, size=dim)
    return centres, labels, z


def exact_flip_radius_2d(z, centres, labels):
    """Exact minimal L2 move of a 2-D point into a Voronoi cell of another class.

    The distance to a convex cell from outside is attained on an edge (projection onto a
    bisector line, if feasible) or at a vertex (intersection of two bisector lines, if feasible).
    """
    own = labels[np.argmin(((centres - z) ** 2).sum(1))]
    best = np.inf
    for j in np.flatnonzero(labels != own):
        others = [k for k in range(len(centres)) if k != j]
        a = centres[others] - centres[j]  # cell of j: a_k . p <= b_k
        b = ((centres[others] ** 2).sum(1) - (centres[j] ** 2).sum()) / 2
        candidates = [z - (a[k] @ z - b[k]) / (a[k] @ a[k]) * a[k] for k in range(len(others))]
        for k1, k2 in itertools.combinations(range(len(others)), 2):
            matrix = np.stack([a[k1], a[k2]])
            if abs(np.linalg.det(matrix)) > 1e-12:
                candidates.append(np.linalg.solve(matrix, [b[k1], b[k2]]))
        for p in candidates:
            if np.all(a @ p <= b + 1e-9):
                best = min(best, float(np.linalg.norm(p - z)))
    return best


def labels_of(points, centres, labels):
    return labels[np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)]


def certify(z, centres, labels, variant="nearest"):
    return float(feature_radius(torch.tensor(z)[None], torch.tensor(centres), torch.tensor(labels), variant)[0])


def test_exact_radius_solver_agrees_with_a_dense_ray_search():
    rng = np.random.default_rng(0)
    angles = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    steps = np.arange(1, 4001) * 1e-3
    for _ in range(5):
        centres, labels, z = random_problem(rng)
        exact = exact_flip_radius_2d(z, centres, labels)
        own = labels_of(z[None], centres, labels)[0]
        found = np.inf
        for angle in angles:
            ray = z + steps[:, None] * np.array([np.cos(angle), np.sin(angle)])
            flipped = np.flatnonzero(labels_of(ray, centres, labels) != own)
            if flipped.size:
                found = min(found, steps[flipped[0]])
        assert exact - 1e-9 <= found <= exact * 1.02 + 2e-3


@pytest.mark.parametrize("variant", ["nearest", "best_same_class"])
def test_certificate_is_sound_and_never_exceeds_the_exact_radius(variant):
    rng = np.random.default_rng(1)
    ratios = []
    for _ in range(150):
        centres, labels, z = random_problem(rng)
        radius, exact = certify(z, centres, labels, variant), exact_flip_radius_2d(z, centres, labels)
        assert radius <= exact + 1e-9
        ratios.append(exact / max(radius, 1e-12))
    assert max(ratios) > 1.05  # with 3 centres per class the bound is sometimes loose
    for _ in range(5):  # 5 x 20,000 probes strictly inside the certified disc never flip
        centres, labels, z = random_problem(rng)
        radius = certify(z, centres, labels, variant)
        direction = rng.normal(size=(20000, 2))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        probes = z + direction * (radius * rng.uniform(0, 1, size=(20000, 1)) * (1 - 1e-9))
        assert np.all(labels_of(probes, centres, labels) == labels_of(z[None], centres, labels)[0])


def test_certificate_is_exact_with_one_centre_per_class_and_tighter_variant_dominates():
    rng = np.random.default_rng(2)
    for _ in range(100):
        centres, labels, z = random_problem(rng, classes=5, k=1)
        assert certify(z, centres, labels) == pytest.approx(exact_flip_radius_2d(z, centres, labels), abs=1e-6)
        centres, labels, z = random_problem(rng)
        assert certify(z, centres, labels, "best_same_class") >= certify(z, centres, labels) - 1e-12


def test_linear_features_with_spectral_norm_are_sound_exact_when_orthogonal_and_scale_free():
    rng = np.random.default_rng(3)
    gen = torch.Generator().manual_seed(3)
    # Orthogonal W in 2-D: the input radius equals the exact input-space radius.
    for _ in range(30):
        centres, labels, x = random_problem(rng, classes=4, k=1)
        w = torch.linalg.qr(torch.randn(2, 2, generator=gen, dtype=torch.float64))[0]
        radius = input_radius(certify((w @ torch.tensor(x)).numpy(), centres, labels), 1.0)
        pulled_back = (w.T @ torch.tensor(centres).T).T.numpy()  # nearest W^T mu in input space
        assert radius == pytest.approx(exact_flip_radius_2d(x, pulled_back, labels), abs=1e-6)
    # General W: sound with L_f = ||W||_2, and unchanged when W is scaled.
    w = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    centres = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    labels = torch.arange(3).repeat_interleave(2)
    x = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    lipschitz = float(torch.linalg.matrix_norm(w, 2))
    radius = input_radius(feature_radius(x @ w.T, centres, labels), lipschitz)
    scaled = input_radius(feature_radius(x @ (4.0 * w).T, 4.0 * centres, labels), 4.0 * lipschitz)
    assert torch.allclose(radius, scaled)
    delta = torch.randn(40, 2500, 3, generator=gen, dtype=torch.float64)
    delta *= (radius * (1 - 1e-9))[:, None, None] * torch.rand(40, 2500, 1, generator=gen) / delta.norm(
        dim=2, keepdim=True)
    probes = ((x[:, None, :] + delta) @ w.T).reshape(-1, 5)
    before = nearest_centre_class(x @ w.T, centres, labels).repeat_interleave(2500)
    assert torch.equal(nearest_centre_class(probes, centres, labels), before)


def test_radius_is_at_least_the_hypothesis_margin():
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(500, 6, generator=gen, dtype=torch.float64)
    centres = torch.randn(12, 6, generator=gen, dtype=torch.float64)
    labels = torch.arange(4).repeat_interleave(3)
    margin = hypothesis_margin(z, centres, labels)
    assert bool((feature_radius(z, centres, labels) >= margin - 1e-12).all()) and bool((margin >= 0).all())


def test_linf_radius_is_sound_on_a_toy_relu_network():
    gen = torch.Generator().manual_seed(5)
    n = 16
    w1, w2 = torch.randn(12, n, generator=gen, dtype=torch.float64), torch.randn(4, 12, generator=gen,
                                                                                   dtype=torch.float64)

    def f(x):
        return torch.relu(x @ w1.T) @ w2.T

    lipschitz = float(torch.linalg.matrix_norm(w1, 2) * torch.linalg.matrix_norm(w2, 2))
    centres = torch.randn(6, 4, generator=gen, dtype=torch.float64) * 3
    labels = torch.arange(3).repeat_interleave(2)
    x = torch.rand(100, n, generator=gen, dtype=torch.float64)
    r_inf = linf_radius(input_radius(feature_radius(f(x), centres, labels), lipschitz), n)
    assert bool((r_inf > 0).all())
    signs = torch.randint(0, 2, (100, 1000, n), generator=gen).double() * 2 - 1
    probes = x[:, None, :] + signs * (r_inf * (1 - 1e-9))[:, None, None]
    before = nearest_centre_class(f(x), centres, labels).repeat_interleave(1000)
    assert torch.equal(nearest_centre_class(f(probes.reshape(-1, n)), centres, labels), before)
    with pytest.raises(ValueError, match="lipschitz"):
        input_radius(1.0, 0.0)


# ---- methods: QTRADES (§2.7; test 12), batches, training through fit --------------------------


def toy_setup(method, n=90, seed=0):
    """A 2-D, 3-class problem with an mlp whose 4-d linear embedding is clustered by ``method``."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n // 3)
    x = (torch.tensor([[0.2, 0.2], [0.8, 0.3], [0.5, 0.8]])[y] + 0.08 * torch.randn(n, 2, generator=gen))
    train = Split(x.clamp(0, 1), y)
    model = models.build("mlp", 3, 2, feat_dim=4, mean=(0.5, 0.5), std=(0.3, 0.3), seed=seed)
    method.attach(model)
    method.setup(model, train)
    return model, train


def test_qtrades_adversarial_batch_stays_in_the_ball():
    method = ClusTRQTrades(eps=0.05, clusters_per_batch=3, examples_per_cluster=8)
    model, train = toy_setup(method)
    x, y = train.x, train.y
    x_adv = method.craft(model, x, y, model(x))
    assert float((x_adv - x).abs().max()) <= 0.05 + 1e-6 and 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1
    assert float((x_adv - x).abs().max()) > 0.04  # it moved (1.25 eps step, projected)
    assert model.training  # the caller's mode is restored


def test_qtrades_with_zero_lambda_gives_the_clustr_gradients():
    plain = ClusTR(clusters_per_batch=3, examples_per_cluster=8)
    model, train = toy_setup(plain)
    qtrades = ClusTRQTrades(eps=0.05, lam=0.0, clusters_per_batch=3, examples_per_cluster=8)
    qtrades.attach(model)
    qtrades.load_state_dict(plain.state_dict())
    model.head.set_clusters(plain.index.centres, plain.index.centre_labels, plain.index.variance)
    grads = []
    for method in (plain, qtrades):
        model.zero_grad()
        method.loss(model, Batch(train.x, train.y)).loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


@pytest.mark.parametrize("detach_clean", [False, True])
@pytest.mark.parametrize("kind", ["ce", "kl"])
def test_consistency_detach_policy(kind, detach_clean):
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(8, 4, generator=gen, requires_grad=True)
    adv = torch.randn(8, 4, generator=gen, requires_grad=True)
    qtrades_consistency(clean, adv, kind, detach_clean).sum().backward()
    assert adv.grad is not None and float(adv.grad.abs().sum()) > 0
    assert (clean.grad is None) == detach_clean
    if kind == "kl":  # KL(p || p) = 0
        same = torch.randn(3, 4, generator=gen)
        assert torch.allclose(qtrades_consistency(same, same, "kl"), torch.zeros(3), atol=1e-6)


def test_batches_are_neighbourhoods_and_losses_are_written_back():
    method = ClusTR(clusters_per_batch=3, examples_per_cluster=8)
    model, train = toy_setup(method)
    loader = BatchIterator(train, batch_size=24, seed=0)
    torch.manual_seed(0)
    batches = list(method.batches(loader, epoch=0))
    assert len(batches) == len(loader) == 4
    batch = batches[-1]
    x, y = batch.x, batch.y
    assert x.shape == (24, 2) and method.example_losses.isnan().all()
    assert torch.equal(train.x[batch.index], x) and torch.equal(train.y[batch.index], y)
    out = method.loss(model, batch)
    assert method.example_losses.isnan().all()  # loss() keeps no state: nothing recorded yet
    groups = torch.unique_consecutive(method.index.assignments[batch.index], return_inverse=True)[1]
    expected = magnet_loss(model.features(x), groups, y, alpha=method.alpha)
    assert torch.allclose(out.loss, expected.loss)
    assert torch.allclose(method.loss(model, batch).loss, out.loss)  # a second call gives the same
    method.observe(batch, out)  # the batch's examples now carry their losses
    observed = ~method.example_losses.isnan()
    assert int(observed.sum()) == 24
    assert torch.allclose(method.example_losses[batch.index], expected.per_example.detach())
    # A batch without index/groups is grouped by nearest centre and writes nothing back.
    before = method.example_losses.clone()
    plain = Batch(train.x[:30], train.y[:30])
    method.observe(plain, method.loss(model, plain))
    assert torch.equal(before.isnan(), method.example_losses.isnan())


def test_refresh_after_an_epoch_moves_the_centres():
    method = ClusTR(clusters_per_batch=3, examples_per_cluster=8)
    model, train = toy_setup(method)
    before = model.head.centres.clone()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for batch in method.batches(BatchIterator(train, batch_size=24, seed=0), epoch=0):
        out = method.loss(model, batch)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
    method.on_epoch_end(model, train, 0)
    assert not torch.allclose(model.head.centres, before)
    assert torch.equal(model.head.centres, method.index.centres)
    assert float(model.head.variance) == pytest.approx(method.index.variance)


def test_paper_scores_view_and_bad_models():
    method = ClusTR()
    model, _ = toy_setup(method)
    x = torch.rand(5, 2)
    assert torch.allclose(PaperScores(model)(x), model(x).softmax(1), atol=1e-6)
    with pytest.raises(ValueError, match="ClusterHead"):
        PaperScores(models.build("mlp", 3, 2))
    with pytest.raises(TypeError, match="RobustModel"):
        method.attach(torch.nn.Linear(2, 3))


@pytest.fixture(scope="module")
def tiny_mnist():
    return data.load("mnist-mini", n_train=600, n_test=100, seed=0)


def build(bundle, seed=0):
    return models.build("smallcnn", 10, 1, mean=bundle.mean, std=bundle.std, seed=seed)


@pytest.mark.slow
def test_clustr_trains_through_fit_and_its_checkpoint_round_trips(tiny_mnist, tmp_path):
    model = build(tiny_mnist)
    history = fit(model, tiny_mnist, CLUSTR, epochs=4, val_size=100, monitor_steps=1, checkpoint_dir=tmp_path,
                  progress=False)
    losses = history["loss"]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert history.last["step"] == 4 * 4 and "magnet" in history.last and "sigma2" in history.last
    assert history.last["val_clean_acc"] > 0.5  # far above chance (0.1) after 16 small steps
    # Round trip: build + attach + load reproduces the predictions; method state loads weights_only.
    loaded = build(tiny_mnist, seed=7)
    CLUSTR.build_method(CLUSTR.config("mnist", "quick"), tiny_mnist.eps).attach(loaded)
    loaded.load_state_dict(load_state(tmp_path / "model.pt"))
    loaded.eval()
    x = tiny_mnist.test.x
    assert torch.equal(model(x), loaded(x))
    state = load_state(tmp_path / "train_state.pt")["method"]
    method = ClusTR()
    method.load_state_dict(state)
    assert torch.equal(method.index.centres, loaded.head.centres.cpu())
    assert int((~method.example_losses.isnan()).sum()) > 0
    assert json.loads((tmp_path / "meta.json").read_text())["method"] == "clustr"


@pytest.mark.slow
def test_clustr_qtrades_trains_through_fit(tiny_mnist):
    history = fit(build(tiny_mnist), tiny_mnist, CLUSTR_QTRADES, steps=3, val_size=100, monitor_steps=1,
                  progress=False)
    record = history.last
    assert math.isfinite(record["loss"]) and math.isfinite(record["consistency"]) and record["step"] == 3


@pytest.mark.slow
def test_resume_reproduces_an_uninterrupted_run(tiny_mnist, tmp_path, monkeypatch):
    settings = dict(epochs=2, val_size=100, monitor_steps=1, seed=3, progress=False)
    reference = build(tiny_mnist, seed=1)
    fit(reference, tiny_mnist, CLUSTR, **settings)
    original_step = fit_module._Run.train_step
    calls = {"n": 0}

    def interrupted_step(self, x, y):
        calls["n"] += 1
        if calls["n"] == 6:  # in the second epoch (4 steps per epoch)
            raise KeyboardInterrupt
        return original_step(self, x, y)

    monkeypatch.setattr(fit_module._Run, "train_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        fit(build(tiny_mnist, seed=1), tiny_mnist, CLUSTR, checkpoint_dir=tmp_path, **settings)
    monkeypatch.setattr(fit_module._Run, "train_step", original_step)
    resumed = build(tiny_mnist, seed=99)
    fit(resumed, tiny_mnist, CLUSTR, checkpoint_dir=tmp_path, resume=True, **settings)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_recipes_follow_the_paper_on_cifar_and_fit_a_cpu_on_mnist():
    full = CLUSTR.config("cifar", "full")
    kwargs = full.method_kwargs
    assert (full.model, full.optimizer, full.lr, full.batch_size) == ("resnet18", "adam", 1e-4, 240)
    assert full.epochs - kwargs["pretrain_epochs"] == 30  # the paper's 30 Magnet epochs after the warm start
    assert (kwargs["clusters_per_class"], kwargs["clusters_per_batch"], kwargs["examples_per_cluster"]) == (2, 12, 20)
    assert (kwargs["alpha"], kwargs["top_l"]) == (12.5, 20)
    qt = CLUSTR_QTRADES.config("cifar", "full")
    assert qt.method_kwargs["lam"] == 8.0 and qt.method_kwargs["step_size"] == pytest.approx(10 / 255)
    method = CLUSTR_QTRADES.build_method(qt, 8 / 255)
    assert method.eps == pytest.approx(8 / 255) and method.consistency == "ce" and not method.detach_clean
    for recipe in RECIPES:
        for family in ("mnist", "cifar", "toy"):
            for profile in ("quick", "full"):
                config = recipe.config(family, profile)
                kw = config.method_kwargs
                assert config.batch_size == kw["clusters_per_batch"] * kw["examples_per_cluster"]
                recipe.build_method(config, 0.1)


def test_score_gradient_norms_vanish_in_the_exp_domain_only():
    from robustviz.methods.clustr import score_gradient_norms
    from robustviz.viz import plot_gradient_norms

    head = ClusterHead(4, 2, clusters_per_class=1)
    head.set_clusters(torch.tensor([[0.0, 0, 0, 0], [3.0, 0, 0, 0]]), torch.tensor([0, 1]), 0.5)
    widths = [0.5, 8, 256, 512]  # beyond ~87 widths from both centres at the last two
    norms = score_gradient_norms(head, widths, label=0, seed=0)
    paper, log_domain = norms["paper scores (exp domain)"], norms["log-domain scores"]
    assert paper[0] > 0 and paper[2] == paper[3] == 0.0  # every float32 kernel underflows past ~87 widths
    assert all(v > 0 for v in log_domain)
    assert len(plot_gradient_norms(widths, norms).axes[0].lines) == 2
