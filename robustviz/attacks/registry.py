"""One callable form for every attack, and attacks by short name (``"pgd-20"``, ``"autoattack-fast"``).

An ``Attack`` is an attack function with its settings bound and a name for tables:
``Attack("PGD-20", pgd, dict(eps=0.3, steps=20))(model, x, y)`` is
``pgd(model, x, y, eps=0.3, steps=20)``. ``make_attack`` builds one from a short name, the
form the evaluation, the command line and the notebooks use.

Example:
    >>> make_attack("pgd-100x5-dlr", 0.3).name
    'PGD-100x5-dlr'
    >>> make_attack("pgd-20", 0.3).settings["steps"]
    20
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .adaptive import adaptive_attack
from .autoattack import autoattack
from .fgsm import fgsm, rfgsm
from .iterative import bim, mifgsm
from .pgd import pgd
from .targeted import multi_targeted_pgd


@dataclass(frozen=True)
class Attack:
    """An attack function with its settings bound.

    Attributes:
        name: how tables call it (e.g. ``"PGD-20"``).
        run: the attack function ``run(model, x, y, **settings)``; it returns ``x_adv``, or an
            object with an ``x_adv`` attribute and more (AutoAttack's per-attack breakdown).
        settings: keyword arguments of ``run``, ``eps`` among them (in [0, 1] pixel units).
        whole_set: the attack batches itself and should get every sample in one call.

    Calling it returns ``x_adv`` (the attack contract); ``outcome`` returns what ``run`` returned.

    Example:
        >>> attack = Attack("FGSM", fgsm, dict(eps=0.1))
        >>> attack.eps
        0.1
    """

    name: str
    run: Callable[..., Any]
    settings: Mapping[str, Any] = field(default_factory=dict)
    whole_set: bool = False

    @property
    def eps(self) -> float:
        return self.settings["eps"]

    def outcome(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
        """What ``run`` returns for this batch (``x_adv``, or a result object holding it)."""
        return self.run(model, x, y, **self.settings)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.outcome(model, x, y)
        return out if isinstance(out, torch.Tensor) else out.x_adv


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

    Args:
        spec: the short name (case and surrounding spaces ignored).
        eps: the budget in [0, 1] pixel units. seed: seed of the attack's random choices.

    Example:
        >>> make_attack("pgd-20", 0.3).name
        'PGD-20'
        >>> make_attack("autoattack-fast", 8 / 255).whole_set
        True
    """
    name = spec.lower().strip()
    if name == "fgsm":
        return Attack("FGSM", fgsm, dict(eps=eps))
    if name == "rfgsm":
        return Attack("R-FGSM", rfgsm, dict(eps=eps, seed=seed))
    match = _PGD_SPEC.match(name)
    if match:
        steps, restarts, suffix = int(match[1]), int(match[2] or 1), match[3]
        loss = "margin" if "-margin" in suffix else "dlr" if "-dlr" in suffix else "ce"
        norm = "l2" if "-l2" in suffix else "linf"
        label = f"PGD-{steps}{_times(restarts)}{'' if loss == 'ce' else '-' + loss}{'' if norm == 'linf' else '-L2'}"
        return Attack(label, pgd, dict(eps=eps, steps=steps, restarts=restarts, loss=loss, norm=norm, seed=seed,
                                       early_stop=True))
    match = _STEPS_SPEC.match(name)
    if match:
        kind, steps, restarts = match[1], int(match[2]), int(match[3] or 1)
        if kind == "adaptive":
            return Attack(f"adaptive-{steps}{_times(restarts)}", adaptive_attack,
                          dict(eps=eps, steps=steps, restarts=restarts, seed=seed))
        if restarts == 1:
            if kind == "bim":
                return Attack(f"BIM-{steps}", bim, dict(eps=eps, steps=steps))
            if kind == "mifgsm":
                return Attack(f"MI-FGSM-{steps}", mifgsm, dict(eps=eps, steps=steps))
            return Attack(f"MT-PGD-{steps}", multi_targeted_pgd, dict(eps=eps, steps=steps, seed=seed, early_stop=True))
    match = _AUTOATTACK_SPEC.match(name)
    if match:
        version, norm = match[1] or "standard", "l2" if match[2] else "linf"
        return Attack(f"AutoAttack-{version}" + ("" if norm == "linf" else "-L2"), autoattack,
                      dict(eps=eps, norm=norm, version=version, seed=seed), whole_set=True)
    raise ValueError(f"unknown attack {spec!r}; use one of {', '.join(ATTACK_SPECS)} (e.g. 'pgd-20')")


def _times(restarts: int) -> str:
    return f"x{restarts}" if restarts > 1 else ""
