"""Iterative sign-gradient attacks without random start: BIM / I-FGSM and MI-FGSM.

* BIM / I-FGSM (Kurakin, Goodfellow & Bengio 2017): FGSM repeated with a small step,
  clipped to the eps-ball after every step. It is PGD started at ``x`` itself.
* MI-FGSM (Dong et al. 2018, Alg. 1): the steps follow an accumulated, L1-normalised
  gradient (momentum), which smooths the direction over steps; designed for transfer.
"""

from __future__ import annotations

import torch
from torch import nn

from .core import eval_mode, input_gradient, linf_bounds, prepare_inputs, signed_step
from .losses import AttackLoss, resolve_loss
from .pgd import pgd


def bim(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    loss: str | AttackLoss = "ce",
) -> torch.Tensor:
    """Basic Iterative Method / I-FGSM: ``steps`` signed-gradient steps from ``x``, no random start.

    Args:
        model, x, y, eps, loss: as for ``fgsm``.
        steps: number of steps. Kurakin et al. used ``min(eps_255 + 4, 1.25 eps_255)`` steps
            of 1/255; a fixed 10 is the common modern choice.
        step_size: default ``eps / steps`` (the iterate can just reach the corner of the ball).

    Example:
        >>> x_adv = bim(model, x, y, eps=0.3, steps=10)  # doctest: +SKIP
    """
    step_size = eps / max(steps, 1) if step_size is None else step_size
    return pgd(model, x, y, eps, steps=steps, step_size=step_size, random_start=False, loss=loss)


def mifgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 10,
    decay: float = 1.0,
    step_size: float | None = None,
    loss: str | AttackLoss = "ce",
) -> torch.Tensor:
    """Momentum Iterative FGSM (Dong et al. 2018, Alg. 1), L-inf.

    ``g <- decay * g + grad / ||grad||_1`` (per sample), ``x <- clip_ball(x + step_size * sign(g))``.

    Args:
        model, x, y, eps, loss: as for ``fgsm``.
        steps: iterations T (paper: 10). decay: momentum mu (paper: 1.0).
        step_size: default ``eps / steps`` (the paper's ``alpha = eps / T``).

    Example:
        >>> x_adv = mifgsm(model, x, y, eps=0.3)  # doctest: +SKIP
    """
    x_work, y_work, eps = prepare_inputs(model, x, y, eps)
    step_size = eps / max(steps, 1) if step_size is None else float(step_size)
    loss_fn = resolve_loss(loss)
    lower, upper = linf_bounds(x_work, eps)
    x_adv, momentum = x_work.clone(), torch.zeros_like(x_work)
    with eval_mode(model):
        for _ in range(steps):
            grad, _ = input_gradient(model, x_adv, y_work, loss_fn)
            l1 = grad.abs().flatten(1).sum(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
            momentum = decay * momentum + grad / l1
            x_adv = signed_step(x_adv, momentum, step_size, lower, upper)
    return x_adv.detach().to(device=x.device, dtype=x.dtype)
