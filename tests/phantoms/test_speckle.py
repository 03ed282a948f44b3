"""The convolution model gives fully developed speckle: Rayleigh envelope statistics."""

import math

import numpy as np
from scipy import stats

from dxserve.phantoms.speckle import envelope, new_scatterers, sector_tables

RAYLEIGH_SNR = math.sqrt(math.pi / (4 - math.pi))  # mean / std of a Rayleigh variable ≈ 1.91


def homogeneous_envelope(seed: int = 0) -> np.ndarray:
    size = 256
    scatterers = new_scatterers(size, np.random.default_rng(seed))
    env = envelope(np.ones_like(scatterers), scatterers)
    return env[20:-20, 10:-10]  # away from the convolution's edges


def test_envelope_has_rayleigh_snr() -> None:
    env = homogeneous_envelope()
    assert abs(env.mean() / env.std() - RAYLEIGH_SNR) < 0.08


def test_envelope_distribution_is_rayleigh_not_gaussian() -> None:
    env = homogeneous_envelope(1)
    # Subsample to roughly independent speckle cells before testing the distribution.
    sample = env[::6, ::3].ravel()
    scale = math.sqrt(np.mean(sample**2) / 2)
    assert stats.kstest(sample, "rayleigh", args=(0, scale)).pvalue > 0.01
    loc, std = sample.mean(), sample.std()
    assert stats.kstest(sample, "norm", args=(loc, std)).pvalue < 0.01


def test_envelope_scales_with_echogenicity() -> None:
    size = 256
    scatterers = new_scatterers(size, np.random.default_rng(2))
    bright = envelope(np.full_like(scatterers, 4.0), scatterers)
    dim = envelope(np.ones_like(scatterers), scatterers)
    assert np.allclose(bright, 2 * dim, rtol=1e-4)


def test_sector_is_a_fan_with_apex_at_top() -> None:
    inside = sector_tables(128)[3]
    assert not inside[0, 0] and not inside[0, -1]  # top corners outside the fan
    assert inside[10, 64] and inside[100, 64]
    widths = inside.sum(axis=1)
    assert widths[20] < widths[60] < widths[100]
