"""Training: one loop (``fit``) for every method, schedules, history and checkpoints.

Example:
    >>> from robustviz.train import train_model
    >>> model, history = train_model("pgd_at", robustviz.data.load("mnist-mini"))  # doctest: +SKIP
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .history import History
from .loop import default_device, fit, input_statistics, split_holdout, train_model
from .schedules import SCHEDULES, make_schedule

__all__ = [
    "SCHEDULES", "History", "default_device", "fit", "input_statistics", "load_checkpoint", "make_schedule",
    "save_checkpoint", "split_holdout", "train_model",
]
