"""Temperature scaling recovers a known miscalibration; ECE and Brier behave as defined."""

import numpy as np
import pytest
from scipy.special import expit

from dxserve.core.calibration import brier, expected_calibration_error, fit_temperature


def sample(true_temperature: float, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(logit / T): the model's logits are over-confident by T."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, n)
    y = (rng.random(n) < expit(logits / true_temperature)).astype(float)
    return logits, y


def test_fit_recovers_the_temperature_and_lowers_ece() -> None:
    logits, y = sample(2.5)
    fit = fit_temperature(logits, y)
    assert fit.temperature == pytest.approx(2.5, rel=0.08)
    assert fit.ece_after < 0.02 < fit.ece_before
    assert fit.brier_after < fit.brier_before


def test_calibrated_input_stays_calibrated() -> None:
    logits, y = sample(1.0, seed=1)
    fit = fit_temperature(logits, y)
    assert fit.temperature == pytest.approx(1.0, rel=0.08)
    assert expected_calibration_error(expit(logits), y) < 0.02


def test_ece_and_brier_by_definition() -> None:
    prob = np.array([0.9, 0.9, 0.1, 0.1])
    y = np.array([1, 0, 0, 0])
    # bin of 0.9: accuracy 0.5 → gap 0.4 × 2; bin of 0.1: accuracy 0 → gap 0.1 × 2
    assert expected_calibration_error(prob, y) == pytest.approx((0.8 + 0.2) / 4)
    assert brier(prob, y) == pytest.approx((0.01 + 0.81 + 0.01 + 0.01) / 4)
