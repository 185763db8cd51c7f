"""Transfer (black-box) attack: craft on a surrogate model, apply to the target.

The target model is never differentiated, so masking its gradients does not help it.
A transfer attack beating the white-box attack on the same model is the classic sign
of gradient masking (Athalye, Carlini & Wagner 2018, Sec. 3.1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .core import prepare_inputs, project_linf
from .pgd import pgd


def transfer_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    surrogate: nn.Module,
    attack: Callable[..., torch.Tensor] | None = None,
) -> torch.Tensor:
    """Adversarial examples crafted white-box on ``surrogate``, to be evaluated on ``model``.

    Args:
        model: the target (only used to check the inputs; never run or differentiated).
        x, y: as for ``pgd``. eps: L-inf budget in [0, 1] units.
        surrogate: another classifier of the same inputs and classes, e.g. a standard
            model trained on the same data.
        attack: attack run on the surrogate, ``attack(surrogate, x, y) -> x_adv``; default
            PGD-20 from a random start with seed 0. Its budget should be ``eps``.

    Returns:
        ``x_adv`` inside the eps-ball and [0, 1] (re-projected in case ``attack`` used a
        larger budget), on ``x``'s device and dtype.

    Example:
        >>> x_adv = transfer_attack(drp_model, x, y, 0.3, surrogate=ce_model)  # doctest: +SKIP
    """
    prepare_inputs(model, x, y, eps)
    x_surrogate, y_surrogate, eps = prepare_inputs(surrogate, x, y, eps)
    if attack is None:
        x_adv = pgd(surrogate, x_surrogate, y_surrogate, eps, steps=20, seed=0)
    else:
        x_adv = attack(surrogate, x_surrogate, y_surrogate)
    x_adv = x_adv.to(device=x.device, dtype=x.dtype)
    return project_linf(x_adv, x, eps).detach()
