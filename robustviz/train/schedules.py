"""Learning-rate schedules as pure functions of the step.

A schedule that is a function of the step number has no state to save, so a resumed
run gets exactly the learning rates of an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

SCHEDULES = ("constant", "multistep", "cosine", "onecycle")


def make_schedule(
    name: str,
    base_lr: float,
    total_steps: int,
    steps_per_epoch: int,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    warmup_fraction: float = 0.5,
) -> Callable[[int], float]:
    """Return ``lr_at(step)`` for ``step`` in ``[0, total_steps)``.

    Args:
        name: ``"constant"``; ``"multistep"`` (multiply by ``gamma`` after each epoch in
            ``milestones``); ``"cosine"`` (from ``base_lr`` to 0); ``"onecycle"``
            (linear 0 -> ``base_lr`` over ``warmup_fraction`` of training, then linear to
            0, as in Wong et al.'s cyclic schedule: peak at 0.5 on CIFAR-10, 0.4 on MNIST).
        base_lr: the peak / initial learning rate.
        total_steps: number of optimiser steps in the run.
        steps_per_epoch: used to turn epoch milestones into steps.
        milestones, gamma: the ``"multistep"`` drops (epochs) and their factor.
        warmup_fraction: where ``"onecycle"`` peaks, as a fraction of ``total_steps``.

    Example:
        >>> lr_at = make_schedule("multistep", 0.1, 1000, 100, milestones=(5,))
        >>> lr_at(499), lr_at(500)
        (0.1, 0.010000000000000002)
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
    total = max(int(total_steps), 1)
    if name == "constant":
        return lambda step: base_lr
    if name == "multistep":
        boundaries = sorted(int(m) * steps_per_epoch for m in milestones)
        return lambda step: base_lr * gamma ** sum(step >= b for b in boundaries)
    if name == "cosine":
        return lambda step: 0.5 * base_lr * (1 + math.cos(math.pi * min(step, total) / total))
    peak = max(1, int(warmup_fraction * total))

    def onecycle(step: int) -> float:
        if step < peak:
            return base_lr * (step + 1) / peak
        return base_lr * max(0.0, (total - step) / max(total - peak, 1))

    return onecycle
