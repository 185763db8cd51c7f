"""The SAT-R1/R2/R3 training losses (Vivek & Babu 2020, arXiv:2002.00614; spec ``singlestep.md``).

Single-step (FGSM) adversarial training can fall into gradient masking: the model learns a
loss surface on which its own FGSM examples are weak. Each regulariser penalises one
measurable symptom of that (spec §1, §3):

* R1: the logits of the FGSM and the I-FGSM example of the same image should agree.
* R2: the logits of the FGSM example of ``x`` and of a randomly shifted copy of ``x``
  (R-FGSM) should agree.
* R3: along one adversarial ray the small-eps loss should stay below ``tau`` times the
  full-eps loss (a monotone, not a masked, loss).

Every loss takes the class scores of **one** train-mode forward pass over the concatenated
batch of adversarial samples, exactly as the authors' code does (spec §3), and returns the
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

    ``mean_i sum_k (a_ik - b_ik)^2`` (the authors' ``l2_square``, spec §2).

    Args:
        a, b: logits ``[N, K]`` of the same shape (``N >= 1``).

    Returns:
        a scalar tensor.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"logit_sqdist needs two [N, K] tensors of one shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if a.shape[0] == 0:
        raise ValueError("logit_sqdist needs at least one sample")
    return (at_least_float32(a) - at_least_float32(b)).pow(2).sum(dim=1).mean(dim=0)


def sat_r1_loss(scores: torch.Tensor, y: torch.Tensor, lam: float, n_multistep: int = 1) -> LossParts:
    """SAT-R1: FGSM cross-entropy plus the FGSM vs I-FGSM logit gap (spec §3.1).

    ``L = CE(scores[:B], y) + lam * sqdist(scores[B - n:B], scores[B:])``

    Args:
        scores: logits ``[B + n, K]`` of one forward pass over ``cat(x_fgsm [B], x_ifgsm [n])``,
            where ``x_ifgsm`` are the I-FGSM examples of the **last** ``n`` images of the batch
            (the authors use ``n = 1``, spec pitfall 4).
        y: labels ``[B]``; only the ``B`` FGSM rows enter the cross-entropy.
        lam: weight of the regulariser (>= 0; 0.2 in the authors' code).
        n_multistep: ``n``, the number of I-FGSM rows at the end of ``scores``.

    Returns:
        ``(loss, {"fgsm_ce": ..., "r1": ...})``, all scalars with their graphs. Gradients flow
        through both logit branches of the gap: neither is detached.
    """
    batch = _check_rows(scores, y, extra=n_multistep, what="SAT-R1", layout="B + n_multistep")
    _check_weight(lam, "lam")
    if not 1 <= n_multistep <= batch:
        raise ValueError(f"n_multistep must be in [1, B={batch}], got {n_multistep}")
    fgsm_ce = F.cross_entropy(at_least_float32(scores[:batch]), y)
    r1 = logit_sqdist(scores[batch - n_multistep:batch], scores[batch:])
    return fgsm_ce + lam * r1, {"fgsm_ce": fgsm_ce, "r1": r1}


def sat_r2_loss(scores: torch.Tensor, y: torch.Tensor, lam: float) -> LossParts:
    """SAT-R2: FGSM cross-entropy plus the FGSM vs R-FGSM logit gap (spec §3.2).

    ``L = CE(scores[:B], y) + lam * sqdist(scores[:B], scores[B:])``

    Args:
        scores: logits ``[2B, K]`` of one forward pass over ``cat(x_fgsm, x_rfgsm)``.
        y: labels ``[B]``; the cross-entropy uses the FGSM half only.
        lam: weight of the regulariser (>= 0; 5 on MNIST, 25 on CIFAR-10 in the authors' code).

    Returns:
        ``(loss, {"fgsm_ce": ..., "r2": ...})``, scalars with their graphs.
    """
    batch = _check_rows(scores, y, extra=y.shape[0], what="SAT-R2", layout="2B")
    _check_weight(lam, "lam")
    fgsm_ce = F.cross_entropy(at_least_float32(scores[:batch]), y)
    r2 = logit_sqdist(scores[:batch], scores[batch:])
    return fgsm_ce + lam * r2, {"fgsm_ce": fgsm_ce, "r2": r2}


def r3_hinge(ce_lo: torch.Tensor, ce_hi: torch.Tensor, tau: float) -> torch.Tensor:
    """The R3 hinge ``max(0, CE_lo - tau * CE_hi)`` on batch-mean cross-entropies (spec §3.3).

    Positive when the loss at the small step is more than ``tau`` times the loss at the full
    step, i.e. when the loss along the adversarial ray is flat or non-monotone.
    """
    return F.relu(ce_lo - tau * ce_hi)


def sat_r3_loss(scores: torch.Tensor, y: torch.Tensor, lam: float, tau: float) -> LossParts:
    """SAT-R3: full-eps cross-entropy plus the monotonicity hinge (spec §3.3, pitfall 7).

    ``L = CE_hi + lam * max(0, CE_lo - tau * CE_hi)`` with ``CE_lo = CE(scores[:B], y)`` and
    ``CE_hi = CE(scores[B:], y)``. The hinge acts on the batch means, not per sample (a
    per-sample hinge is a different method). When it is active the objective is
    ``(1 - lam * tau) * CE_hi + lam * CE_lo``, so ``lam * tau < 1`` is required.

    Args:
        scores: logits ``[2B, K]`` of one forward pass over ``cat(x_lo, x_hi)`` (the authors'
            order: small step first).
        y: labels ``[B]``.
        lam: hinge weight (>= 0; 1 in the authors' code).
        tau: ratio threshold (>= 0; 0.4 on MNIST, 0.6 on CIFAR-10).

    Returns:
        ``(loss, {"ce_lo": ..., "ce_hi": ..., "r3_hinge": ...})``, scalars with their graphs.
    """
    batch = _check_rows(scores, y, extra=y.shape[0], what="SAT-R3", layout="2B")
    check_r3_settings(lam, tau)
    ce_lo = F.cross_entropy(at_least_float32(scores[:batch]), y)
    ce_hi = F.cross_entropy(at_least_float32(scores[batch:]), y)
    hinge = r3_hinge(ce_lo, ce_hi, tau)
    return ce_hi + lam * hinge, {"ce_lo": ce_lo, "ce_hi": ce_hi, "r3_hinge": hinge}


def check_r3_settings(lam: float, tau: float) -> None:
    """Raise ``ValueError`` unless ``lam >= 0``, ``tau >= 0`` and ``lam * tau < 1`` (spec pitfall 7).

    With ``lam * tau >= 1`` the active hinge would reward *raising* the full-eps loss.
    """
    _check_weight(lam, "lam")
    _check_weight(tau, "tau")
    if lam * tau >= 1:
        raise ValueError(
            f"SAT-R3 needs lam * tau < 1, got lam={lam:g}, tau={tau:g} (product {lam * tau:g}); "
            "otherwise the active hinge rewards increasing the full-eps loss"
        )


class SATR1Loss(nn.Module):
    """``nn.Module`` form of ``sat_r1_loss``: ``SATR1Loss(lam=0.2)(scores, y)`` -> scalar loss."""

    def __init__(self, lam: float = 0.2, n_multistep: int = 1) -> None:
        super().__init__()
        _check_weight(lam, "lam")
        self.lam, self.n_multistep = float(lam), int(n_multistep)

    def forward(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sat_r1_loss(scores, y, self.lam, self.n_multistep)[0]


class SATR2Loss(nn.Module):
    """``nn.Module`` form of ``sat_r2_loss``: ``SATR2Loss(lam=25)(scores, y)`` -> scalar loss."""

    def __init__(self, lam: float = 25.0) -> None:
        super().__init__()
        _check_weight(lam, "lam")
        self.lam = float(lam)

    def forward(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sat_r2_loss(scores, y, self.lam)[0]


class SATR3Loss(nn.Module):
    """``nn.Module`` form of ``sat_r3_loss``: ``SATR3Loss(lam=1, tau=0.6)(scores, y)`` -> scalar loss."""

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
