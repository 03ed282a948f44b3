"""Probability calibration: temperature scaling, and how to measure calibration (ECE, Brier).

Temperature scaling (Guo et al., 2017) divides the logit by one scalar ``T`` fitted to minimise
the negative log-likelihood on validation data: it changes confidence, never the ranking (AUC).
"""

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit

ECE_BINS = 15


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and what it did to the data it was fitted on."""

    temperature: float
    ece_before: float
    ece_after: float
    brier_before: float
    brier_after: float
    n: int
    method: str = "temperature"
    fitted_on: str = "val"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return calibrated(logits, self.temperature)


def calibrated(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(logit / T)``."""
    return expit(np.asarray(logits, dtype=np.float64) / temperature)


def fit_temperature(logits: np.ndarray, y: np.ndarray, fitted_on: str = "val") -> Calibration:
    """The temperature that minimises the NLL of ``sigmoid(logit / T)`` against 0/1 labels."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    t = np.asarray(y, dtype=np.float64).reshape(-1)

    def nll(log_temperature: float) -> float:
        scaled = z / np.exp(log_temperature)
        return float(-(t * log_expit(scaled) + (1 - t) * log_expit(-scaled)).mean())

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    temperature = float(np.exp(result.x))
    before, after = expit(z), calibrated(z, temperature)
    return Calibration(
        temperature=temperature,
        ece_before=expected_calibration_error(before, t),
        ece_after=expected_calibration_error(after, t),
        brier_before=brier(before, t),
        brier_after=brier(after, t),
        n=len(t),
        fitted_on=fitted_on,
    )


def expected_calibration_error(prob: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the sample-weighted gap between confidence and accuracy over equal-width bins of the
    predicted probability of the positive class."""
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    t = np.asarray(y, dtype=np.float64).reshape(-1)
    index = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.sum() * abs(p[members].mean() - t[members].mean())
    return float(total / max(len(p), 1))


def brier(prob: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error of the probability against the 0/1 label."""
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    return float(np.mean((p - np.asarray(y, dtype=np.float64).reshape(-1)) ** 2))


def reliability_bins(
    prob: np.ndarray, y: np.ndarray, bins: int = ECE_BINS
) -> list[tuple[float, float, int]]:
    """(mean predicted probability, observed frequency, count) of each non-empty bin."""
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    t = np.asarray(y, dtype=np.float64).reshape(-1)
    index = np.minimum((p * bins).astype(int), bins - 1)
    return [
        (float(p[index == b].mean()), float(t[index == b].mean()), int((index == b).sum()))
        for b in range(bins)
        if (index == b).any()
    ]
