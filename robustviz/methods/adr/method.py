"""ADR: adversarial training plus regularisers on the features ``z = model.features(x)``.

Paper: Bui et al. 2020, https://arxiv.org/abs/2007.05123. Formulas, settings and pitfalls:
README.md in this folder.

    L = L_base + lambda_lc L_lc + lambda_gc L_gc + lambda_ent L_ent + lambda_vat L_vat
               + lambda_gs L_gs

* local compactness L_lc: each adversarial feature stays near its own clean feature;
* global compactness L_gc: ... and near the clean features of its whole class in the batch;
* clustering assumption L_ent + L_vat: confident adversarial predictions that agree with the
  clean ones, so decision boundaries lie in low-density regions of feature space.

``L_base`` is PGD-AT (the TF code's ``0.5 CE(x) + 0.5 CE(x_adv)``) or TRADES.
Such regularisers can mask gradients: evaluate ADR models
with AutoAttack or multi-targeted PGD, not only the PGD the model was trained against.

Not to be confused with "ADR" = Annealing self-Distillation Rectification (Wu et al. 2023).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..._precision import at_least_float32
from ...geometry import kl_per_sample
from ..base import FIRST_STEP, Batch, Method, Step, StepOutput
from ..standard.method import AdversarialTraining
from ..trades.loss import trades_loss
from ..trades.method import TRADES
from .loss import DEFAULT_SCALE, ADRRegularizer

BASES = ("pgd_at", "trades")
# (alpha, beta) per base: clean-CE weight and weight of the robust term.
_DEFAULT_BASE_WEIGHTS = {"pgd_at": (0.5, 0.5), "trades": (1.0, 6.0)}


class ADR(Method):
    """ADR training: a base adversarial loss (PGD-AT or TRADES) plus the weighted ADR regularisers.

    ``L = L_base + ADRRegularizer(z, z_adv, logits, logits_adv, y)``.

    Base losses (README.md, "The formulas"):

    * ``base="pgd_at"``: ``alpha * CE(f(x), y) + beta * CE(f(x_adv), y)``, ``x_adv`` from
      L-inf PGD with a uniform random start (``AdversarialTraining.craft``). Default
      ``alpha = beta = 0.5``, the TF code the ECCV results most likely used [inferred];
      the PyTorch port uses 1/1 and the authors' later baseline ``alpha = 0``.
    * ``base="trades"``: ``CE(f(x), y) + beta * KL(p(x) || p(x_adv))`` (``trades_loss``),
      ``x_adv`` from the TRADES KL attack; default ``beta = 6`` (the authors' ASCL setting).
      The clean-CE weight is 1 here, as in ``adr_trades``; ``alpha`` must be left at
      ``None`` or 1 (README.md, "TRADES attack direction").

    Features: ``z = model.features(x)``, the input of the linear head. For the ResNets and
    WideResNets this is the layer the official code regularises (512-d ResNet-18, 640-d
    WRN). For ``smallcnn`` it is the 200-d penultimate FC layer (post-ReLU), whereas the
    official MNIST code used the flattened 1024-d conv output before the FC head [robustviz
    choice: one contract, ``features``, for every method; README.md, "Which layer"].
    Distances are means over the dims, so the lambdas do not depend on the width.

    BatchNorm while crafting (``attack_bn``): the TF code and the PyTorch port differ
    (README.md, "BatchNorm while crafting"); each recipe follows the code it cites. The clean
    and adversarial batches go through the model in two forward passes.

    Args:
        eps: L-inf budget in [0, 1] pixel units (use exact fractions: 8/255, not 0.031).
        base: ``"pgd_at"`` or ``"trades"``.
        steps, step_size: training-attack steps and step at full eps (default
            ``2.5 * eps / steps``).
        random_start: uniform start in the ball (PGD-AT base only).
        init_std: Gaussian start of the KL attack (TRADES base only).
        eps_ramp: fraction of training over which eps and the step grow from 0
            [robustviz choice for CPU training, 0 = off].
        detach_clean: ``True`` (the method): the clean features are a fixed target in L_lc
            and L_gc. ``False`` [robustviz option] lets the gradient move them as well; the
            quick profiles use it (README.md, "Feature blow-up without BatchNorm").
        alpha: clean-CE weight (default per base, see above).
        beta: weight of the robust term: adversarial CE (PGD-AT) or KL (TRADES).
        lambda_lc, lambda_gc, lambda_ent, lambda_vat, lambda_gs: regulariser weights
            (default 1, 1, 1, 1, 0: the code's ADR; L_gs is experimental).
        scale: ``s`` of the label weights (0.99: different-class pairs weigh -1/99).
        attack_bn: ``"eval"`` (running statistics) or ``"train"`` (batch statistics, running
            statistics untouched) while crafting.

    Logged terms: the base parts (``clean_ce``, ``adv_ce`` or ``natural_ce``, ``kl``), the
    unweighted regularisers ``lc``, ``gc``, ``ent``, ``vat``, ``gs``, and for reading them
    ``vat_kl`` (L_vat without its constant clean entropy), ``z_norm`` (mean L2 norm of the
    adversarial features; README.md, "Unbounded repulsion") and ``eps``.
    ``StepOutput.scores`` are the adversarial scores (PGD-AT base) or the clean ones
    (TRADES base), the samples of each base's cross-entropy.

    Example:
        >>> method = ADR(eps=8 / 255, steps=10, step_size=2 / 255)
        >>> out = method.loss(model, Batch(x, y))  # doctest: +SKIP
        >>> sorted(out.terms)  # doctest: +SKIP
        ['adv_ce', 'clean_ce', 'eps', 'ent', 'gc', 'gs', 'lc', 'vat', 'vat_kl', 'z_norm']
    """

    key = "adr"

    def __init__(
        self,
        eps: float,
        base: str = "pgd_at",
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        init_std: float = 0.001,
        eps_ramp: float = 0.0,
        alpha: float | None = None,
        beta: float | None = None,
        lambda_lc: float = 1.0,
        lambda_gc: float = 1.0,
        lambda_ent: float = 1.0,
        lambda_vat: float = 1.0,
        lambda_gs: float = 0.0,
        scale: float = DEFAULT_SCALE,
        detach_clean: bool = True,
        attack_bn: str = "eval",
    ) -> None:
        super().__init__()
        if base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {base!r}")
        default_alpha, default_beta = _DEFAULT_BASE_WEIGHTS[base]
        self.alpha = default_alpha if alpha is None else float(alpha)
        self.beta = default_beta if beta is None else float(beta)
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got {self.alpha} and {self.beta}")
        if base == "trades" and self.alpha != 1.0:
            raise ValueError("the TRADES base has a fixed clean-CE weight of 1; leave alpha=None")
        self.base = base
        self.eps = eps
        if base == "pgd_at":
            self.attacker: AdversarialTraining | TRADES = AdversarialTraining(
                eps, steps=steps, step_size=step_size, random_start=random_start, eps_ramp=eps_ramp,
                attack_bn=attack_bn)
        else:
            self.attacker = TRADES(eps, steps=steps, step_size=step_size, beta=self.beta,
                                   init_std=init_std, eps_ramp=eps_ramp, attack_bn=attack_bn)
        self.regularizer = ADRRegularizer(lambda_lc, lambda_gc, lambda_ent, lambda_vat, lambda_gs, scale,
                                          detach_clean)

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: Step = FIRST_STEP) -> torch.Tensor:
        """The base method's training-time adversarial examples (eps ramp included)."""
        return self.attacker.craft(model, x, y, step)

    def base_loss(
        self, clean_logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``L_base`` and its logged parts (README.md, "The formulas", "Base loss")."""
        if self.base == "trades":
            parts = trades_loss(clean_logits, adv_logits, y, self.beta)
            return parts.loss, {"natural_ce": parts.natural_ce.detach(), "kl": parts.kl.detach()}
        clean_ce = F.cross_entropy(at_least_float32(clean_logits), y)
        adv_ce = F.cross_entropy(at_least_float32(adv_logits), y)
        loss = self.alpha * clean_ce + self.beta * adv_ce
        return loss, {"clean_ce": clean_ce.detach(), "adv_ce": adv_ce.detach()}

    def loss(self, model: nn.Module, batch: Batch, step: Step = FIRST_STEP) -> StepOutput:
        x, y = batch.x, batch.y
        if not (hasattr(model, "features") and hasattr(model, "head")):
            raise TypeError(
                f"ADR regularises model.features(x), but {type(model).__name__} has no features() "
                "and head(); build the model with robustviz.models.build"
            )
        x_adv = self.craft(model, x, y, step)
        z_clean = model.features(x)
        clean_logits = model.head(z_clean)
        z_adv = model.features(x_adv)
        adv_logits = model.head(z_adv)
        base, terms = self.base_loss(clean_logits, adv_logits, y)
        regularizer, parts = self.regularizer(z_clean, z_adv, clean_logits, adv_logits, y)
        terms.update({name: value.detach() for name, value in parts._asdict().items()})
        terms.update(self.monitoring_terms(z_adv, clean_logits, adv_logits))
        terms["eps"] = torch.tensor(self.eps * self.attacker.ramp_factor(step))
        scores = clean_logits if self.base == "trades" else adv_logits
        return StepOutput(base + regularizer, scores, terms)

    @torch.no_grad()
    def monitoring_terms(
        self, z_adv: torch.Tensor, clean_logits: torch.Tensor, adv_logits: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Logged only: ``vat_kl`` and ``z_norm``."""
        return {
            "vat_kl": kl_per_sample(clean_logits, adv_logits).mean(),
            "z_norm": z_adv.float().flatten(1).norm(dim=1).mean(),
        }
