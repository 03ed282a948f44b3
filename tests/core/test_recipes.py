import numpy as np
import pytest

from dxserve.core.preprocess import Recipe, get_recipe
from dxserve.errors import InvalidInput


def test_rgb_128_recipe_makes_model_input() -> None:
    recipe = get_recipe("rgb-128")
    frames = np.random.default_rng(0).integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
    x = recipe.apply(frames)
    assert x.shape == (2, 3, 128, 128) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0


def test_grey_frames_become_three_equal_channels() -> None:
    x = get_recipe("rgb-128").resize(np.full((1, 50, 60), 7, dtype=np.uint8))
    assert x.shape == (1, 3, 128, 128)
    assert (x == 7).all()


def test_resize_then_normalize_equals_apply() -> None:
    recipe = get_recipe("rgb-128")
    frames = np.random.default_rng(1).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    assert np.array_equal(recipe.normalize(recipe.resize(frames)), recipe.apply(frames))


def test_round_trip_through_manifest_form() -> None:
    recipe = get_recipe("rgb-128")
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_unknown_recipe_and_bad_frames() -> None:
    with pytest.raises(InvalidInput):
        get_recipe("nope")
    with pytest.raises(InvalidInput):
        get_recipe("rgb-128").resize(np.zeros((1, 4, 4, 2), dtype=np.uint8))
    with pytest.raises(InvalidInput):
        get_recipe("rgb-128").resize(np.zeros((1, 4, 4, 3), dtype=np.float32))
