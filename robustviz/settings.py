"""The settings of a training run: one ``TrainConfig`` row per (recipe, dataset family, profile).

Every setting of a run is a field of ``TrainConfig``, with its unit in ``UNITS``. A recipe's
row is resolved in one place, ``Recipe.config`` (``robustviz.methods.base``): the profile's
base row (``BASE_CONFIGS``), then the recipe's changes for the family (``(family, "*")``),
then for the profile, then a user's overrides. ``settings_table`` prints the resolved rows
of every recipe; ``robustviz train --show-config`` prints one; every run stores its resolved
row in its checkpoint (``meta.json``) and run file.

Profiles: ``quick`` (CPU minutes on mnist-mini), ``lab`` (one GPU lab session: CIFAR-10 in
about 10 minutes on a T4, docs/profiles.md) and ``full`` (the papers' settings, for a GPU).
Families: ``mnist``, ``cifar`` and ``toy`` (the 2-D toys).

Example:
    >>> from robustviz import methods
    >>> row = methods.get("pgd_at").config("mnist", "quick")
    >>> row.epochs, row.method_kwargs["steps"], UNITS["epochs"]
    (5, 5, 'epochs')
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from ._checks import check_train_settings, unknown_name_error
from .precision import AMP_MODES

PROFILES = ("quick", "lab", "full")
FAMILIES = ("mnist", "cifar", "toy")
INPUT_NORMS = ("dataset", "none")
MONITOR_ATTACKS = ("pgd", "ifgsm")


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


# The unit of every setting; "-" for names and switches.
UNITS: dict[str, str] = {
    "model": "-", "feat_dim": "features (None: the model's own)", "epochs": "epochs",
    "steps": "optimiser steps (None: epochs decide)", "batch_size": "images (global, all processes)",
    "optimizer": "-", "lr": "peak learning rate", "momentum": "-", "weight_decay": "L2 coefficient",
    "schedule": "-", "milestones": "epochs", "gamma": "lr factor per milestone",
    "warmup_fraction": "fraction of all steps", "augment": "-", "input_norm": "-",
    "eps": "[0, 1] pixel units, L-inf (None: the dataset's)", "val_size": "held-out images",
    "monitor_attack": "-", "monitor_steps": "attack steps", "co_drop": "accuracy (absolute fall)",
    "rollback": "-", "amp": "-", "channels_last": "-", "compile": "-", "sync_batchnorm": "-",
    "log_every": "optimiser steps", "method_kwargs": "the method's own (its README)",
}


def describe(config: TrainConfig) -> list[tuple[str, str, str]]:
    """``(setting, value, unit)`` for every field of ``config``, in declaration order; each of
    the method's own settings is a row ``method_kwargs.<name>`` (units: the method's README).

    Example:
        >>> describe(TrainConfig())[1]
        ('feat_dim', 'None', "features (None: the model's own)")
    """
    rows = [(name, _shown(value), UNITS[name]) for name, value in config.to_dict().items() if name != "method_kwargs"]
    rows += [(f"method_kwargs.{name}", _shown(value), "the method's README") for name, value in
             config.method_kwargs.items()]
    return rows


def show_config(config: TrainConfig, title: str = "") -> str:
    """A plain-text table of ``describe(config)``, one line per setting."""
    rows = describe(config)
    width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines = [title] if title else []
    lines += [f"{name:<{width}}  {value:<{value_width}}  {unit}" for name, value, unit in rows]
    return "\n".join(lines)


def settings_table(family: str, profile: str) -> str:
    """A markdown table of every recipe's resolved settings for one dataset family and profile.

    One row per recipe (registry order), one column per ``TrainConfig`` field (units: ``UNITS``,
    ``units_table``). ``python -m robustviz.settings`` prints these tables for every family and
    profile: that output is ``docs/settings.md``.
    """
    from . import methods  # the registry imports this module

    names = [f.name for f in fields(TrainConfig)]
    lines = ["| recipe | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, recipe in methods.RECIPES.items():
        values = recipe.config(family, profile).to_dict()
        lines.append(f"| {key} | " + " | ".join(_shown(values[name]).replace("|", "/") for name in names) + " |")
    return "\n".join(lines)


def units_table() -> str:
    """A markdown table of every setting's unit."""
    return "\n".join(["| setting | unit |", "|---|---|", *(f"| {name} | {unit} |" for name, unit in UNITS.items())])


def settings_document() -> str:
    """``docs/settings.md``: the units, then ``settings_table`` for every family and profile."""
    parts = ["# Settings: every recipe's resolved row per dataset family and profile", "",
             "Generated by `python -m robustviz.settings > docs/settings.md` from `robustviz/settings.py` "
             "(the base rows) and each method's `recipes.py` (its changes); a test checks that this file is "
             "current. `robustviz train --method KEY --dataset D --profile P --show-config` prints one row "
             "with its units.", "", "## Units", "", units_table()]
    for family in FAMILIES:
        for profile in PROFILES:
            parts += ["", f"## {family}, {profile}", "", settings_table(family, profile)]
    return "\n".join(parts) + "\n"


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_shown(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_shown(v) for v in value) + ")"
    return str(value)


if __name__ == "__main__":
    print(settings_document(), end="")
