"""Evaluation: clean and robust accuracy, eps sweeps, per-sample worst case.

Example:
    >>> from robustviz.evaluate import evaluate_robustness
    >>> report = evaluate_robustness(model, x, y, eps=(0.1, 0.2, 0.3))  # doctest: +SKIP
    >>> print(report.table())  # doctest: +SKIP
"""

from .certificate import feature_radius, input_radius, linf_radius
from .robustness import RobustnessReport, accuracy, evaluate_robustness, make_attack, predict

__all__ = [
    "RobustnessReport", "accuracy", "evaluate_robustness", "feature_radius", "input_radius",
    "linf_radius", "make_attack", "predict",
]
