"""Deep Repulsive Prototypes: regress the features onto fixed, well-separated class prototypes.

Paper: Serban, Poll & Visser 2021, https://arxiv.org/abs/2105.12427. Formulas, settings and
pitfalls: README.md in this folder.

Every class gets a fixed prototype ``p_c`` in the d-dimensional feature space, chosen before
training to be far from the others ("repulsive"); the network is trained only to map each
image onto its class prototype, and predicts with the normalised dot product
``argmax_c < f / ||f||_q, p_c >`` (README.md, "Decision rule"). There is no adversarial
training.

Two recipes (README.md, "Settings and their sources"):

* ``drp``: the idea with well-posed prototypes: ``sphere`` prototypes (the regular simplex
  for K <= d + 1, reached by the optimiser) and HPN's per-sample cosine loss, rule q = 2.
* ``drp_faithful``: the released code: the unbounded L-inf-sum prototype generator, the
  L-inf regression loss with ``PairwiseDistance``'s eps, rule q = inf. It exists for the
  evaluation-pitfalls lesson; attaching it warns with the prototypes' geometry.

The paper's robustness claim rests on PGD against the training loss (README.md, "Attacking
the training loss overestimates robustness"); evaluate these models with attacks on
``model(x)``, the scores, which is what the prototype head makes possible.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..._checks import unknown_name_error
from ..._precision import at_least_float32
from ..base import FIRST_STEP, Batch, Method, Step, StepOutput
from .head import PROTOTYPE_KINDS, PrototypeHead, make_prototypes, prototype_geometry
from .loss import DECISION_NORM, DRP_LOSSES, make_drp_loss

LOSS_TERM_NAMES = {"inf": "linf_dist", "cos": "cos_loss"}


class DRP(Method):
    """DRP training: regression of the features onto fixed, repulsive class prototypes.

    ``L = (1/B) sum_i loss(f(x_i), p_{y_i})`` with the ``"cos"`` or ``"inf"`` loss
    (``robustviz.methods.drp.loss``); prediction ``argmax_c < f / ||f||_q, p_c >``.

    ``attach`` builds the prototypes from ``(prototypes, prototype_seed, prototype_options)``
    for the model's ``num_classes`` and ``feat_dim`` (deterministic: a checkpoint reload
    rebuilds the same buffer before its saved values are loaded) and installs a
    ``PrototypeHead`` with ``q = DECISION_NORM[loss]``. ``loss`` regresses ``features(x)`` onto
    the label's prototype and logs the term under ``linf_dist`` or ``cos_loss``. The
    prototypes are a buffer of the head: fixed, in the checkpoint, not in the optimiser.

    The features must be the output of a linear layer (README.md, "Features must come from a
    linear layer"): a ReLU output can never reach negative prototype coordinates. Build the model with ``feat_dim=d``
    (``robustviz.models.build(..., feat_dim=16)``), which adds a linear embedding.

    Args:
        eps: unused (no adversarial training); accepted because every recipe passes it.
        prototypes: ``"sphere"``, ``"simplex"``, ``"cube"`` or ``"faithful"``
            (``robustviz.methods.drp.head``).
        loss: ``"cos"`` (per-sample ``(1 - cos)^2``, rule q = 2) or ``"inf"`` (L-inf
            regression, rule q = inf).
        prototype_seed: seed of the prototype construction (``sphere``, ``faithful``).
        prototype_options: extra settings of the construction, e.g. ``{"steps": 100}``.
        eps_inside: for ``loss="inf"``: the shift inside the norm (not an attack budget);
            1e-6 reproduces ``PairwiseDistance``'s floor (README.md, "Loss floor inside the norm").
        warn_geometry: warn in ``attach`` when the prototypes are the faithful ones or are
            not self-consistent (some prototype is not classified as its own class).

    Example:
        >>> model = models.build("smallcnn", 10, 1, feat_dim=16)  # doctest: +SKIP
        >>> DRP().attach(model); model.head  # doctest: +SKIP
        PrototypeHead(classes=10, dim=16, q=2)
    """

    key = "drp"

    def __init__(
        self,
        eps: float | None = None,
        prototypes: str = "sphere",
        loss: str = "cos",
        prototype_seed: int = 0,
        prototype_options: dict | None = None,
        eps_inside: float = 0.0,
        warn_geometry: bool = True,
    ) -> None:
        super().__init__()
        if prototypes not in PROTOTYPE_KINDS:
            raise unknown_name_error("prototype kind", prototypes, PROTOTYPE_KINDS)
        if loss not in DRP_LOSSES:
            raise unknown_name_error("DRP loss", loss, DRP_LOSSES)
        self.kind = prototypes
        self.loss_name = loss
        self.criterion = make_drp_loss(loss, eps_inside)
        self.q = DECISION_NORM[loss]
        self.prototype_seed = prototype_seed
        self.prototype_options = dict(prototype_options or {})
        self.warn_geometry = warn_geometry

    def make_prototypes(self, num_classes: int, dim: int) -> torch.Tensor:
        """This method's prototypes for K classes in d dimensions, ``[K, d]`` (deterministic)."""
        return make_prototypes(self.kind, num_classes, dim, seed=self.prototype_seed, **self.prototype_options)

    def attach(self, model: nn.Module) -> None:
        """Replace ``model.head`` by a ``PrototypeHead`` (on the model's device)."""
        for name in ("features", "head", "num_classes", "feat_dim"):
            if not hasattr(model, name):
                raise TypeError(f"DRP needs a RobustModel (features/head/num_classes/feat_dim); missing {name!r}")
        _check_linear_features(model)
        prototypes = self.make_prototypes(model.num_classes, model.feat_dim)
        if self.warn_geometry:
            self._warn_about(prototypes)
        device = next(model.parameters()).device
        model.head = PrototypeHead(prototypes, self.q).to(device)

    def loss(self, model: nn.Module, batch: Batch, step: Step = FIRST_STEP) -> StepOutput:
        head = model.head
        if not isinstance(head, PrototypeHead):
            raise RuntimeError("the model has no PrototypeHead; call DRP.attach(model) first (fit does)")
        features = model.features(batch.x)
        loss = self.criterion(at_least_float32(features), head.targets(batch.y))
        return StepOutput(loss, head(features), {LOSS_TERM_NAMES[self.loss_name]: loss.detach()})

    def _warn_about(self, prototypes: torch.Tensor) -> None:
        geometry = prototype_geometry(prototypes, self.q)
        if self.kind != "faithful" and geometry["self_consistency"] == 1.0:
            return
        warnings.warn(
            f"DRP {self.kind!r} prototypes (K={prototypes.shape[0]}, d={prototypes.shape[1]}): min angle "
            f"{geometry['min_angle']:.1f} deg (simplex bound {geometry['simplex_angle']:.1f}), L-inf norms "
            f"{geometry['min_linf_norm']:.3g}-{geometry['max_linf_norm']:.3g}, self-consistency "
            f"{geometry['self_consistency']:.2f} (fraction of prototypes classified as their own class). "
            + ("The released generator is unbounded (robustviz/methods/drp/README.md, \"Unbounded prototype "
               "generator\"); use it only to reproduce the paper."
               if self.kind == "faithful" else ""),
            RuntimeWarning, stacklevel=3,
        )


def _check_linear_features(model: nn.Module) -> None:
    """Raise unless the model's last feature layer is linear, when it can tell (README.md,
    "Features must come from a linear layer")."""
    body = getattr(model, "body", None)
    if body is None:
        return
    leaves = [module for module in body.modules() if not list(module.children())]
    if leaves and not isinstance(leaves[-1], nn.Linear):
        raise ValueError(
            f"DRP regresses the features onto prototypes with negative entries, but this model's features end "
            f"in {type(leaves[-1]).__name__}, not a linear layer (robustviz/methods/drp/README.md, \"Features "
            "must come from a linear layer\"). Build the model with "
            "feat_dim=d (robustviz.models.build(..., feat_dim=16)) to add a linear embedding."
        )
