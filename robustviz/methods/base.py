"""What a training method is, and how recipes give it defaults per dataset and profile.

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
from dataclasses import asdict, dataclass, field, fields, replace

import torch
from torch import nn

from .._checks import check_train_settings, unknown_name_error
from ..data import BatchIterator, Split
from ..precision import AMP_MODES

PROFILES = ("quick", "lab", "full")
FAMILIES = ("mnist", "cifar", "toy")
INPUT_NORMS = ("dataset", "none")
MONITOR_ATTACKS = ("pgd", "ifgsm")


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


@dataclass
class TrainConfig:
    """Every setting of one training run. Recipes fill it per dataset family and profile.

    Units: ``eps`` is in [0, 1] pixel units; ``milestones`` are epochs; ``warmup_fraction``
    is a fraction of all optimiser steps. ``method_kwargs`` go to the method's constructor.

    Inputs: ``input_norm="dataset"`` builds the model with the dataset's per-channel
    mean/std as its first layer; ``"none"`` feeds the raw [0, 1] pixels, as many papers'
    code does (SAT-Rx, TRADES, Madry et al.'s MNIST). The learning rate and weight decay a
    paper gives are only the paper's when the inputs are scaled as in its code.

    Schedule: ``"onecycle"`` rises linearly from 0 to ``lr`` over ``warmup_fraction`` of
    training, then falls linearly to 0 (Wong et al.: 0.5 on CIFAR-10, 0.4 on MNIST).

    Catastrophic-overfitting monitor: every epoch the accuracy on the held-out batch
    (``val_size`` images) under the monitor attack is compared with its best so far; a
    fall of more than ``co_drop`` (absolute) raises the ``co_alarm`` of that epoch's record.
    The monitor attack is ``monitor_attack="pgd"`` (``monitor_steps`` steps from a random
    start, step ``2.5 eps / steps``) or ``"ifgsm"`` (I-FGSM: ``monitor_steps`` steps of
    ``eps / steps`` from ``x``, the SAT-Rx authors' selection attack). ``rollback=True``
    restores the weights of the epoch with the best held-out accuracy under it at the end of
    training (best-epoch selection).

    Speed: ``amp`` is the precision of the training step: ``"auto"`` (bf16 on GPUs of compute
    capability >= 8.0, fp16 with a loss scaler below, float32 on the CPU), ``"bf16"``,
    ``"fp16"`` or ``"off"``. ``channels_last`` stores images and weights NHWC on CUDA.
    ``compile=True`` runs the model's body through ``torch.compile`` (its first steps pay the
    compilation). ``log_every``: steps between two reads of the running loss on the host; a
    training step itself never waits for the device.

    Several processes (``torchrun``, docs/distributed.md): ``batch_size`` is the global batch,
    split between the processes. ``sync_batchnorm=True`` computes BatchNorm's batch statistics
    over the global batch (``nn.SyncBatchNorm``, GPUs only) instead of each process's part.
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
    warmup_fraction: float = 0.5
    augment: str | None = None
    input_norm: str = "dataset"
    eps: float | None = None
    val_size: int = 500
    monitor_attack: str = "pgd"
    monitor_steps: int = 10
    co_drop: float = 0.2
    rollback: bool = False
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    sync_batchnorm: bool = False
    log_every: int = 10
    method_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_train_settings(asdict(self))
        for name, allowed in (("input_norm", INPUT_NORMS), ("monitor_attack", MONITOR_ATTACKS), ("amp", AMP_MODES)):
            if getattr(self, name) not in allowed:
                raise unknown_name_error(name, getattr(self, name), allowed)
        if int(self.log_every) != self.log_every or self.log_every < 1:
            raise ValueError(f"log_every must be an integer >= 1 (steps), got {self.log_every}")
        if not 0.0 < self.warmup_fraction <= 1.0:
            raise ValueError(f"warmup_fraction must be a fraction of training in (0, 1], got {self.warmup_fraction}")

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

    @classmethod
    def upgrade(cls, stored: dict) -> dict:
        """A config dict as a checkpoint stored it, in today's form: settings added since count
        as their defaults, and ``amp`` (once a bool) is ``"auto"`` or ``"off"``."""
        config = {**cls().to_dict(), **stored}
        if isinstance(config["amp"], bool):
            config["amp"] = "auto" if config["amp"] else "off"
        return config


# Shared starting points; recipes override what their paper changes.
BASE_CONFIGS: dict[tuple[str, str], TrainConfig] = {
    ("mnist", "quick"): TrainConfig(model="smallcnn", epochs=4, batch_size=128, optimizer="adam",
                                    lr=1e-3, schedule="cosine", val_size=500),
    # Raw [0, 1] inputs, as every MNIST code the recipes follow (Madry et al., TRADES, ADR,
    # Wong et al., GCE, SAT-Rx, DRP); recipes without a source (ce) share the choice.
    ("mnist", "full"): TrainConfig(model="smallcnn", epochs=100, batch_size=128, optimizer="sgd",
                                   lr=0.01, momentum=0.9, schedule="multistep",
                                   milestones=(55, 75, 90), input_norm="none", val_size=1000),
    ("cifar", "quick"): TrainConfig(model="smallcnn", epochs=4, batch_size=128, optimizer="adam",
                                    lr=1e-3, schedule="cosine", val_size=500),
    ("cifar", "full"): TrainConfig(model="preact_resnet18", epochs=200, batch_size=128,
                                   optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                                   schedule="multistep", milestones=(100, 150), augment="crop_flip",
                                   val_size=1000),
    # One GPU lab session on all of CIFAR-10 (docs/profiles.md): Wong et al.'s fast-AT setting
    # (train_fgsm.py: PreAct ResNet-18, batch 128, SGD m 0.9, wd 5e-4, a cyclic lr peaking at 0.2
    # half-way, crop + flip, normalised inputs), held-out monitor on 500 images. Recipes set
    # their epochs and attack so that each projects to about 10 minutes on a T4 (bench/flops.py).
    ("cifar", "lab"): TrainConfig(model="preact_resnet18", epochs=15, batch_size=128, optimizer="sgd", lr=0.2,
                                  momentum=0.9, weight_decay=5e-4, schedule="onecycle", warmup_fraction=0.5,
                                  augment="crop_flip", input_norm="dataset", val_size=500),
    # MNIST and the toys in the lab profile: the full profile's settings for fewer epochs (MNIST:
    # 10, milestones scaled by 10/100; each recipe shortens its own full settings the same way,
    # see ``shortened``). The toys are seconds on any device: lab = full.
    ("mnist", "lab"): TrainConfig(model="smallcnn", epochs=10, batch_size=128, optimizer="sgd",
                                  lr=0.01, momentum=0.9, schedule="multistep",
                                  milestones=(6, 8, 9), input_norm="none", val_size=1000),
    ("toy", "lab"): TrainConfig(model="mlp", epochs=200, batch_size=64, optimizer="adam", lr=1e-2,
                                schedule="cosine", val_size=100, feat_dim=2),
    ("toy", "quick"): TrainConfig(model="mlp", epochs=60, batch_size=64, optimizer="adam", lr=1e-2,
                                  schedule="cosine", val_size=100, feat_dim=2),
    ("toy", "full"): TrainConfig(model="mlp", epochs=200, batch_size=64, optimizer="adam", lr=1e-2,
                                 schedule="cosine", val_size=100, feat_dim=2),
}


def shortened(family: str, full: dict, epochs: int) -> dict:
    """A recipe's full-profile overrides ``full``, run for ``epochs`` epochs instead (lab profiles).

    The lr milestones (of ``full``, else of ``BASE_CONFIGS[(family, "full")]``) are scaled by
    ``epochs / E_full`` and rounded: milestone ``m`` becomes ``max(1, round(m * epochs / E_full))``
    (duplicates dropped), so the schedule keeps its shape. Everything else is the full profile's.

    Example:
        >>> shortened("mnist", dict(epochs=100, milestones=(55, 75, 90)), 10)["milestones"]
        (6, 8, 9)
    """
    base = BASE_CONFIGS[(family, "full")].updated(**{k: v for k, v in full.items() if k != "method_kwargs"})
    scale = epochs / base.epochs
    milestones = tuple(sorted({max(1, round(m * scale)) for m in base.milestones}))
    return {**full, "epochs": epochs, "milestones": milestones}


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
