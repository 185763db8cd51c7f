"""Adaptive attacks: attack the method's own decision rule, not a cross-entropy proxy.

Feature-space defences classify by distances to prototypes or clusters. Their scores
are not logits: cosine similarities live in [-1, 1] (cross-entropy on them is almost
flat), and ClusTR's soft top-L vote is piecewise (a class whose centres leave the top L
drops by a fixed gap). Cross-entropy PGD on such scores under-reports how easily the
prediction flips (Tramer et al. 2020, "On adaptive attacks to adversarial example
defenses"). The adaptive attack here:

1. lists *views* of the decision rule (``decision_views``): differentiable class scores
   whose argmax is the model's prediction, or its hard nearest-centre core:

   * ``"decision rule"``: ``model`` itself (every robustviz model's ``forward`` is its real
     decision rule: logits, DRP prototype similarities, ClusTR log vote scores);
   * ``"nearest centre"`` (models whose head has ``centres`` and ``centre_labels``, e.g.
     ClusTR): ``s_c(x) = -min_{j: class(j) = c} ||f(x) - mu_j||^2``, smooth where the top-L
     vote is flat;

2. runs PGD with restarts on each view with each of several losses (default the
   Carlini-Wagner margin, which does not saturate, and cross-entropy, which is strong on
   ClusTR's log-domain scores: Tramer et al. advise trying more than one loss);
3. keeps, per sample, the candidate that fools the *real* model, else the one with the
   largest real margin. Each (view, loss) run attacks only the samples that no earlier run
   has broken (a cascade, as in AutoAttack), so extra runs cost little on weak models.

Why several views and losses: on a ClusTR model no single (view, loss) run is the strongest
on every sample, so their per-sample union is stronger than each (a measurement is in
robustviz/methods/clustr/README.md, "Notes").
"""

from __future__ import annotations

import torch
from torch import nn

from ..geometry import centre_rule, class_distances
from .core import eval_mode, prepare_inputs
from .losses import AttackLoss, margin
from .pgd import keep_worst_case, pgd, worst_case_key


class NearestCentreScores(nn.Module):
    """Class scores of the hard nearest-centre rule: ``s_c = -min_{j in class c} ||f(x) - mu_j||^2`` ``[B, K]``.

    Wraps a model whose head describes a ``CentreRule`` in raw feature space
    (``robustviz.geometry``); argmax of the scores is the nearest centre's class (the rule
    the certificate covers).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_classes = model.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rule = centre_rule(self.model)
        z = self.model.features(x).float()
        return -class_distances(z, rule.centres.float(), rule.labels, self.num_classes)


def has_feature_centres(model: nn.Module) -> bool:
    """Whether ``model`` decides by the nearest centre to its raw features ``f(x)``: then the hard
    rule is a view of its own, next to ``forward`` (a soft vote, e.g.). Rules on unit features
    (prototypes) are already what ``forward`` computes."""
    rule = centre_rule(model)
    return rule is not None and rule.space == "features" and hasattr(model, "features")


def decision_views(model: nn.Module) -> dict[str, nn.Module]:
    """The differentiable views of ``model``'s decision rule the adaptive attack targets (name -> module)."""
    views: dict[str, nn.Module] = {"decision rule": model}
    if has_feature_centres(model):
        views["nearest centre"] = NearestCentreScores(model)
    return views


def adaptive_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 100,
    restarts: int = 2,
    step_size: float | None = None,
    norm: str = "linf",
    seed: int | None = 0,
    early_stop: bool = True,
    losses: tuple[str | AttackLoss, ...] = ("margin", "ce"),
) -> torch.Tensor:
    """PGD on every view of the model's decision rule with every loss; per-sample worst case on the real model.

    Args:
        model: a robustviz model (or any classifier; then only its ``forward`` is attacked).
        x, y, eps, step_size, norm: as for ``pgd``.
        early_stop: as for ``pgd``, on the ``"decision rule"`` view only (a sample that fools
            another view may still be classified correctly by the model).
        steps, restarts: per view and loss.
        seed: seed of the random starts (run ``i`` of the views x losses uses ``seed + 1000 * i``).
        losses: the attack losses tried on each view (names as for ``pgd``, or callables).

    Returns:
        ``x_adv`` inside the eps-ball and [0, 1], on ``x``'s device and dtype.

    Example:
        >>> x_adv = adaptive_attack(clustr_model, x, y, eps=0.3)  # doctest: +SKIP
    """
    if not losses:
        raise ValueError("losses must name at least one attack loss, e.g. ('margin', 'ce')")
    x_work, y_work, eps = prepare_inputs(model, x, y, eps, norm)
    runs = [(view, loss) for view in decision_views(model).values() for loss in losses]
    with eval_mode(model):
        with torch.no_grad():
            best = x_work.clone()
            best_key = worst_case_key(model, best, y_work, y_work, margin)
        for i, (view, loss) in enumerate(runs):
            todo = torch.nonzero(best_key != float("inf")).flatten()  # not broken by an earlier run
            if todo.numel() == 0:
                break
            candidate = pgd(view, x_work[todo], y_work[todo], eps, steps=steps, restarts=restarts,
                            step_size=step_size, norm=norm, loss=loss, seed=None if seed is None else seed + 1000 * i,
                            early_stop=early_stop and view is model)  # a view's argmax is not the verdict
            with torch.no_grad():
                key = worst_case_key(model, candidate, y_work[todo], y_work[todo], margin)
            best[todo], best_key[todo] = keep_worst_case(best[todo], best_key[todo], candidate, key)
    return best.detach().to(device=x.device, dtype=x.dtype)
