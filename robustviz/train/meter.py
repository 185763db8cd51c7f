"""Running means of a training epoch, kept on the device and read only now and then.

Reading a number that lives on a GPU (``float(t)``, ``t.item()``, ``if t:``) makes the host
wait until every queued kernel has run: the GPU idles while Python catches up. A training
step therefore only *adds* its loss terms, its correct count and its loss to tensors on the
device; ``read`` copies them to the host in one transfer, every ``log_every`` steps and at
the end of the epoch (airbench and the fast-AT codes log the same way).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Reading:
    """What ``EpochMeter.read`` returns.

    Attributes:
        means: the mean of every logged term over the samples seen so far (``"loss"`` first).
        accuracy: the training accuracy so far (NaN before the first step).
        nonfinite: ``(step, loss)`` of the first non-finite loss since the previous read, or ``None``.
    """

    means: dict[str, float]
    accuracy: float
    nonfinite: tuple[int, float] | None


class EpochMeter:
    """Sums of an epoch's logged terms and correct predictions, weighted by batch size.

    Args:
        device: where the sums live (the model's device).
        log_every: the number of steps between two reads; the last ``log_every`` losses are
            kept so that ``read`` can name the first non-finite one (read at least that often).

    Example:
        >>> meter = EpochMeter(torch.device("cpu"), log_every=10)
        >>> meter.add(torch.tensor(0.5), {"ce": torch.tensor(0.5)}, torch.tensor([[1.0, 0.0]]), torch.tensor([0]), 0)
        >>> meter.read().means["loss"]
        0.5
    """

    def __init__(self, device: torch.device, log_every: int = 10) -> None:
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        self.device, self.log_every = device, log_every
        self.names: list[str] = []
        self.sums: list[torch.Tensor] = []
        self.correct = torch.zeros((), device=device)
        self.seen = 0
        self.window = torch.zeros(log_every, device=device)  # the latest losses, slot = step % log_every
        self.window_steps: list[int] = []

    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], scores: torch.Tensor, y: torch.Tensor,
            step: int) -> None:
        """Add one step: its loss, its logged terms (scalars) and its accuracy, with no host read."""
        size = int(y.shape[0])
        values = {"loss": loss, **terms}
        if not self.names:
            self.names = list(values)
            self.sums = [torch.zeros((), device=self.device) for _ in self.names]
        elif list(values) != self.names:
            raise ValueError(f"the logged terms changed within an epoch: {self.names} then {list(values)}")
        for total, value in zip(self.sums, values.values()):
            total.add_(value.detach().to(self.device, torch.float32), alpha=size)
        self.correct.add_((scores.detach().argmax(1) == y).sum())
        self.seen += size
        self.window[step % self.log_every] = loss.detach().to(torch.float32)
        self.window_steps.append(step)

    def read(self, combine: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Reading:
        """The epoch's means so far and the first non-finite loss since the last read (one transfer).

        Args:
            combine: under ``torchrun``, ``robustviz.distributed.sum_over_ranks``: the sums, the
                counts and the latest losses are added over the ranks first, so every rank reads
                the means of the global batches (and the mean of the ranks' losses at each step),
                and all stop at the same non-finite loss.
        """
        if combine is not None:
            return self._read_combined(combine)
        values = torch.stack([*self.sums, self.correct.float(), *self.window]).tolist() if self.names else []
        steps, self.window_steps = self.window_steps, []
        if not values:
            return Reading({}, float("nan"), None)
        count = len(self.names)
        means = {name: total / max(self.seen, 1) for name, total in zip(self.names, values[:count])}
        losses = values[count + 1:]
        bad = next(((step, losses[step % self.log_every]) for step in steps
                    if not math.isfinite(losses[step % self.log_every])), None)
        return Reading(means, values[count] / max(self.seen, 1), bad)

    def _read_combined(self, combine: Callable[[torch.Tensor], torch.Tensor]) -> Reading:
        count = len(self.names)
        zeros = [torch.zeros((), device=self.device)] * count
        local = torch.stack([*(self.sums or zeros), self.correct.float(),
                             torch.tensor(float(self.seen), device=self.device), torch.ones((), device=self.device),
                             *self.window])
        values = combine(local).tolist()
        steps, self.window_steps = self.window_steps, []
        seen, ranks = values[count + 1], values[count + 2]
        if not self.names or seen == 0:
            return Reading({}, float("nan"), None)
        means = {name: total / seen for name, total in zip(self.names, values[:count])}
        losses = [loss / ranks for loss in values[count + 3:]]
        bad = next(((step, losses[step % self.log_every]) for step in steps
                    if not math.isfinite(losses[step % self.log_every])), None)
        return Reading(means, values[count] / seen, bad)
