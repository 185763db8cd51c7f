"""Multi-targeted PGD (Gowal et al. 2019): one targeted margin attack per other class.

An untargeted attack follows the steepest direction from the start and can get stuck
between two classes; trying every target class in turn finds the easiest way out of
the correct class for each sample. ``K - 1`` times the cost of PGD.
"""

from __future__ import annotations

import torch
from torch import nn

from .core import eval_mode, prepare_inputs
from .losses import margin
from .pgd import keep_worst_case, pgd, worst_case_key


def multi_targeted_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 20,
    step_size: float | None = None,
    norm: str = "linf",
    num_targets: int | None = None,
    seed: int | None = None,
    early_stop: bool = False,
) -> torch.Tensor:
    """Targeted margin PGD towards each of the ``num_targets`` most likely wrong classes.

    For every sample the wrong classes are ranked by the clean scores; target ``k`` is the
    ``k``-th most likely one (as in APGD-T). Each targeted run maximises
    ``s_t - max_{j != t} s_j``; the per-sample worst case over the runs is returned
    (misclassified first, then the largest untargeted margin).

    Args:
        model, x, y, eps, steps, step_size, norm, seed, early_stop: as for ``pgd``.
        num_targets: how many target classes to try (default all ``K - 1``).

    Returns:
        ``x_adv`` inside the eps-ball and [0, 1], on ``x``'s device and dtype.

    Example:
        >>> x_adv = multi_targeted_pgd(model, x, y, eps=0.3, steps=20, num_targets=3)  # doctest: +SKIP
    """
    x_work, y_work, eps = prepare_inputs(model, x, y, eps, norm)
    with eval_mode(model), torch.no_grad():
        scores = model(x_work)
    num_classes = scores.shape[1]
    num_targets = num_classes - 1 if num_targets is None else int(num_targets)
    if not 1 <= num_targets <= num_classes - 1:
        raise ValueError(f"num_targets must be in 1..{num_classes - 1}, got {num_targets}")
    ranked = scores.float().scatter(1, y_work[:, None], float("-inf")).argsort(dim=1, descending=True)
    best = best_key = None
    with eval_mode(model):
        for k in range(num_targets):
            target = ranked[:, k]
            candidate = pgd(model, x_work, y_work, eps, steps=steps, step_size=step_size, norm=norm,
                            loss="margin", seed=None if seed is None else seed + k, early_stop=early_stop,
                            target=target)
            key = worst_case_key(model, candidate, y_work, y_work, margin)
            best, best_key = (candidate, key) if best is None else keep_worst_case(best, best_key, candidate, key)
    return best.detach().to(device=x.device, dtype=x.dtype)
