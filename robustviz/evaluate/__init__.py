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
from .diagnose import Diagnosis, Flag, diagnose, diagnoses_table, loss_along_fgsm
from .ladder import LADDER_LEVELS, LadderReport, LadderRow, ladder, resolve_data
from .robustness import ATTACK_SPECS, RobustnessReport, accuracy, evaluate_robustness, make_attack, predict
from .sweep import eps_grid, eps_sweep

__all__ = [
    "ATTACK_SPECS", "Diagnosis", "Flag", "LADDER_LEVELS", "LadderReport", "LadderRow", "RobustnessReport",
    "accuracy", "certified_accuracy", "certified_radii", "diagnose", "diagnoses_table", "eps_grid", "eps_sweep",
    "loss_along_fgsm",
    "evaluate_robustness", "feature_radius", "input_radius", "ladder", "linf_radius", "make_attack",
    "model_centres", "predict", "resolve_data",
]
