"""The out-of-distribution guard: image checks and the Mahalanobis distance on features."""

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis

from dxserve.core.ood import ImageBounds, OodGuard, fit_guard, image_stats


def grey_frames(rng: np.random.Generator, n: int) -> np.ndarray:
    """Greyscale, textured uint8 frames (N, 3, 32, 32), like echoes in their statistics."""
    grey = rng.integers(0, 200, (n, 1, 32, 32), dtype=np.uint8)
    return np.repeat(grey, 3, axis=1)


def test_image_stats_take_uint8_or_scaled_float() -> None:
    x = grey_frames(np.random.default_rng(0), 3)
    a, b = image_stats(x), image_stats(x.astype(np.float32) / 255)
    for key in a:
        assert np.allclose(a[key], b[key], atol=1e-6)
    assert np.all(a["chroma"] == 0)


def test_image_checks_name_the_problem() -> None:
    rng = np.random.default_rng(1)
    bounds = ImageBounds.fit(grey_frames(rng, 200))
    blank = np.full((1, 3, 32, 32), 90, np.uint8)
    saturated = np.full((1, 3, 32, 32), 255, np.uint8)
    saturated[0, :, :4] = rng.integers(0, 255, (3, 4, 32), dtype=np.uint8)
    colour = grey_frames(rng, 1)
    colour[0, 0] = 255 - colour[0, 0]
    ok = grey_frames(rng, 1)
    reasons = bounds.problems(np.concatenate([blank, saturated, colour, ok]))
    assert reasons[0] is not None and reasons[0].startswith("blank")
    assert reasons[1] is not None and reasons[1].startswith("saturated")
    assert reasons[2] is not None and reasons[2].startswith("colour")
    assert reasons[3] is None


def test_distances_are_mahalanobis_to_the_nearest_class_mean() -> None:
    rng = np.random.default_rng(2)
    cov = np.array([[2.0, 0.3], [0.3, 0.5]])
    means = np.array([[0.0, 0.0], [5.0, 5.0]])
    bounds = ImageBounds(0.0, 1.0, 1.0)
    guard = OodGuard(bounds, means, np.linalg.inv(cov), threshold=9.0, quantile=0.99)
    points = rng.normal(size=(10, 2)) * 3
    expected = [min(mahalanobis(p, m, np.linalg.inv(cov)) ** 2 for m in means) for p in points]
    assert np.allclose(guard.distances(points), expected)
    restored = OodGuard.from_dict(guard.to_dict())
    assert np.allclose(restored.distances(points), expected)


def test_fitted_threshold_refuses_far_features_and_few_near_ones() -> None:
    rng = np.random.default_rng(3)
    x = grey_frames(rng, 400)
    y = rng.integers(0, 2, 400)
    features = rng.normal(size=(400, 16)) + y[:, None] * 3
    val = rng.normal(size=(2000, 16)) + rng.integers(0, 2, 2000)[:, None] * 3
    guard = fit_guard(x, features, y, val, quantile=0.99)
    assert np.mean(guard.distances(val) > guard.threshold) == pytest.approx(0.01, abs=0.002)
    fresh = rng.normal(size=(2000, 16)) + rng.integers(0, 2, 2000)[:, None] * 3
    assert np.mean(guard.distances(fresh) > guard.threshold) < 0.03
    far = rng.normal(size=(50, 16)) + 12
    outputs = {"features": np.concatenate([far, fresh[:50]])}
    reasons = guard.problems(grey_frames(rng, 100), outputs)
    assert all(r is not None and r.startswith("unlike the training") for r in reasons[:50])
    assert sum(r is not None for r in reasons[50:]) <= 3
