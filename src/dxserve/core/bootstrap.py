"""Bootstrap confidence intervals for metrics of a binary classifier."""

import numpy as np

from dxserve.core.metrics import binary_metrics

REPLICATES = 1000


def bootstrap_intervals(
    y: np.ndarray,
    prob: np.ndarray,
    threshold: float,
    replicates: int = REPLICATES,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of AUC, accuracy, sensitivity and specificity over resampled cases."""
    y = np.asarray(y).reshape(-1)
    prob = np.asarray(prob).reshape(-1)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {
        k: [] for k in ("auc", "accuracy", "sensitivity", "specificity")
    }
    for _ in range(replicates):
        index = rng.integers(0, len(y), len(y))
        metrics = binary_metrics(y[index], prob[index], threshold)
        for name, values in samples.items():
            value = getattr(metrics, name)
            if value is not None:
                values.append(float(value))
    tail = (1 - level) / 2 * 100
    return {
        name: (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))
        for name, values in samples.items()
        if values
    }
