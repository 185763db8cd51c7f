"""TRADES (Zhang et al. 2019, arXiv:1901.08573): cross-entropy plus beta times the clean-to-adversarial KL.

The method, its formulas, settings and pitfalls: README.md in this folder.
"""

from .loss import trades_loss
from .method import TRADES
from .recipes import RECIPES

__all__ = [
    "RECIPES", "TRADES", "trades_loss",
]
