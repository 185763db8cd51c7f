"""ClusTR (Alfarra et al. 2020, arXiv:2006.07682) and ClusTR+QTRADES: Magnet-loss clusters and a nearest-cluster rule.

The method, its formulas, settings and pitfalls: README.md in this folder.
"""

from .head import ClusterHead, PaperScores, score_gradient_norms
from .loss import magnet_loss
from .method import ClusTR, ClusTRQTrades
from .recipes import RECIPES

__all__ = [
    "ClusTR", "ClusTRQTrades", "ClusterHead", "PaperScores", "RECIPES", "magnet_loss", "score_gradient_norms",
]
