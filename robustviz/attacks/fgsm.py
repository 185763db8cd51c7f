"""Fast Gradient Sign Method (Goodfellow, Shlens & Szegedy 2015)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .core import eval_mode, input_gradient, linf_bounds, prepare_inputs
from .losses import AttackLoss, resolve_loss


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    loss: str | AttackLoss = "ce",
) -> torch.Tensor:
    """One signed-gradient step of size ``eps``: ``x_adv = clip(x + eps * sign(grad_x L))``.

    Args:
        model: any module returning class scores ``[B, K]`` for inputs in [0, 1].
        x: inputs ``[B, ...]`` in [0, 1].
        y: labels ``[B]``.
        eps: L-inf budget in [0, 1] pixel units (e.g. 8/255, 0.3).
        loss: ``"ce"``, ``"margin"`` or a per-sample loss ``(scores, y) -> [B]``.

    Returns:
        ``x_adv`` with ``|x_adv - x| <= eps`` and values in [0, 1], on ``x``'s device and dtype.

    Example:
        >>> x_adv = fgsm(model, x, y, eps=0.3)  # doctest: +SKIP
    """
    x_work, y_work, eps = prepare_inputs(model, x, y, eps)
    loss_fn = resolve_loss(loss)
    with eval_mode(model):
        grad, _ = input_gradient(model, x_work, y_work, loss_fn)
    lower, upper = linf_bounds(x_work, eps)
    x_adv = torch.min(torch.max(x_work + eps * grad.sign(), lower), upper)
    return x_adv.detach().to(device=x.device, dtype=x.dtype)


@dataclass
class FGSM:
    """Callable form of ``fgsm``: ``FGSM(eps=0.3)(model, x, y)``."""

    eps: float
    loss: str | AttackLoss = "ce"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fgsm(model, x, y, self.eps, loss=self.loss)

    @property
    def name(self) -> str:
        return "FGSM"
