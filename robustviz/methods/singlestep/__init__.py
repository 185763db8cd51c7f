"""SAT-R1/R2/R3 (Vivek & Babu 2020, arXiv:2002.00614): regularisers that make single-step adversarial training work.

The method, its formulas, settings and pitfalls: README.md in this folder.
"""

from .method import SATR1, SATR2, SATR3
from .recipes import RECIPES

__all__ = [
    "RECIPES", "SATR1", "SATR2", "SATR3",
]
