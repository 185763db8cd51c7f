"""Single-step attacks: FGSM (Goodfellow, Shlens & Szegedy 2015) and R-FGSM (Tramer et al. 2018)."""

from __future__ import annotations

import torch
from torch import nn

from .core import make_generator, prepare_inputs
from .losses import AttackLoss
from .pgd import pgd


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    loss: str | AttackLoss = "ce",
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """One signed-gradient step of size ``eps``: ``x_adv = clip(x + eps * sign(grad_x L))``.

    Goodfellow, Shlens & Szegedy 2015, https://arxiv.org/abs/1412.6572.

    Args:
        model: any module returning class scores ``[B, K]`` for inputs in [0, 1].
        x: inputs ``[B, ...]`` in [0, 1].
        y: labels ``[B]``.
        eps: L-inf budget in [0, 1] pixel units (e.g. 8/255, 0.3).
        loss: ``"ce"``, ``"margin"`` or a per-sample loss ``(scores, y) -> [B]``.
        start: where to take the gradient and step from (``[B, ...]``, e.g. a random point of
            the ball); default ``x``. The result is still clipped to the eps-ball around ``x``.

    Returns:
        ``x_adv`` with ``|x_adv - x| <= eps`` and values in [0, 1], on ``x``'s device and dtype.

    Example:
        >>> x_adv = fgsm(model, x, y, eps=0.3)  # doctest: +SKIP
    """
    return pgd(model, x, y, eps, steps=1, step_size=eps, random_start=False, loss=loss, start=start)


def rfgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float | None = None,
    loss: str | AttackLoss = "ce",
    seed: int | None = None,
) -> torch.Tensor:
    """R-FGSM (Tramer et al. 2018, Eq. 7): a random sign step, then FGSM with the rest of the budget.

    ``x' = clip(x + alpha * sign(N(0, I)))``, ``x_adv = clip_ball(x' + (eps - alpha) * sign(grad_x' L))``.
    The random first step escapes the sharp curvature right at the data point, which
    defeats models that only mask the gradient *at* ``x`` (e.g. after FGSM training).

    Args:
        model, x, y, eps, loss: as for ``fgsm``.
        alpha: size of the random step, ``0 <= alpha < eps``; default ``eps / 2`` (the paper's
            ``alpha = eps / 2`` for MNIST/ImageNet-scale budgets).
        seed: seed of the random signs (drawn on the CPU).

    Example:
        >>> x_adv = rfgsm(model, x, y, eps=0.3, seed=0)  # doctest: +SKIP
    """
    x_work, _, eps = prepare_inputs(model, x, y, eps)
    alpha = eps / 2 if alpha is None else float(alpha)
    if alpha < 0 or (alpha >= eps and alpha > 0):
        raise ValueError(f"alpha must satisfy 0 <= alpha < eps = {eps}, got {alpha}")
    noise = torch.randn(x_work.shape, generator=make_generator(seed), dtype=x_work.dtype).to(x_work.device)
    x_start = (x_work + alpha * noise.sign()).clamp(0.0, 1.0)
    return pgd(model, x, y, eps, steps=1, step_size=eps - alpha, random_start=False, loss=loss, start=x_start)
