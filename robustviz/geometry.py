"""Feature-space geometry shared by the methods, the attacks, the evaluation and the plots.

Distances to centres, the nearest-centre rule, and the per-sample KL divergence between
two class distributions exist here once. A decision rule that compares features with
centres (prototypes, cluster centres) describes itself with a ``CentreRule``; code outside a
method's folder asks ``centre_rule(model)`` for it instead of knowing the method.

Example:
    >>> z = torch.tensor([[0.0, 0.9], [2.0, 0.0]])
    >>> centres, labels = torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([3, 5])
    >>> nearest_centre_class(z, centres, labels)
    tensor([3, 5])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._precision import at_least_float32

SPACES = ("features", "unit features")


def squared_distances(z: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``||z_n - c_m||^2`` for every pair, ``[N, M]``.

    Computed from the differences (not the ``|a|^2 - 2ab + |b|^2`` expansion), so small
    distances between large post-ReLU vectors keep their precision and are never negative.

    Args:
        z: points ``[N, d]``. centres: ``[M, d]``, same dtype and device.

    Example:
        >>> squared_distances(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]))
        tensor([[25.]])
    """
    return (z[:, None, :] - centres[None, :, :]).pow(2).sum(-1)


def nearest_centre_class(z: torch.Tensor, centres: torch.Tensor, centre_labels: torch.Tensor) -> torch.Tensor:
    """The hard nearest-centre rule ``class(argmin_k ||z - c_k||)``, ``[N]`` (distances in float64).

    Args:
        z: features ``[N, d]``. centres: ``[P, d]``. centre_labels: ``[P]`` class of every centre.
    """
    check_centres(z, centres, centre_labels)
    return centre_labels[squared_distances(z.double(), centres.double().to(z.device)).argmin(dim=1)]


def class_distances(z: torch.Tensor, centres: torch.Tensor, centre_labels: torch.Tensor,
                    num_classes: int) -> torch.Tensor:
    """Squared distance from every point to the nearest centre of every class, ``[N, C]``.

    A class without a centre gets a quarter of the largest finite value of the dtype, so it
    never wins an argmin and its score stays finite. ``-class_distances`` are the class scores
    of the hard nearest-centre rule (``argmax`` = ``nearest_centre_class``).
    """
    d2 = squared_distances(z, centres)  # [N, P]
    very_far = torch.finfo(d2.dtype).max / 4
    columns = [d2[:, centre_labels == c].min(dim=1).values if bool((centre_labels == c).any())
               else d2.new_full((z.shape[0],), very_far) for c in range(num_classes)]
    return torch.stack(columns, dim=1)


def kl_per_sample(clean_logits: torch.Tensor, adv_logits: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` per sample in nats, with ``p = softmax(clean_logits)``, ``q = softmax(adv_logits)``.

    Args:
        clean_logits: ``[B, K]`` scores of the clean inputs (the reference distribution).
        adv_logits: ``[B, K]`` scores of the perturbed inputs.

    Returns:
        ``[B]``, each ``>= 0`` and ``0`` exactly when the two rows give the same softmax.
        Computed from log-softmaxes (stable for large logits) in at least float32 (float64
        inputs stay float64). Gradients flow to both arguments; detach ``clean_logits`` for a
        fixed reference.

    Example:
        >>> kl_per_sample(torch.zeros(1, 3), torch.zeros(1, 3))
        tensor([0.])
    """
    check_logit_pair(clean_logits, adv_logits)
    log_p = F.log_softmax(at_least_float32(clean_logits), dim=1)
    log_q = F.log_softmax(at_least_float32(adv_logits), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


@dataclass(frozen=True)
class CentreRule:
    """A decision rule that compares a model's features with fixed centres.

    Attributes:
        centres: ``[P, d]`` (detached). labels: ``[P]`` class of every centre.
        space: ``"features"`` (``f(x)`` is compared with the centres, e.g. cluster centres) or
            ``"unit features"`` (``f(x) / ||f(x)||`` is, e.g. unit prototypes).
        exact: True when the model's prediction *is* the nearest centre's class, so the
            bisector certificate applies; False when it only resembles it (e.g. prototypes
            of unequal norms: ``argmax <z, p_c>`` is then not a nearest-centre rule).
        reason: why the rule is not exact (empty when it is).
    """

    centres: torch.Tensor
    labels: torch.Tensor
    space: str = "features"
    exact: bool = True
    reason: str = ""

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")

    def points(self, z: torch.Tensor) -> torch.Tensor:
        """The features as the rule compares them: ``z``, or ``z / ||z||_2`` in ``"unit features"``."""
        return F.normalize(z, dim=-1) if self.space == "unit features" else z

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """The nearest centre's class ``[N]`` for features ``z [N, d]``."""
        return nearest_centre_class(self.points(z), self.centres, self.labels)


def centre_rule(model: nn.Module) -> CentreRule | None:
    """The ``CentreRule`` of ``model``'s head (its ``centre_rule()`` method), or None if it has none."""
    head = getattr(model, "head", None)
    describe = getattr(head, "centre_rule", None)
    return describe() if callable(describe) else None


def check_centres(z: torch.Tensor, centres: torch.Tensor, centre_labels: torch.Tensor) -> None:
    """Raise a ``ValueError`` unless ``z [B, d]``, ``centres [P >= 1, d]`` and ``centre_labels [P]`` fit."""
    if z.dim() != 2 or centres.dim() != 2 or z.shape[1] != centres.shape[1]:
        raise ValueError(f"z must be [B, d] and centres [P, d] with the same d; got {tuple(z.shape)} "
                         f"and {tuple(centres.shape)}")
    if centre_labels.shape != (centres.shape[0],):
        raise ValueError(f"centre_labels must be [P] = [{centres.shape[0]}], got {tuple(centre_labels.shape)}")
    if centres.shape[0] == 0:
        raise ValueError("there must be at least one centre")


def check_logit_pair(clean_logits: torch.Tensor, adv_logits: torch.Tensor) -> None:
    """Raise a ``ValueError`` unless both are class scores ``[B, K]`` of the same shape."""
    if clean_logits.dim() != 2 or clean_logits.shape != adv_logits.shape:
        raise ValueError("expected clean and adversarial logits of the same shape [B, K], got "
                         f"{tuple(clean_logits.shape)} and {tuple(adv_logits.shape)}")


def pairwise_cosines(vectors: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every pair of rows of ``vectors [K, d]``, ``[K, K]`` (diagonal 1; zero rows give 0).

    Example:
        >>> pairwise_cosines(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        tensor([[1., 0.],
                [0., 1.]])
    """
    if not isinstance(vectors, torch.Tensor) or vectors.dim() != 2 or not vectors.is_floating_point():
        shape = tuple(vectors.shape) if isinstance(vectors, torch.Tensor) else type(vectors).__name__
        raise ValueError(f"prototypes must be a float tensor [K, d], got {shape}")
    if vectors.shape[0] < 2:
        raise ValueError(f"need at least 2 prototypes, got {vectors.shape[0]}")
    unit = F.normalize(vectors, dim=1, eps=1e-12)
    return unit @ unit.T


def simplex_bound(num_classes: int) -> float:
    """``-1/(K-1)``: the smallest possible maximum pairwise cosine of K vectors (Rankin's bound).

    Proof: ``0 <= ||sum_i p_i||^2 = K + sum_{i != j} cos_ij`` for unit vectors, so the mean
    (hence the maximum) off-diagonal cosine is at least ``-K / (K (K-1))``.

    Example:
        >>> simplex_bound(10)
        -0.1111111111111111
    """
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    return -1.0 / (num_classes - 1)
