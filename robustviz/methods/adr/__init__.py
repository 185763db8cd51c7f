"""ADR (Adversarial Distributional Regularisation): local and global feature compactness on top of adversarial training.

The method, its formulas, settings and pitfalls: README.md in this folder.
"""

from .loss import ADRRegularizer
from .method import ADR
from .recipes import RECIPES

__all__ = [
    "ADR", "ADRRegularizer", "RECIPES",
]
