"""GCE training: the guided complement entropy alone (``gce``) or as the outer loss of PGD-AT (``gce_at``).

Paper: Chen et al. 2019, https://arxiv.org/abs/1903.09799. Formulas, settings and pitfalls:
README.md in this folder.

* ``gce``: minimise the guided complement entropy alone, with no cross-entropy term, as
  the paper and the official code do. The guiding factor ``p_g ** alpha`` is the only thing
  that raises the true class.
* ``gce_at``: Madry-style PGD adversarial training whose outer loss is GCE on the
  adversarial examples [inferred: the paper's adversarial-training setup is unknown;
  README.md, "Training-time attack (`gce_at` only)"]. The inner attack maximises
  cross-entropy by default (the standard strong attack); ``inner_loss="gce"`` maximises GCE
  itself, like the official attack script.

The paper's robustness without adversarial training rests on weak attacks (the official PGD
maximises GCE, whose gradient vanishes at a flat complement: README.md, "Weak attack loss"):
always evaluate these models with cross-entropy and margin PGD as well.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ...attacks import pgd
from ...attacks.core import crafting_batchnorm
from ..base import FIRST_STEP, Batch, Method, Step, StepOutput
from ..standard.method import AdversarialTraining
from .loss import DEFAULT_ALPHA, guided_complement_entropy, normalized_complement_entropy

INNER_LOSSES = ("ce", "margin", "gce")


def require_three_classes(model: nn.Module) -> None:
    """Raise a clear ``ValueError`` if the model has fewer than 3 classes (README.md, "Binary problems").

    Args:
        model: a model with ``num_classes`` (a model without it is let through).

    Example:
        >>> require_three_classes(models.build("mlp", 2, 1))  # doctest: +SKIP
        Traceback (most recent call last):
        ValueError: GCE needs at least 3 classes, ...
    """
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and num_classes < 3:
        raise ValueError(
            f"GCE needs at least 3 classes, but the model has {num_classes} (the complement of a "
            "binary problem is a single class, whose entropy is always 0). On the toy sets use "
            "'blobs' (3 classes), not 'moons'."
        )


class GuidedComplementEntropyTraining(Method):
    """Standard training with the GCE loss instead of cross-entropy.

    ``L = (1/B) sum_i p_g ** alpha * sum_{j != g} q_j log q_j / log(K - 1)`` on the clean
    batch (``guided_complement_entropy``).

    Logged terms: ``gce`` (the loss, in [-1, 0]) and ``complement_entropy`` (the batch's mean
    normalised complement entropy ``H(q) / log(K - 1)``, 1 = flat wrong classes).

    Args:
        eps: unused (every recipe's method takes it; GCE crafts no adversarial examples).
        alpha: guiding-factor exponent (official MNIST value 1/3; the CIFAR value is
            [unknown], third-party ports use 0.2).
        official: use the official code's epsilons and ``log K`` normaliser instead of the
            exact, monotone form (README.md, "Confidence ceiling of the official epsilons").

    Example:
        >>> method = GuidedComplementEntropyTraining(alpha=1 / 3)
        >>> out = method.loss(model, Batch(x, y))  # doctest: +SKIP
    """

    key = "gce"

    def __init__(self, eps: float | None = None, alpha: float = DEFAULT_ALPHA, official: bool = False) -> None:
        super().__init__()
        self.alpha, self.official = alpha, official

    def attach(self, model: nn.Module) -> None:
        require_three_classes(model)

    def loss(self, model: nn.Module, batch: Batch, step: Step = FIRST_STEP) -> StepOutput:
        scores = model(batch.x)
        loss = guided_complement_entropy(scores, batch.y, self.alpha, self.official)
        flatness = normalized_complement_entropy(scores.detach(), batch.y).mean()
        return StepOutput(loss, scores, {"gce": loss.detach(), "complement_entropy": flatness})


class GCEAdversarialTraining(AdversarialTraining):
    """PGD adversarial training with GCE as the outer loss [inferred; README.md, "Training-time attack"].

    Loss per batch: ``(1 - w) * GCE(f(x_adv), y) + w * GCE(f(x), y)`` with
    ``w = clean_weight`` (0: adversarial examples only, as Madry et al.; 0.5: an even mix of
    clean and adversarial loss). ``x_adv`` is crafted by L-inf PGD (random start, model in
    eval mode, see ``AdversarialTraining``) maximising ``inner_loss``.

    Logged terms: ``adv_gce``, ``eps`` (the current, possibly ramped budget) and, when
    ``clean_weight > 0``, ``clean_gce``.

    Args:
        eps, steps, step_size, random_start, clean_weight, eps_ramp, attack_bn: as in
            ``AdversarialTraining``.
        alpha, official: the GCE settings (see ``GuidedComplementEntropyTraining``).
        inner_loss: what PGD maximises: ``"ce"`` (default, the standard strong attack),
            ``"margin"`` (Carlini-Wagner margin) or ``"gce"`` (the GCE loss itself with the
            same ``alpha``/``official``, like the official attack script; weaker).

    Example:
        >>> method = GCEAdversarialTraining(eps=0.3, steps=40, step_size=0.01)
        >>> out = method.loss(model, Batch(x, y))  # doctest: +SKIP
    """

    key = "gce_at"

    def __init__(
        self,
        eps: float,
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        clean_weight: float = 0.0,
        eps_ramp: float = 0.0,
        alpha: float = DEFAULT_ALPHA,
        official: bool = False,
        inner_loss: str = "ce",
        attack_bn: str = "eval",
    ) -> None:
        super().__init__(eps, steps, step_size, random_start, clean_weight, eps_ramp, attack_bn)
        if inner_loss not in INNER_LOSSES:
            raise ValueError(f"unknown inner_loss {inner_loss!r}; choose one of: {', '.join(INNER_LOSSES)}")
        self.alpha, self.official, self.inner_loss = alpha, official, inner_loss

    def attach(self, model: nn.Module) -> None:
        require_three_classes(model)

    def attack_loss(self):
        """The per-sample loss ``(scores [B, K], y [B]) -> [B]`` the training attack maximises."""
        if self.inner_loss != "gce":
            return self.inner_loss
        return partial(guided_complement_entropy, alpha=self.alpha, official=self.official, reduction="none")

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: Step = FIRST_STEP) -> torch.Tensor:
        factor = self.ramp_factor(step)
        with crafting_batchnorm(model, self.attack_bn):
            return pgd(
                model, x, y, self.eps * factor, steps=self.steps, step_size=self.step_size * factor,
                random_start=self.random_start, loss=self.attack_loss(),
            )

    def gce(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return guided_complement_entropy(scores, y, self.alpha, self.official)

    def loss(self, model: nn.Module, batch: Batch, step: Step = FIRST_STEP) -> StepOutput:
        x, y = batch.x, batch.y
        x_adv = self.craft(model, x, y, step)
        scores_adv = model(x_adv)
        adv_gce = self.gce(scores_adv, y)
        terms = {"adv_gce": adv_gce.detach(), "eps": torch.tensor(self.eps * self.ramp_factor(step))}
        loss = adv_gce
        if self.clean_weight > 0:
            clean_gce = self.gce(model(x), y)
            loss = (1 - self.clean_weight) * adv_gce + self.clean_weight * clean_gce
            terms["clean_gce"] = clean_gce.detach()
        return StepOutput(loss, scores_adv, terms)
