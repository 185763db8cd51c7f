"""The SAT-R1/R2/R3 training losses: FGSM cross-entropy plus one penalty against gradient masking.

Paper: Vivek & Babu 2020, "Regularizers for Single-step Adversarial Training",
https://arxiv.org/abs/2002.00614. Formulas and pitfalls: README.md in this folder.

Single-step (FGSM) adversarial training can fall into gradient masking: the model learns a
loss surface on which its own FGSM examples are weak. Each regulariser penalises one
measurable symptom of that:

* R1: the logits of the FGSM and the I-FGSM example of the same image should agree.
* R2: the logits of the FGSM example of ``x`` and of a randomly shifted copy of ``x``
  (R-FGSM) should agree.
* R3: along one adversarial ray the small-eps loss should stay below ``tau`` times the
  full-eps loss (a monotone, not a masked, loss).

Every loss takes the class scores of **one** train-mode forward pass over the concatenated
batch of adversarial samples, exactly as the authors' code does (README.md, "The update step"), and returns the
total loss with its named parts. The samples themselves are built in
``robustviz.methods.singlestep``.

Shapes: ``B`` samples, ``K`` classes; scores are logits ``[rows, K]``, labels ``y`` are
int64 ``[B]``. All cross-entropies are batch means.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..._precision import at_least_float32

__all__ = [
    "SATR1Loss", "SATR2Loss", "SATR3Loss", "check_r3_settings", "logit_sqdist", "r3_hinge",
    "sat_r1_loss", "sat_r2_loss", "sat_r3_loss",
]

LossParts = tuple[torch.Tensor, dict[str, torch.Tensor]]


def logit_sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance between logit vectors, summed over classes, averaged over samples.

    ``mean_i sum_k (a_ik - b_ik)^2`` (the authors' ``l2_square``).

    Args:
        a, b: logits ``[N, K]`` of the same shape (``N >= 1``).

    Returns:
        a scalar tensor (squared logit units).

    Example:
        >>> logit_sqdist(torch.zeros(2, 3), torch.ones(2, 3))
        tensor(3.)
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"logit_sqdist needs two [N, K] tensors of one shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if a.shape[0] == 0:
        raise ValueError("logit_sqdist needs at least one sample")
    return (at_least_float32(a) - at_least_float32(b)).pow(2).sum(dim=1).mean(dim=0)


def sat_r1_loss(scores: torch.Tensor, y: torch.Tensor, lam: float, n_multistep: int = 1) -> LossParts:
    """SAT-R1: FGSM cross-entropy plus the FGSM vs I-FGSM logit gap (README.md, "SAT-R1").

    ``L = CE(scores[:B], y) + lam * sqdist(scores[B - n:B], scores[B:])``

    Args:
        scores: logits ``[B + n, K]`` of one forward pass over ``cat(x_fgsm [B], x_ifgsm [n])``,
            where ``x_ifgsm`` are the I-FGSM examples of the **last** ``n`` images of the batch
            (the authors use ``n = 1``; README.md, "One I-FGSM sample per batch").
        y: labels ``[B]``; only the ``B`` FGSM rows enter the cross-entropy.
        lam: weight of the regulariser (>= 0; 0.2 in the authors' code).
        n_multistep: ``n``, the number of I-FGSM rows at the end of ``scores``.

    Returns:
        ``(loss, {"fgsm_ce": ..., "r1": ...})``, all scalars with their graphs. Gradients flow
        through both logit branches of the gap: neither is detached.

    Example:
        >>> loss, parts = sat_r1_loss(torch.zeros(5, 10), torch.zeros(4, dtype=torch.long), lam=0.2)
        >>> round(float(loss), 4), float(parts["r1"])
        (2.3026, 0.0)
    """
    batch = _check_rows(scores, y, extra=n_multistep, what="SAT-R1", layout="B + n_multistep")
    _check_weight(lam, "lam")
    if not 1 <= n_multistep <= batch:
        raise ValueError(f"n_multistep must be in [1, B={batch}], got {n_multistep}")
    fgsm_ce = F.cross_entropy(at_least_float32(scores[:batch]), y)
    r1 = logit_sqdist(scores[batch - n_multistep:batch], scores[batch:])
    return fgsm_ce + lam * r1, {"fgsm_ce": fgsm_ce, "r1": r1}


def sat_r2_loss(scores: torch.Tensor, y: torch.Tensor, lam: float) -> LossParts:
    """SAT-R2: FGSM cross-entropy plus the FGSM vs R-FGSM logit gap (README.md, "SAT-R2").

    ``L = CE(scores[:B], y) + lam * sqdist(scores[:B], scores[B:])``

    Args:
        scores: logits ``[2B, K]`` of one forward pass over ``cat(x_fgsm, x_rfgsm)``.
        y: labels ``[B]``; the cross-entropy uses the FGSM half only.
        lam: weight of the regulariser (>= 0; 5 on MNIST, 25 on CIFAR-10 in the authors' code;
            README.md, "λ depends on the logit scale").

    Returns:
        ``(loss, {"fgsm_ce": ..., "r2": ...})``, scalars with their graphs.

    Example:
        >>> loss, parts = sat_r2_loss(torch.zeros(8, 10), torch.zeros(4, dtype=torch.long), lam=25.0)
        >>> round(float(loss), 4)
        2.3026
    """
    batch = _check_rows(scores, y, extra=y.shape[0], what="SAT-R2", layout="2B")
    _check_weight(lam, "lam")
    fgsm_ce = F.cross_entropy(at_least_float32(scores[:batch]), y)
    r2 = logit_sqdist(scores[:batch], scores[batch:])
    return fgsm_ce + lam * r2, {"fgsm_ce": fgsm_ce, "r2": r2}


def r3_hinge(ce_lo: torch.Tensor, ce_hi: torch.Tensor, tau: float) -> torch.Tensor:
    """The R3 hinge ``max(0, CE_lo - tau * CE_hi)`` on batch-mean cross-entropies.

    Positive when the loss at the small step is more than ``tau`` times the loss at the full
    step, i.e. when the loss along the adversarial ray is flat or non-monotone.

    Args:
        ce_lo: batch-mean cross-entropy at the small step (scalar, nats).
        ce_hi: batch-mean cross-entropy at the full step (scalar, nats).
        tau: ratio threshold, ``>= 0``.
    Returns:
        a scalar ``>= 0``.

    Example:
        >>> r3_hinge(torch.tensor(1.0), torch.tensor(2.0), tau=0.6)
        tensor(0.)
    """
    return F.relu(ce_lo - tau * ce_hi)


def sat_r3_loss(scores: torch.Tensor, y: torch.Tensor, lam: float, tau: float) -> LossParts:
    """SAT-R3: full-eps cross-entropy plus the monotonicity hinge (README.md, "SAT-R3").

    ``L = CE_hi + lam * max(0, CE_lo - tau * CE_hi)`` with ``CE_lo = CE(scores[:B], y)`` and
    ``CE_hi = CE(scores[B:], y)``. The hinge acts on the batch means, not per sample (a
    per-sample hinge is a different method). When it is active the objective is
    ``(1 - lam * tau) * CE_hi + lam * CE_lo``, so ``lam * tau < 1`` is required (README.md,
    "Batch-mean hinge, and λτ < 1").

    Args:
        scores: logits ``[2B, K]`` of one forward pass over ``cat(x_lo, x_hi)`` (the authors'
            order: small step first).
        y: labels ``[B]``.
        lam: hinge weight (>= 0; 1 in the authors' code).
        tau: ratio threshold (>= 0; 0.4 on MNIST, 0.6 on CIFAR-10).

    Returns:
        ``(loss, {"ce_lo": ..., "ce_hi": ..., "r3_hinge": ...})``, scalars with their graphs.

    Example:
        >>> loss, parts = sat_r3_loss(torch.zeros(8, 10), torch.zeros(4, dtype=torch.long), lam=1.0, tau=0.6)
        >>> round(float(parts["r3_hinge"]), 4)
        0.921
    """
    batch = _check_rows(scores, y, extra=y.shape[0], what="SAT-R3", layout="2B")
    check_r3_settings(lam, tau)
    ce_lo = F.cross_entropy(at_least_float32(scores[:batch]), y)
    ce_hi = F.cross_entropy(at_least_float32(scores[batch:]), y)
    hinge = r3_hinge(ce_lo, ce_hi, tau)
    return ce_hi + lam * hinge, {"ce_lo": ce_lo, "ce_hi": ce_hi, "r3_hinge": hinge}


def check_r3_settings(lam: float, tau: float) -> None:
    """Raise ``ValueError`` unless ``lam >= 0``, ``tau >= 0`` and ``lam * tau < 1``.

    With ``lam * tau >= 1`` the active hinge would reward *raising* the full-eps loss
    (README.md, "Batch-mean hinge, and λτ < 1").

    Args:
        lam: hinge weight. tau: ratio threshold.

    Example:
        >>> check_r3_settings(1.0, 0.6)
    """
    _check_weight(lam, "lam")
    _check_weight(tau, "tau")
    if lam * tau >= 1:
        raise ValueError(
            f"SAT-R3 needs lam * tau < 1, got lam={lam:g}, tau={tau:g} (product {lam * tau:g}); "
            "otherwise the active hinge rewards increasing the full-eps loss"
        )


class SATR1Loss(nn.Module):
    """``sat_r1_loss`` as a module: ``SATR1Loss(lam=0.2)(scores [B + n, K], y [B])`` -> scalar loss.

    Args:
        lam: regulariser weight, ``>= 0``.
        n_multistep: I-FGSM rows at the end of ``scores``.

    Example:
        >>> round(float(SATR1Loss()(torch.zeros(5, 10), torch.zeros(4, dtype=torch.long))), 4)
        2.3026
    """

    def __init__(self, lam: float = 0.2, n_multistep: int = 1) -> None:
        super().__init__()
        _check_weight(lam, "lam")
        self.lam, self.n_multistep = float(lam), int(n_multistep)

    def forward(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sat_r1_loss(scores, y, self.lam, self.n_multistep)[0]


class SATR2Loss(nn.Module):
    """``sat_r2_loss`` as a module: ``SATR2Loss(lam=25)(scores [2B, K], y [B])`` -> scalar loss.

    Args:
        lam: regulariser weight, ``>= 0``.

    Example:
        >>> round(float(SATR2Loss()(torch.zeros(8, 10), torch.zeros(4, dtype=torch.long))), 4)
        2.3026
    """

    def __init__(self, lam: float = 25.0) -> None:
        super().__init__()
        _check_weight(lam, "lam")
        self.lam = float(lam)

    def forward(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sat_r2_loss(scores, y, self.lam)[0]


class SATR3Loss(nn.Module):
    """``sat_r3_loss`` as a module: ``SATR3Loss(lam=1, tau=0.6)(scores [2B, K], y [B])`` -> scalar loss.

    Args:
        lam: hinge weight, ``>= 0``.
        tau: ratio threshold, ``>= 0``; ``lam * tau < 1``.

    Example:
        >>> round(float(SATR3Loss()(torch.zeros(8, 10), torch.zeros(4, dtype=torch.long))), 4)
        3.2236
    """

    def __init__(self, lam: float = 1.0, tau: float = 0.6) -> None:
        super().__init__()
        check_r3_settings(lam, tau)
        self.lam, self.tau = float(lam), float(tau)

    def forward(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sat_r3_loss(scores, y, self.lam, self.tau)[0]


def _check_rows(scores: torch.Tensor, y: torch.Tensor, extra: int, what: str, layout: str) -> int:
    """Check ``scores`` is ``[B + extra, K]`` for labels ``y`` ``[B]``; return ``B``."""
    if scores.dim() != 2 or y.dim() != 1:
        raise ValueError(f"{what} needs scores [rows, K] and labels [B], got {tuple(scores.shape)} "
                         f"and {tuple(y.shape)}")
    batch = y.shape[0]
    if batch == 0 or scores.shape[0] != batch + extra:
        raise ValueError(f"{what} needs scores with {layout} = {batch + extra} rows for B={batch} labels, "
                         f"got {scores.shape[0]}")
    return batch


def _check_weight(value: float, name: str) -> None:
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be >= 0, got {value}")
