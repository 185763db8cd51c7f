"""DRP's training losses: regress each feature vector onto its class prototype.

Paper: Serban, Poll & Visser 2021, Deep Repulsive Prototypes, https://arxiv.org/abs/2105.12427;
the cosine loss is HPN's (Mettes et al. 2019, https://arxiv.org/abs/1901.10514). Formulas and
pitfalls: README.md in this folder, "Training losses (`make_drp_loss`)".

With features ``f_i = f(x_i)`` ``[B, d]`` and targets ``t_i = p_{y_i}`` ``[B, d]`` (the fixed
prototypes of the labels):

* ``inf`` (the released DRP loss): ``(1/B) sum_i ||f_i - t_i||_inf``. Its gradient with
  respect to ``f_i`` is ``+-1/B`` on the single coordinate where ``|f_i - t_i|`` is largest:
  each step trains one output coordinate per sample, and an attack on this loss follows the
  gradient of one coordinate (README.md, "Attacking the training loss overestimates robustness").
* ``cos`` (HPN's loss, Mettes et al. 2019): ``(1/B) sum_i (1 - cos(f_i, t_i))^2``, the cosine
  taken over the *feature* axis of each sample. The released DRP code's cosine losses take
  it over the batch axis (``dim=0``), comparing one coordinate across the batch (README.md,
  "Cosine over the wrong axis"); this module does not reproduce that bug.

Neither loss pushes ``f`` away from the wrong prototypes: the repulsion lives only in the
choice of the prototypes. The decision rule that goes with each loss normalises ``f`` with
``DECISION_NORM[loss]``: L-inf for ``inf``, L2 otherwise (README.md, "Decision rule").

Example:
    >>> f = torch.tensor([[1.0, 2.0, 3.0]]); t = torch.tensor([[0.0, 0.5, 3.5]])
    >>> float(linf_loss(f, t))
    1.5
    >>> round(float(cosine_loss(3 * t, t)), 6), round(float(cosine_loss(-t, t)), 6)
    (0.0, 4.0)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..._checks import unknown_name_error

DRP_LOSSES = ("inf", "cos")
DECISION_NORM = {"inf": float("inf"), "cos": 2.0}
PAIRWISE_DISTANCE_EPS = 1e-6  # torch.nn.PairwiseDistance's default, added inside the norm
COSINE_EPS = 1e-8  # floor of each norm in the cosine (F.cosine_similarity's default)


def linf_distance(features: torch.Tensor, targets: torch.Tensor, eps_inside: float = 0.0) -> torch.Tensor:
    """Per-sample L-inf distance to the target: ``||f_i - t_i + eps_inside * e||_inf`` (e = all ones).

    Computed in float32 (float64 stays float64; README.md, "Large prototypes in low precision").

    Args:
        features: ``f`` ``[B, d]`` (feature units).
        targets: ``t`` ``[B, d]`` (the labels' prototypes).
        eps_inside: a shift added to every coordinate inside the norm (not an attack budget).
            0 (default) gives an exact zero at ``f = t``. ``1e-6`` reproduces
            ``torch.nn.PairwiseDistance(p=inf, eps=1e-6)`` as used by the released code, whose
            loss therefore never goes below 1e-6 (README.md, "Loss floor inside the norm").
    Returns:
        ``[B]`` distances in feature units.

    Example:
        >>> linf_distance(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.5]]))
        tensor([1.5000])
    """
    features, targets = _check_pair(features, targets)
    return (features - targets + eps_inside).abs().amax(dim=1)


def linf_loss(features: torch.Tensor, targets: torch.Tensor, eps_inside: float = 0.0) -> torch.Tensor:
    """DRP's ``inf`` loss: ``(1/B) sum_i ||f_i - t_i + eps_inside * e||_inf``, a scalar.

    Args:
        features: ``[B, d]``. targets: ``[B, d]``. eps_inside: see ``linf_distance``.
    Returns:
        a scalar tensor in feature units.

    Example:
        >>> float(linf_loss(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.0, 0.5, 3.5]])))
        1.5
    """
    return linf_distance(features, targets, eps_inside).mean()


def cosine_similarity(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine ``cos(f_i, t_i) = <f_i, t_i> / (||f_i|| ||t_i||)`` over the feature axis (dim 1).

    Each norm is floored at 1e-8 (``COSINE_EPS``), so ``f_i = 0`` gives cosine 0 rather than NaN.

    Args:
        features: ``[B, d]``. targets: ``[B, d]``.
    Returns:
        ``[B]`` cosines in [-1, 1].

    Example:
        >>> cosine_similarity(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]))
        tensor([0.])
    """
    features, targets = _check_pair(features, targets)
    return F.cosine_similarity(features, targets, dim=1, eps=COSINE_EPS)


def cosine_loss(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """HPN's loss ``(1/B) sum_i (1 - cos(f_i, t_i))^2``, a scalar in [0, 4].

    0 when every ``f_i`` points along its target, 4 when it points exactly away; invariant to
    rescaling any single ``f_i`` by a factor ``> 0``. HPN sums over the batch; the mean used
    here only rescales the learning rate by ``1/B`` [robustviz choice, like every other
    robustviz loss].

    Args:
        features: ``[B, d]``. targets: ``[B, d]``.
    Returns:
        a scalar tensor.

    Example:
        >>> t = torch.tensor([[0.0, 0.5, 3.5]])
        >>> round(float(cosine_loss(3 * t, t)), 6), round(float(cosine_loss(-t, t)), 6)
        (0.0, 4.0)
    """
    return (1 - cosine_similarity(features, targets)).pow(2).mean()


class LinfPrototypeLoss(nn.Module):
    """``linf_loss`` as a module: ``LinfPrototypeLoss(eps_inside)(features [B, d], targets [B, d])`` -> scalar.

    Args:
        eps_inside: the shift inside the norm, ``>= 0`` (see ``linf_distance``).

    Example:
        >>> t = torch.zeros(2, 3)
        >>> round(LinfPrototypeLoss(eps_inside=1e-6)(t, t).item(), 9)
        1e-06
    """

    def __init__(self, eps_inside: float = 0.0) -> None:
        super().__init__()
        if eps_inside < 0:
            raise ValueError(f"eps_inside must be >= 0, got {eps_inside}")
        self.eps_inside = eps_inside

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return linf_loss(features, targets, self.eps_inside)

    def extra_repr(self) -> str:
        return f"eps_inside={self.eps_inside:g}"


class CosinePrototypeLoss(nn.Module):
    """``cosine_loss`` as a module: ``CosinePrototypeLoss()(features [B, d], targets [B, d])`` -> scalar.

    Example:
        >>> round(float(CosinePrototypeLoss()(torch.ones(1, 2), -torch.ones(1, 2))), 6)
        4.0
    """

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return cosine_loss(features, targets)


def make_drp_loss(name: str, eps_inside: float = 0.0) -> nn.Module:
    """The DRP loss module called ``name``: ``LinfPrototypeLoss`` or ``CosinePrototypeLoss``.

    Args:
        name: ``"inf"`` or ``"cos"`` (``DRP_LOSSES``).
        eps_inside: the shift inside the L-inf norm; for ``"inf"`` only.
    Returns:
        an ``nn.Module`` mapping ``(features [B, d], targets [B, d])`` to a scalar.

    Example:
        >>> make_drp_loss("cos")
        CosinePrototypeLoss()
    """
    if name == "inf":
        return LinfPrototypeLoss(eps_inside)
    if name == "cos":
        if eps_inside:
            raise ValueError("eps_inside only applies to the 'inf' loss")
        return CosinePrototypeLoss()
    raise unknown_name_error("DRP loss", name, DRP_LOSSES)


def _check_pair(features: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if features.dim() != 2 or features.shape != targets.shape:
        raise ValueError(
            f"features and targets must both be [B, d] with the same shape, got {tuple(features.shape)} "
            f"and {tuple(targets.shape)}"
        )
    dtype = torch.float64 if torch.float64 in (features.dtype, targets.dtype) else torch.float32
    return features.to(dtype), targets.to(dtype)
