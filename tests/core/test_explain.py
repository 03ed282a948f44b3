"""Saliency maps: geometry on the image, occlusion, localisation scores and the overlay PNG."""

import io

import numpy as np
import pytest
from PIL import Image

from dxserve.core.explain import (
    SaliencyMap,
    occlusion_inputs,
    occlusion_map,
    pointing_hit,
    relevance_mass,
)
from dxserve.core.explain.overlay import render_overlay


def test_a_grid_cell_lands_where_its_centre_is_on_the_image() -> None:
    values = np.zeros((30, 30))
    values[10, 20] = 1.0
    saliency = SaliencyMap(values, 4.0, 4.0, (128, 128), "test", "abnormal")
    # Model pixel (44, 84) on a 256-pixel image is image pixel ≈ (88.5, 168.5).
    on_image = saliency.on_image(256, 256)
    row, col = np.unravel_index(np.argmax(on_image), on_image.shape)
    assert abs(row - 88.5) <= 1 and abs(col - 168.5) <= 1
    assert on_image.shape == (256, 256)
    restored = SaliencyMap.from_bytes(saliency.to_bytes(), saliency.describe())
    assert np.array_equal(restored.values, values.astype(np.float32))
    assert restored.describe() == saliency.describe()


def test_occlusion_finds_the_region_the_score_depends_on() -> None:
    x = np.random.default_rng(0).random((3, 64, 64)).astype(np.float32)
    x[:, 40:56, 8:24] += 2.0  # the bright patch the "model" looks at

    def score(batch: np.ndarray) -> np.ndarray:
        return batch[:, :, 40:56, 8:24].sum(axis=(1, 2, 3))

    occluded = occlusion_inputs(x)
    assert occluded.shape == (7 * 7, 3, 64, 64)
    grid, stride, offset = occlusion_map(float(score(x[None])[0]), score(occluded), (64, 64))
    assert grid.shape == (7, 7) and (stride, offset) == (8.0, 7.5)
    assert np.unravel_index(np.argmax(grid), grid.shape) == (5, 1)
    saliency = SaliencyMap(grid, stride, offset, (64, 64), "occlusion", "abnormal")
    mask = np.zeros((64, 64), bool)
    mask[40:56, 8:24] = True
    assert pointing_hit(saliency.on_image(64, 64), mask)


def test_pointing_game_and_relevance_mass() -> None:
    mask = np.zeros((50, 50), bool)
    mask[10:20, 10:20] = True
    inside = np.zeros((50, 50))
    inside[15, 15] = 3.0
    inside[40, 40] = 1.0
    assert pointing_hit(inside, mask) and relevance_mass(inside, mask) == pytest.approx(0.75)
    near = np.zeros((50, 50))
    near[25, 15] = 1.0  # 6 pixels below the mask
    assert not pointing_hit(near, mask) and pointing_hit(near, mask, tolerance=6)
    assert not pointing_hit(np.zeros((50, 50)), mask)
    assert relevance_mass(-inside, mask) == 0.0
    with pytest.raises(ValueError):
        pointing_hit(np.zeros((10, 10)), mask)


def test_overlay_is_a_png_the_size_of_a_figure() -> None:
    image = np.zeros((120, 160, 3), np.uint8)
    saliency = SaliencyMap(np.eye(30), 4.0, 4.0, (128, 128), "hirescam", "abnormal")
    png = render_overlay(image, saliency, "test")
    decoded = Image.open(io.BytesIO(png))
    assert decoded.format == "PNG" and decoded.width >= 400
