"""Fixed class prototypes: how to build them, how to measure them, and the prototype head.

Papers: DRP, Serban, Poll & Visser 2021, https://arxiv.org/abs/2105.12427; HPN, Mettes et
al. 2019, https://arxiv.org/abs/1901.10514; MMC, Pang et al. 2020,
https://arxiv.org/abs/1905.10626. Formulas and pitfalls: README.md in this folder,
"Prototype construction" and "Decision rule".

A prototype classifier gives every class ``c`` a fixed vector ``p_c`` in the d-dimensional
feature space, chosen *before* training and never updated; the network is trained to map
images of class ``c`` onto ``p_c`` (DRP, HPN, MMC). The decision rule is

    s_c(z) = < z / max(||z||_q, 1e-12), p_c >,    y_hat = argmax_c s_c(z)

Four constructions (``make_prototypes(kind, K, d)``, ``PROTOTYPE_KINDS``):

* ``simplex``: the regular simplex in closed form; the best possible separation (every
  pairwise cosine is exactly ``-1/(K-1)``), only for ``K <= d + 1``.
* ``sphere``: unit vectors pushed apart by gradient descent on a smooth maximum of their
  pairwise cosines (HPN-style); works for any ``K`` and ``d >= 2``.
* ``cube``: +-1 vectors from a Sylvester-Hadamard matrix, the natural home of an L-inf
  geometry: every prototype has ``||p||_inf = 1`` and the same L2 norm.
* ``faithful``: the generator released with DRP. It maximises a *sum* of pairwise L-inf
  distances without any norm constraint, so it is ill-posed: the prototypes grow without
  bound and, for many classes, become nearly collinear (README.md, "Unbounded prototype
  generator"). Kept for the evaluation-pitfalls lesson, never as a default.

The geometry helpers (``pairwise_cosines``, ``min_angle``, ``self_consistency``,
``prototype_geometry``, ...) measure what a construction achieved against the simplex
(Rankin) bound ``max_{i != j} cos(p_i, p_j) >= -1/(K-1)``, which holds for *any* K vectors.

Example:
    >>> protos = make_prototypes("simplex", num_classes=3, dim=2)
    >>> round(max_cosine(protos), 6), round(min_angle(protos), 2)
    (-0.5, 120.0)
    >>> PrototypeHead(protos)(protos).argmax(1).tolist()  # every prototype is its own class
    [0, 1, 2]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..._checks import unknown_name_error
from ...geometry import CentreRule, pairwise_cosines, simplex_bound

PROTOTYPE_KINDS = ("simplex", "sphere", "cube", "faithful")
CUBE_VARIANTS = ("auto", "simplex", "orthogonal")
FAITHFUL_OBJECTIVES = ("sum", "mean")
NORM_FLOOR = 1e-12  # F.normalize's floor, as in the released decision rule


def make_prototypes(kind: str, num_classes: int, dim: int, seed: int = 0, **options) -> torch.Tensor:
    """Build ``num_classes`` fixed prototypes in ``dim`` dimensions with the construction ``kind``.

    Args:
        kind: ``"simplex"``, ``"sphere"``, ``"cube"`` or ``"faithful"`` (module docstring).
        num_classes: K >= 2.
        dim: d >= 1, the feature dimension.
        seed: seed of the random initialisation (``sphere``, ``faithful``); the
            ``simplex`` and ``cube`` constructions are deterministic and ignore it.
        options: the construction's own settings, e.g. ``steps=100`` for ``faithful`` or
            ``variant="orthogonal"`` for ``cube`` (see each ``*_prototypes`` function).

    Returns:
        float32 tensor ``[K, d]`` on the CPU; row ``c`` is the prototype of class ``c``.

    Example:
        >>> make_prototypes("cube", num_classes=4, dim=4, variant="orthogonal")
        tensor([[ 1.,  1.,  1.,  1.],
                [ 1., -1.,  1., -1.],
                [ 1.,  1., -1., -1.],
                [ 1., -1., -1.,  1.]])
    """
    _check_sizes(num_classes, dim)
    if kind == "simplex":
        return simplex_prototypes(num_classes, dim, **options)
    if kind == "sphere":
        return sphere_prototypes(num_classes, dim, seed=seed, **options)
    if kind == "cube":
        return cube_prototypes(num_classes, dim, **options)
    if kind == "faithful":
        return faithful_prototypes(num_classes, dim, seed=seed, **options)
    raise unknown_name_error("prototype kind", kind, PROTOTYPE_KINDS)


# ---- simplex ---------------------------------------------------------------------------------


def simplex_prototypes(num_classes: int, dim: int) -> torch.Tensor:
    """The regular simplex: K unit vectors with every pairwise cosine equal to ``-1/(K-1)``.

    Closed form (as MMC's centres): the K standard basis vectors of R^K minus their
    centroid lie in the (K-1)-dimensional subspace orthogonal to ``(1, ..., 1)``; their
    coordinates in the Helmert basis of that subspace, rescaled to unit length, are the
    prototypes. They occupy the first K-1 coordinates; the remaining ``d - K + 1`` are 0.
    This meets the Rankin bound with equality, so no construction separates K classes
    better in angle.

    Args:
        num_classes: K >= 2.
        dim: d >= K - 1.
    Returns:
        float32 ``[K, d]`` with unit L2 rows.
    Raises:
        ValueError: if ``K > d + 1`` (a regular simplex with K vertices needs K-1 dimensions).

    Example:
        >>> round(max_cosine(simplex_prototypes(3, 2)), 6)
        -0.5
    """
    _check_sizes(num_classes, dim)
    if num_classes > dim + 1:
        raise ValueError(
            f"a regular simplex with {num_classes} vertices needs dim >= {num_classes - 1}, got dim={dim}; "
            "use kind='sphere' (or a larger dim)"
        )
    k = num_classes
    # Helmert row m (m = 1..K-1): m entries 1, then -m, then zeros, divided by sqrt(m (m + 1)).
    helmert = torch.zeros(k - 1, k, dtype=torch.float64)
    for m in range(1, k):
        helmert[m - 1, :m] = 1.0
        helmert[m - 1, m] = -float(m)
        helmert[m - 1] /= math.sqrt(m * (m + 1))
    # Column c of the Helmert basis = coordinates of the centred basis vector e_c.
    vertices = F.normalize(helmert.T, dim=1)
    return F.pad(vertices, (0, dim - (k - 1))).float()


# ---- sphere ----------------------------------------------------------------------------------


def smooth_max_cosine(prototypes: torch.Tensor, temperature: float = 20.0) -> torch.Tensor:
    """``(1/t) log sum_{i != j} exp(t cos(p_i, p_j))``: a smooth upper bound of the max cosine.

    The objective the ``sphere`` construction minimises. It exceeds
    the true maximum by at most ``log(K (K-1)) / t``; for ``K <= d + 1`` its minimiser is
    the regular simplex (all cosines equal ``-1/(K-1)``, by Jensen's inequality).

    Args:
        prototypes: ``[K, d]``, any norms (cosines are taken).
        temperature: t > 0; larger t follows the largest cosine more closely.

    Returns:
        a scalar tensor.

    Example:
        >>> float(smooth_max_cosine(simplex_prototypes(3, 2))) > -0.5
        True
    """
    cosines = pairwise_cosines(prototypes)
    off_diagonal = ~torch.eye(cosines.shape[0], dtype=torch.bool, device=cosines.device)
    return torch.logsumexp(temperature * cosines[off_diagonal], dim=0) / temperature


def smooth_max_cosine_gradient(unit: torch.Tensor, temperature: float = 20.0) -> torch.Tensor:
    """Gradient of ``smooth_max_cosine`` at unit-norm prototypes, along the sphere ``[K, d]``.

    With ``w = softmax(t * cos)`` over the ordered pairs ``i != j``, the gradient with respect
    to ``p_i`` is ``sum_j (w_ij + w_ji) p_j``: every other prototype pulls on ``p_i`` with
    the weight of its pair, and the most similar pairs dominate. The radial part (which
    only changes the norm) is removed, leaving the direction that moves ``p_i`` on the sphere.

    Args:
        unit: prototypes with unit L2 rows ``[K, d]``.
        temperature: t > 0.
    Returns:
        ``[K, d]``, orthogonal to each row of ``unit``.

    Example:
        >>> unit = simplex_prototypes(3, 2).double()
        >>> smooth_max_cosine_gradient(unit).abs().max() < 1e-6  # the simplex is a critical point
        tensor(True)
    """
    k = unit.shape[0]
    cosines = (unit @ unit.T).masked_fill(torch.eye(k, dtype=torch.bool, device=unit.device), float("-inf"))
    weights = torch.softmax(temperature * cosines.flatten(), dim=0).view(k, k)
    grad = (weights + weights.T) @ unit
    return grad - (grad * unit).sum(dim=1, keepdim=True) * unit


def sphere_prototypes(
    num_classes: int,
    dim: int,
    seed: int = 0,
    steps: int = 3000,
    lr: float = 0.5,
    momentum: float = 0.9,
    temperature: float = 20.0,
) -> torch.Tensor:
    """Unit-L2 prototypes spread over the sphere by minimising ``smooth_max_cosine``.

    Start: seeded Gaussian vectors normalised to unit length (HPN's start).
    Step: heavy-ball momentum on the tangent gradient (``smooth_max_cosine_gradient``) with
    the learning rate decayed from ``lr`` to 0 on a half cosine, then re-normalisation of
    every prototype to unit length. The momentum, the tangent projection and the decay are
    robustviz choices: plain descent stalls below the optimum, and momentum without the decay
    oscillates in d = 2 and 3 (README.md, "Settings and their sources" and "Notes").

    What it reaches (float64 arithmetic, returned as float32; checked in the tests):

    * ``K <= d + 1``: the regular simplex, max cosine ``-1/(K-1)``, in a random orientation.
    * ``d + 1 < K <= 2d``: the optimum is 90 degrees (max cosine 0, e.g. ``+-e_i``), reached
      at least for ``K = 2d``.
    * ``d = 2``: equally spaced points, angle ``360/K`` degrees.
    * ``d = 3`` (the Tammes problem): the known optima for K = 4, 6, 12 (109.47, 90, 63.43
      degrees); for other K a local optimum of the *smooth* objective a little below the
      Tammes optimum (K = 10: 65.2 against 66.15 degrees). Try a few seeds if it matters.

    Args:
        num_classes: K >= 2.
        dim: d >= 2 (on the 1-D "sphere" {-1, 1} use ``simplex``, K = 2).
        seed: seed of the random start (a private generator; the global RNG is untouched).
        steps: descent steps (0 returns the random start).
        lr: initial step size. momentum: heavy-ball coefficient in [0, 1).
        temperature: t of ``smooth_max_cosine``.

    Returns:
        float32 ``[K, d]`` with unit L2 rows.

    Example:
        >>> round(min_angle(sphere_prototypes(4, 2, steps=300)), 1)
        90.0
    """
    _check_sizes(num_classes, dim)
    if dim < 2:
        raise ValueError("sphere prototypes need dim >= 2; in 1-D use kind='simplex' (2 classes: +1 and -1)")
    if steps < 0 or lr <= 0 or not 0 <= momentum < 1 or temperature <= 0:
        raise ValueError(
            f"need steps >= 0, lr > 0, 0 <= momentum < 1 and temperature > 0; got steps={steps}, lr={lr}, "
            f"momentum={momentum}, temperature={temperature}"
        )
    generator = torch.Generator().manual_seed(seed)
    unit = F.normalize(torch.randn(num_classes, dim, generator=generator, dtype=torch.float64), dim=1)
    velocity = torch.zeros_like(unit)
    for step in range(steps):
        step_size = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        velocity = momentum * velocity + smooth_max_cosine_gradient(unit, temperature)
        unit = F.normalize(unit - step_size * velocity, dim=1)
    return unit.float()


# ---- cube ------------------------------------------------------------------------------------


def sylvester_hadamard(order: int) -> torch.Tensor:
    """The Sylvester-Hadamard matrix ``H_n`` (n a power of two), float32 entries +-1.

    ``H_1 = [1]``, ``H_2n = [[H_n, H_n], [H_n, -H_n]]``. Rows are pairwise orthogonal
    (``H H^T = n I``); row 0 and column 0 are all ones.

    Args:
        order: n, a power of two.
    Returns:
        float32 ``[n, n]``.

    Example:
        >>> sylvester_hadamard(2)
        tensor([[ 1.,  1.],
                [ 1., -1.]])
    """
    if order < 1 or order & (order - 1):
        raise ValueError(f"a Sylvester-Hadamard matrix needs an order that is a power of two, got {order}")
    matrix = torch.ones(1, 1)
    block = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    while matrix.shape[0] < order:
        matrix = torch.kron(block, matrix)
    return matrix


def cube_prototypes(num_classes: int, dim: int, variant: str = "auto") -> torch.Tensor:
    """+-1 prototypes (hypercube vertices) from the rows of a Sylvester-Hadamard matrix.

    Every prototype has ``||p||_inf = 1`` and ``||p||_2 = sqrt(d)``, and any two are at L-inf
    distance exactly 2 (so L-inf separation cannot rank cube codes: README.md, "L∞ separation
    cannot rank cube vertices"; their Hamming / L2 separation does). Construction, for a
    Hadamard order ``n = 2^m >= K``:

    * ``"orthogonal"``: rows ``0..K-1`` of ``H_n``; pairwise cosine 0. Needs ``n | d``.
    * ``"simplex"``: rows ``0..K-1`` of ``H_n`` with column 0 (the all-ones
      column) deleted, so ``n - 1`` coordinates; every pair has inner product -1, cosine
      ``-1/(n-1)``, which is the simplex bound ``-1/(K-1)`` when ``K = n``. Needs ``(n-1) | d``.

    The chosen ``n``-column (or ``n - 1``-column) block is tiled ``d / width`` times side by
    side, which keeps every cosine. ``"auto"`` takes the most negative cosine available: the
    simplex variant with the smallest feasible ``n``, else the orthogonal one with the
    largest ``n`` (fewest repeats). Example: K = 10 gives -1/15 for d = 15 or 30, 0 for d = 16.

    Args:
        num_classes: K >= 2.
        dim: d, a multiple of the chosen block width ``n`` or ``n - 1``.
        variant: ``"auto"``, ``"simplex"`` or ``"orthogonal"``.
    Returns:
        float32 ``[K, d]`` with entries +-1.
    Raises:
        ValueError: when no Hadamard order ``n`` with ``K <= n <= d + 1`` fits ``d`` (e.g.
            K = 10 needs d to be a multiple of 15, 16, 31, 32, 63, 64, ...).

    Example:
        >>> cube_prototypes(3, 3)
        tensor([[ 1.,  1.,  1.],
                [-1.,  1., -1.],
                [ 1., -1., -1.]])
    """
    _check_sizes(num_classes, dim)
    if variant not in CUBE_VARIANTS:
        raise unknown_name_error("cube variant", variant, CUBE_VARIANTS)
    candidates = []  # (cosine, -order, order, drop_ones_column)
    order = 2
    while order <= dim + 1:
        if order >= num_classes:
            if variant in ("auto", "simplex") and dim % (order - 1) == 0:
                candidates.append((-1.0 / (order - 1), -order, order, True))
            if variant in ("auto", "orthogonal") and dim % order == 0:
                candidates.append((0.0, -order, order, False))
        order *= 2
    if not candidates:
        smallest = max(2, 1 << (num_classes - 1).bit_length())
        raise ValueError(
            f"cube prototypes ({variant!r}) for {num_classes} classes need dim to be a multiple of a "
            f"Hadamard order n = 2^m >= {num_classes} (orthogonal: {smallest}, {2 * smallest}, ...) or of n - 1 "
            f"(simplex: {smallest - 1}, {2 * smallest - 1}, ...), with n <= dim + 1; got dim={dim}"
        )
    _, _, order, drop_ones_column = min(candidates)
    block = sylvester_hadamard(order)[:num_classes]
    if drop_ones_column:
        block = block[:, 1:]
    return block.repeat(1, dim // block.shape[1])


# ---- faithful (released DRP generator) -------------------------------------------------------


def faithful_prototypes(
    num_classes: int,
    dim: int,
    seed: int = 0,
    steps: int = 100,
    lr: float = 0.01,
    momentum: float = 0.9,
    objective: str = "sum",
    weight: float = 1.0,
) -> torch.Tensor:
    """The prototype generator released with DRP, seeded: SGD ascent on a sum of L-inf distances.

    Start: i.i.d. Uniform(-1, 1) (the release sets no seed; here ``seed`` fixes it).
    Objective, maximised by SGD (lr 0.01, momentum 0.9; the same update as ``torch.optim.SGD``
    minimising ``-J``) for E = ``steps`` full-batch steps:

        J(P) = sum_i r_i + k * sum_{i<j} ||p_i - p_j||_inf     (r_i = 1 constant, k = ``weight``)

    computed with ``F.pdist(P, inf)`` as released (its sub-gradient is +-1 on every maximal
    coordinate). The constant ``r`` term has no gradient and is left out. No normalisation,
    clipping or projection is applied, as released.

    **Ill-posed** (README.md, "Unbounded prototype generator"; numbers in "The 'faithful'
    variant"): ``J`` is unbounded, so ``"sum"`` inflates the prototypes (norms grow linearly
    with E) along a few dominant coordinates; prototypes sharing one become nearly collinear
    with different norms. ``"mean"``
    divides the pair sum by K(K-1)/2 (a hypothesis for the unreleased ``prototypes-mean/``
    files [inferred]); its prototypes barely leave the random start.

    Args:
        num_classes: K >= 2.
        dim: d >= 1.
        seed: seed of the start.
        steps: E (released configs: 100 for CIFAR-10, 1000 for CIFAR-100; script default 50).
        lr, momentum: the SGD settings. objective: ``"sum"`` (released) or ``"mean"``.
        weight: k, the weight of the distance sum ("1k" in the released file names).

    Returns:
        float32 ``[K, d]``, unnormalised.

    Example:
        >>> faithful_prototypes(10, 16, steps=100).abs().amax() > 1  # grown beyond the start
        tensor(True)
    """
    _check_sizes(num_classes, dim)
    if objective not in FAITHFUL_OBJECTIVES:
        raise unknown_name_error("faithful objective", objective, FAITHFUL_OBJECTIVES)
    if steps < 0 or lr <= 0 or not 0 <= momentum < 1:
        raise ValueError(f"need steps >= 0, lr > 0 and 0 <= momentum < 1; got {steps}, {lr}, {momentum}")
    generator = torch.Generator().manual_seed(seed)
    prototypes = 2 * torch.rand(num_classes, dim, generator=generator) - 1
    velocity = torch.zeros_like(prototypes)
    for _ in range(steps):
        # torch.optim.SGD's momentum update (no dampening), written out; ascent on J.
        velocity = momentum * velocity - _separation_gradient(prototypes, objective, weight)
        prototypes = prototypes - lr * velocity
    return prototypes


def _separation_gradient(prototypes: torch.Tensor, objective: str, weight: float) -> torch.Tensor:
    """Gradient of the released objective ``J`` (without the constant r term) at ``prototypes``."""
    with torch.enable_grad():
        leaf = prototypes.detach().requires_grad_(True)
        distances = F.pdist(leaf, float("inf"))
        separation = weight * (distances.sum() if objective == "sum" else distances.mean())
        (grad,) = torch.autograd.grad(separation, leaf)
    return grad


# ---- geometry --------------------------------------------------------------------------------


def max_cosine(prototypes: torch.Tensor) -> float:
    """The largest off-diagonal cosine ``max_{i != j} cos(p_i, p_j)``: how close the two most similar prototypes are.

    Args:
        prototypes: ``[K, d]``.
    Returns:
        a float in [-1, 1].

    Example:
        >>> max_cosine(torch.eye(3))
        0.0
    """
    cosines = pairwise_cosines(prototypes)
    eye = torch.eye(cosines.shape[0], dtype=torch.bool, device=cosines.device)
    return float(cosines.masked_fill(eye, float("-inf")).max())


def min_angle(prototypes: torch.Tensor) -> float:
    """The smallest pairwise angle in degrees, ``arccos(max_cosine)``.

    Args:
        prototypes: ``[K, d]``.
    Returns:
        a float in [0, 180] degrees.

    Example:
        >>> min_angle(torch.eye(3))
        90.0
    """
    return math.degrees(math.acos(max(-1.0, min(1.0, max_cosine(prototypes)))))


def min_distance(prototypes: torch.Tensor, q: float = float("inf")) -> float:
    """The smallest pairwise L-q distance ``min_{i != j} ||p_i - p_j||_q``.

    The default L-inf is the released generator's metric.

    Args:
        prototypes: ``[K, d]``.
        q: the norm, ``>= 1``.
    Returns:
        a float in feature units.

    Example:
        >>> min_distance(torch.eye(3))
        1.0
    """
    _check_matrix(prototypes)
    return float(F.pdist(prototypes.double(), q).min())


def self_consistency(prototypes: torch.Tensor, q: float = 2.0) -> float:
    """Fraction of classes whose own prototype is classified as that class, in [0, 1].

    ``mean_c [argmax_k s_k(p_c) = c]`` with the decision rule ``prototype_scores`` and norm
    ``q``. Below 1 even a perfect regressor ``f(x) = p_y`` would make mistakes (README.md,
    "Unequal norms bias the dot product").

    Args:
        prototypes: ``[K, d]``.
        q: the normalising norm of the rule.
    Returns:
        a float in [0, 1].

    Example:
        >>> self_consistency(torch.tensor([[1.0, 0.0], [3.0, 0.1]]))  # the long one takes both
        0.5
    """
    scores = prototype_scores(prototypes, prototypes, q)
    own = torch.arange(prototypes.shape[0], device=prototypes.device)
    return float((scores.argmax(dim=1) == own).float().mean())


def prototype_geometry(prototypes: torch.Tensor, q: float = 2.0) -> dict[str, float]:
    """A summary of a prototype set for reports and plots: separation, norms and self-consistency.

    Args:
        prototypes: ``[K, d]``.
        q: the normalising norm of the rule used for ``self_consistency``.
    Returns:
        ``max_cosine``, ``min_angle`` (degrees), ``simplex_bound`` and ``simplex_angle``
        (degrees; the best any K prototypes can do), ``min_linf_distance``,
        ``min_linf_norm`` / ``max_linf_norm``, ``min_l2_norm`` / ``max_l2_norm`` and
        ``self_consistency`` (under the rule with norm ``q``).

    Example:
        >>> round(prototype_geometry(simplex_prototypes(4, 3))["min_angle"], 2)
        109.47
    """
    bound = simplex_bound(prototypes.shape[0])
    linf, l2 = prototypes.abs().amax(dim=1), prototypes.norm(dim=1)
    return {
        "max_cosine": max_cosine(prototypes),
        "min_angle": min_angle(prototypes),
        "simplex_bound": bound,
        "simplex_angle": math.degrees(math.acos(bound)),
        "min_linf_distance": min_distance(prototypes, float("inf")),
        "min_linf_norm": float(linf.min()),
        "max_linf_norm": float(linf.max()),
        "min_l2_norm": float(l2.min()),
        "max_l2_norm": float(l2.max()),
        "self_consistency": self_consistency(prototypes, q),
    }


# ---- the decision rule -----------------------------------------------------------------------


def prototype_scores(z: torch.Tensor, prototypes: torch.Tensor, q: float = 2.0) -> torch.Tensor:
    """DRP's class scores ``s_c(z) = < z / max(||z||_q, 1e-12), p_c >``, ``[B, K]``.

    Computed in float32 (float64 stays float64) with autocast disabled, so bf16/fp16
    features do not lose the prototypes' precision (README.md, "Large prototypes in low
    precision").

    Args:
        z: features ``[B, d]``.
        prototypes: ``[K, d]``.
        q: the norm that normalises ``z``: ``float("inf")`` (released rule with the L-inf
            loss) or 2 (with the cosine loss); any ``q >= 1`` is accepted.
    Returns:
        ``[B, K]`` scores (higher = more likely).

    Example:
        >>> prototype_scores(torch.tensor([[3.0, 4.0]]), torch.eye(2))
        tensor([[0.6000, 0.8000]])
    """
    _check_matrix(prototypes)
    if z.dim() != 2 or z.shape[1] != prototypes.shape[1]:
        raise ValueError(
            f"features must have shape [B, {prototypes.shape[1]}] (the prototype dimension), got {tuple(z.shape)}"
        )
    if not q >= 1:
        raise ValueError(f"the normalising norm q must be >= 1 (e.g. 2 or float('inf')), got {q}")
    dtype = torch.float64 if torch.float64 in (z.dtype, prototypes.dtype) else torch.float32
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.to(dtype)
        direction = z / z.norm(p=q, dim=1, keepdim=True).clamp_min(NORM_FLOOR)
        return direction @ prototypes.to(dtype).T


class PrototypeHead(nn.Module):
    """The prototype decision rule as a model head: ``forward(z) = prototype_scores(z, P, q)``.

    Installed as ``model.head`` (by ``DRP.attach``), so ``model(x)`` returns the scores
    ``s(x) [B, K]`` and every attack, accuracy and AutoAttack run on the real decision rule
    (README.md, "Decision rule"). The prototypes ``P [K, d]`` are a *buffer*: saved in the
    model's ``state_dict``, moved by ``.to()``, never a parameter, never given to an optimiser.

    Properties worth knowing:

    * **Scale invariance**: ``s(a z) = s(z)`` for ``a > 0``, so the prediction depends only
      on the direction of ``z``. A loss on the raw ``z`` (the L-inf regression) can grow
      while the prediction stays put (README.md, "Attacking the training loss overestimates
      robustness").
    * **Unequal-norm bias** (README.md, "Unequal norms bias the dot product"): the prototypes
      are *not* normalised, so a prototype with a larger norm wins ties of direction and takes
      a larger region. With equal-norm prototypes (``simplex``, ``sphere``, ``cube``) the
      argmax does not depend on ``q`` and equals nearest-prototype in L2 after normalising;
      with the ``faithful`` prototypes it is neither.

    Args:
        prototypes: ``[K, d]`` float tensor (copied).
        q: the normalising norm, 2 or ``float("inf")``.

    Example:
        >>> PrototypeHead(torch.eye(3))(torch.tensor([[0.1, 2.0, 0.3]])).argmax(1).tolist()
        [1]
    """

    def __init__(self, prototypes: torch.Tensor, q: float = 2.0) -> None:
        super().__init__()
        _check_matrix(prototypes)
        if not q >= 1:
            raise ValueError(f"the normalising norm q must be >= 1 (e.g. 2 or float('inf')), got {q}")
        self.register_buffer("prototypes", prototypes.detach().clone().float())
        self.q = float(q)

    @property
    def num_classes(self) -> int:
        return self.prototypes.shape[0]

    @property
    def dim(self) -> int:
        return self.prototypes.shape[1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, K]`` for features ``z [B, d]``."""
        return prototype_scores(z, self.prototypes, self.q)

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """The prototypes of the labels ``y [B]``, i.e. the regression targets ``[B, d]``."""
        return self.prototypes[y]

    def centre_rule(self) -> CentreRule:
        """The rule as the nearest unit prototype to ``z / ||z||_2`` (``robustviz.geometry``).

        Exact for prototypes of equal norms; for unequal norms (``faithful``) ``argmax <z, p_c>``
        is not a nearest-centre rule, and the rule says so (``exact=False``).
        """
        prototypes = self.prototypes.detach()
        norms = prototypes.norm(dim=1)
        equal = float((norms.max() - norms.min()) / norms.max().clamp_min(1e-12)) <= 1e-3
        reason = "" if equal else ("the prototypes have unequal norms (e.g. DRP 'faithful'), so argmax <z, p_c> is "
                                   "not a nearest-centre rule")
        labels = torch.arange(prototypes.shape[0], device=prototypes.device)
        return CentreRule(prototypes / norms[:, None], labels, "unit features", exact=equal, reason=reason)

    def extra_repr(self) -> str:
        return f"classes={self.num_classes}, dim={self.dim}, q={self.q:g}"


# ---- checks ----------------------------------------------------------------------------------


def _check_sizes(num_classes: int, dim: int) -> None:
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes}")
    if int(dim) != dim or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim}")


def _check_matrix(prototypes: torch.Tensor) -> None:
    if not isinstance(prototypes, torch.Tensor) or prototypes.dim() != 2 or not prototypes.is_floating_point():
        shape = tuple(prototypes.shape) if isinstance(prototypes, torch.Tensor) else type(prototypes).__name__
        raise ValueError(f"prototypes must be a float tensor [K, d], got {shape}")
    if prototypes.shape[0] < 2:
        raise ValueError(f"need at least 2 prototypes, got {prototypes.shape[0]}")
