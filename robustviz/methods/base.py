"""What a training method is, and how recipes give it defaults per dataset and profile.

A ``Method`` turns one batch into a training loss (crafting its training-time attack
if it has one); ``fit`` owns everything else (optimiser, schedule, logging,
checkpoints). A ``Recipe`` names a method and holds its defaults for every dataset
family (``mnist``, ``cifar``, ``toy``) and profile (``quick`` for a CPU in minutes,
``full`` for the paper's setting on a GPU).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace

import torch
from torch import nn

from .._checks import unknown_name_error
from ..data import BatchIterator, Split

PROFILES = ("quick", "full")
FAMILIES = ("mnist", "cifar", "toy")


@dataclass
class StepOutput:
    """What a method returns for one batch.

    Attributes:
        loss: scalar training loss to minimise.
        scores: class scores ``[B, K]`` of the samples the loss was trained on (clean or
            adversarial), used for the running training accuracy.
        terms: named scalar parts of the loss, logged per epoch in the history.
    """

    loss: torch.Tensor
    scores: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


class Method:
    """Base class of training methods.

    Subclasses implement ``loss``. ``progress`` (fraction of training done, in [0, 1])
    is set by ``fit`` before every step, for methods whose settings ramp up.
    """

    key: str = "method"

    def __init__(self) -> None:
        self.progress = 0.0

    def attach(self, model: nn.Module) -> None:
        """Change the model's structure if the method needs it (e.g. a prototype head).

        Called by ``fit`` and when a checkpoint is loaded; must not need data.
        """

    def setup(self, model: nn.Module, train: Split) -> None:
        """Data-dependent initialisation before the first epoch (default: nothing).

        ``train`` is the split actually trained on (the held-out batch removed).
        """

    def batches(self, loader: BatchIterator, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of one epoch (default: the loader's seeded shuffled batches).

        A method with its own sampling (e.g. ClusTR's neighbourhood batches) overrides
        this; it must draw its randomness from the global torch RNG, which ``fit``
        reseeds from ``(seed, epoch)`` at the start of every epoch.
        """
        return loader.epoch(epoch)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        raise NotImplementedError

    def on_epoch_end(self, model: nn.Module, train: Split, epoch: int) -> None:
        """Work after every epoch, e.g. refreshing cluster centres (default: nothing)."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Learnable method state that ``fit`` must give to the optimiser (default: none)."""
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned (default: nothing to restore)."""


def ramp_factor(progress: float, ramp: float) -> float:
    """Linear warm-up: ``min(1, progress / ramp)``, or 1 when ``ramp`` is 0.

    ``progress`` is the fraction of training done (``Method.progress``); methods multiply
    their eps (and attack step) by this factor so the budget grows from 0 over the first
    ``ramp`` fraction of training.
    """
    if not 0.0 <= ramp <= 1.0:
        raise ValueError(f"eps_ramp must be a fraction of training in [0, 1], got {ramp}")
    return 1.0 if ramp <= 0 else min(1.0, progress / ramp)


@dataclass
class TrainConfig:
    """Every setting of one training run. Recipes fill it per dataset family and profile.

    Units: ``eps`` and ``attack_step`` are in [0, 1] pixel units; ``milestones`` are epochs.
    ``method_kwargs`` go to the method's constructor.

    Catastrophic-overfitting monitor: every epoch the PGD accuracy on the held-out batch
    (``val_size`` images, ``monitor_steps`` PGD steps) is compared with its best so far; a
    fall of more than ``co_drop`` (absolute) raises the ``co_alarm`` of that epoch's record.
    ``rollback=True`` restores the weights of the epoch with the best held-out PGD accuracy
    at the end of training.
    """

    model: str = "smallcnn"
    feat_dim: int | None = None
    epochs: int = 5
    steps: int | None = None
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    augment: str | None = None
    eps: float | None = None
    val_size: int = 500
    monitor_steps: int = 10
    co_drop: float = 0.2
    rollback: bool = False
    amp: bool = True
    channels_last: bool = True
    method_kwargs: dict = field(default_factory=dict)

    def updated(self, **overrides) -> TrainConfig:
        """A copy with ``overrides`` applied; ``method_kwargs`` are merged, not replaced."""
        names = {f.name for f in fields(self)}
        unknown = [k for k in overrides if k not in names]
        if unknown:
            raise unknown_name_error("training setting", unknown[0], tuple(names))
        kwargs = dict(self.method_kwargs)
        kwargs.update(overrides.pop("method_kwargs", None) or {})
        return replace(self, method_kwargs=kwargs, **overrides)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["milestones"] = list(self.milestones)
        return out


# Shared starting points; recipes override what their paper changes.
BASE_CONFIGS: dict[tuple[str, str], TrainConfig] = {
    ("mnist", "quick"): TrainConfig(model="smallcnn", epochs=4, batch_size=128, optimizer="adam",
                                    lr=1e-3, schedule="cosine", val_size=500),
    ("mnist", "full"): TrainConfig(model="smallcnn", epochs=100, batch_size=128, optimizer="sgd",
                                   lr=0.01, momentum=0.9, schedule="multistep",
                                   milestones=(55, 75, 90), val_size=1000),
    ("cifar", "quick"): TrainConfig(model="smallcnn", epochs=4, batch_size=128, optimizer="adam",
                                    lr=1e-3, schedule="cosine", val_size=500),
    ("cifar", "full"): TrainConfig(model="preact_resnet18", epochs=200, batch_size=128,
                                   optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                                   schedule="multistep", milestones=(100, 150), augment="crop_flip",
                                   val_size=1000),
    ("toy", "quick"): TrainConfig(model="mlp", epochs=60, batch_size=64, optimizer="adam", lr=1e-2,
                                  schedule="cosine", val_size=100, feat_dim=2),
    ("toy", "full"): TrainConfig(model="mlp", epochs=200, batch_size=64, optimizer="adam", lr=1e-2,
                                 schedule="cosine", val_size=100, feat_dim=2),
}


@dataclass(frozen=True)
class Recipe:
    """A named method with its defaults.

    Attributes:
        key: the name used everywhere (``robustviz train --method <key>``).
        summary: one line for ``robustviz train --list``.
        paper: the reference the method follows.
        make: builds the ``Method`` from ``(eps, **method_kwargs)``.
        overrides: per ``(family, profile)`` changes to ``BASE_CONFIGS``; the key
            ``(family, "*")`` applies to both profiles.
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
        return self.make(eps=eps, **config.method_kwargs)
