"""What a training method is, and how a recipe names one with its settings per dataset and profile.

A ``Method`` turns one batch into a training loss (crafting its training-time attack
if it has one); ``fit`` owns everything else (optimiser, schedule, logging,
checkpoints). A ``Recipe`` names a method and holds its defaults for every dataset
family (``mnist``, ``cifar``, ``toy``) and profile: ``quick`` for a CPU in minutes, ``lab``
for one GPU lab session (CIFAR-10 in about 10 minutes on a T4, docs/profiles.md), ``full``
for the paper's setting on a GPU.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from .._checks import unknown_name_error
from ..attacks.core import crafting_batchnorm
from ..data import BatchIterator, Split
from ..settings import BASE_CONFIGS, FAMILIES, PROFILES, TrainConfig


@dataclass(frozen=True)
class Batch:
    """One training batch, as a method's sampler yields it and its ``loss`` receives it.

    Attributes:
        x: inputs ``[B, ...]`` in [0, 1], on the model's device.
        y: labels ``[B]`` (int64).
        index: ``[B]`` positions of the samples in the training split, for methods that
            keep per-example state (ClusTR's example losses); ``None`` when not tracked.
        groups: ``[B]`` batch-cluster id of every sample (ClusTR's neighbourhood batches);
            ``None`` for ordinary batches.
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor | None = None
    groups: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Step:
    """Where training stands when a batch is trained on; ``fit`` passes it to ``Method.loss``.

    Attributes:
        epoch: 0-based epoch.
        index: 0-based optimiser step since the start of training.
        total: optimiser steps of the whole run.

    ``FIRST_STEP = Step()`` (the default of ``Method.loss``) is the first step of a run.
    """

    epoch: int = 0
    index: int = 0
    total: int = 1

    @property
    def progress(self) -> float:
        """Fraction of training done before this step, in [0, 1)."""
        return self.index / max(self.total, 1)


FIRST_STEP = Step()


@dataclass
class StepOutput:
    """What a method returns for one batch.

    Attributes:
        loss: scalar training loss to minimise.
        scores: class scores ``[B, K]`` of the samples the loss was trained on (clean or
            adversarial), used for the running training accuracy.
        terms: named scalar parts of the loss, logged per epoch in the history.
        per_example: optional ``[B]`` per-example losses (detached) for ``Method.observe``.
    """

    loss: torch.Tensor
    scores: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    per_example: torch.Tensor | None = None


class Method:
    """Base class of training methods.

    A batch goes down once and comes back once: ``batches`` yields ``Batch`` objects,
    ``loss(model, batch, step)`` turns one into a ``StepOutput`` (the ``Step`` says where
    training stands, for settings that ramp up), and ``fit`` hands the output back through
    ``observe`` after the optimiser step. Subclasses implement ``loss``.
    """

    key: str = "method"

    def attach(self, model: nn.Module) -> None:
        """Change the model's structure if the method needs it (e.g. a prototype head).

        Called by ``fit`` and when a checkpoint is loaded; must not need data.
        """

    def setup(self, model: nn.Module, train: Split) -> None:
        """Data-dependent initialisation before the first epoch (default: nothing).

        ``train`` is the split actually trained on (the held-out batch removed).
        """

    def batches(self, loader: BatchIterator, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch (default: the loader's seeded shuffled batches).

        A method with its own sampling (e.g. ClusTR's neighbourhood batches) overrides
        this; it must draw its randomness from the global torch RNG, which ``fit``
        reseeds from ``(seed, epoch)`` at the start of every epoch.
        """
        for x, y in loader.epoch(epoch):
            yield Batch(x, y)

    def loss(self, model: nn.Module, batch: Batch, step: Step = FIRST_STEP) -> StepOutput:
        raise NotImplementedError

    def observe(self, batch: Batch, out: StepOutput) -> None:
        """Take back what a step measured per example (default: nothing).

        ``fit`` calls it after the optimiser step with the batch and the method's own
        ``StepOutput`` for it, e.g. for ClusTR to record the example losses it samples by.
        """

    def on_epoch_end(self, model: nn.Module, train: Split, epoch: int) -> None:
        """Work after every epoch, e.g. refreshing cluster centres (default: nothing)."""

    def epoch_notes(self, record: dict) -> dict[str, str]:
        """Warnings about an epoch's history ``record``: ``{code: sentence}`` (default: none).

        ``fit`` warns once per run for every code and keeps the notes under ``notes`` in the
        record, so tables can mark the run (e.g. a loss term stuck at a constant).
        """
        return {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Learnable method state that ``fit`` must give to the optimiser (default: none)."""
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned (default: nothing to restore)."""


def ramp_factor(progress: float, ramp: float) -> float:
    """Linear warm-up: ``min(1, progress / ramp)``, or 1 when ``ramp`` is 0.

    ``progress`` is the fraction of training done (``Step.progress``); methods multiply
    their eps (and attack step) by this factor so the budget grows from 0 over the first
    ``ramp`` fraction of training.
    """
    if not 0.0 <= ramp <= 1.0:
        raise ValueError(f"eps_ramp must be a fraction of training in [0, 1], got {ramp}")
    return 1.0 if ramp <= 0 else min(1.0, progress / ramp)


class AttackingMethod(Method):
    """A method that crafts a training-time attack: the settings such methods share.

    Args:
        eps: L-inf budget in [0, 1] pixel units.
        steps: attack steps.
        step_size: attack step at full eps, [0, 1] pixel units (default ``2.5 * eps / steps``).
        eps_ramp: fraction of training over which eps and the step grow linearly from 0
            (``ramp_factor``); 0 disables the ramp.
        attack_bn: BatchNorm mode while crafting: ``"eval"`` (running statistics) or
            ``"train"`` (the batch's own statistics, ``attacks.core.crafting_batchnorm``).
    """

    def __init__(self, eps: float, steps: int, step_size: float | None, eps_ramp: float, attack_bn: str) -> None:
        crafting_batchnorm(nn.Identity(), attack_bn)  # validates the mode
        ramp_factor(0.0, eps_ramp)  # validates the ramp
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.eps = eps
        self.steps = steps
        self.step_size = 2.5 * eps / max(steps, 1) if step_size is None else step_size
        self.eps_ramp = eps_ramp
        self.attack_bn = attack_bn

    def ramp_factor(self, step: Step) -> float:
        """Fraction of the full eps (and step) in use at ``step`` (1 after the ramp)."""
        return ramp_factor(step.progress, self.eps_ramp)


@dataclass(frozen=True)
class Recipe:
    """A named method with its defaults.

    Attributes:
        key: the name used everywhere (``robustviz train --method <key>``).
        summary: one line for ``robustviz train --list``.
        paper: the reference the method follows.
        make: builds the ``Method`` from ``(eps, **method_kwargs)``.
        overrides: per ``(family, profile)`` changes to ``BASE_CONFIGS``; the key
            ``(family, "*")`` applies to every profile (quick, lab and full), before the
            profile's own key.
    """

    key: str
    summary: str
    paper: str
    make: Callable[..., Method]
    overrides: dict[tuple[str, str], dict] = field(default_factory=dict)

    def config(self, family: str, profile: str, **overrides) -> TrainConfig:
        """The training settings of this recipe for a dataset family and profile."""
        if profile not in PROFILES:
            raise unknown_name_error("profile", profile, PROFILES)
        if family not in FAMILIES:
            raise unknown_name_error("dataset family", family, FAMILIES)
        config = BASE_CONFIGS[(family, profile)]
        for key in ((family, "*"), (family, profile)):
            if key in self.overrides:
                config = config.updated(**dict(self.overrides[key]))
        return config.updated(**overrides) if overrides else config

    def build_method(self, config: TrainConfig, default_eps: float) -> Method:
        """Instantiate the method with the config's eps (or the dataset's) and kwargs."""
        eps = config.eps if config.eps is not None else default_eps
        known = self.method_settings()
        unknown = [name for name in config.method_kwargs if known is not None and name not in known]
        if unknown:
            raise unknown_name_error(f"setting of the {self.key} method", unknown[0], known)
        return self.make(eps=eps, **config.method_kwargs)

    def method_settings(self) -> tuple[str, ...] | None:
        """The names ``method_kwargs`` may set for this recipe (the method's keyword arguments),
        or None where the method passes extra keywords on (then its own check answers)."""
        parameters = inspect.signature(self.make).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return None
        return tuple(p.name for p in parameters if p.name != "eps" and p.kind is not inspect.Parameter.VAR_POSITIONAL)
