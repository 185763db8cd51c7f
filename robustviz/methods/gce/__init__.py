"""Guided Complement Entropy (Chen et al. 2019, arXiv:1903.09799): flatten the wrong classes' distribution.

The method, its formulas, settings and pitfalls: README.md in this folder.
"""

from .loss import guided_complement_entropy, normalized_complement_entropy
from .method import GCEAdversarialTraining, GuidedComplementEntropyTraining
from .plots import complement_statistics, plot_complement_entropy
from .recipes import RECIPES

__all__ = [
    "GCEAdversarialTraining", "GuidedComplementEntropyTraining", "RECIPES", "complement_statistics",
    "guided_complement_entropy", "normalized_complement_entropy", "plot_complement_entropy",
]
