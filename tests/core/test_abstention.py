import numpy as np

from dxserve.core.abstention import Band, choose_band, coverage_and_accuracy


def test_band_excludes_the_uncertain_middle() -> None:
    # Confident cases are right; cases near 0.5 are a coin toss.
    prob = np.array([0.02, 0.05, 0.95, 0.98, 0.45, 0.55, 0.48, 0.52])
    y = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    band = choose_band(prob, y, target_accuracy=1.0)
    assert band.low <= 0.45 and band.high > 0.55
    assert band.accuracy == 1.0 and band.coverage == 0.5
    assert band.contains(0.5) and not band.contains(0.9)


def test_no_band_when_already_accurate() -> None:
    band = choose_band(np.array([0.1, 0.9, 0.2, 0.8]), np.array([0, 1, 0, 1]))
    assert (band.low, band.high) == (0.5, 0.5) and band.coverage == 1.0


def test_coverage_and_accuracy() -> None:
    coverage, accuracy = coverage_and_accuracy(
        np.array([0.1, 0.4, 0.6, 0.9]), np.array([0, 1, 1, 1]), 0.5, 0.3, 0.7
    )
    assert coverage == 0.5 and accuracy == 1.0
    assert isinstance(choose_band(np.array([0.5]), np.array([1])), Band)
