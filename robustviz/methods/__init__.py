"""The training methods, one folder each, and the registry of their recipes by name.

A method folder (``robustviz/methods/<key>/``) holds everything about one method: its
``README.md`` (paper, formulas, settings and their sources, pitfalls), ``loss.py`` (pure
functions), ``head.py`` (a decision rule, if the method has its own), ``sampler.py`` (its
batches, if not the loader's), ``method.py`` (the ``Method``) and ``recipes.py`` (its
recipes). Adding a method is one folder plus one line in ``METHOD_FOLDERS`` below
(docs/architecture.md shows a complete example).

Example:
    >>> from robustviz import methods
    >>> recipe = methods.get("pgd_at")
    >>> recipe.config("mnist", "quick").method_kwargs["steps"]
    5
"""

from __future__ import annotations

from .._checks import unknown_name_error
from . import adr, clustr, drp, gce, singlestep, standard, trades
from .base import BASE_CONFIGS, FAMILIES, PROFILES, Batch, Method, Recipe, Step, StepOutput, TrainConfig, shortened

__all__ = [
    "BASE_CONFIGS", "FAMILIES", "METHOD_FOLDERS", "PROFILES", "RECIPES", "Batch", "Method", "Recipe", "Step",
    "StepOutput", "TrainConfig", "get", "list_recipes", "shortened",
]

# The registry: one line per method folder, in the order of the course (baselines first).
METHOD_FOLDERS = [standard, trades, gce, drp, clustr, adr, singlestep]

RECIPES: dict[str, Recipe] = {recipe.key: recipe for folder in METHOD_FOLDERS for recipe in folder.RECIPES}


def get(key: str) -> Recipe:
    """The recipe called ``key`` (raises a ``ValueError`` listing the known keys)."""
    if key not in RECIPES:
        raise unknown_name_error("method", key, tuple(RECIPES))
    return RECIPES[key]


def list_recipes() -> list[tuple[str, str]]:
    """``(key, one-line summary)`` for every recipe, in registry order."""
    return [(r.key, r.summary) for r in RECIPES.values()]
