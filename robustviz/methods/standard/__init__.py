"""Baselines: standard training (cross-entropy) and adversarial training (PGD-AT, FGSM-AT, FGSM-RS).

The method, its formulas, settings and pitfalls: README.md in this folder.
"""

from .method import AdversarialTraining, CrossEntropy
from .recipes import RECIPES

__all__ = [
    "AdversarialTraining", "CrossEntropy", "RECIPES",
]
