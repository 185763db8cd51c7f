"""Clean and robust accuracy for several attacks and budgets, with the per-sample worst case.

Robust accuracy follows the usual convention (AutoAttack, RobustBench): a sample counts
as robust only if it is classified correctly both clean and under the attack, so robust
accuracy never exceeds clean accuracy. The *worst case* at a budget counts a sample as
robust only if it survives every attack run at that budget.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import distributed
from .._checks import as_names, check_budgets, check_inputs
from ..attacks import BIM, FGSM, MIFGSM, PGD, RFGSM, Adaptive, AutoAttack, MultiTargetedPGD
from ..attacks.core import ATTACK_BATCH_SIZE
from ..precision import autocast, resolve_amp

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

_PGD_SPEC = re.compile(r"^pgd-(\d+)(?:x(\d+))?((?:-(?:margin|dlr|l2))*)$")
_STEPS_SPEC = re.compile(r"^(bim|mifgsm|mt-pgd|adaptive)-(\d+)(?:x(\d+))?$")
_AUTOATTACK_SPEC = re.compile(r"^(?:autoattack|aa)(?:-(standard|rand|fast))?(-l2)?$")
ATTACK_SPECS = (
    "fgsm", "rfgsm", "bim-K", "mifgsm-K", "pgd-K[xR][-margin|-dlr][-l2]", "mt-pgd-K",
    "adaptive-K[xR]", "autoattack[-standard|-rand|-fast][-l2]",
)


def make_attack(spec: str, eps: float, seed: int = 0) -> Attack:
    """Build an attack from a short name (``ATTACK_SPECS``).

    ``"fgsm"``, ``"rfgsm"``; ``"bim-K"``, ``"mifgsm-K"`` (K steps); ``"pgd-K"``, ``"pgd-KxR"``
    (R restarts) with suffixes ``-margin`` (CW loss), ``-dlr`` (DLR loss), ``-l2`` (L2 ball),
    e.g. ``"pgd-100x5-margin"``; ``"mt-pgd-K"`` (multi-targeted, every wrong class);
    ``"adaptive-KxR"`` (margin and cross-entropy PGD on every view of the model's decision rule);
    ``"autoattack"`` (standard), ``"autoattack-fast"``, ``"autoattack-rand"`` (``-l2`` for L2).
    Iterative attacks use ``early_stop=True`` (an evaluation only needs to know whether a
    sample breaks) and ``seed``.

    Example:
        >>> make_attack("pgd-20", 0.3).name
        'PGD-20'
        >>> make_attack("pgd-100x5-dlr", 0.3).name
        'PGD-100x5-dlr'
    """
    name = spec.lower().strip()
    if name == "fgsm":
        return FGSM(eps)
    if name == "rfgsm":
        return RFGSM(eps, seed=seed)
    match = _PGD_SPEC.match(name)
    if match:
        steps, restarts, suffix = int(match[1]), int(match[2] or 1), match[3]
        loss = "margin" if "-margin" in suffix else "dlr" if "-dlr" in suffix else "ce"
        return PGD(eps, steps=steps, restarts=restarts, loss=loss, norm="l2" if "-l2" in suffix else "linf",
                   seed=seed, early_stop=True)
    match = _STEPS_SPEC.match(name)
    if match:
        kind, steps, restarts = match[1], int(match[2]), int(match[3] or 1)
        if kind == "adaptive":
            return Adaptive(eps, steps=steps, restarts=restarts, seed=seed)
        if restarts == 1:
            if kind == "bim":
                return BIM(eps, steps=steps)
            if kind == "mifgsm":
                return MIFGSM(eps, steps=steps)
            return MultiTargetedPGD(eps, steps=steps, seed=seed, early_stop=True)
    match = _AUTOATTACK_SPEC.match(name)
    if match:
        return AutoAttack(eps, norm="l2" if match[2] else "linf", version=match[1] or "standard", seed=seed)
    raise ValueError(f"unknown attack {spec!r}; use one of {', '.join(ATTACK_SPECS)} (e.g. 'pgd-20')")


NON_FINITE_WARNING = (
    "the model returned NaN or infinite class scores for some inputs; robustviz counts those samples as "
    "misclassified (predicted label -1). A model that outputs NaN is broken: check its weights (a training "
    "run that diverged?) and its inputs."
)


def labels_from_scores(scores: torch.Tensor) -> torch.Tensor:
    """Predicted labels ``[B]`` from class scores ``[B, K]``: the argmax, or -1 where it means nothing.

    A row with a NaN score, or without a finite largest score, has no prediction: ``argmax``
    would call it class 0 and count it correct for every sample of class 0. Such rows get
    -1, which matches no label, and a ``RuntimeWarning`` says so. Every accuracy in robustviz
    goes through this function.

    Example:
        >>> labels_from_scores(torch.tensor([[0.1, 2.0], [float("nan"), 1.0]]))  # doctest: +SKIP
        tensor([ 1, -1])
    """
    labels = scores.argmax(dim=1)
    broken = scores.isnan().any(dim=1) | ~torch.isfinite(scores.max(dim=1).values)
    if bool(broken.any()):
        warnings.warn(NON_FINITE_WARNING, RuntimeWarning, stacklevel=2)
        labels = labels.masked_fill(broken, -1)
    return labels


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500, amp: str = "off") -> torch.Tensor:
    """Predicted labels ``[N]`` (``labels_from_scores`` of ``forward``), batched, on ``x``'s device.

    ``amp`` as in ``evaluate_robustness`` (``"off"``: float32).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with autocast(resolve_amp(amp, device), device):
        preds = [labels_from_scores(model(x[i : i + batch_size].to(device))).to(x.device)
                 for i in range(0, x.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


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
    clean_correct = predict(model, x, batch_size, amp) == y
    report = RobustnessReport(n=int(y.numel()), clean_acc=float(clean_correct.float().mean()))
    bar = tqdm(total=len(budgets) * len(attacks), desc="evaluating", disable=not progress,
               leave=False)
    for budget in budgets:
        report.results[budget], report.seconds[budget], report.correct[budget] = {}, {}, {}
        worst = clean_correct.clone()
        for spec in attacks:
            attack = make_attack(spec, budget, seed)
            started = time.perf_counter()
            survived = clean_correct & correct_under(model, attack, x, y, batch_size, amp)
            name = getattr(attack, "name", spec)
            report.seconds[budget][name] = time.perf_counter() - started
            report.results[budget][name] = float(survived.float().mean())
            report.correct[budget][name] = survived
            worst &= survived
            bar.update(1)
        report.results[budget]["worst case"] = float(worst.float().mean())
        report.correct[budget]["worst case"] = worst
    bar.close()
    return report


def correct_under(model, attack: Attack, x, y, batch_size: int, amp: str = "off") -> torch.Tensor:
    """Per-sample correctness ``[N]`` on the attacked inputs, attacked in batches of ``batch_size``.

    ``amp`` as in ``evaluate_robustness``: the attack and the prediction run under that autocast.
    Under ``torchrun`` (``robustviz.distributed``) the batches are dealt out to the ranks (batch
    ``k`` to rank ``k mod N``) and the per-sample results gathered, so every rank returns the
    whole ``[N]``. Each batch is the same as in one process and a seeded attack starts afresh on
    every batch, so the results are the same sample for sample. A single batch is attacked by
    every rank (an attack that splits its own work, as AutoAttack does, uses them all).
    """
    starts = range(0, x.shape[0], batch_size)
    if not distributed.is_active() or len(starts) == 1:
        return torch.cat([attacked_batch_correct(model, attack, x, y, start, batch_size, amp) for start in starts])
    mine = [starts[k] for k in distributed.shard(len(starts))]
    with distributed.local():  # each rank attacks its batches alone
        parts = [attacked_batch_correct(model, attack, x, y, start, batch_size, amp) for start in mine]
    index = torch.cat([torch.arange(start, min(start + batch_size, x.shape[0])) for start in mine]) if mine \
        else torch.zeros(0, dtype=torch.int64)
    values = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool, device=y.device)
    return distributed.gather_samples(values, index.to(y.device), x.shape[0])


def attacked_batch_correct(model, attack: Attack, x, y, start: int, batch_size: int, amp: str = "off") -> torch.Tensor:
    """Correctness ``[b]`` of the batch ``x[start:start + batch_size]`` under ``attack``, on ``y``'s device."""
    device = next(model.parameters()).device
    xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
    with autocast(resolve_amp(amp, device), device):
        x_adv = attack(model, xb, yb)
        with torch.no_grad():
            return (labels_from_scores(model(x_adv)) == yb).to(y.device)
