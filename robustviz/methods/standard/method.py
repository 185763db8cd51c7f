"""The baselines: standard training (``ce``) and adversarial training (``pgd_at``,
``fgsm_at``, ``fgsm_rs``).

Papers: Madry et al. 2018, https://arxiv.org/abs/1706.06083; Goodfellow et al. 2015,
https://arxiv.org/abs/1412.6572; Wong, Rice & Kolter 2020, https://arxiv.org/abs/2001.03994.
Formulas, settings and pitfalls: README.md in this folder.

All three adversarial-training baselines solve Madry et al.'s saddle-point problem

    min_theta  E_(x,y) [ max_{||delta||_inf <= eps} CE(f_theta(x + delta), y) ]

and differ only in how the inner maximisation is approximated:

* ``pgd_at``  (Madry et al. 2018): PGD with a random start, ``k`` steps of size ``a``.
* ``fgsm_at`` (Goodfellow et al. 2015): one signed step of size ``eps`` from ``x``.
  Prone to catastrophic overfitting / gradient masking at large eps.
* ``fgsm_rs`` (Wong, Rice & Kolter 2020, "Fast is better than free"): a uniform random
  start in the eps-ball, one step of size ``1.25 eps``, projection back to the ball.

So one class, ``AdversarialTraining``, covers all three with different settings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..._precision import at_least_float32
from ...attacks import pgd
from ...attacks.core import crafting_batchnorm
from ..base import FIRST_STEP, AttackingMethod, Batch, Method, Step, StepOutput


class CrossEntropy(Method):
    """Standard training: minimise the mean cross-entropy of the clean batch, ``(1/B) sum_i CE(f(x_i), y_i)``.

    Args:
        eps: unused (every recipe's method takes it).

    Logged terms: ``ce``.

    Example:
        >>> out = CrossEntropy().loss(model, Batch(x, y))  # doctest: +SKIP
    """

    key = "ce"

    def __init__(self, eps: float | None = None) -> None:
        super().__init__()

    def loss(self, model: nn.Module, batch: Batch, step: Step = FIRST_STEP) -> StepOutput:
        scores = model(batch.x)
        loss = F.cross_entropy(at_least_float32(scores), batch.y)
        return StepOutput(loss, scores, {"ce": loss.detach()})


class AdversarialTraining(AttackingMethod):
    """Adversarial training: train on examples crafted by L-inf PGD against the current model.

    Loss per batch: ``(1 - w) * CE(f(x_adv), y) + w * CE(f(x), y)`` with ``w = clean_weight``
    (0 in Madry et al. and Wong et al.).

    The training attack runs with the model in eval mode (robustviz's attack contract) and,
    by default, BatchNorm's running statistics (``attack_bn="eval"``, Madry et al.'s TF code);
    ``attack_bn="train"`` normalises with the batch's own statistics while crafting, as Wong
    et al. and Rice et al. do (without their side effect of moving the running statistics).

    Args:
        eps: L-inf budget in [0, 1] pixel units.
        steps: attack steps (1 for the FGSM variants).
        step_size: step in [0, 1] units at full eps (default ``2.5 * eps / steps``).
        random_start: start from a uniform point of the eps-ball.
        clean_weight: weight of the clean cross-entropy in the loss.
        eps_ramp: fraction of training over which eps (and the step) grow linearly from
            0 to their full values; 0 disables the ramp. A ramp helps small networks
            start learning at MNIST's eps = 0.3 [robustviz choice, not in Madry et al.].
        attack_bn: BatchNorm mode while crafting, ``"eval"`` or ``"train"`` (see above).

    Logged terms: ``adv_ce``, ``eps`` (the budget in use) and, when ``clean_weight > 0``,
    ``clean_ce``.

    Example:
        >>> method = AdversarialTraining(eps=0.3, steps=10, step_size=0.075)
        >>> out = method.loss(model, Batch(x, y))  # doctest: +SKIP
    """

    key = "adversarial_training"

    def __init__(
        self,
        eps: float,
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        clean_weight: float = 0.0,
        eps_ramp: float = 0.0,
        attack_bn: str = "eval",
    ) -> None:
        super().__init__(eps, steps, step_size, eps_ramp, attack_bn)
        if not 0.0 <= clean_weight <= 1.0:
            raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight}")
        self.random_start = random_start
        self.clean_weight = clean_weight

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: Step = FIRST_STEP) -> torch.Tensor:
        """The training-time adversarial examples for a batch."""
        factor = self.ramp_factor(step)
        with crafting_batchnorm(model, self.attack_bn):
            return pgd(
                model, x, y, self.eps * factor, steps=self.steps, step_size=self.step_size * factor,
                random_start=self.random_start,
            )

    def loss(self, model: nn.Module, batch: Batch, step: Step = FIRST_STEP) -> StepOutput:
        x, y = batch.x, batch.y
        x_adv = self.craft(model, x, y, step)
        scores_adv = model(x_adv)
        adv_ce = F.cross_entropy(at_least_float32(scores_adv), y)
        terms = {"adv_ce": adv_ce.detach(), "eps": torch.tensor(self.eps * self.ramp_factor(step))}
        loss = adv_ce
        if self.clean_weight > 0:
            clean_ce = F.cross_entropy(at_least_float32(model(x)), y)
            loss = (1 - self.clean_weight) * adv_ce + self.clean_weight * clean_ce
            terms["clean_ce"] = clean_ce.detach()
        return StepOutput(loss, scores_adv, terms)
