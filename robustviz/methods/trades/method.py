"""TRADES training: keep the clean cross-entropy and add a KL term that makes the prediction
on the worst point of the eps-ball agree with the clean one.

Paper: Zhang et al. 2019, https://arxiv.org/abs/1901.08573. Formulas, settings and pitfalls:
README.md in this folder.

    L = CE(f(x), y) + beta * mean_i KL( p(x_i) || p(x_i') ),
    x' = argmax_{x' in ball(x, eps)} KL( p(x) || p(x') )     (robustviz.attacks.trades)

Unlike PGD-AT the attack is label-free and the model never trains on CE of ``x'``: the
regulariser pushes the decision boundary away from the data (paper Sec. 4).
"""

from __future__ import annotations

import torch
from torch import nn

from ...attacks.core import crafting_batchnorm
from ...attacks.trades import trades_attack
from ..base import FIRST_STEP, AttackingMethod, Batch, Step, StepOutput
from .loss import trades_loss


class TRADES(AttackingMethod):
    """TRADES training: crafts ``x'`` with the KL attack, minimises ``CE + beta * KL``.

    ``L = CE(f(x), y) + beta * (1/B) sum_i KL(p(x_i) || p(x_i'))`` (``trades_loss``).

    Args:
        eps: L-inf budget in [0, 1] pixel units.
        steps: KL-attack steps (TRADES: 10 on CIFAR-10, 40 on MNIST).
        step_size: attack step at full eps, [0, 1] units (default ``2.5 * eps / steps``).
        beta: weight of the KL term (``1/lambda`` in the paper; 6 in its headline runs).
        init_std: standard deviation of the attack's Gaussian start (TRADES: 0.001).
        eps_ramp: fraction of training over which eps and the step grow linearly from 0;
            0 disables it. Helps a small CPU network start learning at MNIST's eps = 0.3
            [robustviz choice, not in TRADES; same as ``pgd_at``'s quick profile].
        attack_bn: BatchNorm mode while crafting: ``"eval"`` (running statistics, as the
            official code, which calls ``model.eval()``) or ``"train"`` (batch statistics).

    ``StepOutput.scores`` are the *clean* scores (TRADES trains its cross-entropy on the
    clean batch), so the logged ``train_acc`` is clean training accuracy. Logged terms:
    ``natural_ce``, ``kl`` (batch mean, nats) and ``eps`` (the eps in use).

    Example:
        >>> method = TRADES(eps=0.3, steps=40, step_size=0.01, beta=6.0)
        >>> out = method.loss(model, Batch(x, y))  # doctest: +SKIP
    """

    key = "trades"

    def __init__(
        self,
        eps: float,
        steps: int = 10,
        step_size: float | None = None,
        beta: float = 6.0,
        init_std: float = 0.001,
        eps_ramp: float = 0.0,
        attack_bn: str = "eval",
    ) -> None:
        super().__init__(eps, steps, step_size, eps_ramp, attack_bn)
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = beta
        self.init_std = init_std

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: Step = FIRST_STEP) -> torch.Tensor:
        """The training-time KL adversarial examples for a batch (global RNG for the start)."""
        factor = self.ramp_factor(step)
        with crafting_batchnorm(model, self.attack_bn):
            return trades_attack(model, x, y, self.eps * factor, steps=self.steps,
                                 step_size=self.step_size * factor, init_std=self.init_std)

    def loss(self, model: nn.Module, batch: Batch, step: Step = FIRST_STEP) -> StepOutput:
        x, y = batch.x, batch.y
        x_adv = self.craft(model, x, y, step)
        clean_logits = model(x)
        adv_logits = model(x_adv)
        parts = trades_loss(clean_logits, adv_logits, y, self.beta)
        terms = {"natural_ce": parts.natural_ce.detach(), "kl": parts.kl.detach(),
                 "eps": torch.tensor(self.eps * self.ramp_factor(step))}
        return StepOutput(parts.loss, clean_logits, terms)
