"""Per-sample losses an attack can maximise.

Each takes class scores ``[B, K]`` and labels ``[B]`` and returns a loss per sample
``[B]`` (higher = worse for the model). Any callable with that signature can be given
to the attacks instead, e.g. a method's own training loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .._checks import unknown_name_error

AttackLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the scores treated as logits, per sample ``[B]``."""
    return F.cross_entropy(scores.float(), y, reduction="none")


def margin(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin ``max_{j != y} s_j - s_y`` per sample ``[B]``.

    Positive exactly when the sample is misclassified; unlike cross-entropy it does not
    saturate on confidently classified points.
    """
    scores = scores.float()
    true = scores.gather(1, y[:, None]).squeeze(1)
    others = scores.scatter(1, y[:, None], float("-inf"))
    return others.max(dim=1).values - true


def dlr(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020, Eq. 5), per sample ``[B]``.

    ``DLR = -(s_y - max_{j != y} s_j) / (s_pi1 - s_pi3 + 1e-12)`` with ``s_pi1 >= s_pi2 >= s_pi3``
    the sorted scores. The margin divided by a spread of the scores: invariant to shifting
    *and rescaling* the scores, so a model cannot hide behind huge (saturated) or tiny
    logits. Needs at least 3 classes.
    """
    scores = scores.float()
    if scores.shape[1] < 3:
        raise ValueError(f"the DLR loss needs at least 3 classes, got {scores.shape[1]}")
    ordered = scores.sort(dim=1, descending=True).values
    return margin(scores, y) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


ATTACK_LOSSES: dict[str, AttackLoss] = {"ce": cross_entropy, "margin": margin, "dlr": dlr}


def resolve_loss(loss: str | AttackLoss) -> AttackLoss:
    """Turn ``"ce"``/``"margin"``/``"dlr"`` or a callable into a per-sample loss function."""
    if callable(loss):
        return loss
    if loss not in ATTACK_LOSSES:
        raise unknown_name_error("attack loss", str(loss), tuple(ATTACK_LOSSES))
    return ATTACK_LOSSES[loss]
