"""Transfer (black-box) attack: craft on a surrogate model, apply to the target.

The target model is never differentiated, so masking its gradients does not help it.
A transfer attack beating the white-box attack on the same model is the classic sign
of gradient masking (Athalye, Carlini & Wagner 2018, Sec. 3.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .core import prepare_inputs, project_linf
from .pgd import PGD

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def transfer_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    surrogate: nn.Module,
    attack: Attack | None = None,
) -> torch.Tensor:
    """Adversarial examples crafted white-box on ``surrogate``, to be evaluated on ``model``.

    Args:
        model: the target (only used to check the inputs; never run or differentiated).
        x, y: as for ``pgd``. eps: L-inf budget in [0, 1] units.
        surrogate: another classifier of the same inputs and classes, e.g. a standard
            model trained on the same data.
        attack: attack run on the surrogate, ``attack(surrogate, x, y) -> x_adv``; default
            ``PGD(eps, steps=20, seed=0)``. Its budget should be ``eps``.

    Returns:
        ``x_adv`` inside the eps-ball and [0, 1] (re-projected in case ``attack`` used a
        larger budget), on ``x``'s device and dtype.

    Example:
        >>> x_adv = transfer_attack(drp_model, x, y, 0.3, surrogate=ce_model)  # doctest: +SKIP
    """
    prepare_inputs(model, x, y, eps)
    attack = PGD(eps, steps=20, seed=0) if attack is None else attack
    x_surrogate, y_surrogate, eps = prepare_inputs(surrogate, x, y, eps)
    x_adv = attack(surrogate, x_surrogate, y_surrogate).to(device=x.device, dtype=x.dtype)
    return project_linf(x_adv, x, eps).detach()


@dataclass
class Transfer:
    """Callable form of ``transfer_attack``: ``Transfer(0.3, surrogate)(model, x, y)``."""

    eps: float
    surrogate: nn.Module = field(repr=False)
    attack: Attack | None = None

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return transfer_attack(model, x, y, self.eps, self.surrogate, self.attack)

    @property
    def name(self) -> str:
        return "transfer"
