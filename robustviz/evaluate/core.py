"""The evaluation core: per-sample correctness under every (attack, eps), with timings.

``evaluate_robustness`` (accuracy per attack and budget), ``ladder`` (one budget, attacks of
rising strength, the running worst case) and ``diagnose`` (the gradient-masking signs) are
views of what ``run_attacks`` measures: for every attack, which samples it failed to break.

Robust accuracy follows the usual convention (AutoAttack, RobustBench): a sample counts as
robust only if it is classified correctly both clean and under the attack, so robust
accuracy never exceeds clean accuracy.

Example:
    >>> from robustviz.attacks import make_attack
    >>> result = run_attacks(model, x, y, [make_attack("pgd-20", 0.3)])  # doctest: +SKIP
    >>> float(result.outcomes[0].robust.float().mean())  # doctest: +SKIP
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import distributed
from ..attacks import Attack
from ..attacks.core import ATTACK_BATCH_SIZE
from ..precision import autocast, resolve_amp

NON_FINITE_WARNING = (
    "the model returned NaN or infinite class scores for some inputs; robustviz counts those samples as "
    "misclassified (predicted label -1). A model that outputs NaN is broken: check its weights (a training "
    "run that diverged?) and its inputs."
)


@dataclass
class Outcome:
    """What one attack did to the evaluated samples.

    Attributes:
        name: the attack's name (``Attack.name``). eps: its budget in [0, 1] pixel units.
        robust: ``[N]`` bool, correct on the clean input *and* under the attack.
        seconds: wall-clock time of the attack over all samples.
        details: what the attack reported besides ``x_adv`` (AutoAttack: ``breakdown``).
    """

    name: str
    eps: float
    robust: torch.Tensor
    seconds: float
    details: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return float(self.robust.float().mean())


@dataclass
class Evaluation:
    """``run_attacks``' result: the clean correctness ``[N]`` and one ``Outcome`` per attack, in order."""

    clean: torch.Tensor
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.clean.numel())

    @property
    def clean_acc(self) -> float:
        return float(self.clean.float().mean())


def run_attacks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Sequence[Attack],
    batch_size: int = ATTACK_BATCH_SIZE,
    amp: str = "off",
    progress: bool = True,
    desc: str = "evaluating",
) -> Evaluation:
    """Clean correctness and, for every attack, the samples it did not break.

    Args:
        model: a classifier (``forward`` gives class scores ``[B, K]``); its device is used.
        x, y: inputs ``[N, ...]`` in [0, 1] and labels ``[N]`` (checked by the caller).
        attacks: ``Attack`` objects (``robustviz.attacks.make_attack``), each with its budget.
        batch_size: samples per attack call; an attack with ``whole_set`` gets all of them.
        amp: ``"off"`` (float32) or an autocast precision for the attacks and predictions.
        progress: show a progress bar. desc: its label.

    Returns:
        an ``Evaluation``.
    """
    clean = predict(model, x, batch_size, amp) == y
    evaluation = Evaluation(clean=clean)
    for attack in tqdm(attacks, desc=desc, disable=not progress, leave=False):
        started = time.perf_counter()
        details: dict = {}
        correct = correct_under(model, attack, x, y, y.numel() if attack.whole_set else batch_size, amp, details)
        evaluation.outcomes.append(Outcome(attack.name, float(attack.eps), clean & correct,
                                           time.perf_counter() - started, details))
    return evaluation


def correct_under(model, attack: Attack, x, y, batch_size: int, amp: str = "off",
                  details: dict | None = None) -> torch.Tensor:
    """Per-sample correctness ``[N]`` on the attacked inputs, attacked in batches of ``batch_size``.

    ``amp`` as in ``run_attacks``. ``details``, if given, receives what the attack reported
    besides ``x_adv`` (AutoAttack's ``breakdown``, for a single batch). Under ``torchrun``
    (``robustviz.distributed``) the batches are dealt out to the ranks (batch ``k`` to rank
    ``k mod N``) and the per-sample results gathered, so every rank returns the whole ``[N]``.
    Each batch is the same as in one process and a seeded attack starts afresh on every batch,
    so the results are the same sample for sample. A single batch is attacked by every rank
    (an attack that splits its own work, as AutoAttack does, uses them all).
    """
    starts = range(0, x.shape[0], batch_size)
    if not distributed.is_active() or len(starts) == 1:
        return torch.cat([attacked_batch_correct(model, attack, x, y, start, batch_size, amp, details)
                          for start in starts])
    mine = [starts[k] for k in distributed.shard(len(starts))]
    with distributed.local():  # each rank attacks its batches alone
        parts = [attacked_batch_correct(model, attack, x, y, start, batch_size, amp) for start in mine]
    index = torch.cat([torch.arange(start, min(start + batch_size, x.shape[0])) for start in mine]) if mine \
        else torch.zeros(0, dtype=torch.int64)
    values = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool, device=y.device)
    return distributed.gather_samples(values, index.to(y.device), x.shape[0])


def attacked_batch_correct(model, attack: Attack, x, y, start: int, batch_size: int, amp: str = "off",
                           details: dict | None = None) -> torch.Tensor:
    """Correctness ``[b]`` of the batch ``x[start:start + batch_size]`` under ``attack``, on ``y``'s device."""
    device = next(model.parameters()).device
    xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
    with autocast(resolve_amp(amp, device), device):
        out = attack.outcome(model, xb, yb) if isinstance(attack, Attack) else attack(model, xb, yb)
        x_adv = out if isinstance(out, torch.Tensor) else out.x_adv
        if details is not None and hasattr(out, "breakdown"):
            details["breakdown"] = dict(out.breakdown)
        with torch.no_grad():
            return (labels_from_scores(model(x_adv)) == yb).to(y.device)


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

    ``amp`` as in ``run_attacks`` (``"off"``: float32).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with autocast(resolve_amp(amp, device), device):
        preds = [labels_from_scores(model(x[i : i + batch_size].to(device))).to(x.device)
                 for i in range(0, x.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
