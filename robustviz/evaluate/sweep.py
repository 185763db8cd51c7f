"""Eps sweep: robust accuracy as a function of the budget, up to budgets where it must vanish.

A sound evaluation shows accuracy falling to about zero as eps grows: at L-inf
eps = 0.5 every image can be turned into the same flat grey image, so no classifier
can be right on more than about one class's share. A curve that flattens above zero
means the attack, not the model, gave up (Carlini et al. 2019, Sec. 5.2).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..attacks.core import ATTACK_BATCH_SIZE
from .ladder import resolve_data
from .robustness import RobustnessReport, evaluate_robustness

DEFAULT_LARGE_EPS = 0.5


def eps_grid(eps: float | None = None, large: float = DEFAULT_LARGE_EPS, points: int = 10) -> list[float]:
    """Budgets ``large * k / points`` for ``k = 1..points``, plus ``eps`` (e.g. the training budget).

    Example:
        >>> eps_grid(0.3, points=5)
        [0.1, 0.2, 0.3, 0.4, 0.5]
    """
    grid = {round(large * k / points, 6) for k in range(1, points + 1)}
    if eps is not None:
        grid.add(round(float(eps), 6))
    return sorted(grid)


def eps_sweep(
    model: nn.Module,
    data,
    eps_values: Sequence[float] | None = None,
    attack: str = "pgd-20",
    n: int | None = 500,
    seed: int = 0,
    batch_size: int = ATTACK_BATCH_SIZE,
    progress: bool = True,
) -> RobustnessReport:
    """Accuracy under ``attack`` at every budget of ``eps_values`` (default ``eps_grid()``, up to 0.5).

    Returns a ``RobustnessReport``; draw it with ``robustviz.viz.plot_accuracy_vs_eps``.

    Example:
        >>> report = eps_sweep(model, robustviz.data.load("mnist-mini"))  # doctest: +SKIP
        >>> plot_accuracy_vs_eps({"pgd_at": report})  # doctest: +SKIP
    """
    x, y = resolve_data(data, n)
    budgets = eps_grid() if eps_values is None else eps_values  # one number or several
    return evaluate_robustness(model, x, y, budgets, attacks=(attack,), batch_size=batch_size, seed=seed,
                               progress=progress)
