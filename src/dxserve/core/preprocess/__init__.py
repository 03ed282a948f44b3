"""Preprocessing recipes: the one definition of model input, shared by training and serving.

A manifest's ``preprocessing`` names its recipe's kind: ``image`` (:class:`Recipe`: resize and
scale frames) or ``signal`` (:class:`SignalRecipe`: leads, band-pass, resample, windows).
"""

from typing import Any

from dxserve.core.preprocess.recipes import RECIPES, Recipe, get_recipe
from dxserve.core.preprocess.signal import SignalRecipe

AnyRecipe = Recipe | SignalRecipe


def recipe_from_dict(data: dict[str, Any]) -> AnyRecipe:
    """The recipe a manifest describes (an image recipe when it names no kind)."""
    if data.get("kind") == "signal":
        return SignalRecipe.from_dict(data)
    return Recipe.from_dict(data)


__all__ = ["RECIPES", "AnyRecipe", "Recipe", "SignalRecipe", "get_recipe", "recipe_from_dict"]
