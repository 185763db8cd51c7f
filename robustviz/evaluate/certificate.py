"""A robustness certificate for nearest-centre classifiers (ClusTR, DRP, any prototype rule).

Reconstructed from the ClusTR abstract plus geometry and checked numerically; not taken from
the paper (robustviz/methods/clustr/README.md, "Certificate for the hard nearest-centre rule").

Setting: ``g(x) = class(mu_i)`` with ``i = argmin_k ||f(x) - mu_k||_2`` (the *hard*
nearest-centre rule) and ``f`` an ``L_f``-Lipschitz map from input L2 to feature L2. For a
centre ``mu_j`` of another class,

    h_ij(z) = (||z - mu_j||^2 - ||z - mu_i||^2) / (2 ||mu_j - mu_i||)

is the distance from ``z`` to the perpendicular bisector of ``mu_i`` and ``mu_j`` (positive on
``mu_i``'s side). While ``f(x + delta)`` moves less than ``min_j h_ij`` it stays strictly closer
to ``mu_i`` than to every other-class centre, so the label cannot change:

    g(x + delta) = g(x)   for all   ||delta||_2 < R(x) = min_j h_ij(f(x)) / L_f.

What is certified: the label of the hard nearest-centre rule, against L2 input
perturbations (and L-inf ones of size ``R / sqrt(n)``), with the centres held fixed.
What is *not* certified: ClusTR's soft top-L Gaussian vote (its ``forward``), unless it agrees
with the hard rule on the point; anything that depends on the data the centres were fitted
on. For deep networks only crude upper bounds of ``L_f`` exist, so the *feature-space*
radius ``min_j h_ij`` is the informative quantity to plot.
"""

from __future__ import annotations

import math

import torch

from ..geometry import centre_rule, check_centres, nearest_centre_class, squared_distances
from ..models import features_of

VARIANTS = ("nearest", "best_same_class")


def bisector_distances(z: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Signed distances ``h_ij(z)`` ``[B, P, P]`` (float64) from ``z`` to every bisector.

    ``h[b, i, j] > 0`` when ``z_b`` is on ``mu_i``'s side of the bisector of ``mu_i`` and ``mu_j``.
    Coincident centres (``mu_i = mu_j``) give 0: ``z`` is always on their bisector.
    """
    d2 = squared_distances(z.double(), centres.double())  # [B, P]
    gap = (centres.double()[:, None, :] - centres.double()[None]).norm(dim=-1)  # [P, P]
    diff = d2[:, None, :] - d2[:, :, None]  # [B, i, j] = d_j^2 - d_i^2
    return torch.where(gap > 0, diff / (2 * gap.clamp_min(1e-300)), torch.zeros_like(diff))


def feature_radius(
    z: torch.Tensor,
    centres: torch.Tensor,
    centre_labels: torch.Tensor,
    variant: str = "nearest",
) -> torch.Tensor:
    """Certified feature-space L2 radius of the hard nearest-centre rule, per point ``[B]``.

    ``"nearest"``: ``min_{j: class(j) != class(i)} h_ij(z)`` with ``i`` the nearest
    centre. Exact (tight) when each class has one centre; with several centres per class
    it can be loose, because crossing a bisector may still leave another same-class centre
    nearest.

    ``"best_same_class"``: ``max`` over the centres ``i'`` of the predicted class of
    ``min_{j: other class} h_i'j(z)`` (only values ``>= 0`` count; the nearest centre always
    gives one). Also sound, and never smaller. Builds a ``[B, P, P]`` tensor.

    Args:
        z: features ``[B, d]``. centres: ``[P, d]``. centre_labels: ``[P]`` class of each centre.
        variant: ``"nearest"`` or ``"best_same_class"``.
    Returns:
        radii ``[B]`` in feature units (``inf`` if no centre of another class exists), in
        ``z``'s floating dtype (computed in float64).

    Example (a ClusTR model keeps its centres in its head):
        >>> z = model.features(x)  # doctest: +SKIP
        >>> radius = feature_radius(z, model.head.centres, model.head.centre_labels)  # doctest: +SKIP
    """
    check_centres(z, centres, centre_labels)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    d2 = squared_distances(z.double(), centres.double())
    predicted = centre_labels[d2.argmin(dim=1)]  # [B]
    other = centre_labels[None, :] != predicted[:, None]  # [B, P] which j count
    if variant == "nearest":
        nearest = d2.argmin(dim=1)
        gap = (centres.double()[nearest][:, None, :] - centres.double()[None]).norm(dim=-1)  # [B, P]
        h = torch.where(gap > 0, (d2 - d2.gather(1, nearest[:, None])) / (2 * gap.clamp_min(1e-300)),
                        torch.zeros_like(d2))
        radius = h.masked_fill(~other, float("inf")).min(dim=1).values
    else:
        h = bisector_distances(z, centres).masked_fill(~other[:, None, :], float("inf"))
        per_centre = h.min(dim=2).values  # [B, P]: min over other-class j for each i'
        same = ~other  # centres i' of the predicted class
        radius = per_centre.masked_fill(~same, float("-inf")).max(dim=1).values.clamp_min(0.0)
    return radius.to(z.dtype if z.is_floating_point() else torch.float64)


def hypothesis_margin(z: torch.Tensor, centres: torch.Tensor, centre_labels: torch.Tensor) -> torch.Tensor:
    """Saralajew et al.'s hypothesis margin ``min_{j: other class} (d_j - d_i) / 2`` ``[B]``.

    ``d_k = ||z - mu_k||`` and ``i`` the nearest centre. Never larger than ``feature_radius``
    (``h_ij >= (d_j - d_i) / 2`` because ``d_i + d_j >= ||mu_i - mu_j||``).
    """
    check_centres(z, centres, centre_labels)
    d = squared_distances(z.double(), centres.double()).sqrt()
    nearest = d.argmin(dim=1)
    other = centre_labels[None, :] != centre_labels[nearest][:, None]
    margin = (d - d.gather(1, nearest[:, None])) / 2
    return margin.masked_fill(~other, float("inf")).min(dim=1).values.to(
        z.dtype if z.is_floating_point() else torch.float64)


def input_radius(feature_radius: torch.Tensor | float, lipschitz: float) -> torch.Tensor | float:
    """Certified input-space L2 radius ``R = feature_radius / L_f``.

    Args:
        feature_radius: radii from ``feature_radius`` (feature units).
        lipschitz: an *upper bound* ``L_f > 0`` on the Lipschitz constant of the feature map
            (input L2 -> feature L2). A smaller value than the true constant voids the certificate.
    """
    if not lipschitz > 0 or not math.isfinite(lipschitz):
        raise ValueError(f"lipschitz must be a finite positive upper bound on L_f, got {lipschitz}")
    return feature_radius / lipschitz


def linf_radius(l2_radius: torch.Tensor | float, input_dim: int) -> torch.Tensor | float:
    """Certified L-inf radius ``R / sqrt(n)`` from an L2 radius (``||delta||_2 <= sqrt(n) ||delta||_inf``).

    Args:
        l2_radius: certified input L2 radius. input_dim: n, the number of input values
            (784 for MNIST, 3072 for CIFAR). Very loose for images.
    """
    if input_dim < 1:
        raise ValueError(f"input_dim must be >= 1, got {input_dim}")
    return l2_radius / math.sqrt(input_dim)


def model_centres(model) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The centres of a nearest-centre model and how its features are compared to them.

    Returns ``(centres [P, d], centre_labels [P], space)`` from the head's ``CentreRule``
    (``robustviz.geometry.centre_rule``): ``space`` is ``"features"`` (``f(x)`` against the
    centres) or ``"unit features"`` (``f(x)/||f(x)||_2`` against unit prototypes).

    Raises ``ValueError`` for models without a centre rule and for rules that are not exact
    (e.g. prototypes of unequal norms), where the bisector certificate does not apply.
    """
    rule = centre_rule(model)
    if rule is None:
        raise ValueError("the certificate needs a nearest-centre model: a head with a centre_rule() "
                         "(cluster centres or prototypes, robustviz.geometry.CentreRule)")
    if not rule.exact:
        raise ValueError(f"{rule.reason}; the bisector certificate does not apply")
    return rule.centres, rule.labels, rule.space


@torch.no_grad()
def certified_radii(
    model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample certified feature-space radius and hard-rule correctness of a nearest-centre model.

    Returns:
        ``(radius [N], correct [N])``: ``radius`` in the units of ``model_centres``' space
        (0 where the hard rule is wrong), ``correct`` whether the hard nearest-centre rule is right.
    """
    centres, labels, space = model_centres(model)
    device = centres.device
    features = features_of(model, x, batch_size)
    radii, correct = [], []
    for i in range(0, x.shape[0], batch_size):
        z = features[i: i + batch_size].to(device)
        if space == "unit features":
            z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
        right = nearest_centre_class(z, centres, labels) == y[i: i + batch_size].to(device)
        radius = feature_radius(z, centres, labels)
        radii.append(torch.where(right, radius, torch.zeros_like(radius)).cpu())
        correct.append(right.cpu())
    return torch.cat(radii), torch.cat(correct)


def certified_accuracy(radius: torch.Tensor, radii) -> list[float]:
    """Certified accuracy at each radius ``r``: share of samples with a correct hard rule and ``radius > r``.

    Example:
        >>> certified_accuracy(torch.tensor([0.0, 0.5, 2.0]), [0.0, 1.0])
        [0.6666666865348816, 0.3333333432674408]
    """
    return [float((radius > r).float().mean()) for r in radii]
