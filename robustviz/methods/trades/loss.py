"""The TRADES loss: natural cross-entropy plus a KL "boundary" term.

Paper: Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and Accuracy",
https://arxiv.org/abs/1901.08573. Formulas and pitfalls: README.md in this folder.

    L = CE(f(x), y) + beta * (1/b) sum_i KL( p(x_i) || p(x_i') )

where ``p = softmax(f)`` and ``x'`` maximises the same KL inside the eps-ball (the inner
maximisation lives in ``robustviz.attacks.trades``). ``beta`` is the paper's ``1/lambda``;
larger ``beta`` trades clean accuracy for robustness (paper and code use 6). This is the
multi-class objective of the paper's Sec. 4 / Algorithm 1 as the official ``trades.py`` codes it.

Gradients flow through *both* sides of the KL during training, as in the official code
(``nn.KLDivLoss(log_softmax(f(x')), softmax(f(x)))``): the clean prediction is pulled
toward the adversarial one as well as the other way round.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..._precision import at_least_float32
from ...geometry import kl_per_sample


def trades_kl(clean_logits: torch.Tensor, adv_logits: torch.Tensor) -> torch.Tensor:
    """The TRADES robust term: ``(1/B) sum_i KL(p(x_i) || p(x_i'))`` with ``p = softmax``.

    Equals the official ``KLDivLoss(size_average=False)(...) / batch_size``.

    Args:
        clean_logits: ``[B, K]`` scores of the clean batch.
        adv_logits: ``[B, K]`` scores of the adversarial batch.
    Returns:
        a scalar ``>= 0``, in nats.

    Example:
        >>> trades_kl(torch.zeros(2, 3), torch.zeros(2, 3))
        tensor(0.)
    """
    return kl_per_sample(clean_logits, adv_logits).mean()


class TradesParts(NamedTuple):
    """The TRADES loss and its two parts (all scalars)."""

    loss: torch.Tensor
    natural_ce: torch.Tensor
    kl: torch.Tensor


def trades_loss(
    clean_logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor, beta: float = 6.0
) -> TradesParts:
    """The TRADES objective ``CE(f(x), y) + beta * (1/B) sum_i KL(p(x_i) || p(x_i'))`` and its parts.

    Args:
        clean_logits: ``[B, K]`` scores of the clean batch.
        adv_logits: ``[B, K]`` scores of the adversarial batch (from the KL attack).
        y: ``[B]`` integer labels.
        beta: weight of the KL term (``1/lambda`` in the paper), ``>= 0``.

    Returns:
        ``TradesParts(loss, natural_ce, kl)``, scalars; gradients flow through both logits.

    Example:
        >>> parts = trades_loss(torch.zeros(2, 4), torch.zeros(2, 4), torch.tensor([0, 1]), beta=6.0)
        >>> round(float(parts.loss), 4), float(parts.kl)
        (1.3863, 0.0)
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    natural_ce = F.cross_entropy(at_least_float32(clean_logits), y)
    kl = trades_kl(clean_logits, adv_logits)
    return TradesParts(natural_ce + beta * kl, natural_ce, kl)
