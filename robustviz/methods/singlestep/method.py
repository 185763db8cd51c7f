"""SAT-R1 / R2 / R3: single-step adversarial training with regularisers against gradient masking.

Paper: Vivek B.S. & R. Venkatesh Babu 2020, "Regularizers for Single-step Adversarial
Training", https://arxiv.org/abs/2002.00614; implemented from the authors' code
``val-iisc/SAT-Rx``. Formulas, settings and pitfalls: README.md in this folder.

FGSM adversarial training is cheap but can become *pseudo-robust*: the
model bends its loss surface so that its own FGSM examples are weak (gradient masking,
"catastrophic overfitting"). Each method adds one cheap penalty that masking would raise:

* ``sat_r1``: FGSM vs I-FGSM logits of the batch's last image must agree.
* ``sat_r2``: FGSM vs R-FGSM (random corner, then FGSM) logits must agree.
* ``sat_r3``: the loss at a small step along one adversarial ray must stay below ``tau``
  times the loss at the full step.

One training step, as in the authors' code (README.md, "The update step"):

1. build the adversarial samples with the model in **eval mode** (``eval_mode`` restores
   every submodule's mode; BatchNorm running statistics are not touched), in float32 even
   under autocast (README.md, "Mixed precision"), with the true labels;
2. run **one** train-mode forward pass over the concatenated samples (``B + 1`` rows for
   R1, ``2B`` for R2 and R3), so BatchNorm batch statistics mix the sample types
   (README.md, "BatchNorm modes");
3. the loss of ``robustviz.methods.singlestep.loss``. The samples are constants (no gradient
   flows into them and no second-order graph is built); there is no clean-sample term and
   ``lam`` is constant (no ramp).

The sample generators are plain functions, usable on their own in notebooks.

Recipes (``RECIPES``; README.md, "Settings and their sources"). Every one feeds the network raw [0, 1] pixels
(``input_norm="none"``, the authors' code has mean 0 and std 1), so the authors' learning
rates mean what they meant there, and keeps the epoch with the best held-out I-FGSM-3
accuracy (``monitor_attack="ifgsm"``, ``monitor_steps=3``, ``rollback=True``), the authors'
model selection:

* ``full``: the authors' setup. MNIST: LeNet+ (no BN), batch 32, 20 epochs, SGD momentum
  0.9, weight decay 5e-4, lr 0.01 (R1, R2) or 0.05 (R3). CIFAR-10: the authors' WRN-28-10
  (``wrn28_10_satrx``: conv biases, Xavier init), batch 64, 100 epochs, same SGD with lr 0.1,
  random crop + flip. Both with the step schedule /5, /25, /125 (``step_milestones``).
* ``quick`` (mnist): the same LeNet+, optimiser, hyperparameters and step schedule over 4
  epochs (the rate drops after the first half and again after the third quarter), minutes
  on a CPU. ``quick`` (cifar) keeps the shared small-CNN setting and uses the CIFAR-10
  hyperparameters; ``toy`` uses the constructors' defaults.

Deviations: the authors hold out 10k validation images (50k/10k MNIST, 40k/10k CIFAR-10);
``fit`` holds out ``val_size`` images (500 quick, 1,000 full). On CUDA ``fit`` runs the
update pass under autocast (the authors used float32); the samples are always crafted in
float32.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from torch import nn

from ..._checks import check_eps
from ...attacks import fgsm, pgd
from ...attacks.core import (
    crafting_batchnorm,
    eval_mode,
    input_gradient,
    prepare_inputs,
    project_linf,
    unprojected_step,
)
from ...attacks.losses import cross_entropy
from ..base import FIRST_STEP, Batch, Method, Step, StepOutput
from .loss import check_r3_settings, sat_r1_loss, sat_r2_loss, sat_r3_loss

__all__ = [
    "SATR1", "SATR2", "SATR3", "fgsm_sample", "ifgsm_sample", "random_corner",
    "sat_r1_samples", "sat_r2_samples", "sat_r3_samples",
]


# ---------------------------------------------------------------------------------------
# Sample generators (README.md, "The formulas"). Inputs ``x`` [B, ...] in [0, 1], labels ``y`` [B], budgets
# in [0, 1] pixel units. Outputs are detached, on ``x``'s device and dtype.
# ---------------------------------------------------------------------------------------


def fgsm_sample(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM as in the authors' code: ``clip(x + eps * sign(grad_x CE))``, no random start.

    Crafted in eval mode and float32.

    Args:
        model: the classifier. x: inputs ``[B, ...]`` in [0, 1]. y: labels ``[B]``.
        eps: L-inf budget in [0, 1] pixel units.
    Returns:
        ``x_fgsm`` ``[B, ...]`` with ``|x_fgsm - x| <= eps``, in [0, 1].

    Example:
        >>> x_fgsm = fgsm_sample(model, x, y, eps=0.3)  # doctest: +SKIP
    """
    with _full_precision(x):
        return fgsm(model, x, y, eps, loss="ce")


def ifgsm_sample(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int) -> torch.Tensor:
    """I-FGSM: ``steps`` signed steps of size ``eps / steps`` from ``x``, each followed by a clip.

    The authors clip only to [0, 1]: ``steps * (eps / steps) = eps`` already bounds the
    distance. Here each step is also clipped to the eps-ball, which changes nothing except
    float rounding, so I-FGSM is PGD without random start and with step ``eps / steps``.
    Crafted in eval mode and float32.

    Args:
        model: the classifier. x: inputs ``[B, ...]`` in [0, 1]. y: labels ``[B]``.
        eps: L-inf budget in [0, 1] pixel units.
        steps: K, the number of steps (>= 1).
    Returns:
        ``x_ifgsm`` ``[B, ...]`` with ``|x_ifgsm - x| <= eps``, in [0, 1].

    Example:
        >>> x_ifgsm = ifgsm_sample(model, x, y, eps=0.3, steps=10)  # doctest: +SKIP
    """
    if int(steps) != steps or steps < 1:
        raise ValueError(f"I-FGSM needs an integer number of steps >= 1, got {steps}")
    eps = check_eps(eps)
    with _full_precision(x):
        return pgd(model, x, y, eps, steps=int(steps), step_size=eps / steps, random_start=False)


def random_corner(x: torch.Tensor, alpha: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The random step of SAT-R2/R3: ``x + alpha * sign(n)`` with ``n ~ N(0, I)``.

    A random corner of the L-inf ball of radius ``alpha``, **not** clipped to [0, 1] (R2
    takes its gradient there; R3 clips it first). Noise comes from ``generator`` (drawn on
    the CPU, so a seeded call gives the same corner on any device) or, if ``None``, from the
    global torch RNG on ``x``'s device (which ``fit`` reseeds every epoch).

    Args:
        x: inputs ``[B, ...]`` in [0, 1].
        alpha: the step, in [0, 1] pixel units.
        generator: a seeded CPU generator, or ``None`` for the global RNG.
    Returns:
        a tensor of ``x``'s shape, device and dtype.

    Example:
        >>> random_corner(torch.zeros(2, 3), 0.1).abs().unique()
        tensor([0.1000])
    """
    alpha = check_eps(alpha, "alpha")
    if generator is not None:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    else:
        noise = torch.randn(x.shape, dtype=x.dtype, device=x.device)
    return x + alpha * noise.sign()


def sat_r1_samples(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, n_multistep: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The SAT-R1 samples: FGSM of every image, I-FGSM of the last ``n`` images.

    The authors use ``n = 1``: the last image of the (shuffled) batch (README.md, "One I-FGSM
    sample per batch"). A batch smaller than ``n_multistep`` uses all its images.

    Args:
        model: the classifier. x: inputs ``[B, ...]`` in [0, 1]. y: labels ``[B]``.
        eps: L-inf budget in [0, 1] pixel units.
        steps: I-FGSM steps.
        n_multistep: n, the images (the last of the batch) that get an I-FGSM sample.
    Returns:
        ``(x_fgsm [B, ...], x_ifgsm [n, ...])``, both within ``eps`` of ``x`` and in [0, 1].

    Example:
        >>> x_fgsm, x_ifgsm = sat_r1_samples(model, x, y, eps=0.3, steps=10)  # doctest: +SKIP
    """
    if int(n_multistep) != n_multistep or n_multistep < 1:
        raise ValueError(f"n_multistep must be an integer >= 1, got {n_multistep}")
    n = min(int(n_multistep), x.shape[0])
    x_fgsm = fgsm_sample(model, x, y, eps)
    x_ifgsm = ifgsm_sample(model, x[-n:], y[-n:], eps, steps)
    return x_fgsm, x_ifgsm


def sat_r2_samples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    project: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The SAT-R2 samples: FGSM of ``x`` and "R-FGSM" of a random corner.

    ``x_r = x + alpha * sign(n)`` (not clipped), then, from **one** eval-mode gradient pass
    over ``cat(x, x_r)``:

    * ``x_fgsm  = clip(x   + eps * sign(grad at x))``
    * ``x_rfgsm = clip(x_r + eps * sign(grad at x_r))``, with the full ``eps`` (not
      ``eps - alpha``) and, by default, **no projection**: ``|x_rfgsm - x|`` reaches
      ``eps + alpha`` (0.31 on MNIST, 10/255 on CIFAR-10), as in the authors' code.

    ``project=True`` clips ``x_rfgsm`` to the eps-ball around ``x`` instead. That is a
    different method (README.md, "Samples outside the ε-ball"): its samples respect the threat
    model, the authors' do not.

    Args:
        model: the classifier. x: inputs ``[B, ...]`` in [0, 1]. y: labels ``[B]``.
        eps: L-inf budget in [0, 1] pixel units.
        alpha: the random corner step, in [0, 1] pixel units.
        project: clip ``x_rfgsm`` to the eps-ball.
        generator: a seeded CPU generator for the corner, or ``None`` for the global RNG.
    Returns:
        ``(x_fgsm, x_rfgsm)``, each ``[B, ...]`` in [0, 1].

    Example:
        >>> x_fgsm, x_rfgsm = sat_r2_samples(model, x, y, eps=0.3, alpha=0.01)  # doctest: +SKIP
    """
    x_work, y_work, eps = prepare_inputs(model, x, y, eps)
    x_r = random_corner(x_work, alpha, generator)
    signs = _gradient_sign(model, torch.cat([x_work, x_r]), torch.cat([y_work, y_work]))
    batch = x_work.shape[0]
    x_fgsm = unprojected_step(x_work, signs[:batch], eps)  # from x: inside the ball
    x_rfgsm = unprojected_step(x_r, signs[batch:], eps)  # from the corner: leaves it by up to alpha
    if project:
        x_rfgsm = project_linf(x_rfgsm, x_work, eps)
    return _like(x_fgsm, x), _like(x_rfgsm, x)


def sat_r3_samples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_lo: float,
    eps_hi: float,
    alpha: float,
    project: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The SAT-R3 samples: a small and a full step along one adversarial ray.

    ``x_r = clip(x + alpha * sign(n))``, ``g = sign(grad CE at x_r)`` (one eval-mode pass,
    shared by both samples), ``x_lo = clip(x_r + eps_lo * g)``, ``x_hi = clip(x_r + eps_hi * g)``.
    By default nothing is projected, so ``|x_hi - x|`` reaches ``eps_hi + alpha`` (the
    authors' code). ``project=True`` clips ``x_lo`` to the ``eps_lo``-ball and ``x_hi`` to the
    ``eps_hi``-ball around ``x``: a different method (README.md, "Samples outside the
    ε-ball"), whose samples are no longer exactly on one ray.

    Args:
        model: the classifier. x: inputs ``[B, ...]`` in [0, 1]. y: labels ``[B]``.
        eps_lo: the small step, eps_hi: the full step, both in [0, 1] pixel units.
        alpha: the random corner step, in [0, 1] pixel units.
        project: clip each sample to its own ball.
        generator: a seeded CPU generator for the corner, or ``None`` for the global RNG.
    Returns:
        ``(x_lo, x_hi)``, each ``[B, ...]`` in [0, 1].

    Example:
        >>> x_lo, x_hi = sat_r3_samples(model, x, y, eps_lo=0.1, eps_hi=0.3, alpha=0.01)  # doctest: +SKIP
    """
    eps_lo, eps_hi = check_eps(eps_lo, "eps_lo"), check_eps(eps_hi, "eps_hi")
    if not eps_lo < eps_hi:
        raise ValueError(f"SAT-R3 needs eps_lo < eps_hi, got eps_lo={eps_lo:g}, eps_hi={eps_hi:g}")
    x_work, y_work, _ = prepare_inputs(model, x, y, eps_hi)
    x_r = random_corner(x_work, alpha, generator).clamp(0.0, 1.0)
    g = _gradient_sign(model, x_r, y_work)
    x_lo = unprojected_step(x_r, g, eps_lo)  # both leave their balls by up to alpha
    x_hi = unprojected_step(x_r, g, eps_hi)
    if project:
        x_lo, x_hi = project_linf(x_lo, x_work, eps_lo), project_linf(x_hi, x_work, eps_hi)
    return _like(x_lo, x), _like(x_hi, x)


def _gradient_sign(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``sign(grad_x CE)`` per sample, in eval mode and float32; no parameter gradients."""
    with eval_mode(model), _full_precision(x):
        grad, _ = input_gradient(model, x, y, cross_entropy)
    return grad.sign()


def _full_precision(x: torch.Tensor) -> AbstractContextManager:
    """Autocast off: a bf16/fp16 input gradient can underflow to sign(0) = 0 (README.md, "Mixed precision")."""
    return torch.autocast(device_type=x.device.type, enabled=False)




def _like(x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return x_adv.detach().to(device=x.device, dtype=x.dtype)


# ---------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------


class SATR1(Method):
    """SAT-R1 training: FGSM-AT plus ``lam * ||f(FGSM(x_j)) - f(I-FGSM(x_j))||^2`` on the last image(s).

    ``L = CE(f(x_fgsm), y) + lam * (1/n) sum_j ||f(x_fgsm_j) - f(x_ifgsm_j)||^2`` (``sat_r1_loss``).

    Args:
        eps: L-inf budget in [0, 1] pixel units (0.3 MNIST, 8/255 CIFAR-10).
        steps: I-FGSM steps ``K`` of size ``eps / K`` (10 MNIST, 3 CIFAR-10).
        lam: regulariser weight (0.2 in the authors' code, both datasets).
        n_multistep: images (the last of the batch) that get an I-FGSM sample; the authors
            use 1, more lowers the variance of the penalty (README.md, "One I-FGSM sample per
            batch"; robustviz option).
        attack_bn: BatchNorm statistics while crafting: ``"eval"`` (the authors') or ``"train"``.

    Logged terms: ``fgsm_ce`` and ``r1`` (the logit gap, before ``lam``).

    Example:
        >>> method = SATR1(eps=0.3, steps=10, lam=0.2)
        >>> out = method.loss(model, Batch(x, y))  # doctest: +SKIP
    """

    key = "sat_r1"

    def __init__(self, eps: float, steps: int = 3, lam: float = 0.2, n_multistep: int = 1,
                 attack_bn: str = "eval") -> None:
        super().__init__()
        self.attack_bn = _check_attack_bn(attack_bn)
        self.eps = check_eps(eps)
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps (I-FGSM steps K) must be an integer >= 1, got {steps}")
        if int(n_multistep) != n_multistep or n_multistep < 1:
            raise ValueError(f"n_multistep must be an integer >= 1, got {n_multistep}")
        _check_lam(lam)
        self.steps, self.lam, self.n_multistep = int(steps), float(lam), int(n_multistep)

    def loss(self, model: nn.Module, batch: Batch, step: Step = FIRST_STEP) -> StepOutput:
        x, y = batch.x, batch.y
        with crafting_batchnorm(model, self.attack_bn):
            x_fgsm, x_ifgsm = sat_r1_samples(model, x, y, self.eps, self.steps, self.n_multistep)
        scores = model(torch.cat([x_fgsm, x_ifgsm]))
        loss, parts = sat_r1_loss(scores, y, self.lam, n_multistep=x_ifgsm.shape[0])
        return StepOutput(loss, scores[: y.shape[0]], _detached(parts))


class SATR2(Method):
    """SAT-R2 training: FGSM-AT plus ``lam * mean_i ||f(x_fgsm_i) - f(x_rfgsm_i)||^2``.

    ``L = CE(f(x_fgsm), y) + lam * (1/B) sum_i ||f(x_fgsm_i) - f(x_rfgsm_i)||^2`` (``sat_r2_loss``).

    Args:
        eps: L-inf budget in [0, 1] pixel units.
        alpha: size of the random corner step (0.01 MNIST, 2/255 CIFAR-10). ``None``: ``eps / 4``,
            the CIFAR-10 ratio [inferred for other datasets].
        lam: regulariser weight (5 MNIST, 25 CIFAR-10; README.md, "λ depends on the logit scale").
        project: clip the R-FGSM sample to the eps-ball (a different method: README.md,
            "Samples outside the ε-ball"); the default ``False`` is the authors' code (distance
            up to ``eps + alpha``).
        attack_bn: BatchNorm statistics while crafting: ``"eval"`` (the authors') or ``"train"``.

    Logged terms: ``fgsm_ce`` and ``r2`` (the logit gap, before ``lam``).

    Example:
        >>> method = SATR2(eps=0.3, alpha=0.01, lam=5.0)
        >>> out = method.loss(model, Batch(x, y))  # doctest: +SKIP
    """

    key = "sat_r2"

    def __init__(self, eps: float, alpha: float | None = None, lam: float = 25.0, project: bool = False,
                 attack_bn: str = "eval") -> None:
        super().__init__()
        self.attack_bn = _check_attack_bn(attack_bn)
        self.eps = check_eps(eps)
        self.alpha = check_eps(self.eps / 4 if alpha is None else alpha, "alpha")
        _check_lam(lam)
        self.lam, self.project = float(lam), bool(project)

    def loss(self, model: nn.Module, batch: Batch, step: Step = FIRST_STEP) -> StepOutput:
        x, y = batch.x, batch.y
        with crafting_batchnorm(model, self.attack_bn):
            x_fgsm, x_rfgsm = sat_r2_samples(model, x, y, self.eps, self.alpha, self.project)
        scores = model(torch.cat([x_fgsm, x_rfgsm]))
        loss, parts = sat_r2_loss(scores, y, self.lam)
        return StepOutput(loss, scores[: y.shape[0]], _detached(parts))


class SATR3(Method):
    """SAT-R3 training: ``CE_hi + lam * max(0, CE_lo - tau * CE_hi)`` on one adversarial ray.

    ``CE_lo`` and ``CE_hi`` are the batch-mean cross-entropies at the small and the full step
    (``sat_r3_loss``).

    Args:
        eps: the full step ``eps_hi`` in [0, 1] pixel units (0.3 MNIST, 8/255 CIFAR-10).
        eps_lo: the small step (0.1 MNIST, 2/255 CIFAR-10). ``None``: ``eps / 4``, the
            CIFAR-10 ratio [inferred for other datasets]. Must satisfy ``0 < eps_lo < eps``.
        alpha: random corner step (0.01 MNIST, 2/255 CIFAR-10). ``None``: ``eps / 4``.
        lam: hinge weight (1 in the authors' code).
        tau: ratio threshold (0.4 MNIST, 0.6 CIFAR-10); ``lam * tau < 1`` is required.
        project: clip each sample to its own eps-ball (a different method: README.md, "Samples
            outside the ε-ball").
        attack_bn: BatchNorm statistics while crafting: ``"eval"`` (the authors') or ``"train"``.

    Logged terms: ``ce_lo``, ``ce_hi``, ``r3_hinge`` and ``r3_active`` (the fraction of
    batches whose hinge is on).

    Example:
        >>> method = SATR3(eps=0.3, eps_lo=0.1, alpha=0.01, lam=1.0, tau=0.4)
        >>> out = method.loss(model, Batch(x, y))  # doctest: +SKIP
    """

    key = "sat_r3"

    def __init__(
        self,
        eps: float,
        eps_lo: float | None = None,
        alpha: float | None = None,
        lam: float = 1.0,
        tau: float = 0.6,
        project: bool = False,
        attack_bn: str = "eval",
    ) -> None:
        super().__init__()
        self.attack_bn = _check_attack_bn(attack_bn)
        self.eps = check_eps(eps)
        self.eps_lo = check_eps(self.eps / 4 if eps_lo is None else eps_lo, "eps_lo")
        if not 0 < self.eps_lo < self.eps:
            raise ValueError(f"SAT-R3 needs 0 < eps_lo < eps (eps_hi), got eps_lo={self.eps_lo:g}, "
                             f"eps={self.eps:g}")
        self.alpha = check_eps(self.eps / 4 if alpha is None else alpha, "alpha")
        check_r3_settings(lam, tau)
        self.lam, self.tau, self.project = float(lam), float(tau), bool(project)

    def loss(self, model: nn.Module, batch: Batch, step: Step = FIRST_STEP) -> StepOutput:
        x, y = batch.x, batch.y
        with crafting_batchnorm(model, self.attack_bn):
            x_lo, x_hi = sat_r3_samples(model, x, y, self.eps_lo, self.eps, self.alpha, self.project)
        scores = model(torch.cat([x_lo, x_hi]))
        loss, parts = sat_r3_loss(scores, y, self.lam, self.tau)
        terms = _detached(parts)
        terms["r3_active"] = (terms["r3_hinge"] > 0).float()
        return StepOutput(loss, scores[y.shape[0]:], terms)


def _check_attack_bn(attack_bn: str) -> str:
    crafting_batchnorm(nn.Identity(), attack_bn)  # raises on an unknown mode
    return attack_bn


def _check_lam(lam: float) -> None:
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam}")


def _detached(parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: value.detach() for name, value in parts.items()}


# ---------------------------------------------------------------------------------------
