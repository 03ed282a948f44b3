"""Preprocessing recipes: the one definition of model input, shared by training and serving."""

from dxserve.core.preprocess.recipes import RECIPES, Recipe, get_recipe

__all__ = ["RECIPES", "Recipe", "get_recipe"]
