"""Evaluation: clean and robust accuracy, the attack ladder, eps sweeps, gradient-masking
diagnostics and the certificate of nearest-centre models.

Example:
    >>> from robustviz.evaluate import evaluate_robustness, ladder, diagnose
    >>> report = evaluate_robustness(model, x, y, eps=(0.1, 0.2, 0.3))  # doctest: +SKIP
    >>> print(ladder(model, bundle, eps=0.3).table())  # doctest: +SKIP
    >>> print(diagnose(model, bundle, eps=0.3))  # doctest: +SKIP
"""

from .certificate import (
    certified_accuracy,
    certified_radii,
    feature_radius,
    input_radius,
    linf_radius,
    model_centres,
)
from .core import Evaluation, Outcome, labels_from_scores, predict, run_attacks
from .diagnose import Diagnosis, Flag, diagnose, diagnoses_table, loss_along_fgsm
from .ladder import LADDER_LEVELS, LadderReport, LadderRow, ladder, resolve_data
from .robustness import RobustnessReport, accuracy, evaluate_robustness
from .sweep import eps_grid, eps_sweep

__all__ = [
    "Diagnosis", "Evaluation", "Flag", "LADDER_LEVELS", "LadderReport", "LadderRow", "Outcome", "RobustnessReport",
    "accuracy", "certified_accuracy", "certified_radii", "diagnose", "diagnoses_table", "eps_grid", "eps_sweep",
    "evaluate_robustness", "feature_radius", "input_radius", "labels_from_scores", "ladder", "linf_radius",
    "loss_along_fgsm", "model_centres", "predict", "resolve_data", "run_attacks",
]
