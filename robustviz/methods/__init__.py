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
from ..settings import BASE_CONFIGS, FAMILIES, PROFILES, TrainConfig, shortened
from . import adr, clustr, drp, gce, singlestep, standard, trades
from .base import Batch, Method, Recipe, Step, StepOutput

__all__ = [
    "BASE_CONFIGS", "FAMILIES", "METHOD_FOLDERS", "PROFILES", "RECIPES", "Batch", "Method", "Recipe", "Step",
    "StepOutput", "TrainConfig", "get", "list_recipes", "register", "shortened",
]

# The registry: one line per method folder, in the order of the course (baselines first).
METHOD_FOLDERS = [standard, trades, gce, drp, clustr, adr, singlestep]

RECIPES: dict[str, Recipe] = {}


def register(folder) -> None:
    """Add the recipes of a method folder (a module with a ``RECIPES`` list) to the registry.

    The package's own folders are registered at import; a method of your own (a folder on
    your path, or a notebook's module) is registered the same way, after which
    ``train_model``, ``robustviz compare`` and the run cache know its recipes by key.

    Example:
        >>> from robustviz.methods import RECIPES, register, standard
        >>> register(standard)  # already there: registering again changes nothing
        >>> "pgd_at" in RECIPES
        True
    """
    for recipe in folder.RECIPES:
        if RECIPES.get(recipe.key, recipe) is not recipe:
            raise ValueError(f"a recipe called {recipe.key!r} is already registered; give yours another key")
        RECIPES[recipe.key] = recipe


for _folder in METHOD_FOLDERS:
    register(_folder)


def get(key: str) -> Recipe:
    """The recipe called ``key`` (raises a ``ValueError`` listing the known keys)."""
    if key not in RECIPES:
        raise unknown_name_error("method", key, tuple(RECIPES))
    return RECIPES[key]


def list_recipes() -> list[tuple[str, str]]:
    """``(key, one-line summary)`` for every recipe, in registry order."""
    return [(r.key, r.summary) for r in RECIPES.values()]
