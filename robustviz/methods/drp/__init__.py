"""Deep Repulsive Prototypes (Serban, Poll & Visser 2021, arXiv:2105.12427): fixed, well-separated prototypes.

The method, its formulas, settings and pitfalls: README.md in this folder.
"""

from .head import PrototypeHead, make_prototypes, prototype_geometry
from .method import DRP
from .recipes import RECIPES

__all__ = [
    "DRP", "PrototypeHead", "RECIPES", "make_prototypes", "prototype_geometry",
]
