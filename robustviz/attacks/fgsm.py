"""Single-step attacks: FGSM (Goodfellow, Shlens & Szegedy 2015) and R-FGSM (Tramer et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .core import eval_mode, input_gradient, linf_bounds, make_generator, prepare_inputs, signed_step
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
    x_adv = signed_step(x_work, grad, eps, lower, upper)
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
    x_work, y_work, eps = prepare_inputs(model, x, y, eps)
    alpha = eps / 2 if alpha is None else float(alpha)
    if alpha < 0 or (alpha >= eps and alpha > 0):
        raise ValueError(f"alpha must satisfy 0 <= alpha < eps = {eps}, got {alpha}")
    generator = make_generator(seed)
    noise = torch.randn(x_work.shape, generator=generator, dtype=x_work.dtype).to(x_work.device)
    x_start = (x_work + alpha * noise.sign()).clamp(0.0, 1.0)
    with eval_mode(model):
        grad, _ = input_gradient(model, x_start, y_work, resolve_loss(loss))
    lower, upper = linf_bounds(x_work, eps)
    x_adv = signed_step(x_start, grad, eps - alpha, lower, upper)
    return x_adv.detach().to(device=x.device, dtype=x.dtype)


@dataclass
class RFGSM:
    """Callable form of ``rfgsm``: ``RFGSM(eps=0.3)(model, x, y)``."""

    eps: float
    alpha: float | None = None
    loss: str | AttackLoss = "ce"
    seed: int | None = None

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return rfgsm(model, x, y, self.eps, alpha=self.alpha, loss=self.loss, seed=self.seed)

    @property
    def name(self) -> str:
        return "R-FGSM"
