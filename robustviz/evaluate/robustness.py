"""Clean and robust accuracy for several attacks and budgets, with the per-sample worst case.

A view of the evaluation core (``robustviz.evaluate.core``). The *worst case* at a budget
counts a sample as robust only if it survives every attack run at that budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .._checks import as_names, check_budgets, check_inputs
from ..attacks import make_attack
from ..attacks.core import ATTACK_BATCH_SIZE
from .core import predict, run_attacks


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of ``x`` (in [0, 1]) classified as ``y`` (samples with NaN scores count as wrong)."""
    check_inputs(model, x, y, allow_empty=False, what="accuracy")
    return float((predict(model, x, batch_size) == y.to(x.device)).float().mean())


@dataclass
class RobustnessReport:
    """Accuracies measured by ``evaluate_robustness``.

    Attributes:
        n: number of evaluated samples.
        clean_acc: clean accuracy.
        results: ``{eps: {attack name: accuracy}}``, plus ``"worst case"`` per eps.
        seconds: ``{eps: {attack name: seconds}}``.
        correct: ``{eps: {attack name: bool tensor [n]}}``, per-sample robustness.
    """

    n: int
    clean_acc: float
    results: dict[float, dict[str, float]] = field(default_factory=dict)
    seconds: dict[float, dict[str, float]] = field(default_factory=dict)
    correct: dict[float, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    def accuracy(self, attack: str, eps: float) -> float:
        return self.results[eps][attack]

    def table(self, title: str = "") -> str:
        """A plain-text table: one row per eps, one column per attack, in percent."""
        attacks = list(next(iter(self.results.values())).keys()) if self.results else []
        header = f"{'eps':>7} | {'clean':>6} | " + " | ".join(f"{a:>10}" for a in attacks)
        lines = ([title] if title else []) + [header, "-" * len(header)]
        for eps, row in self.results.items():
            cells = " | ".join(f"{100 * row[a]:>9.1f}%" for a in attacks)
            lines.append(f"{eps:>7.4g} | {100 * self.clean_acc:>5.1f}% | {cells}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "clean_acc": self.clean_acc,
            "results": {str(eps): row for eps, row in self.results.items()},
            "seconds": {str(eps): row for eps, row in self.seconds.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> RobustnessReport:
        """Rebuild a report saved with ``to_dict`` (without the per-sample tensors)."""
        return cls(n=data["n"], clean_acc=data["clean_acc"],
                   results={float(k): v for k, v in data["results"].items()},
                   seconds={float(k): v for k, v in data["seconds"].items()})


def evaluate_robustness(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float],
    attacks: Sequence[str] = ("fgsm", "pgd-20"),
    batch_size: int = ATTACK_BATCH_SIZE,
    seed: int = 0,
    progress: bool = True,
    amp: str = "off",
) -> RobustnessReport:
    """Clean accuracy and robust accuracy for every attack at every budget.

    Args:
        model: a classifier (``forward`` gives scores); its device is used.
        x, y: test inputs ``[N, C, H, W]`` in [0, 1] and labels ``[N]`` (at least one sample).
        eps: budgets in [0, 1] units, e.g. ``(0.1, 0.2, 0.3)``, or one budget (``0.3``).
        attacks: attack names for ``make_attack`` (``"fgsm"``, ``"pgd-20"``, ...), or one name.
        batch_size: samples per attack batch.
        seed: seed of the attacks' random starts.
        progress: show a progress bar.
        amp: precision of the attacks and predictions: ``"off"`` (float32, the honest
            default), or ``"auto"``, ``"bf16"``, ``"fp16"`` to run them under autocast for
            speed (``robustviz.precision``). Half precision can round small input gradients
            to zero and so weaken an attack: report float32 numbers.

    Returns:
        a ``RobustnessReport`` with the per-attack and worst-case accuracies.

    Example:
        >>> report = evaluate_robustness(model, test.x[:500], test.y[:500], eps=(0.1, 0.3))  # doctest: +SKIP
        >>> print(report.table())  # doctest: +SKIP
    """
    check_inputs(model, x, y, allow_empty=False, what="evaluate_robustness")
    attacks = as_names(attacks)
    # The loosest bound (any norm's) here; each attack checks the budget against its own norm.
    budgets = check_budgets(eps, norm="l2", dim=x[0].numel())
    built = [make_attack(spec, budget, seed) for budget in budgets for spec in attacks]
    evaluation = run_attacks(model, x, y, built, batch_size, amp, progress)
    report = RobustnessReport(n=evaluation.n, clean_acc=evaluation.clean_acc)
    for budget in budgets:
        report.results[budget], report.seconds[budget], report.correct[budget] = {}, {}, {}
        worst = evaluation.clean.clone()
        for outcome in evaluation.outcomes:
            if outcome.eps == budget:
                report.seconds[budget][outcome.name] = outcome.seconds
                report.results[budget][outcome.name] = outcome.accuracy
                report.correct[budget][outcome.name] = outcome.robust
                worst &= outcome.robust
        report.results[budget]["worst case"] = float(worst.float().mean())
        report.correct[budget]["worst case"] = worst
    return report
