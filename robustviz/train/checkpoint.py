"""Checkpoints: plain state dicts plus JSON metadata, loaded with ``weights_only=True``.

A checkpoint is a folder:

* ``model.pt``: ``model.state_dict()`` (includes method state kept in the model, such as
  prototypes or cluster centres held by its head);
* ``train_state.pt``: optimiser and method state, epoch and step, for resuming;
* ``meta.json``: how to rebuild the model, the recipe, the full training config, the
  dataset, the seed and the history.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

MODEL_FILE, STATE_FILE, META_FILE = "model.pt", "train_state.pt", "meta.json"
FORMAT_VERSION = 1


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    meta: dict,
    train_state: dict | None = None,
) -> Path:
    """Write ``model``'s weights, ``meta`` (JSON) and optionally ``train_state`` to ``directory``.

    Files are written to temporaries and renamed, so an interrupted save never leaves a
    half-written checkpoint behind.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_torch_save(model.state_dict(), directory / MODEL_FILE)
    if train_state is not None:
        _atomic_torch_save(train_state, directory / STATE_FILE)
    tmp = directory / (META_FILE + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT_VERSION, **meta}, indent=1, default=_jsonable))
    os.replace(tmp, directory / META_FILE)
    return directory


def read_meta(directory: str | Path) -> dict:
    path = Path(directory) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint in {directory} ({META_FILE} missing)")
    return json.loads(path.read_text())


def load_state(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """``torch.load`` with ``weights_only=True`` (no arbitrary code runs on load)."""
    return torch.load(path, map_location=device, weights_only=True)


def load_checkpoint(directory: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model saved in ``directory`` and load its weights.

    Returns:
        ``(model, meta)``; the model is in eval mode on ``device``.

    Example:
        >>> model, meta = load_checkpoint("results/demo/pgd_at")  # doctest: +SKIP
    """
    from .. import methods, models

    meta = read_meta(directory)
    model = models.build(**meta["model"])
    recipe = methods.get(meta["method"])
    config = recipe.config(meta["dataset"]["family"], meta["profile"]).updated(**_config_overrides(meta))
    recipe.build_method(config, meta["dataset"]["eps"]).attach(model)
    model.load_state_dict(load_state(Path(directory) / MODEL_FILE, device))
    return model.to(device).eval(), meta


def _config_overrides(meta: dict) -> dict:
    from ..methods import TrainConfig

    config = TrainConfig.upgrade(meta["config"])
    config["milestones"] = tuple(config.get("milestones", ()))
    return config


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in checkpoint metadata")
