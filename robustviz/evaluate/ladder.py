"""The attack ladder: ever stronger attacks until the robust accuracy stops falling.

A defence's *reported* robustness is often the accuracy under the attack its authors
tried (typically PGD-20 on cross-entropy). The ladder climbs from there: more steps and
restarts, losses that do not saturate (CW margin, DLR), an adaptive attack on the
method's own decision rule, and AutoAttack. Each row records the accuracy under that
attack, the per-sample worst case over all rows so far (a sample counts as robust only
if it survived every attack up to here), the seconds taken, and the gap between the
reported number and the worst case so far. The last one, the *worst case over attacks*, is an
upper bound of the true robust accuracy (attacks can only show that a sample breaks; only a
certificate can show that it does not) and the honest number to report, with the attacks
that produced it. It is not a *verified* (certified) robust accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .._checks import (
    as_names,
    check_batch,
    check_eps,
    check_images,
    check_inputs,
    check_label_tensor,
    unknown_name_error,
)
from ..attacks import make_attack
from ..attacks.core import ATTACK_BATCH_SIZE
from .core import run_attacks

LADDER_LEVELS: dict[str, tuple[str, ...]] = {
    # A few minutes on a CPU for a small model and ~1000 images.
    "quick": ("fgsm", "pgd-20", "pgd-50x2", "pgd-50-margin", "pgd-50-dlr", "adaptive-50x2", "autoattack-fast"),
    # The usual evaluation of a paper, with AutoAttack standard.
    "standard": ("fgsm", "pgd-20", "pgd-100x5", "pgd-100-margin", "pgd-100-dlr", "adaptive-100x2", "autoattack"),
    # Everything, with more restarts and the multi-targeted attack.
    "full": ("fgsm", "pgd-20", "pgd-100x10", "pgd-100x5-margin", "pgd-100x5-dlr", "mt-pgd-100",
             "adaptive-100x5", "autoattack"),
}
REPORTED_DEFAULT = "PGD-20"


@dataclass
class LadderRow:
    """One rung: accuracy under ``attack``, worst case so far, seconds, reported minus worst case."""

    attack: str
    accuracy: float
    worst_case: float
    seconds: float
    gap: float


@dataclass
class LadderReport:
    """The result of ``ladder``.

    Attributes:
        eps: the budget. n: samples evaluated. clean_acc: clean accuracy.
        rows: one ``LadderRow`` per attack, in order.
        reported: the number the gaps are measured from (default: the PGD-20 accuracy).
        autoattack: AutoAttack's per-attack breakdown, if it ran.
        correct: per-sample worst-case robustness after each row ``{attack: bool [n]}``.
    """

    eps: float
    n: int
    clean_acc: float
    reported: float
    rows: list[LadderRow] = field(default_factory=list)
    autoattack: dict[str, float] = field(default_factory=dict)
    correct: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def worst_case(self) -> float:
        """The per-sample worst case over every attack: the robust accuracy to report (an upper bound)."""
        return self.rows[-1].worst_case if self.rows else self.clean_acc

    def accuracy(self, attack: str) -> float:
        return next(row.accuracy for row in self.rows if row.attack == attack)

    def table(self) -> str:
        """A markdown table, accuracies in percent."""
        lines = [f"Attack ladder at eps = {self.eps:.4g} (n = {self.n}); reported = {100 * self.reported:.1f}%",
                 "", "| attack | accuracy | worst case so far | seconds | reported - worst case |",
                 "|---|---:|---:|---:|---:|",
                 f"| clean | {100 * self.clean_acc:.1f} | {100 * self.clean_acc:.1f} | | |"]
        lines += [f"| {r.attack} | {100 * r.accuracy:.1f} | {100 * r.worst_case:.1f} | {r.seconds:.1f} | "
                  f"{100 * r.gap:+.1f} |" for r in self.rows]
        if self.autoattack:
            parts = ", ".join(f"{name} {100 * acc:.1f}%" for name, acc in self.autoattack.items())
            lines += ["", f"AutoAttack cascade: {parts}"]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"eps": self.eps, "n": self.n, "clean_acc": self.clean_acc, "reported": self.reported,
                "rows": [vars(row) for row in self.rows], "autoattack": self.autoattack}

    @classmethod
    def from_dict(cls, data: dict) -> LadderReport:
        rows = [LadderRow(**row) for row in data["rows"]]
        return cls(eps=data["eps"], n=data["n"], clean_acc=data["clean_acc"], reported=data["reported"], rows=rows,
                   autoattack=data.get("autoattack", {}))


def ladder(
    model: nn.Module,
    data,
    eps: float,
    level: str = "quick",
    attacks: Sequence[str] | None = None,
    n: int | None = 1000,
    reported: float | None = None,
    seed: int = 0,
    batch_size: int = ATTACK_BATCH_SIZE,
    progress: bool = True,
    amp: str = "off",
) -> LadderReport:
    """Climb the attack ladder on ``model`` at budget ``eps``.

    Args:
        model: a classifier (its ``forward`` is the decision rule), on any device.
        data: a ``DataBundle`` (its test split is used), a ``Split`` or an ``(x, y)`` pair.
        eps: L-inf budget in [0, 1] units.
        level: ``"quick"``, ``"standard"`` or ``"full"`` (``LADDER_LEVELS``).
        attacks: attack specs for ``make_attack`` instead of a level (one spec or a sequence).
        n: evaluate the first ``n`` samples (``None``: all).
        reported: the accuracy claimed for the model (e.g. a paper's number, in [0, 1]); default
            the accuracy under PGD-20 when it is on the ladder, else the first attack's.
        seed: seed of every attack's random choices.
        batch_size: samples per attack batch (AutoAttack gets all samples at once and batches itself).
        progress: show a progress bar.
        amp: ``"off"`` (float32, the default) or an autocast precision for speed, as in
            ``evaluate_robustness``.

    Returns:
        a ``LadderReport``; ``report.worst_case`` is the worst case over all attacks.

    Example:
        >>> report = ladder(model, robustviz.data.load("mnist-mini"), eps=0.3, n=500)  # doctest: +SKIP
        >>> print(report.table())  # doctest: +SKIP
    """
    if attacks is None:
        if level not in LADDER_LEVELS:
            raise unknown_name_error("ladder level", level, tuple(LADDER_LEVELS))
        attacks = LADDER_LEVELS[level]
    attacks = as_names(attacks)
    x, y = resolve_data(data, n)
    check_inputs(model, x, y, allow_empty=False, what="ladder")
    eps = check_eps(eps)
    built = [make_attack(spec, eps, seed) for spec in attacks]
    evaluation = run_attacks(model, x, y, built, batch_size, amp, progress, desc=f"ladder eps={eps:.3g}")
    report = LadderReport(eps=eps, n=evaluation.n, clean_acc=evaluation.clean_acc, reported=0.0)
    accuracies, seconds, worst_cases = [], [], []
    worst = evaluation.clean.clone()
    for outcome in evaluation.outcomes:
        if "breakdown" in outcome.details:
            report.autoattack = outcome.details["breakdown"]
        worst &= outcome.robust
        report.correct[outcome.name] = worst.clone()
        accuracies.append(outcome.accuracy)
        seconds.append(outcome.seconds)
        worst_cases.append(float(worst.float().mean()))
    names = [attack.name for attack in built]
    if reported is None:
        reported = accuracies[names.index(REPORTED_DEFAULT)] if REPORTED_DEFAULT in names else accuracies[0]
    report.reported = float(reported)
    report.rows = [LadderRow(name, acc, worst_case, secs, report.reported - worst_case)
                   for name, acc, worst_case, secs in zip(names, accuracies, worst_cases, seconds)]
    return report


def resolve_data(data, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` from a ``DataBundle`` (test split), a ``Split`` or a pair, cut to the first ``n``.

    Only the data's own consistency is checked here (images in [0, 1], as many labels as
    images); the callers check it against their model with ``check_inputs``.
    """
    if hasattr(data, "test"):
        data = data.test
    if hasattr(data, "x") and hasattr(data, "y"):
        x, y = data.x, data.y
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise TypeError(f"data must be a DataBundle, a Split or an (x, y) pair, got {type(data).__name__}")
    if n is not None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        x, y = x[:n], y[:n]
    check_images(x)
    check_label_tensor(y)
    check_batch(x, y)
    return x, y
