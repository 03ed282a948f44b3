"""Abstention: an "indeterminate — refer to a clinician" band around the decision threshold.

The band is chosen on validation data: the narrowest symmetric band around the threshold outside
which the model's accuracy reaches a target. Served results inside the band say so instead of
giving a label.
"""

from dataclasses import asdict, dataclass

import numpy as np

INDETERMINATE = "indeterminate"
TARGET_ACCURACY = 0.98
MAX_HALF_WIDTH = 0.45


@dataclass(frozen=True)
class Band:
    """Probabilities in ``[low, high)`` are indeterminate; coverage and accuracy as measured."""

    low: float
    high: float
    target_accuracy: float
    coverage: float  # share of cases outside the band (answered)
    accuracy: float  # accuracy on the answered cases
    n: int
    fitted_on: str = "val"

    def contains(self, probability: float) -> bool:
        return self.low <= probability < self.high

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def coverage_and_accuracy(
    prob: np.ndarray, y: np.ndarray, threshold: float, low: float, high: float
) -> tuple[float, float]:
    """Share of cases outside ``[low, high)`` and the accuracy on them (nan when none)."""
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    t = np.asarray(y).reshape(-1).astype(int)
    answered = (p < low) | (p >= high)
    if not answered.any():
        return 0.0, float("nan")
    correct = (p[answered] >= threshold).astype(int) == t[answered]
    return float(answered.mean()), float(correct.mean())


def choose_band(
    prob: np.ndarray,
    y: np.ndarray,
    threshold: float = 0.5,
    target_accuracy: float = TARGET_ACCURACY,
    fitted_on: str = "val",
) -> Band:
    """The narrowest band (steps of 0.01 each side) reaching ``target_accuracy`` outside it;
    the widest allowed band when no width reaches it (its accuracy then shows the shortfall)."""
    widths = np.round(np.arange(0.0, MAX_HALF_WIDTH + 1e-9, 0.01), 2)
    for width in widths:
        low, high = round(max(threshold - width, 0.0), 6), round(min(threshold + width, 1.0), 6)
        coverage, accuracy = coverage_and_accuracy(prob, y, threshold, low, high)
        if coverage > 0 and accuracy >= target_accuracy:
            break
    return Band(float(low), float(high), target_accuracy, coverage, accuracy, len(y), fitted_on)
